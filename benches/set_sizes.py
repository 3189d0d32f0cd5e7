"""How much of ``byte_sets``' target sits in sets of more than one student token.

    .venv/bin/python benches/set_sizes.py [--seed 0] [--rows 64]

A set target tells the student the mass of each teacher outcome class ``R`` on the set ``C(R)``
of its tokens consistent with it, not how to split that mass inside the set; with one tokenizer
every set is one token (vanilla KD's information). This measures, on the demo's train rows with
the pretrained teacher and branch states, the share of the normalized target mass (after the
student-boundary filter, as the loss computes it) on classes whose set holds more than one
student token, for next-token and extension classes, and the mass-weighted mean set size.
"""

from __future__ import annotations

import argparse

import torch
from branch_mass import demo_pair, set_target

from dskd_align.demo_data import make_batches, task_rows
from dskd_align.torch.branch import teacher_hidden_with_branches
from dskd_align.torch.set_kd import SetKD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args()
    teacher, tables, col = demo_pair(a.seed)
    kd = SetKD(tables, branch=True)
    # Set sizes in student tokens: first(R) plus the strict extensions (minus the tight ranges).
    n_size = tables.next_hi - tables.next_lo + 1
    n_size -= torch.zeros_like(n_size).index_add_(
        0, tables.child_parent, tables.child_hi - tables.child_lo
    )
    e_size = tables.ext_hi - tables.ext_lo + 1
    w_t = teacher.lm_head.weight.detach()
    sums = dict.fromkeys(("next", "next_multi", "next_size", "ext", "ext_multi", "ext_size"), 0.0)
    for batch in make_batches(col, task_rows("train", a.rows, a.seed), 16):
        h = teacher_hidden_with_branches(teacher, batch)
        qn, qe, _ = set_target(kd, tables, w_t, batch, h)
        size_e = e_size[batch["set_entry_index"]]
        sums["next"] += float(qn.sum())
        sums["next_multi"] += float((qn * (n_size > 1)).sum())
        sums["next_size"] += float((qn * n_size).sum())
        sums["ext"] += float(qe.sum())
        sums["ext_multi"] += float((qe * (size_e > 1)).sum())
        sums["ext_size"] += float((qe * size_e).sum())
    for kind in ("next", "ext"):
        m = max(sums[kind], 1e-30)
        print(f"{kind} classes: {sums[kind]:.0f} targets' worth of mass, "
              f"{sums[kind + '_multi'] / m:.1%} in sets of more than one student token, "
              f"mass-weighted mean set size {sums[kind + '_size'] / m:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
