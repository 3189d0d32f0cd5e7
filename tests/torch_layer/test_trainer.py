"""``DSKDTrainer`` on tiny models built from configs: it trains with the Trainer's defaults and
the loss falls, every loss term is logged, resume equals an uninterrupted run bit for bit (CPU),
on-policy and sequence-level KD steps run, and misuse fails with the fix in the message."""

from __future__ import annotations

import math

import datasets
import pytest
import torch
from tiny_models import student_model, teacher_model

from dskd_align.torch import DSKDConfig, DSKDTrainer
from dskd_align.torch.trainer import LOSS_STATE_FILE


def _args(tmp_path, **kw) -> DSKDConfig:
    base = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        max_steps=12,
        logging_steps=1,
        save_strategy="no",
        max_length=192,
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )
    base.update(kw)
    return DSKDConfig(**base)


def _trainer(tmp_path, teacher_tok, student_tok, rows, student=None, cls=DSKDTrainer, **kw
             ) -> DSKDTrainer:  # fmt: skip
    return cls(
        model=student if student is not None else student_model(student_tok),
        teacher_model=teacher_model(teacher_tok),
        args=_args(tmp_path, **kw),
        train_dataset=rows,
        processing_class=student_tok,
        teacher_processing_class=teacher_tok,
    )


def assert_loss_falls(logs: list[dict]) -> None:
    """The mean loss of the last three logged steps is below that of the first three."""
    first = sum(h["loss"] for h in logs[:3]) / 3
    last = sum(h["loss"] for h in logs[-3:]) / 3
    assert last < first, [h["loss"] for h in logs]


def _train_logs(trainer: DSKDTrainer) -> list[dict]:
    trainer.train()
    return [h for h in trainer.state.log_history if "loss" in h]


def test_trains_with_trainer_defaults_and_logs_every_term(tmp_path, teacher_tok, student_tok, rows):
    # A datasets.Dataset with the Trainer's column handling: nothing stripped, batch survives.
    ds = datasets.Dataset.from_list(rows[:32])
    tr = _trainer(tmp_path, teacher_tok, student_tok, ds, max_steps=20)
    assert not tr.teacher.training and not any(p.requires_grad for p in tr.teacher.parameters())
    w0 = tr.loss_module.t2s_projector.weight.detach().clone()
    logs = _train_logs(tr)
    assert len(logs) == 20
    for key in ("ce_gold", "kd_teacher_space", "kd_student_space", "ce_t2s", "agreement"):
        assert all(math.isfinite(h[key]) for h in logs), key
    assert all(0 < h["coverage"] <= 1 and h["n_aligned"] > 0 for h in logs)
    first = sum(h["loss"] for h in logs[:3]) / 3
    last = sum(h["loss"] for h in logs[-3:]) / 3
    assert last < first - 0.05 * abs(first), [h["loss"] for h in logs]
    # The projector is in the optimizer (own lr) and was trained.
    groups = tr.optimizer.param_groups
    assert any(g["lr"] <= tr.args.projector_lr and len(g["params"]) == 1 for g in groups)
    assert not torch.equal(w0, tr.loss_module.t2s_projector.weight.detach().cpu())


def test_teacher_follows_the_students_dtype(tmp_path, teacher_tok, student_tok, rows):
    student = student_model(student_tok).to(torch.bfloat16)
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows, student=student)
    assert {p.dtype for p in tr.teacher.parameters()} == {torch.bfloat16}
    assert {p.device for p in tr.teacher.parameters()} == {tr.args.device}


def test_resume_equals_uninterrupted_run(tmp_path, teacher_tok, student_tok, rows):
    kw = dict(max_steps=6, save_strategy="steps", save_steps=3)
    full = _trainer(tmp_path / "a", teacher_tok, student_tok, rows[:32], **kw)
    full.train()
    ckpt = tmp_path / "a" / "out" / "checkpoint-3"
    assert (ckpt / LOSS_STATE_FILE).is_file()
    resumed = _trainer(tmp_path / "b", teacher_tok, student_tok, rows[:32], **kw)
    resumed.train(resume_from_checkpoint=str(ckpt))
    for (n, a), (_, b) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    pa, pb = full.loss_module.state_dict(), resumed.loss_module.state_dict()
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


def test_projector_is_saved_with_the_final_model(tmp_path, teacher_tok, student_tok, rows):
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:8], max_steps=1)
    tr.train()
    tr.save_model()
    state = torch.load(tmp_path / "out" / LOSS_STATE_FILE, weights_only=True)
    ref = tr.loss_module.state_dict()
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k].cpu()) for k in ref)


