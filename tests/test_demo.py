"""The offline end-to-end demo: tiny teacher and student built from configs, distilled on CPU."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from dskd_align.demo import run_demo  # noqa: E402


def test_demo_trains_both_students() -> None:
    results = run_demo(steps=12, seed=1, verbose=False)
    assert set(results) == {"dskd", "ce-only"}
    for before, after in results.values():
        assert math.isfinite(before) and math.isfinite(after)
        assert after < before  # 12 steps at lr 3e-3 always move a random init's CE down
    # Same initialization for both runs, so the starting CE is identical.
    assert results["dskd"][0] == pytest.approx(results["ce-only"][0])
