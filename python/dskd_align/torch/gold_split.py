"""EXPERIMENT (issue 9): split the gold next-token class's set with the teacher's next gold state.

At a shared boundary the next-token class ``w`` is scored on its tight set
``C(w) = {first(w)} + {student tokens strictly extending w} - tight children``; the split inside
``C(w)`` is information the set target cannot pass. For the *gold* class ``w_g`` (the teacher's
real next token) the batch holds the teacher's state after ``w_g``, ``p3``. A member ``u`` of
``C(w_g)`` with ``bytes(u) = bytes(w_g) + X`` is what a longest-match student writes when the text
after ``w_g`` starts with ``X`` and with no longer member's ``X``: ``S(X) = sum of p3 over the
teacher tokens that start with X`` (one step of lookahead), ``pi_u = S(X_u) - sum of S over u's
maximal longer members``, ``pi_first = 1 - A - sum of S over the top-level members``. ``A`` is the
mass of teacher tokens that are proper prefixes of a top-level ``X`` (ambiguous after one step):
it stays on the whole set. The gold class's term ``q_g log p_s(C)`` becomes
``q_g (sum_u pi_u log p_s(u) + A log p_s(C))``.

Prototype: the per-target members are built in Python per batch (cached per teacher token).
"""

from __future__ import annotations

import bisect
from typing import Any

import torch
from torch import Tensor

from dskd_align.torch.set_tables import SetTables, _with_prefix

GOLD_FIELDS = ("gs_tok", "gs_row", "gs_u", "gs_xlo", "gs_xhi", "gs_parent", "ga_row", "ga_lo",
               "ga_hi")  # fmt: skip


