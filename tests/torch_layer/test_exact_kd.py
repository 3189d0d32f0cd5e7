"""exact_kd: KD at exact pairs through t2s (and its mirror through s2t) against a naive float64
implementation written with Python loops over rows and vocabulary ids."""

from __future__ import annotations

import math

import pytest
import torch
from loss_problems import D_S, D_T, empty_batch, grads, problem, zero_grads

from dskd_align.torch.divergences import get_divergence
from dskd_align.torch.objectives import build_loss


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True) if a > 0)


def _naive_row(z_t, z_s, t2s, s2t, tau, unmapped, space) -> torch.Tensor:
    """Forward KL of one pair row, built id by id (differentiable in ``z_s`` through torch ops)."""
    p = torch.softmax(z_t / tau, -1)
    q = torch.softmax(z_s / tau, -1)
    v_t, v_s = len(t2s), len(s2t)
    out = z_s.new_zeros(())
    if space in ("student", "both"):
        image = {int(t2s[i]) for i in range(v_t) if t2s[i] >= 0}
        pushed = [sum(float(p[i]) for i in range(v_t) if t2s[i] == v) for v in range(v_s)]
        lost = sum(float(p[i]) for i in range(v_t) if t2s[i] < 0)
        if unmapped == "renormalize":
            tot = sum(pushed)
            for v in range(v_s):
                if pushed[v] > 0:
                    out = out + pushed[v] / tot * (math.log(pushed[v] / tot) - torch.log(q[v]))
        else:
            for v in image:
                out = out + pushed[v] * (math.log(pushed[v]) - torch.log(q[v]))
            rest = sum(q[v] for v in range(v_s) if v not in image)
            out = out + lost * (math.log(lost) - torch.log(rest))
    if space in ("teacher", "both"):
        image = {int(s2t[v]) for v in range(v_s) if s2t[v] >= 0}
        pushed = [sum(q[v] for v in range(v_s) if s2t[v] == i) for i in range(v_t)]
        if unmapped == "renormalize":
            pt = sum(float(p[i]) for i in image)
            qt = sum(pushed[i] for i in image)
            for i in image:
                out = out + p[i] / pt * (math.log(p[i] / pt) - torch.log(pushed[i] / qt))
        else:
            for i in image:
                out = out + p[i] * (math.log(p[i]) - torch.log(pushed[i]))
            lost_t = sum(float(p[i]) for i in range(v_t) if i not in image)
            rest = sum(q[v] for v in range(v_s) if s2t[v] < 0)
            out = out + lost_t * (math.log(lost_t) - torch.log(rest))
    return out


def _naive(pr, tau, unmapped, space):
    b, pt, ps = (pr.batch[k] for k in ("align_batch", "align_teacher_pos", "align_student_pos"))
    total = pr.W_s.new_zeros(())
    for r in range(len(b)):
        z_t = pr.h_t[b[r], pt[r]] @ pr.W_t.T + (0 if pr.b_t is None else pr.b_t)
        z_s = pr.h_s[b[r], ps[r]] @ pr.W_s.T + (0 if pr.b_s is None else pr.b_s)
        total = total + _naive_row(z_t, z_s, pr.vocab.t2s, pr.vocab.s2t, tau, unmapped, space)
    return total / max(len(b), 1)


@pytest.mark.parametrize("unmapped", ["renormalize", "other"])
@pytest.mark.parametrize("space", ["student", "teacher", "both"])
@pytest.mark.parametrize("chunk_size", [3, None])
def test_equals_naive_in_value_and_gradient(unmapped, space, chunk_size):
    pr = problem(seed=1, bias=True)
    mod = build_loss("exact_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0, tau=1.3,
                     chunk_size=chunk_size, unmapped=unmapped, space=space)  # fmt: skip
    biases = {"student_lm_head_bias": pr.b_s, "teacher_lm_head_bias": pr.b_t}
    loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t, **biases)
    loss.backward()
    got = grads(pr.h_s, pr.W_s, pr.b_s)
    zero_grads(pr.h_s, pr.W_s, pr.b_s)
    ref = _naive(pr, 1.3, unmapped, space)
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m["kd_exact"], ref.detach(), rtol=1e-10, atol=1e-12)
    for a, e in zip(got, grads(pr.h_s, pr.W_s, pr.b_s), strict=True):
        assert e.abs().sum() > 0
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)
    assert m["n_aligned"] == 8 and 0 <= m["top1_agreement"] <= 1
    assert 0 < m["unmapped_teacher_mass"] < 1


