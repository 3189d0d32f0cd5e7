"""chunk_kd: chunk log-probabilities and the per-chunk loss against a naive float64 loop over
chunks and tokens; gradients (gradcheck of the row-chunked token log-probs); empty batches; the
memory bound; a real collator batch."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import pytest
import torch
from loss_problems import D_S, D_T, V_S, V_T, empty_batch, grads, problem, zero_grads

from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.chunk_kd import log1mexp
from dskd_align.torch.chunked import token_log_probs
from dskd_align.torch.objectives import build_loss


def _chunk_lp(h, W, b, ids, seg, tau):
    """{chunk id: sum of log p(token | prefix)} by a loop over every token position."""
    out = {}
    for r in range(seg.shape[0]):
        for p in range(1, seg.shape[1]):
            c = int(seg[r, p])
            if c < 0:
                continue
            z = h[r, p - 1] @ W.T + (0 if b is None else b)
            lp = torch.log_softmax(z / tau, -1)[ids[r, p]]
            out[c] = out.get(c, 0) + lp
    return out


def _naive(pr, tau, chunk_loss):
    bt = pr.batch
    a_s = _chunk_lp(pr.h_s, pr.W_s, pr.b_s, bt["student_input_ids"], bt["student_chunk_ids"], tau)
    a_t = _chunk_lp(pr.h_t, pr.W_t, pr.b_t, bt["teacher_input_ids"], bt["teacher_chunk_ids"], tau)
    both = sorted(a_s.keys() & a_t.keys())
    total = pr.W_s.new_zeros(())
    for c in both:
        s, t = a_s[c], float(a_t[c])
        if chunk_loss == "squared_log_ratio":
            total = total + (s - t) ** 2
        else:
            pt, ps = math.exp(t), torch.exp(s)
            total = total + pt * (t - s) + (1 - pt) * (math.log(1 - pt) - torch.log(1 - ps))
    return total / max(len(both), 1), len(both)


@pytest.mark.parametrize("chunk_loss", ["binary_kl", "squared_log_ratio"])
@pytest.mark.parametrize("chunk_size", [4, None])
@pytest.mark.parametrize("bias", [False, True])
def test_equals_naive_in_value_and_gradient(chunk_loss, chunk_size, bias):
    pr = problem(seed=1, bias=bias)
    mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0, tau=0.8,
                     chunk_size=chunk_size, chunk_loss=chunk_loss)  # fmt: skip
    biases = {"student_lm_head_bias": pr.b_s, "teacher_lm_head_bias": pr.b_t}
    loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t, **biases)
    loss.backward()
    got = grads(pr.h_s, pr.W_s, pr.b_s)
    zero_grads(pr.h_s, pr.W_s, pr.b_s)
    ref, n = _naive(pr, 0.8, chunk_loss)
    ref.backward()
    assert m["n_chunks"] == n > 5 and m["n_chunks_multi"] > 0
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-12)
    for a, e in zip(got, grads(pr.h_s, pr.W_s, pr.b_s), strict=True):
        if e is None:
            assert a is None
            continue
        assert e.abs().sum() > 0
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)


def test_chunks_missing_on_one_side_are_skipped():
    pr = problem(seed=2)
    sc = pr.batch["student_chunk_ids"]
    drop = int(sc.max())  # the last chunk keeps its student tokens but loses its teacher ones
    pr.batch["teacher_chunk_ids"] = pr.batch["teacher_chunk_ids"].masked_fill(
        pr.batch["teacher_chunk_ids"] == drop, -1
    )
    mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0)
    _, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    ref, n = _naive(pr, 1.0, "binary_kl")
    assert m["n_chunks"] == n == drop  # ids 0..drop-1 remain on both sides
    torch.testing.assert_close(m["kd_chunk"], ref.detach())


def test_identical_models_give_zero_and_binary_kl_is_nonnegative():
    pr = problem(seed=3)
    W, h = pr.W_s.detach(), pr.h_s.detach()
    batch = dict(pr.batch, teacher_input_ids=pr.batch["student_input_ids"],
                 teacher_chunk_ids=pr.batch["student_chunk_ids"])  # fmt: skip
    mod = build_loss("chunk_kd", W, W, None, alpha=1.0)
    loss, _ = mod.forward_batch(batch, h, h, W, W)
    assert loss.abs() < 1e-12
    a_s, a_t = -torch.rand(50, dtype=torch.float64) * 20, -torch.rand(50, dtype=torch.float64) * 20
    assert (mod.parts["chunk_kd"].per_chunk(a_s, a_t) >= -1e-12).all()


def test_token_log_probs_gradcheck_and_equals_naive():
    g = torch.Generator().manual_seed(4)
    h = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    W = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 6, (7, 2), generator=g)
    y[1, 0] = y[4, 1] = -1  # no target: value 0, no gradient

    def f(h, W, b):
        return token_log_probs(h, W, b, y, (1.0, 0.5), chunk_size=3)

    assert torch.autograd.gradcheck(f, (h, W, b))
    out = f(h, W, b)
    ref = token_log_probs(h, W, b, y, (1.0, 0.5), chunk_size=None)
    torch.testing.assert_close(out, ref)
    assert out[1, 0] == 0 and out[4, 1] == 0


def test_log1mexp_is_stable():
    getcontext().prec = 60  # the reference in 60 decimal digits: exact at both ends
    xs = [-1e-8, -1e-3, -0.5, -math.log(2), -5.0, -50.0]
    ref = torch.tensor([float((1 - Decimal(x).exp()).ln()) for x in xs], dtype=torch.float64)
    torch.testing.assert_close(log1mexp(torch.tensor(xs, dtype=torch.float64)), ref, rtol=1e-12,
                               atol=0)  # fmt: skip
    assert torch.isfinite(log1mexp(torch.tensor([-1e-30, -800.0]))).all()


def test_all_masked_batch_gives_zero_not_nan():
    pr = problem(seed=5)
    for cs in (None, 3):
        mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, chunk_size=cs)
        loss, m = mod.forward_batch(empty_batch(pr), pr.h_s, pr.h_t, pr.W_s, pr.W_t)
        assert loss.item() == 0.0 and m["n_chunks"] == 0
        assert all(torch.isfinite(v).all() for v in m.values())
        loss.backward()
        assert (pr.h_s.grad == 0).all() and (pr.W_s.grad == 0).all()
        zero_grads(pr.h_s, pr.W_s)


def test_chunked_path_never_materializes_all_rows():
    """Every tensor an op creates with a vocabulary-sized last dim, forward and backward, has at
    most ``chunk_size`` rows; the naive path makes ``[B*(L-1), V]``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Rows(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.rows = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] in (V_T, V_S):
                    self.rows.append(t.shape[0])
            return out

    for cs, ok in ((3, True), (None, False)):
        pr = problem(seed=6)
        mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0, chunk_size=cs)
        with Rows() as rec:
            loss, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
            loss.backward()
        rows = [r for r in rec.rows if r not in (D_T, D_S)]  # transposed heads [d, V]
        assert (max(rows) <= 3) == ok, rows


