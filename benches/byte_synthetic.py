"""Synthetic ``byte_kd`` / ``byte_sets`` inputs for the cost benches (``gpu_step.py``,
``loss_memory.py``).

``byte_kd`` needs the pair's ``ByteTables`` and, per batch, the target index tensors that
``ByteKDCollator`` builds from real text. The benches have no text (random ids), so this module
makes both directly, with the shapes that decide the cost:

- the **tables** hold only what the loss reads when the batch carries its targets: the two
  vocabulary sizes (the heads are checked against them) and ``pm`` (teacher id -> student id, the
  push of the next position's distribution); the prefix-extension table itself is never read in
  the step, so it is left empty;
- the **targets**: one per supervised student token but the first of each response, kept with
  probability ``coverage`` (0.9: the demo measures 87-92 %), the student token starting at a
  teacher boundary (``byte_token`` set: a second teacher row is read) with probability
  ``boundary``, crossing a teacher token's end (skipped by the default ``crossing="skip"``) with
  probability ``crossing`` (0.09 on the demo);
- ``ext`` **extension entries per target**: the loss's step scans all of a batch's entries once
  per row chunk, so this count, not the vocabulary, sets much of its cost. Measured: ~55 per
  target on the demo's 2000-token teacher, ~6k for Qwen2.5 -> Llama-2 (``docs/LOSSES.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import BYTE_FIELDS
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import SET_FIELDS

__all__ = ["synthetic_byte_targets", "synthetic_set_tables", "synthetic_set_targets",
           "synthetic_tables"]  # fmt: skip


def synthetic_tables(vt: int, vs: int, g: torch.Generator) -> ByteTables:
    """``ByteTables`` of sizes ``vt``/``vs`` with a random ``pm`` and no extension table."""
    t = ByteTables.__new__(ByteTables)  # no tokenizers: fill the fields the loss reads
    t.t_len, t.t_off = torch.ones(vt, dtype=torch.long), torch.arange(vt)  # one byte per id
    t.s_len, t.s_off = torch.ones(vs, dtype=torch.long), torch.arange(vs)
    t.t_bytes = torch.randint(0, 256, (vt,), generator=g).to(torch.uint8)
    t.s_bytes = torch.randint(0, 256, (vs,), generator=g).to(torch.uint8)
    t.pm = torch.randint(0, vs, (vt,), generator=g)
    t.prefix_id, t.suffix_first = torch.arange(vt), torch.full((vt,), -1, dtype=torch.long)
    t.ext_ptr = torch.zeros(vt + 1, dtype=torch.long)
    t.ext_v = t.ext_u = torch.zeros(0, dtype=torch.long)
    t.t2s = torch.full((vt,), -1, dtype=torch.long)
    t.s2t = torch.full((vs,), -1, dtype=torch.long)
    t._first = None
    return t


def synthetic_byte_targets(labels: Tensor, vt: int, vs: int, ext: int, g: torch.Generator, *,
                           coverage: float = 0.9, boundary: float = 0.6,
                           crossing: float = 0.09) -> dict[str, Tensor]:  # fmt: skip
    """The ``BYTE_FIELDS`` for a batch with student ``labels [B, L]`` (-100 off the response);
    teacher positions equal the student's (both sides have ``L`` tokens here). CPU tensors."""
    lab = labels != -100
    first = lab & ~torch.nn.functional.pad(lab, (1, 0))[:, :-1]  # each response's first token
    cand = lab & ~first
    cand[:, 0] = False  # a target reads the position before its token
    keep = cand & (torch.rand(labels.shape, generator=g) < coverage)
    b, p = keep.nonzero(as_tuple=True)
    n = b.numel()
    at_end = torch.rand(n, generator=g) < boundary
    token = torch.where(at_end, torch.randint(0, vt, (n,), generator=g), -1)
    row = torch.arange(n).repeat_interleave(ext)
    out = {
        "byte_batch": b,
        "byte_student_pos": p - 1,
        "byte_teacher_pos": p - 1,
        "byte_token": token,
        "byte_crosses": torch.rand(n, generator=g) < crossing,
        "byte_entry_row": row,
        "byte_entry_teacher": torch.randint(0, vt, (row.numel(),), generator=g),
        "byte_entry_student": torch.randint(0, vs, (row.numel(),), generator=g),
    }
    for k in ("byte_cross_x", "byte_cross_next", "byte_cross_from", "byte_cross_to"):
        out[k] = torch.full((n,), -1, dtype=torch.long)  # only read by crossing="two_step"
    assert set(out) == set(BYTE_FIELDS)
    return out


