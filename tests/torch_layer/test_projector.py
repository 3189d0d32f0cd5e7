"""Projector initialization (least squares on O), the s->t rebuild, and the param group."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dskd_align.torch.projector import (
    StudentToTeacherProjector,
    init_t2s_projector,
    projector_param_group,
    t2s_projector_from_lm_heads,
)


def _heads(d_t=6, v_t=40, d_s=5, v_s=30, n_o=20, seed=0):
    """Math-layout heads W_t [d_t, V_t], W_s [d_s, V_s] and an overlap of n_o id pairs."""
    g = torch.Generator().manual_seed(seed)
    W_t = torch.randn(d_t, v_t, generator=g)
    W_s = torch.randn(d_s, v_s, generator=g)
    o_t = torch.randperm(v_t, generator=g)[:n_o]
    o_s = torch.randperm(v_s, generator=g)[:n_o]
    return W_t, W_s, o_t, o_s


def test_t2s_init_is_the_least_squares_solution():
    W_t, W_s, o_t, o_s = _heads()
    layer = init_t2s_projector(W_t, W_s, o_t, o_s)
    assert isinstance(layer, nn.Linear) and layer.bias is None
    assert layer.weight.shape == (5, 6) and layer.weight.dtype == torch.float32  # [d_s, d_t]
    # min_X ||X W^s_O - W^t_O||  <=>  (W^s_O)^T X^T = (W^t_O)^T in the least-squares sense.
    A = W_s[:, o_s].double().T  # [|O|, d_s]
    B = W_t[:, o_t].double().T  # [|O|, d_t]
    X_T = torch.linalg.lstsq(A, B).solution  # [d_s, d_t] == nn.Linear weight
    torch.testing.assert_close(layer.weight.double(), X_T, rtol=1e-4, atol=1e-5)


def test_t2s_reproduces_teacher_logits_on_o_when_exact_solution_exists():
    # |O| <= d_s: W^s_O has full column rank, so the teacher's logits on O are reproduced exactly.
    W_t, W_s, o_t, o_s = _heads(d_t=6, d_s=8, n_o=7, seed=1)
    layer = init_t2s_projector(W_t, W_s, o_t, o_s)
    h_t = torch.randn(3, 6)
    with torch.no_grad():
        projected = layer(h_t) @ W_s[:, o_s]  # [3, d_s] @ [d_s, |O|]
    torch.testing.assert_close(projected, h_t @ W_t[:, o_t], rtol=1e-4, atol=1e-4)


def test_identical_heads_give_the_identity():
    W_t, _, _, _ = _heads(d_t=6, v_t=40, seed=2)
    ids = torch.arange(40)
    layer = init_t2s_projector(W_t, W_t.clone(), ids, ids)
    torch.testing.assert_close(layer.weight, torch.eye(6), rtol=0, atol=1e-5)
    s2t = StudentToTeacherProjector(W_t, ids, ids)
    torch.testing.assert_close(s2t.matrix(W_t), torch.eye(6), rtol=0, atol=1e-5)


def test_lm_head_layout_helper_transposes():
    W_t, W_s, o_t, o_s = _heads(seed=3)
    vocab = SimpleNamespace(overlap_teacher_ids=o_t, overlap_student_ids=o_s)
    a = init_t2s_projector(W_t, W_s, o_t, o_s).weight
    b = t2s_projector_from_lm_heads(W_t.T, W_s.T, vocab).weight  # nn.Linear layout [V, d]
    torch.testing.assert_close(a, b)


def test_wrong_layout_is_reported():
    W_t, W_s, o_t, o_s = _heads(d_t=6, v_t=40, seed=4)
    with pytest.raises(ValueError, match=r"lm_head\.weight\.T"):
        init_t2s_projector(W_t.T, W_s, o_t, o_s)  # [V, d] passed where [d, V] is expected
    with pytest.raises(ValueError, match="same length"):
        init_t2s_projector(W_t, W_s, o_t, o_s[:-1])
    with pytest.raises(ValueError, match="empty"):
        init_t2s_projector(W_t, W_s, o_t[:0], o_s[:0])


def test_s2t_matrix_is_least_squares_and_follows_the_student_head():
    W_t, W_s, o_t, o_s = _heads(seed=5)
    proj = StudentToTeacherProjector(W_t, o_t, o_s)

    def expected(W):  # min_X ||X W^t_O - W^s_O||  <=>  (W^t_O)^T X^T = (W^s_O)^T
        sol = torch.linalg.lstsq(W_t[:, o_t].double().T, W[:, o_s].double().T).solution
        return sol.T  # [d_s, d_t]

    torch.testing.assert_close(proj.matrix(W_s).double(), expected(W_s), rtol=1e-4, atol=1e-5)
    W_s2 = W_s + 0.5 * torch.randn_like(W_s)  # the student head moved: rebuilt, not cached
    torch.testing.assert_close(proj.matrix(W_s2).double(), expected(W_s2), rtol=1e-4, atol=1e-5)


def test_s2t_is_detached_and_caches_pinv_of_the_teacher():
    W_t, W_s, o_t, o_s = _heads(seed=6)
    proj = StudentToTeacherProjector(W_t, o_t, o_s)
    before = proj.matrix(W_s)
    W_t.mul_(3.0)  # the teacher is frozen: pinv(W^t_O) was taken once at construction
    torch.testing.assert_close(proj.matrix(W_s), before)
    head = nn.Linear(5, 30, bias=False)  # student lm_head, weight [V_s, d_s]
    h = torch.randn(4, 5, requires_grad=True)
    out = proj(h, head.weight)
    assert out.shape == (4, 6)
    out.sum().backward()
    assert h.grad is not None and head.weight.grad is None  # no gradient into the student head
    assert list(proj.parameters()) == []  # W^{s->t} is not trained


def test_s2t_frozen_student_head_caches_the_product():
    W_t, W_s, o_t, o_s = _heads(seed=7)
    proj = StudentToTeacherProjector(W_t, o_t, o_s, frozen_student_head=True)
    first = proj.matrix(W_s)
    assert proj.matrix(W_s * 2.0) is first
    live = StudentToTeacherProjector(W_t, o_t, o_s)
    assert not torch.allclose(live.matrix(W_s * 2.0), first)


def test_projector_param_group():
    W_t, W_s, o_t, o_s = _heads(seed=8)
    holder = nn.Module()
    holder.t2s = init_t2s_projector(W_t, W_s, o_t, o_s)
    holder.s2t = StudentToTeacherProjector(W_t, o_t, o_s)
    group = projector_param_group(holder)
    assert group["lr"] == 5e-4
    assert len(group["params"]) == 1 and group["params"][0] is holder.t2s.weight
    student = nn.Linear(3, 3)
    opt = torch.optim.AdamW([{"params": student.parameters()}, group], lr=2e-5)
    assert [g["lr"] for g in opt.param_groups] == [2e-5, 5e-4]
    with pytest.raises(ValueError, match="no trainable"):
        projector_param_group(nn.Module())
