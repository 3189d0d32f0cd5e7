"""How much of ``byte_sets``' target sits in outcome classes whose student sets overlap.

    .venv/bin/python benches/set_overlap.py [--seed 0] [--rows 64]

``byte_sets`` scores each teacher outcome class ``R`` on ``p_s(C(R))``, the student's mass on
the set of its tokens consistent with ``R``. Where two classes' sets share a token (mostly a short
``first(R)``: the student writes ``r`` both for "the teacher token `there`" and for "`the`, then
`r`..."), that token's probability counts for both, and the loss's optimum leans towards such
tokens. This measures, on the demo's train rows with the pretrained teacher, branch states and
the filter as the loss applies them: the target mass on classes (at least 1e-3 of the target)
whose set shares a token with another such class, and the pretrained cross student's probability
counted more than once (``sum_u p_s(u) x (classes holding u - 1)``). One target at a time, dense
sets: slow (minutes), a diagnostic only.
"""

from __future__ import annotations

import argparse

import torch
from branch_mass import demo_pair, set_target

from dskd_align.demo_data import make_batches, task_rows
from dskd_align.demo_models import DemoSize, pretrained_models, tokenizers
from dskd_align.torch.branch import teacher_hidden_with_branches
from dskd_align.torch.set_kd import SetKD

THR = 1e-3


def next_sets(tables, v_s: int) -> torch.Tensor:
    """``[V_t, V_s]`` bool: each next-token class's tight set (``set_tables.py``)."""
    v_t, ss = tables.next_lo.numel(), tables.s_sorted
    m = torch.zeros(v_t, v_s, dtype=torch.bool)
    for w in range(v_t):
        lo, hi = int(tables.next_lo[w]), int(tables.next_hi[w])
        m[w, ss[lo:hi]] = True
    for w, lo, hi in zip(tables.child_parent.tolist(), tables.child_lo.tolist(),
                         tables.child_hi.tolist(), strict=True):  # fmt: skip
        m[w, ss[lo:hi]] = False
    ok = tables.pm >= 0
    m[torch.arange(v_t)[ok], tables.pm[ok]] = True
    m[tables.next_cls < 0] = False
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=64)
    a = ap.parse_args()
    teacher, tables, col = demo_pair(a.seed)
    student = pretrained_models(DemoSize(), a.seed, tokenizers())["cross"]
    kd = SetKD(tables, branch=True)
    v_t, v_s, ss = tables.next_lo.numel(), student.lm_head.weight.shape[0], tables.s_sorted
    nxt_sets, cls = next_sets(tables, v_s), tables.next_cls
    w_t = teacher.lm_head.weight.detach()
    n = mass_ov = dbl = 0.0
    for batch in make_batches(col, task_rows("train", a.rows, a.seed), 16):
        with torch.no_grad():
            h = teacher_hidden_with_branches(teacher, batch)
            hs = student.model(
                input_ids=batch["student_input_ids"], attention_mask=batch["student_attention_mask"]
            ).last_hidden_state
            qn, qe, mass = set_target(kd, tables, w_t, batch, h)
            b, row = batch["byte_batch"], batch["byte_entry_row"]
            ps = torch.softmax(student.lm_head(hs[b, batch["byte_student_pos"]]), -1)
        for i in range(b.numel()):
            if mass[i] <= 0:
                continue
            qcls = torch.zeros(v_t).index_add_(0, cls.clamp_min(0), qn[i])
            ws = [w for w in torch.unique(cls[qn[i] >= THR]).tolist() if w >= 0]
            sets, qs = [nxt_sets[w] for w in ws], [float(qcls[w]) for w in ws]
            ext: dict[int, list] = {}  # class (same bytes) -> [mass, an entry]
            for e in (row == i).nonzero()[:, 0].tolist():
                key = int(tables.t_rep[batch["byte_entry_teacher"][e]])
                ext.setdefault(key, [0.0, e])[0] += float(qe[e])
            for q, e in ext.values():
                if q < THR:
                    continue
                m = torch.zeros(v_s, dtype=torch.bool)
                j = int(batch["set_entry_index"][e])
                m[ss[int(tables.ext_lo[j]) : int(tables.ext_hi[j])]] = True
                m[int(batch["byte_entry_student"][e])] = True
                sets.append(m)
                qs.append(q)
            if not sets:
                continue
            s = torch.stack(sets)
            mult = s.sum(0)
            n += 1
            mass_ov += float((torch.tensor(qs) * (s & (mult >= 2)[None]).any(1)).sum())
            dbl += float((ps[i] * (mult - 1).clamp_min(0)).sum())
    print(f"seed {a.seed}: {n:.0f} targets; target mass on classes whose set overlaps another's: "
          f"{mass_ov / n:.3f}; the pretrained student's probability counted more than once: "
          f"{dbl / n:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
