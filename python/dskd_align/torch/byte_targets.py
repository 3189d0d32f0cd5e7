"""The per-batch index tensors of ``byte_kd``'s targets, built where the batch is built.

:func:`byte_targets` reads a padded batch (ids and labels of both sides) and the pair's
:class:`~dskd_align.torch.ByteTables`, and returns which student positions get a target and which
teacher probabilities make it (``byte_kd.py`` has the math). It is vectorized over the batch
(gathers, ``cumsum``, ``searchsorted``: no Python loop over rows or tokens); it synchronizes with
the host (data-dependent sizes), so it belongs in the collator: :class:`ByteKDCollator` wraps a
:class:`~dskd_align.torch.DSKDCollator` and returns a :class:`ByteKDBatch`, a ``DSKDBatch`` with
the target fields, which survives ``type(batch)({...})`` re-wrapping and ``.to(device)``.
Precomputed-alignment rows work unchanged (the targets come from the padded batch, whatever
built it). The loss builds the targets itself, in the step, for a batch without them (on-policy
and sequence-level KD batches, custom loops).

Rules (per row; byte offsets are into the response text, the end token excluded):

- A row's response is read from its **label** tokens. Tokens with bytes are text; a label token
  without bytes is allowed only last (the end token); a row with one elsewhere gets no target.
- **Same text on both sides**: the two responses must agree byte for byte, or the student's be
  one space longer at the front (a SentencePiece **dummy prefix**, ``▁def`` against ``def``: that
  space stands for no text, so the student's offsets are shifted by one and its first token loses
  it). Where a side was truncated only the common part is compared; a row whose texts differ
  (normalizers that drop characters) gets no target.
- A student token starting at ``a`` gets a target when ``0 < a < len(teacher text)``, or, for its
  end token, ``a == len(teacher text)`` (the teacher's text complete). Not the first token
  (``a == 0``): the teacher has not consumed any of it, and with a dummy prefix the two sides do
  not even start it with the same bytes. Let ``k`` be the teacher token holding byte ``a - 1``,
  ``[c, d)`` its span: the target reads the teacher at the position predicting ``k`` (its
  extensions of ``text[c:a]``) and, when ``d == a``, at the next position too.
- ``byte_crosses``: the student token runs past the end of the teacher token it starts in
  (``',\\n`` against ``',`` + ``Ċ``); one step of teacher lookahead cannot give its mass, and the
  loss skips these by default (``crossing="skip"``); the ``byte_cross_*`` fields give the loss
  what a second step needs (``crossing="two_step"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.data import DSKDBatch

__all__ = ["BYTE_FIELDS", "ByteKDBatch", "ByteKDCollator", "byte_targets", "with_byte_targets"]

BYTE_FIELDS = ("byte_batch", "byte_student_pos", "byte_teacher_pos", "byte_token", "byte_crosses",
               "byte_entry_row", "byte_entry_teacher", "byte_entry_student", "byte_cross_x",
               "byte_cross_next", "byte_cross_from", "byte_cross_to")  # fmt: skip


@dataclass(init=False, eq=False)
class ByteKDBatch(DSKDBatch):
    """A :class:`DSKDBatch` with ``byte_kd``'s targets (all ``torch.long`` but ``byte_crosses``,
    bool). Per target ``[N]``, sorted by (row, position): ``byte_batch`` (row),
    ``byte_student_pos`` (student prediction position), ``byte_teacher_pos`` (teacher position
    predicting the teacher token ``k`` that holds the byte before the student token),
    ``byte_token`` (``k``'s id when the student token starts where ``k`` ends, else -1),
    ``byte_crosses``. Per extension entry ``[E]``, sorted by target: ``byte_entry_row`` (its
    target), ``byte_entry_teacher`` (a teacher token extending the consumed bytes of ``k``),
    ``byte_entry_student`` (the student token its remainder starts with). For the two-step target
    of a crossing student token (``-1`` elsewhere, and where the teacher's text ends inside it),
    per target: ``byte_cross_x`` (the teacher token it starts in), ``byte_cross_next`` (the
    teacher token after that one), ``byte_cross_from`` (the student token ``first()`` gives the
    rest of ``x``: where one step puts ``x``'s mass), ``byte_cross_to`` (the student's token)."""

    byte_batch: Tensor
    byte_student_pos: Tensor
    byte_teacher_pos: Tensor
    byte_token: Tensor
    byte_crosses: Tensor
    byte_entry_row: Tensor
    byte_entry_teacher: Tensor
    byte_entry_student: Tensor
    byte_cross_x: Tensor
    byte_cross_next: Tensor
    byte_cross_from: Tensor
    byte_cross_to: Tensor


def _side(ids: Tensor, labels: Tensor, lens: Tensor) -> tuple[Tensor, ...]:
    """Per position: byte length (0 off the labels), end offset (cumulative); per row: total
    bytes, whether the last label has no bytes (an end token), whether one elsewhere has none."""
    lab = labels != -100
    ln = torch.where(lab, lens[ids.clamp(0, lens.numel() - 1)], 0)  # [B, L]
    ends = ln.cumsum(1)  # [B, L], nondecreasing: searchable per row
    pos = torch.arange(ids.shape[1], device=ids.device)
    last = torch.where(lab, pos, -1).amax(1, keepdim=True)  # [B, 1], -1: no label
    empty = lab & (ln == 0)
    has_end = (empty & (pos == last)).any(1)
    bad = (empty & (pos != last)).any(1)
    return ln, ends, ends[:, -1], has_end, bad, empty & (pos == last)


def _text_bytes(ids: Tensor, ln: Tensor, ends: Tensor, flat: Tensor, off: Tensor, width: int,
                fill: int) -> Tensor:  # fmt: skip
    """``[B, width]`` int64: each row's response bytes from offset 0, ``fill`` after its end."""
    b, p = (ln > 0).nonzero(as_tuple=True)  # text tokens, row-major
    n = ln[b, p]
    tok = torch.repeat_interleave(torch.arange(n.numel(), device=ids.device), n)  # [bytes]
    first = n.cumsum(0) - n  # [tokens] index of each token's first byte in the flat order
    j = torch.arange(tok.numel(), device=ids.device) - first[tok]  # byte index in its token
    out = torch.full((ids.shape[0], width), fill, dtype=torch.long, device=ids.device)
    start = (ends[b, p] - n)[tok]
    out[b[tok], start + j] = flat[off[ids[b, p]][tok] + j].long()
    return out


def _prefix_equal(x: Tensor, y: Tensor, upto: Tensor) -> Tensor:
    """Rows whose ``x`` and ``y`` ``[B, W]`` agree on columns ``< upto [B]``."""
    col = torch.arange(x.shape[1], device=x.device)
    return ~((x != y) & (col < upto[:, None])).any(1)


def byte_targets(batch: Mapping[str, Tensor], tables: ByteTables, *, entry_index: bool = False
                 ) -> dict[str, Tensor]:  # fmt: skip
    """The ``BYTE_FIELDS`` of ``batch`` (module notes), on the batch's device (``tables`` must be
    there too: ``tables.to(device)``). ``entry_index``: also ``"byte_entry_index"``, each
    entry's index into the tables' extension arrays (``byte_sets`` reads its own tables there),
    and ``"byte_prefix_flat"``, each target's consumed prefix of ``k`` in the flat layout of
    ``t_bytes`` (``t_off[k] + m - 1``)."""
    t_ids, s_ids = batch["teacher_input_ids"], batch["student_input_ids"]
    ln_t, ends_t, tot_t, end_t, bad_t, _ = _side(t_ids, batch["teacher_labels"], tables.t_len)
    ln_s, ends_s, tot_s, end_s, bad_s, eos_s = _side(s_ids, batch["student_labels"], tables.s_len)
    width = int(torch.maximum(tot_t, tot_s).amax()) + 1 if tot_t.numel() else 1
    r_t = _text_bytes(t_ids, ln_t, ends_t, tables.t_bytes, tables.t_off, width, -1)
    r_s = _text_bytes(s_ids, ln_s, ends_s, tables.s_bytes, tables.s_off, width + 1, -2)
    # Same text, or the student's with a dummy-prefix space in front; lengths must agree exactly
    # where both sides kept their end token (nothing was cut).
    whole = end_t & end_s
    ok0 = _prefix_equal(r_s[:, :width], r_t, torch.minimum(tot_t, tot_s))
    ok0 &= ~whole | (tot_s == tot_t)
    ok1 = _prefix_equal(r_s[:, 1:], r_t, torch.minimum(tot_t, tot_s - 1)) & (r_s[:, 0] == 32)
    ok1 &= ~whole | (tot_s == tot_t + 1)
    valid = (ok0 | ok1) & ~bad_t & ~bad_s  # [B]
    shift = (~ok0).long()[:, None]
    # Student tokens: start a and end e in teacher byte offsets.
    a = ends_s - ln_s - shift  # [B, L_s]
    e = ends_s - shift
    pos = torch.arange(s_ids.shape[1], device=s_ids.device)
    cand = valid[:, None] & (pos >= 1) & (a > 0)
    cand &= ((ln_s > 0) & (a < tot_t[:, None])) | (eos_s & (a == tot_t[:, None]))
    # Teacher token k holding byte a - 1, and the one holding byte a (for crossing).
    ends_t = ends_t.contiguous()
    top = t_ids.shape[1] - 1
    pk = torch.searchsorted(ends_t, (a - 1).clamp_min(0), right=True).clamp_max(top)
    pk2 = torch.searchsorted(ends_t, a.clamp_min(0), right=True).clamp_max(top)
    d = ends_t.gather(1, pk)
    c = d - ln_t.gather(1, pk)
    g = t_ids.gather(1, pk)
    crosses = (ln_s > 0) & (e > ends_t.gather(1, pk2))
    # Two-step: the student token starts inside teacher token x (at pk2) and runs into the next.
    x = t_ids.gather(1, pk2)
    j = a - (ends_t.gather(1, pk2) - ln_t.gather(1, pk2))  # bytes of x before the student token
    n_sf = max(tables.suffix_first.numel() - 1, 0)
    u_from = tables.suffix_first[(tables.t_off[x] + j).clamp(0, n_sf)] if n_sf else x * 0 - 1
    two = crosses & (e <= tot_t[:, None])  # the next teacher token is there to read
    m = (a - c).clamp_min(1)  # consumed bytes of k (1..len(k) on candidates)
    flat = (tables.t_off[g] + m - 1).clamp(0, max(tables.prefix_id.numel() - 1, 0))
    pid = tables.prefix_id[flat] if tables.prefix_id.numel() else torch.zeros_like(flat)
    lo, hi = tables.ext_ptr[pid], tables.ext_ptr[pid + 1]
    boundary = a == d
    keep = cand & (pk >= 1) & (ln_t.gather(1, pk) > 0) & (boundary | (hi > lo))
    rb, rp = keep.nonzero(as_tuple=True)
    n_ext = (hi - lo)[rb, rp]
    row = torch.repeat_interleave(torch.arange(rb.numel(), device=rb.device), n_ext)
    start = n_ext.cumsum(0) - n_ext
    idx = lo[rb, rp][row] + torch.arange(row.numel(), device=rb.device) - start[row]
    out = {
        "byte_batch": rb,
        "byte_student_pos": rp - 1,
        "byte_teacher_pos": pk[rb, rp] - 1,
        "byte_token": torch.where(boundary[rb, rp], g[rb, rp], -1),
        "byte_crosses": crosses[rb, rp],
        "byte_entry_row": row,
        "byte_entry_teacher": tables.ext_v[idx],
        "byte_entry_student": tables.ext_u[idx],
        "byte_cross_x": torch.where(two, x, -1)[rb, rp],
        "byte_cross_next": torch.where(two, t_ids.gather(1, (pk2 + 1).clamp_max(top)), -1)[rb, rp],
        "byte_cross_from": torch.where(two, u_from, -1)[rb, rp],
        "byte_cross_to": torch.where(two, s_ids, -1)[rb, rp],
    }
    if entry_index:  # byte_sets: its own tables' entries, and the consumed prefix (v, m)
        out["byte_entry_index"] = idx
        out["byte_prefix_flat"] = flat[rb, rp]
    return out


def with_byte_targets(batch: DSKDBatch, tables: ByteTables) -> ByteKDBatch:
    """``batch`` as a :class:`ByteKDBatch` (its targets built on its device); with tables that
    carry more targets (``SetTables``: ``byte_sets``), the batch type those tables name."""
    fields = {k: batch[k] for k in DSKDBatch._names()}
    more = getattr(tables, "batch_targets", None)
    if more is not None:
        return more(batch, fields)
    return ByteKDBatch({**fields, **byte_targets(batch, tables)})


@dataclass
class ByteKDCollator:
    """A collator (:class:`~dskd_align.torch.DSKDCollator`) whose batches carry ``byte_kd``'s
    targets (:class:`ByteKDBatch`); other attributes are the wrapped collator's."""

    collator: Any
    tables: ByteTables

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> ByteKDBatch:
        return with_byte_targets(self.collator(rows), self.tables)

    def __getattr__(self, name: str) -> Any:
        if name in ("collator", "tables"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.collator, name)
