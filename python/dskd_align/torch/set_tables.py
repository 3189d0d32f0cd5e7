"""``SetTables``: the tables of ``byte_sets`` (``set_kd.py``), built once per tokenizer pair.

A :class:`~dskd_align.torch.ByteTables` (everything ``byte_kd`` reads) plus what the set
target needs, as flat index tensors, with no ``[classes, V_s]`` table: the sets are **ranges of
the byte-sorted student vocabulary**. Sort the student's distinct byte strings (one
representative id each, VocabMap's choice as in ``first()``); the tokens whose bytes strictly
extend a string ``R`` are then one contiguous range ``[lo, hi)`` of that order, so the student's
probability of a set is one gather of ``p_s[first(R)]`` plus a difference of a cumulative sum
(``set_kd.py``). Held here:

- ``s_sorted [n_rep]``: the representative student ids in byte order.
- **Extension classes** (per ``byte_kd`` extension entry ``j``, remainder ``R_j``):
  ``ext_lo``/``ext_hi``: the range of the strict extensions of ``R_j``;
  ``ext_rank``: the rank of ``R_j`` among the *outcome strings* (below).
- ``ext_cptr`` (CSR per entry), ``ext_clo``/``ext_chi``: for ``tight_extensions``, the ranges
  an extension ``v`` (``m`` bytes consumed) loses: the student tokens that start with
  ``bytes(t)[m:]`` for each teacher token ``t`` whose longest teacher-token prefix is ``v``.
- **Next-token classes** (per teacher id ``w``): ``next_lo``/``next_hi``: the strict extensions
  of ``bytes(w)``; ``child_parent``/``child_lo``/``child_hi``: the ranges to subtract (**tight**
  sets): every teacher token ``t`` whose longest proper teacher-token prefix is ``w`` removes
  the student tokens that start with ``bytes(t)`` (had the text gone on as such a token, the
  teacher would have written ``t``, not ``w``); each teacher token is the child of at most one
  byte string, so there are at most ``V_t`` of them. ``next_cls``: the class of ``w`` for the
  target's entropy (the lowest teacher id with the same bytes; a special token: the lowest with
  the same student twin; ``-1``: no student token starts it, its mass is dropped), ``next_rank``.
- ``t_rep [V_t]``: the lowest teacher id with the same bytes (extension classes of one target).
- ``prefix_token``: in ``ByteTables``' flat prefix layout, the (lowest) teacher id whose bytes
  are that prefix, else -1: the token ``P`` of the branch outcome (``branch=True``).
- **Student boundary** (``sb``): after the student wrote ``u``, a longest-match student would
  not go on with an ``X`` such that ``bytes(u) + X`` is a student token. The outcome strings
  (every suffix of every teacher token's bytes, sorted) starting with such an ``X`` form, per
  ``u``, a few disjoint rank ranges: ``sb_ptr [V_s + 1]`` (CSR), ``sb_lo``, ``sb_hi``, only the
  shortest ``X`` kept (longer ones fall inside its range). ``rank_base`` = outcome strings + 1.
- ``s_hash``: sorted 62-bit polynomial hashes of the student's byte strings, and ``s_maxlen``:
  the collator's test of whether the student's own text shows a longer match (then its
  tokenizer was not longest-match there, and the target is left unfiltered). Two moduli near
  2^31: a false "longer match" needs a collision of both (~1e-8 per batch at 150k tokens).

Built in Python once per pair (sorting and bisecting byte strings: linear-logarithmic in the
sum of the token lengths); a batch's per-target fields come from :meth:`SetTables.batch_targets`,
vectorized (``set_targets.py``).
"""

from __future__ import annotations

import bisect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dskd_align.torch.byte_tables import _TENSORS as _BYTE_TENSORS
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.vocab import VocabMap

__all__ = ["SetTables", "poly_hash"]

_SET_TENSORS = ("s_sorted", "ext_lo", "ext_hi", "ext_rank", "ext_cptr", "ext_clo", "ext_chi",
                "next_lo", "next_hi", "child_parent",
                "child_lo", "child_hi", "next_cls", "next_rank", "t_rep", "sb_ptr", "sb_lo",
                "sb_hi", "s_hash", "prefix_token")  # fmt: skip
P1, P2, BASE = 2147483647, 2147483629, 257


