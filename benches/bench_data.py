"""Shared inputs for the Python benchmarks: real corpora and tokenizers from ``../shared``.

``DSKD_SHARED`` overrides the location. Every loader returns plain lists of ``str`` in a fixed
order (no sampling), so two runs see the same texts.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

SHARED = Path(os.environ.get("DSKD_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
CORPORA = SHARED / "corpora"
TOKENIZERS = SHARED / "tokenizers"

__all__ = ["CORPORA", "LOADERS", "SHARED", "TOKENIZERS", "interleaved", "tokenizer_path"]


def _jsonl(rel: str) -> list[dict]:
    with open(CORPORA / rel, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def dolly(limit: int | None = None) -> list[str]:
    """Dolly instruction + context (the response column is not in the corpus)."""
    rows = _jsonl("dolly/dolly15k_instruction_context.jsonl")[:limit]
    return [r["instruction"] + ("\n\n" + r["context"] if r["context"] else "") for r in rows]


def gsm8k(limit: int | None = None) -> list[str]:
    """GSM8K test: question, newline, worked answer."""
    return [r["question"] + "\n" + r["answer"] for r in _jsonl("gsm8k/test.jsonl")[:limit]]


def code(limit: int | None = None, lines: int = 50) -> list[str]:
    """HumanEval prompt + solution, then the cpython stdlib sample in ``lines``-line chunks."""
    out = [r["prompt"] + r["canonical_solution"] for r in _jsonl("code/HumanEval.jsonl")]
    for r in _jsonl("code/cpython311_stdlib_sample.jsonl"):
        src = r["text"].splitlines(keepends=True)
        out += ["".join(src[i : i + lines]) for i in range(0, len(src), lines)]
    return out[:limit]


def multilingual(limit: int | None = None) -> list[str]:
    """UDHR paragraphs, every language in file order."""
    rows = _jsonl("multilingual/udhr_selected.jsonl")
    return [p for r in rows for p in r["paragraphs"] if p][:limit]


def blns(limit: int | None = None) -> list[str]:
    """Big List of Naughty Strings (non-empty ones)."""
    with open(CORPORA / "unicode_edge_cases/blns.json", encoding="utf-8") as f:
        return [s for s in json.load(f) if s][:limit]


LOADERS: dict[str, Callable[..., list[str]]] = {
    "dolly": dolly,
    "gsm8k": gsm8k,
    "code": code,
    "multilingual": multilingual,
    "blns": blns,
}


def write_report(lines: list[str], path: str | Path) -> None:
    """Writes a results file (markdown lines) under ``benches/results`` or wherever asked."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out}")


def tokenizer_path(name: str) -> str:
    return str(TOKENIZERS / name / "tokenizer.json")


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each function, repetitions interleaved (a, b, c, a, b, c, ...) so that
    machine noise hits every contender alike. One untimed warm-up call each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
