"""build_loss: every name runs and its loss falls, the metrics contract, vanilla KD against its
formula, alpha skipping what it zeroes, head biases, and the clear errors of issue 8."""

from __future__ import annotations

import pytest
import torch
from loss_problems import D_S, V_S, empty_batch, problem

from dskd_align.torch import HiddenStateError
from dskd_align.torch.divergences import forward_kl
from dskd_align.torch.losses import DualSpaceKDLoss
from dskd_align.torch.objectives import LOSS_NAMES, build_loss

# The synthetic problems have random ids and no tokenizers; byte_kd reads the pair's byte tables
# and the texts the ids spell, so its tests (same properties, real tiny tokenizers) live in
# test_byte_kd.py (byte_sets: test_byte_sets*.py).
SYNTHETIC = tuple(n for n in LOSS_NAMES if n not in ("byte_kd", "byte_sets"))


def _same_vocab(pr):
    """A teacher on the student's vocabulary (for "kd"): same [B, L] positions."""
    g = torch.Generator().manual_seed(99)
    W_t = torch.randn(V_S, 6, generator=g, dtype=torch.float64)
    h_t = torch.randn(*pr.h_s.shape[:2], 6, generator=g, dtype=torch.float64)
    return W_t, h_t


def _args(name, pr):
    if name == "kd":
        W_t, h_t = _same_vocab(pr)
        return W_t, h_t, None
    return pr.W_t, pr.h_t, pr.vocab


