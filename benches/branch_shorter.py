"""What ``byte_sets(branch=True)`` still leaves out inside a teacher token: shorter first tokens.

    .venv/bin/python benches/branch_shorter.py [--seed 0] [--rows 64]

At a student boundary inside teacher token ``k`` (consumed bytes ``P``), ``branch=True`` holds
the teacher's paths whose first token is ``P`` or runs past it. A path may also start with a
*shorter* teacher token ``P[:q]`` and go on with a token ``x`` that starts with the rest of ``P``
(the same text, tokenized another way). This measures that mass one step deep on the demo's
train rows: ``sum_q p(P[:q]) x p_q(x starts with P[q:])`` (one teacher forward per ``(target,
q)``, on copied rows), as a share of it plus the mass ``branch=True`` keeps (``p(P)`` and the
extensions). A later target could include it the way ``branch.py`` includes ``P``; where the path
ends exactly at the boundary it would need a third step.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from branch_mass import demo_pair

from dskd_align.demo_data import make_batches, task_rows
from dskd_align.torch.byte_targets import byte_targets


@torch.no_grad()
def _last_probs(teacher, seqs: list[list[int]]) -> torch.Tensor:
    """The teacher's next-token distribution after each sequence (right-padded batches)."""
    out = []
    for i in range(0, len(seqs), 64):
        chunk = seqs[i : i + 64]
        x = torch.zeros(len(chunk), max(map(len, chunk)), dtype=torch.long)
        mask = torch.zeros_like(x)
        for r, s in enumerate(chunk):
            x[r, : len(s)], mask[r, : len(s)] = torch.tensor(s), 1
        logits = teacher(input_ids=x, attention_mask=mask).logits
        out.append(logits[torch.arange(len(chunk)), mask.sum(1) - 1].softmax(-1))
    return torch.cat(out) if out else torch.zeros(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args()
    teacher, tables, col = demo_pair(a.seed)
    tb = tables._bytes("t")
    ids: dict[bytes, int] = {}
    for v, b in enumerate(tb):
        if b:
            ids.setdefault(b, v)
    starting: dict[bytes, torch.Tensor] = {}
    shares: list[float] = []
    for batch in make_batches(col, task_rows("train", a.rows, a.seed), 16):
        tg = byte_targets(batch, tables, entry_index=True)
        t_ids = batch["teacher_input_ids"]
        with torch.no_grad():
            p = teacher(input_ids=t_ids, attention_mask=batch["teacher_attention_mask"]).logits
            p = p.softmax(-1)
        b, tp, flat = tg["byte_batch"], tg["byte_teacher_pos"], tg["byte_prefix_flat"]
        row = tg["byte_entry_row"]
        kept = torch.zeros(b.numel()).index_add_(0, row, p[b, tp][row, tg["byte_entry_teacher"]])
        seqs, meta = [], []
        inner = (tg["byte_token"] < 0).nonzero()[:, 0].tolist()
        for j in inner:
            r, pos = int(b[j]), int(tp[j])
            k = int(t_ids[r, pos + 1])
            P = tb[k][: int(flat[j]) - int(tables.t_off[k]) + 1]
            kept[j] += float(p[r, pos, ids[P]]) if P in ids else 0.0
            for q in range(1, len(P)):
                if P[:q] in ids:
                    seqs.append(t_ids[r, : pos + 1].tolist() + [ids[P[:q]]])
                    meta.append((j, P[q:], float(p[r, pos, ids[P[:q]]])))
        shorter = dict.fromkeys(inner, 0.0)
        for (j, rest, p_q), pq in zip(meta, _last_probs(teacher, seqs), strict=True):
            if rest not in starting:
                hits = [v for v, x in enumerate(tb) if x.startswith(rest)]
                starting[rest] = torch.tensor(hits, dtype=torch.long)
            shorter[j] += p_q * float(pq[starting[rest]].sum())
        shares += [s / (s + float(kept[j])) if s + kept[j] > 0 else 0.0 for j, s in shorter.items()]
    over = sum(s > 0.1 for s in shares) / max(len(shares), 1)
    print(f"seed {a.seed}, {a.rows} rows: {len(shares)} targets inside a teacher token; share of "
          f"the shorter-first-token paths: mean {statistics.mean(shares):.4f}, median "
          f"{statistics.median(shares):.5f}, over 0.1 at {over:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
