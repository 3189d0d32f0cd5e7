"""KD at the exact pairs through the byte-canonical vocabulary map ("exact_kd").

At every exact pair (ALIGNMENT.md: a teacher token and a student token that stand for the same
bytes at the same place, given as prediction positions ``align_batch/align_teacher_pos/
align_student_pos``) the two models predict the same text, so their next-token distributions can
be compared directly once they live on one vocabulary. No projector, nothing to train besides
the student: this is what made the issue's probe recover most of the same-tokenizer KD gain.

Student space (default): the teacher's distribution ``p = softmax(z_t / tau)`` is pushed onto
the student's ids through ``VocabMap.t2s``: ``p'[v] = sum_{i : t2s[i] = v} p[i]`` (several teacher
ids with the same bytes may share one student twin). Then ``D(p' || q)`` with
``q = softmax(z_s / tau)``, ``D`` any registered divergence.

Teacher mass on ids with no student twin (``t2s == -1``), the ``unmapped`` rule:

- ``"renormalize"`` (default): that mass is dropped and ``p'`` renormalized over the mapped ids;
  the student keeps its full distribution, so its own mass on ids no teacher id maps to is
  pushed down by the forward KL (target 0 there). This is the issue's probe (57 % gap closure
  with forward KL, tau 1). With divergences weighted by the student (reverse KL, AKL) those
  zero-target ids count as probability ``tiny`` (divergences.py) -- large terms; prefer
  ``"other"`` with them.
- ``"other"``: one extra "other" event on both sides: the teacher's unmapped mass against the
  student's mass on ids that are no teacher id's twin. Both sides are then full distributions
  over the same ``V_s + 1`` events and every divergence is well defined; nothing is thrown away.

Teacher space (``space="teacher"``, or ``"both"`` for the sum of the two): the mirror. The
student's distribution is pushed onto teacher ids through ``VocabMap.s2t`` (differentiable), and
compared with the teacher's ``p`` under the same rule (``"renormalize"``: both restricted to the
teacher ids that are some student id's twin and renormalized; ``"other"``: the extra event).

Memory: rows in chunks through ``chunked_sums``: one chunk of ``[chunk, V]`` logits at a time,
never ``[A, V]`` for all rows. No host sync: the maps' index sets are fixed at construction.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from dskd_align.torch.chunked import chunked_sums
from dskd_align.torch.divergences import get_divergence
from dskd_align.torch.heads import lm_logits
from dskd_align.torch.losses import identity_alignment

__all__ = ["UNMAPPED_RULES", "ExactPairKD", "SPACES", "identity_maps"]

UNMAPPED_RULES = ("renormalize", "other")
SPACES = ("student", "teacher", "both")


def identity_maps(v_teacher: int, v_student: int) -> tuple[Tensor, Tensor]:
    """``(t2s [V_t], s2t [V_s])`` of one shared vocabulary (padding rows map to -1)."""
    t2s = torch.arange(v_teacher)
    s2t = torch.arange(v_student)
    return t2s.masked_fill(t2s >= v_student, -1), s2t.masked_fill(s2t >= v_teacher, -1)


def _push(p: Tensor, index: Tensor, n_out: int) -> Tensor:
    """``p`` ``[n, V_from]`` added up by ``index`` ``[V_from]`` (values ``0..n_out``; ``n_out``
    collects the ids with no twin) -> ``[n, n_out + 1]``. No ``[n, |mapped|]`` gather copy."""
    return p.new_zeros((p.shape[0], n_out + 1)).index_add(1, index, p)


def _safe_log(x: Tensor) -> Tensor:
    """``log`` with exact zeros as ``log(tiny)``: ``log 0`` would make a NaN gradient; callers
    mask the entries that must be ``-inf`` (outside the map's image) themselves."""
    return x.clamp_min(torch.finfo(x.dtype).tiny).log()


def _log_mass(lp: Tensor, mask: Tensor, any_set: bool) -> Tensor:
    """``log sum_{mask} exp(lp)`` per row ``[n, 1]``; ``-inf`` (no graph) when ``mask`` is empty."""
    if not any_set:
        return lp.new_full((lp.shape[0], 1), -math.inf)
    return lp.masked_fill(~mask, -math.inf).logsumexp(-1, keepdim=True)


class ExactPairKD(nn.Module):
    """The KD part of "exact_kd" (module notes); ``kd(...)`` returns ``(kd [], metrics)``.

    ``vocab``: a VocabMap-like object with ``t2s [V_t]`` and ``s2t [V_s]`` (None: one shared
    vocabulary of ``min(V_t, V_s)`` ids). ``tau``: temperature of both distributions.
    """

    def __init__(
        self,
        teacher_vocab_size: int,
        student_vocab_size: int,
        vocab: Any = None,
        *,
        tau: float = 1.0,
        divergence: str = "forward_kl",
        unmapped: str = "renormalize",
        space: str = "student",
        chunk_size: int | None = 256,
    ) -> None:
        super().__init__()
        if unmapped not in UNMAPPED_RULES:
            raise ValueError(f"unmapped must be one of {UNMAPPED_RULES}, got {unmapped!r}")
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.div = get_divergence(divergence)
        self.tau, self.unmapped, self.space, self.chunk_size = tau, unmapped, space, chunk_size
        if vocab is None:
            t2s, s2t = identity_maps(teacher_vocab_size, student_vocab_size)
        else:
            t2s, s2t = vocab.t2s.long().cpu(), getattr(vocab, "s2t", None)
            if s2t is None:
                raise ValueError("vocab has no s2t map; pass a dskd_align.torch.VocabMap")
            s2t = s2t.long().cpu()
        if (t2s.numel(), s2t.numel()) != (teacher_vocab_size, student_vocab_size):
            raise ValueError(
                f"vocab maps are [V_t={t2s.numel()}], [V_s={s2t.numel()}] but the heads have "
                f"{teacher_vocab_size} and {student_vocab_size} rows; build the VocabMap with "
                "teacher_vocab_size=/student_vocab_size= the models' head rows"
            )
        # Static index sets (computed once here, so the step needs no data-dependent nonzero).
        # *_full: the map with "no twin" sent to one extra column (V of the other side).
        t_full = t2s.masked_fill(t2s < 0, student_vocab_size)  # [V_t] in 0..V_s
        s_full = s2t.masked_fill(s2t < 0, teacher_vocab_size)  # [V_s] in 0..V_t
        # Which columns of a pushed [n, V + 1] tensor can hold mass: the map's image, and the
        # extra column when some id has no twin.
        s_image = torch.zeros(student_vocab_size + 1, dtype=torch.bool)
        s_image[t_full] = True  # [V_s + 1]
        t_image = torch.zeros(teacher_vocab_size + 1, dtype=torch.bool)
        t_image[s_full] = True  # [V_t + 1]
        for name, t in (("t_full", t_full), ("s_full", s_full), ("s_image", s_image),
                        ("t_image", t_image), ("t2s", t2s)):  # fmt: skip
            self.register_buffer(name, t, persistent=False)
        self.register_buffer("t_none", (t2s < 0).to(torch.float32), persistent=False)
        self._any = {  # does each "other" set have a member (Python bools, fixed)
            "s_outside": bool(not s_image[:-1].all()),
            "t_outside": bool(not t_image[:-1].all()),
        }

    def _pair(self, stu: Tensor, tgt: Tensor) -> Tensor:
        """``D`` per row of two log-probability tensors ``[n, V']``; 0 for a row whose target
        has no mass (only possible under "renormalize")."""
        ok = torch.isfinite(tgt.amax(-1))  # [n]
        d = self.div(stu, torch.where(ok[:, None], tgt, 0.0), 1.0)  # [n]
        return torch.where(ok, d, 0.0)

    def _student_space(self, lp_t: Tensor, lp_s: Tensor) -> Tensor:
        """``[n, V_t]``, ``[n, V_s]`` log-probs -> ``D`` per row ``[n]`` on student ids."""
        v_s = lp_s.shape[1]
        with torch.no_grad():  # the target: the teacher pushed onto student ids (+ "other")
            tgt = _push(lp_t.exp(), self.t_full, v_s).clamp_min_(torch.finfo(lp_t.dtype).tiny)
            tgt = tgt.log_().masked_fill_(~self.s_image, -math.inf)  # [n, V_s + 1]
        if self.unmapped == "renormalize":
            return self._pair(lp_s, tgt[:, :v_s])
        s_other = _log_mass(lp_s, ~self.s_image[:v_s], self._any["s_outside"])  # [n, 1]
        stu = torch.cat([lp_s.masked_fill(~self.s_image[:v_s], -math.inf), s_other], 1)
        return self._pair(stu, tgt)  # [n, V_s + 1] each

    def _teacher_space(self, lp_t: Tensor, lp_s: Tensor) -> Tensor:
        """The mirror: student pushed onto teacher ids, ``D`` per row ``[n]``."""
        v_t = lp_t.shape[1]
        stu = _safe_log(_push(lp_s.exp(), self.s_full, v_t))  # [n, V_t + 1], differentiable
        stu = stu.masked_fill(~self.t_image, -math.inf)
        tgt = lp_t.masked_fill(~self.t_image[:v_t], -math.inf)  # [n, V_t], no graph
        if self.unmapped == "renormalize":
            return self._pair(stu[:, :v_t], tgt)
        t_other = _log_mass(lp_t, ~self.t_image[:v_t], self._any["t_outside"])
        return self._pair(stu, torch.cat([tgt, t_other], 1))  # [n, V_t + 1] each

    def _chunk(self, h_t: Tensor, h_s: Tensor, W_t: Tensor, W_s: Tensor, b_t: Any, b_s: Any
               ) -> tuple[tuple, tuple]:  # fmt: skip
        """Sums over ``n`` pair rows: ``((kd_student_space, kd_teacher_space), (top1 matches,
        teacher mass without a student twin))``."""
        with torch.no_grad():  # the teacher is frozen: no graph, temporaries freed at once
            lp_t = torch.log_softmax(lm_logits(h_t, W_t, b_t).div_(self.tau), -1)  # [n, V_t]
        z_s = lm_logits(h_s, W_s, b_s)  # [n, V_s]
        lp_s = torch.log_softmax(z_s / self.tau, -1)
        zero = z_s.new_zeros(())
        stu = self._student_space(lp_t, lp_s).sum() if self.space != "teacher" else zero
        tea = self._teacher_space(lp_t, lp_s).sum() if self.space != "student" else zero
        with torch.no_grad():
            top1 = (self.t2s[lp_t.argmax(-1)] == z_s.argmax(-1)).sum()
            lost = (lp_t.exp() @ self.t_none.to(lp_t.dtype)).sum()  # mass without a twin
        return (stu, tea), (top1, lost)

    def kd(
        self,
        batch: Any,
        student_hidden: Tensor,
        teacher_hidden: Tensor,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """KD part ``[]`` (mean over pairs of the chosen space(s), summed) and its metrics."""
        if batch.get("align_batch") is None:  # one shared tokenizer: every label position
            b, pt, ps = identity_alignment(batch["student_labels"])
        else:
            b, pt = batch["align_batch"], batch["align_teacher_pos"]
            ps = batch["align_student_pos"]
        rows_t = teacher_hidden.detach()[b, pt]  # [A, d_t]
        rows_s = student_hidden[b, ps]  # [A, d_s]
        bias_t = None if teacher_lm_head_bias is None else teacher_lm_head_bias.detach()
        shared = [teacher_lm_head_weight.detach(), student_lm_head_weight, bias_t,
                  student_lm_head_bias]  # fmt: skip
        (stu, tea), (top1, lost) = chunked_sums(
            self._chunk, 2, [rows_t, rows_s], shared, self.chunk_size
        )
        n = torch.tensor(rows_s.shape[0], device=rows_s.device)  # [] int64, no sync
        denom = n.clamp_min(1)
        kd_stu, kd_tea = stu / denom, tea / denom
        metrics = {
            "kd_exact": (kd_stu + kd_tea).detach(),
            "n_aligned": n,
            "top1_agreement": top1 / denom,
            "unmapped_teacher_mass": (lost / denom).float(),
        }
        if self.space != "teacher":
            metrics["kd_exact_student_space"] = kd_stu.detach()
        if self.space != "student":
            metrics["kd_exact_teacher_space"] = kd_tea.detach()
        return kd_stu + kd_tea, metrics