def synthetic_set_tables(vt: int, vs: int, g: torch.Generator, *, n_ext: int = 1 << 16,
                         span: int = 64) -> SetTables:  # fmt: skip
    """``SetTables`` for ``byte_sets`` with what its step reads (``set_tables.py``): a random
    byte order of the student ids, a strict-extension range of up to ``span`` ids per teacher
    token and per each of ``n_ext`` extension entries, a tight child range for half the teacher
    ids; the collator-side tables (student-boundary CSR, hashes) are left empty."""
    t = SetTables.__new__(SetTables)
    t.__dict__.update(synthetic_tables(vt, vs, g).__dict__)

    def ranges(n: int) -> tuple[Tensor, Tensor]:
        lo = torch.randint(0, vs, (n,), generator=g)
        return lo, (lo + torch.randint(0, span, (n,), generator=g)).clamp_max(vs)

    t.s_sorted = torch.randperm(vs, generator=g)
    t.ext_lo, t.ext_hi = ranges(n_ext)
    t.next_lo, t.next_hi = ranges(vt)
    t.child_parent = torch.randint(0, vt, (vt // 2,), generator=g)
    t.child_lo, t.child_hi = ranges(vt // 2)
    t.rank_base = 8 * vt + 1
    t.ext_rank = torch.randint(0, t.rank_base - 1, (n_ext,), generator=g)
    t.next_rank = torch.randint(0, t.rank_base - 1, (vt,), generator=g)
    t.next_cls, t.t_rep = torch.arange(vt), torch.arange(vt)
    empty = torch.zeros(0, dtype=torch.long)
    t.ext_cptr = torch.zeros(n_ext + 1, dtype=torch.long)
    t.ext_clo = t.ext_chi = t.sb_lo = t.sb_hi = t.s_hash = empty
    t.sb_ptr = torch.zeros(vs + 1, dtype=torch.long)
    t.s_maxlen = 0
    return t


def synthetic_set_targets(fields: dict[str, Tensor], tables: SetTables, g: torch.Generator, *,
                          sb_ranges: int = 16, sb_width: int = 64, child_share: float = 0.3
                          ) -> dict[str, Tensor]:  # fmt: skip
    """The ``SET_FIELDS`` next to ``fields`` (``synthetic_byte_targets``): a random table entry
    per extension entry, 5 % of entries ruled out, ``sb_ranges`` ruled-out rank ranges per
    target, a tight child range for ``child_share`` of the entries."""
    n, e = fields["byte_batch"].numel(), fields["byte_entry_row"].numel()
    k = tables.rank_base - 1
    gaps = torch.randint(1, max(2, k // sb_ranges), (n, sb_ranges), generator=g).cumsum(1)
    lo = gaps.clamp_max(k - 1)
    hi = (lo + torch.randint(1, sb_width, (n, sb_ranges), generator=g)).clamp_max(k)
    hi = torch.minimum(hi, torch.cat([lo[:, 1:], torch.full((n, 1), k)], 1))  # disjoint
    base = torch.arange(n)[:, None] * tables.rank_base
    ent = (torch.rand(e, generator=g) < child_share).nonzero()[:, 0]
    c_lo = torch.randint(0, tables.student_vocab_size, (ent.numel(),), generator=g)
    out = {
        "set_entry_index": torch.randint(0, tables.ext_lo.numel(), (e,), generator=g),
        "set_entry_sb_ok": torch.rand(e, generator=g) > 0.05,
        "set_sb_lo": (base + lo).reshape(-1),
        "set_sb_hi": (base + hi).reshape(-1),
        "set_echild_entry": ent,
        "set_echild_lo": c_lo,
        "set_echild_hi": (c_lo + 8).clamp_max(tables.student_vocab_size),
        "set_branch_token": torch.full((n,), -1),  # no branch states: branch=False's step
        "set_branch_slot": torch.full((n,), -1),
        "set_unfiltered": torch.zeros(n, dtype=torch.bool),
    }
    assert set(out) == set(SET_FIELDS)
    return out
