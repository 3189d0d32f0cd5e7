"""Rows in, rendered prompts out; and the batch type the collators emit.

A row is ``{"prompt": str, "response": str}`` or ``{"messages": [{"role", "content"}, ...]}``
(the last ``assistant`` message is the response, the messages before it the prompt; anything
after it is ignored). Each side renders the prompt itself:

- with its chat template when it has one (``apply_chat_template(..., add_generation_prompt=True)``;
  a plain prompt becomes one ``user`` message), tokenized with ``add_special_tokens=False`` since
  templates write their own BOS;
- else as plain text: the prompt string, or the contents of the prompt messages joined by a blank
  line, preceded by the BOS token when the tokenizer adds one (only the BOS: a post-processor
  that also appends EOS/SEP, like BERT's, must not end the prompt).

No separator is inserted between prompt and response: the data decides (a SentencePiece side
still starts the response with its dummy-prefix ``▁``, as it does for any separately tokenized
text).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch

__all__ = ["DSKDBatch", "PromptRenderer", "split_row"]

Messages = list[dict[str, str]]


def split_row(row: Mapping[str, Any]) -> tuple[str | Messages, str]:
    """(prompt as text or messages, response text) of one row; ``ValueError`` names the fix."""
    if "messages" in row:
        msgs = list(row["messages"])
        last = max((k for k, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
        if last < 0:
            raise ValueError("row['messages'] has no assistant message to use as the response")
        return msgs[:last], str(msgs[last].get("content") or "")
    if "prompt" in row and "response" in row:
        return str(row["prompt"]), str(row["response"])
    raise ValueError(f"a row needs 'prompt' and 'response', or 'messages'; got keys {sorted(row)}")


@dataclass
class PromptRenderer:
    """Renders and tokenizes prompts for one side (see the module notes).

    ``tokenizer``: a transformers fast tokenizer. ``use_chat_template=False`` forces plain text.
    """

    tokenizer: Any
    use_chat_template: bool = True

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.templated = bool(self.use_chat_template and getattr(tok, "chat_template", None))
        bos = getattr(tok, "bos_token_id", None)
        with_sp = tok("a", add_special_tokens=True)["input_ids"]
        self.bos: list[int] = [int(bos)] if bos is not None and with_sp[:1] == [bos] else []

    def text(self, prompt: str | Messages) -> str:
        """The prompt as this side's model sees it, before tokenization."""
        if self.templated:
            msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            return str(
                self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            )
        if isinstance(prompt, str):
            return prompt
        return "\n\n".join(str(m.get("content") or "") for m in prompt)

    def ids(self, prompts: Sequence[str | Messages]) -> list[list[int]]:
        """Token ids of every prompt (one fast batch call)."""
        texts = [self.text(p) for p in prompts]
        if not texts:
            return []
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        bos = [] if self.templated else self.bos  # a template writes its own BOS
        return [bos + list(e) for e in enc]


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
        return DSKDBatch({k: v.to(device, non_blocking=non_blocking) for k, v in self.items()})

    def pin_memory(self) -> DSKDBatch:
        """Pinned copy (``DataLoader(pin_memory=True)`` calls this)."""
        return DSKDBatch({k: v.pin_memory() for k, v in self.items()})

    def side(self, name: str) -> dict[str, torch.Tensor]:
        """``{"input_ids", "attention_mask"}`` of ``name`` (``"teacher"``/``"student"``), ready
        for ``model(**batch.side(name))``."""
        return {
            "input_ids": getattr(self, f"{name}_input_ids"),
            "attention_mask": getattr(self, f"{name}_attention_mask"),
        }