def test_on_policy_steps_run(tmp_path, teacher_tok, student_tok, rows):
    tr = _trainer(
        tmp_path,
        teacher_tok,
        student_tok,
        rows[:8],
        max_steps=2,
        lmbda=1.0,
        max_new_tokens=8,
        stop_strings=["\n\n"],
    )
    logs = _train_logs(tr)
    assert [h["on_policy"] for h in logs] == [1.0, 1.0]
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["ce_gold"]) for h in logs)


def test_seq_kd_steps_run(tmp_path, teacher_tok, student_tok, rows):
    tr = _trainer(
        tmp_path, teacher_tok, student_tok, rows[:8], max_steps=2, seq_kd=True, max_new_tokens=8
    )
    logs = _train_logs(tr)
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)


def test_remove_unused_columns_is_refused_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="remove_unused_columns=True would strip the row columns"):
        _args(tmp_path, remove_unused_columns=True)


def test_head_with_bias_trains(tmp_path, teacher_tok, student_tok, rows):
    # Phi-style heads carry a bias: it goes into the logits and is trained like the weight.
    student = student_model(student_tok)
    student.lm_head = torch.nn.Linear(32, student.lm_head.out_features, bias=True)
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:8], student=student, max_steps=2)
    b0 = student.lm_head.bias.detach().clone()
    logs = _train_logs(tr)
    assert all(math.isfinite(h["loss"]) for h in logs)
    assert not torch.equal(b0, tr.model.lm_head.bias.detach())


def test_logits_model_without_head_is_refused(tmp_path, teacher_tok, student_tok, rows):
    student = student_model(student_tok)
    student.get_output_embeddings = lambda: None
    with pytest.raises(ValueError, match="the student model has no output embedding"):
        _trainer(tmp_path, teacher_tok, student_tok, rows, student=student)


def test_chat_rows_jointly_tokenized_train(tmp_path, teacher_tok, student_chat_tok, rows):
    # TRL's conversational prompt/completion rows, each side's own template, inference-style ids.
    chat = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["response"]}],
        }
        for r in rows[:8]
    ]
    tr = DSKDTrainer(
        model=student_model(student_chat_tok),
        teacher_model=teacher_model(teacher_tok),
        args=_args(tmp_path, max_steps=2, tokenize_jointly=True, loss="exact_kd"),
        train_dataset=chat,
        processing_class=student_chat_tok,
        teacher_processing_class=teacher_tok,
    )
    # Each side's turn-end token is linked in the vocabulary map (it ends every response).
    t_end, s_end = tr.collator.end_ids(True)
    assert tr.vocab_map.t2s[t_end] == s_end
    logs = _train_logs(tr)
    assert all(math.isfinite(h["loss"]) and h["n_aligned"] > 0 for h in logs)


def test_model_smaller_than_its_tokenizer_is_refused(tmp_path, teacher_tok, student_tok, rows):
    small = student_model(student_tok)
    small.resize_token_embeddings(len(student_tok) - 10)
    with pytest.raises(
        ValueError,
        match=r"the student tokenizer has \d+ ids but the student model.s head has \d+ rows",
    ):
        _trainer(tmp_path, teacher_tok, student_tok, rows, student=small)


def test_byte_kd_trains_with_targets_from_the_collator(tmp_path, teacher_tok, student_tok, rows):
    kw = {"loss": "byte_kd", "alpha": 1 / 3, "learning_rate": 3e-3, "max_steps": 16}
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:32], **kw)
    batch = tr.data_collator(rows[:4])["batch"]
    assert "byte_entry_row" in batch  # built by the collator, not in the step
    logs = _train_logs(tr)
    assert all(math.isfinite(h["kd_byte"]) and 0 < h["byte_coverage"] <= 1 for h in logs)
    assert_loss_falls(logs)


def test_byte_sets_trains_with_targets_from_the_collator(tmp_path, teacher_tok, student_tok, rows):
    kw = {"loss": "byte_sets", "alpha": 0.5, "learning_rate": 3e-3, "max_steps": 16}
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:32], **kw)
    batch = tr.data_collator(rows[:4])["batch"]
    assert "set_sb_lo" in batch and "byte_entry_row" in batch  # built by the collator
    logs = _train_logs(tr)
    assert all(math.isfinite(h["kd_byte"]) and 0 < h["byte_coverage"] <= 1 for h in logs)
    assert_loss_falls(logs)
