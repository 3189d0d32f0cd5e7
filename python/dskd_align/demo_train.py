"""The demo's distillation arms: same student init, same batches, same steps; only the loss differs.

Each arm fine-tunes a copy of a pretrained student on the task's train batches with one loss
module (anything with ``forward_batch(batch, h_s, h_t, W_s, W_t) -> (loss, metrics)``), evaluates
test-time quality as bits/byte on the validation split every ``eval_every`` steps, keeps the
weights of the best validation point, and reports the test split at that point (so no arm is
judged by a lucky last step, and the test split never chooses anything).

The teacher is frozen and the batches are fixed, so its last hidden states are computed once per
batch and shared by every arm (the teacher side of a batch is identical for both students).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from dskd_align.demo_data import bits_per_byte, ce_sum
from dskd_align.torch.branch import teacher_hidden_with_branches

__all__ = [
    "ArmData",
    "ArmResult",
    "eval_point",
    "evaluate",
    "teacher_hidden",
    "train_arm",
    "with_branch_states",
]


@dataclass
class ArmData:
    """Batches of one student kind; ``t_hidden[i]`` ``[B, L_t, d_t]`` belongs to ``train[i]``."""

    train: list[Any]
    t_hidden: list[torch.Tensor]
    val: list[Any]
    test: list[Any]
    val_bytes: int
    test_bytes: int


@dataclass
class ArmResult:
    name: str
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, val bits/byte)
    train_loss: list[float] = field(default_factory=list)
    best_step: int = 0
    val_bpb: float = float("inf")
    test_bpb: float = float("nan")
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)  # last step's loss metrics
    # (step, test bits/byte) at every validation point: only with ``track_test`` (benchmarks)
    test_curve: list[tuple[int, float]] = field(default_factory=list)

    def at_budget(self, steps: int) -> tuple[int, float]:
        """``(best validation step, test bits/byte there)`` of a run of ``steps``, read off this
        longer run tracked with ``track_test``: with a constant learning rate and the same batch
        order, a run's first ``steps`` steps are the shorter run. ``steps`` must be a validation
        point (the shorter run would also validate at its last step)."""
        if not self.test_curve:
            raise ValueError(f"{self.name}: no test curve; train it with track_test=True")
        if steps not in {s for s, _ in self.curve}:
            raise ValueError(f"{self.name}: step {steps} is not a validation point of this run "
                             "(use a multiple of eval_every up to its steps)")  # fmt: skip
        best, best_step = float("inf"), 0
        for step, v in self.curve:
            if step <= steps and v < best:
                best, best_step = v, step
        return best_step, dict(self.test_curve)[best_step]


def _hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def teacher_hidden(teacher: Any, batches: list[Any], branches: bool = False) -> list[torch.Tensor]:
    """The teacher's last hidden states ``[B, L_t, d_t]`` of every batch; ``branches``: followed
    by the branch states of ``byte_sets(branch=True)`` (the batches carry the set targets)."""
    if branches:
        return [teacher_hidden_with_branches(teacher, b) for b in batches]
    return [_hidden(teacher, b["teacher_input_ids"], b["teacher_attention_mask"]) for b in batches]


def with_branch_states(data: ArmData, teacher: Any) -> ArmData:
    """``data`` with the teacher's hidden states followed by the branch states of
    ``byte_sets(branch=True)``; the batches themselves are shared, not rebuilt."""
    return replace(data, t_hidden=teacher_hidden(teacher, data.train, True))


@torch.no_grad()
def evaluate(model: Any, batches: list[Any], n_bytes: int) -> float:
    """Bits/byte of the student side of ``batches`` (CE over all student label tokens)."""
    was = model.training
    model.eval()
    tot = 0.0
    for b in batches:
        out = model(input_ids=b["student_input_ids"], attention_mask=b["student_attention_mask"])
        tot += float(ce_sum(out.logits, b["student_labels"]))
    model.train(was)
    return bits_per_byte(tot, n_bytes)


def eval_point(res: ArmResult, model: Any, data: ArmData, step: int, track_test: bool) -> float:
    """Validation bits/byte at ``step``, added to the curve (and the test figure, if tracked)."""
    v = evaluate(model, data.val, data.val_bytes)
    res.curve.append((step, v))
    if track_test:
        res.test_curve.append((step, evaluate(model, data.test, data.test_bytes)))
    return v


def train_arm(
    name: str,
    student: Any,
    teacher: Any,
    loss_fn: torch.nn.Module,
    data: ArmData,
    *,
    steps: int,
    eval_every: int,
    lr: float,
    projector_lr: float,
    seed: int,
    log: Callable[[str], None] = print,
    shuffle: bool = False,
    track_test: bool = False,
) -> ArmResult:
    """Trains ``student`` in place with ``loss_fn``; returns the curve and the test figure.
    The batches go in their order every epoch; ``shuffle``: in a new order each epoch (seeded),
    as the trainer's sampler does with rows. ``track_test``: score the test split at every
    validation point too (``ArmResult.at_budget``; the reported figure is unchanged)."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    res = ArmResult(name)
    groups = [{"params": list(student.parameters()), "lr": lr}]
    extra = [p for p in loss_fn.parameters() if p.requires_grad]
    if extra:
        groups.append({"params": extra, "lr": projector_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    W_t = teacher.lm_head.weight
    best_state = copy.deepcopy(student.state_dict())
    res.val_bpb = eval_point(res, student, data, 0, track_test)
    student.train()
    order = torch.arange(len(data.train))
    shuffler = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        if shuffle and (step - 1) % len(data.train) == 0:
            order = torch.randperm(len(data.train), generator=shuffler)
        i = int(order[(step - 1) % len(data.train)])
        b = data.train[i]
        h_s = _hidden(student, b["student_input_ids"], b["student_attention_mask"])
        loss, m = loss_fn.forward_batch(b, h_s, data.t_hidden[i], student.lm_head.weight, W_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        res.train_loss.append(float(loss.detach()))
        if step % eval_every == 0 or step == steps:
            v = eval_point(res, student, data, step, track_test)
            if v < res.val_bpb:
                res.val_bpb, res.best_step = v, step
                best_state = copy.deepcopy(student.state_dict())
    res.metrics = {k: float(v) for k, v in m.items()} if steps else {}
    return finish_arm(res, student, best_state, data, t0, log)


def finish_arm(
    res: ArmResult, student: Any, best_state: dict, data: ArmData, t0: float, log: Callable
) -> ArmResult:
    """Back to the best validation step, score the test split, log one line (both backends)."""
    student.load_state_dict(best_state)
    res.test_bpb = evaluate(student, data.test, data.test_bytes)
    res.seconds = time.perf_counter() - t0
    log(
        f"  {res.name:<24} best val {res.val_bpb:.4f} at step {res.best_step:>4}, "
        f"test {res.test_bpb:.4f} bits/byte ({res.seconds:.0f} s)"
    )
    return res
