"""Data path numbers: what ``tokenize_jointly`` does to coverage, and precompute throughput.

    .venv/bin/python benches/data_path.py [--rows 1000] [--only coverage|rendering|throughput]

1. **Coverage, responses tokenized apart vs with the prompt** (``tokenize_jointly``), pooled over
   the rows: emitted pairs / supervised student tokens (the end pair included, no truncation),
   on GSM8K (question -> answer; test, then train) and Dolly (instruction -> context, rows with
   a context) from ``../shared``.
   Plain rows (no template on either side) and the same rows as ``messages`` (each side's chat
   template; pairs where both tokenizers have one).
2. **Precompute throughput**: ``datasets.Dataset.map(precompute_alignments, batched=True,
   num_proc=N)`` rows/s for N = 1 and 2 (wall time of the whole map, worker start included),
   and collation rows/s from precomputed rows vs from raw rows (batch 32, ``max_length`` 512).

Rows are read in file order (no sampling), so two runs see the same rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import datasets
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import CORPORA, TOKENIZERS, _jsonl  # noqa: E402

from dskd_align.torch import DSKDCollator, precompute_alignments  # noqa: E402
from dskd_align.torch.assemble import assemble  # noqa: E402
from dskd_align.torch.precompute import precompute_dataset  # noqa: E402

PLAIN_PAIRS = [("qwen2.5", "llama2"), ("llama3", "mistral-7b-v0.3"), ("gpt2", "gemma3")]
CHAT_PAIRS = [("qwen2.5", "llama3"), ("qwen2.5", "phi-3-mini"), ("llama3", "gemma3")]


def rows(n: int) -> dict[str, list[dict[str, str]]]:
    gsm = [
        {"prompt": r["question"], "response": r["answer"]}
        for split in ("test", "train")
        for r in _jsonl(f"gsm8k/{split}.jsonl")
    ]
    dolly = [
        {"prompt": r["instruction"], "response": r["context"]}
        for r in _jsonl("dolly/dolly15k_instruction_context.jsonl")
        if r["context"]
    ]
    return {"GSM8K": gsm[:n], "Dolly": dolly[:n]}


def as_messages(data: list[dict[str, str]]) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": r["prompt"]},
                {"role": "assistant", "content": r["response"]},
            ]
        }
        for r in data
    ]


def pooled(c: DSKDCollator, data: list[dict], batch: int = 32) -> float:
    pairs = sup = 0
    for i in range(0, len(data), batch):
        b = c(data[i : i + batch])
        pairs += b.num_pairs
        sup += int(b.supervised_tokens.sum())
    return pairs / max(sup, 1)


def tok(name: str):
    return AutoTokenizer.from_pretrained(str(TOKENIZERS / name))


def coverage_table(corpora: dict[str, list[dict]]) -> list[str]:
    out = [
        "| teacher -> student | rendering | corpus | apart | jointly | change |",
        "|---|---|---|---:|---:|---:|",
    ]
    for pairs, chat in ((PLAIN_PAIRS, False), (CHAT_PAIRS, True)):
        for t_name, s_name in pairs:
            t, s = tok(t_name), tok(s_name)
            for corpus, data in corpora.items():
                data = as_messages(data) if chat else data
                cov = [
                    pooled(DSKDCollator(t, s, tokenize_jointly=j, use_chat_template=chat), data)
                    for j in (False, True)
                ]
                mode = "each side's template" if chat else "plain"
                out.append(
                    f"| {t_name} -> {s_name} | {mode} | {corpus} | {cov[0]:.4f} | {cov[1]:.4f} "
                    f"| {cov[1] - cov[0]:+.4f} |"
                )
                print(out[-1], flush=True)
    return out


def rendering_table(corpora: dict[str, list[dict]]) -> list[str]:
    """Plain rows: the old rendering (the teacher's template, the student plain: what the
    collator did before) vs both plain (the default now), qwen2.5 -> llama2."""
    t, s = tok("qwen2.5"), tok("llama2")
    out = [
        "| corpus | max_length | teacher templated, student plain (old) | both plain (now) |",
        "|---|---:|---:|---:|",
    ]
    for corpus, data in corpora.items():
        for max_length in (64, 256):
            c = DSKDCollator(t, s, max_length=max_length)
            cov = []
            for old in (True, False):
                pairs = sup = 0
                for i in range(0, len(data), 32):
                    tk = c.tokenize(data[i : i + 32])
                    if old:
                        prompts = [r["prompt"] for r in data[i : i + 32]]
                        tk.teacher_prompts = c.renderers["teacher"].ids(
                            prompts, [True] * len(prompts)
                        )
                    b = assemble(c.rows(tk), c.specs["teacher"], c.specs["student"])
                    pairs += b.num_pairs
                    sup += int(b.supervised_tokens.sum())
                cov.append(pairs / max(sup, 1))
            out.append(f"| {corpus} | {max_length} | {cov[0]:.4f} | {cov[1]:.4f} |")
            print(out[-1], flush=True)
    return out


def throughput_table(corpora: dict[str, list[dict]]) -> list[str]:
    t, s = tok("qwen2.5"), tok("llama2")
    c = DSKDCollator(t, s, max_length=512)
    data = corpora["GSM8K"] + corpora["Dolly"]
    ds = datasets.Dataset.from_list(data)
    out = ["| step | rows | rows/s |", "|---|---:|---:|"]
    cols = {k: [r[k] for r in data] for k in data[0]}
    precompute_alignments({k: v[:8] for k, v in cols.items()}, c)  # fingerprint computed once
    start = time.perf_counter()
    for i in range(0, len(data), 256):
        precompute_alignments({k: v[i : i + 256] for k, v in cols.items()}, c)
    dt = time.perf_counter() - start
    out.append(
        f"| `precompute_alignments` called directly, batches of 256 | {len(data)} | "
        f"{len(data) / dt:,.0f} |"
    )
    print(out[-1], flush=True)
    pre = None
    for num_proc, quick in ((1, False), (1, True), (2, True)):
        start = time.perf_counter()
        if quick:
            name = "`precompute_dataset` (collator-key fingerprint)"
            pre = precompute_dataset(ds, c, num_proc=num_proc, keep_in_memory=True)
        else:
            name = "`Dataset.map(precompute_alignments, batched=True)` (datasets' own hash)"
            pre = ds.map(
                precompute_alignments,
                batched=True,
                batch_size=256,
                num_proc=num_proc,
                fn_kwargs={"collator": c},
                load_from_cache_file=False,
                keep_in_memory=True,
            )
        dt = time.perf_counter() - start
        out.append(f"| {name}, num_proc={num_proc} | {len(ds)} | {len(ds) / dt:,.0f} |")
        print(out[-1], flush=True)
    assert pre is not None
    slim = pre.remove_columns([k for k in pre.column_names if not k.startswith("dskd_")])
    pre_rows = list(slim)  # Arrow decoding excluded: both timings start from Python rows
    for label, rows_in in (("collate raw rows", data), ("collate precomputed rows", pre_rows)):
        start = time.perf_counter()
        for i in range(0, len(rows_in), 32):
            c(rows_in[i : i + 32])
        dt = time.perf_counter() - start
        out.append(
            f"| {label} (batch 32, max_length 512) | {len(rows_in)} | {len(rows_in) / dt:,.0f} |"
        )
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000, help="rows per corpus")
    ap.add_argument("--out", type=Path, default=Path("benches/results/data_path.md"))
    ap.add_argument("--only", choices=["coverage", "rendering", "throughput"], default=None)
    args = ap.parse_args()
    if not (CORPORA / "gsm8k").is_dir():
        sys.exit(f"corpora not found under {CORPORA}")
    corpora = rows(args.rows)
    lines = [f"# Data path ({args.rows} rows per corpus)", ""]
    if args.only in (None, "coverage"):
        lines += ["## Coverage: response tokenized apart vs jointly", "", *coverage_table(corpora)]
    if args.only in (None, "rendering"):
        lines += ["", "## Plain rows: one-sided template vs plain on both sides", ""]
        lines += rendering_table(corpora)
    if args.only in (None, "throughput"):
        lines += [
            "",
            "## Precompute throughput (qwen2.5 -> llama2)",
            "",
            *throughput_table(corpora),
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