class GoldSplitTables:
    """Per teacher token ``w``: the members of ``C(w)`` with their ``X`` ranges (lazily)."""

    def __init__(self, tables: SetTables) -> None:
        self.tb = tables._bytes("t")
        self.rep = tables._first.rep
        self.s_keys = sorted(self.rep)
        ids = [w for w, b in enumerate(self.tb) if b]
        ids.sort(key=lambda w: self.tb[w])
        self.t_sorted = torch.tensor(ids, dtype=torch.long)
        self.t_keys = [self.tb[w] for w in ids]
        self.t_set = set(self.t_keys)
        self.next_lo, self.next_hi = tables.next_lo.tolist(), tables.next_hi.tolist()
        self.first = tables.pm.tolist()
        kids: dict[int, list[tuple[int, int]]] = {}
        for w, lo, hi in zip(tables.child_parent.tolist(), tables.child_lo.tolist(),
                             tables.child_hi.tolist(), strict=True):  # fmt: skip
            kids.setdefault(w, []).append((lo, hi))
        self.kids = kids
        self._cache: dict[int, Any] = {}

    def members(self, w: int) -> Any:
        """``([(u, xlo, xhi, parent)], [(alo, ahi)])``: member 0 is ``first(w)`` (parent -2);
        parents index this list (-1: top level); ``None`` if the set has < 2 members."""
        if w in self._cache:
            return self._cache[w]
        b, out = self.tb[w], None
        lo, hi = self.next_lo[w], self.next_hi[w]
        cut = self.kids.get(w, [])
        ext = [r for r in range(lo, hi) if not any(c0 <= r < c1 for c0, c1 in cut)]
        if self.first[w] >= 0 and ext:
            mem: list[tuple[int, int, int, int]] = [(self.first[w], 0, 0, -2)]
            xs: list[bytes] = [b""]
            stack: list[int] = []  # members whose X is a prefix of the current one
            for r in ext:  # byte order: a member's longer members follow it
                ub = self.s_keys[r]
                x = ub[len(b) :]
                while stack and not x.startswith(xs[stack[-1]]):
                    stack.pop()
                xlo, xhi = _with_prefix(self.t_keys, x)
                mem.append((self.rep[ub], xlo, xhi, stack[-1] if stack else -1))
                xs.append(x)
                stack.append(len(mem) - 1)
            amb = set()
            for i, (_, _, _, par) in enumerate(mem):
                if par == -1:
                    x = xs[i]
                    for k in range(1, len(x)):
                        if x[:k] in self.t_set:
                            amb.add(x[:k])
            ranges = [(bisect.bisect_left(self.t_keys, a), bisect.bisect_right(self.t_keys, a))
                      for a in sorted(amb)]  # fmt: skip
            out = (mem, ranges)
        self._cache[w] = out
        return out

    def fields(self, batch: Any, tg: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per target ``gs_tok`` (``w_g`` or -1) and the member / ambiguous entries, by target."""
        ids, att = batch["teacher_input_ids"].cpu(), batch["teacher_attention_mask"].cpu()
        b, tp = tg["byte_batch"].cpu().tolist(), tg["byte_teacher_pos"].cpu().tolist()
        tok, br = tg["byte_token"].cpu().tolist(), tg["set_branch_token"].cpu().tolist()
        n_l = ids.shape[1]
        gs_tok, rows, us, xlo, xhi, par, a_row, a_lo, a_hi = ([] for _ in range(9))
        for i, (r, p, k, x) in enumerate(zip(b, tp, tok, br, strict=True)):
            wg = -1
            if k >= 0 and x < 0 and p + 2 < n_l and int(att[r, p + 2]):
                wg = int(ids[r, p + 2])
                m = self.members(wg)
                if m is None:
                    wg = -1
                else:
                    base = len(rows)
                    for u, lo, hi, pa in m[0]:
                        rows.append(i)
                        us.append(u)
                        xlo.append(lo)
                        xhi.append(hi)
                        par.append(pa + base if pa >= 0 else pa)
                    for lo, hi in m[1]:
                        a_row.append(i)
                        a_lo.append(lo)
                        a_hi.append(hi)
            gs_tok.append(wg)
        dev = tg["byte_batch"].device
        t = lambda xs: torch.tensor(xs, dtype=torch.long, device=dev)  # noqa: E731
        return {"gs_tok": t(gs_tok), "gs_row": t(rows), "gs_u": t(us), "gs_xlo": t(xlo),
                "gs_xhi": t(xhi), "gs_parent": t(par), "ga_row": t(a_row), "ga_lo": t(a_lo),
                "ga_hi": t(a_hi)}  # fmt: skip


def gold_split_terms(p3: Tensor, t_sorted: Tensor, gq: Tensor, log_ps: Tensor, li: Tensor,
                     u: Tensor, xlo: Tensor, xhi: Tensor, parent: Tensor, a_li: Tensor,
                     a_lo: Tensor, a_hi: Tensor) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(d_neg_ent [n], d_ce [n])`` for ``n`` target rows: the gold class's split (module notes).
    ``p3 [n, V_t]`` (no grad), ``gq [n]`` the gold class's normalized mass (0: no split),
    ``log_ps [n, V_s]`` the student's log-probabilities (grad); members local to the chunk."""
    n = p3.shape[0]
    with torch.no_grad():
        cum = torch.cat([p3.new_zeros(n, 1, dtype=torch.float64),
                         p3.index_select(1, t_sorted).double().cumsum(1)], 1)  # fmt: skip
        s = cum[li, xhi] - cum[li, xlo]  # [M]; first members: 0 (xlo = xhi = 0)
        amb = cum.new_zeros(n).index_add_(0, a_li, cum[a_li, a_hi] - cum[a_li, a_lo])
        top = parent == -1
        first = parent == -2
        nested = parent >= 0
        child = cum.new_zeros(s.shape[0]).index_add_(0, parent.clamp_min(0)[nested], s[nested])
        top_sum = cum.new_zeros(n).index_add_(0, li[top], s[top])
        pi = torch.where(first, (1.0 - amb - top_sum)[li], s - child).clamp_min(0.0)
        tot = cum.new_zeros(n).index_add_(0, li, pi) + amb
        tot = tot.clamp_min(1e-30)
        pi = pi / tot[li]
        amb = amb / tot
        has = cum.new_zeros(n).index_add_(0, li, torch.ones_like(pi)) > 0
        gq = torch.where(has, gq.double(), 0.0)
        d_neg = gq * (
            cum.new_zeros(n).index_add_(0, li, torch.xlogy(pi, pi)) + torch.xlogy(amb, amb)
        )
    lp_u = log_ps[li, u]  # [M]
    log_c = torch.logsumexp(
        torch.full((n, max(int(u.numel()), 1)), -torch.inf, dtype=log_ps.dtype,
                   device=log_ps.device).index_put((li, _slot(li)), lp_u), 1)  # fmt: skip
    d_ce = gq.to(log_ps.dtype) * log_ps.new_zeros(n).index_add(
        0, li, pi.to(log_ps.dtype) * (lp_u - log_c[li])
    )
    return d_neg.to(log_ps.dtype), torch.where(gq > 0, d_ce, 0.0)


def _slot(li: Tensor) -> Tensor:
    """Each entry's index among its row's entries (entries sorted by row)."""
    n = li.numel()
    if n == 0:
        return li
    start = torch.ones_like(li, dtype=torch.bool)
    start[1:] = li[1:] != li[:-1]
    idx = torch.arange(n, device=li.device)
    first = torch.cummax(torch.where(start, idx, 0), 0).values
    return idx - first
