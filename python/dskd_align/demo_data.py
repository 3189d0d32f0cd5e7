"""Data of the embedded demo: disjoint slices of the embedded corpus, rows, batches, bits/byte.

The corpus (``embedded.corpus()``: Python stdlib source and docstrings) is cut into blocks of
``BLOCK`` lines, and blocks are dealt to the jobs in a fixed round-robin, so every job sees the
same kind of text but never the same lines:

- ``teacher``: the teacher's pretraining text (it also learns the task's train rows, as the
  paper's teachers are fine-tuned on the task);
- ``student``: the students' pretraining text (the paper distills into *pretrained* students);
- ``train`` / ``val`` / ``test``: the task. ``val`` chooses the best step, ``test`` is reported.

A row is ``{"prompt": one non-empty line, "response": the next RESPONSE_LINES lines}``. Rows are
kept short (no truncation anywhere), so bits/byte counts every response byte.

**Bits/byte** = sum of the student's CE (nats) over its label tokens (response + EOS) /
(ln 2 * UTF-8 bytes of the responses): a student with another tokenizer splits the same text into
another number of tokens, so per-token CE is not comparable across tokenizers, per-byte CE is.
The EOS (one token per row on both sides) is counted so that the number is a real code length.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch

from dskd_align import embedded

__all__ = ["BLOCK", "bits_per_byte", "make_batches", "response_bytes", "task_rows"]

BLOCK = 24  # lines per block
RESPONSE_LINES = 3
MAX_PROMPT_CHARS = 90
MAX_RESPONSE_CHARS = 200
# block index % 10 -> job: teacher 40 %, student 30 %, train 10 %, val 10 %, test 10 %.
_DEAL = ("teacher", "student", "teacher", "train", "student", "teacher", "val", "student",
         "teacher", "test")  # fmt: skip
JOBS = ("teacher", "student", "train", "val", "test")


def _slices() -> dict[str, list[list[str]]]:
    """Blocks of corpus lines per job (a block keeps its lines contiguous)."""
    lines = embedded.corpus()
    out: dict[str, list[list[str]]] = {j: [] for j in JOBS}
    for k, start in enumerate(range(0, len(lines), BLOCK)):
        out[_DEAL[k % len(_DEAL)]].append(lines[start : start + BLOCK])
    return out


def _block_rows(block: list[str]) -> list[dict[str, str]]:
    """Every (line, next lines) row inside one block that passes the length filters."""
    rows = []
    for i in range(len(block) - RESPONSE_LINES):
        prompt = block[i]
        response = "".join(block[i + 1 : i + 1 + RESPONSE_LINES])
        if not prompt.strip() or not response.strip():
            continue
        if len(prompt) > MAX_PROMPT_CHARS or len(response) > MAX_RESPONSE_CHARS:
            continue
        rows.append({"prompt": prompt, "response": response})
    return rows


def task_rows(job: str, n: int | None, seed: int) -> list[dict[str, str]]:
    """``n`` rows (all when None) of one job's slice, shuffled by ``seed``."""
    if job not in JOBS:
        raise ValueError(f"unknown slice {job!r}; choose one of {JOBS}")
    rows = [r for block in _slices()[job] for r in _block_rows(block)]
    random.Random(f"{job}-{seed}").shuffle(rows)
    return rows if n is None else rows[:n]


def response_bytes(rows: list[dict[str, str]]) -> int:
    """UTF-8 bytes of all responses (the bits/byte denominator)."""
    return sum(len(r["response"].encode("utf-8")) for r in rows)


def make_batches(collate: Any, rows: list[dict[str, str]], batch_size: int) -> list[Any]:
    """Collated batches of ``rows`` in order (the last one may be smaller)."""
    return [collate(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]


def bits_per_byte(ce_sum_nats: float, n_bytes: int) -> float:
    """Summed CE in nats -> bits per UTF-8 byte."""
    return ce_sum_nats / (math.log(2) * max(n_bytes, 1))


def ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token CE (nats) of ``logits`` ``[B, L, V]`` on HF ``labels`` ``[B, L]``."""
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        labels[:, 1:].flatten(),
        ignore_index=-100,
        reduction="sum",
    )
