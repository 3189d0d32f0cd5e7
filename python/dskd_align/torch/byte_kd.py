"""KD on the teacher's byte-level belief about the student's next token ("byte_kd").

Why: at an exact pair the teacher's next-token distribution is conditioned on a teacher token
*boundary* the student does not have (after 15 spaces written as one teacher token, the teacher
says "the indentation ended"; a student that wrote 15 ``▁`` cannot know that and rightly keeps
mass on one more). KD at pairs pushes that mass to zero, and hurts (BENCHMARKS.md, "Gap
closure"). Here the teacher is asked what the student's next token is *given the text so far*.

For a student token starting at response byte ``a`` (``byte_targets.py``: which ones), let teacher
token ``k`` span ``[c, d)`` with ``c < a <= d``, ``P = text[c:a]`` the part of it already written,
``p`` the teacher's distribution (``softmax(z_t / tau)``) at the position predicting ``k`` and
``p'`` the one at the next position. With ``first(R)`` the student token a student starts ``R``
with (``ByteTables``: the longest student token that is a prefix of ``R``):

    q~[u] = sum_{v : bytes(v) = P + R, R != ""} p(v) [first(R) = u]
            + [d == a] p(k) sum_w p'(w) [pm(w) = u]         (pm(w) = first(bytes(w)); specials:
                                                              the VocabMap twin, EOS -> EOS)
    q = q~ / sum(q~)

(the teacher could still have gone on with a longer token; or, where its token ends at ``a``, it
goes on with its next token). Then ``KD = mean over targets of KL(q || softmax(z_s / tau))`` and
the loss ``(1 - alpha) CE + alpha KD`` (``DistillationLoss``).

Approximations: ``first()`` is longest match, not the student tokenizer's own segmentation; one
step of teacher lookahead, so a student token that runs past the end of the teacher token ``x``
it starts in cannot get its mass. ``crossing`` says what such a target does:

- ``"skip"`` (default): no target (9 % of the demo's student tokens);
- ``"one_step"``: trained towards the one-step ``q``, which lacks the student's token (it pushes
  the right token down; measured slightly worse);
- ``"two_step"``: a second step read off the text: of the mass ``M`` that ``q~`` gives ``x``
  (``p(k)`` when ``x = k``, ``p(k) p'(x)`` when ``x`` follows ``k``), the share the teacher gives
  the *observed* next token ``y`` after ``x`` moves from ``first(rest of x)`` to the student's
  token (``M p_after_x(y)``); continuations other than ``y`` stay where one step put them.

Metrics: ``kd_byte`` (the mean KL), ``n_byte_targets``, ``byte_coverage`` (targets / supervised
student tokens), ``byte_teacher_mass`` (mean ``sum(q~)``: how much of the teacher's probability
is consistent with the text written so far; low values mean the teacher's tokens often disagree
with the student's split).

Memory and syncs: targets in row chunks (``chunked_sums``): one chunk holds ``[n, V_t]`` teacher
and ``[n, V_s]`` student logits, never ``[N, V]`` for all targets; each chunk reads its own
rows' extension entries (``chunked_sums``' ragged slices: one host sync per step for the slice
bounds). Targets come from the batch when the collator built them (``ByteKDCollator``);
otherwise they are built here, which syncs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import BYTE_FIELDS, byte_targets
from dskd_align.torch.chunked import chunked_sums
from dskd_align.torch.heads import lm_logits

__all__ = ["CROSSING", "ByteKD"]

CROSSING = ("skip", "one_step", "two_step")


class ByteKD(nn.Module):
    """The KD part of "byte_kd" (module notes); ``kd(...)`` returns ``(kd [], metrics)``.

    ``tables``: the pair's :class:`ByteTables` (sized to the heads); ``tau``: temperature of both
    distributions; ``crossing``: ``CROSSING`` rule for student tokens that cross a teacher
    token's end (module notes).
    """

    def __init__(self, tables: ByteTables, *, tau: float = 1.0, crossing: str = "skip",
                 chunk_size: int | None = 256) -> None:  # fmt: skip
        super().__init__()
        if not isinstance(tables, ByteTables):
            raise TypeError(
                f"byte_kd needs the pair's ByteTables as vocab, got {type(tables).__name__}: "
                "build it with ByteTables.for_models(teacher_tok, student_tok, teacher, student)"
            )
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        if crossing not in CROSSING:
            raise ValueError(f"crossing must be one of {CROSSING}, got {crossing!r}")
        self.tau, self.crossing, self.chunk_size = float(tau), crossing, chunk_size
        self.tables = tables
        self._on: dict[torch.device, ByteTables] = {}
        v_s = tables.student_vocab_size
        # pm with "no student token" sent to an extra column V_s (dropped after the push).
        self.register_buffer("pm_full", tables.pm.masked_fill(tables.pm < 0, v_s),
                             persistent=False)  # fmt: skip

    def _targets(self, batch: Mapping[str, Any], device: torch.device) -> dict[str, Tensor]:
        if all(k in batch for k in BYTE_FIELDS):
            return {k: batch[k] for k in BYTE_FIELDS}
        tables = self._on.get(device)
        if tables is None:
            tables = self._on[device] = self.tables.to(device)
        return byte_targets(batch, tables)

    def _chunk(self, h_t: Tensor, h_t2: Tensor, h_t3: Tensor, h_s: Tensor, g: Tensor, w: Tensor,
               rid: Tensor, cx: Tensor, W_t: Tensor, W_s: Tensor, b_t: Any, b_s: Any,
               pm_full: Tensor, e_row: Tensor, e_v: Tensor, e_u: Tensor
               ) -> tuple[tuple, tuple]:  # fmt: skip
        """Sums over ``n`` target rows: ``((sum w * KL,), (sum w * mass,))``."""
        n, v_s = h_s.shape[0], W_s.shape[0]
        with torch.no_grad():  # the target: teacher only
            lp = torch.log_softmax(lm_logits(h_t, W_t, b_t).div_(self.tau), -1)
            p = lp.exp_()  # [n, V_t]
            q = p.new_zeros(n * v_s + 1)  # flat [n, V_s] and a spare slot (masked entries)
            if n:
                local = e_row - rid[:1]  # chunked_sums slices the entries: 0 <= local < n (guard)
                ok = (local >= 0) & (local < n)
                li = local.clamp(0, n - 1)
                src = torch.where(ok, p[li, e_v], 0.0)
                q.index_add_(0, torch.where(ok, li * v_s + e_u, n * v_s), src)
            q = q[: n * v_s].view(n, v_s)
            p_k = torch.where(g >= 0, p.gather(1, g.clamp_min(0)[:, None])[:, 0], 0.0)  # [n]
            p2 = torch.softmax(lm_logits(h_t2, W_t, b_t).div_(self.tau), -1)
            nxt = p2.new_zeros(n, v_s + 1).index_add_(1, pm_full, p2)[:, :v_s]
            q.add_(p_k[:, None] * nxt)
            if self.crossing == "two_step":
                self._second_step(q, p, p2, p_k, g, h_t3, W_t, b_t, cx)
            mass = q.sum(-1)  # [n]
            q.div_(mass.clamp_min(torch.finfo(q.dtype).tiny)[:, None])
            neg_ent = torch.xlogy(q, q).sum(-1)  # [n]
        lp_s = torch.log_softmax(lm_logits(h_s, W_s, b_s) / self.tau, -1)  # [n, V_s]
        kl = neg_ent - (q * lp_s).sum(-1)  # a row with no mass: q = 0, KL = 0
        return ((kl * w).sum(),), ((mass * w).sum(),)

    def _second_step(self, q: Tensor, p: Tensor, p2: Tensor, p_k: Tensor, g: Tensor,
                     h_t3: Tensor, W_t: Tensor, b_t: Any, cx: Tensor) -> None:  # fmt: skip
        """Moves, in place, ``M p_after_x(y)`` from ``first(rest of x)`` to the student's token
        on crossing rows (``cx [n, 4]``: x, y, from, to; -1 elsewhere)."""
        x, y, frm, to = (cx[:, i] for i in range(4))
        ok = to >= 0
        x0, y0 = x.clamp_min(0)[:, None], y.clamp_min(0)[:, None]
        mid = g < 0  # x is k itself; else x follows k and p2 is the distribution predicting it
        m = torch.where(mid, p.gather(1, x0)[:, 0], p_k * p2.gather(1, x0)[:, 0])
        lp3 = torch.log_softmax(lm_logits(h_t3, W_t, b_t).div_(self.tau), -1)
        after = torch.where(mid, p2.gather(1, y0)[:, 0], lp3.gather(1, y0)[:, 0].exp())
        mv = torch.where(ok, m * after, 0.0)[:, None]
        q.scatter_add_(1, frm.clamp_min(0)[:, None], -mv)
        q.scatter_add_(1, to.clamp_min(0)[:, None], mv)
        q.clamp_min_(0.0)  # rounding: the moved mass is part of what sits at ``frm``

    def kd(
        self,
        batch: Mapping[str, Any],
        student_hidden: Tensor,
        teacher_hidden: Tensor,
        student_lm_head_weight: Tensor,
        teacher_lm_head_weight: Tensor,
        student_lm_head_bias: Tensor | None = None,
        teacher_lm_head_bias: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """KD part ``[]`` (mean KL over the targets) and its metrics."""
        tg = self._targets(batch, student_hidden.device)
        b, sp, tp = tg["byte_batch"], tg["byte_student_pos"], tg["byte_teacher_pos"]
        h_t = teacher_hidden.detach()
        top = h_t.shape[1] - 1
        nxt = (tp + 1).clamp_max(top)  # read only where byte_token >= 0 or for two_step
        w = torch.ones_like(sp, dtype=torch.float32)
        if self.crossing == "skip":
            w = w.masked_fill(tg["byte_crosses"], 0.0)
        elif self.crossing == "two_step":  # crossing rows without a next teacher token: skip
            w = w.masked_fill(tg["byte_crosses"] & (tg["byte_cross_to"] < 0), 0.0)
        cx = torch.stack([tg[k] for k in ("byte_cross_x", "byte_cross_next", "byte_cross_from",
                                          "byte_cross_to")], 1)  # fmt: skip
        # The third teacher row (after x when x follows k) only for two_step: its own matmul.
        h3 = h_t[b, (tp + 2).clamp_max(top)] if self.crossing == "two_step" else h_t[b, nxt]
        rows = [h_t[b, tp], h_t[b, nxt], h3, student_hidden[b, sp], tg["byte_token"], w,
                torch.arange(sp.numel(), device=sp.device), cx]  # fmt: skip
        bias_t = None if teacher_lm_head_bias is None else teacher_lm_head_bias.detach()
        shared = [teacher_lm_head_weight.detach(), student_lm_head_weight, bias_t,
                  student_lm_head_bias, self.pm_full]  # fmt: skip
        e_row = tg["byte_entry_row"]  # each chunk gets its rows' entries (chunked.py, ragged)
        entries = ("byte_entry_row", e_row,
                   [e_row, tg["byte_entry_teacher"], tg["byte_entry_student"]])  # fmt: skip
        (s,), (mass,) = chunked_sums(self._chunk, 1, rows, shared, self.chunk_size, [entries])
        return self._mean(batch, s, mass, w)

    @staticmethod
    def _mean(batch: Mapping[str, Any], s: Tensor, mass: Tensor, w: Tensor
              ) -> tuple[Tensor, dict[str, Tensor]]:  # fmt: skip
        """The mean KL over the weighted targets, and the metrics (no host sync)."""
        n = w.sum()
        denom = n.clamp_min(1.0)
        kd = s / denom
        sup = batch.get("supervised_tokens")
        n_sup = sup.sum() if sup is not None else (batch["student_labels"] != -100).sum()
        metrics = {
            "kd_byte": kd.detach(),
            "n_byte_targets": n.detach(),
            "byte_coverage": (n / n_sup.clamp_min(1)).detach().float(),
            "byte_teacher_mass": (mass / denom).detach(),
        }
        return kd, metrics
