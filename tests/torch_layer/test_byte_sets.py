"""``byte_sets`` (``set_kd.py``): the library loss equals the gap-closure bench's dense
experiment (``benches/byte_sets.py``, tight sets + student boundary) on tokenizers trained here,
in value and gradient; chunking changes nothing; empty and all-masked batches give 0."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch
from conftest import BUILTIN

from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.data import DSKDBatch
from dskd_align.torch.objectives import build_loss
from dskd_align.torch.set_kd import SetKD
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import SET_FIELDS, SetKDBatch, in_ranges

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
from byte_sets import SetByteKD  # noqa: E402


@pytest.fixture(scope="module")
def batch(teacher_tok, student_tok, rows, set_tables):
    texts = [{"prompt": p, "response": r} for p, r in BUILTIN] + rows[:6]
    return ByteKDCollator(DSKDCollator(teacher_tok, student_tok), set_tables)(texts)


def _inputs(set_tables, batch, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    W_t = torch.randn(set_tables.teacher_vocab_size, 6, generator=g, dtype=dtype)
    W_s = torch.randn(set_tables.student_vocab_size, 5, generator=g, dtype=dtype)
    h_t = torch.randn(*batch["teacher_input_ids"].shape, 6, generator=g, dtype=dtype)
    h_s = torch.randn(*batch["student_input_ids"].shape, 5, generator=g, dtype=dtype)
    return h_s, h_t, W_s, W_t


def _run(mod, batch, h_s, h_t, W_s, W_t):
    h = h_s.detach().clone().requires_grad_()
    W = W_s.detach().clone().requires_grad_()
    kd, m = mod.kd(batch, h, h_t, W, W_t)
    kd.backward()
    return kd.detach(), h.grad, W.grad, m


@pytest.mark.parametrize("sb", [True, False])
@pytest.mark.parametrize("crossing", ["one_step", "skip"])
def test_equals_the_dense_bench_experiment(set_tables, batch, sb, crossing):
    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, torch.float64)
    ref = SetByteKD(set_tables, tight=True, student_boundary=sb, crossing=crossing, chunk_size=None)
    ref = ref.double()
    got = SetKD(set_tables, student_boundary=sb, crossing=crossing, chunk_size=None).double()
    r = _run(ref, batch, h_s, h_t, W_s, W_t)
    o = _run(got, batch, h_s, h_t, W_s, W_t)
    assert r[0] > 0 and r[1].abs().sum() > 0
    # Range differences of a cumulative sum lose ~1e-16 absolute against the dense sums: small
    # sets' gradients agree to ~1e-8 relative.
    for a, b in zip(o[:3], r[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(o[3]["byte_teacher_mass"], r[3]["byte_teacher_mass"])


def test_chunks_give_the_value_and_gradients_of_one_pass(set_tables, batch):
    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, seed=1)
    one = _run(SetKD(set_tables, chunk_size=None), batch, h_s, h_t, W_s, W_t)
    for cs in (7, 64):
        got = _run(SetKD(set_tables, chunk_size=cs), batch, h_s, h_t, W_s, W_t)
        for a, b in zip(got[:3], one[:3], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_chunked_path_never_holds_more_rows_than_the_chunk(set_tables, batch):
    """Every 2-D tensor any op creates (forward and backward) with a vocabulary-sized second dim
    has at most ``chunk_size`` rows; without chunks it has all targets' rows."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.rows = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] >= 400:
                    self.rows.append(t.shape[0])
            return out

    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, seed=2)
    n = batch["byte_batch"].numel()
    for cs in (8, None):
        with Shapes() as rec:
            _run(SetKD(set_tables, chunk_size=cs, tight_extensions=True), batch, h_s, h_t, W_s, W_t)
        rows = [r for r in rec.rows if r not in (5, 6)]  # transposed heads [d, V]
        assert (max(rows) <= 8) if cs else (n in rows), (cs, max(rows))


def test_targets_built_in_the_step_equal_the_collators(set_tables, batch, teacher_tok, student_tok,
                                                       rows):  # fmt: skip
    assert isinstance(batch, SetKDBatch) and set(SET_FIELDS) <= set(batch)
    plain = {k: batch[k] for k in DSKDBatch._names()}
    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, seed=3)
    mod = SetKD(set_tables, chunk_size=16)
    a, b = _run(mod, batch, h_s, h_t, W_s, W_t), _run(mod, plain, h_s, h_t, W_s, W_t)
    for x, y in zip(a[:3], b[:3], strict=True):
        torch.testing.assert_close(x, y)
    for again in (type(batch)(dict(batch.items())), batch.to("cpu"),
                  pickle.loads(pickle.dumps(batch))):  # fmt: skip
        assert isinstance(again, SetKDBatch) and all(torch.equal(again[k], batch[k]) for k in batch)