def poly_hash(b: bytes) -> int:
    """The 62-bit key of ``b`` (two polynomial hashes mod ``P1``/``P2``, bytes + 1)."""
    h1 = h2 = 0
    for x in b:
        h1, h2 = (h1 * BASE + x + 1) % P1, (h2 * BASE + x + 1) % P2
    return h1 * (1 << 31) + h2


def _upper(sorted_: list[bytes], x: bytes) -> int:
    """End of the range of strings that start with ``x`` (``x`` not empty)."""
    y = x.rstrip(b"\xff")
    if not y:
        return len(sorted_)
    return bisect.bisect_left(sorted_, y[:-1] + bytes([y[-1] + 1]))


def _strict(sorted_: list[bytes], x: bytes) -> tuple[int, int]:
    """``[lo, hi)`` of the strings that strictly extend ``x``."""
    return bisect.bisect_right(sorted_, x), _upper(sorted_, x)


def _with_prefix(sorted_: list[bytes], x: bytes) -> tuple[int, int]:
    """``[lo, hi)`` of the strings that start with ``x`` (``x`` included)."""
    return bisect.bisect_left(sorted_, x), _upper(sorted_, x)


def _long(xs: Any) -> Tensor:
    return torch.as_tensor(np.asarray(xs, dtype=np.int64).reshape(-1))


