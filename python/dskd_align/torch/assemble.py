"""Padding and truncation: per-row tokens (:class:`RowTokens`) to a :class:`DSKDBatch`.

Response-local pairs become prediction positions (ALIGNMENT.md, "For causal-LM distillation")
and response-local chunks become batch-global chunk ids. Choices recorded here:

- **Truncation** (``max_length`` per side): the response is cut from the right (its end token
  goes first); pairs whose token is cut on either side are dropped, and so are chunks with any
  token cut on either side (a partial chunk no longer covers the same text on both sides). A
  prompt longer than ``max_length`` keeps its *tail* (the tokens next to the response, which
  condition it most), and the row then has no supervised tokens: ``supervised_tokens`` 0,
  ``coverage`` 0.0 (``DSKDBatch.empty_rows`` counts them; a warning per row would be noise in a
  data pipeline, the trainer logs the count).
- A response token at absolute index 0 (empty prompt, no BOS) has no prediction position, so it
  carries no pair and its chunk no id (its label stays; models ignore the first label when
  shifting) and it is not counted in ``supervised_tokens``.
- **Chunks** with tokens on one side only (a SentencePiece dummy-prefix ``▁`` standing for no
  text, whitespace the other side folds into a neighbour) get no id: there is nothing to compare.
  So every chunk id holds at least one student token, and ``C <= B * L_s``.
- **Padding** uses the side's pad id; positions include the left-padding offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dskd_align.torch.data import DSKDBatch

__all__ = ["Responses", "RowTokens", "SideSpec", "Tokenized", "assemble"]


@dataclass
class Responses:
    """Response texts tokenized on both sides and aligned, per row (int64 arrays, response-local
    indices): ids, ``pairs [K, 2]``, and per token chunk ids (``-1`` for special tokens)."""

    teacher_ids: list[np.ndarray]
    student_ids: list[np.ndarray]
    pairs: list[np.ndarray]
    teacher_chunks: list[np.ndarray]
    student_chunks: list[np.ndarray]

    @classmethod
    def identity(cls, ids: list[np.ndarray]) -> Responses:
        """One tokenizer on both sides: every token pairs with itself and is its own chunk."""
        ar = [np.arange(len(e), dtype=np.int64) for e in ids]
        return cls(ids, list(ids), [np.repeat(a[:, None], 2, axis=1) for a in ar], ar, list(ar))


@dataclass(frozen=True)
class RowTokens:
    """One row before padding. Response-local indices: ``pairs [K, 2]`` int64 (teacher, student)
    into ``teacher_response``/``student_response`` (int64), with the EOS pair already included
    (index ``len(response)``) when ``*_eos`` is not None. ``teacher_chunks``/``student_chunks``
    int64: the chunk id (ALIGNMENT.md rule 5, numbered per row, ``-1`` for special tokens) of every
    response token, and of the EOS (its own chunk) when ``*_eos`` is not None."""

    teacher_prompt: list[int]
    student_prompt: list[int]
    teacher_response: np.ndarray
    student_response: np.ndarray
    pairs: np.ndarray
    teacher_eos: int | None
    student_eos: int | None
    teacher_chunks: np.ndarray
    student_chunks: np.ndarray


@dataclass(frozen=True)
class SideSpec:
    """How one side is truncated and padded."""

    max_length: int | None
    pad_id: int
    padding_side: str
    pad_to_multiple_of: int | None = None


def _layout(
    prompts: list[list[int]], responses: list[np.ndarray], eos: list[int | None], spec: SideSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Pads one side. Returns ids, mask, labels ``[B, L]`` long, and per row (int64 ``[B]``) the
    absolute index of response token 0 (``start``), the kept prompt length (``plen``) and how
    many response tokens (EOS included) were kept (``kept``)."""
    b = len(prompts)
    seqs, starts, kept = [], np.zeros(b, np.int64), np.zeros(b, np.int64)
    plen = np.zeros(b, np.int64)
    for r, (p, resp, e) in enumerate(zip(prompts, responses, eos, strict=True)):
        tail = resp if e is None else np.append(resp, e)
        if spec.max_length is not None:
            if len(p) > spec.max_length:
                p = p[len(p) - spec.max_length :]  # keep the prompt's tail
            tail = tail[: spec.max_length - len(p)]
        seqs.append((p, tail))
        kept[r], plen[r] = len(tail), len(p)
    lengths = [len(p) + len(t) for p, t in seqs]
    width = max(lengths, default=0)
    if spec.pad_to_multiple_of:
        m = spec.pad_to_multiple_of
        width = -(-width // m) * m
    ids = np.full((b, width), spec.pad_id, np.int64)
    labels = np.full((b, width), -100, np.int64)
    mask = np.zeros((b, width), np.int64)
    for r, ((p, t), n) in enumerate(zip(seqs, lengths, strict=True)):
        off = width - n if spec.padding_side == "left" else 0
        ids[r, off : off + len(p)] = p
        ids[r, off + len(p) : off + n] = t
        labels[r, off + len(p) : off + n] = t
        mask[r, off : off + n] = 1
        starts[r] = off + len(p)
    return (
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        torch.from_numpy(labels),
        starts,
        plen,
        kept,
    )


def _cat(parts: list[np.ndarray]) -> torch.Tensor:
    """Per-row int arrays joined into one ``[A]`` long tensor (empty for an empty batch)."""
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return torch.from_numpy(flat.astype(np.int64))


def _chunk_ids(
    ch_t: np.ndarray, ok_t: np.ndarray, ch_s: np.ndarray, ok_s: np.ndarray, first: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batch-global chunk ids of one row's response tokens (``-1`` where dropped) and the next
    free id. ``ok_*`` [N] bool: the token was kept and has a prediction position. A chunk keeps
    its id when it has tokens on both sides and all of them are ok (one-sided chunks, like a
    SentencePiece dummy prefix alone, have nothing to compare)."""
    live_t, live_s = np.unique(ch_t[ch_t >= 0]), np.unique(ch_s[ch_s >= 0])
    bad = np.union1d(ch_t[~ok_t], ch_s[~ok_s])
    valid = np.setdiff1d(np.intersect1d(live_t, live_s), bad)  # sorted = in text order

    def lookup(ch: np.ndarray) -> np.ndarray:
        k = np.searchsorted(valid, ch).clip(max=max(len(valid) - 1, 0))
        hit = (valid[k] == ch) if len(valid) else np.zeros(len(ch), bool)
        return np.where(hit, first + k, -1).astype(np.int64)

    return lookup(ch_t), lookup(ch_s), first + len(valid)


def assemble(rows: Sequence[RowTokens], teacher: SideSpec, student: SideSpec) -> DSKDBatch:
    """Truncates, pads and turns response-local pairs into prediction positions and response
    chunks into batch-global chunk ids."""
    tids, tmask, tlab, tstart, tplen, tkept = _layout(
        [r.teacher_prompt for r in rows],
        [r.teacher_response for r in rows],
        [r.teacher_eos for r in rows],
        teacher,
    )
    sids, smask, slab, sstart, splen, skept = _layout(
        [r.student_prompt for r in rows],
        [r.student_response for r in rows],
        [r.student_eos for r in rows],
        student,
    )
    bs, tp, sp = [], [], []
    coverage = np.zeros(len(rows), np.float32)
    supervised_tokens = np.zeros(len(rows), np.int64)
    t_chunk = np.full(tids.shape, -1, np.int64)
    s_chunk = np.full(sids.shape, -1, np.int64)
    next_chunk = 0
    for b, row in enumerate(rows):
        pr = row.pairs.reshape(-1, 2)
        t_pos = tstart[b] + pr[:, 0] - 1
        s_pos = sstart[b] + pr[:, 1] - 1
        # Inside both kept responses, and each token has a real token before it in its row (the
        # one whose logits predict it; with left padding the slot before row start is padding).
        keep = (pr[:, 0] < tkept[b]) & (pr[:, 1] < skept[b])
        keep &= (tplen[b] + pr[:, 0] >= 1) & (splen[b] + pr[:, 1] >= 1)
        tp.append(t_pos[keep])
        sp.append(s_pos[keep])
        bs.append(np.full(int(keep.sum()), b, np.int64))
        supervised = int(skept[b]) - int(splen[b] == 0 and skept[b] > 0)
        supervised_tokens[b] = supervised
        if supervised > 0:
            coverage[b] = keep.sum() / supervised
        n_t, n_s = len(row.teacher_chunks), len(row.student_chunks)
        ok_t = (np.arange(n_t) < tkept[b]) & (tplen[b] + np.arange(n_t) >= 1)
        ok_s = (np.arange(n_s) < skept[b]) & (splen[b] + np.arange(n_s) >= 1)
        ct, cs, next_chunk = _chunk_ids(
            row.teacher_chunks, ok_t, row.student_chunks, ok_s, next_chunk
        )
        t_chunk[b, tstart[b] : tstart[b] + tkept[b]] = ct[: tkept[b]]
        s_chunk[b, sstart[b] : sstart[b] + skept[b]] = cs[: skept[b]]
    return DSKDBatch(
        teacher_input_ids=tids,
        teacher_attention_mask=tmask,
        teacher_labels=tlab,
        teacher_chunk_ids=torch.from_numpy(t_chunk),
        student_input_ids=sids,
        student_attention_mask=smask,
        student_labels=slab,
        student_chunk_ids=torch.from_numpy(s_chunk),
        align_batch=_cat(bs),
        align_teacher_pos=_cat(tp),
        align_student_pos=_cat(sp),
        supervised_tokens=torch.from_numpy(supervised_tokens),
        coverage=torch.from_numpy(coverage),
    )


@dataclass
class Tokenized:
    """A batch of rows tokenized and aligned, before padding: per row whether it was rendered
    with the chat templates (so which end tokens it takes), both sides' prompt ids (BOS
    included) and the aligned responses. What ``precompute_alignments`` stores."""

    templated: list[bool]
    teacher_prompts: list[list[int]]
    student_prompts: list[list[int]]
    responses: Responses
