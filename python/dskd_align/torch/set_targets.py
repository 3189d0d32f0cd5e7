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
              "set_entry_class", "set_class_row", "set_node_token", "set_node_slot",
              "set_node_parent", "set_node_entry_row", "set_node_entry_node",
              "set_node_entry_index", "set_node_entry_teacher", "set_node_entry_student",
              "set_node_entry_sb_ok", "set_node_entry_class", "set_node_echild_entry",
              "set_node_echild_lo", "set_node_echild_hi")  # fmt: skip


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
    and ``set_branch_slot``, its place among its row's branch targets (else -1).

    ``set_entry_class`` ``[E]`` / ``set_node_entry_class`` ``[E2]``: the outcome class of each
    entry (one per target and remainder string, over both entry lists), ``set_class_row``
    ``[C]`` its target (the target's entropy). For ``shorter_paths`` (``set_kd.py``), per target
    ``[N, Q]`` (``Q`` the most nodes of a target, -1 padding): ``set_node_token`` (the teacher
    token read: ``P[:q]``, or ``P[q:]`` after it), ``set_node_slot`` (its place among its row's
    branch states, after the row's ``set_branch_slot`` ones), ``set_node_parent`` (-1: read after
    the gold tokens before ``k``; else the node it follows, whose path then ends at the
    boundary); per node entry ``[E2]`` (a teacher token that extends ``P[q:]``, read after node
    ``P[:q]``): ``set_node_entry_row`` (its target), ``_node`` (the node), ``_index``,
    ``_teacher``, ``_student``, ``_sb_ok`` (as for the gold entries), and
    ``set_node_echild_*`` (its ``tight_extensions`` ranges)."""

    set_entry_index: Tensor
    set_entry_sb_ok: Tensor
    set_sb_lo: Tensor
    set_sb_hi: Tensor
    set_echild_entry: Tensor
    set_echild_lo: Tensor
    set_echild_hi: Tensor
    set_branch_token: Tensor
    set_branch_slot: Tensor
    set_entry_class: Tensor
    set_class_row: Tensor
    set_node_token: Tensor
    set_node_slot: Tensor
    set_node_parent: Tensor
    set_node_entry_row: Tensor
    set_node_entry_node: Tensor
    set_node_entry_index: Tensor
    set_node_entry_teacher: Tensor
    set_node_entry_student: Tensor
    set_node_entry_sb_ok: Tensor
    set_node_entry_class: Tensor
    set_node_echild_entry: Tensor
    set_node_echild_lo: Tensor
    set_node_echild_hi: Tensor


def _expand(counts: Tensor, starts: Tensor) -> tuple[Tensor, Tensor]:
    """Owner ``i`` and index ``starts[i] + j`` for ``j < counts[i]``, for every ``i`` in order."""
    own = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = counts.cumsum(0) - counts
    return own, starts[own] + torch.arange(own.numel(), device=counts.device) - first[own]


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
    filt = (tables.s_len[u_prev] > 0) & ~_longer_match(batch, tables, b, sp)
    lo_p, hi_p = tables.sb_ptr[u_prev], tables.sb_ptr[u_prev + 1]
    tgt, k = _expand(torch.where(filt, hi_p - lo_p, 0), lo_p)
    base = tgt * tables.rank_base
    sb_lo, sb_hi = base + tables.sb_lo[k], base + tables.sb_hi[k]
    nodes = _shorter_nodes(tables, b, inner, flat, per_row)
    n_row, n_idx = nodes.pop("set_node_entry_row"), nodes.pop("set_node_entry_index")
    keys = tg["byte_entry_row"] * tables.rank_base + tables.ext_rank[idx]
    n_keys = n_row * tables.rank_base + tables.ext_rank[n_idx]
    # Outcome classes: one per (target, remainder string), over both entry lists.
    uniq, cls = torch.unique(torch.cat([keys, n_keys]), return_inverse=True)
    return {
        **tg,
        "set_entry_index": idx,
        "set_entry_sb_ok": ~in_ranges(keys, sb_lo, sb_hi),
        "set_sb_lo": sb_lo,
        "set_sb_hi": sb_hi,
        **_tight(tables, idx, "set_echild"),
        "set_branch_token": br,
        "set_branch_slot": slot,
        "set_entry_class": cls[: idx.numel()],
        "set_class_row": torch.div(uniq, tables.rank_base, rounding_mode="floor"),
        **nodes,
        "set_node_entry_row": n_row,
        "set_node_entry_index": n_idx,
        "set_node_entry_teacher": tables.ext_v[n_idx],
        "set_node_entry_student": tables.ext_u[n_idx],
        "set_node_entry_sb_ok": ~in_ranges(n_keys, sb_lo, sb_hi),
        "set_node_entry_class": cls[idx.numel() :],
        **_tight(tables, n_idx, "set_node_echild"),
    }


def _tight(tables: Any, idx: Tensor, name: str) -> dict[str, Tensor]:
    """Per entry (extension index ``idx``), the student ranges it loses with
    ``tight_extensions``: ``{name}_entry`` (which entry), ``{name}_lo``, ``{name}_hi``."""
    c0 = tables.ext_cptr[idx]
    ent, kc = _expand(tables.ext_cptr[idx + 1] - c0, c0)
    return {
        f"{name}_entry": ent,
        f"{name}_lo": tables.ext_clo[kc],
        f"{name}_hi": tables.ext_chi[kc],
    }


def _shorter_nodes(tables: Any, b: Tensor, inner: Tensor, flat: Tensor, n_branch: Tensor
                   ) -> dict[str, Tensor]:  # fmt: skip
    """The ``set_node_*`` fields (``shorter_paths``; class notes). Per split of ``(k, m)`` at an
    inner target: the node ``P[:q]`` (kept when a teacher token extends the rest or is the
    rest), then the node ``P[q:]`` after it when that is a teacher token. ``n_branch``: branch
    targets per row (their slots come first)."""
    dev, n = b.device, b.numel()
    ptr = tables.split_ptr
    f = flat.clamp(0, max(ptr.numel() - 2, 0))
    lo = ptr[f] if ptr.numel() > 1 else torch.zeros_like(b)
    cnt = torch.where(inner, ptr[f + 1] - lo, 0) if ptr.numel() > 1 else torch.zeros_like(b)
    s_tgt, k = _expand(cnt, lo)  # splits, in target order
    x1, pid, x2 = tables.split_first[k], tables.split_pid[k], tables.split_rest[k]
    e_lo = tables.ext_ptr[pid]
    e_n = tables.ext_ptr[pid + 1] - e_lo
    first_ok = (e_n > 0) | (x2 >= 0)
    # Two candidate nodes per split (P[:q], then P[q:]); keep the valid ones, in order.
    ok = torch.stack([first_ok, first_ok & (x2 >= 0)], 1).reshape(-1)
    keep = ok.nonzero()[:, 0]
    split, is_rest = torch.div(keep, 2, rounding_mode="floor"), keep % 2 == 1
    tok = torch.stack([x1, x2], 1).reshape(-1)[keep]
    tgt = s_tgt[split]
    per_tgt = torch.zeros(n, dtype=torch.long, device=dev).index_add_(0, tgt, torch.ones_like(tgt))
    at = torch.arange(keep.numel(), device=dev)
    pos = at - (per_tgt.cumsum(0) - per_tgt)[tgt]  # place among its target's nodes
    row = b[tgt]
    per_row = torch.zeros_like(n_branch).index_add_(0, row, torch.ones_like(row))
    slot = n_branch[row] + at - (per_row.cumsum(0) - per_row)[row]
    q = int(per_tgt.max()) if n else 0  # a host sync: the collator's
    out = {}
    for name, val in (
        ("token", tok),
        ("slot", slot),
        ("parent", torch.where(is_rest, pos - 1, -1)),
    ):
        out[f"set_node_{name}"] = torch.full((n, q), -1, dtype=torch.long, device=dev)
        out[f"set_node_{name}"][tgt, pos] = val
    # Entries of the nodes P[:q]: the teacher tokens that strictly extend the rest.
    first_nodes = (~is_rest & (e_n[split] > 0)).nonzero()[:, 0]
    own, idx = _expand(e_n[split[first_nodes]], e_lo[split[first_nodes]])
    out["set_node_entry_row"] = tgt[first_nodes][own]
    out["set_node_entry_node"] = pos[first_nodes][own]
    out["set_node_entry_index"] = idx
    return out


assert not set(BYTE_FIELDS) & set(SET_FIELDS)
