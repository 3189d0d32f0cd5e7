"""``byte_sets(branch=True)``: the "teacher token ends here" outcome inside a teacher token.

The fields (``set_branch_token``/``set_branch_slot``) against the texts; the packed teacher
forward (``branch.py``) against plain forwards of the gold rows and of each branch row, for a
GPT-2 and a Llama model, both attention implementations; the loss against the float64 reference
(``test_byte_sets_naive.py``); the errors; and a trainer run."""

from __future__ import annotations

import math
import types

import pytest
import torch
from conftest import BUILTIN
from test_byte_sets_naive import naive
from test_trainer import _train_logs, _trainer, assert_loss_falls
from tiny_models import student_model, teacher_model

from dskd_align.torch import DSKDCollator
from dskd_align.torch.branch import branch_inputs, branch_part, teacher_hidden_with_branches
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.set_kd import SetKD


@pytest.fixture(scope="module")
def batch(teacher_tok, student_tok, rows, set_tables):
    texts = [{"prompt": p, "response": r} for p, r in BUILTIN] + rows[:3]
    col = DSKDCollator(teacher_tok, student_tok, max_length=192)  # the tiny models hold 256
    return ByteKDCollator(col, set_tables)(texts)


def _text(ids, labels, upto, strings):
    return b"".join(strings[int(x)] for x, y in zip(ids[:upto], labels[:upto], strict=True)
                    if int(y) != -100)  # fmt: skip


def test_branch_token_is_the_consumed_prefix_of_the_teacher_token(set_tables, batch):
    tb = [
        bytes(set_tables.t_bytes[o : o + n].tolist())
        for o, n in zip(set_tables.t_off.tolist(), set_tables.t_len.tolist(), strict=True)
    ]
    sbytes = [
        bytes(set_tables.s_bytes[o : o + n].tolist())
        for o, n in zip(set_tables.s_off.tolist(), set_tables.s_len.tolist(), strict=True)
    ]
    lowest = {}
    for v, b in enumerate(tb):
        if b:
            lowest.setdefault(b, v)
    br, tok = batch["set_branch_token"], batch["byte_token"]
    n_branch = n_none = 0
    for i in range(br.numel()):
        r, sp, tp = (int(batch[k][i]) for k in ("byte_batch", "byte_student_pos",
                                                "byte_teacher_pos"))  # fmt: skip
        t_ids, t_lab = batch["teacher_input_ids"][r], batch["teacher_labels"][r]
        before_k = _text(t_ids, t_lab, tp + 1, tb)
        k = tb[int(t_ids[tp + 1])]
        s_text = _text(batch["student_input_ids"][r], batch["student_labels"][r], sp + 1, sbytes)
        # The student's text before its token ends with the teacher's text before k plus the
        # consumed part of k (one dummy-prefix space more at most).
        extra = len(s_text) - len(before_k)
        consumed = k[: max(extra - (s_text[:1] == b" " and before_k[:1] != b" "), 0)]
        if int(tok[i]) >= 0:
            assert int(br[i]) == -1  # a shared boundary: no branch
            continue
        assert 0 < len(consumed) < len(k) and s_text.endswith(before_k + consumed)
        if int(br[i]) >= 0:
            n_branch += 1
            assert tb[int(br[i])] == consumed and int(br[i]) == lowest[consumed]
        else:
            n_none += 1
            assert consumed not in lowest
    assert n_branch > 10  # the batch has both kinds of interior target
    for r in range(batch["teacher_input_ids"].shape[0]):  # slots number each row's branches
        mine = (batch["byte_batch"] == r) & (br >= 0)
        assert batch["set_branch_slot"][mine].tolist() == list(range(int(mine.sum())))
    assert (batch["set_branch_slot"][br < 0] == -1).all()


