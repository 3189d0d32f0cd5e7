"""``byte_sets`` (``set_kd.py``): the library loss equals the gap-closure bench's dense
experiment (``benches/byte_sets.py``, tight sets + student boundary) on tokenizers trained here,
in value and gradient; chunking changes nothing; empty and all-masked batches give 0."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from conftest import BUILTIN

from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.set_kd import SetKD
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.set_targets import SET_FIELDS, SetKDBatch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benches"))
from byte_sets import SetByteKD  # noqa: E402


@pytest.fixture(scope="module")
def tables(teacher_tok, student_tok):
    vmap = VocabMap(teacher_tok, student_tok, len(teacher_tok) + 8, len(student_tok) + 4)
    return SetTables(teacher_tok, student_tok, vmap)


@pytest.fixture(scope="module")
def batch(teacher_tok, student_tok, rows, tables):
    texts = [{"prompt": p, "response": r} for p, r in BUILTIN] + rows[:6]
    return ByteKDCollator(DSKDCollator(teacher_tok, student_tok), tables)(texts)


def _inputs(tables, batch, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    W_t = torch.randn(tables.teacher_vocab_size, 6, generator=g, dtype=dtype)
    W_s = torch.randn(tables.student_vocab_size, 5, generator=g, dtype=dtype)
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
def test_equals_the_dense_bench_experiment(tables, batch, sb, crossing):
    h_s, h_t, W_s, W_t = _inputs(tables, batch, torch.float64)
    ref = SetByteKD(tables, tight=True, student_boundary=sb, crossing=crossing, chunk_size=None)
    ref = ref.double()
    got = SetKD(tables, student_boundary=sb, crossing=crossing, chunk_size=None).double()
    r = _run(ref, batch, h_s, h_t, W_s, W_t)
    o = _run(got, batch, h_s, h_t, W_s, W_t)
    assert r[0] > 0 and r[1].abs().sum() > 0
    # Range differences of a cumulative sum lose ~1e-16 absolute against the dense sums: small
    # sets' gradients agree to ~1e-8 relative.
    for a, b in zip(o[:3], r[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(o[3]["byte_teacher_mass"], r[3]["byte_teacher_mass"])
