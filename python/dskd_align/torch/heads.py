"""LM-head math shared by every loss: logits from hidden states, input checks, head lookup.

Choices recorded here:

- **Hidden states, not logits.** The losses take last hidden states ``[B, L, d]`` and apply the
  heads themselves, chunk by chunk (that is their memory bound). Passing the model's logits
  ``[B, L, V]`` is the usual mistake; ``check_hidden`` names the fix instead of letting a matmul
  fail with a bare shape error.
- **Head bias is supported.** Some heads have one (Phi-1/2's ``lm_head`` has a bias). Every loss
  takes ``student_lm_head_bias`` / ``teacher_lm_head_bias`` (``[V]`` or None) and adds it to the
  logits; the student's bias receives a gradient like the weight. DSKD's projector
  initialization (a least-squares fit of the weights on O) ignores the biases: the bias is a
  per-token offset the projected logits get from the head they are multiplied with anyway.
- Matmuls run in the head's dtype (no float32 copy of a ``[V, d]`` head); the logits are upcast
  to float32 (float64 stays float64) before any softmax or reduction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["HiddenStateError", "check_head", "check_hidden", "lm_head_of", "lm_logits"]


class HiddenStateError(ValueError):
    """Hidden states or heads of the wrong shape (logits given instead of hidden states, ...)."""


def lm_logits(h: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``h`` ``[n, d]`` @ ``weight`` ``[V, d]``.T (+ ``bias`` ``[V]``) -> ``[n, V]`` >= float32."""
    z = h.to(weight.dtype) @ weight.T  # [n, V] in the head's dtype
    z = z.to(torch.promote_types(z.dtype, torch.float32))
    if bias is not None:
        z = z + bias.to(z.dtype)
    return z


def check_head(weight: Tensor, bias: Tensor | None, side: str) -> None:
    """``weight`` must be an ``nn.Linear`` weight ``[V, d]``, ``bias`` None or ``[V]``."""
    if weight.dim() != 2:
        raise HiddenStateError(
            f"{side}_lm_head_weight must be the head's nn.Linear weight [V, d], got shape "
            f"{tuple(weight.shape)} (pass model.get_output_embeddings().weight)"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise HiddenStateError(
            f"{side}_lm_head_bias must be [V={weight.shape[0]}], got {tuple(bias.shape)}"
        )


def check_hidden(hidden: Tensor | None, weight: Tensor, side: str) -> None:
    """``hidden`` must be last hidden states ``[B, L, d]`` with ``d`` the head's width."""
    if hidden is None:
        raise HiddenStateError(
            f"{side}_hidden is None; this loss needs the {side}'s last hidden states [B, L, d]"
        )
    d = weight.shape[1]
    if hidden.dim() != 3 or hidden.shape[-1] != d:
        vocab_like = hidden.dim() == 3 and hidden.shape[-1] == weight.shape[0]
        what = "looks like logits [B, L, V]" if vocab_like else "does not match the head"
        raise HiddenStateError(
            f"{side}_hidden has shape {tuple(hidden.shape)} but the {side} head "
            f"{tuple(weight.shape)} needs last hidden states [B, L, {d}]; it {what}. Pass the "
            "last hidden states, e.g. model.model(...).last_hidden_state, or call the model with "
            "output_hidden_states=True and pass outputs.hidden_states[-1]"
        )


def lm_head_of(model: Any) -> tuple[Tensor, Tensor | None]:
    """``(weight [V, d], bias [V] or None)`` of a transformers model's output head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        raise HiddenStateError(
            f"{type(model).__name__} has no nn.Linear output head (get_output_embeddings()); "
            "pass lm_head_weight (and lm_head_bias) yourself"
        )
    return head.weight, head.bias