class SetTables(ByteTables):
    """:class:`ByteTables` plus the set tables of ``byte_sets`` (module notes).

    ``SetTables(teacher_tok, student_tok, vocab_map)`` or :meth:`for_models`; pass it to
    ``build_loss("byte_sets", W_t, W_s, tables)`` and to :class:`ByteKDCollator` (whose batches
    then carry the set fields too: :class:`~dskd_align.torch.set_targets.SetKDBatch`).
    """

    def __init__(self, teacher_tok: Any, student_tok: Any, vocab_map: VocabMap) -> None:
        super().__init__(teacher_tok, student_tok, vocab_map)
        self._build_sets()

    @classmethod
    def from_byte_tables(cls, tables: ByteTables) -> SetTables:
        """The set tables on top of existing byte tables (no tokenizer needed)."""
        out = cls.__new__(cls)
        out.__dict__.update(tables.__dict__)
        out._build_sets()
        return out

    def _bytes(self, side: str) -> list[bytes]:
        ln, off, flat = (getattr(self, f"{side}_{k}") for k in ("len", "off", "bytes"))
        raw = flat.numpy().tobytes()
        return [raw[o : o + n] for o, n in zip(off.tolist(), ln.tolist(), strict=True)]

    def _build_sets(self) -> None:
        tb, sb = self._bytes("t"), self._bytes("s")
        rep = self._first.rep  # bytes -> representative student id
        s_sorted = sorted(rep)
        self.s_sorted = _long([rep[b] for b in s_sorted])
        # Outcome strings: every suffix of every teacher token (remainders and whole tokens).
        outcomes = sorted({b[m:] for b in tb for m in range(len(b))})
        rank = {o: i for i, o in enumerate(outcomes)}
        self.rank_base = len(outcomes) + 1
        # Extension entries in ByteTables' order (the same loop, stable sort by prefix id).
        pids: dict[bytes, int] = {}
        rows: list[tuple[int, bytes, int]] = []
        for b in tb:
            for m in range(1, len(b)):
                p = pids.setdefault(b[:m], len(pids))
                if self._first(b[m:]) >= 0:
                    rows.append((p, b, m))
            if b:
                pids.setdefault(b, len(pids))
        order = np.argsort(np.array([r[0] for r in rows], np.int64), kind="stable")
        rem = [rows[i][1][rows[i][2] :] for i in order]
        assert len(rem) == self.num_extensions, "extension entries out of step with ByteTables"
        ext = [_strict(s_sorted, r) for r in rem]
        self.ext_lo, self.ext_hi = _long([e[0] for e in ext]), _long([e[1] for e in ext])
        self.ext_rank = _long([rank[r] for r in rem])
        # Next-token classes, tight sets.
        first_id: dict[bytes, int] = {}
        for w, b in enumerate(tb):
            if b:
                first_id.setdefault(b, w)
        pm = self.pm.tolist()
        twin_rep: dict[int, int] = {}
        nxt = [_strict(s_sorted, b) if b else (0, 0) for b in tb]
        self.next_lo, self.next_hi = _long([e[0] for e in nxt]), _long([e[1] for e in nxt])
        cls, rk = [], []
        for w, b in enumerate(tb):
            if pm[w] < 0:
                cls.append(-1)
            else:
                cls.append(first_id[b] if b else twin_rep.setdefault(pm[w], w))
            rk.append(rank[b] if b else -1)
        self.next_cls, self.next_rank = _long(cls), _long(rk)
        self.t_rep = _long([first_id[b] if b else w for w, b in enumerate(tb)])
        # The branch outcome (set_kd.py, branch=True): the teacher token whose bytes are the
        # first m bytes of v, at ByteTables' flat offset of (v, m) (-1: no such token).
        pt = np.full(int(self.t_len.sum()), -1, np.int64)
        for v, b in enumerate(tb):
            base = int(self.t_off[v])
            pt[base : base + len(b)] = [first_id.get(b[:m], -1) for m in range(1, len(b) + 1)]
        self.prefix_token = torch.from_numpy(pt)
        by_bytes: dict[bytes, list[int]] = {}
        for w, b in enumerate(tb):
            if b:
                by_bytes.setdefault(b, []).append(w)
        children = []
        kids: dict[bytes, list[bytes]] = {}
        for t in first_id:  # one child range per distinct teacher string with a teacher prefix
            parent = next((t[:k] for k in range(len(t) - 1, 0, -1) if t[:k] in first_id), None)
            if parent is not None:
                kids.setdefault(parent, []).append(t)
                lo, hi = _with_prefix(s_sorted, t)
                if hi > lo:
                    children += [(w, lo, hi) for w in by_bytes[parent]]
        ch = np.array(children, np.int64).reshape(-1, 3)
        self.child_parent, self.child_lo, self.child_hi = (_long(ch[:, i]) for i in range(3))
        # Tight extension sets (option): entry (v, m) loses the student tokens that start with
        # t[m:] for each teacher child t of v (CSR per entry).
        cptr, clo, chi = [0], [], []
        for i in order:
            _, b, m = rows[i]
            for t in kids.get(b, ()):
                lo, hi = _with_prefix(s_sorted, t[m:])
                if hi > lo:
                    clo.append(lo)
                    chi.append(hi)
            cptr.append(len(clo))
        self.ext_cptr, self.ext_clo, self.ext_chi = _long(cptr), _long(clo), _long(chi)
        # Student boundary: per student id, rank ranges of the outcomes it rules out.
        ptr, lo_l, hi_l = [0], [], []
        for b in sb:
            lo_s, hi_s = _strict(s_sorted, b) if b else (0, 0)
            last = None
            for s in s_sorted[lo_s:hi_s]:
                x = s[len(b) :]
                if last is not None and x.startswith(last):
                    continue  # inside the range of a shorter X
                last = x
                lo, hi = _with_prefix(outcomes, x)
                if hi > lo:
                    lo_l.append(lo)
                    hi_l.append(hi)
            ptr.append(len(lo_l))
        self.sb_ptr, self.sb_lo, self.sb_hi = _long(ptr), _long(lo_l), _long(hi_l)
        self.s_hash = torch.sort(_long([poly_hash(b) for b in rep])).values
        self.s_maxlen = max((len(b) for b in rep), default=0)

    @property
    def num_sorted(self) -> int:
        """Representative student ids (the length of the byte order)."""
        return int(self.s_sorted.numel())

    def to(self, device: torch.device | str) -> SetTables:
        """A copy with every tensor on ``device``."""
        out = super().to(device)
        for name in _SET_TENSORS:
            setattr(out, name, getattr(self, name).to(device))
        return out  # type: ignore[return-value]

    def batch_targets(self, batch: Any, fields: dict[str, Tensor]) -> Any:
        """``batch`` (its ``fields``) with ``byte_kd``'s and the set targets: a ``SetKDBatch``
        (called by ``ByteKDCollator``; ``set_targets.py``)."""
        from dskd_align.torch.set_targets import SetKDBatch, set_targets

        return SetKDBatch({**fields, **set_targets(batch, self)})

    def __repr__(self) -> str:
        return (
            f"SetTables(V_t={self.teacher_vocab_size}, V_s={self.student_vocab_size}, "
            f"extensions={self.num_extensions}, children={self.child_parent.numel()}, "
            f"sb_ranges={self.sb_lo.numel()})"
        )


assert set(_BYTE_TENSORS).isdisjoint(_SET_TENSORS)