def _models(teacher_tok):
    return {"gpt2": teacher_model(teacher_tok, d=32), "llama": student_model(teacher_tok, d=32)}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_forward_equals_plain_forwards(teacher_tok, batch, kind, attn):
    model = _models(teacher_tok)[kind].eval()
    model.set_attn_implementation(attn)
    ids, att = batch["teacher_input_ids"], batch["teacher_attention_mask"]
    h = teacher_hidden_with_branches(model, batch)
    n_l = ids.shape[1]
    with torch.no_grad():
        plain = model.base_model(input_ids=ids, attention_mask=att).last_hidden_state
        keep = att.bool()
        torch.testing.assert_close(h[:, :n_l][keep], plain[keep], rtol=1e-5, atol=1e-5)
        sel = (batch["set_branch_token"] >= 0).nonzero()[:, 0]
        assert h.shape[1] == n_l + int(batch["set_branch_slot"].max()) + 1 and sel.numel()
        for i in sel[:: max(1, sel.numel() // 12)].tolist():  # a dozen branch rows, one by one
            r, tp = int(batch["byte_batch"][i]), int(batch["byte_teacher_pos"][i])
            x = torch.cat([ids[r, : tp + 1], batch["set_branch_token"][i : i + 1]])[None]
            ref = model.base_model(input_ids=x, attention_mask=att[r : r + 1, : tp + 2])
            got = h[r, n_l + int(batch["set_branch_slot"][i])]
            torch.testing.assert_close(got, ref.last_hidden_state[0, -1], rtol=1e-5, atol=1e-5)


def test_no_branch_target_is_a_plain_forward(teacher_tok, batch):
    model = _models(teacher_tok)["gpt2"].eval()
    fields = {**batch, "set_branch_token": torch.full_like(batch["set_branch_token"], -1)}
    assert branch_inputs(batch, fields, torch.float32) is None
    h = teacher_hidden_with_branches(model, batch, fields)
    with torch.no_grad():
        plain = model.base_model(input_ids=batch["teacher_input_ids"],
                                 attention_mask=batch["teacher_attention_mask"])  # fmt: skip
    torch.testing.assert_close(h, plain.last_hidden_state)


def test_flash_attention_is_refused_with_the_fix(batch):
    teacher = types.SimpleNamespace(config=types.SimpleNamespace(
        _attn_implementation="flash_attention_2"))  # fmt: skip
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        teacher_hidden_with_branches(teacher, batch)


def _inputs(set_tables, batch, width):
    g = torch.Generator().manual_seed(5)
    W_t = torch.randn(set_tables.teacher_vocab_size, 6, generator=g, dtype=torch.float64)
    W_s = torch.randn(set_tables.student_vocab_size, 5, generator=g, dtype=torch.float64)
    n_b = batch["teacher_input_ids"].shape[0]
    h_t = torch.randn(n_b, width, 6, generator=g, dtype=torch.float64)
    h_s = torch.randn(*batch["student_input_ids"].shape, 5, generator=g, dtype=torch.float64)
    return W_t, W_s, h_t, h_s


@pytest.mark.parametrize("crossing", ["one_step", "skip"])
def test_branch_loss_equals_the_plain_reference(set_tables, batch, crossing):
    width = batch["teacher_input_ids"].shape[1] + int(batch["set_branch_slot"].max()) + 1
    W_t, W_s, h_t, h_s = _inputs(set_tables, batch, width)
    a, b = h_s.clone().requires_grad_(), h_s.clone().requires_grad_()
    mod = SetKD(set_tables, branch=True, crossing=crossing, chunk_size=32).double()
    got, _ = mod.kd(batch, a, h_t, W_s, W_t)
    ref = naive(set_tables, batch, b, h_t, W_s, W_t, sb=True, tight_ext=False, crossing=crossing,
                branch=True)  # fmt: skip
    off = naive(set_tables, batch, h_s, h_t, W_s, W_t, sb=True, tight_ext=False,
                crossing=crossing)  # fmt: skip
    got.backward()
    ref.backward()
    torch.testing.assert_close(got.detach(), ref.detach(), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
    assert abs(float(ref.detach()) - float(off)) > 1e-3  # the branch outcome changes the target


def test_branch_loss_without_branch_states_names_the_fix(set_tables, batch):
    W_t, W_s, h_t, h_s = _inputs(set_tables, batch, batch["teacher_input_ids"].shape[1])
    with pytest.raises(ValueError, match="teacher_hidden_with_branches"):
        SetKD(set_tables, branch=True).double().kd(batch, h_s, h_t, W_s, W_t)
    kd, _ = SetKD(set_tables).double().kd(batch, h_s, h_t, W_s, W_t)  # branch off: no need
    assert math.isfinite(float(kd))


def test_trainer_runs_byte_sets_with_branches(tmp_path, teacher_tok, student_tok, rows):
    kw = {"loss": "byte_sets", "alpha": 0.5, "learning_rate": 3e-3, "max_steps": 16,
          "loss_kwargs": {"branch": True}}  # fmt: skip
    tr = _trainer(tmp_path, teacher_tok, student_tok, rows[:32], **kw)
    assert branch_part(tr.loss_module) is not None
    logs = _train_logs(tr)
    assert all(math.isfinite(h["kd_byte"]) and 0 < h["byte_coverage"] <= 1 for h in logs)
    assert_loss_falls(logs)


def test_on_policy_steps_build_branch_fields_in_the_step(tmp_path, teacher_tok, student_tok, rows):
    # Student samples carry no set fields: the trainer builds them before the teacher's forward.
    kw = {"loss": "byte_sets", "loss_kwargs": {"branch": True}, "max_steps": 2, "lmbda": 1.0,
          "max_new_tokens": 12}  # fmt: skip
    logs = _train_logs(_trainer(tmp_path, teacher_tok, student_tok, rows[:8], **kw))
    assert [h["on_policy"] for h in logs] == [1.0, 1.0]
    assert all(math.isfinite(h["loss"]) and math.isfinite(h["kd_byte"]) for h in logs)
