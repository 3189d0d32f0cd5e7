"""One entry point for every training objective: ``build_loss(name, ...)`` and ``LOSS_NAMES``.

Every module returned has ``forward_batch(batch, student_hidden, teacher_hidden,
student_lm_head_weight, teacher_lm_head_weight, *, student_lm_head_bias=None,
teacher_lm_head_bias=None) -> (loss [] float32, metrics)`` (CONTRACT.md). The total is
``(1 - alpha) * ce_gold + alpha * KD`` where KD is the sum of the objective's KD parts (each with
its weight). ``alpha`` skips what it zeroes: at ``alpha = 0`` no KD part runs (the teacher's
hidden states may be None), at ``alpha = 1`` the gold CE runs without gradient (metric only).

Names (``LOSS_NAMES``):

- ``"sft"``: gold CE only (``alpha`` ignored; no teacher needed).
- ``"dskd"``: the paper's ``DualSpaceKDLoss`` (tau 2.0 unless given, as in the paper).
- ``"kd"``: vanilla same-vocabulary KD at every label position (``vocab`` must be None or an
  identity map; a cross-tokenizer VocabMap is an error naming ``exact_kd``).
- ``"exact_kd"``: KD at the exact pairs through the byte-canonical map (``exact_kd.py``).
- ``"chunk_kd"``: chunk-level KD over the alignment's chunks (``chunk_kd.py``).
- ``"exact_kd+chunk_kd"``: both parts; ``"dskd+exact_kd"``: DSKD's three terms plus exact_kd.
- ``"byte_kd"``: KD on the teacher's byte-level belief about the student's next token
  (``byte_kd.py``); ``vocab`` must be the pair's ``ByteTables`` (it carries the VocabMap).
- ``"byte_sets"``: the same belief scored on sets of consistent student tokens, tight next-token
  sets, with the student's own boundary (``set_kd.py``); ``vocab``: the pair's ``SetTables``.

``tau=None`` means the loss's own default (2.0 for the parts of DSKD, 1.0 otherwise); options
by part: exact_kd ``unmapped`` ("renormalize" | "other"), ``space`` ("student" | "teacher" |
"both"); chunk_kd ``chunk_loss`` ("binary_kl" | "squared_log_ratio"), ``chunk_weight`` (weight of
the chunk part, 1.0); dskd ``student_space``, ``teacher_space``, ``frozen_student_head``;
byte_kd ``crossing`` ("skip" | "one_step" | "two_step": student tokens that cross a teacher
token's end); byte_sets ``crossing`` ("one_step" | "skip"), ``student_boundary`` (True),
``tight_extensions`` (False), ``branch`` (False: the "teacher token ends here" outcome inside a
teacher token; the teacher's hidden states must carry the branch states, ``branch.py``),
``unfiltered`` ("keep" | "teacher": at the targets the student-boundary filter leaves alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dskd_align.torch.byte_kd import ByteKD
from dskd_align.torch.chunk_kd import ChunkKD
from dskd_align.torch.chunked import chunked_sums
from dskd_align.torch.divergences import get_divergence
from dskd_align.torch.exact_kd import ExactPairKD
from dskd_align.torch.heads import check_head, check_hidden, lm_logits
from dskd_align.torch.losses import (
    CHUNK_SIZE,
    DualSpaceKDLoss,
    gold_cross_entropy,
    identity_alignment,
)
from dskd_align.torch.set_kd import SetKD

__all__ = ["LOSS_NAMES", "DistillationLoss", "VanillaKD", "build_loss"]

LOSS_NAMES = ("sft", "dskd", "kd", "exact_kd", "chunk_kd", "exact_kd+chunk_kd", "dskd+exact_kd",
              "byte_kd", "byte_sets")  # fmt: skip
_OPTIONS = {
    "dskd": {"student_space", "teacher_space", "frozen_student_head"},
    "exact_kd": {"unmapped", "space"},
    "chunk_kd": {"chunk_loss", "chunk_weight"},
    "byte_kd": {"crossing"},
    "byte_sets": {"crossing", "student_boundary", "tight_extensions", "branch", "unfiltered"},
}


class VanillaKD(nn.Module):
    """KD part of "kd": ``D(softmax(z_t/tau) || softmax(z_s/tau))`` at every label position of a
    shared vocabulary (the first ``min(V_t, V_s)`` ids: padding rows of the larger head are
    dropped), mean over positions; rows in chunks."""

    def __init__(self, *, tau: float = 1.0, divergence: str = "forward_kl", chunk_size: Any = 256
                 ) -> None:  # fmt: skip
        super().__init__()
        self.div, self.tau, self.chunk_size = get_divergence(divergence), tau, chunk_size

    def _chunk(self, h_t: Tensor, h_s: Tensor, W_t: Tensor, W_s: Tensor, b_t: Any, b_s: Any
               ) -> tuple[tuple, tuple]:  # fmt: skip
        v = min(W_t.shape[0], W_s.shape[0])
        z_t, z_s = lm_logits(h_t, W_t, b_t)[:, :v], lm_logits(h_s, W_s, b_s)[:, :v]  # [n, v]
        return (self.div(z_s, z_t, self.tau).sum(),), ()

    def kd(self, batch: Mapping[str, Tensor], student_hidden: Tensor, teacher_hidden: Tensor,
           W_s: Tensor, W_t: Tensor, b_s: Tensor | None = None, b_t: Tensor | None = None
           ) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        if teacher_hidden.shape[:2] != student_hidden.shape[:2]:
            raise ValueError(
                f"kd compares position by position: teacher_hidden {tuple(teacher_hidden.shape)}"
                f" and student_hidden {tuple(student_hidden.shape)} must share [B, L] (one "
                "tokenizer); for two tokenizers use exact_kd, chunk_kd or dskd"
            )
        b, p, _ = identity_alignment(batch["student_labels"])
        bias_t = None if b_t is None else b_t.detach()
        rows = [teacher_hidden.detach()[b, p], student_hidden[b, p]]  # [N, d_t], [N, d_s]
        (s,), _ = chunked_sums(
            self._chunk, 1, rows, [W_t.detach(), W_s, bias_t, b_s], self.chunk_size
        )
        n = torch.tensor(b.shape[0], device=b.device)
        kd = s / n.clamp_min(1)
        return kd, {"kd": kd.detach(), "n_aligned": n}


class _DSKDPart(nn.Module):
    """DSKD's ``KD_stu + CE_t2s + KD_tea`` as a part (owns the projectors)."""

    def __init__(self, loss: DualSpaceKDLoss) -> None:
        super().__init__()
        self.dskd = loss

    def kd(self, batch: Mapping[str, Tensor], student_hidden: Tensor, teacher_hidden: Tensor,
           W_s: Tensor, W_t: Tensor, b_s: Tensor | None = None, b_t: Tensor | None = None
           ) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        align = (batch["align_batch"], batch["align_teacher_pos"], batch["align_student_pos"])
        return self.dskd.kd_part(student_hidden, teacher_hidden, W_s, W_t, align, b_s, b_t)


