"""Dual-space KD loss (DSKD.md), computed in row chunks so memory does not grow with N x V.

Memory: aligned rows are processed in chunks by ``chunked_sums`` (see ``chunked.py``), so
peak memory holds one chunk of ``[chunk, V]`` logits, not ``[N_aligned, V]``.

Layouts: ``*_lm_head_weight`` are ``nn.Linear`` weights ``[V, d]``; labels use the Hugging Face
layout (same positions as ``input_ids``, ``-100`` where unsupervised; the shift happens here).
Matmuls run in the heads' dtype (no float32 copy of a ``[V, d]`` head); every logit tensor is
upcast to float32 (float64 stays float64) before any softmax or reduction. Head biases are
supported (``heads.py``). ``alpha`` skips what it zeroes: at ``alpha=0`` no KD term is computed
(a ``-inf`` teacher row cannot turn into a NaN), at ``alpha=1`` the gold CE is computed without
gradient, for the metric only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dskd_align.torch.chunked import chunked_sums
from dskd_align.torch.divergences import Divergence, get_divergence
from dskd_align.torch.heads import check_head, check_hidden
from dskd_align.torch.heads import lm_logits as _logits
from dskd_align.torch.projector import StudentToTeacherProjector, t2s_projector_from_lm_heads

__all__ = [
    "CHUNK_SIZE",
    "DualSpaceKDLoss",
    "dskd_terms",
    "gold_cross_entropy",
    "identity_alignment",
]

CHUNK_SIZE = 256
IGNORE_INDEX = -100


def _detach(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach()


def _gold_ce_chunk(
    h_s: Tensor, targets: Tensor, W_s: Tensor, b_s: Tensor | None
) -> tuple[tuple, tuple]:
    """CE sum of student rows ``h_s`` ``[n, d_s]`` against ``targets`` ``[n]`` (-100 ignored)."""
    ce = F.cross_entropy(
        _logits(h_s, W_s, b_s), targets, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return (ce,), ((targets != IGNORE_INDEX).sum(),)


def _dskd_chunk(
    h_t: Tensor,
    h_s: Tensor,
    W_t: Tensor,
    W_s: Tensor,
    P_ts: Tensor | None,
    W_st: Tensor | None,
    b_t: Tensor | None,
    b_s: Tensor | None,
    t2s: Tensor,
    div: Divergence,
    tau: float,
) -> tuple[tuple, tuple]:
    """The three KD-side sums over ``n`` aligned rows, and the counts ``|A'|``, ``|G|``.

    ``h_t`` ``[n, d_t]`` (teacher, detached), ``h_s`` ``[n, d_s]``, ``W_t`` ``[V_t, d_t]``
    (frozen), ``W_s`` ``[V_s, d_s]``, ``P_ts`` ``[d_s, d_t]`` (the t->s ``nn.Linear`` weight, or
    None: no student space), ``W_st`` ``[d_s, d_t]`` (detached, or None: no teacher space),
    ``t2s`` ``[V_t]``; ``b_t`` (detached) / ``b_s`` head biases ``[V]`` or None.
    Returns ``((ce_t2s, kd_student_space, kd_teacher_space), (n_valid, n_agree))``.
    """
    z_t = _logits(h_t, W_t, b_t)  # [n, V_t]
    zero = z_t.new_zeros(())
    ce_ts = kd_stu = kd_tea = zero
    n_valid = n_agree = torch.zeros((), dtype=torch.long, device=z_t.device)
    if P_ts is not None:
        y = t2s[z_t.argmax(-1)]  # [n] student ids; -1: the teacher's argmax has no student twin
        valid = y >= 0
        # Student space: the student head is detached so only the projector learns from CE.
        z_ts = _logits(
            h_t.to(P_ts.dtype) @ P_ts.T, W_s.detach(), _detach(b_s)
        )  # [n, d_s] -> [n, V_s]
        ce_ts = F.cross_entropy(
            z_ts, y.masked_fill(~valid, IGNORE_INDEX), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        agree = valid & (z_ts.argmax(-1) == y)  # G: the projected teacher predicts y
        d = div(_logits(h_s, W_s, b_s), z_ts.detach(), tau)  # [n]; target side detached
        kd_stu = torch.where(agree, d, zero).sum()
        n_valid, n_agree = valid.sum(), agree.sum()
    if W_st is not None:
        # Teacher space: frozen teacher head; gradient reaches the student body through h_s.
        z_st = _logits(h_s.to(W_st.dtype) @ W_st, W_t, b_t)  # [n, d_t] -> [n, V_t]
        kd_tea = div(z_st, z_t, tau).sum()
    return (ce_ts, kd_stu, kd_tea), (n_valid, n_agree)


def gold_cross_entropy(
    student_hidden: Tensor,
    student_lm_head_weight: Tensor,
    labels: Tensor,
    chunk_size: int | None = CHUNK_SIZE,
    student_lm_head_bias: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean next-token CE of the student on its gold labels, and the number of labels.

    ``student_hidden`` ``[B, L, d_s]``, ``student_lm_head_weight`` ``[V_s, d_s]`` (bias ``[V_s]``
    or None), ``labels`` ``[B, L]`` (Hugging Face layout). Only supervised rows are gathered,
    then chunked. Returns ``(ce [] float32, n [] int64)``; ``ce`` is 0 when nothing is supervised.
    """
    targets = labels[:, 1:]  # [B, L-1]: logits at p predict token p+1
    b, p = (targets != IGNORE_INDEX).nonzero(as_tuple=True)  # [N_gold] each
    rows = student_hidden[b, p]  # [N_gold, d_s]
    (ce,), (n,) = chunked_sums(
        _gold_ce_chunk,
        1,
        [rows, targets[b, p]],
        [student_lm_head_weight, student_lm_head_bias],
        chunk_size,
    )
    return ce / n.clamp_min(1), n


