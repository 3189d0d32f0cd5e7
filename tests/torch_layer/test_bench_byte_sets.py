"""The gap-closure bench's experimental ``byte_kd`` variant (``benches/byte_sets.py``) is what its
notes say: with single-token sets it trains exactly like ``byte_kd``; the set rules and the
student-boundary filter hold on the tables; an all-masked batch gives 0. No quality figure."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import BUILTIN

from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_kd import ByteKD
from dskd_align.torch.byte_tables import ByteTables

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
from byte_sets import SetByteKD, boundary_conflicts, class_tables  # noqa: E402


@pytest.fixture(scope="module")
def tables(teacher_tok, student_tok):
    vmap = VocabMap(teacher_tok, student_tok, len(teacher_tok) + 8, len(student_tok) + 4)
    return ByteTables(teacher_tok, student_tok, vmap)


@pytest.fixture(scope="module")
def batch(teacher_tok, student_tok, rows):
    texts = [{"prompt": p, "response": r} for p, r in BUILTIN] + rows[:6]
    return DSKDCollator(teacher_tok, student_tok)(texts[:4])


def _grad(mod, batch, h_s, h_t, W_s, W_t):
    h = h_s.detach().clone().requires_grad_()
    kd, _ = mod.kd(batch, h, h_t, W_s, W_t)
    kd.backward()
    return h.grad


@pytest.mark.parametrize("crossing", ["skip", "one_step"])
def test_single_token_sets_train_like_byte_kd(tables, batch, crossing):
    torch.manual_seed(0)
    W_t = torch.randn(tables.teacher_vocab_size, 6)
    W_s = torch.randn(tables.student_vocab_size, 5)
    h_t = torch.randn(*batch.teacher_input_ids.shape, 6)
    h_s = torch.randn(*batch.student_input_ids.shape, 5)
    ref = _grad(ByteKD(tables, crossing=crossing, chunk_size=16), batch, h_s, h_t, W_s, W_t)
    got = _grad(SetByteKD(tables, crossing=crossing, sets=False, chunk_size=16), batch, h_s, h_t,
                W_s, W_t)  # fmt: skip
    assert ref.abs().sum() > 0
    # Grouping by remainder instead of by first(remainder) only changes a constant (entropy).
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)


def test_sets_and_conflicts_follow_their_rules(tables):
    ct, member = class_tables(tables, sets=True, tight=True)
    rep = tables._first.rep
    teacher_bytes = set()
    for i in range(tables.teacher_vocab_size):
        o, n = int(tables.t_off[i]), int(tables.t_len[i])
        teacher_bytes.add(bytes(tables.t_bytes[o : o + n].tolist()))
    bad = boundary_conflicts(tables, ct, member.shape[0])
    seen_loose = seen_tight = False
    for c, key in list(enumerate(ct.class_keys))[::3]:  # a third of the classes: time
        if isinstance(key, tuple) and key[0] == "special":
            continue
        tight = isinstance(key, tuple)
        r = key[1] if tight else key
        ids = set(member[c].nonzero()[:, 0].tolist())
        assert tables.first(r) in ids  # first(R) is always consistent
        for s, u in rep.items():
            extends = len(s) > len(r) and s.startswith(r)
            longer_teacher = any(s[:j] in teacher_bytes for j in range(len(r) + 1, len(s) + 1))
            want = extends and not (tight and longer_teacher)
            assert (u in ids) == want or u == tables.first(r), (key, s)
            seen_tight |= tight and extends and longer_teacher
            seen_loose |= (not tight) and extends
        for s, u in list(rep.items())[:20]:  # the student-boundary rule, on a sample of rows
            clash = any(t.startswith(s) and len(t) > len(s) and r.startswith(t[len(s) :])
                        for t in rep)  # fmt: skip
            assert bool(bad[u, c]) == clash, (s, key)
    assert seen_loose and seen_tight


def test_all_masked_batch_gives_zero(tables, batch):
    b = dict(batch)
    b["student_labels"] = torch.full_like(b["student_labels"], -100)
    W_t = torch.randn(tables.teacher_vocab_size, 6)
    W_s = torch.randn(tables.student_vocab_size, 5)
    h_s = torch.randn(*b["student_input_ids"].shape, 5, requires_grad=True)
    h_t = torch.randn(*b["teacher_input_ids"].shape, 6)
    kd, m = SetByteKD(tables, student_boundary=True, tight=True).kd(b, h_s, h_t, W_s, W_t)
    kd.backward()
    assert kd.item() == 0.0 and int(m["n_byte_targets"]) == 0
    assert torch.isfinite(h_s.grad).all()
