"""The two DSKD projectors and their ideal initialization (DSKD.md, "Projectors").

Layout convention -- read this before calling anything here:

- Functions whose head arguments are named ``W_t`` / ``W_s`` take the heads in the paper's
  *math* layout ``[d, V]`` (logits = ``h @ W``). That is the **transpose** of an ``nn.Linear``
  ``lm_head.weight``, which is ``[V, d]``: pass ``lm_head.weight.T``.
- Arguments named ``*_lm_head_weight`` take the ``nn.Linear`` layout ``[V, d]`` unchanged.

O, the overlapping vocabulary, is given as two equal-length id tensors ``overlap_t`` / ``overlap_s``
(``[|O|]`` int64): token ``i`` of O is teacher id ``overlap_t[i]`` and student id ``overlap_s[i]``.
With one shared vocabulary O is the whole vocabulary (``torch.arange(V)`` on both sides).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "PROJECTOR_LR",
    "StudentToTeacherProjector",
    "init_t2s_projector",
    "projector_param_group",
    "t2s_projector_from_lm_heads",
]

PROJECTOR_LR = 5e-4  # the paper's scripts train the projector with its own learning rate


def _overlap_columns(W: Tensor, ids: Tensor, name: str) -> Tensor:
    """Columns ``W[:, ids]`` of a ``[d, V]`` head as ``[d, |O|]`` float32 (float64 kept)."""
    if W.dim() != 2 or ids.dim() != 1:
        raise ValueError(f"{name}: expected a [d, V] head and [|O|] ids")
    if ids.numel() == 0:
        raise ValueError(f"{name}: the overlap O is empty; the projector cannot be initialized")
    if int(ids.min()) < 0 or int(ids.max()) >= W.shape[1]:
        raise ValueError(
            f"{name}: overlap ids must lie in [0, V={W.shape[1]}) of a [d, V] head; "
            "pass lm_head.weight.T (the nn.Linear weight is [V, d])"
        )
    # Gather in the head's dtype (no float32 copy of the whole head), then upcast [d, |O|].
    cols = W.detach()[:, ids.to(W.device)]
    return cols.to(torch.promote_types(cols.dtype, torch.float32))


def init_t2s_projector(W_t: Tensor, W_s: Tensor, overlap_t: Tensor, overlap_s: Tensor) -> nn.Linear:
    """``nn.Linear(d_t, d_s, bias=False)`` initialized to ``W^{t->s} = W^t_O pinv(W^s_O)``.

    ``W_t`` is ``[d_t, V_t]`` and ``W_s`` is ``[d_s, V_s]`` (math layout: ``lm_head.weight.T``).
    ``W^{t->s}`` is ``[d_t, d_s]`` and minimizes ``||X W^s_O - W^t_O||_F``, so
    ``(h^t W^{t->s}) W^s_O`` reproduces the teacher logits on O as well as least squares allows.
    The ``nn.Linear`` weight is ``[d_s, d_t]``, i.e. ``W^{t->s}.T``, so
    ``linear(h^t) = h^t W^{t->s}``.
    Computed in float32; the returned layer is float32 on ``W_t``'s device.
    """
    if overlap_t.shape != overlap_s.shape:
        raise ValueError("overlap_t and overlap_s must have the same length |O|")
    # float32 as DSKD.md asks, even for float64 heads: the layer is float32 either way.
    Wt_O = _overlap_columns(W_t, overlap_t, "W_t").float()  # [d_t, |O|]
    Ws_O = _overlap_columns(W_s, overlap_s, "W_s").to(Wt_O.device, torch.float32)  # [d_s, |O|]
    W_ts = Wt_O @ torch.linalg.pinv(Ws_O)  # [d_t, |O|] @ [|O|, d_s] -> [d_t, d_s]
    layer = nn.Linear(W_ts.shape[0], W_ts.shape[1], bias=False, device=W_ts.device)
    with torch.no_grad():
        layer.weight.copy_(W_ts.T)  # nn.Linear stores [out, in] = [d_s, d_t]
    return layer


def t2s_projector_from_lm_heads(
    teacher_lm_head_weight: Tensor, student_lm_head_weight: Tensor, vocab: Any
) -> nn.Linear:
    """``init_t2s_projector`` from ``nn.Linear`` head weights ``[V, d]`` and a VocabMap-like
    object (attributes ``overlap_teacher_ids``, ``overlap_student_ids``)."""
    return init_t2s_projector(
        teacher_lm_head_weight.T,
        student_lm_head_weight.T,
        vocab.overlap_teacher_ids,
        vocab.overlap_student_ids,
    )


class StudentToTeacherProjector(nn.Module):
    """``W^{s->t} = W^s_O pinv(W^t_O)`` ``[d_s, d_t]``, rebuilt from the current student head.

    Not a parameter: the paper recomputes it from the *detached* student head at every step, so it
    follows the student's head without being trained. ``pinv(W^t_O)`` ``[|O|, d_t]`` float32 is
    computed once here (the teacher is frozen) and kept as a buffer; note its size, |O| x d_t x 4
    bytes. With ``frozen_student_head=True`` the product itself is computed once and cached.
    """

    pinv_teacher: Tensor
    overlap_s: Tensor

    def __init__(
        self,
        W_t: Tensor,
        overlap_t: Tensor,
        overlap_s: Tensor,
        *,
        frozen_student_head: bool = False,
    ) -> None:
        """``W_t`` ``[d_t, V_t]`` (math layout, ``lm_head.weight.T``); ids ``[|O|]`` int64."""
        super().__init__()
        if overlap_t.shape != overlap_s.shape:
            raise ValueError("overlap_t and overlap_s must have the same length |O|")
        Wt_O = _overlap_columns(W_t, overlap_t, "W_t")  # [d_t, |O|]
        self.register_buffer("pinv_teacher", torch.linalg.pinv(Wt_O), persistent=False)
        self.register_buffer("overlap_s", overlap_s.to(torch.long).clone(), persistent=False)
        self.frozen_student_head = frozen_student_head
        self._cached: Tensor | None = None

    @classmethod
    def from_lm_heads(
        cls, teacher_lm_head_weight: Tensor, vocab: Any, *, frozen_student_head: bool = False
    ) -> StudentToTeacherProjector:
        """From the teacher's ``nn.Linear`` head weight ``[V_t, d_t]`` and a VocabMap-like."""
        return cls(
            teacher_lm_head_weight.T,
            vocab.overlap_teacher_ids,
            vocab.overlap_student_ids,
            frozen_student_head=frozen_student_head,
        )

    def matrix(self, W_s: Tensor) -> Tensor:
        """``W^{s->t}`` ``[d_s, d_t]`` for the student head ``W_s`` ``[d_s, V_s]`` (math layout).

        float32 (float64 after ``.double()``). Always detached: no gradient reaches the student
        head through it."""
        if self.frozen_student_head and self._cached is not None:
            return self._cached
        Ws_O = _overlap_columns(W_s, self.overlap_s, "W_s")  # [d_s, |O|]
        pinv = self.pinv_teacher.to(Ws_O.device)
        dtype = torch.promote_types(Ws_O.dtype, pinv.dtype)  # float64 only if asked for
        W_st = Ws_O.to(dtype) @ pinv.to(dtype)  # [d_s, |O|] @ [|O|, d_t] -> [d_s, d_t]
        if self.frozen_student_head:
            self._cached = W_st
        return W_st

    def matrix_from_lm_head(self, student_lm_head_weight: Tensor) -> Tensor:
        """``matrix`` for an ``nn.Linear`` student head weight ``[V_s, d_s]``."""
        return self.matrix(student_lm_head_weight.T)

    def forward(self, h_s: Tensor, student_lm_head_weight: Tensor) -> Tensor:
        """``h_s`` ``[..., d_s]`` -> ``h_s W^{s->t}`` ``[..., d_t]`` float32 (grad reaches h_s)."""
        return h_s.float() @ self.matrix_from_lm_head(student_lm_head_weight)


def projector_param_group(module: nn.Module, lr: float = PROJECTOR_LR) -> dict[str, Any]:
    """Optimizer param group for the trainable projector(s) in ``module``, with their own ``lr``.

    ``{"params": [...], "lr": lr}``; append it to the model's groups, e.g.
    ``AdamW([{"params": student.parameters()}, projector_param_group(loss)], lr=2e-5)``.
    Only parameters with ``requires_grad`` are included; ``W^{s->t}`` is a buffer, never trained.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise ValueError("module has no trainable parameters (is the student-space path off?)")
    return {"params": params, "lr": lr}
