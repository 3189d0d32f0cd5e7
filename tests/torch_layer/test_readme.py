"""The README's plain-PyTorch loop runs as written, with two tiny models saved to the two
folders it names (the only change: the two paths), and the loss it prints is finite."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

from tiny_models import student_model, teacher_model

README = Path(__file__).resolve().parents[2] / "README.md"


def _loop_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    loops = [b for b in blocks if "for batch in DataLoader" in b]
    assert len(loops) == 1, "the README has one plain-PyTorch loop"
    return loops[0]


def test_readme_loop_runs(tmp_path, teacher_tok, student_tok, capsys):
    code = _loop_block()
    assert len(code.splitlines()) < 40  # the README promises a loop under 40 lines
    for name, tok, build in (
        ("teacher", teacher_tok, teacher_model),
        ("student", student_tok, student_model),
    ):
        build(tok).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
        code = code.replace(f'"path/to/{name}"', repr(str(tmp_path / name)))
    exec(compile(code, "README.md", "exec"), {})
    printed = [
        ast.literal_eval(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{")
    ]
    assert len(printed) == 2
    assert all(math.isfinite(p["loss"]) and 0 < p["coverage"] <= 1 for p in printed)
