"""Size of the overlapping vocabulary O: byte-canonical matching vs raw string equality.

    python benches/vocab_overlap.py [--out benches/results/vocab_overlap.md]

For real tokenizer pairs from ../shared/tokenizers: |O| from ``VocabMap`` (tokens meet when they
stand for the same bytes: ``Ġx`` = ``▁x`` = b" x", ``Ċ`` = ``<0x0A>`` = b"\\n"), the count of equal
non-special token strings, and, for context, string equality after spelling ``Ġ``/``▁`` as a space
(what a string-walking implementation can reach at best). Writes a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench_data import write_report
from transformers import AutoTokenizer

from dskd_align.torch import VocabMap

ROOT = Path(__file__).resolve().parents[1]
TOKENIZERS = ROOT.parent / "shared" / "tokenizers"
PAIRS = [
    ("qwen2.5", "gpt2"),
    ("llama2", "gpt2"),
    ("qwen2.5", "llama2"),
    ("gemma3", "llama3"),
    ("llama3", "mistral-7b-v0.3"),
]


def _strings(tok) -> set[str]:
    specials = set(tok.all_special_tokens) | {
        t.content for t in tok.backend_tokenizer.get_added_tokens_decoder().values() if t.special
    }
    return {s for s in tok.backend_tokenizer.get_vocab(with_added_tokens=True) if s not in specials}


def _spaced(strings: set[str]) -> set[str]:
    return {s.replace("\u0120", " ").replace("\u2581", " ") for s in strings}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "vocab_overlap.md"))
    args = ap.parse_args()
    if not TOKENIZERS.is_dir():
        sys.exit(f"no real tokenizers at {TOKENIZERS}")
    cache: dict[str, object] = {}

    def load(name: str):
        if name not in cache:
            cache[name] = AutoTokenizer.from_pretrained(str(TOKENIZERS / name))
        return cache[name]

    lines = [
        "# Vocabulary overlap O: byte-canonical vs string equality",
        "",
        "Command: `python benches/vocab_overlap.py` (tokenizers from `../shared/tokenizers`).",
        "",
        "| teacher | student | V_t | V_s | \\|O\\| bytes | raw string equal | bytes / raw "
        "| strings with Ġ/▁ as space | build s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t_name, s_name in PAIRS:
        t, s = load(t_name), load(s_name)
        t0 = time.perf_counter()
        m = VocabMap(t, s)
        dt = time.perf_counter() - t0
        spaced = len(_spaced(_strings(t)) & _spaced(_strings(s)))
        ratio = m.num_overlap / max(m.raw_overlap, 1)
        lines.append(
            f"| {t_name} | {s_name} | {m.teacher_vocab_size} | {m.student_vocab_size} | "
            f"{m.num_overlap} | {m.raw_overlap} | {ratio:.2f}x | {spaced} | {dt:.1f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "|O| counts one-to-one pairs (several ids with the same bytes on one side, e.g. a `\\n`",
        "piece and `<0x0A>`, share one representative), plus BOS/EOS/PAD paired by role and",
        'equally named special tokens. "raw string equal" counts non-special token strings',
        'present in both vocabularies. "build s" includes loading both core tokenizers.',
    ]
    write_report(lines, args.out)


if __name__ == "__main__":
    main()
