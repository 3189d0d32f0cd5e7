"""Row-wise divergences D(p || q) between two logit tensors (DSKD.md, "Divergences").

Every function takes ``(student_logits, teacher_logits, temperature=1.0)``, both ``[N, V]`` of any
floating dtype (bf16 included), and returns the per-row divergence ``[N]``. ``p`` is the teacher
side, ``q`` the student side: ``p = softmax(teacher_logits / T)``, ``q = softmax(student_logits /
T)``. The caller reduces (sum over rows, divide by the set size).

Numerics:
- Work happens in float32 (float64 stays float64): logits are upcast before ``log_softmax``, so
  bf16 inputs lose nothing beyond their own rounding.
- Everything is taken from ``log_softmax``; probabilities are ``exp`` of log-probabilities, never
  ``log`` of probabilities.
- ``0 * log 0 = 0``: vocabulary entries masked with ``-inf`` logits (on one side or both) contribute
  exactly 0 to the sum where their weight is 0, in the value and in the gradient. The log terms
  are masked *before* they are multiplied, because ``where``/``masked_fill`` after the product
  still lets ``0 * inf = nan`` into the backward pass.
- One-sided ``-inf``: where the weighting side puts mass on an entry the other side rules out
  (``-inf`` logit: reverse KL with a masked teacher entry, forward KL with a masked student
  entry), the true divergence is infinite and its gradient ``inf - inf = NaN``. Such a log
  probability counts as ``log(tiny)`` instead (the smallest normal float of the dtype: -87.3 in
  float32, -708.4 in float64), so the value is large but finite and the gradient finite and
  pointing the right way (mass moves off the ruled-out entry). Finite logits are never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "DIVERGENCES",
    "Divergence",
    "adaptive_kl",
    "forward_kl",
    "get_divergence",
    "js_divergence",
    "reverse_kl",
    "skewed_forward_kl",
    "skewed_reverse_kl",
    "total_variation",
]

Divergence = Callable[..., Tensor]

SKEW = 0.1  # lambda of the skewed KLs, as in DSKD.md and the paper's scripts
AKL_HEAD_MASS = 0.5  # AKL splits the sorted teacher distribution at this cumulative mass


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """``log_softmax(logits / T)`` over the last dim, in float32 (float64 kept). ``[N, V]``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype) / temperature, dim=-1)


