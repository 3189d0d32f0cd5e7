"""``dskd-align distill`` end to end on tiny models saved to local folders (no downloads): TRL
``prompt``/``completion`` JSONL in, a trained student, its projectors and ``metrics.jsonl`` out;
resume from a checkpoint; clear errors for a wrong data format and half-given model arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny_models import student_model, teacher_model

from dskd_align.cli import main


@pytest.fixture()
def folders(tmp_path, teacher_tok, student_tok, rows):
    t_dir, s_dir = tmp_path / "teacher", tmp_path / "student"
    teacher_model(teacher_tok).save_pretrained(t_dir)
    teacher_tok.save_pretrained(t_dir)
    student_model(student_tok).save_pretrained(s_dir)
    student_tok.save_pretrained(s_dir)
    data = tmp_path / "train.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for r in rows[:16]:  # TRL's prompt/completion format
            f.write(json.dumps({"prompt": r["prompt"], "completion": r["response"]}) + "\n")
    return t_dir, s_dir, data


def _run(t_dir, s_dir, data, out, *extra: str) -> int:
    return main(
        [
            "distill",
            *("--teacher", str(t_dir), "--student", str(s_dir), "--data", str(data)),
            *("--output-dir", str(out), "--device", "cpu", "--batch-size", "4"),
            *("--max-length", "128", "--learning-rate", "1e-2", "--logging-steps", "1"),
            *extra,
        ]
    )


def test_distill_runs_end_to_end(tmp_path, folders, capsys):
    t_dir, s_dir, data = folders
    out = tmp_path / "out"
    extra = ["--max-steps", "4", "--eval-data", str(data), "--loss", "exact_kd+chunk_kd"]
    extra += ["--loss-option", "unmapped=other", "--loss-option", "chunk_weight=0.5"]
    assert _run(t_dir, s_dir, data, out, *extra) == 0
    assert not (out / "dskd_loss.pt").exists()  # exact-pair and chunk KD train no projector
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2, 3, 4]
    for key in ("ce_gold", "coverage", "tokens_per_s"):
        assert all(key in x for x in steps), key
    printed = capsys.readouterr().out
    assert "distilled" in printed and "eval_loss" in printed


def test_distill_accepts_byte_kd(tmp_path, folders):
    t_dir, s_dir, data = folders
    out = tmp_path / "out"
    extra = ["--max-steps", "2", "--loss", "byte_kd", "--loss-option", "crossing=two_step"]
    assert _run(t_dir, s_dir, data, out, *extra, "--alpha", "0.33") == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("kd_byte" in x and "byte_coverage" in x for x in lines if "loss" in x)


def test_distill_accepts_byte_sets(tmp_path, folders):
    t_dir, s_dir, data = folders
    out = tmp_path / "out"
    extra = ["--max-steps", "2", "--loss", "byte_sets", "--loss-option", "tight_extensions=true"]
    assert _run(t_dir, s_dir, data, out, *extra) == 0
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("kd_byte" in x and "byte_coverage" in x for x in lines if "loss" in x)


def test_distill_resumes_from_a_checkpoint(tmp_path, folders):
    t_dir, s_dir, data = folders
    out = tmp_path / "out"
    assert _run(t_dir, s_dir, data, out, "--max-steps", "2", "--save-steps", "2") == 0
    assert (out / "checkpoint-2" / "dskd_loss.pt").is_file()
    assert _run(t_dir, s_dir, data, out, "--max-steps", "4", "--resume") == 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert 3 in steps and 4 in steps


def test_distill_wrong_format_names_the_formats(tmp_path, folders, capsys):
    t_dir, s_dir, _ = folders
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    assert _run(t_dir, s_dir, bad, tmp_path / "out", "--max-steps", "1") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl, row 0" in err and "completion" in err


def test_distill_needs_both_models(tmp_path, folders, capsys):
    t_dir, _, data = folders
    assert main(["distill", "--teacher", str(t_dir), "--data", str(data)]) == 2
    assert "pass both --teacher and --student" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "dskd_align", "distill", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--teacher" in out.stdout and "--lmbda" in out.stdout


def test_distill_data_without_models_is_refused(tmp_path, folders, capsys):
    _, _, data = folders
    assert main(["distill", "--data", str(data)]) == 2
    assert "--data needs --teacher and --student" in capsys.readouterr().err


def test_distill_leaves_the_process_group(tmp_path):
    """Under torchrun the command leaves the group before exit: a gloo rank that exits with it
    alive can abort in teardown (SIGABRT) after a good run, failing the whole launch."""
    import torch.distributed as dist

    from dskd_align.distill_cli import _leave_process_group

    _leave_process_group()  # no group (a plain run): nothing to do, no error
    store = f"file://{tmp_path / 'store'}"
    dist.init_process_group("gloo", init_method=store, rank=0, world_size=1)
    assert dist.is_initialized()
    _leave_process_group()
    assert not dist.is_initialized()
