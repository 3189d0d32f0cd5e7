"""``benches/gpu_branch.py`` (the packed teacher forward's GPU check) runs on the CPU and its
check holds there, on a Qwen2-style (grouped-query) teacher with ``sdpa``: the gold states are a
plain forward's, the branch states a one-by-one forward's. No timing is asserted."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
from gpu_branch import measure  # noqa: E402


def test_packed_forward_check_holds_on_cpu():
    r = measure("cpu", "fp32", d=64, layers=2, B=3, L=40, branches=6, steps=1)
    assert r["positions"] == 40 + 6  # the widest row's branches follow the gold positions
    assert r["gold"] == 0.0
    assert r["checked"] >= 10 and r["branch"] < 1e-5
