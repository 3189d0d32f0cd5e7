"""The demo's step budget: gap closure of every budget up to ``--steps``, from one run per arm.

    .venv/bin/python benches/demo_budget.py --seeds 0 1 --steps 256 --out /tmp/budget_s01.json
    .venv/bin/python benches/demo_budget.py --read benches/results/demo_budget.json

Each arm runs once for ``--steps`` through the demo's trainer backend (``--backend loop``: the
benchmark's loop) with the test split scored at every validation point (``track_test``). With
the demo's constant learning rate and seeded batch order, a run's first ``B`` steps are the
``B``-step run (``tests/test_demo.py`` checks it), so ``ArmResult.at_budget(B)`` gives what
``dskd-align distill --max-steps B`` would report: each arm at its best validation step up to
``B``, scored on test. Results are JSON: ``{seed: {arm: {"curve", "test_curve", "best_step",
"test_bpb"}}}``; ``--read`` merges files arm by arm (a later file's arm replaces an earlier's) and
prints per seed and mean ± sd for each budget. Merge only files of one machine: the pretrained
models, and each seed's figures, differ between machines in float rounding.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from dskd_align import demo
from dskd_align.demo_train import ArmResult

ARMS = ("sft-cross", "byte_sets-cross", "byte_sets-cross lmbda=0.5", "sft-same", "kd-same",
        "kd-same lmbda=0.5")  # fmt: skip
LOOP_ARMS = tuple(a for a in ARMS if "lmbda" not in a)  # on-policy arms need the trainer


def run(seeds: list[int], steps: int, arms: list[str], backend: str) -> dict:
    out = {}
    for seed in seeds:
        res = demo.run_seed(seed, arms, steps=steps, size=demo.DemoSize(), cache_dir=None,
                            lr=3e-4, alpha=0.5, batch_size=8, eval_every=16, backend=backend,
                            log=print, track_test=True)  # fmt: skip
        out[str(seed)] = {n: {"curve": r.curve, "test_curve": r.test_curve,
                              "best_step": r.best_step, "test_bpb": r.test_bpb}
                          for n, r in res.items()}  # fmt: skip
    return out


def _result(name: str, d: dict) -> ArmResult:
    r = ArmResult(name, curve=[tuple(x) for x in d["curve"]])
    r.test_curve = [tuple(x) for x in d["test_curve"]]
    return r


def report(results: dict, budgets: list[int], kd: str = "kd-same") -> None:
    for budget in budgets:
        gaps: dict[str, list[float]] = {}
        print(f"budget {budget} steps (test bits/byte at the best validation step <= {budget}):")
        for seed in sorted(results, key=int):
            last = min(d["curve"][-1][0] for d in results[seed].values())
            if budget > last:  # a merged file may hold shorter runs: say so, do not extrapolate
                print(f"  seed {seed}: ran {last} steps, not read at {budget}")
                continue
            at = {n: _result(n, d).at_budget(budget) for n, d in results[seed].items()}
            cells = [f"{n} {t:.4f} ({s})" for n, (s, t) in at.items()]
            read = {n: ArmResult(n, test_bpb=t) for n, (_, t) in at.items()}
            for n, g in demo.gap_closure(read, kd).items():  # the demo's measure at this budget
                gaps.setdefault(n, []).append(g)
                cells.append(f"gap {n} {g:+.2f}")
            print(f"  seed {seed}: " + ", ".join(cells))
        for n, xs in gaps.items():
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            print(f"  {n}: gap closure {statistics.fmean(xs):+.2f} ± {sd:.2f} over {len(xs)} seeds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=384)
    ap.add_argument("--arms", nargs="+", help=f"default {ARMS} (loop: {LOOP_ARMS})")
    ap.add_argument("--backend", choices=["trainer", "loop"], default="trainer")
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 384])
    ap.add_argument("--out", help="write the run's JSON here")
    ap.add_argument("--read", nargs="+", help="JSON files to merge and report (no training)")
    ap.add_argument("--kd", default="kd-same", help="the denominator's same-tokenizer KD arm")
    a = ap.parse_args()
    if a.read:
        results = {}
        for f in a.read:  # per arm: a file of new arms reads next to the stored references
            for seed, arms in json.loads(Path(f).read_text()).items():
                results.setdefault(seed, {}).update(arms)
    else:
        torch.set_num_threads(1)
        arms = a.arms or list(LOOP_ARMS if a.backend == "loop" else ARMS)
        results = run(a.seeds, a.steps, arms, a.backend)
        if a.out:
            Path(a.out).write_text(json.dumps(results))
    report(results, a.budgets, a.kd)


if __name__ == "__main__":
    main()