def dskd_terms(
    teacher_rows: Tensor,
    student_rows: Tensor,
    teacher_lm_head_weight: Tensor,
    student_lm_head_weight: Tensor,
    t2s_weight: Tensor | None,
    s2t_matrix: Tensor | None,
    t2s: Tensor,
    *,
    divergence: str = "forward_kl",
    tau: float = 2.0,
    chunk_size: int | None = CHUNK_SIZE,
    teacher_lm_head_bias: Tensor | None = None,
    student_lm_head_bias: Tensor | None = None,
) -> dict[str, Tensor]:
    """The KD-side terms of DSKD.md at ``A`` aligned rows, each normalized by its own set.

    ``teacher_rows`` ``[A, d_t]`` and ``student_rows`` ``[A, d_s]`` are the last hidden states at
    the aligned prediction positions; heads ``[V, d]``; ``t2s_weight`` the t->s projector weight
    ``[d_s, d_t]`` (None: no student space); ``s2t_matrix`` ``W^{s->t}`` ``[d_s, d_t]`` (None: no
    teacher space); ``t2s`` ``[V_t]`` int64; head biases ``[V]`` or None. The teacher side is
    detached here.
    Returns float32 scalars ``ce_t2s`` (over A'), ``kd_student_space`` (over G),
    ``kd_teacher_space`` (over A) and int64 counts ``n_aligned``, ``n_valid``, ``n_agree``.
    """
    if t2s.shape[0] != teacher_lm_head_weight.shape[0]:
        raise ValueError(
            f"t2s has {t2s.shape[0]} rows but the teacher head has "
            f"{teacher_lm_head_weight.shape[0]} (pad t2s with -1 up to the head's row count)"
        )
    s2t = s2t_matrix.detach() if s2t_matrix is not None else None
    shared = [teacher_lm_head_weight.detach(), student_lm_head_weight, t2s_weight, s2t]
    shared += [_detach(teacher_lm_head_bias), student_lm_head_bias]

    div = get_divergence(divergence)

    def fn(h_t: Tensor, h_s: Tensor, W_t: Tensor, W_s: Tensor, P: Any, S: Any, bt: Any,
           bs: Any) -> Any:  # fmt: skip
        return _dskd_chunk(h_t, h_s, W_t, W_s, P, S, bt, bs, t2s, div, tau)

    (ce_ts, kd_stu, kd_tea), (n_valid, n_agree) = chunked_sums(
        fn, 3, [teacher_rows.detach(), student_rows], shared, chunk_size
    )
    n_aligned = torch.tensor(student_rows.shape[0], device=student_rows.device)
    return {
        "ce_t2s": ce_ts / n_valid.clamp_min(1),
        "kd_student_space": kd_stu / n_agree.clamp_min(1),
        "kd_teacher_space": kd_tea / n_aligned.clamp_min(1),
        "n_aligned": n_aligned,
        "n_valid": n_valid,
        "n_agree": n_agree,
    }


