"""The per-batch fields of ``byte_sets`` (``set_kd.py``), built where the batch is built.

:func:`set_targets` returns ``byte_kd``'s fields (``byte_targets.py``: which student positions
get a target, the teacher rows and extension entries that make it) plus ``SET_FIELDS``, from a
padded batch and the pair's :class:`~dskd_align.torch.SetTables`. Vectorized over the batch
(gathers, ``cumsum``, ``searchsorted``, one loop over byte *lengths* for the hash test, none
over rows or tokens); it synchronizes with the host (data-dependent sizes), so it belongs in the
collator: ``ByteKDCollator(collator, set_tables)`` returns :class:`SetKDBatch`. The loss builds
these fields itself, in the step, for a batch without them.

The student-boundary fields (``set_tables.py``: the rule). Per target, ``u_prev`` is the student
token at its prediction position (the token written before the target's). The target is left
**unfiltered** where ``u_prev`` has no bytes, or where the student's own text shows that a
longer student token than ``u_prev`` matches there (its tokenizer is not longest-match at that
boundary, so the rule would drop the true continuation): some ``text[start(u_prev) :
start(u_prev) + L]``, ``L > len(u_prev)``, is a student token (hash test). Otherwise its ranges
(``SetTables.sb_*`` of ``u_prev``) are listed, offset by ``target index x rank_base`` so that all
targets' ranges form one sorted array, and an outcome string of rank ``r`` is ruled out for
target ``i`` when ``i x rank_base + r`` falls in one (``searchsorted``; the loss does the same
for the next-token outcomes, chunk by chunk).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dskd_align.torch.byte_targets import (
    BYTE_FIELDS,
    ByteKDBatch,
    _side,
    _text_bytes,
    byte_targets,
)

__all__ = ["SET_FIELDS", "SetKDBatch", "in_ranges", "set_targets"]

SET_FIELDS = ("set_entry_index", "set_entry_sb_ok", "set_sb_lo", "set_sb_hi", "set_echild_entry",
              "set_echild_lo", "set_echild_hi", "set_branch_token", "set_branch_slot",
              "set_unfiltered")  # fmt: skip


@dataclass(init=False, eq=False)
class SetKDBatch(ByteKDBatch):
    """A :class:`ByteKDBatch` with the set fields: per extension entry ``[E]``
    ``set_entry_index`` (its index into the ``SetTables`` extension arrays), ``set_entry_sb_ok``
    (bool: not ruled out by the student's boundary); ``set_sb_lo``/``set_sb_hi`` ``[R]``: the
    batch's ruled-out outcome ranges, keys ``target x rank_base + rank`` (module notes);
    ``set_echild_entry``/``_lo``/``_hi`` ``[K]``: per batch entry, the student ranges it loses
    with ``tight_extensions`` (``SetTables.ext_c*``). Per target ``[N]``, for ``branch=True``
    (``branch.py``): ``set_branch_token``, the teacher token ``P`` equal to the consumed bytes of
    ``k`` where the target sits strictly inside ``k`` and ``P`` is a teacher token (else -1),
    and ``set_branch_slot``, its place among its row's branch targets (else -1);
    ``set_unfiltered`` (bool): the student-boundary filter leaves the target alone (its text
    shows a longer match; module notes)."""

    set_entry_index: Tensor
    set_entry_sb_ok: Tensor
    set_sb_lo: Tensor
    set_sb_hi: Tensor
    set_echild_entry: Tensor
    set_echild_lo: Tensor
    set_echild_hi: Tensor
    set_branch_token: Tensor
    set_branch_slot: Tensor
    set_unfiltered: Tensor


def in_ranges(keys: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """``keys`` (any shape) that fall in one of the sorted disjoint ranges ``[lo, hi)``."""
    if lo.numel() == 0:
        return torch.zeros_like(keys, dtype=torch.bool)
    i = torch.searchsorted(lo, keys.contiguous(), right=True) - 1
    return (i >= 0) & (keys < hi[i.clamp_min(0)])


def _longer_match(batch: Mapping[str, Tensor], tables: Any, b: Tensor, sp: Tensor) -> Tensor:
    """Per target: a student token longer than ``u_prev`` matches the student's text at
    ``u_prev``'s start (hash test over lengths; module notes)."""
    ids, labels = batch["student_input_ids"], batch["student_labels"]
    ln, ends, tot, *_ = _side(ids, labels, tables.s_len)
    width = int(tot.amax()) + 1 if tot.numel() else 1
    text = _text_bytes(ids, ln, ends, tables.s_bytes, tables.s_off, width, -1)  # [B, W]
    n_prev = ln[b, sp]
    start = ends[b, sp] - n_prev
    limit = tot[b] - start  # bytes of text from u_prev's start
    out = torch.zeros_like(b, dtype=torch.bool)
    if b.numel() == 0 or tables.s_hash.numel() == 0:
        return out
    h1 = torch.zeros_like(b)
    h2 = torch.zeros_like(b)
    for length in range(1, tables.s_maxlen + 1):  # a loop over byte lengths, not rows
        col = (start + length - 1).clamp(0, width - 1)
        x = text[b, col] + 1
        h1 = (h1 * 257 + x) % 2147483647
        h2 = (h2 * 257 + x) % 2147483629
        key = h1 * (1 << 31) + h2
        j = torch.searchsorted(tables.s_hash, key).clamp_max(tables.s_hash.numel() - 1)
        hit = (tables.s_hash[j] == key) & (length > n_prev) & (length <= limit)
        out |= hit
    return out


def set_targets(batch: Mapping[str, Tensor], tables: Any) -> dict[str, Tensor]:
    """``BYTE_FIELDS`` + ``SET_FIELDS`` of ``batch`` (module notes), on the batch's device
    (``tables``, a ``SetTables``, must be there too: ``tables.to(device)``)."""
    tg = byte_targets(batch, tables, entry_index=True)
    idx, flat = tg.pop("byte_entry_index"), tg.pop("byte_prefix_flat")
    b, sp = tg["byte_batch"], tg["byte_student_pos"]
    dev = b.device
    # Branch targets: inside k (no shared boundary), the consumed bytes being a teacher token.
    inner = tg["byte_token"] < 0
    pt, br = tables.prefix_token, torch.full_like(b, -1)
    if pt.numel():
        br = torch.where(inner, pt[flat.clamp(0, pt.numel() - 1)], -1)
    is_br = (br >= 0).long()
    per_row = torch.zeros(batch["student_input_ids"].shape[0], dtype=torch.long, device=dev)
    per_row.index_add_(0, b, is_br)
    before = (per_row.cumsum(0) - per_row)[b]  # branch targets of earlier rows
    slot = torch.where(is_br > 0, is_br.cumsum(0) - 1 - before, -1)
    u_prev = batch["student_input_ids"][b, sp]
    has = tables.s_len[u_prev] > 0
    unfiltered = has & _longer_match(batch, tables, b, sp)
    filt = has & ~unfiltered
    lo_p, hi_p = tables.sb_ptr[u_prev], tables.sb_ptr[u_prev + 1]
    n_r = torch.where(filt, hi_p - lo_p, 0)
    tgt = torch.repeat_interleave(torch.arange(b.numel(), device=dev), n_r)
    first = n_r.cumsum(0) - n_r
    k = lo_p[tgt] + torch.arange(tgt.numel(), device=dev) - first[tgt]
    base = tgt * tables.rank_base
    sb_lo, sb_hi = base + tables.sb_lo[k], base + tables.sb_hi[k]
    keys = tg["byte_entry_row"] * tables.rank_base + tables.ext_rank[idx]
    c0, n_c = tables.ext_cptr[idx], tables.ext_cptr[idx + 1] - tables.ext_cptr[idx]
    ent = torch.repeat_interleave(torch.arange(idx.numel(), device=dev), n_c)
    kc = c0[ent] + torch.arange(ent.numel(), device=dev) - (n_c.cumsum(0) - n_c)[ent]
    return {
        **tg,
        "set_entry_index": idx,
        "set_entry_sb_ok": ~in_ranges(keys, sb_lo, sb_hi),
        "set_sb_lo": sb_lo,
        "set_sb_hi": sb_hi,
        "set_echild_entry": ent,
        "set_echild_lo": tables.ext_clo[kc],
        "set_echild_hi": tables.ext_chi[kc],
        "set_branch_token": br,
        "set_branch_slot": slot,
        "set_unfiltered": unfiltered,
    }


assert not set(BYTE_FIELDS) & set(SET_FIELDS)