def test_missing_chunk_ids_is_a_clear_error():
    pr = problem(seed=7)
    batch = {k: v for k, v in pr.batch.items() if k != "teacher_chunk_ids"}
    mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab)
    with pytest.raises(ValueError, match="teacher_chunk_ids.*DSKDCollator"):
        mod.forward_batch(batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)


def test_real_collator_batch(teacher_tok, student_tok, rows):
    """A collated batch from two different tokenizers: chunk_kd and exact_kd+chunk_kd run, see
    multi-token chunks, and equal the naive loop."""
    coll = DSKDCollator(teacher_tok, student_tok, max_length=256)
    batch = coll(rows[:4])
    vocab = VocabMap(teacher_tok, student_tok)
    g = torch.Generator().manual_seed(8)
    W_t = torch.randn(vocab.teacher_vocab_size, 6, generator=g, dtype=torch.float64)
    W_s = torch.randn(vocab.student_vocab_size, 5, generator=g, dtype=torch.float64)
    h_t = torch.randn(*batch.teacher_input_ids.shape, 6, generator=g, dtype=torch.float64)
    h_s = torch.randn(*batch.student_input_ids.shape, 5, generator=g, dtype=torch.float64)
    mod = build_loss("chunk_kd", W_t, W_s, vocab, alpha=1.0, chunk_size=16)
    _, m = mod.forward_batch(batch, h_s, h_t, W_s, W_t)
    assert m["n_chunks_multi"] > 0 and m["n_chunks"] > batch.num_pairs // 2
    pr = type("P", (), {"h_s": h_s, "h_t": h_t, "W_s": W_s, "W_t": W_t, "b_s": None,
                        "b_t": None, "batch": batch})  # fmt: skip
    ref, n = _naive(pr, 1.0, "binary_kl")
    assert m["n_chunks"] == n
    torch.testing.assert_close(m["kd_chunk"], ref, rtol=1e-9, atol=1e-12)
    both = build_loss("exact_kd+chunk_kd", W_t, W_s, vocab, alpha=0.5, chunk_size=16)
    loss, m2 = both.forward_batch(batch, h_s, h_t, W_s, W_t)
    assert torch.isfinite(loss) and m2["n_aligned"] == batch.num_pairs
    torch.testing.assert_close(m2["kd_total"], m2["kd_exact"] + m2["kd_chunk"])