def test_student_boundary_filters_targets_and_keeps_the_text_exemption(set_tables, batch):
    # Some targets are filtered (ranges listed), some entries dropped, and filtering lowers the
    # mass kept: the rule does something on these tokenizers.
    assert batch["set_sb_lo"].numel() > 0 and not batch["set_entry_sb_ok"].all()
    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, seed=4)
    on = _run(SetKD(set_tables), batch, h_s, h_t, W_s, W_t)[3]["byte_teacher_mass"]
    off = _run(SetKD(set_tables, student_boundary=False), batch, h_s, h_t, W_s, W_t)[3]
    assert 0 < on < off["byte_teacher_mass"] <= 1


def test_empty_and_all_masked_batches_give_zero(set_tables, batch):
    W_t = torch.randn(set_tables.teacher_vocab_size, 6)
    W_s = torch.randn(set_tables.student_vocab_size, 5)
    b = {k: batch[k] for k in DSKDBatch._names()}
    b["student_labels"] = torch.full_like(b["student_labels"], -100)
    b["supervised_tokens"] = torch.zeros_like(b["supervised_tokens"])
    for chunk in (None, 4):
        fn = build_loss("byte_sets", W_t, W_s, set_tables, chunk_size=chunk)
        h_s = torch.randn(*b["student_input_ids"].shape, 5, requires_grad=True)
        h_t = torch.randn(*b["teacher_input_ids"].shape, 6)
        loss, m = fn.forward_batch(b, h_s, h_t, W_s, W_t)
        loss.backward()
        assert loss.item() == 0.0 and int(m["n_byte_targets"]) == 0
        assert all(torch.isfinite(v).all() for v in m.values()) and torch.isfinite(h_s.grad).all()


def test_build_loss_trains_the_student_only_and_refusals_name_the_fix(set_tables, batch):
    vmap = VocabMap.__new__(VocabMap)
    W_t = torch.randn(set_tables.teacher_vocab_size, 6, requires_grad=True)
    W_s = torch.randn(set_tables.student_vocab_size, 5, requires_grad=True)
    h_s, h_t, _, _ = _inputs(set_tables, batch, seed=5)
    h_s.requires_grad_()
    h_t.requires_grad_()
    fn = build_loss("byte_sets", W_t.detach(), W_s.detach(), set_tables, alpha=0.5)
    loss, m = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    loss.backward()
    assert loss.dtype == torch.float32 and float(m["kd_byte"]) > 0
    assert h_s.grad.abs().sum() > 0 and W_s.grad.abs().sum() > 0
    assert h_t.grad is None and W_t.grad is None
    byte_only = ByteTables.__new__(ByteTables)
    byte_only.__dict__.update({k: v for k, v in set_tables.__dict__.items()})
    with pytest.raises(TypeError, match="SetTables.for_models"):
        build_loss("byte_sets", W_t, W_s, byte_only)
    with pytest.raises(TypeError, match="SetTables"):
        build_loss("byte_sets", W_t, W_s, vmap)
    with pytest.raises(ValueError, match="crossing"):
        build_loss("byte_sets", W_t, W_s, set_tables, crossing="two_step")
    with pytest.raises(ValueError, match="'keep' or 'teacher'"):
        build_loss("byte_sets", W_t, W_s, set_tables, unfiltered="student")
    with pytest.raises(ValueError, match="forward_kl"):
        build_loss("byte_sets", W_t, W_s, set_tables, divergence="reverse_kl")
    with pytest.raises(ValueError, match="for_models"):
        build_loss("byte_sets", W_t[:-1], W_s, set_tables)


def test_tables_from_byte_tables_and_to_device(set_tables):
    again = SetTables.from_byte_tables(set_tables)
    for name in ("s_sorted", "ext_lo", "ext_hi", "child_lo", "sb_ptr", "sb_lo", "s_hash"):
        assert torch.equal(getattr(again, name), getattr(set_tables, name))
    moved = set_tables.to("cpu")
    assert isinstance(moved, SetTables) and moved.rank_base == set_tables.rank_base
    assert pickle.loads(pickle.dumps(set_tables)).num_sorted == set_tables.num_sorted


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_ruled_out_segments_equal_a_search_over_every_range(set_tables, batch, chunk):
    """The loss's student-boundary mask of the next-token outcomes (segments of the rank-sorted
    teacher tokens) equals testing every key ``target x rank_base + rank`` against every range,
    chunk by chunk, with the ranges of other chunks present."""
    mod = SetKD(set_tables)
    lo, hi = batch["set_sb_lo"], batch["set_sb_hi"]
    rank = set_tables.next_rank
    n = batch["byte_batch"].numel()
    assert lo.numel() > 0 and int(mod._ruled_out(torch.arange(n), lo, hi).sum()) > 0
    for start in range(0, n, chunk):
        rid = torch.arange(start, min(start + chunk, n))
        keys = rid[:, None] * set_tables.rank_base + rank[None, :]
        want = in_ranges(keys, lo, hi) & (rank >= 0)[None, :]
        assert torch.equal(mod._ruled_out(rid, lo, hi), want), start
    assert mod._ruled_out(torch.arange(0), lo, hi).shape == (0, rank.numel())
