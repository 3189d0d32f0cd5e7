"""How much teacher mass ``byte_sets`` drops inside a teacher token without ``branch=True``.

    .venv/bin/python benches/branch_mass.py [--seed 0] [--rows 256]

On the demo's task train rows and its pretrained teacher (cached like the demo): the share of
``byte_sets`` targets that sit strictly inside a teacher token ``k``, how many of those have
the consumed bytes ``P`` as a teacher token (a branch target), and there the teacher's mass on
``P`` against its mass on the extensions of ``P`` (the tokens that run past the boundary, before
the student-boundary filter): ``p(P) / (p(P) + sum p(extensions))``, the part of the teacher's
belief that ``branch=False`` drops before normalizing (``branch.py``).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from dskd_align.demo_data import make_batches, task_rows
from dskd_align.demo_models import DemoSize, pretrained_models, tokenizers
from dskd_align.torch import ByteKDCollator, DSKDCollator, VocabMap
from dskd_align.torch.set_tables import SetTables


def demo_pair(seed: int) -> tuple[Any, SetTables, ByteKDCollator]:
    """The demo's pretrained teacher of ``seed`` (cached like the demo), the embedded pair's
    ``SetTables`` and a collator that adds the set targets."""
    toks = tokenizers()
    models = pretrained_models(DemoSize(), seed, toks)
    teacher = models["teacher"]
    vmap = VocabMap(toks.teacher, toks.student, teacher.lm_head.weight.shape[0],
                    models["cross"].lm_head.weight.shape[0])  # fmt: skip
    tables = SetTables(toks.teacher, toks.student, vmap)
    return teacher, tables, ByteKDCollator(DSKDCollator(toks.teacher, toks.student), tables)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=256)
    a = ap.parse_args()
    teacher, _, col = demo_pair(a.seed)
    n = inner = 0
    shares: list[float] = []
    for batch in make_batches(col, task_rows("train", a.rows, a.seed), 32):
        with torch.no_grad():
            ids, att = batch["teacher_input_ids"], batch["teacher_attention_mask"]
            p = teacher(input_ids=ids, attention_mask=att).logits.softmax(-1)
        b, tp, br = batch["byte_batch"], batch["byte_teacher_pos"], batch["set_branch_token"]
        n += b.numel()
        inner += int((batch["byte_token"] < 0).sum())
        row = batch["byte_entry_row"]
        ext = torch.zeros(b.numel()).index_add_(0, row, p[b, tp][row, batch["byte_entry_teacher"]])
        sel = br >= 0
        p_p = p[b[sel], tp[sel], br[sel]]
        shares += (p_p / (p_p + ext[sel])).tolist()
    over = sum(s > 0.1 for s in shares) / max(len(shares), 1)
    print(f"seed {a.seed}: {n} targets, {inner} ({inner / n:.1%}) inside a teacher token, "
          f"{len(shares)} ({len(shares) / max(inner, 1):.1%} of those) branch targets")  # fmt: skip
    print(f"p(P) share at branch targets: mean {statistics.mean(shares):.3f}, median "
          f"{statistics.median(shares):.4f}, over 0.1 at {over:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
