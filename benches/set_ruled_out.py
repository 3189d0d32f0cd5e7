"""``byte_sets``' student-boundary mask of the next-token outcomes: the loss's segment marking
(``SetKD._ruled_out``) against a binary search of every key over every ruled-out range
(``in_ranges``, what the loss did before), side by side on the same chunks, with a check that
the two masks are equal.

    .venv/bin/python benches/set_ruled_out.py [--vt 16384 --vs 8000 --chunk 256]

Inputs are ``gpu_step.py``'s CPU preset: its synthetic batch (4 x 256), set tables and fields
(``byte_synthetic.py``: 16 ruled-out ranges per target). One thread.
"""

from __future__ import annotations

import argparse
import time

import torch
from byte_synthetic import synthetic_byte_targets, synthetic_set_tables, synthetic_set_targets
from gpu_step import synthetic_batch

from dskd_align.torch.set_kd import SetKD
from dskd_align.torch.set_targets import in_ranges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vt", type=int, default=16384)
    ap.add_argument("--vs", type=int, default=8000)
    ap.add_argument("--chunk", type=int, default=256)
    a = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(4, 256, a.vt, a.vs, g, torch.device("cpu"))
    gb = torch.Generator().manual_seed(1)
    tables = synthetic_set_tables(a.vt, a.vs, gb)
    fields = synthetic_byte_targets(batch["student_labels"], a.vt, a.vs, 55, gb)
    fields.update(synthetic_set_targets(fields, tables, gb))
    mod, rank = SetKD(tables), tables.next_rank
    n, lo, hi = fields["byte_batch"].numel(), fields["set_sb_lo"], fields["set_sb_hi"]
    t_search = t_mark = 0.0
    for start in range(0, n, a.chunk):
        rid = torch.arange(start, min(start + a.chunk, n))
        t0 = time.perf_counter()
        want = in_ranges(rid[:, None] * mod.rank_base + rank[None, :], lo, hi) & (rank >= 0)
        t1 = time.perf_counter()
        got = mod._ruled_out(rid, lo, hi)
        t2 = time.perf_counter()
        assert torch.equal(got, want), start
        t_search, t_mark = t_search + t1 - t0, t_mark + t2 - t1
    print(f"V_t {a.vt}, {n} targets, {lo.numel()} ranges, chunks of {a.chunk}: search "
          f"{1e3 * t_search:.0f} ms, segments {1e3 * t_mark:.0f} ms, "
          f"{t_search / t_mark:.1f}x; masks equal")  # fmt: skip


if __name__ == "__main__":
    main()
