"""The batch type the collators emit (:class:`DSKDBatch`).

Row formats live in ``formats.py`` (:func:`split_row`), prompt rendering in ``render.py``
(:class:`PromptRenderer`); both names are re-exported here for older imports.

``DSKDBatch`` is a dataclass *and* a read-only ``Mapping`` of its fields, so
``transformers.Trainer``/``accelerate`` move it with ``type(batch)({k: v.to(device)})`` and get a
``DSKDBatch`` back; its constructor takes a mapping or keyword fields, exactly the fields (a
missing or unknown one is a ``TypeError`` naming it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from dskd_align.torch.formats import Messages, split_row
from dskd_align.torch.render import PromptRenderer

__all__ = ["DSKDBatch", "Messages", "PromptRenderer", "split_row"]


@dataclass(init=False, eq=False)
class DSKDBatch(Mapping[str, torch.Tensor]):
    """One training batch for dual-space KD; also a read-only mapping of its field names.

    Build it as ``DSKDBatch(**fields)`` or ``DSKDBatch(mapping)`` (what ``transformers.Trainer``
    and ``accelerate`` do when they move a batch: ``type(batch)({k: v, ...})``).

    Per side (``teacher_*``/``student_*``), ``torch.long`` ``[B, L_side]``:
    ``*_input_ids``; ``*_attention_mask`` (1 = token, 0 = padding); ``*_labels`` (the token id on
    response tokens and their end token, ``-100`` on prompt and padding; unshifted, HF
    convention: the logits at ``p`` predict ``labels[p + 1]``); ``*_chunk_ids``: at *token*
    positions (same as ``*_labels``), the batch-global id ``0..C-1`` of the alignment chunk
    (ALIGNMENT.md rule 5) the response token belongs to, for chunks that survived truncation whole
    on both sides and whose every token has a prediction position; ``-1`` elsewhere (prompt,
    padding, cut chunks, special tokens other than the end-token pair, which is its own 1x1
    chunk). Ids are contiguous, increasing with (row, position), and ``C <= B * L_s`` (every chunk
    holds at least one student token).

    Exact pairs as *prediction positions*, ``torch.long`` ``[A]``: ``align_batch`` (row),
    ``align_teacher_pos``/``align_student_pos`` (index in the padded sequence of the aligned
    token minus 1, so ``teacher_logits[align_batch, align_teacher_pos]`` predicts the same text as
    ``student_logits[align_batch, align_student_pos]``). Only pairs inside both responses (end
    pair included) that survived truncation and have a position before them.

    ``supervised_tokens [B]`` long: student label tokens of the row that have a prediction
    position (the ones a shifted CE sees). ``coverage [B]`` float32: emitted pairs /
    ``supervised_tokens``, ``0.0`` for a row with nothing supervised (a prompt that filled
    ``max_length``, an empty response without end token); count those with :attr:`empty_rows`.
    """

    teacher_input_ids: torch.Tensor
    teacher_attention_mask: torch.Tensor
    teacher_labels: torch.Tensor
    teacher_chunk_ids: torch.Tensor
    student_input_ids: torch.Tensor
    student_attention_mask: torch.Tensor
    student_labels: torch.Tensor
    student_chunk_ids: torch.Tensor
    align_batch: torch.Tensor
    align_teacher_pos: torch.Tensor
    align_student_pos: torch.Tensor
    supervised_tokens: torch.Tensor
    coverage: torch.Tensor

    def __init__(self, mapping: Mapping[str, torch.Tensor] | None = None, /, **kwargs: Any):
        values = dict(mapping) if mapping is not None else {}
        clash = values.keys() & kwargs.keys()
        if clash:
            raise TypeError(f"DSKDBatch: {sorted(clash)} given both in the mapping and by name")
        values.update(kwargs)
        names = self._names()
        missing = [n for n in names if n not in values]
        unknown = sorted(values.keys() - set(names))
        if missing or unknown:
            raise TypeError(
                f"DSKDBatch needs exactly the fields {list(names)}; missing {missing}, "
                f"unknown {unknown}"
            )
        for n in names:
            setattr(self, n, values[n])

    @property
    def batch_size(self) -> int:
        return int(self.student_input_ids.shape[0])

    @property
    def num_pairs(self) -> int:
        return int(self.align_batch.numel())

    @property
    def empty_rows(self) -> int:
        """Rows with nothing to supervise (host sync: call it for logging, not per step)."""
        return int((self.supervised_tokens == 0).sum())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self.items())
        return f"DSKDBatch({shapes})"

    @classmethod
    def _names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DSKDBatch:
        """A copy with every tensor on ``device``."""
        # type(self): a subclass with more fields (ByteKDBatch) keeps them and its type.
        return type(self)({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def pin_memory(self) -> DSKDBatch:
        """Pinned copy (``DataLoader(pin_memory=True)`` calls this)."""
        return type(self)({k: v.pin_memory() for k, v in self.items()})

    def side(self, name: str) -> dict[str, torch.Tensor]:
        """``{"input_ids", "attention_mask"}`` of ``name`` (``"teacher"``/``"student"``), ready
        for ``model(**batch.side(name))``."""
        return {
            "input_ids": getattr(self, f"{name}_input_ids"),
            "attention_mask": getattr(self, f"{name}_attention_mask"),
        }