@pytest.mark.parametrize("name", SYNTHETIC)
def test_every_loss_runs_and_falls(name):
    pr = problem(seed=1)
    W_t, h_t, vocab = _args(name, pr)
    mod = build_loss(name, W_t, pr.W_s.detach(), vocab, chunk_size=5).double()
    h_s = torch.nn.Parameter(pr.h_s.detach().clone())
    W_s = torch.nn.Parameter(pr.W_s.detach().clone())
    params = [h_s, W_s, *mod.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    losses = []
    for _ in range(8):
        loss, m = mod.forward_batch(pr.batch, h_s, h_t, W_s, W_t)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert loss.dtype == torch.float64 or loss.dtype == torch.float32
    assert {"loss", "ce_gold", "coverage"} <= set(m)
    for k, v in m.items():
        assert v.dim() == 0 and not v.requires_grad, k
    if name != "sft":
        assert "kd_total" in m or "kd_teacher_space" in m


def test_sft_needs_no_teacher_and_is_gold_ce():
    pr = problem(seed=2)
    mod = build_loss("sft", None, pr.W_s.detach(), alpha=0.9)
    loss, m = mod.forward_batch(pr.batch, pr.h_s, None, pr.W_s, None)
    logits = (pr.h_s @ pr.W_s.T)[:, :-1].reshape(-1, V_S)
    ref = torch.nn.functional.cross_entropy(logits, pr.batch["student_labels"][:, 1:].reshape(-1))
    torch.testing.assert_close(loss, ref)
    assert m["ce_gold"] == m["loss"] and list(mod.parameters()) == []


def test_vanilla_kd_equals_formula_and_refuses_two_vocabularies():
    pr = problem(seed=3)
    W_t, h_t = _same_vocab(pr)
    mod = build_loss("kd", W_t, pr.W_s.detach(), None, alpha=0.4, tau=1.5, chunk_size=4)
    loss, m = mod.forward_batch(pr.batch, pr.h_s, h_t, pr.W_s, W_t)
    keep = pr.batch["student_labels"][:, 1:] != -100
    z_t, z_s = (h_t @ W_t.T)[:, :-1][keep], (pr.h_s @ pr.W_s.T)[:, :-1][keep]
    kd = forward_kl(z_s, z_t, 1.5).mean()
    torch.testing.assert_close(m["kd"], kd.detach())
    torch.testing.assert_close(loss, 0.6 * m["ce_gold"] + 0.4 * kd)
    with pytest.raises(ValueError, match="exact_kd"):
        build_loss("kd", pr.W_t, pr.W_s.detach(), pr.vocab)


def test_alpha_zero_skips_kd_and_survives_inf_teacher_rows():
    """Issue 10: DualSpaceKDLoss(alpha=0) turned a -inf teacher row into a NaN loss."""
    pr = problem(seed=4)
    h_t = pr.h_t.clone()
    h_t[0, 3] = float("-inf")
    h_t[1, :] = float("nan")
    for name in ("dskd", "exact_kd", "chunk_kd", "dskd+exact_kd"):
        mod = build_loss(name, pr.W_t, pr.W_s.detach(), pr.vocab, alpha=0.0).double()
        loss, m = mod.forward_batch(pr.batch, pr.h_s, h_t, pr.W_s, pr.W_t)
        assert torch.isfinite(loss) and loss == m["ce_gold"], name
        assert all(torch.isfinite(v) for v in m.values()), name
        loss.backward()
        assert torch.isfinite(pr.h_s.grad).all(), name
        pr.h_s.grad = None
    dskd = DualSpaceKDLoss(pr.W_t, pr.W_s.detach(), pr.vocab, alpha=0.0).double()
    loss, m = dskd(pr.h_s, None, pr.W_s, pr.W_t, pr.batch["student_labels"])
    assert torch.isfinite(loss) and m["kd_teacher_space"] == 0


def test_alpha_one_uses_gold_ce_as_metric_only():
    pr = problem(seed=5)
    for name in ("dskd", "exact_kd"):
        mod = build_loss(name, pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0).double()
        loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
        assert m["ce_gold"] > 0
        kd = m["kd_total"] if "kd_total" in m else m["loss"]
        torch.testing.assert_close(loss.detach(), kd)


def test_empty_batches_give_zero_for_every_loss():
    pr = problem(seed=6)
    for name in SYNTHETIC:
        W_t, h_t, vocab = _args(name, pr)
        mod = build_loss(name, W_t, pr.W_s.detach(), vocab).double()
        loss, m = mod.forward_batch(empty_batch(pr), pr.h_s, h_t, pr.W_s, W_t)
        assert loss.item() == 0.0, name
        assert all(torch.isfinite(v) for v in m.values()), name


@pytest.mark.parametrize("name", ["sft", "kd", "exact_kd", "chunk_kd", "exact_kd+chunk_kd"])
def test_head_bias_equals_an_extra_constant_hidden_unit(name):
    """A bias b on head W is the head [W, b] on hidden states [h, 1]: both give the same loss
    and the same gradient for h, W and b."""
    pr = problem(seed=7, bias=True)
    W_t, h_t, vocab = _args(name, pr)
    b_t = pr.b_t if name != "kd" else torch.randn(V_S, dtype=torch.float64)
    mod = build_loss(name, W_t, pr.W_s.detach(), vocab, chunk_size=4).double()
    biases = {"student_lm_head_bias": pr.b_s, "teacher_lm_head_bias": b_t}
    loss, _ = mod.forward_batch(pr.batch, pr.h_s, h_t, pr.W_s, W_t, **biases)
    loss.backward()

    def one(h):
        return torch.cat([h, torch.ones(*h.shape[:2], 1, dtype=h.dtype)], -1)

    h_s = pr.h_s.detach().clone().requires_grad_()
    W_s = torch.cat([pr.W_s.detach(), pr.b_s.detach()[:, None]], 1).requires_grad_()
    W_t2 = torch.cat([W_t, b_t[:, None]], 1)
    mod2 = build_loss(name, W_t2, W_s.detach(), vocab, chunk_size=4).double()
    loss2, _ = mod2.forward_batch(pr.batch, one(h_s), one(h_t), W_s, W_t2)
    loss2.backward()
    torch.testing.assert_close(loss, loss2)
    torch.testing.assert_close(pr.h_s.grad, h_s.grad)
    torch.testing.assert_close(pr.W_s.grad, W_s.grad[:, :D_S])
    torch.testing.assert_close(pr.b_s.grad, W_s.grad[:, D_S])


def test_dskd_with_head_bias():
    pr = problem(seed=8, bias=True)
    mod = build_loss("dskd", pr.W_t, pr.W_s.detach(), pr.vocab).double()
    zero = {"student_lm_head_bias": torch.zeros_like(pr.b_s), "teacher_lm_head_bias": None}
    plain, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    zeroed, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t, **zero)
    torch.testing.assert_close(plain, zeroed)
    biases = {"student_lm_head_bias": pr.b_s, "teacher_lm_head_bias": pr.b_t}
    loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t, **biases)
    assert torch.isfinite(loss) and loss != plain
    loss.backward()
    assert pr.b_s.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["dskd", "exact_kd", "chunk_kd"])
