"""The teacher's states for ``byte_sets``' branch outcome (``branch=True``), in one forward.

Why: at a student boundary ``a`` strictly inside teacher token ``k`` (span ``[c, d)``, half of the
demo's cross targets), the teacher's belief about the text after ``a`` has two parts: the tokens
that run past ``a`` (extensions of the consumed bytes ``P = text[c:a]``), and the token ``P``
itself, after which the teacher starts a new token at ``a``. Without the second part the target
is conditioned on the teacher's tokenization of text the student has not read yet ("the teacher
token goes on"): it drops ``p(P)`` (9.0 % of the mass on average there, over 10 % at one in five
such targets on the demo) and says the text continues inside a teacher token more surely than the
teacher believes. The second part needs one more teacher step per such target: the teacher reads
the gold tokens before ``k``, then ``P`` in ``k``'s place. ``set_kd.py`` then treats ``a`` like a
shared boundary with ``P`` as the token before: ``p(P) x p_branch(w)`` on the tight sets.

How: every branch token is appended after its row's sequence, at ``k``'s position id, with a 4D
attention mask that lets it see the gold keys before ``k`` and itself, and hides it from every
other query; the gold queries see what a plain causal forward shows them. So one forward returns
the gold states ``[B, L, d]`` (the same as without branches) followed by ``M`` branch states per
row (``M`` = the most branch targets of a row; ``set_branch_slot`` gives the place). Cost: ``M``
more positions per row (about half the student's tokens at most) and an ``[B, 1, L+M, L+M]``
mask. Needs an attention implementation that takes a custom 4D mask (HF "eager" and "sdpa"; not
flash-attention, which is refused with a clear error).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["branch_part", "branch_inputs", "teacher_hidden_with_branches"]


def branch_part(loss_module: nn.Module) -> Any:
    """The ``byte_sets`` KD part of ``loss_module`` that reads branch states, else None."""
    from dskd_align.torch.set_kd import SetKD

    return next((m for m in loss_module.modules() if isinstance(m, SetKD) and m.branch), None)


def branch_inputs(batch: Mapping[str, Tensor], fields: Mapping[str, Tensor], dtype: torch.dtype
                  ) -> dict[str, Tensor] | None:  # fmt: skip
    """``input_ids``/``position_ids`` ``[B, L+M]`` and the additive 4D ``attention_mask``
    ``[B, 1, L+M, L+M]`` (``dtype``) of the teacher's forward with branches; None when the batch
    has no branch target. ``batch``: the teacher side (``teacher_input_ids``,
    ``teacher_attention_mask``); ``fields``: the set targets (``set_targets.py``)."""
    ids, att = batch["teacher_input_ids"], batch["teacher_attention_mask"]
    br, slot = fields["set_branch_token"], fields["set_branch_slot"]
    sel = (br >= 0).nonzero()[:, 0]
    if sel.numel() == 0:
        return None
    n_b, n_l = ids.shape
    m = int(slot[sel].max()) + 1  # a host sync: the forward's width depends on the data
    dev = ids.device
    rows, col = fields["byte_batch"][sel], n_l + slot[sel]
    at = fields["byte_teacher_pos"][sel] + 1  # k's position: the branch token takes it
    x = torch.cat([ids, ids.new_zeros(n_b, m)], 1)
    x[rows, col] = br[sel]
    pos = torch.arange(n_l + m, device=dev).repeat(n_b, 1)  # gold: a plain forward's ids
    pos[:, n_l:] = 0
    pos[rows, col] = at
    key_ok = att.bool()
    ar = torch.arange(n_l, device=dev)
    allowed = torch.zeros(n_b, n_l + m, n_l + m, dtype=torch.bool, device=dev)
    allowed[:, :n_l, :n_l] = (ar[None, :] <= ar[:, None])[None] & key_ok[:, None, :]
    allowed[rows, col, :n_l] = (ar[None, :] < at[:, None]) & key_ok[rows]
    # Every query sees itself: no fully masked row (padding, unused branch slots), whose NaN
    # would reach other positions through 0 x NaN in the attention product.
    allowed |= torch.eye(n_l + m, dtype=torch.bool, device=dev)[None]
    mask = torch.zeros(allowed.shape, dtype=dtype, device=dev)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return {"input_ids": x, "position_ids": pos, "attention_mask": mask[:, None]}


def _dtype(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


@torch.no_grad()
def teacher_hidden_with_branches(teacher: nn.Module, batch: Mapping[str, Tensor],
                                 fields: Mapping[str, Tensor] | None = None) -> Tensor:  # fmt: skip
    """The teacher's last hidden states ``[B, L+M, d]``: the gold positions, then each row's
    branch states (module notes). ``fields``: the set targets when ``batch`` lacks them (the
    ``byte_sets`` part's ``targets(batch, device)``)."""
    fields = batch if fields is None else fields
    impl = str(getattr(getattr(teacher, "config", None), "_attn_implementation", "") or "")
    if impl.startswith("flash"):
        raise ValueError(
            f"byte_sets(branch=True) needs a teacher attention that takes a 4D mask; this teacher "
            f"uses {impl!r}: load it with attn_implementation='sdpa' (or 'eager')"
        )
    inputs = branch_inputs(batch, fields, _dtype(teacher))
    if inputs is None:
        inputs = {
            "input_ids": batch["teacher_input_ids"],
            "attention_mask": batch["teacher_attention_mask"],
        }
    base = getattr(teacher, "base_model", teacher)
    if base is not teacher:
        return base(**inputs, use_cache=False).last_hidden_state
    out = teacher(**inputs, use_cache=False, output_hidden_states=True, return_dict=True)
    return out.hidden_states[-1]
