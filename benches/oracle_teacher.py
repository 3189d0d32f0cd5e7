"""How much of the same-tokenizer KD gain can a cross-tokenizer student get at all? (issue 9)

The gap closure divides the cross student's gain by the *same-tokenizer* student's gain from
vanilla KD, but the two students differ (tokenizer, and so their SFT baseline: ~2.0 against ~1.85
bits/byte on the demo). This bench gives the cross student the best target any cross-tokenizer
loss could aim at: vanilla KD from an **oracle teacher** that speaks the student's own tokenizer.
The oracle is the demo teacher's architecture, pretrained exactly like it (same rows, steps, lr,
seed) with the student's tokenizer; its own test bits/byte are printed next to the real
teacher's, since its quality is part of what it shows. Then the arm ``kd-cross oracle`` (vanilla
KD, tau 1, alpha 0.5, 128 steps, the demo's budget then, through ``train_arm``) and its gap
closure against the seed's ``sft-cross``/``sft-same``/``kd-same`` in the given results file
(same machine: pairs of one file only).

    .venv/bin/python benches/oracle_teacher.py --seeds 0 1 2 3 --ref /tmp/ov/s{seed}.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics

import torch

from dskd_align import demo
from dskd_align.demo_data import make_batches
from dskd_align.demo_models import (
    DemoSize,
    _key,
    _pretrain,
    build_teacher,
    cache_root,
    pretrained_models,
    tokenizers,
)
from dskd_align.demo_train import evaluate, train_arm
from dskd_align.torch import DSKDCollator
from dskd_align.torch.objectives import build_loss


def oracle_teacher(size: DemoSize, seed: int, toks, folder) -> torch.nn.Module:
    """The demo teacher's pretraining with the student's tokenizer (cached beside the demo's)."""
    path = folder / f"oracle_teacher_{size.teacher_steps}.pt"
    model = build_teacher(toks.student, size)
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:
        col = DSKDCollator(toks.student, toks.student)
        n = size.pretrain_rows
        rows = demo.task_rows("teacher", n, seed) + demo.task_rows("train", size.train_rows, seed)
        batches = make_batches(col, rows, size.pretrain_batch)
        torch.manual_seed(seed)
        model = build_teacher(toks.student, size)
        last = _pretrain(model, batches, "teacher", size.teacher_steps, size.lr, seed)
        print(f"  oracle teacher: {size.teacher_steps} steps, last CE {last:.3f}")
        torch.save(model.state_dict(), path)
    return model.eval().requires_grad_(False)


def run(seed: int, steps: int, oracle_steps: int) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    size, toks = DemoSize(), tokenizers()
    models = pretrained_models(size, seed, toks)
    folder = cache_root() / f"demo-{_key(size, seed, toks)}"  # the demo's cache of this seed
    oracle = oracle_teacher(DemoSize(teacher_steps=oracle_steps), seed, toks, folder)
    train = demo.task_rows("train", size.train_rows, seed)
    val, test = demo.task_rows("val", 128, seed), demo.task_rows("test", 256, seed)
    data = demo._data(DSKDCollator(toks.student, toks.student), oracle, train, val, test, 8)
    o_bpb = evaluate(oracle, data.test, data.test_bytes)
    student = copy.deepcopy(models["cross"])
    torch.manual_seed(seed)
    fn = build_loss("kd", oracle.lm_head.weight.detach(), student.lm_head.weight.detach(), None,
                    alpha=0.5, tau=1.0)  # fmt: skip
    r = train_arm("kd-cross oracle", student, oracle, fn, data, steps=steps, eval_every=16,
                  lr=3e-4, projector_lr=5e-4, seed=seed)  # fmt: skip
    return {"oracle_teacher_test_bpb": o_bpb, "test_bpb": r.test_bpb, "val_bpb": r.val_bpb,
            "best_step": r.best_step}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--oracle-steps", type=int, default=DemoSize().teacher_steps,
                    help="the oracle teacher's pretraining steps (the teacher's: 400)")  # fmt: skip
    ap.add_argument("--ref", required=True, help="results file per seed, '{seed}' in the name")
    a = ap.parse_args()
    gaps = []
    for seed in a.seeds:
        r = run(seed, a.steps, a.oracle_steps)
        ref = json.loads(open(a.ref.format(seed=seed)).read())[str(seed)]
        b = {k: ref[k]["test_bpb"] for k in ("sft-cross", "sft-same", "kd-same")}
        gap = (b["sft-cross"] - r["test_bpb"]) / (b["sft-same"] - b["kd-same"])
        gaps.append(gap)
        print(f"seed {seed}: teacher {ref['teacher']['test_bpb']:.4f}, oracle teacher "
              f"{r['oracle_teacher_test_bpb']:.4f} bits/byte; sft-cross {b['sft-cross']:.4f}, "
              f"kd-cross oracle {r['test_bpb']:.4f} (step {r['best_step']}); sft-same "
              f"{b['sft-same']:.4f}, kd-same {b['kd-same']:.4f}; gap closure {gap:+.2f}",
              flush=True)  # fmt: skip
    sd = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
    print(
        f"kd-cross oracle gap closure: {statistics.mean(gaps):+.2f} ± {sd:.2f} ({len(gaps)} seeds)"
    )


if __name__ == "__main__":
    main()
