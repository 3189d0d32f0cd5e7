"""Human-readable views of alignments: a side-by-side token table, corpus coverage summaries,
and a coverage histogram (matplotlib, optional)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from dskd_align.alignment import Alignment, BatchAlignment

__all__ = ["coverage_summary", "format_alignment", "plot_coverage", "read_corpus"]


def format_alignment(al: Alignment, width: int = 24) -> str:
    """One line per chunk: teacher tokens | student tokens, ``=`` marking exact pairs."""
    paired_t = {int(i) for i, _ in al.pairs}
    lines = [f"{'teacher':<{width}} {'':1} student", "-" * (2 * width + 3)]
    # Special tokens (chunk -1) are listed where they sit, text tokens grouped by chunk.
    n_chunks = int(max(al.teacher_chunks.max(initial=-1), al.student_chunks.max(initial=-1))) + 1
    for c in range(n_chunks):
        ts = [i for i in range(len(al.teacher_ids)) if al.teacher_chunks[i] == c]
        ss = [j for j in range(len(al.student_ids)) if al.student_chunks[j] == c]
        left = "|".join(al.token_text("teacher", i) for i in ts)
        right = "|".join(al.token_text("student", j) for j in ss)
        mark = "=" if len(ts) == 1 and len(ss) == 1 and ts[0] in paired_t else " "
        lines.append(f"{left!r:<{width}} {mark} {right!r}")
    specials = [(i, j) for i, j in al.pairs if al.teacher_special[i]]
    if specials:
        lines.append(f"special pairs: {[(int(i), int(j)) for i, j in specials]}")
    lines.append(
        f"pairs: {al.num_pairs}   teacher coverage: {al.teacher_coverage:.1%} "
        f"({al.aligned}/{al.teacher_text_tokens})   student coverage: "
        f"{al.student_coverage:.1%} ({al.aligned}/{al.student_text_tokens})"
    )
    return "\n".join(lines)


def read_corpus(path: Path, field: str | None = None, limit: int | None = None) -> Iterator[str]:
    """Texts from a ``.jsonl`` (field ``field``, or every string value joined by newlines), a
    ``.json`` list, or a plain text file (one text per blank-line separated paragraph)."""
    n = 0

    def take(obj: object) -> str | None:
        if isinstance(obj, str):
            return obj
        if isinstance(obj, dict):
            if field is not None:
                v = obj.get(field)
                return v if isinstance(v, str) else None
            return "\n".join(v for v in obj.values() if isinstance(v, str)) or None
        return None

    if path.suffix == ".jsonl":
        items: Iterator[object] = (
            json.loads(line) for line in path.open(encoding="utf-8") if line.strip()
        )
    elif path.suffix == ".json":
        items = iter(json.loads(path.read_text(encoding="utf-8")))
    else:
        items = iter(p for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip())
    for obj in items:
        text = take(obj)
        if text is None:
            continue
        yield text
        n += 1
        if limit is not None and n >= limit:
            return


def coverage_summary(batch: BatchAlignment) -> dict[str, float]:
    """Pooled and per-row coverage statistics of a batch."""
    t, s = batch.pooled_coverage()
    rows = batch.student_coverage
    return {
        "rows": float(len(batch)),
        "teacher_tokens": float(batch.teacher_text_tokens.sum()),
        "student_tokens": float(batch.student_text_tokens.sum()),
        "pairs": float(batch.aligned.sum()),
        "teacher_coverage": t,
        "student_coverage": s,
        "student_row_p10": float(np.percentile(rows, 10)) if len(rows) else float("nan"),
        "student_row_median": float(np.median(rows)) if len(rows) else float("nan"),
    }


def plot_coverage(batch: BatchAlignment, out: Path, title: str) -> Path:
    """Histogram of per-row student and teacher coverage, written to ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 21)
    ax.hist(batch.student_coverage, bins=bins, alpha=0.6, label="student")
    ax.hist(batch.teacher_coverage, bins=bins, alpha=0.6, label="teacher")
    t, s = batch.pooled_coverage()
    ax.set_xlabel("exact-alignment coverage per text")
    ax.set_ylabel("texts")
    ax.set_title(f"{title}\npooled: teacher {t:.1%}, student {s:.1%}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
