"""Experiment (reverted in the next commit): how much ``byte_sets(shorter_paths=True)`` adds to
the target at targets inside a teacher token, with and without the student-boundary filter.

    .venv/bin/python benches/shorter_share.py [--seed 0] [--rows 64]

Per inner target: (mass with the shorter paths - mass without) / mass with, the teacher's
pretrained demo model, seed 0's train rows. Without the filter this is the share
``benches/branch_shorter.py`` measures from copied-row forwards.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from branch_mass import demo_pair

from dskd_align.demo_data import make_batches, task_rows
from dskd_align.torch.branch import teacher_hidden_with_branches
from dskd_align.torch.set_kd import SetKD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args()
    teacher, tables, col = demo_pair(a.seed)
    batches = list(make_batches(col, task_rows("train", a.rows, a.seed), 16))
    for sb in (False, True):
        shares: list[float] = []
        for batch in batches:
            h_t = teacher_hidden_with_branches(teacher, batch, shorter_paths=True)
            w_t = teacher.lm_head.weight.detach()
            w_s = torch.randn(tables.student_vocab_size, h_t.shape[-1])
            h_s = torch.randn(*batch["student_input_ids"].shape, h_t.shape[-1])
            masses = []
            for shorter in (False, True):
                m = SetKD(tables, branch=True, shorter_paths=shorter, student_boundary=sb,
                          chunk_size=None)  # fmt: skip
                m._masses = []
                m.kd(batch, h_s, h_t, w_s, w_t)
                masses.append(torch.cat(m._masses))
            inner = batch["byte_token"] < 0
            base, more = masses[0][inner], masses[1][inner]
            shares += ((more - base) / more.clamp_min(1e-30)).tolist()
        over = sum(s > 0.1 for s in shares) / max(len(shares), 1)
        print(f"student_boundary={sb}: {len(shares)} inner targets, share of the shorter paths: "
              f"mean {statistics.mean(shares):.4f}, median {statistics.median(shares):.5f}, "
              f"over 0.1 at {over:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
