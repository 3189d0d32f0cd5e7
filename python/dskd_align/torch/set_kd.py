"""KD on the teacher's byte-level belief, scored on sets of consistent student tokens
("byte_sets": tight sets + the student's boundary).

Why: ``byte_kd`` (``byte_kd.py``) asks the teacher what the student's next token is given the
text so far, but two biases are left in its target (BENCHMARKS.md, "Longer runs, and the biases
left in byte_kd's target"), both the teacher-boundary problem of exact pairs in a smaller form:

1. **Short student tokens.** A teacher outcome with remainder ``R`` (an extension ``v`` of the
   written bytes, or the next token ``w`` at a shared boundary) goes to ``first(R)``; but the
   student's real next token is ``first(R + what follows)``: ``first(R)`` *or any student token
   that strictly extends R* (``,`` + ``\\n`` for the teacher, ``,\\n`` for the student). Here
   each outcome class keeps its mass ``q_R`` and the student is scored on its set
   ``C(R) = {first(R)} + {u : bytes(u) strictly extends R}``:

       KD = sum_R q_R (log q_R - log p_s(C(R))),      p_s(C) = sum_{u in C} p_s(u)

   (the likelihood of the teacher's outcome under the student, who may split the mass inside
   ``C(R)``; with ``C(R) = {first(R)}`` this is ``byte_kd``'s KL). **Tight** next-token sets:
   ``C(w)`` leaves out every student token that a teacher token longer than ``w`` starts (had
   the text gone on as that token, the teacher would have written the longer one, not ``w``).
2. **The student's own boundary.** The student wrote ``u_prev`` and stopped, so (longest match)
   the text does not go on with an ``X`` that makes ``bytes(u_prev) + X`` a student token; the
   teacher does not know that and puts mass there (after a lone ``▁``, on ``def``, where the
   student would have written ``▁def``). Those outcome classes are dropped before normalizing
   (``student_boundary=True``, the default), except where the student's own text shows its
   tokenizer was not longest-match there (``set_targets.py``). There ``unfiltered="teacher"``
   falls back on the teacher's boundary when it is shared: the teacher's extensions of the
   token before are dropped, its next-token outcomes kept. Why: the exception is mostly
   pre-tokenizer splits, such as a run of spaces cut before its last space (GPT-2's
   ``\\s+(?!\\S)``), where the text shows a longer whitespace token and the teacher's "the run
   goes on" mass slips through; with the teacher's own tokenizer the option makes the target
   the teacher's next-token distribution there, as in vanilla KD. It conditions on the
   teacher's boundary, so it is an option for where the filter has nothing to say.

3. **The teacher token that could end here** (``branch=True``, off by default; on in the demo).
   Inside a teacher token ``k`` the classes are only the extensions of the consumed bytes
   ``P``; the teacher's mass on ``P`` itself (then a new token at the boundary) needs the
   teacher's state after ``P``, which ``branch.py`` computes in the same teacher forward. The
   target then reads like one at a shared boundary with ``P`` as the token before.

**Teacher mass without a student twin**: an outcome no student token can start (``first`` is
-1), or a special token without a VocabMap twin, is dropped before normalizing (as in
``byte_kd``); a special token with a twin (EOS) scores its twin alone, ``C = {t2s[w]}``. A
target whose whole mass is dropped has ``q = 0`` and contributes 0. Crossing student tokens
(running past the teacher token they start in) are consistent with their class, so they are
trained without lookahead by default (``crossing="one_step"``; ``"skip"`` leaves them out).
Metrics: ``kd_byte``, ``n_byte_targets``, ``byte_coverage``, ``byte_teacher_mass`` (mean mass
kept, after the student-boundary filter).

How, without ``[classes, V_s]`` tables (``set_tables.py``): the sets are ranges of the
byte-sorted student vocabulary, so per chunk the student's probabilities are permuted into byte
order and summed cumulatively (float64, so that differences of nearby sums keep their digits),
and ``p_s(C)`` is ``p_s[first]`` plus range differences: one ``[n, V_t]`` gather for the
next-token classes (minus the tight child ranges, an ``index_add`` over at most ``V_t`` of them)
and one per extension entry. **Memory**: targets in row chunks (``chunked_sums``): one chunk
holds two ``[n, V_t]`` teacher blocks, ``[n, V_s]`` student logits, the ``[n, n_sorted]``
float64 cumulative sum and ``[n, V_t]`` float64 next-token sums (and an int32 mark array for the
student-boundary test), never ``[N, V]`` for all targets; each chunk reads its own rows' entries,
ruled-out ranges and child ranges (``chunked_sums``' ragged slices: one host sync per step for
the slice bounds). The per-batch fields come from the collator (``ByteKDCollator`` with
``SetTables``); a batch without them has them built here, which syncs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dskd_align.torch.byte_kd import ByteKD
from dskd_align.torch.byte_targets import BYTE_FIELDS
from dskd_align.torch.chunked import chunked_sums
from dskd_align.torch.heads import lm_logits
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import SET_FIELDS, set_targets

__all__ = ["SetKD"]

_BUFFERS = ("s_sorted", "ext_lo", "ext_hi", "ext_rank", "next_lo", "next_hi", "child_parent",
            "child_lo", "child_hi", "next_cls", "t_rep")  # fmt: skip


class SetKD(ByteKD):
    """The KD part of "byte_sets" (module notes); ``kd(...)`` returns ``(kd [], metrics)``.

    ``tables``: the pair's :class:`SetTables` (sized to the heads); ``tau``: temperature of both
    distributions; ``crossing``: "one_step" (default) or "skip"; ``student_boundary``: drop the
    outcomes the student's own boundary rules out (default True); ``tight_extensions``: the
    extension classes' sets read the teacher's boundary too (module notes); ``branch``: keep the
    "teacher token ends here" outcome at targets inside a teacher token (``branch.py``; the
    teacher's hidden states must then carry the branch states,
    :func:`~dskd_align.torch.branch.teacher_hidden_with_branches`, as ``DSKDTrainer`` does);
    ``unfiltered``: at the targets the student-boundary filter leaves alone, "keep" every
    outcome (default) or, at a shared boundary, "teacher": trust the teacher's boundary and drop
    its extensions of the token before (module notes).
    """

    def __init__(self, tables: SetTables, *, tau: float = 1.0, crossing: str = "one_step",
                 student_boundary: bool = True, tight_extensions: bool = False,
                 branch: bool = False, unfiltered: str = "keep",
                 chunk_size: int | None = 256) -> None:  # fmt: skip
        if not isinstance(tables, SetTables):
            raise TypeError(
                f"byte_sets needs the pair's SetTables as vocab, got {type(tables).__name__}: "
                "build it with SetTables.for_models(teacher_tok, student_tok, teacher, student)"
            )
        if crossing not in ("skip", "one_step"):
            raise ValueError(f"byte_sets: crossing must be 'skip' or 'one_step', got {crossing!r}")
        super().__init__(tables, tau=tau, crossing=crossing, chunk_size=chunk_size)
        self.student_boundary = bool(student_boundary)
        self.tight_extensions = bool(tight_extensions)
        self.branch = bool(branch)
        if unfiltered not in ("keep", "teacher"):
            raise ValueError(
                f"byte_sets: unfiltered must be 'keep' or 'teacher', got {unfiltered!r}"
            )
        self.unfiltered = unfiltered
        for name in _BUFFERS:
            self.register_buffer(f"_{name}", getattr(tables, name), persistent=False)
        self.rank_base = tables.rank_base
        # The teacher tokens in the order of their next-token outcome's rank (no outcome: last),
        # so that a target's ruled-out rank ranges are column segments (_ruled_out).
        rank = tables.next_rank.masked_fill(tables.next_rank < 0, self.rank_base)
        rank_sorted, order = torch.sort(rank)
        self.register_buffer("_rank_sorted", rank_sorted, persistent=False)
        self.register_buffer("_rank_unsort", torch.argsort(order), persistent=False)

    def targets(self, batch: Mapping[str, Any], device: torch.device) -> dict[str, Tensor]:
        """The batch's set-target fields: its own, else built here (one host sync)."""
        return self._targets(batch, device)

    def _targets(self, batch: Mapping[str, Any], device: torch.device) -> dict[str, Tensor]:
        names = BYTE_FIELDS + SET_FIELDS
        if all(k in batch for k in names):
            return {k: batch[k] for k in names}
        tables = self._on.get(device)
        if tables is None:
            tables = self._on[device] = self.tables.to(device)
        return set_targets(batch, tables)

    def _chunk(self, h_t: Tensor, h_t2: Tensor, h_s: Tensor, g: Tensor, w: Tensor, rid: Tensor,
               W_t: Tensor, W_s: Tensor, b_t: Any, b_s: Any, e_row: Tensor, e_v: Tensor,
               e_u: Tensor, e_idx: Tensor, e_ok: Tensor, e_gid: Tensor, sb_lo: Tensor,
               sb_hi: Tensor, c_ent: Tensor, c_lo: Tensor, c_hi: Tensor
               ) -> tuple[tuple, tuple]:  # fmt: skip
        """Sums over ``n`` target rows: ``((sum w * KL,), (sum w * mass,))``."""
        n, v_t = h_s.shape[0], W_t.shape[0]
        with torch.no_grad():  # the target: teacher only
            p = torch.softmax(lm_logits(h_t, W_t, b_t).div_(self.tau), -1)  # [n, V_t]
            local = e_row - rid[:1]  # chunked_sums slices the entries: 0 <= local < n (guard)
            ok = (local >= 0) & (local < n) & e_ok
            li = local.clamp(0, max(n - 1, 0))
            pe = torch.where(ok, p[li, e_v], 0.0) if n else p.new_zeros(e_v.shape)  # [E]
            row_e = torch.where(ok, li, n)  # n: the spare slot of filtered-out entries
            p_k = torch.where(g >= 0, p.gather(1, g.clamp_min(0)[:, None])[:, 0], 0.0)  # [n]
            p2 = torch.softmax(lm_logits(h_t2, W_t, b_t).div_(self.tau), -1)
            qn = p_k[:, None] * p2.masked_fill_((self._next_cls < 0)[None, :], 0.0)  # [n, V_t]
            if self.student_boundary:
                qn.masked_fill_(self._ruled_out(rid, sb_lo, sb_hi), 0.0)
            mass = qn.sum(-1) + p.new_zeros(n + 1).index_add_(0, row_e, pe)[:n]  # [n]
            inv = 1.0 / mass.clamp_min(torch.finfo(mass.dtype).tiny)
            # The target's entropy over classes (same bytes = same class).
            ge = p.new_zeros(n * v_t + 1)
            ge.index_add_(0, torch.where(ok, li * v_t + self._t_rep[e_v], n * v_t), pe)
            ge = ge[: n * v_t].view(n, v_t).mul_(inv[:, None])
            ncls = self._next_cls.masked_fill(self._next_cls < 0, v_t)
            gn = p.new_zeros(n, v_t + 1).index_add_(1, ncls, qn)[:, :v_t].mul_(inv[:, None])
            neg_ent = torch.xlogy(ge, ge).sum(-1) + torch.xlogy(gn, gn).sum(-1)  # [n]
            del ge, gn, p, p2
            qn.mul_(inv[:, None])
            qe = pe * inv[li] if n else pe
        p_s = torch.softmax(lm_logits(h_s, W_s, b_s) / self.tau, -1)  # [n, V_s]
        # index_select, not advanced indexing: its backward is an index_add along the dim
        # (advanced indexing's is a sorted index_put, several times slower on CPU).
        cum = torch.cat([p_s.new_zeros(n, 1, dtype=torch.float64),
                         p_s.index_select(1, self._s_sorted).double().cumsum(-1)], 1)  # fmt: skip
        # Next-token classes: p_s[first(w)] + strict extensions of w - the tight child ranges.
        s_next = cum.index_select(1, self._next_hi) - cum.index_select(1, self._next_lo)
        s_child = cum.index_select(1, self._child_hi) - cum.index_select(1, self._child_lo)
        s_next = s_next.index_add(1, self._child_parent, s_child, alpha=-1.0)  # [n, V_t] f64
        first = self.pm_full.clamp_max(p_s.shape[1] - 1)  # -1 -> V_s -> clamped: q is 0 there
        p_first = p_s.index_select(1, first)
        log_next = torch.log((p_first + s_next.to(p_s.dtype)).clamp_min(1e-30))
        ce = (qn * log_next).sum(-1)  # [n]
        # Extension classes: p_s[first(R)] + strict extensions of R, per entry.
        lo_e, hi_e = self._ext_lo[e_idx], self._ext_hi[e_idx]
        if n:
            flat, w_c = cum.reshape(-1), cum.shape[1]  # entries: flat gathers (see above)
            s_e = flat.index_select(0, li * w_c + hi_e) - flat.index_select(0, li * w_c + lo_e)
            if self.tight_extensions and c_ent.numel():
                c_ent = c_ent - e_gid[:1]  # batch entry index -> this chunk's entries
                c_li = li[c_ent] * w_c
                s_c = flat.index_select(0, c_li + c_hi) - flat.index_select(0, c_li + c_lo)
                s_e = s_e.index_add(0, c_ent, torch.where(ok[c_ent], s_c, 0.0), alpha=-1.0)
            s_e = s_e.to(p_s.dtype)
            p_e = p_s.reshape(-1).index_select(0, li * p_s.shape[1] + e_u)
            log_e = torch.log((p_e + s_e).clamp_min(1e-30))
            ce = ce + p_s.new_zeros(n + 1).index_add(0, row_e, qe * log_e)[:n]
        kl = neg_ent - ce  # a row with no mass: q = 0, KL = 0
        return ((kl * w).sum(),), ((mass * w).sum(),)

    def _ragged(self, tg: Mapping[str, Tensor], e_ok: Tensor) -> list:
        """The per-entry groups that ``chunked_sums`` slices per chunk, each by its target row."""
        e_row, sb_lo, c_ent = tg["byte_entry_row"], tg["set_sb_lo"], tg["set_echild_entry"]
        # Each entry's index in the batch, so a chunk can rebase the child ranges' entry index;
        # only read with tight_extensions, else a stride-0 view (no memory).
        n_e = e_row.numel()
        e_gid = (torch.arange(n_e, device=e_row.device) if self.tight_extensions
                 else e_row.new_zeros(()).expand(n_e))  # fmt: skip
        entries = [e_row, tg["byte_entry_teacher"], tg["byte_entry_student"],
                   tg["set_entry_index"], e_ok, e_gid]  # fmt: skip
        return [("byte_entry_row", e_row, entries),
                ("set_sb_lo", torch.div(sb_lo, self.rank_base, rounding_mode="floor"),
                 [sb_lo, tg["set_sb_hi"]]),
                ("set_echild_entry", e_row[c_ent], [c_ent, tg["set_echild_lo"],
                                                    tg["set_echild_hi"]])]  # fmt: skip

    def _ruled_out(self, rid: Tensor, sb_lo: Tensor, sb_hi: Tensor) -> Tensor:
        """``[n, V_t]`` bool: the next-token outcomes that the chunk rows' ruled-out ranges
        (keys ``target x rank_base + rank``) hold. Each range becomes a segment of the rank-sorted
        teacher tokens, marked +1 / -1 and summed along the row: a pass over ``[n, V_t]``
        instead of a binary search over every range for each of its keys."""
        n, v, base = rid.numel(), self._rank_sorted.numel(), self.rank_base
        if n == 0:
            return torch.zeros(0, v, dtype=torch.bool, device=rid.device)
        target = torch.div(sb_lo, base, rounding_mode="floor")
        row = target - rid[:1]  # the chunk's rows are consecutive targets
        mine = (row >= 0) & (row < n)
        lo = torch.searchsorted(self._rank_sorted, sb_lo - target * base)
        hi = torch.searchsorted(self._rank_sorted, sb_hi - target * base)
        # Ranges outside the chunk (none once chunked_sums slices them; a guard) mark a spare
        # column past the end (+1 and -1 cancel there).
        w = v + 2
        lo = torch.where(mine, row * w + lo, w - 1)
        hi = torch.where(mine, row * w + hi, w - 1)
        mark = torch.zeros(n * w, dtype=torch.int32, device=rid.device)
        one = torch.ones_like(lo, dtype=torch.int32)
        mark.index_add_(0, lo, one).index_add_(0, hi, -one)
        inside = mark.view(n, w)[:, :v].cumsum(1, dtype=torch.int32) > 0
        return inside.index_select(1, self._rank_unsort)

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
        g, nxt = tg["byte_token"], tp + 1  # the next position: read only where g >= 0
        if self.branch:  # inside k: the branch token P and its state after the gold positions
            n_l, br = batch["teacher_input_ids"].shape[1], tg["set_branch_token"]
            if h_t.shape[1] == n_l and br.numel() and bool((br >= 0).any()):
                raise ValueError(
                    "byte_sets(branch=True) needs the teacher's branch states after its "
                    f"{n_l} positions, got teacher hidden states of {n_l}: compute them with "
                    "dskd_align.torch.branch.teacher_hidden_with_branches(teacher, batch) "
                    "(DSKDTrainer does), or set branch=False"
                )
            g = torch.where(br >= 0, br, g)
            nxt = torch.where(br >= 0, n_l + tg["set_branch_slot"], nxt)
        nxt = nxt.clamp_max(h_t.shape[1] - 1)
        w = torch.ones_like(sp, dtype=torch.float32)
        if self.crossing == "skip":
            w = w.masked_fill(tg["byte_crosses"], 0.0)
        rows = [h_t[b, tp], h_t[b, nxt], student_hidden[b, sp], g, w,
                torch.arange(sp.numel(), device=sp.device)]  # fmt: skip
        bias_t = None if teacher_lm_head_bias is None else teacher_lm_head_bias.detach()
        e_ok = tg["set_entry_sb_ok"]
        if not self.student_boundary:
            e_ok = torch.ones_like(e_ok)
        elif self.unfiltered == "teacher":  # the teacher's boundary where the filter is off
            trust = tg["set_unfiltered"] & (tg["byte_token"] >= 0)
            e_ok = e_ok & ~trust[tg["byte_entry_row"]]
        shared = [teacher_lm_head_weight.detach(), student_lm_head_weight, bias_t,
                  student_lm_head_bias]  # fmt: skip
        (s,), (mass,) = chunked_sums(self._chunk, 1, rows, shared, self.chunk_size,
                                     self._ragged(tg, e_ok))  # fmt: skip
        return self._mean(batch, s, mass, w)