def test_nan_hidden_states_outside_chunks_do_not_leak():
    """Some attention kernels leave NaN at padding positions; rows outside every chunk must not
    reach the value or any gradient."""
    pr = problem(seed=9)
    mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0, chunk_size=4)
    ref, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    outside_s = pr.batch["student_chunk_ids"][:, 1:] < 0  # prediction positions 0..L-2
    outside_t = pr.batch["teacher_chunk_ids"][:, 1:] < 0
    h_s = pr.h_s.detach().clone()
    h_s[:, :-1][outside_s] = float("nan")
    h_s[:, -1] = float("nan")  # the last position predicts nothing
    h_s.requires_grad_()
    h_t = pr.h_t.clone()
    h_t[:, :-1][outside_t] = float("nan")
    loss, _ = mod.forward_batch(pr.batch, h_s, h_t, pr.W_s, pr.W_t)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(pr.W_s.grad).all() and torch.isfinite(h_s.grad).all()


def test_gold_ce_from_the_same_head_pass_equals_the_formula(monkeypatch):
    """With 0 < alpha < 1 the gold CE comes out of chunk_kd's pass over the student head (no
    second pass): value and gradients equal (1-alpha) CE + alpha KD built naively."""
    import dskd_align.torch.objectives as objectives

    def second_pass(*a, **k):
        raise AssertionError("gold_cross_entropy called: the fused path was not taken")

    monkeypatch.setattr(objectives, "gold_cross_entropy", second_pass)
    pr = problem(seed=10, bias=True)
    mod = build_loss("chunk_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=0.3, tau=0.7,
                     chunk_size=4)  # fmt: skip
    biases = {"student_lm_head_bias": pr.b_s, "teacher_lm_head_bias": pr.b_t}
    loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t, **biases)
    loss.backward()
    got = grads(pr.h_s, pr.W_s, pr.b_s)
    zero_grads(pr.h_s, pr.W_s, pr.b_s)
    z = (pr.h_s @ pr.W_s.T + pr.b_s)[:, :-1].reshape(-1, V_S)
    ce = torch.nn.functional.cross_entropy(z, pr.batch["student_labels"][:, 1:].reshape(-1))
    kd, _ = _naive(pr, 0.7, "binary_kl")
    ref = 0.7 * ce + 0.3 * kd
    ref.backward()
    torch.testing.assert_close(m["ce_gold"], ce.detach())
    assert m["n_gold"] == (pr.batch["student_labels"][:, 1:] != -100).sum()
    torch.testing.assert_close(loss.detach(), ref.detach())
    for a, e in zip(got, grads(pr.h_s, pr.W_s, pr.b_s), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)
