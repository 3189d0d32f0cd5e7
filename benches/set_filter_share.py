"""How many ``byte_sets`` targets the student-boundary filter leaves alone (issue 9).

    .venv/bin/python benches/set_filter_share.py [--seed 0] [--rows 256]

A target is left unfiltered when its student token ``u_prev`` has no bytes, or when the
student's own text shows a longer student token matching at ``u_prev``'s start (the tokenizer
was not longest-match there; ``set_targets.py``). Counted on the demo's task train rows, for the
embedded pair and for the teacher's tokenizer on both sides (the ``*-same`` arms).
"""

from __future__ import annotations

import argparse

from dskd_align.demo_data import task_rows
from dskd_align.demo_models import tokenizers
from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_targets import byte_targets
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import _longer_match


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rows", type=int, default=256)
    a = ap.parse_args()
    toks = tokenizers()
    rows = task_rows("train", a.rows, a.seed)
    for name, student in (("cross", toks.student), ("same", toks.teacher)):
        tables = SetTables(toks.teacher, student, VocabMap(toks.teacher, student))
        collate = DSKDCollator(toks.teacher, student)
        n = longer = empty = 0
        for i in range(0, len(rows), 32):
            batch = collate(rows[i : i + 32])
            tg = byte_targets(batch, tables)
            b, sp = tg["byte_batch"], tg["byte_student_pos"]
            n += b.numel()
            longer += int(_longer_match(batch, tables, b, sp).sum())
            empty += int((tables.s_len[batch["student_input_ids"][b, sp]] == 0).sum())
        print(f"{name}: {n} targets, {longer} ({longer / max(n, 1):.1%}) with a longer student "
              f"match (unfiltered), {empty} after a token without bytes")  # fmt: skip


if __name__ == "__main__":
    main()
