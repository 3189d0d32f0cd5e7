"""Properties of the row-wise divergences, checked against direct float64 formulas."""

from __future__ import annotations

import math

import pytest
import torch

from dskd_align.torch.divergences import (
    DIVERGENCES,
    adaptive_kl,
    forward_kl,
    get_divergence,
    js_divergence,
    reverse_kl,
    skewed_forward_kl,
    skewed_reverse_kl,
    total_variation,
)

NAMES = sorted(DIVERGENCES)


def _pair(n: int = 6, v: int = 11, seed: int = 0, scale: float = 3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    t = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    return s, t


def _probs(s: torch.Tensor, t: torch.Tensor, temp: float = 1.0):
    return torch.softmax(t / temp, -1), torch.softmax(s / temp, -1)  # p (teacher), q (student)


# Direct formulas on probabilities, float64: the reference the implementations must match.
def _ref_kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * (a.log() - b.log())).sum(-1)


def _ref_akl(p: torch.Tensor, q: torch.Tensor, head_mass: float = 0.5) -> torch.Tensor:
    out = []
    for pi, qi in zip(p, q, strict=True):  # one row at a time, the plain way
        order = sorted(range(len(pi)), key=lambda k: float(pi[k]))
        cum, g_head, g_tail = 0.0, 0.0, 0.0
        for k in order:
            cum += float(pi[k])
            gap = abs(float(pi[k]) - float(qi[k]))
            if cum < head_mass:
                g_tail += gap
            else:
                g_head += gap
        w = g_head / (g_head + g_tail)
        out.append(w * float(_ref_kl(pi, qi)) + (1 - w) * float(_ref_kl(qi, pi)))
    return torch.tensor(out, dtype=torch.float64)


