"""``DSKDTrainer`` against a plain training loop on the same batches in the same order: the same
step losses and the same weights. The demo's loop backend and the benchmark figures rest on this
(BENCHMARKS.md, "What is left": the two backends differ only in the order of the rows). Run with
the most involved loss path: ``byte_sets`` with the teacher's branch states."""

from __future__ import annotations

import copy

import torch
from test_trainer import _trainer
from tiny_models import student_model
from torch.utils.data import SequentialSampler

from dskd_align.torch import DSKDTrainer
from dskd_align.torch.branch import branch_part, teacher_hidden_with_branches
from dskd_align.torch.objectives import build_loss


class _InOrder(DSKDTrainer):
    """The rows in order (no shuffling), each step's loss recorded."""

    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float(out.detach()))
        return out


def test_trainer_steps_equal_a_plain_loop(tmp_path, teacher_tok, student_tok, rows):
    student = student_model(student_tok)
    start = copy.deepcopy(student)
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:24], student=student, cls=_InOrder,
                  loss="byte_sets", alpha=0.5, loss_kwargs={"branch": True}, learning_rate=3e-3,
                  max_steps=6, max_grad_norm=1.0, weight_decay=0.0)  # fmt: skip
    tr.losses, teacher = [], tr.teacher
    tables = branch_part(tr.loss_module).tables
    batches = [tr.data_collator(rows[i : i + 4])["batch"] for i in range(0, 24, 4)]
    tr.train()
    # The same steps by hand: teacher states with branches, the loss, clipping, AdamW.
    loop = start
    fn = build_loss("byte_sets", teacher.lm_head.weight.detach(), loop.lm_head.weight.detach(),
                    tables, alpha=0.5, branch=True)  # fmt: skip
    opt = torch.optim.AdamW(loop.parameters(), lr=3e-3, weight_decay=0.0)
    losses = []
    loop.train()
    for b in batches:
        h_t = teacher_hidden_with_branches(teacher, b)
        out = loop(input_ids=b["student_input_ids"], attention_mask=b["student_attention_mask"],
                   output_hidden_states=True)  # fmt: skip
        loss, _ = fn.forward_batch(b, out.hidden_states[-1], h_t, loop.lm_head.weight,
                                   teacher.lm_head.weight)  # fmt: skip
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(loop.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    assert len(tr.losses) == len(losses) == 6 and len(set(losses)) > 1
    torch.testing.assert_close(torch.tensor(tr.losses), torch.tensor(losses), rtol=1e-4, atol=1e-5)
    for a, b in zip(student.parameters(), loop.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-3, atol=1e-4)
    # and the check can fail: the weights did move
    assert any(not torch.equal(a, b) for a, b in zip(student_model(student_tok).parameters(),
                                                      loop.parameters(), strict=True))  # fmt: skip