class DistillationLoss(nn.Module):
    """``(1 - alpha) * ce_gold + alpha * sum_k weight_k * KD_k`` over named KD parts.

    ``parts``: name -> module with ``kd(batch, h_s, h_t, W_s, W_t, b_s, b_t) -> (kd, metrics)``;
    ``weights``: name -> float (1.0 when absent). No part: the gold CE alone ("sft").
    """

    def __init__(self, parts: Mapping[str, nn.Module], *, alpha: float = 0.5,
                 weights: Mapping[str, float] | None = None, chunk_size: Any = CHUNK_SIZE
                 ) -> None:  # fmt: skip
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.parts = nn.ModuleDict(dict(parts))
        self.alpha = alpha if self.parts else 0.0
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in self.parts}
        self.chunk_size = chunk_size

    def forward_batch(
        self,
        batch: Mapping[str, Tensor],
        student_hidden: Tensor,
        teacher_hidden: Tensor | None,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor | None,
        *,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss ``[]`` float32 and detached 0-dim metrics (no device sync here).

        Hidden states ``[B, L, d]`` (last hidden states, any float dtype), heads ``[V, d]``,
        biases ``[V]`` or None; ``batch`` a DSKDBatch-like mapping.
        """
        W_s, b_s = student_lm_head_weight, student_lm_head_bias
        check_head(W_s, b_s, "student")
        check_hidden(student_hidden, W_s, "student")
        use_kd = self.alpha > 0.0
        if use_kd:
            if teacher_lm_head_weight is None:
                raise ValueError("teacher_lm_head_weight is None but alpha > 0 needs the teacher")
            check_head(teacher_lm_head_weight, teacher_lm_head_bias, "teacher")
            check_hidden(teacher_hidden, teacher_lm_head_weight, "teacher")
        args = (batch, student_hidden, teacher_hidden, W_s, teacher_lm_head_weight, b_s,
                teacher_lm_head_bias)  # fmt: skip
        done: dict[str, Tensor] = {}
        metrics: dict[str, Tensor] = {}
        chunk_part = self.parts["chunk_kd"] if "chunk_kd" in self.parts else None
        if chunk_part is not None and 0.0 < self.alpha < 1.0:
            # chunk_kd already runs the student head over every position: the gold CE comes
            # out of the same pass (one vocabulary matmul saved).
            done["chunk_kd"], m, (ce_gold, n_gold) = chunk_part.kd_and_gold(*args)
            metrics.update(m)
        else:
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.alpha < 1.0):
                ce_gold, n_gold = gold_cross_entropy(
                    student_hidden, W_s, batch["student_labels"], self.chunk_size, b_s
                )
        metrics.update(ce_gold=ce_gold.detach(), n_gold=n_gold)
        loss = ce_gold
        if use_kd:
            kd = ce_gold.new_zeros(())
            for name, part in self.parts.items():
                if name in done:
                    k = done[name]
                else:
                    k, m = part.kd(*args)
                    metrics.update(m)
                kd = kd + self.weights[name] * k
            metrics["kd_total"] = kd.detach()
            loss = kd if self.alpha == 1.0 else (1.0 - self.alpha) * ce_gold + self.alpha * kd
        metrics["loss"] = loss.detach()
        if batch.get("coverage") is not None:
            metrics["coverage"] = torch.as_tensor(batch["coverage"], dtype=torch.float32).mean()
        return loss, metrics


def _is_identity(vocab: Any, v_t: int, v_s: int) -> bool:
    t2s = vocab.t2s.long().cpu()
    ids = torch.arange(t2s.numel())
    want = ids.masked_fill(ids >= v_s, -1)
    return bool(t2s.numel() == v_t and torch.equal(t2s, want))


def build_loss(
    name: str,
    teacher_lm_head_weight: Tensor | None,
    student_lm_head_weight: Tensor,
    vocab: Any = None,
    *,
    alpha: float = 0.5,
    tau: float | None = None,
    divergence: str = "forward_kl",
    chunk_size: int | None = CHUNK_SIZE,
    **options: Any,
) -> nn.Module:
    """The loss module called ``name`` (one of ``LOSS_NAMES``; module notes for the options).

    Heads are ``nn.Linear`` weights ``[V, d]`` (the teacher's may be None for "sft"); ``vocab``
    a ``VocabMap`` (None: one shared vocabulary; "byte_kd": the pair's ``ByteTables``;
    "byte_sets": its ``SetTables``). Unknown
    names or options are a ValueError.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSS_NAMES}")
    kinds = set(name.split("+"))
    allowed = set().union(*(_OPTIONS.get(k, set()) for k in kinds))
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"loss {name!r} takes no option(s) {sorted(unknown)}; its options: {sorted(allowed)}"
        )
    get_divergence(divergence)  # fail here, not at the first step
    if name == "sft":
        return DistillationLoss({}, alpha=0.0, chunk_size=chunk_size)
    if teacher_lm_head_weight is None:
        raise ValueError(f"loss {name!r} needs teacher_lm_head_weight (the teacher's lm_head)")
    W_t, W_s = teacher_lm_head_weight, student_lm_head_weight
    check_head(W_t, None, "teacher")
    check_head(W_s, None, "student")
    tau_kd = 1.0 if tau is None else tau
    if name == "dskd":
        return DualSpaceKDLoss(W_t, W_s, vocab, alpha=alpha, tau=2.0 if tau is None else tau,
                               divergence=divergence, chunk_size=chunk_size, **options)  # fmt: skip
    parts: dict[str, nn.Module] = {}
    weights: dict[str, float] = {}
    if name == "kd":
        if vocab is not None and not _is_identity(vocab, W_t.shape[0], W_s.shape[0]):
            raise ValueError(
                "loss 'kd' needs one shared vocabulary, but vocab maps two different ones; use "
                "'exact_kd' (or 'chunk_kd', 'dskd') for a teacher and a student with different "
                "tokenizers, or pass vocab=None"
            )
        parts["kd"] = VanillaKD(tau=tau_kd, divergence=divergence, chunk_size=chunk_size)
    if "dskd" in kinds:
        keys = _OPTIONS["dskd"] & set(options)
        parts["dskd"] = _DSKDPart(DualSpaceKDLoss(
            W_t, W_s, vocab, alpha=alpha, tau=2.0 if tau is None else tau, divergence=divergence,
            chunk_size=chunk_size, **{k: options[k] for k in keys}))  # fmt: skip
    if "exact_kd" in kinds:
        parts["exact_kd"] = ExactPairKD(
            W_t.shape[0], W_s.shape[0], vocab, tau=tau_kd, divergence=divergence,
            chunk_size=chunk_size, unmapped=options.get("unmapped", "renormalize"),
            space=options.get("space", "student"),
        )  # fmt: skip
    if "chunk_kd" in kinds:
        parts["chunk_kd"] = ChunkKD(
            tau=tau_kd, chunk_loss=options.get("chunk_loss", "binary_kl"), chunk_size=chunk_size
        )
        weights["chunk_kd"] = float(options.get("chunk_weight", 1.0))
    if "byte_kd" in kinds or "byte_sets" in kinds:
        kind = "byte_kd" if "byte_kd" in kinds else "byte_sets"
        if divergence != "forward_kl":
            raise ValueError(
                f"{kind}'s KD is KL(q || p_s): divergence must be 'forward_kl', got {divergence!r}"
            )
        if kind == "byte_kd":
            part = ByteKD(vocab, tau=tau_kd, crossing=options.get("crossing", "skip"),
                          chunk_size=chunk_size)  # fmt: skip
        else:
            part = SetKD(vocab, tau=tau_kd, crossing=options.get("crossing", "one_step"),
                         student_boundary=bool(options.get("student_boundary", True)),
                         tight_extensions=bool(options.get("tight_extensions", False)),
                         branch=bool(options.get("branch", False)),
                         unfiltered=str(options.get("unfiltered", "keep")),
                         chunk_size=chunk_size)  # fmt: skip
        sizes = (vocab.teacher_vocab_size, vocab.student_vocab_size)
        if sizes != (W_t.shape[0], W_s.shape[0]):
            raise ValueError(
                f"ByteTables are sized V_t={sizes[0]}, V_s={sizes[1]} but the heads have "
                f"{W_t.shape[0]} and {W_s.shape[0]} rows: build them with ByteTables.for_models"
            )
        parts[kind] = part
    loss = DistillationLoss(parts, alpha=alpha, weights=weights, chunk_size=chunk_size)
    return loss.to(W_s.device)