def test_against_direct_formulas():
    s, t = _pair()
    p, q = _probs(s, t, 2.0)
    lam = 0.1
    expect = {
        "forward_kl": _ref_kl(p, q),
        "reverse_kl": _ref_kl(q, p),
        "js": 0.5 * _ref_kl(p, (p + q) / 2) + 0.5 * _ref_kl(q, (p + q) / 2),
        "skewed_forward_kl": _ref_kl(p, lam * p + (1 - lam) * q),
        "skewed_reverse_kl": _ref_kl(q, (1 - lam) * p + lam * q),
        "adaptive_kl": _ref_akl(p, q),
        "total_variation": 0.5 * (p - q).abs().sum(-1),
    }
    assert set(expect) == set(DIVERGENCES)
    for name, fn in DIVERGENCES.items():
        got = fn(s, t, temperature=2.0)
        assert got.shape == (s.shape[0],) and got.dtype == torch.float64, name
        torch.testing.assert_close(got, expect[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", NAMES)
def test_zero_on_equal_inputs_and_non_negative(name):
    fn = DIVERGENCES[name]
    s, t = _pair(n=20, v=13, seed=1)
    torch.testing.assert_close(fn(t, t), torch.zeros(20, dtype=torch.float64), atol=1e-12, rtol=0)
    assert (fn(s, t) > 0).all()


def test_forward_is_reverse_with_arguments_swapped():
    s, t = _pair(seed=2)
    torch.testing.assert_close(forward_kl(s, t), reverse_kl(t, s), rtol=1e-12, atol=0)
    assert not torch.allclose(forward_kl(s, t), reverse_kl(s, t))  # the test can tell them apart


@pytest.mark.parametrize("fn", [js_divergence, total_variation])
def test_symmetric_divergences(fn):
    s, t = _pair(seed=3)
    torch.testing.assert_close(fn(s, t), fn(t, s), rtol=1e-12, atol=1e-15)


def test_bounds():
    s, t = _pair(seed=4, scale=20.0)
    assert (js_divergence(s, t) <= math.log(2) + 1e-12).all()
    assert (total_variation(s, t) <= 1 + 1e-12).all()


def test_skew_limits_and_bound():
    s, t = _pair(seed=5)
    torch.testing.assert_close(skewed_forward_kl(s, t, skew=0.0), forward_kl(s, t))
    torch.testing.assert_close(skewed_reverse_kl(s, t, skew=0.0), reverse_kl(s, t))
    zero = torch.zeros(s.shape[0], dtype=torch.float64)
    torch.testing.assert_close(skewed_forward_kl(s, t, skew=1.0), zero, atol=1e-14, rtol=0)
    torch.testing.assert_close(skewed_reverse_kl(s, t, skew=1.0), zero, atol=1e-14, rtol=0)
    # log is concave: log(l p + (1-l) q) >= l log p + (1-l) log q, so SKL <= (1-l) KL.
    for lam in (0.1, 0.5, 0.9):
        assert (skewed_forward_kl(s, t, skew=lam) <= (1 - lam) * forward_kl(s, t) + 1e-12).all()
        assert (skewed_reverse_kl(s, t, skew=lam) <= (1 - lam) * reverse_kl(s, t) + 1e-12).all()
    with pytest.raises(ValueError, match="skew"):
        skewed_forward_kl(s, t, skew=1.5)


def test_temperature_divides_logits():
    s, t = _pair(seed=6)
    for fn in DIVERGENCES.values():
        torch.testing.assert_close(fn(s, t, temperature=2.5), fn(s / 2.5, t / 2.5))
    with pytest.raises(ValueError, match="temperature"):
        forward_kl(s, t, temperature=0.0)


@pytest.mark.parametrize("name", NAMES)
def test_masked_vocabulary_entries_are_exact_zeros(name):
    """-inf on both sides at the same entries == the divergence over the other entries, with
    finite gradients (0 * log 0 = 0 in value and gradient)."""
    fn = DIVERGENCES[name]
    s, t = _pair(n=5, v=12, seed=7)
    keep = torch.ones(12, dtype=torch.bool)
    keep[[0, 4, 11]] = False
    s_m = s.masked_fill(~keep, float("-inf")).requires_grad_()
    t_m = t.masked_fill(~keep, float("-inf")).requires_grad_()
    got = fn(s_m, t_m)
    torch.testing.assert_close(got, fn(s[:, keep], t[:, keep]), rtol=1e-10, atol=1e-14)
    got.sum().backward()
    for g in (s_m.grad, t_m.grad):
        assert torch.isfinite(g).all(), name
        assert (g[:, ~keep] == 0).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_rows_entirely_masked_but_one(name):
    """Both sides one-hot on the same entry (all other logits -inf): divergence 0, no NaN."""
    fn = DIVERGENCES[name]
    s = torch.full((2, 6), float("-inf"), requires_grad=False)
    s[:, 2] = 1.0
    t = s.clone()
    s.requires_grad_()
    out = fn(s, t)
    torch.testing.assert_close(out, torch.zeros(2), atol=1e-6, rtol=0)  # log(l) + log(1-l) rounds
    out.sum().backward()
    assert not torch.isnan(s.grad).any()


def test_one_sided_mask():
    """Teacher masks an entry: p = 0 there, so FKL is the plain formula; RKL weights that entry by
    q > 0, so its log p counts as log(tiny) (finite, large) instead of -inf."""
    s, t = _pair(n=3, v=8, seed=8)
    t = t.clone()
    t[:, 3] = float("-inf")
    s = s.clone().requires_grad_()
    fkl = forward_kl(s, t)
    assert torch.isfinite(fkl).all()
    fkl.sum().backward()
    assert torch.isfinite(s.grad).all()
    lq, lp = torch.log_softmax(s.detach(), -1), torch.log_softmax(t, -1)
    lp_floor = lp.masked_fill(torch.isneginf(lp), math.log(torch.finfo(torch.float64).tiny))
    expect = (lq.exp() * (lq - lp_floor)).sum(-1)
    torch.testing.assert_close(reverse_kl(s.detach(), t), expect, rtol=1e-12, atol=0)
    assert (expect > 700 * lq.exp()[:, 3]).all()  # dominated by the ruled-out entry
    # Skewed KLs mix in the other side, so they stay finite without the floor.
    assert torch.isfinite(skewed_reverse_kl(s.detach(), t)).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["teacher", "student"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_sided_neg_inf_gives_finite_gradients(name, side, dtype):
    """Issue 10: reverse_kl and adaptive_kl gave NaN gradients where forward_kl did not. A -inf
    logit on either side alone now gives a finite value and finite gradients for every
    divergence, to both inputs; the gradient moves student mass off a teacher-masked entry."""
    s, t = (x.to(dtype) for x in _pair(n=4, v=9, seed=21))
    (t if side == "teacher" else s)[:, 2] = float("-inf")
    s.requires_grad_()
    t.requires_grad_()
    out = get_divergence(name)(s, t, 1.5)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()
    if side == "teacher" and name in ("reverse_kl", "adaptive_kl"):
        assert (s.grad[:, 2] > 0).all()  # descent lowers the student's logit on that entry


@pytest.mark.parametrize("name", NAMES)
def test_bf16_input_is_upcast_first(name):
    fn = DIVERGENCES[name]
    s, t = _pair(n=4, v=50, seed=9)
    s16 = s.to(torch.bfloat16).requires_grad_()
    t16 = t.to(torch.bfloat16)
    out = fn(s16, t16, temperature=2.0)
    assert out.dtype == torch.float32 and out.shape == (4,)
    # Upcasting bf16 is exact, so this must agree with float32 on the same rounded values.
    expect = fn(s16.detach().float(), t16.float(), temperature=2.0)
    torch.testing.assert_close(out, expect, rtol=1e-6, atol=1e-7)
    out.sum().backward()
    assert s16.grad.dtype == torch.bfloat16 and torch.isfinite(s16.grad.float()).all()


def test_float32_output_dtype():
    s, t = _pair()
    for fn in DIVERGENCES.values():
        assert fn(s.float(), t.float()).dtype == torch.float32


def test_adaptive_kl_weights_are_detached():
    """The AKL gradient is w_head * grad(FKL) + w_tail * grad(RKL) with the weights constant."""
    s, t = _pair(n=4, v=9, seed=10)
    s1 = s.clone().requires_grad_()
    adaptive_kl(s1, t).sum().backward()
    p, q = _probs(s, t)
    w = []
    for pi, qi in zip(p, q, strict=True):
        akl, f, r = (
            float(_ref_akl(pi[None], qi[None])),
            float(_ref_kl(pi, qi)),
            float(_ref_kl(qi, pi)),
        )
        w.append((akl - r) / (f - r))  # solve akl = w f + (1 - w) r for w
    w = torch.tensor(w, dtype=torch.float64)
    s2 = s.clone().requires_grad_()
    (w * forward_kl(s2, t) + (1 - w) * reverse_kl(s2, t)).sum().backward()
    torch.testing.assert_close(s1.grad, s2.grad, rtol=1e-8, atol=1e-12)


def test_registry_names_and_aliases():
    assert get_divergence("fkl") is forward_kl
    assert get_divergence("js_divergence") is js_divergence
    assert get_divergence("akl") is adaptive_kl
    with pytest.raises(ValueError, match="unknown divergence"):
        get_divergence("kl_typo")


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="equal shapes"):
        forward_kl(torch.zeros(2, 3), torch.zeros(2, 4))
