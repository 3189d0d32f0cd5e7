"""Result types: :class:`Alignment` (one text) and :class:`BatchAlignment` (flat, CSR).

Index conventions (ALIGNMENT.md): token indices are positions in each side's encoding of the
text; ``pairs[k] = (teacher index, student index)``; spans are ``[start, end)`` in UTF-8 bytes of
the text; chunk ids number the chunks of one text from 0 and are ``-1`` for special tokens.
Coverage is aligned text tokens / text tokens (special tokens excluded), 1.0 for a side without
text tokens; the counts are kept so corpus coverage can be pooled (``sum aligned / sum tokens``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Alignment", "BatchAlignment"]

_SIDES = ("teacher", "student")
_FIELDS = ("ids", "spans", "special", "chunks")


def _cov(aligned: int, total: int) -> float:
    return 1.0 if total == 0 else aligned / total


@dataclass(frozen=True, repr=False)
class Alignment:
    """Exact alignment of one text.

    Arrays (int64 unless noted): ``pairs [K, 2]``; per side ``*_ids [N]``, ``*_spans [N, 2]``,
    ``*_special [N]`` (bool), ``*_chunks [N]``.
    """

    text: str
    pairs: np.ndarray
    teacher_ids: np.ndarray
    teacher_spans: np.ndarray
    teacher_special: np.ndarray
    teacher_chunks: np.ndarray
    student_ids: np.ndarray
    student_spans: np.ndarray
    student_special: np.ndarray
    student_chunks: np.ndarray
    teacher_text_tokens: int
    student_text_tokens: int
    aligned: int

    @property
    def teacher_coverage(self) -> float:
        return _cov(self.aligned, self.teacher_text_tokens)

    @property
    def student_coverage(self) -> float:
        return _cov(self.aligned, self.student_text_tokens)

    @property
    def num_pairs(self) -> int:
        return int(self.pairs.shape[0])

    def token_text(self, side: str, index: int) -> str:
        """The text a token stands for (byte pieces of a character show as U+FFFD)."""
        spans = self.teacher_spans if side == "teacher" else self.student_spans
        s, e = spans[index]
        return self.text.encode("utf-8")[s:e].decode("utf-8", errors="replace")

    def pair_texts(self) -> list[tuple[str, str]]:
        """(teacher token text, student token text) for every pair."""
        return [
            (self.token_text("teacher", i), self.token_text("student", j)) for i, j in self.pairs
        ]

    def __repr__(self) -> str:
        return (
            f"Alignment(pairs={self.num_pairs}, teacher_tokens={len(self.teacher_ids)}, "
            f"student_tokens={len(self.student_ids)}, "
            f"teacher_coverage={self.teacher_coverage:.3f}, "
            f"student_coverage={self.student_coverage:.3f})"
        )


class BatchAlignment:
    """Alignments of many texts in one flat layout.

    ``teacher_splits [B+1]`` delimit row ``b``'s teacher tokens in the flat ``teacher_*`` arrays
    (same for student), ``pair_splits [B+1]`` its rows of ``pairs [K, 2]`` (indices local to the
    row). ``batch[b]`` is an :class:`Alignment` whose arrays are views into the flat ones.
    """

    def __init__(self, texts: list[str], flat: dict[str, np.ndarray]):
        self.texts = texts
        self.pair_splits: np.ndarray = flat["pair_splits"]
        self.pairs: np.ndarray = flat["pairs"].reshape(-1, 2)
        for side in _SIDES:
            setattr(self, f"{side}_splits", flat[f"{side}_splits"])
            setattr(self, f"{side}_ids", flat[f"{side}_ids"])
            setattr(self, f"{side}_spans", flat[f"{side}_spans"].reshape(-1, 2))
            setattr(self, f"{side}_special", flat[f"{side}_special"])
            setattr(self, f"{side}_chunks", flat[f"{side}_chunks"])
            setattr(self, f"{side}_text_tokens", flat[f"{side}_text_tokens"])
        self.aligned: np.ndarray = flat["teacher_aligned"]

    # Attributes set in __init__ from the flat dict (declared for type checkers).
    teacher_splits: np.ndarray
    teacher_ids: np.ndarray
    teacher_spans: np.ndarray
    teacher_special: np.ndarray
    teacher_chunks: np.ndarray
    teacher_text_tokens: np.ndarray
    student_splits: np.ndarray
    student_ids: np.ndarray
    student_spans: np.ndarray
    student_special: np.ndarray
    student_chunks: np.ndarray
    student_text_tokens: np.ndarray

    @classmethod
    def concat(cls, texts: list[str], parts: list[dict[str, np.ndarray]]) -> BatchAlignment:
        """Joins single-row flat dicts (the Python-encoded path) into one batch."""
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            flat: dict[str, Any] = {"pair_splits": np.zeros(1, np.int64), "pairs": empty}
            for side in _SIDES:
                flat[f"{side}_splits"] = np.zeros(1, np.int64)
                for f in ("ids", "spans", "chunks", "text_tokens", "aligned"):
                    flat[f"{side}_{f}"] = empty
                flat[f"{side}_special"] = np.zeros(0, dtype=bool)
            return cls(texts, flat)
        flat = {}
        for key in parts[0]:
            arrays = [p[key] for p in parts]
            if key.endswith("splits"):
                lengths = np.array([a[-1] for a in arrays], dtype=np.int64)
                flat[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            else:
                flat[key] = np.concatenate(arrays)
        return cls(texts, flat)

    def __len__(self) -> int:
        return len(self.pair_splits) - 1

    def __getitem__(self, b: int) -> Alignment:
        n = len(self)
        if not -n <= b < n:
            raise IndexError(f"row {b} out of range for a batch of {n}")
        b %= n
        ts, te = self.teacher_splits[b], self.teacher_splits[b + 1]
        ss, se = self.student_splits[b], self.student_splits[b + 1]
        ps, pe = self.pair_splits[b], self.pair_splits[b + 1]
        return Alignment(
            text=self.texts[b],
            pairs=self.pairs[ps:pe],
            teacher_ids=self.teacher_ids[ts:te],
            teacher_spans=self.teacher_spans[ts:te],
            teacher_special=self.teacher_special[ts:te],
            teacher_chunks=self.teacher_chunks[ts:te],
            student_ids=self.student_ids[ss:se],
            student_spans=self.student_spans[ss:se],
            student_special=self.student_special[ss:se],
            student_chunks=self.student_chunks[ss:se],
            teacher_text_tokens=int(self.teacher_text_tokens[b]),
            student_text_tokens=int(self.student_text_tokens[b]),
            aligned=int(self.aligned[b]),
        )

    def __iter__(self):
        return (self[b] for b in range(len(self)))

    @property
    def teacher_coverage(self) -> np.ndarray:
        """Per-row teacher coverage, float64 ``[B]``."""
        return np.where(
            self.teacher_text_tokens > 0,
            self.aligned / np.maximum(self.teacher_text_tokens, 1),
            1.0,
        )

    @property
    def student_coverage(self) -> np.ndarray:
        """Per-row student coverage, float64 ``[B]``."""
        return np.where(
            self.student_text_tokens > 0,
            self.aligned / np.maximum(self.student_text_tokens, 1),
            1.0,
        )

    def pooled_coverage(self) -> tuple[float, float]:
        """(teacher, student) coverage over the whole batch: total aligned / total text tokens."""
        a = int(self.aligned.sum())
        return _cov(a, int(self.teacher_text_tokens.sum())), _cov(
            a, int(self.student_text_tokens.sum())
        )

    def __repr__(self) -> str:
        t, s = self.pooled_coverage()
        return (
            f"BatchAlignment(rows={len(self)}, pairs={len(self.pairs)}, "
            f"teacher_coverage={t:.3f}, student_coverage={s:.3f})"
        )
