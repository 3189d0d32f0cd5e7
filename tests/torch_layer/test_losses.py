"""DualSpaceKDLoss: the DSKD.md formula, chunked == naive, gradient paths, empty sets, dtypes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dskd_align.torch.divergences import forward_kl, get_divergence
from dskd_align.torch.losses import DualSpaceKDLoss, dskd_terms, identity_alignment
from dskd_align.torch.projector import projector_param_group

V_T, V_S, D_T, D_S = 16, 14, 8, 12


def _problem(seed=0, dtype=torch.float64, B=3, L_t=9, L_s=7, A=10):
    """Random heads (nn.Linear layout [V, d]), hidden states, labels, an alignment, a vocab map.

    d_s >= |O| so the t->s projector reproduces the teacher's logits on O and some rows agree.
    """
    g = torch.Generator().manual_seed(seed)
    W_t = torch.randn(V_T, D_T, generator=g, dtype=dtype).requires_grad_()
    W_s = torch.randn(V_S, D_S, generator=g, dtype=dtype).requires_grad_()
    o_t = torch.randperm(V_T, generator=g)[:10]
    o_s = torch.randperm(V_S, generator=g)[:10]
    t2s = torch.full((V_T,), -1, dtype=torch.long)
    t2s[o_t] = o_s
    vocab = SimpleNamespace(overlap_teacher_ids=o_t, overlap_student_ids=o_s, t2s=t2s, s2t=None)
    h_t = torch.randn(B, L_t, D_T, generator=g, dtype=dtype).requires_grad_()
    h_s = torch.randn(B, L_s, D_S, generator=g, dtype=dtype).requires_grad_()
    labels = torch.randint(0, V_S, (B, L_s), generator=g)
    labels[:, :2] = -100
    align = (
        torch.randint(0, B, (A,), generator=g),
        torch.randint(0, L_t, (A,), generator=g),
        torch.randint(0, L_s, (A,), generator=g),
    )
    return SimpleNamespace(W_t=W_t, W_s=W_s, vocab=vocab, h_t=h_t, h_s=h_s, labels=labels, al=align)


def _loss_module(pr, **kw):
    mod = DualSpaceKDLoss(pr.W_t.detach(), pr.W_s.detach(), pr.vocab, **kw)
    return mod.to(pr.h_s.dtype)


def _run(mod, pr):
    return mod(pr.h_s, pr.h_t, pr.W_s, pr.W_t, pr.labels, *pr.al)


def _grads(*ts):
    return [None if t.grad is None else t.grad.clone() for t in ts]


@pytest.mark.parametrize("divergence", ["forward_kl", "reverse_kl", "js", "adaptive_kl"])
@pytest.mark.parametrize("chunk_size", [1, 3, 1000])
def test_chunked_equals_naive_in_value_and_gradient(divergence, chunk_size):
    out = []
    for cs in (None, chunk_size):
        pr = _problem(seed=1)
        mod = _loss_module(pr, divergence=divergence, chunk_size=cs)
        loss, metrics = _run(mod, pr)
        loss.backward()
        proj = mod.t2s_projector.weight
        out.append((loss.detach(), metrics, _grads(pr.h_s, pr.W_s, proj)))
    (l0, m0, g0), (l1, m1, g1) = out
    assert m0["n_agree"] > 0 and m0["n_valid"] > m0["n_agree"]  # every branch is exercised
    torch.testing.assert_close(l1, l0, rtol=1e-12, atol=1e-14)
    for k in m0:
        torch.testing.assert_close(m1[k], m0[k], rtol=1e-12, atol=1e-14, msg=k)
    for a, b in zip(g0, g1, strict=True):
        assert a is not None and a.abs().sum() > 0
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-13)


def test_terms_match_the_formulas_of_dskd_md():
    """Every term recomputed from DSKD.md with plain tensor ops on all rows at once."""
    pr = _problem(seed=2)
    mod = _loss_module(pr, chunk_size=4, alpha=0.3, tau=1.7)
    loss, m = _run(mod, pr)
    b, pt, ps = pr.al
    rt, rs = pr.h_t[b, pt].detach(), pr.h_s[b, ps].detach()  # [A, d]
    W_t, W_s = pr.W_t.detach(), pr.W_s.detach()
    o_t, o_s = pr.vocab.overlap_teacher_ids, pr.vocab.overlap_student_ids
    z_t, z_s = rt @ W_t.T, rs @ W_s.T
    y = pr.vocab.t2s[z_t.argmax(-1)]
    keep = y >= 0
    z_ts = rt @ mod.t2s_projector.weight.detach().T @ W_s.T
    agree = keep & (z_ts.argmax(-1) == y)
    W_st = W_s.T[:, o_s] @ torch.linalg.pinv(W_t.T[:, o_t])  # [d_s, d_t]
    z_st = rs @ W_st @ W_t.T
    expect = {
        "ce_t2s": F.cross_entropy(z_ts[keep], y[keep]),
        "kd_student_space": forward_kl(z_s[agree], z_ts[agree], 1.7).mean(),
        "kd_teacher_space": forward_kl(z_st, z_t, 1.7).mean(),
        "ce_gold": F.cross_entropy(
            (pr.h_s.detach() @ W_s.T)[:, :-1].reshape(-1, V_S),
            pr.labels[:, 1:].reshape(-1),
            ignore_index=-100,
        ),
    }
    for k, v in expect.items():
        torch.testing.assert_close(m[k], v, rtol=1e-9, atol=1e-12, msg=k)
    assert m["n_valid"] == keep.sum() and m["n_agree"] == agree.sum() and m["n_aligned"] == 10
    assert m["n_gold"] == (pr.labels[:, 1:] != -100).sum()
    torch.testing.assert_close(m["agreement"], agree.sum() / keep.sum())
    kd = expect["kd_student_space"] + expect["ce_t2s"] + expect["kd_teacher_space"]
    torch.testing.assert_close(loss, 0.7 * expect["ce_gold"] + 0.3 * kd, rtol=1e-9, atol=0)


def test_unmapped_teacher_argmax_rows_are_dropped():
    pr = _problem(seed=3)
    b, pt, _ = pr.al
    arg = (pr.h_t[b, pt] @ pr.W_t.T).argmax(-1).detach()  # [A] teacher argmax ids
    pr.vocab.t2s[arg[:4]] = -1  # those rows' argmax now has no student twin
    dropped = pr.vocab.t2s[arg] < 0
    assert 4 <= dropped.sum() < len(arg)
    mod = _loss_module(pr, chunk_size=3)
    _, m = _run(mod, pr)
    assert m["n_valid"] == (~dropped).sum()
    # CE over the kept rows only: equal to the CE of the same module on the kept rows alone.
    keep = ~dropped
    pr.al = tuple(t[keep] for t in pr.al)
    _, m_kept = _run(mod, pr)
    torch.testing.assert_close(m["ce_t2s"], m_kept["ce_t2s"])
    torch.testing.assert_close(m["kd_student_space"], m_kept["kd_student_space"])


def test_teacher_equal_to_student_gives_zero_kd_at_init():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(30, 6, generator=g, dtype=torch.float64).requires_grad_()  # [V, d], d <= V
    h = torch.randn(2, 8, 6, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.randint(0, 30, (2, 8), generator=g)
    labels[0, :3] = -100
    mod = DualSpaceKDLoss(W.detach(), W.detach(), None, chunk_size=5).double()
    loss, m = mod(h, h, W, W, labels)  # no alignment given: identity over label positions
    assert m["n_aligned"] == (labels[:, 1:] != -100).sum() == m["n_valid"] == m["n_agree"]
    assert m["kd_student_space"].abs() < 1e-10 and m["kd_teacher_space"].abs() < 1e-10
    assert m["ce_t2s"] > 0  # CE of the teacher's own argmax is not zero
    loss.backward()
    assert torch.isfinite(h.grad).all()


def test_gradient_paths():
    """Teacher frozen; CE_t2s trains only the projector; KD_stu trains the student (head and
    body) but not the projector; KD_tea reaches the student body only."""
    pr = _problem(seed=5)
    mod = _loss_module(pr, chunk_size=2)
    b, pt, ps = pr.al
    s2t = mod.s2t_projector.matrix_from_lm_head(pr.W_s)
    proj = mod.t2s_projector.weight

    def terms():
        rows_t, rows_s = pr.h_t[b, pt], pr.h_s[b, ps]
        return dskd_terms(rows_t, rows_s, pr.W_t, pr.W_s, proj, s2t, mod.t2s, chunk_size=2)

    def nonzero(t):
        return t.grad is not None and t.grad.abs().sum() > 0

    expect = {  # term -> which of (h_s, W_s, projector) must receive gradient
        "ce_t2s": (False, False, True),
        "kd_student_space": (True, True, False),
        "kd_teacher_space": (True, False, False),
    }
    for name, want in expect.items():
        for t in (pr.h_t, pr.h_s, pr.W_t, pr.W_s, proj):
            t.grad = None
        terms()[name].backward()
        assert pr.h_t.grad is None and pr.W_t.grad is None, name  # the teacher is frozen
        assert (nonzero(pr.h_s), nonzero(pr.W_s), nonzero(proj)) == want, name


def test_all_masked_batch_gives_zero_not_nan():
    pr = _problem(seed=6)
    pr.labels[:] = -100
    empty = torch.zeros(0, dtype=torch.long)
    for cs in (None, 4):
        mod = _loss_module(pr, chunk_size=cs)
        loss, m = mod(pr.h_s, pr.h_t, pr.W_s, pr.W_t, pr.labels, empty, empty, empty)
        assert loss.item() == 0.0 and all(torch.isfinite(v).all() for v in m.values())
        assert m["n_aligned"] == 0 and m["n_gold"] == 0 and m["agreement"] == 0
        loss.backward()
        for t in (pr.h_s, pr.W_s, mod.t2s_projector.weight):
            assert t.grad is None or (t.grad == 0).all()
        pr.h_s.grad = pr.W_s.grad = None
    # Same-vocabulary mode with no labels at all: the identity alignment is empty too.
    same = DualSpaceKDLoss(pr.W_s.detach(), pr.W_s.detach(), None).double()
    loss, _ = same(pr.h_s, pr.h_s, pr.W_s, pr.W_s, pr.labels)
    assert loss.item() == 0.0


def test_empty_agreement_set_is_zero():
    pr = _problem(seed=7)
    pr.vocab.t2s[:] = -1  # no teacher token has a twin: A' and G are empty
    mod = _loss_module(pr, chunk_size=4)
    loss, m = _run(mod, pr)
    assert m["n_valid"] == 0 and m["ce_t2s"] == 0 and m["kd_student_space"] == 0
    assert m["kd_teacher_space"] > 0 and torch.isfinite(loss)


def test_bf16_inputs():
    pr = _problem(seed=8, dtype=torch.float32)
    mod = _loss_module(pr, chunk_size=3)
    ref, _ = _run(mod, pr)
    h_s = pr.h_s.detach().bfloat16().requires_grad_()
    W_s = pr.W_s.detach().bfloat16().requires_grad_()
    loss, m = mod(h_s, pr.h_t.bfloat16(), W_s, pr.W_t.bfloat16(), pr.labels, *pr.al)
    assert loss.dtype == torch.float32 and m["kd_teacher_space"].dtype == torch.float32
    torch.testing.assert_close(loss, ref.detach(), rtol=0.1, atol=0)  # bf16 matmuls
    loss.backward()
    assert h_s.grad.dtype == torch.bfloat16 and torch.isfinite(h_s.grad.float()).all()
    assert W_s.grad.dtype == torch.bfloat16 and torch.isfinite(W_s.grad.float()).all()
    assert torch.isfinite(mod.t2s_projector.weight.grad).all()


def test_space_switches():
    pr = _problem(seed=9)
    only_tea = _loss_module(pr, student_space=False)
    _, m = _run(only_tea, pr)
    assert only_tea.t2s_projector is None and m["ce_t2s"] == 0 and m["kd_student_space"] == 0
    assert m["kd_teacher_space"] > 0
    with pytest.raises(ValueError, match="no trainable"):
        projector_param_group(only_tea)
    only_stu = _loss_module(pr, teacher_space=False)
    _, m = _run(only_stu, pr)
    assert only_stu.s2t_projector is None and m["kd_teacher_space"] == 0
    assert m["ce_t2s"] > 0 and m["kd_student_space"] > 0
    assert projector_param_group(only_stu)["params"] == [only_stu.t2s_projector.weight]


def test_chunked_path_never_saves_full_logits():
    """Saved-for-backward tensors: the naive path keeps [A, V] logits, the chunked one never."""
    for cs, expect_full in ((None, True), (4, False)):
        pr = _problem(seed=10, A=11)
        mod = _loss_module(pr, chunk_size=cs)
        shapes = []

        def pack(t, shapes=shapes):
            shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _run(mod, pr)
        full = [s for s in shapes if len(s) == 2 and s[0] == 11 and s[1] in (V_T, V_S)]
        assert bool(full) == expect_full
        heads = {(D_T, V_T), (D_S, V_S)}  # the transposed heads a matmul saves
        rows = {s[0] for s in shapes if len(s) == 2 and s[1] in (V_T, V_S) and s not in heads}
        if not expect_full:
            assert max(rows) <= 4


def test_forward_batch_and_metrics():
    pr = _problem(seed=11)
    mod = _loss_module(pr, chunk_size=4)
    batch = {"student_labels": pr.labels, "coverage": torch.tensor([0.5, 1.0, 0.75])}
    batch.update(zip(("align_batch", "align_teacher_pos", "align_student_pos"), pr.al, strict=True))
    loss, m = mod.forward_batch(batch, pr.h_s, pr.h_t, pr.W_s, pr.W_t)
    loss2, _ = _run(mod, pr)
    torch.testing.assert_close(loss, loss2)
    assert m["coverage"] == 0.75 and not any(v.requires_grad for v in m.values())


def test_identity_alignment_and_errors():
    labels = torch.tensor([[-100, 5, 6, -100], [-100, -100, 1, 2]])
    b, pt, ps = identity_alignment(labels)
    assert b.tolist() == [0, 0, 1, 1] and pt.tolist() == [0, 1, 1, 2] and torch.equal(pt, ps)
    pr = _problem(seed=12)
    with pytest.raises(ValueError, match="divergence"):
        _loss_module(pr, divergence="nope")
    with pytest.raises(ValueError, match="alpha"):
        _loss_module(pr, alpha=1.5)
    pr.vocab.t2s = pr.vocab.t2s[:-1]
    with pytest.raises(ValueError, match="pad t2s"):
        _run(_loss_module(pr), pr)
    assert get_divergence("forward_kl") is forward_kl
