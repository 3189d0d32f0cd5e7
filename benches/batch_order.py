"""The demo's two backends and the order of the rows: why the trainer's figure is lower.

    .venv/bin/python benches/batch_order.py same-order [--seed 0] [--steps 12]
    .venv/bin/python benches/batch_order.py rebatch --seeds 0 1 2 3

``same-order``: ``DSKDTrainer`` with a sequential sampler against the loop backend
(``demo_train.train_arm``) on the same batches, ``byte_sets`` with branches: the step losses and
the final weights (they should agree to float noise). ``rebatch``: the loop backend with the rows
re-batched in a new seeded order every epoch, as the trainer's sampler does (with another
generator), for the reference arms and ``byte_sets-cross`` with branches; prints each seed's
test bits/byte and gap closure.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from typing import Any

import torch
from torch.utils.data import SequentialSampler

from dskd_align import demo
from dskd_align.demo_data import make_batches, response_bytes, task_rows
from dskd_align.demo_models import DemoSize, pretrained_models, tokenizers
from dskd_align.demo_train import ArmData, teacher_hidden, train_arm, with_branch_states
from dskd_align.torch import ByteKDCollator, DSKDCollator, DSKDConfig, DSKDTrainer, VocabMap
from dskd_align.torch.objectives import build_loss
from dskd_align.torch.set_tables import SetTables


def _setup(seed: int) -> tuple[Any, ...]:
    toks = tokenizers()
    models = pretrained_models(DemoSize(), seed, toks, None, print)
    teacher = models["teacher"]
    vmap = VocabMap(toks.teacher, toks.student, teacher.lm_head.weight.shape[0],
                    models["cross"].lm_head.weight.shape[0])  # fmt: skip
    tables = SetTables(toks.teacher, toks.student, vmap)
    cols = {"cross": ByteKDCollator(DSKDCollator(toks.teacher, toks.student), tables),
            "same": DSKDCollator(toks.teacher, toks.teacher)}  # fmt: skip
    return toks, models, teacher, tables, cols


class _Sequential(DSKDTrainer):
    """The trainer on the rows in order (the loop backend's batches), step losses recorded."""

    def _get_train_sampler(self, *args: Any, **kwargs: Any) -> Any:
        return SequentialSampler(self.train_dataset)

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:  # fmt: skip
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float(out.detach()))
        return out


def same_order(seed: int, steps: int) -> None:
    toks, models, teacher, tables, cols = _setup(seed)
    train = task_rows("train", DemoSize().train_rows, seed)
    data = with_branch_states(demo._data(cols["cross"], teacher, train, train[:8], train[:8], 8),
                              teacher)  # fmt: skip
    torch.manual_seed(seed)
    loop = copy.deepcopy(models["cross"])
    fn = build_loss("byte_sets", teacher.lm_head.weight.detach(), loop.lm_head.weight.detach(),
                    tables, alpha=0.5, tau=1.0, branch=True)  # fmt: skip
    r = train_arm("loop", loop, teacher, fn, data, steps=steps, eval_every=10**9, lr=3e-4,
                  projector_lr=5e-4, seed=seed, log=lambda s: None)  # fmt: skip
    torch.manual_seed(seed)
    student = copy.deepcopy(models["cross"])
    with tempfile.TemporaryDirectory() as out:
        cfg = DSKDConfig(output_dir=out, loss="byte_sets", alpha=0.5, tau=1.0,
                         loss_kwargs={"branch": True}, max_steps=steps,
                         per_device_train_batch_size=8, learning_rate=3e-4,
                         lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                         max_grad_norm=1.0, report_to=[], use_cpu=True, save_strategy="no",
                         seed=seed, disable_tqdm=True, logging_steps=10**6)  # fmt: skip
        tr = _Sequential(model=student, teacher_model=teacher, args=cfg, train_dataset=train,
                         processing_class=toks.student,
                         teacher_processing_class=toks.teacher)  # fmt: skip
        tr.losses = []
        tr.train()
    pairs = zip(loop.parameters(), student.parameters(), strict=True)
    diff = max(float((a - b).detach().abs().max()) for a, b in pairs)
    print("loop   ", [round(x, 5) for x in r.train_loss])
    print("trainer", [round(x, 5) for x in tr.losses])
    print(f"largest weight difference after {steps} steps: {diff:.1e}")


def rebatch(seed: int) -> None:
    toks, models, teacher, tables, cols = _setup(seed)
    train = task_rows("train", DemoSize().train_rows, seed)
    val, test = task_rows("val", 128, seed), task_rows("test", 256, seed)
    g = torch.Generator().manual_seed(seed)
    epochs = [[train[i] for i in torch.randperm(len(train), generator=g).tolist()]
              for _ in range(4)]  # 128 steps = 4 epochs of 32 batches of 8  # fmt: skip
    arms = (("sft-cross", "cross", "sft", {}), ("byte_sets-cross", "cross", "byte_sets",
            {"branch": True}), ("sft-same", "same", "sft", {}), ("kd-same", "same", "kd",
            {"tau": 1.0}))  # fmt: skip
    res = {}
    for name, kind, loss, opts in arms:
        col = cols[kind]
        tr = [b for rows in epochs for b in make_batches(col, rows, 8)]
        data = ArmData(tr, teacher_hidden(teacher, tr, bool(opts.get("branch"))),
                       make_batches(col, val, 32), make_batches(col, test, 32),
                       response_bytes(val), response_bytes(test))  # fmt: skip
        torch.manual_seed(seed)
        student = copy.deepcopy(models[kind])
        fn = build_loss(loss, teacher.lm_head.weight.detach(), student.lm_head.weight.detach(),
                        tables if loss == "byte_sets" else None,
                        alpha=0.5 if loss != "sft" else 0.0, **opts)  # fmt: skip
        res[name] = train_arm(name, student, teacher, fn, data, steps=128, eval_every=16,
                              lr=3e-4, projector_lr=5e-4, seed=seed).test_bpb  # fmt: skip
    gap = (res["sft-cross"] - res["byte_sets-cross"]) / (res["sft-same"] - res["kd-same"])
    print(f"seed {seed}: gap closure {gap:+.2f}", {k: round(v, 4) for k, v in res.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["same-order", "rebatch"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=12)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.mode == "same-order":
        same_order(a.seed, a.steps)
    else:
        for seed in a.seeds:
            rebatch(seed)


if __name__ == "__main__":
    main()
