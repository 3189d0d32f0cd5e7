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


def set_target(kd: Any, tables: SetTables, w_t: torch.Tensor, batch: Any, h: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``byte_sets``' target as ``SetKD`` computes it (tau 1, branch states in ``h``, the
    student-boundary filter): normalized next-token masses ``[N, V_t]``, extension entry masses
    ``[E]`` and each target's mass before normalizing ``[N]``. For the benches that look inside
    it (the loss does not expose it)."""
    b, tp, g = batch["byte_batch"], batch["byte_teacher_pos"], batch["byte_token"]
    br, n_l = batch["set_branch_token"], batch["teacher_input_ids"].shape[1]
    g = torch.where(br >= 0, br, g)
    nxt = torch.where(br >= 0, n_l + batch["set_branch_slot"], tp + 1).clamp_max(h.shape[1] - 1)
    p = torch.softmax(h[b, tp] @ w_t.T, -1)
    p_k = torch.where(g >= 0, p.gather(1, g.clamp_min(0)[:, None])[:, 0], 0.0)
    qn = p_k[:, None] * torch.softmax(h[b, nxt] @ w_t.T, -1)
    qn = qn.masked_fill(tables.next_cls[None, :] < 0, 0.0)
    rid = torch.arange(b.numel())
    qn = qn.masked_fill(kd._ruled_out(rid, batch["set_sb_lo"], batch["set_sb_hi"]), 0.0)
    row = batch["byte_entry_row"]
    pe = p[row, batch["byte_entry_teacher"]] * batch["set_entry_sb_ok"]
    mass = qn.sum(1) + torch.zeros(b.numel()).index_add_(0, row, pe)
    inv = 1.0 / mass.clamp_min(1e-30)
    return qn * inv[:, None], pe * inv[row], mass


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
