"""``byte_sets`` at real vocabulary sizes: build time and size of ``SetTables``, per-batch set
fields (with the branch targets of ``branch=True``: how many, and the extra teacher positions
per row ``M`` against the row width ``L``), and one chunked loss step on random heads (CPU).

    python benches/set_tables_scale.py --teacher qwen2.5 --student llama2 --rows 8

Tokenizers from ``../shared/tokenizers/<name>``; rows from ``../shared/corpora`` (GSM8K answers,
code), as the torch-layer tests read them. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer

from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.objectives import build_loss
from dskd_align.torch.set_tables import SetTables

ROOT = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="qwen2.5")
    ap.add_argument("--student", default="llama2")
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t_tok = AutoTokenizer.from_pretrained(ROOT / "tokenizers" / a.teacher)
    s_tok = AutoTokenizer.from_pretrained(ROOT / "tokenizers" / a.student)
    vmap = VocabMap(t_tok, s_tok)
    t0 = time.perf_counter()
    tables = SetTables(t_tok, s_tok, vmap)
    build_s = time.perf_counter() - t0
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "torch_layer"))
    from conftest import corpus_rows  # the tests' rows: GSM8K, Dolly, code

    rows = corpus_rows(a.rows)[: a.rows]
    col = ByteKDCollator(DSKDCollator(t_tok, s_tok), tables)
    t0 = time.perf_counter()
    batch = col(rows)
    collate_s = time.perf_counter() - t0
    n = batch["byte_batch"].numel()
    v_t, v_s = tables.teacher_vocab_size, tables.student_vocab_size
    g = torch.Generator().manual_seed(0)
    W_t = torch.randn(v_t, 64, generator=g) / 8
    W_s = (torch.randn(v_s, 32, generator=g) / 6).requires_grad_()
    h_t = torch.randn(*batch["teacher_input_ids"].shape, 64, generator=g)
    h_s = torch.randn(*batch["student_input_ids"].shape, 32, generator=g).requires_grad_()
    fn = build_loss("byte_sets", W_t, W_s.detach(), tables, alpha=1.0, chunk_size=a.chunk)
    t0 = time.perf_counter()
    loss, m = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    loss.backward()
    step_s = time.perf_counter() - t0
    print(json.dumps({
        "pair": f"{a.teacher}->{a.student}", "V_t": v_t, "V_s": v_s,
        "tables_build_s": round(build_s, 1), "sorted_student": tables.num_sorted,
        "extensions": tables.num_extensions, "tight_children": int(tables.child_parent.numel()),
        "ext_child_ranges": int(tables.ext_clo.numel()), "sb_ranges": int(tables.sb_lo.numel()),
        "outcome_strings": tables.rank_base - 1, "rows": len(rows), "targets": n,
        "collate_s": round(collate_s, 2),
        "entries_per_target": round(batch["byte_entry_row"].numel() / max(n, 1), 1),
        "sb_ranges_per_target": round(batch["set_sb_lo"].numel() / max(n, 1), 1),
        "branch_targets": int((batch["set_branch_token"] >= 0).sum()),
        "branch_positions_per_row": int(batch["set_branch_slot"].max()) + 1,
        "teacher_positions_per_row": int(batch["teacher_input_ids"].shape[1]),
        "loss_step_s": round(step_s, 2), "chunk": a.chunk, "kd_byte": float(m["kd_byte"]),
        "byte_teacher_mass": float(m["byte_teacher_mass"]),
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