def _check(student_logits: Tensor, teacher_logits: Tensor) -> None:
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(
            "student_logits and teacher_logits must both be [N, V] with equal shapes, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )


def _inputs(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Shape check shared by every divergence; student and teacher log-probabilities."""
    _check(student_logits, teacher_logits)
    return _log_probs(student_logits, temperature), _log_probs(teacher_logits, temperature)


def _weighted_log_ratio(w: Tensor, log_a: Tensor, log_b: Tensor) -> Tensor:
    """``sum_v w (log_a - log_b)``, terms of zero weight exactly 0 (value and gradient). ``[N]``.

    Masking both logs where ``w == 0`` removes ``-inf - -inf`` and ``0 * inf`` before they can
    appear, so neither the forward nor the backward pass sees a NaN; a ``-inf`` in ``log_b``
    where ``w > 0`` counts as ``log(tiny)`` (module notes).
    """
    zero = w == 0
    log_b = log_b.masked_fill(torch.isneginf(log_b), math.log(torch.finfo(log_b.dtype).tiny))
    return (w * (log_a.masked_fill(zero, 0.0) - log_b.masked_fill(zero, 0.0))).sum(-1)


def _log_mix(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """``log(weight_a * a + (1 - weight_a) * b)`` from log-probabilities, NaN-free. ``[N, V]``.

    ``logaddexp(-inf, -inf)`` is ``-inf`` forward but NaN backward, so entries that are ``-inf``
    on both sides are replaced by 0 before the call and set back to ``-inf`` after it.
    """
    both = torch.isneginf(log_a) & torch.isneginf(log_b)
    la = log_a.masked_fill(both, 0.0)
    lb = log_b.masked_fill(both, 0.0)
    if weight_a == 0.0:
        out = lb
    elif weight_a == 1.0:
        out = la
    else:
        out = torch.logaddexp(la + math.log(weight_a), lb + math.log1p(-weight_a))
    return out.masked_fill(both, float("-inf"))


def forward_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``KL(p || q) = sum p (log p - log q)``. Inputs ``[N, V]``; returns ``[N]`` float32."""
    lq, lp = _inputs(student_logits, teacher_logits, temperature)
    return _weighted_log_ratio(lp.exp(), lp, lq)


def reverse_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``KL(q || p) = sum q (log q - log p)``. Inputs ``[N, V]``; returns ``[N]`` float32."""
    lq, lp = _inputs(student_logits, teacher_logits, temperature)
    return _weighted_log_ratio(lq.exp(), lq, lp)


def js_divergence(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0
) -> Tensor:
    """Jensen-Shannon ``(KL(p || m) + KL(q || m)) / 2``, ``m = (p + q) / 2``. ``[N, V] -> [N]``."""
    lq, lp = _inputs(student_logits, teacher_logits, temperature)
    lm = _log_mix(lp, lq, 0.5)
    return 0.5 * (_weighted_log_ratio(lp.exp(), lp, lm) + _weighted_log_ratio(lq.exp(), lq, lm))


def _skewed_inputs(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float, skew: float
) -> tuple[Tensor, Tensor]:
    """``_inputs`` plus the skew check shared by the skewed divergences."""
    _check(student_logits, teacher_logits)  # shapes first, as in every divergence
    if not 0.0 <= skew <= 1.0:
        raise ValueError(f"skew must be in [0, 1], got {skew}")
    return _inputs(student_logits, teacher_logits, temperature)


def skewed_forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, skew: float = SKEW
) -> Tensor:
    """``sum p (log p - log(l p + (1-l) q))``, ``l = skew``. ``[N, V] -> [N]``.

    ``skew = 0`` is the forward KL; ``skew = 1`` is identically 0. For ``skew > 0`` the mixture is
    positive wherever ``p`` is, so the value is finite even when ``q`` has ``-inf`` logits.
    """
    lq, lp = _skewed_inputs(student_logits, teacher_logits, temperature, skew)
    return _weighted_log_ratio(lp.exp(), lp, _log_mix(lp, lq, skew))


def skewed_reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0, skew: float = SKEW
) -> Tensor:
    """``sum q (log q - log((1-l) p + l q))``, ``l = skew``. ``[N, V] -> [N]``.

    ``skew = 0`` is the reverse KL; ``skew = 1`` is identically 0.
    """
    lq, lp = _skewed_inputs(student_logits, teacher_logits, temperature, skew)
    return _weighted_log_ratio(lq.exp(), lq, _log_mix(lq, lp, skew))


def adaptive_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    head_mass: float = AKL_HEAD_MASS,
) -> Tensor:
    """Adaptive KL (Wu et al., 2024): ``w_head * FKL + w_tail * RKL``. ``[N, V] -> [N]``.

    The teacher probabilities are sorted ascending; the tail is the low-probability tokens whose
    cumulative mass stays below ``head_mass``, the head is the rest. ``g_head`` / ``g_tail`` are
    the summed ``|p - q|`` gaps on each part, and ``w_head = g_head / (g_head + g_tail)``. The
    weights are detached (they only steer between FKL and RKL). Where ``p == q`` both gaps are 0
    and both KLs are 0; the weights are then 1/2 each, so the value is 0 without a 0/0.
    """
    lq, lp = _inputs(student_logits, teacher_logits, temperature)
    p, q = lp.exp(), lq.exp()
    with torch.no_grad():
        p_sorted, order = p.sort(dim=-1)  # [N, V] ascending
        gap = (p_sorted - q.gather(-1, order)).abs()  # [N, V]
        tail = p_sorted.cumsum(-1) < head_mass  # [N, V] bool
        g_tail = (gap * tail).sum(-1)  # [N]
        g_head = (gap * ~tail).sum(-1)  # [N]
        total = g_head + g_tail
        w_head = torch.where(total > 0, g_head / total.clamp_min(1e-30), 0.5)
        del p_sorted, order, gap, tail
    fkl = _weighted_log_ratio(p, lp, lq)
    rkl = _weighted_log_ratio(q, lq, lp)
    return w_head * fkl + (1.0 - w_head) * rkl


def total_variation(
    student_logits: Tensor, teacher_logits: Tensor, temperature: float = 1.0
) -> Tensor:
    """``sum |p - q| / 2``, in [0, 1]. ``[N, V] -> [N]``."""
    lq, lp = _inputs(student_logits, teacher_logits, temperature)
    return 0.5 * (lp.exp() - lq.exp()).abs().sum(-1)


DIVERGENCES: dict[str, Divergence] = {
    "forward_kl": forward_kl,
    "reverse_kl": reverse_kl,
    "js": js_divergence,
    "skewed_forward_kl": skewed_forward_kl,
    "skewed_reverse_kl": skewed_reverse_kl,
    "adaptive_kl": adaptive_kl,
    "total_variation": total_variation,
}

# Names used by the paper's scripts (``--kd-objective``) and short forms.
_ALIASES = {
    "fkl": "forward_kl",
    "kl": "forward_kl",
    "rkl": "reverse_kl",
    "js_divergence": "js",
    "jsd": "js",
    "sfkl": "skewed_forward_kl",
    "srkl": "skewed_reverse_kl",
    "akl": "adaptive_kl",
    "tv": "total_variation",
    "tvd": "total_variation",
}


def get_divergence(name: str) -> Divergence:
    """The divergence registered as ``name`` (or one of its aliases); ``ValueError`` otherwise."""
    key = _ALIASES.get(name, name)
    if key not in DIVERGENCES:
        known = sorted(DIVERGENCES) + sorted(_ALIASES)
        raise ValueError(f"unknown divergence {name!r}; choose one of {known}")
    return DIVERGENCES[key]
