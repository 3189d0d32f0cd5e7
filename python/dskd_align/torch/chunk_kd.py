"""Chunk-level KD over the alignment's chunks ("chunk_kd"), vectorized with segment sums.

A chunk (ALIGNMENT.md rule 5) is a minimal group of consecutive tokens whose teacher tokens and
student tokens spell the same text. Exact pairs are its 1x1 case; the rest (``boyfri|end`` vs
``boy|fr|ie|nd``) is where token-level KD has nothing to compare -- 22-70 % of student tokens
on code and non-English text. What both models *can* be compared on there is the probability of
the chunk's text given the same prefix text:

    log P_s(chunk) = sum over the chunk's student tokens k of log p_s(token_k | prefix)

gathered at the prediction positions ``k - 1`` (the batch's ``*_chunk_ids`` are token positions),
and the same for the teacher. Per-token log-probabilities use ``softmax(z / tau)``.

Loss per chunk, ``chunk_loss``:

- ``"binary_kl"`` (default): the KL between two Bernoulli events "the next text is this chunk",
  ``P_t log(P_t/P_s) + (1-P_t) log((1-P_t)/(1-P_s))``, the binarised divergence of ALM
  (Minixhofer et al., 2025). Chosen because it is a true divergence between what the two models
  believe about the same event (0 iff equal, penalizes over- and under-estimation), it stays
  bounded where both models find the chunk unlikely (long chunks of rare text do not dominate, as
  they do in a squared log-ratio), and it needs nothing but the two log-probabilities.
  ``log(1 - P)`` is taken with a stable ``log1mexp``; both log-probabilities are clamped at
  ``-1e-6`` from above so ``P = 1`` exactly cannot give ``log 0``.
- ``"squared_log_ratio"``: ``(log P_s - log P_t)^2``, the simplest alternative (kept for
  comparison; it weights long, improbable chunks heavily).

The KD part is the mean over chunks present on both sides (every chunk with ids on the student
and the teacher side). Vectorized: per-token log-probs of every prediction position
(``token_log_probs``: row chunks of the vocabulary matmul, recomputed in backward, never
``[B*L, V]`` float32 at once), then ``index_add`` over chunk ids into buffers of ``B * L_s``
entries (the contract bounds the chunk count by it), so there is no Python loop over chunks or
rows and no host sync. Prediction positions outside every chunk (prompt, padding) are computed
and masked: finding them would need a data-dependent ``nonzero`` (a sync).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from dskd_align.torch.chunked import token_log_probs

__all__ = ["CHUNK_LOSSES", "ChunkKD", "chunk_log_probs", "log1mexp"]

CHUNK_LOSSES = ("binary_kl", "squared_log_ratio")
IGNORE_INDEX = -100
_CLAMP = -1e-6  # log-probabilities above this (P > 0.999999) are clamped for log(1 - P)


def log1mexp(a: Tensor) -> Tensor:
    """``log(1 - exp(a))`` for ``a < 0``, stable at both ends (Maechler's switch at -log 2)."""
    return torch.where(a > -math.log(2.0), torch.log(-torch.expm1(a)), torch.log1p(-torch.exp(a)))


def chunk_log_probs(
    hidden: Tensor,
    lm_head_weight: Tensor,
    lm_head_bias: Tensor | None,
    input_ids: Tensor,
    chunk_ids: Tensor,
    n_segments: int,
    tau: float,
    chunk_size: int | None,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor] | None]:
    """``(log P(chunk) [S], tokens per chunk [S] int64, gold)`` for chunk ids ``0..S-1``.

    ``hidden`` ``[B, L, d]`` last hidden states, head ``[V, d]`` (+ bias ``[V]``), ``input_ids``
    and ``chunk_ids`` ``[B, L]`` int64 (token positions; ``-1`` outside every chunk). Chunk ids
    ``>= n_segments`` are an error of the caller (``index_add`` raises). With ``labels``
    ``[B, L]`` (HF layout) the gold CE comes out of the same head pass (one vocabulary matmul
    instead of two): ``gold = (mean CE [], labelled tokens [] int64)``, else None.
    """
    d = hidden.shape[-1]
    rows = hidden[:, :-1].reshape(-1, d)  # [B*(L-1), d]: position p predicts token p+1
    seg = chunk_ids[:, 1:].reshape(-1)  # [B*(L-1)]
    inside = seg >= 0
    targets = torch.where(inside, input_ids[:, 1:].reshape(-1), -1)[:, None]  # [N, 1]
    temps: tuple[float, ...] = (tau,)
    used = inside
    if labels is not None:
        gold = labels[:, 1:].reshape(-1)  # [N]
        has_gold = gold != IGNORE_INDEX
        targets = torch.cat([targets, torch.where(has_gold, gold, -1)[:, None]], 1)  # [N, 2]
        temps, used = (tau, 1.0), inside | has_gold
    # Rows no target uses (prompt, padding) are computed but must not matter: zeroed, so a NaN
    # that some attention kernels leave at padding positions cannot reach the head's gradient.
    rows = torch.where(used[:, None], rows, 0.0)
    lp = token_log_probs(rows, lm_head_weight, lm_head_bias, targets, temps, chunk_size)
    index = seg.clamp_min(0)  # outside rows add 0 (their lp is 0) to segment 0
    sums = lp.new_zeros(n_segments).index_add(0, index, lp[:, 0])  # [S]
    counts = torch.zeros(n_segments, dtype=torch.long, device=seg.device)
    counts = counts.index_add(0, index, inside.long())  # [S]
    if labels is None:
        return sums, counts, None
    n_gold = has_gold.sum()
    return sums, counts, (-lp[:, 1].sum() / n_gold.clamp_min(1), n_gold)


