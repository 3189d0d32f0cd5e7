"""``ByteTables``: the index tables of a tokenizer pair that the byte-level loss ``byte_kd`` reads.

Built once per tokenizer pair (like :class:`~dskd_align.torch.VocabMap`, whose ``t2s``/``s2t`` it
carries), as flat tensors, so that a batch's targets are a few gathers (``byte_targets.py``) and
the loss's step only indexes (``byte_kd.py``). What they hold, and the rules:

- **Token bytes** of both sides (the core's ``token_bytes``), as lengths ``[V]`` (0: the id
  stands for no text: a special token, an unknown or empty piece, a padding row of the head)
  and one flat byte array with per-id offsets. A byte-fallback piece ``<0xNN>`` stands for its
  one byte even where the tokenizer registers it as a special token.
- ``first(R)``: the student token a student would start ``R`` with, taken as the **longest
  student token that is a byte prefix of R** (an approximation: BPE and Unigram do not always
  emit the longest match). Among ids with the same bytes the representative is VocabMap's: a
  regular piece before a byte-fallback piece, then the lowest id. Every non-empty ``R`` has a
  first token when the student has byte fallback (or a piece for every leading byte); a remainder
  the student cannot start gets -1 and its teacher mass is dropped.
- ``pm [V_t]``: teacher id -> ``first(bytes)``; a teacher special token -> its VocabMap twin
  (``t2s``: EOS -> the student's EOS), ``-1`` where neither exists.
- **Prefix extensions**: every prefix ``P`` (1 byte up to the whole token) of every teacher token
  gets an id; ``prefix_id[t_off[g] + m - 1]`` is the id of the first ``m`` bytes of token ``g``.
  ``ext_ptr [n_prefix + 1]`` (CSR) lists, for each prefix, the teacher tokens ``v`` whose bytes
  *strictly* extend ``P`` (``ext_v``) with ``first(bytes(v)[len(P):])`` (``ext_u``). Size: one
  entry per proper prefix of each teacher token (the sum of ``len - 1`` over the teacher's
  tokens); built in Python once per pair (0.1 s for the demo's 2000 x 1500 vocabularies).
- ``suffix_first[t_off[g] + j]``: ``first(bytes(g)[j:])``, where a student token that starts
  inside teacher token ``g`` would put the mass of ``g`` (``crossing="two_step"``).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dskd_align import load_core
from dskd_align.torch.vocab import VocabMap, _backend

__all__ = ["ByteTables"]

_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_TENSORS = ("t_len", "t_off", "t_bytes", "s_len", "s_off", "s_bytes", "pm", "prefix_id",
            "suffix_first", "ext_ptr", "ext_v", "ext_u", "t2s", "s2t")  # fmt: skip


def _token_bytes(tok: Any, size: int) -> tuple[list[bytes | None], list[bool]]:
    """Bytes of ids ``0..size-1`` (None: no text) and whether each is a byte-fallback piece."""
    core = load_core(tok)
    backend = _backend(tok)
    out: list[bytes | None] = [None] * size
    fallback = [False] * size
    for i in range(min(size, core.table_size)):
        m = _FALLBACK.match(backend.id_to_token(i) or "")
        if m:  # also when registered as a special token: it still stands for one byte
            out[i], fallback[i] = bytes([int(m.group(1), 16)]), True
        elif not core.is_special(i):
            out[i] = core.token_bytes(i) or None
    return out, fallback


def _flat(bs: list[bytes | None]) -> tuple[Tensor, Tensor, Tensor]:
    """lengths ``[V]``, offsets ``[V]`` and the bytes of every id back to back (uint8)."""
    lens = np.array([len(b or b"") for b in bs], np.int64)
    off = np.concatenate([[0], np.cumsum(lens)[:-1]]) if len(lens) else lens
    flat = np.frombuffer(b"".join(b or b"" for b in bs), np.uint8).copy()
    return torch.from_numpy(lens), torch.from_numpy(off.astype(np.int64)), torch.from_numpy(flat)


class _First:
    """``first(R)``: the longest student token that is a byte prefix of ``R`` (memoized)."""

    def __init__(self, sb: list[bytes | None], fallback: list[bool]) -> None:
        rep: dict[bytes, int] = {}
        for j, b in enumerate(sb):
            if b is not None:
                k = rep.get(b)
                if k is None or (fallback[k] and not fallback[j]):  # regular before fallback
                    rep[b] = j
        self.rep = rep
        self.maxlen = max((len(b) for b in rep), default=0)
        self.memo: dict[bytes, int] = {}

    def __call__(self, r: bytes) -> int:
        f = self.memo.get(r)
        if f is None:
            f = next((self.rep[r[:k]] for k in range(min(len(r), self.maxlen), 0, -1)
                      if r[:k] in self.rep), -1)  # fmt: skip
            self.memo[r] = f
        return f


@dataclass(init=False, eq=False)
class ByteTables:
    """Index tables of a teacher/student tokenizer pair for ``byte_kd`` (module notes).

    ``ByteTables(teacher_tok, student_tok, vocab_map)``: ``vocab_map`` a :class:`VocabMap` sized
    to the models' heads (it fixes ``V_t``/``V_s`` and the special-token twins); or
    :meth:`for_models`. All tensors ``torch.long`` (bytes ``uint8``), CPU until :meth:`to`.
    Pass it to ``build_loss("byte_kd", W_t, W_s, tables)`` and to :class:`ByteKDCollator`.
    """

    t_len: Tensor
    t_off: Tensor
    t_bytes: Tensor
    s_len: Tensor
    s_off: Tensor
    s_bytes: Tensor
    pm: Tensor
    prefix_id: Tensor
    suffix_first: Tensor
    ext_ptr: Tensor
    ext_v: Tensor
    ext_u: Tensor
    t2s: Tensor
    s2t: Tensor

    def __init__(self, teacher_tok: Any, student_tok: Any, vocab_map: VocabMap) -> None:
        v_t, v_s = vocab_map.teacher_vocab_size, vocab_map.student_vocab_size
        tb, _ = _token_bytes(teacher_tok, v_t)
        sb, s_fb = _token_bytes(student_tok, v_s)
        first = _First(sb, s_fb)
        self.t_len, self.t_off, self.t_bytes = _flat(tb)
        self.s_len, self.s_off, self.s_bytes = _flat(sb)
        self.t2s, self.s2t = vocab_map.t2s.long().cpu(), vocab_map.s2t.long().cpu()
        pm = self.t2s.clone()
        for i, b in enumerate(tb):
            if b is not None:
                pm[i] = first(b)
        self.pm = pm
        # Prefix ids: one per distinct prefix; (g, m) -> id in the flat layout of t_bytes.
        pids: dict[bytes, int] = {}
        prefix_id = np.zeros(int(self.t_len.sum()), np.int64)
        suffix_first = np.full(int(self.t_len.sum()), -1, np.int64)
        rows: list[tuple[int, int, int]] = []  # (prefix id, v, first(remainder))
        for v, b in enumerate(tb):
            if b is None:
                continue
            base = int(self.t_off[v])
            for m in range(1, len(b) + 1):
                p = pids.setdefault(b[:m], len(pids))
                prefix_id[base + m - 1] = p
                suffix_first[base + m - 1] = first(b[m - 1 :])
                if m < len(b):
                    u = first(b[m:])
                    if u >= 0:
                        rows.append((p, v, u))
        ent = np.array(rows, np.int64).reshape(-1, 3)
        ent = ent[np.argsort(ent[:, 0], kind="stable")]
        counts = np.bincount(ent[:, 0], minlength=len(pids))
        self.prefix_id = torch.from_numpy(prefix_id)
        self.suffix_first = torch.from_numpy(suffix_first)
        self.ext_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        self.ext_v = torch.from_numpy(np.ascontiguousarray(ent[:, 1]))
        self.ext_u = torch.from_numpy(np.ascontiguousarray(ent[:, 2]))
        self._first = first

    @classmethod
    def for_models(cls, teacher_tok: Any, student_tok: Any, teacher_model: Any,
                   student_model: Any, **vocab_kwargs: Any) -> ByteTables:  # fmt: skip
        """Tables sized to both models' heads (``VocabMap.for_models`` with ``vocab_kwargs``,
        e.g. ``special_pairs=collator.special_pairs``)."""
        vmap = VocabMap.for_models(teacher_tok, student_tok, teacher_model, student_model,
                                   **vocab_kwargs)  # fmt: skip
        return cls(teacher_tok, student_tok, vmap)

    @property
    def teacher_vocab_size(self) -> int:
        return int(self.t_len.numel())

    @property
    def student_vocab_size(self) -> int:
        return int(self.s_len.numel())

    @property
    def num_extensions(self) -> int:
        """Entries of the prefix-extension table."""
        return int(self.ext_v.numel())

    def first(self, r: bytes) -> int:
        """The student token ``first(r)`` (module notes; -1 when none). Python, for tests and
        inspection; the tables hold its values precomputed."""
        return self._first(r)

    def to(self, device: torch.device | str) -> ByteTables:
        """A copy with every tensor on ``device``."""
        out = copy.copy(self)
        for name in _TENSORS:
            setattr(out, name, getattr(self, name).to(device))
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # The memo of first() holds every remainder seen while building: large, and only a cache.
        state["_first"] = copy.copy(self._first)
        state["_first"].memo = {}
        return state

    def __repr__(self) -> str:
        return (
            f"ByteTables(V_t={self.teacher_vocab_size}, V_s={self.student_vocab_size}, "
            f"prefixes={self.ext_ptr.numel() - 1}, extensions={self.num_extensions})"
        )