def test_total_mixes_gold_ce_and_kd():
    pr = problem(seed=2)
    mod = build_loss("exact_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=0.3)
    loss, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    ref = _naive(pr, 1.0, "renormalize", "student")
    torch.testing.assert_close(m["kd_total"], ref.detach())
    torch.testing.assert_close(loss.detach(), 0.7 * m["ce_gold"] + 0.3 * ref.detach())
    assert set(m) >= {"loss", "ce_gold", "n_gold", "kd_exact", "n_aligned", "coverage"}


@pytest.mark.parametrize("divergence", ["reverse_kl", "adaptive_kl", "js", "total_variation"])
@pytest.mark.parametrize("unmapped", ["renormalize", "other"])
def test_other_divergences_are_finite_and_chunking_invariant(divergence, unmapped):
    out = []
    for cs in (None, 2):
        pr = problem(seed=3)
        mod = build_loss("exact_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0,
                         divergence=divergence, chunk_size=cs, unmapped=unmapped)  # fmt: skip
        loss, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
        loss.backward()
        out.append((loss.detach(), grads(pr.h_s, pr.W_s)))
    (l0, g0), (l1, g1) = out
    assert torch.isfinite(l0)
    torch.testing.assert_close(l1, l0, rtol=1e-10, atol=1e-12)
    for a, b in zip(g0, g1, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)


def test_other_rule_with_all_divergences_matches_direct_formula():
    """Under "other" both sides are full distributions over V_s + 1 events: any divergence of
    the two extended distributions, built here by hand, equals the module's value."""
    pr = problem(seed=4)
    t2s = pr.vocab.t2s
    image = torch.zeros(11, dtype=torch.bool)
    image[t2s[t2s >= 0]] = True
    b, pt, ps = (pr.batch[k] for k in ("align_batch", "align_teacher_pos", "align_student_pos"))
    p = torch.softmax(pr.h_t[b, pt] @ pr.W_t.T, -1)
    q = torch.softmax(pr.h_s[b, ps].detach() @ pr.W_s.detach().T, -1)
    pushed = torch.zeros(len(b), 11, dtype=p.dtype).index_add(1, t2s[t2s >= 0], p[:, t2s >= 0])
    tgt = torch.cat([pushed, p[:, t2s < 0].sum(-1, keepdim=True)], 1)
    stu = torch.cat([q * image, q[:, ~image].sum(-1, keepdim=True)], 1)
    for name in ("reverse_kl", "js", "skewed_forward_kl", "total_variation"):
        mod = build_loss("exact_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0,
                         divergence=name, unmapped="other")  # fmt: skip
        _, m = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
        ref = get_divergence(name)(stu.log(), tgt.log()).mean()
        torch.testing.assert_close(m["kd_exact"], ref, rtol=1e-10, atol=1e-12, msg=name)


def test_same_vocabulary_and_identical_models_give_zero():
    pr = problem(seed=5)
    W = pr.W_s.detach()
    mod = build_loss("exact_kd", W, W, None, alpha=1.0, space="both")
    h = pr.h_s.detach()
    batch = dict(pr.batch, align_teacher_pos=pr.batch["align_student_pos"])
    loss, m = mod.forward_batch(batch, h, h, W, W)
    assert loss.abs() < 1e-12 and m["top1_agreement"] == 1 and m["unmapped_teacher_mass"] == 0


@pytest.mark.parametrize("name", ["exact_kd", "exact_kd+chunk_kd", "dskd+exact_kd"])
def test_all_masked_batch_gives_zero_not_nan(name):
    pr = problem(seed=6)
    mod = build_loss(name, pr.W_t, pr.W_s.detach(), pr.vocab, chunk_size=4).double()
    loss, m = mod.forward_batch(empty_batch(pr), pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    assert loss.item() == 0.0 and all(torch.isfinite(v).all() for v in m.values())
    loss.backward()
    assert pr.h_s.grad is None or (pr.h_s.grad == 0).all()


def test_chunked_path_never_materializes_all_rows():
    """Every tensor any op creates (forward and backward) with a vocabulary-sized last dim has
    at most ``chunk_size`` rows; the naive path does create ``[A, V]``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Shapes(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.rows = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] >= 11:
                    self.rows.append(t.shape[0])
            return out

    for cs, ok in ((3, True), (None, False)):
        pr = problem(seed=7, A=20)
        mod = build_loss("exact_kd", pr.W_t, pr.W_s.detach(), pr.vocab, alpha=1.0, space="both",
                         chunk_size=cs, unmapped="other")  # fmt: skip
        with Shapes() as rec:
            loss, _ = mod.forward_batch(pr.batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
            loss.backward()
        heads = {D_T, D_S}  # transposed heads [d, V] appear with d rows
        rows = [r for r in rec.rows if r not in heads]
        assert (max(rows) <= 3) == ok, rows


def test_bad_options_and_maps():
    pr = problem(seed=8)
    with pytest.raises(ValueError, match="unmapped must be one of"):
        build_loss("exact_kd", pr.W_t, pr.W_s, pr.vocab, unmapped="drop")
    with pytest.raises(ValueError, match="space must be one of"):
        build_loss("exact_kd", pr.W_t, pr.W_s, pr.vocab, space="left")
    pr.vocab.t2s = pr.vocab.t2s[:-1]
    with pytest.raises(ValueError, match="teacher_vocab_size="):
        build_loss("exact_kd", pr.W_t, pr.W_s, pr.vocab)


def test_without_alignment_one_tokenizer_uses_every_label_position():
    pr = problem(seed=9)
    W = pr.W_s.detach()
    mod = build_loss("exact_kd", W, W, None, alpha=1.0)
    batch = {k: v for k, v in pr.batch.items() if not k.startswith("align_")}
    h_t = torch.randn_like(pr.h_s)
    _, m = mod.forward_batch(batch, pr.h_s, h_t, pr.W_s, W)
    keep = pr.batch["student_labels"][:, 1:] != -100
    z_t, z_s = (h_t @ W.T)[:, :-1][keep], (pr.h_s @ W.T)[:, :-1][keep]
    torch.testing.assert_close(m["kd_exact"], get_divergence("forward_kl")(z_s, z_t).mean())
    assert m["n_aligned"] == keep.sum()
