"""An experimental variant of ``byte_kd`` for ``gap_closure.py``: the teacher's one-step outcomes
as *sets* of consistent student tokens ("byte_kd_sets"; not a library loss).

Why: ``byte_kd`` gives the mass of a teacher outcome (a token ``v`` that extends the bytes
written so far, remainder ``R``; or, at a shared boundary, the next token ``w``, ``R = bytes(w)``)
to one student token, ``first(R)``, the longest student token that is a prefix of ``R``. But the
student's real next token after that text is ``first(R + what follows)``, which is ``first(R)``
*or any student token that strictly extends R* (``,`` + ``\\n`` written by the teacher as two
tokens, ``,\\n`` by the student as one). One step of teacher lookahead cannot say which, so
``byte_kd`` is biased towards short student tokens: on the demo 29 % of the teacher's mass at
shared boundaries (``p(k) p'(w)``) is on a ``w`` whose bytes some longer student token extends
(64 train rows of seed 0).

Here each outcome class ``R`` keeps its mass ``q_R`` (the same ``q~`` as ``byte_kd``, grouped by
``R`` instead of ``first(R)``, then normalized), and the student is scored on the set
``C(R) = {first(R)} + {u : bytes(u) strictly extends R}``:

    KD = sum_R q_R (log q_R - log p_s(C(R))),    p_s(C) = sum_{u in C} p_s(u)

the likelihood of the teacher's outcome under the student, with the student free to split the
mass inside ``C(R)`` (an EM-style target: where ``R`` is unambiguous, ``C(R) = {first(R)}`` and
this is ``byte_kd``'s KL). Crossing student tokens are consistent with their class, so
``crossing="one_step"`` trains them without lookahead. Teacher specials keep their twin:
``C = {t2s[w]}``.

``student_boundary=True`` also conditions on the **student's** boundary, the mirror of the
teacher-boundary problem: the student wrote ``u_prev`` and stopped, so (its tokenizer being
longest-match) the text does not go on with any ``X`` that makes ``bytes(u_prev) + X`` a student
token; classes ``R`` that start with such an ``X`` are dropped before normalizing (the student
rightly gives them ~0, and KD would push them up). Where the student's own text shows that its
tokenizer was not longest-match at that boundary (a longer token matches what follows: ~1-2 % of
targets) the target is left unfiltered. With the teacher's tokenizer on both sides and
longest-match segmentation, this drops every extension of the previous token, so the mass left
is vanilla KD's ``p'`` (each ``w`` scored on its set ``C(bytes(w))``, which ``tight`` narrows).
Built for the demo's vocabularies (dense ``[classes, V_s]`` and ``[V_s, classes]`` tables; at
real vocabulary sizes the sets are ranges of the byte-sorted student vocabulary, which a library
version could use).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dskd_align.torch.byte_kd import ByteKD
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import byte_targets
from dskd_align.torch.heads import lm_logits
from dskd_align.torch.objectives import DistillationLoss

__all__ = ["SetByteKD", "build_set_loss", "class_tables"]


def _bytes(lens: Tensor, off: Tensor, flat: Tensor, i: int) -> bytes:
    return bytes(flat[int(off[i]) : int(off[i]) + int(lens[i])].tolist())


def class_tables(tables: ByteTables, sets: bool = True, tight: bool = False
                 ) -> tuple[ByteTables, Tensor]:  # fmt: skip
    """A copy of ``tables`` whose ``ext_u`` and ``pm`` hold outcome-class ids instead of student
    ids, and the membership ``[classes, V_s]`` (float32, 1 where the student token is in C).
    ``sets=False``: ``C(R) = {first(R)}`` only (``byte_kd``'s target; an ablation).
    ``tight``: the classes of the next teacher token ``w`` (boundary part) are their own, and
    their sets leave out every student token ``u`` that a teacher token longer than ``w`` also
    starts (bytes(w) < bytes(t) <= bytes(u)): had the text gone on as ``u``, the teacher would
    have written that longer token, not ``w`` (the teacher's boundary, read as longest-match)."""
    v_t, v_s = tables.teacher_vocab_size, tables.student_vocab_size
    tb = [_bytes(tables.t_len, tables.t_off, tables.t_bytes, i) for i in range(v_t)]
    # Length of every prefix id (the flat layout: prefix_id[t_off[g] + m - 1] has m bytes).
    pid_len = np.zeros(int(tables.ext_ptr.numel()) - 1, np.int64)
    for g in range(v_t):
        o = int(tables.t_off[g])
        for m in range(1, int(tables.t_len[g]) + 1):
            pid_len[int(tables.prefix_id[o + m - 1])] = m
    counts = (tables.ext_ptr[1:] - tables.ext_ptr[:-1]).numpy()
    entry_pid = np.repeat(np.arange(counts.size), counts)
    classes: dict[Any, int] = {}
    members: list[set[int]] = []

    def cls(key: Any, first: int) -> int:
        c = classes.get(key)
        if c is None:
            c = classes[key] = len(members)
            members.append({first})
        return c

    ext_c = np.empty(tables.num_extensions, np.int64)
    for j, (v, pid) in enumerate(zip(tables.ext_v.tolist(), entry_pid.tolist(), strict=True)):
        ext_c[j] = cls(tb[v][pid_len[pid] :], int(tables.ext_u[j]))
    pm_c = torch.full((v_t,), -1, dtype=torch.long)
    for w in range(v_t):
        u = int(tables.pm[w])
        if u >= 0:
            key = ("next", tb[w]) if tight and tb[w] else tb[w]
            pm_c[w] = cls(key if tb[w] else ("special", u), u)
    # Strict extensions: every student token joins the class of each of its proper prefixes.
    t_set = set(tb)
    for s, u in tables._first.rep.items() if sets else ():
        for k in range(1, len(s)):
            c = classes.get(s[:k])
            if c is not None:
                members[c].add(u)
            c = classes.get(("next", s[:k]))
            if c is not None and not any(s[:j] in t_set for j in range(k + 1, len(s) + 1)):
                members[c].add(u)
    member = torch.zeros(len(members), v_s)
    for c, us in enumerate(members):
        member[c, list(us)] = 1.0
    out = copy.copy(tables)
    out.ext_u, out.pm = torch.from_numpy(ext_c), pm_c
    out.class_keys = list(classes)
    return out, member


def _student_bytes(tables: ByteTables) -> list[bytes]:
    return [_bytes(tables.s_len, tables.s_off, tables.s_bytes, i)
            for i in range(tables.student_vocab_size)]  # fmt: skip


def longer_suffixes(tables: ByteTables) -> dict[bytes, list[bytes]]:
    """bytes(u) -> every ``X`` such that ``bytes(u) + X`` is a student token (X not empty)."""
    out: dict[bytes, list[bytes]] = {}
    for t in tables._first.rep:
        for k in range(1, len(t)):
            if t[:k] in tables._first.rep:
                out.setdefault(t[:k], []).append(t[k:])
    return out


def boundary_conflicts(tables: ByteTables, ct: ByteTables, n_cls: int) -> Tensor:
    """``[V_s, classes]`` bool: after the student token ``u_prev`` (row), the outcome class ``R``
    would have made a longest-match student write a longer token than ``u_prev``."""
    by_prefix: dict[bytes, list[int]] = {}
    for c, key in enumerate(ct.class_keys):
        key = key[1] if isinstance(key, tuple) and key[0] == "next" else key
        if isinstance(key, bytes):
            for j in range(1, len(key) + 1):
                by_prefix.setdefault(key[:j], []).append(c)
    longer = longer_suffixes(tables)
    bad = torch.zeros(tables.student_vocab_size, n_cls, dtype=torch.bool)
    for i, sb in enumerate(_student_bytes(tables)):
        for x in longer.get(sb, ()) if sb else ():
            bad[i, by_prefix.get(x, [])] = True
    return bad


class SetByteKD(ByteKD):
    """``byte_kd`` with outcome classes scored on their consistent sets (module notes)."""

    def __init__(self, tables: ByteTables, *, student_boundary: bool = False, sets: bool = True,
                 tight: bool = False, **kw: Any) -> None:  # fmt: skip
        super().__init__(tables, **kw)
        self.cls_tables, member = class_tables(tables, sets, tight)
        n_cls = member.shape[0]
        self.register_buffer("member", member, persistent=False)
        pm = self.cls_tables.pm
        self.register_buffer("pm_full", pm.masked_fill(pm < 0, n_cls), persistent=False)
        self.student_boundary = student_boundary
        if student_boundary:
            self.register_buffer("conflict", boundary_conflicts(tables, self.cls_tables, n_cls),
                                 persistent=False)  # fmt: skip
            self._longer = longer_suffixes(tables)
            self._sb = _student_bytes(tables)
        self._prev = torch.zeros(0, dtype=torch.long)

    def _targets(self, batch: Any, device: torch.device) -> dict[str, Tensor]:
        # The batch's own targets carry student ids; class ids come from the class tables.
        tg = byte_targets(batch, self.cls_tables)
        if self.student_boundary:
            self._prev = self._previous_tokens(batch, tg)
        return tg

    def _previous_tokens(self, batch: Any, tg: dict[str, Tensor]) -> Tensor:
        """Per target, the student token that ends where it starts, or -1 where the student's
        own text shows that its tokenizer is not longest-match there (a longer student token
        matches the text that follows): then the filter would drop the true continuation."""
        ids = batch["student_input_ids"]
        b, sp = tg["byte_batch"].tolist(), tg["byte_student_pos"].tolist()
        out = []
        for r, p in zip(b, sp, strict=True):
            u = int(ids[r, p])
            rest = b"".join(self._sb[int(v)] for v in ids[r, p + 1 : p + 17].tolist())
            clash = any(rest.startswith(x) for x in self._longer.get(self._sb[u], ()))
            out.append(-1 if clash else u)
        return torch.tensor(out, dtype=torch.long)

    def _chunk(self, h_t: Tensor, h_t2: Tensor, h_t3: Tensor, h_s: Tensor, g: Tensor, w: Tensor,
               rid: Tensor, cx: Tensor, W_t: Tensor, W_s: Tensor, b_t: Any, b_s: Any,
               pm_full: Tensor, e_row: Tensor, e_v: Tensor, e_u: Tensor
               ) -> tuple[tuple, tuple]:  # fmt: skip
        n, n_cls = h_s.shape[0], self.member.shape[0]
        with torch.no_grad():
            p = torch.softmax(lm_logits(h_t, W_t, b_t).div_(self.tau), -1)
            q = p.new_zeros(n * n_cls + 1)
            if n:
                local = e_row - rid[:1]
                ok = (local >= 0) & (local < n)
                li = local.clamp(0, n - 1)
                src = torch.where(ok, p[li, e_v], 0.0)
                q.index_add_(0, torch.where(ok, li * n_cls + e_u, n * n_cls), src)
            q = q[: n * n_cls].view(n, n_cls)
            p_k = torch.where(g >= 0, p.gather(1, g.clamp_min(0)[:, None])[:, 0], 0.0)
            p2 = torch.softmax(lm_logits(h_t2, W_t, b_t).div_(self.tau), -1)
            q.add_(p_k[:, None] * p2.new_zeros(n, n_cls + 1).index_add_(1, pm_full, p2)[:, :n_cls])
            if self.student_boundary:  # the student's own boundary rules these classes out
                prev = self._prev.to(q.device)[rid]
                q.masked_fill_(self.conflict[prev.clamp_min(0)] & (prev >= 0)[:, None], 0.0)
            mass = q.sum(-1)
            q.div_(mass.clamp_min(torch.finfo(q.dtype).tiny)[:, None])
            neg_ent = torch.xlogy(q, q).sum(-1)
        p_s = torch.softmax(lm_logits(h_s, W_s, b_s) / self.tau, -1)  # [n, V_s]
        log_c = torch.log((p_s @ self.member.T).clamp_min(1e-30))  # [n, classes]
        kl = neg_ent - (q * log_c).sum(-1)
        return ((kl * w).sum(),), ((mass * w).sum(),)


def build_set_loss(tables: ByteTables, *, alpha: float, tau: float = 1.0,
                   crossing: str = "one_step", **options: bool) -> DistillationLoss:  # fmt: skip
    """``(1 - alpha) CE + alpha KD`` with :class:`SetByteKD` (``crossing``: "skip"/"one_step";
    ``options``: ``student_boundary``, ``sets``, ``tight``)."""
    part = SetByteKD(tables, tau=tau, crossing=crossing, **options)
    return DistillationLoss({"byte_kd": part}, alpha=alpha)
