"""The embedded demo end to end at tiny size: every arm runs through the trainer, its loss falls,
the pretrained models are cached and reused. No quality figure is asserted (training noise)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from dskd_align.demo import (  # noqa: E402
    DEFAULT_ARMS,
    DemoError,
    DemoSize,
    gap_closure,
    run_demo,
    run_seed,
)
from dskd_align.demo_train import ArmResult  # noqa: E402

TINY = DemoSize(
    teacher_dim=32,
    teacher_layers=1,
    teacher_steps=2,
    student_dim=16,
    student_layers=1,
    student_steps=2,
    train_rows=32,
    pretrain_rows=32,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_every_arm_runs_through_the_trainer_and_its_loss_falls(cache: Path, tmp_path: Path) -> None:
    out = run_demo(
        seeds=(0,),
        out_dir=tmp_path,
        steps=8,
        eval_every=4,
        size=TINY,
        cache_dir=cache,
        lr=1e-2,
        verbose=False,
        plot=False,
    )
    assert list(out["arms"]) == list(DEFAULT_ARMS)
    for name, arm in out["arms"].items():
        losses = arm["train_loss"]
        assert len(losses) == 8, name  # logged every step at this size
        assert _mean(losses[-2:]) < _mean(losses[:2]), (name, losses)
        assert all(math.isfinite(x) for x in arm["test_bpb"])
        assert [s for s, _ in arm["curve"]] == [0, 4, 8]
    # Gap closure for every cross arm but the SFT reference it is measured against.
    assert set(out["gap_closure"]) == {"dskd-cross", "byte_sets-cross lmbda=0.5"}
    assert set(out["gap_closure_on_policy_kd"]) == {"byte_sets-cross lmbda=0.5"}  # like for like


def test_on_policy_arms_sample_and_their_loss_falls(cache: Path) -> None:
    """Both tokenizer pairs on-policy (GKD's lmbda) through the trainer. The tiny student samples
    off its tokenizer's canonical splits, so the one-tokenizer arm checks that the teacher scores
    the sampled ids (`kd` needs one [B, L])."""
    arms = ("byte_sets-cross lmbda=0.5", "kd-same lmbda=0.5")
    res = run_seed(0, arms, steps=8, size=TINY, cache_dir=cache, lr=1e-2, alpha=0.5,
                   batch_size=8, eval_every=4, backend="trainer", log=lambda *a: None)  # fmt: skip
    for name in arms:
        assert 0 < res[name].metrics["on_policy_share"] < 1, name  # seeded: some batches sampled
        losses = res[name].train_loss
        assert _mean(losses[-2:]) < _mean(losses[:2]), (name, losses)


def test_loop_backend_reuses_the_cached_models(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_demo(
        seeds=(0,),
        out_dir=tmp_path,
        steps=4,
        eval_every=2,
        arms=("sft-cross",),
        loss="exact_kd",
        size=TINY,
        cache_dir=cache,
        lr=1e-2,
        backend="loop",
        plot=False,
    )
    printed = capsys.readouterr().out
    assert "loaded from the cache" in printed and "pretraining" not in printed
    assert list(out["arms"]) == ["sft-cross", "exact_kd-cross"]
    for name, arm in out["arms"].items():
        assert _mean(arm["train_loss"][-2:]) < _mean(arm["train_loss"][:2]), name
    assert out["gap_closure"] == {}  # no same-tokenizer reference arms in this run


def test_gap_closure_counts_every_cross_arm_against_the_chosen_kd_arm() -> None:
    bpb = {"sft-cross": 2.0, "byte_sets-cross lmbda=0.5": 1.96, "exact_kd-cross": 2.02,
           "sft-same": 1.8, "kd-same": 1.75, "kd-same lmbda=0.5": 1.76}  # fmt: skip
    res = {n: ArmResult(n, test_bpb=v) for n, v in bpb.items()}
    assert gap_closure(res) == pytest.approx({"byte_sets-cross lmbda=0.5": 0.8,
                                              "exact_kd-cross": -0.4})  # fmt: skip
    assert gap_closure(res, kd="kd-same lmbda=0.5")["byte_sets-cross lmbda=0.5"] == pytest.approx(1)
    del res["kd-same"]
    assert gap_closure(res) == {}  # no denominator


@pytest.mark.parametrize(
    "kwargs",
    [
        {"arms": ("nonsense",)},
        {"backend": "gpu-magic"},
        {"steps": 0},
        {"teacher": "gpt2"},
        {"arms": ("kd-same lmbda=0.5",), "backend": "loop"},  # on-policy needs the trainer
    ],
)
def test_bad_settings_are_refused_before_training(kwargs: dict) -> None:
    with pytest.raises(DemoError):
        run_demo(verbose=False, plot=False, **kwargs)


@pytest.mark.parametrize("backend", ["trainer", "loop"])
def test_a_tracked_run_reads_off_every_shorter_budget(cache: Path, backend: str) -> None:
    """``ArmResult.at_budget`` (benches/demo_budget.py) claims a run's first steps are the shorter
    run: the 4-step run's reported figure equals the 8-step run's reading at 4."""
    kw = dict(size=TINY, cache_dir=cache, lr=1e-2, alpha=0.5, batch_size=8, eval_every=4,
              backend=backend, log=lambda s: None)  # fmt: skip
    arms: tuple[str, ...] = ("sft-cross", "byte_sets-cross")
    if backend == "trainer":  # the student's samples follow the seed too
        arms += ("byte_sets-cross lmbda=0.5",)
    long = run_seed(0, arms, steps=8, track_test=True, **kw)
    short = run_seed(0, arms, steps=4, **kw)
    for name in arms:
        r = long[name]
        assert r.at_budget(8) == (r.best_step, r.test_bpb), name
        step, test = r.at_budget(4)
        assert step == short[name].best_step, name
        assert test == pytest.approx(short[name].test_bpb, abs=1e-9), name
        assert short[name].test_curve == []  # not tracked unless asked
    with pytest.raises(ValueError, match="validation point"):
        long["sft-cross"].at_budget(6)
    with pytest.raises(ValueError, match="track_test"):
        short["sft-cross"].at_budget(4)


@pytest.mark.parametrize(
    ("argv", "steps"),
    [
        (["distill"], None),
        (["demo"], None),
        (["distill", "--max-steps", "64"], 64),
        (["demo", "--steps", "32"], 32),
    ],
)
def test_both_commands_keep_the_demo_budget_unless_told(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], steps: int | None
) -> None:
    """`distill` without models and `demo` leave the step budget to ``run_demo`` (one default,
    BENCHMARKS.md "The demo's budget") and pass an explicit one through."""
    import dskd_align.demo
    from dskd_align.cli import main

    calls: list[dict] = []
    monkeypatch.setattr(dskd_align.demo, "run_demo", lambda **kw: calls.append(kw))
    assert main(argv) == 0
    assert len(calls) == 1 and calls[0].get("steps") == steps
