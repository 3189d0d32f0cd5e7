"""Tiny end-to-end DSKD run on CPU: GPT-2-style teacher (byte-level BPE) -> Llama-style student
(Metaspace + byte fallback), different vocabularies, the collator's pairs, the VocabMap, the
DualSpaceKDLoss and the projector's own param group. 20 steps; the loss must fall."""

from __future__ import annotations

import random

import numpy as np
import torch
from tiny_models import student_model, teacher_model
from torch.utils.data import DataLoader

from dskd_align.torch import DSKDCollator, DualSpaceKDLoss, VocabMap, projector_param_group

STEPS, BATCH, MAX_LEN = 20, 8, 96


def _seed(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _models(teacher_tok, student_tok):
    return teacher_model(teacher_tok), student_model(student_tok)


def _last_hidden(model, batch, side: str) -> torch.Tensor:
    """``[B, L, d]``: the decoder's output before the LM head (final norm applied)."""
    return model.base_model(**batch.side(side)).last_hidden_state


def test_tiny_dskd_training_loss_falls(teacher_tok, student_tok, rows):
    _seed(0)
    teacher, student = _models(teacher_tok, student_tok)
    teacher.eval().requires_grad_(False)
    vocab = VocabMap(teacher_tok, student_tok, teacher.config.vocab_size, student.config.vocab_size)
    assert vocab.num_overlap > 100
    collator = DSKDCollator(teacher_tok, student_tok, max_length=MAX_LEN, padding_side="right")
    loader = DataLoader(rows, batch_size=BATCH, shuffle=False, collate_fn=collator)
    batches = [b for _, b in zip(range(4), loader, strict=False)]
    assert all(b.num_pairs > 0 for b in batches)

    loss_fn = DualSpaceKDLoss(
        teacher.lm_head.weight, student.lm_head.weight, vocab, alpha=0.5, tau=2.0
    )
    opt = torch.optim.AdamW(
        [{"params": student.parameters()}, projector_param_group(loss_fn, lr=1e-3)], lr=3e-3
    )
    w0 = loss_fn.t2s_projector.weight.detach().clone()
    history = []
    for step in range(STEPS):
        batch = batches[step % len(batches)]
        with torch.no_grad():
            h_t = _last_hidden(teacher, batch, "teacher")
        h_s = _last_hidden(student, batch, "student")
        loss, metrics = loss_fn.forward_batch(
            batch, h_s, h_t, student.lm_head.weight, teacher.lm_head.weight
        )
        assert torch.isfinite(loss) and metrics["n_aligned"] == batch.num_pairs
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    assert not torch.equal(w0, loss_fn.t2s_projector.weight)  # its own param group trains it
    assert metrics["kd_teacher_space"] > 0 and metrics["n_valid"] > 0
    first, last = np.mean(history[:3]), np.mean(history[-3:])
    assert last < first - 0.05 * abs(first), history
