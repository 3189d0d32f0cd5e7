"""The trainer under ``torchrun --nproc_per_node 2`` on the CPU (gloo), with DDP and with FSDP2
(``fully_shard`` of the decoder layers and the root), ends with the same student and projector as
one process on the same global batch (float32, to 1e-5).

Each rank normalizes its loss terms over its own rows and DDP averages gradients (trainer module
notes), so the two runs agree exactly when every rank holds the same number of supervised tokens
and pairs. (DSKD's gated student-space term also counts |A'| and |G|, which depend on the
models, so it is not exact under DDP in general; exact-pair KD's counts depend on the data only.)
The rows are built that way here, without being copies of each other: each response is
six words that are one token in both tokenizers (so every word is an exact pair), drawn at random.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import student_model, teacher_model

WORDS = "the of and to in is that for it with as was on are be this by at from or an not".split()


def _one_token_words(teacher_tok, student_tok) -> list[str]:
    def single(tok, text):
        return len(tok(text, add_special_tokens=False)["input_ids"]) == 1

    return [w for w in WORDS if single(teacher_tok, " " + w) and single(student_tok, " " + w)]


def _torchrun(root: Path, nproc: int, out: str, per_device: int, loss: str, *mode: str) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", str(worker), str(root), out, str(per_device), loss, *mode]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_ranks_equal_one_process(tmp_path, teacher_tok, student_tok):
    loss = "exact_kd"
    words = _one_token_words(teacher_tok, student_tok)
    assert len(words) >= 6, words
    rng = random.Random(0)
    rows = [
        {"prompt": f"Say {i}:", "response": " " + " ".join(rng.choices(words, k=6))}
        for i in range(12)
    ]
    assert len({r["response"] for r in rows}) == len(rows)  # no two rows are copies
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    teacher_model(teacher_tok).save_pretrained(tmp_path / "teacher")
    teacher_tok.save_pretrained(tmp_path / "teacher")
    student_model(student_tok).save_pretrained(tmp_path / "student")
    student_tok.save_pretrained(tmp_path / "student")

    _torchrun(tmp_path, 1, "single", 4, loss)
    single = torch.load(tmp_path / "single.pt", weights_only=True)
    init = student_model(student_tok).state_dict()
    moved = [k for k in init if not torch.equal(single[f"student.{k}"], init[k])]
    assert len(moved) > len(init) // 2  # the runs trained; equality is not of untouched weights
    for mode in ("ddp", "fsdp"):  # one launch each: DDP, then FSDP2 (fully_shard)
        _torchrun(tmp_path, 2, mode, 2, loss, mode)
        other = torch.load(tmp_path / f"{mode}.pt", weights_only=True)
        assert single.keys() == other.keys()
        for k in single:
            torch.testing.assert_close(other[k], single[k], rtol=0, atol=1e-5, msg=f"{mode}: {k}")
