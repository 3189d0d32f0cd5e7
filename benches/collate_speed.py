"""DSKDCollator speed vs plain tokenization of the same rows on both sides.

    python benches/collate_speed.py [--rows 64] [--repeats 30] [--out FILE.md]

64 rows of about 512 teacher tokens each (Dolly instruction -> contexts, GSM8K question ->
answers, stdlib code), teacher qwen2.5 (chat template), student llama2 (plain prompt + BOS).

- baseline: each tokenizer's fast batch call on ``prompt + response`` (the prompt rendered by
  the side's chat template, as any SFT collator does), ids only; timed with the rendering
  ("render + tokenize") and without it ("tokenize only", strings rendered beforehand);
- collator: ``DSKDCollator(...)(rows)``: render and tokenize prompts, tokenize and align the
  responses in the core, truncate, pad, build tensors and prediction positions.

Timings interleave (baseline, collator, ...) and report medians; the ratio is what counts, the
machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from bench_data import write_report
from transformers import AutoTokenizer

from dskd_align.torch import DSKDCollator
from dskd_align.torch.data import PromptRenderer, split_row

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _jsonl(path: Path, n: int) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) >= n:
                break
    return out


def build_rows(tok, n: int, target: int = 512) -> list[dict[str, str]]:
    """Rows of about ``target`` teacher tokens: a prompt and a response grown from consecutive
    texts of one source until the row is long enough."""
    c = SHARED / "corpora"
    dolly = [
        r for r in _jsonl(c / "dolly/dolly15k_instruction_context.jsonl", 4000) if r["context"]
    ]
    gsm = _jsonl(c / "gsm8k/test.jsonl", 1319)
    code = [r["text"] for r in _jsonl(c / "code/cpython311_stdlib_sample.jsonl", 200)]
    sources = [
        ((r["instruction"], r["context"]) for r in dolly),
        ((r["question"], r["answer"]) for r in gsm),
        (
            ("Continue this Python module.", t[i : i + 600])
            for t in code
            for i in range(0, len(t), 600)
        ),
    ]
    rows = []
    system = len(PromptRenderer(tok).ids([""])[0])  # the template's fixed part
    while len(rows) < n:
        src = sources[len(rows) % 3]
        prompt, response = next(src)
        budget = target - system - len(tok(prompt)["input_ids"])
        while len(tok(response)["input_ids"]) < budget:
            response += "\n\n" + next(src)[1]
        response = tok.decode(tok(response)["input_ids"][:budget])  # cut to about the budget
        rows.append({"prompt": prompt, "response": response})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "collate_speed.md"))
    args = ap.parse_args()
    teacher = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers/qwen2.5"))
    student = AutoTokenizer.from_pretrained(str(SHARED / "tokenizers/llama2"))
    rows = build_rows(teacher, args.rows)
    renderers = [PromptRenderer(teacher), PromptRenderer(student)]
    sides = list(zip((teacher, student), renderers, strict=True))

    def baseline(render: bool, pre: list[list[str]]) -> None:
        for k, (tok, rend) in enumerate(sides):
            texts = [rend.text(p) + r for p, r in map(split_row, rows)] if render else pre[k]
            tok(texts, add_special_tokens=not rend.templated)["input_ids"]

    pre = [[rend.text(p) + r for p, r in map(split_row, rows)] for _, rend in sides]
    collators = {n: DSKDCollator(teacher, student, num_threads=n) for n in (1, 0)}
    out = collators[1](rows)
    lens = (
        out.teacher_attention_mask.sum(1).float().mean(),
        out.student_attention_mask.sum(1).float().mean(),
    )
    runs: dict[str, list[float]] = {k: [] for k in ("render", "plain", "c1", "c0")}
    fns = {
        "render": lambda: baseline(True, pre),
        "plain": lambda: baseline(False, pre),
        "c1": lambda: collators[1](rows),
        "c0": lambda: collators[0](rows),
    }
    for fn in fns.values():
        fn()  # warm up
    for _ in range(args.repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in runs.items()}
    lines = [
        "# DSKDCollator vs tokenizing both sides",
        "",
        f"Command: `python benches/collate_speed.py --rows {args.rows} --repeats {args.repeats}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}. "
        f"{args.rows} rows, mean {lens[0]:.0f} teacher (qwen2.5) / {lens[1]:.0f} student (llama2) "
        f"tokens per row, {out.num_pairs} pairs. Medians of {args.repeats} interleaved runs; "
        f"1-min load average {os.getloadavg()[0]:.1f} at the end (other jobs share the machine).",
        "",
        "| what | ms / batch | vs render + tokenize | vs tokenize only |",
        "|---|---:|---:|---:|",
    ]
    for k, name in [
        ("render", "baseline: render prompt + fast batch tokenize, both sides"),
        ("plain", "baseline: fast batch tokenize only (pre-rendered), both sides"),
        ("c1", "DSKDCollator, num_threads=1 (default)"),
        ("c0", "DSKDCollator, num_threads=0 (all cores)"),
    ]:
        r1, r2 = med[k] / med["render"], med[k] / med["plain"]
        lines.append(f"| {name} | {med[k]:.1f} | {r1:.2f}x | {r2:.2f}x |")
    lines += [
        "",
        "The baseline batch calls use the `tokenizers` thread pool (all cores, by default); the",
        "collator tokenizes prompts with the same batch call and responses inside the core.",
    ]
    for line in lines[6:]:
        print(line)
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