def identity_alignment(labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Same-vocabulary alignment: every supervised prediction position pairs with itself.

    ``labels`` ``[B, L]`` (Hugging Face layout). Returns ``(align_batch, teacher_pos,
    student_pos)``, each ``[A]`` int64, with ``teacher_pos == student_pos``.
    """
    b, p = (labels[:, 1:] != IGNORE_INDEX).nonzero(as_tuple=True)  # logits at p predict p+1
    return b, p, p


class _IdentityVocab:
    """O = the whole vocabulary (the first ``min(V_t, V_s)`` ids), for same-vocabulary DSKD."""

    def __init__(self, v_teacher: int, v_student: int, device: torch.device) -> None:
        v = min(v_teacher, v_student)
        self.overlap_teacher_ids = self.overlap_student_ids = torch.arange(v, device=device)
        ids = torch.arange(v_teacher, device=device)
        self.t2s = ids.masked_fill(ids >= v_student, -1)  # padded head rows have no twin


class DualSpaceKDLoss(nn.Module):
    """``L = (1-alpha) CE_gold + alpha (KD_stu + CE_t2s + KD_tea)`` (DSKD.md), chunked.

    Owns the trainable t->s projector (``nn.Linear(d_t, d_s)``, initialized to
    ``W^t_O pinv(W^s_O)``; give it its own learning rate with ``projector_param_group(loss)``) and
    the s->t projector (``W^s_O pinv(W^t_O)``, rebuilt from the detached student head each call).
    The heads are *not* stored: pass the current ``lm_head.weight`` tensors ``[V, d]`` to
    ``forward``. ``vocab`` is a VocabMap-like object (``overlap_teacher_ids``,
    ``overlap_student_ids``, ``t2s`` ``[V_t]``); ``None`` means one shared vocabulary.
    """

    def __init__(
        self,
        teacher_lm_head_weight: Tensor,
        student_lm_head_weight: Tensor,
        vocab: Any = None,
        *,
        alpha: float = 0.5,
        tau: float = 2.0,
        divergence: str = "forward_kl",
        student_space: bool = True,
        teacher_space: bool = True,
        chunk_size: int | None = CHUNK_SIZE,
        frozen_student_head: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        get_divergence(divergence)  # fail at construction, not at the first step
        self.alpha, self.tau, self.divergence, self.chunk_size = alpha, tau, divergence, chunk_size
        if vocab is None:
            vocab = _IdentityVocab(
                teacher_lm_head_weight.shape[0],
                student_lm_head_weight.shape[0],
                teacher_lm_head_weight.device,
            )
        if vocab.t2s.shape[0] != teacher_lm_head_weight.shape[0]:
            raise ValueError(
                f"vocab.t2s has {vocab.t2s.shape[0]} rows but the teacher head has "
                f"{teacher_lm_head_weight.shape[0]}: build the VocabMap with teacher_vocab_size="
                "the head's row count (or pad t2s with -1 up to it)"
            )
        self.register_buffer("t2s", vocab.t2s.to(torch.long).clone(), persistent=False)
        self.t2s_projector = (
            t2s_projector_from_lm_heads(teacher_lm_head_weight, student_lm_head_weight, vocab)
            if student_space
            else None
        )
        self.s2t_projector = (
            StudentToTeacherProjector.from_lm_heads(
                teacher_lm_head_weight, vocab, frozen_student_head=frozen_student_head
            )
            if teacher_space
            else None
        )

    def kd_part(
        self,
        student_hidden: Tensor,
        teacher_hidden: Tensor,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        align: tuple[Tensor, Tensor, Tensor],
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``KD_stu + CE_t2s + KD_tea`` ``[]`` and its terms at the pairs ``align`` (3 x [A])."""
        align_batch, align_teacher_pos, align_student_pos = align
        teacher_rows = teacher_hidden.detach()[align_batch, align_teacher_pos]  # [A, d_t]
        student_rows = student_hidden[align_batch, align_student_pos]  # [A, d_s]
        s2t = (
            self.s2t_projector.matrix_from_lm_head(student_lm_head_weight)
            if self.s2t_projector is not None
            else None
        )
        terms = dskd_terms(
            teacher_rows,
            student_rows,
            teacher_lm_head_weight,
            student_lm_head_weight,
            self.t2s_projector.weight if self.t2s_projector is not None else None,
            s2t,
            self.t2s.to(student_rows.device),  # a no-op once the module was moved with .to()
            divergence=self.divergence,
            tau=self.tau,
            chunk_size=self.chunk_size,
            teacher_lm_head_bias=teacher_lm_head_bias,
            student_lm_head_bias=student_lm_head_bias,
        )
        kd = terms["kd_student_space"] + terms["ce_t2s"] + terms["kd_teacher_space"]
        metrics = {k: v.detach() for k, v in terms.items()}
        metrics["agreement"] = terms["n_agree"] / terms["n_valid"].clamp_min(1)
        return kd, metrics

    def forward(
        self,
        student_hidden: Tensor,
        teacher_hidden: Tensor | None,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        student_labels: Tensor,
        align_batch: Tensor | None = None,
        align_teacher_pos: Tensor | None = None,
        align_student_pos: Tensor | None = None,
        coverage: Tensor | float | None = None,
        *,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss ``[]`` float32 and detached metrics (0-dim tensors: no device sync here).

        ``student_hidden`` ``[B, L_s, d_s]`` and ``teacher_hidden`` ``[B, L_t, d_t]`` are last
        hidden states (any float dtype; the teacher's may be None when ``alpha == 0``); heads
        ``[V, d]`` and optional biases ``[V]``; ``student_labels`` ``[B, L_s]``; ``align_*``
        ``[A]`` int64 prediction positions from the collator (None: same vocabulary, identity
        alignment over the student's label positions); ``coverage`` ``[B]`` or a number
        (reported as its mean). Teacher inputs are detached.
        """
        check_head(student_lm_head_weight, student_lm_head_bias, "student")
        check_head(teacher_lm_head_weight, teacher_lm_head_bias, "teacher")
        check_hidden(student_hidden, student_lm_head_weight, "student")
        if align_batch is None or align_teacher_pos is None or align_student_pos is None:
            align_batch, align_teacher_pos, align_student_pos = identity_alignment(student_labels)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.alpha < 1.0):
            ce_gold, n_gold = gold_cross_entropy(
                student_hidden,
                student_lm_head_weight,
                student_labels,
                self.chunk_size,
                student_lm_head_bias,
            )
        zero = ce_gold.new_zeros(())
        if self.alpha > 0.0:
            check_hidden(teacher_hidden, teacher_lm_head_weight, "teacher")
            kd, kd_metrics = self.kd_part(
                student_hidden,
                teacher_hidden,
                student_lm_head_weight,
                teacher_lm_head_weight,
                (align_batch, align_teacher_pos, align_student_pos),
                student_lm_head_bias,
                teacher_lm_head_bias,
            )
            loss = (1.0 - self.alpha) * ce_gold + self.alpha * kd if self.alpha < 1.0 else kd
        else:  # alpha = 0: the KD terms are not computed at all (reported as 0)
            loss = ce_gold
            count = torch.zeros((), dtype=torch.long, device=ce_gold.device)
            kd_metrics = dict.fromkeys(("ce_t2s", "kd_student_space", "kd_teacher_space"), zero)
            kd_metrics.update(n_aligned=align_batch.new_tensor(align_batch.shape[0]))
            kd_metrics.update(n_valid=count, n_agree=count, agreement=zero)
        metrics = {"loss": loss.detach(), "ce_gold": ce_gold.detach(), "n_gold": n_gold}
        metrics.update(kd_metrics)
        if coverage is not None:
            # The collator gives one coverage per row [B]; report the batch mean.
            metrics["coverage"] = torch.as_tensor(coverage, dtype=torch.float32).mean()
        return loss, metrics

    def forward_batch(
        self,
        batch: Mapping[str, Tensor],
        student_hidden: Tensor,
        teacher_hidden: Tensor | None,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        *,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``forward`` with labels and alignment taken from a collator batch dict."""
        return self(
            student_hidden,
            teacher_hidden,
            student_lm_head_weight,
            teacher_lm_head_weight,
            batch["student_labels"],
            batch.get("align_batch"),
            batch.get("align_teacher_pos"),
            batch.get("align_student_pos"),
            batch.get("coverage"),
            student_lm_head_bias=student_lm_head_bias,
            teacher_lm_head_bias=teacher_lm_head_bias,
        )