class ChunkKD(nn.Module):
    """The KD part of "chunk_kd" (module notes); ``kd(...)`` returns ``(kd [], metrics)``."""

    def __init__(
        self, *, tau: float = 1.0, chunk_loss: str = "binary_kl", chunk_size: int | None = 256
    ) -> None:
        super().__init__()
        if chunk_loss not in CHUNK_LOSSES:
            raise ValueError(f"chunk_loss must be one of {CHUNK_LOSSES}, got {chunk_loss!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau, self.chunk_loss, self.chunk_size = tau, chunk_loss, chunk_size

    def per_chunk(self, a_s: Tensor, a_t: Tensor) -> Tensor:
        """Loss per chunk from student/teacher chunk log-probabilities ``[S]`` each -> ``[S]``."""
        if self.chunk_loss == "squared_log_ratio":
            return (a_s - a_t).square()
        a_s, a_t = a_s.clamp(max=_CLAMP), a_t.clamp(max=_CLAMP)
        p_t = a_t.exp()
        return p_t * (a_t - a_s) + (1.0 - p_t) * (log1mexp(a_t) - log1mexp(a_s))

    def kd(
        self,
        batch: Mapping[str, Tensor],
        student_hidden: Tensor,
        teacher_hidden: Tensor,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """KD part ``[]`` (mean over chunks present on both sides) and its metrics."""
        kd, metrics, _ = self.kd_and_gold(
            batch, student_hidden, teacher_hidden, student_lm_head_weight,
            teacher_lm_head_weight, student_lm_head_bias, teacher_lm_head_bias, gold=False,
        )  # fmt: skip
        return kd, metrics

    def kd_and_gold(
        self,
        batch: Mapping[str, Tensor],
        student_hidden: Tensor,
        teacher_hidden: Tensor,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
        *,
        gold: bool = True,
    ) -> tuple[Tensor, dict[str, Tensor], tuple[Tensor, Tensor] | None]:
        """``kd`` plus, with ``gold``, the student's gold CE ``(mean [], count [])`` from the same
        pass over the student head (``DistillationLoss`` uses it instead of a second pass)."""
        for key in ("student_chunk_ids", "teacher_chunk_ids"):
            if key not in batch:
                raise ValueError(
                    f"chunk_kd needs batch[{key!r}] (alignment chunk ids per token); build "
                    "batches with dskd_align.torch.DSKDCollator, which emits them"
                )
        s_ids, t_ids = batch["student_chunk_ids"], batch["teacher_chunk_ids"]
        n_seg = s_ids.numel()  # B * L_s >= number of chunks (CONTRACT.md)
        a_s, n_s, ce = chunk_log_probs(
            student_hidden, student_lm_head_weight, student_lm_head_bias,
            batch["student_input_ids"], s_ids, n_seg, self.tau, self.chunk_size,
            batch["student_labels"] if gold else None,
        )  # fmt: skip
        with torch.no_grad():
            bias_t = None if teacher_lm_head_bias is None else teacher_lm_head_bias.detach()
            a_t, n_t, _ = chunk_log_probs(
                teacher_hidden.detach(), teacher_lm_head_weight.detach(), bias_t,
                batch["teacher_input_ids"], t_ids, n_seg, self.tau, self.chunk_size,
            )  # fmt: skip
        both = (n_s > 0) & (n_t > 0)  # [S] chunks present on both sides
        n_chunks = both.sum()
        loss = torch.where(both, self.per_chunk(a_s, a_t.to(a_s.dtype)), 0.0).sum()
        kd = loss / n_chunks.clamp_min(1)
        multi = both & ((n_s > 1) | (n_t > 1))
        metrics = {
            "kd_chunk": kd.detach(),
            "n_chunks": n_chunks,
            "n_chunks_multi": multi.sum(),
            "chunk_student_tokens": torch.where(both, n_s, 0).sum(),
        }
        return kd, metrics, ce