def test_logits_instead_of_hidden_states_is_a_clear_error(name):
    pr = problem(seed=9)
    mod = build_loss(name, pr.W_t, pr.W_s.detach(), pr.vocab).double()
    logits = (pr.h_s @ pr.W_s.T).detach()  # [B, L, V_s]: the usual mistake
    with pytest.raises(HiddenStateError, match=r"looks like logits.*hidden_states\[-1\]"):
        mod.forward_batch(pr.batch, logits, pr.h_t, pr.W_s, pr.W_t)
    t_logits = (pr.h_t @ pr.W_t.T).detach()
    with pytest.raises(HiddenStateError, match=r"teacher_hidden .*last_hidden_state"):
        mod.forward_batch(pr.batch, pr.h_s, t_logits, pr.W_s, pr.W_t)
    with pytest.raises(HiddenStateError, match="student_lm_head_bias must be"):
        mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t,
                          student_lm_head_bias=torch.zeros(3))  # fmt: skip
    assert issubclass(HiddenStateError, ValueError)


def test_build_loss_errors():
    pr = problem(seed=10)
    with pytest.raises(ValueError, match="unknown loss 'dkd'; choose one of"):
        build_loss("dkd", pr.W_t, pr.W_s)
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['chunk_loss'\]"):
        build_loss("exact_kd", pr.W_t, pr.W_s, pr.vocab, chunk_loss="binary_kl")
    with pytest.raises(ValueError, match="needs teacher_lm_head_weight"):
        build_loss("exact_kd", None, pr.W_s, pr.vocab)
    with pytest.raises(ValueError, match="unknown divergence"):
        build_loss("chunk_kd", pr.W_t, pr.W_s, pr.vocab, divergence="kl2")
    assert build_loss("dskd", pr.W_t, pr.W_s, pr.vocab).tau == 2.0
    assert build_loss("exact_kd", pr.W_t, pr.W_s, pr.vocab).parts["exact_kd"].tau == 1.0


@pytest.mark.parametrize("name", SYNTHETIC)
def test_bf16_inputs_give_float32_loss_and_bf16_gradients(name):
    pr = problem(seed=11, dtype=torch.float32)
    W_t, h_t, vocab = _args(name, pr)
    W_t, h_t = W_t.float(), h_t.float()
    mod = build_loss(name, W_t, pr.W_s.detach(), vocab, chunk_size=4)
    ref, _ = mod.forward_batch(pr.batch, pr.h_s, h_t, pr.W_s, W_t)
    h_s = pr.h_s.detach().bfloat16().requires_grad_()
    W_s = pr.W_s.detach().bfloat16().requires_grad_()
    loss, m = mod.forward_batch(pr.batch, h_s, h_t.bfloat16(), W_s, W_t.bfloat16())
    assert loss.dtype == torch.float32 and m["ce_gold"].dtype == torch.float32
    torch.testing.assert_close(loss, ref.detach(), rtol=0.05, atol=0.02)  # bf16 matmuls
    loss.backward()
    assert h_s.grad.dtype == W_s.grad.dtype == torch.bfloat16
    assert torch.isfinite(h_s.grad.float()).all() and torch.isfinite(W_s.grad.float()).all()
