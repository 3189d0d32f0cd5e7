"""The command line: alignment view, coverage report with plot, on the embedded default pair."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dskd_align import Aligner, embedded
from dskd_align.cli import main


def test_align_json_equals_api(capsys: pytest.CaptureFixture[str]) -> None:
    text = "Héllo wörld 🙂\n\tdef f(): return 1"
    assert main(["align", "--text", text, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    al = Aligner(embedded.teacher_tokenizer(), embedded.student_tokenizer())(text)
    assert out["pairs"] == al.pairs.tolist()
    assert out["student_spans"] == al.student_spans.tolist()
    assert out["student_coverage"] == pytest.approx(al.student_coverage)
    assert len(out["pairs"]) > 0


def test_align_view_lists_every_token(capsys: pytest.CaptureFixture[str]) -> None:
    text = embedded.SAMPLE_TEXT
    assert main(["align"]) == 0
    view = capsys.readouterr().out
    al = Aligner(embedded.teacher_tokenizer(), embedded.student_tokenizer())(text)
    # One "=" line per exact pair, and the coverage line with the exact counts.
    assert sum(1 for line in view.splitlines() if " = " in line[20:40]) == al.num_pairs
    assert f"({al.aligned}/{al.student_text_tokens})" in view


def test_coverage_report_and_plot(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    rows = [{"text": t} for t in ["a b c", "Привет мир", "x = 1\n", "日本語"]]
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    png = tmp_path / "cov.png"
    code = main(
        ["coverage", "--corpus", str(corpus), "--field", "text", "--plot", str(png), "--json"]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    batch = Aligner(embedded.teacher_tokenizer(), embedded.student_tokenizer()).batch(
        [r["text"] for r in rows]
    )
    assert out["rows"] == 4
    assert out["pairs"] == float(batch.aligned.sum())
    assert out["student_coverage"] == pytest.approx(batch.pooled_coverage()[1])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(out["student_row_median"])


def test_plot_without_matplotlib_is_a_clean_error(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    png = tmp_path / "cov.png"
    assert main(["coverage", "--plot", str(png)]) == 2
    assert "pip install 'dskd-align[plot]'" in capsys.readouterr().err
    assert not png.exists()


def test_bad_tokenizer_path_is_a_clean_error(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    assert main(["align", "--teacher", str(tmp_path / "missing"), "--text", "x"]) == 2
    assert "no tokenizer.json" in capsys.readouterr().err


def test_empty_corpus_is_a_clean_error(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"other": 1}\n')
    assert main(["coverage", "--corpus", str(corpus), "--field", "text"]) == 2
    assert "no texts" in capsys.readouterr().err
