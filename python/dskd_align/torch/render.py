"""How each side renders a prompt, and which token ends its response.

**Both sides are rendered the same way** (``use_chat_template``, per row):

- ``None`` (default): a *plain* row (the prompt is a string) is plain text on both sides; a
  *conversational* row (the prompt is a message list) goes through each side's own chat template.
  A conversational row that meets a side without a chat template raises :class:`TemplateError`
  (what ``apply_chat_template`` itself does, and what TRL users meet): set the tokenizer's
  ``chat_template`` or pass ``use_chat_template=False``.
- ``True``: every row through both sides' templates (a plain prompt becomes one ``user``
  message); both tokenizers must have one (checked at construction).
- ``False``: every row as plain text on both sides (message contents joined by a blank line).

Why plain rows stay plain by default: a template on one side only (the old behaviour: Qwen's
system prompt for the teacher, plain text for a base student) gives the two models different
contexts for the same response, and the teacher's longer prompt truncates its response first:
at ``max_length`` 64, qwen2.5 -> llama2 coverage was 0.37 on Dolly and 0.04 on GSM8K, against
0.77 and 0.90 with both sides plain (BENCHMARKS.md, "Data path"). Plain rows are what a base
model (no template) reads, and a user who wants templates on plain rows says so (``True``),
which then needs them on both sides.

Templated prompts use ``apply_chat_template(..., add_generation_prompt=True, tokenize=False)``,
tokenized with ``add_special_tokens=False`` (templates write their own BOS). Plain prompts are
the text itself, preceded by the BOS id when the tokenizer adds one (only the BOS: a
post-processor that also appends EOS/SEP, like BERT's, must not end the prompt).

**Turn end.** A templated response ends with the token the side's template writes right after an
assistant message (:func:`turn_end_token_id`: ``<|im_end|>`` for ChatML/Qwen, ``<|eot_id|>`` for
Llama-3, ``<|end|>`` for Phi-3, ``<end_of_turn>`` for Gemma, ``</s>`` for Llama-2/Mistral), so a
chat student learns to stop where it will stop at inference; a plain response ends with the EOS.
The two sides' end tokens form the end pair (one pair and one chunk in every batch, and the pair
to give :class:`~dskd_align.torch.VocabMap` as ``special_pairs``). Found by rendering a
two-message conversation with a marker as the assistant's content and taking the first added
token after the marker, with only whitespace before it; a template that writes no such token (or
fails on the probe) falls back to the EOS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dskd_align.torch.formats import Messages

__all__ = ["PromptRenderer", "TemplateError", "is_conversational", "turn_end_token_id"]

_MARKER = "zq7MARKERq7z"


class TemplateError(ValueError):
    """A row cannot be rendered the same way on both sides (see the module notes)."""


def is_conversational(prompt: str | Messages) -> bool:
    return not isinstance(prompt, str)


def has_template(tok: Any) -> bool:
    return bool(getattr(tok, "chat_template", None))


def turn_end_token_id(tok: Any) -> int | None:
    """The id of the added token ``tok``'s chat template writes after an assistant message, or
    None (no template, no such token, or the template fails on a user/assistant probe)."""
    if not has_template(tok):
        return None
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = str(tok.apply_chat_template(msgs, tokenize=False))
    except Exception:  # noqa: BLE001 - any template failure means "no turn end known"
        return None
    k = text.rfind(_MARKER)
    if k < 0:
        return None
    tail = text[k + len(_MARKER) :]
    added = set(getattr(tok, "added_tokens_decoder", {}) or {})
    for i in tok(tail, add_special_tokens=False)["input_ids"]:
        if int(i) in added:
            return int(i)
        if tok.decode([i]).strip():
            return None  # text before any added token: the template ends turns with text
    return None


@dataclass
class PromptRenderer:
    """Renders and tokenizes prompts for one side. ``tokenizer``: a transformers fast tokenizer.
    Whether a row uses the template is the caller's choice (``templated``), made for both sides
    at once (:meth:`dskd_align.torch.DSKDCollator.templated`)."""

    tokenizer: Any
    policy: Callable[[str | Messages], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.has_template = has_template(tok)
        bos = getattr(tok, "bos_token_id", None)
        with_sp = tok("a", add_special_tokens=True)["input_ids"]
        self.bos: list[int] = [int(bos)] if bos is not None and with_sp[:1] == [bos] else []

    def text(self, prompt: str | Messages, templated: bool) -> str:
        """The prompt as this side's model sees it, before tokenization (BOS not included)."""
        if templated:
            if not self.has_template:
                raise TemplateError(
                    "this tokenizer has no chat template: set tokenizer.chat_template, or pass "
                    "use_chat_template=False to render both sides as plain text"
                )
            msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            return str(
                self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            )
        if isinstance(prompt, str):
            return prompt
        return "\n\n".join(m["content"] for m in prompt)

    def prefix(self, templated: bool) -> list[int]:
        """Ids put before the rendered text: the BOS for plain text (a template writes its own)."""
        return [] if templated else self.bos

    def ids(
        self, prompts: Sequence[str | Messages], templated: Sequence[bool] | None = None
    ) -> list[list[int]]:
        """Token ids of every prompt (one fast batch call). ``templated``: per prompt, whether to
        use the chat template; ``None`` asks ``policy`` (the collator's, for both sides)."""
        if templated is None:
            if self.policy is None:
                raise TypeError("PromptRenderer.ids: pass templated= (no policy is set)")
            templated = [self.policy(p) for p in prompts]
        texts = [self.text(p, t) for p, t in zip(prompts, templated, strict=True)]
        if not texts:
            return []
        enc = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [self.prefix(t) + list(e) for e, t in zip(enc, templated, strict=True)]
