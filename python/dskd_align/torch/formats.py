"""Dataset row formats: which rows the collators read, and their (prompt, response) split.

Supported (TRL's dataset formats, plus this library's own):

- ``{"prompt": str, "completion": str}``: TRL standard prompt-completion;
- ``{"prompt": [messages], "completion": [messages]}``: TRL conversational prompt-completion; the
  completion holds exactly one ``assistant`` message, its content is the response;
- ``{"messages": [messages]}``: TRL conversational; the last ``assistant`` message is the
  response, the messages before it the prompt (anything after it is ignored);
- ``{"prompt": str | [messages], "response": str}``: this library's rows (a message-list prompt
  makes the row conversational).

A message is ``{"role": str, "content": str}``. Anything else gets a :class:`RowFormatError`
naming the supported formats: ShareGPT ``conversations`` with ``from``/``value`` (the message
names :func:`sharegpt_to_messages`, the fix), TRL's ``text`` rows (language modeling: no
response to distill), a ``None`` or non-string field (``"response": None`` used to train on the
string ``"None"``), and a row with no columns at all (``transformers.Trainer`` strips unknown
columns unless ``remove_unused_columns=False``).

Prompt-only rows (on-policy: the response is generated) are ``{"prompt": str | [messages]}``,
``{"messages": [...]}`` (a trailing assistant message, the gold response, is dropped) or a bare
prompt string.

A row is *conversational* when its prompt is a message list; rendering (``render.py``) treats the
two kinds differently, so the split keeps the prompt's type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SUPPORTED_FORMATS",
    "Messages",
    "RowFormatError",
    "prompt_only",
    "sharegpt_to_messages",
    "split_row",
]

Messages = list[dict[str, str]]

SUPPORTED_FORMATS = (
    "{'prompt': str, 'completion': str} (TRL prompt-completion), "
    "{'prompt': [messages], 'completion': [messages]} (TRL conversational prompt-completion), "
    "{'messages': [messages]} (TRL conversational), "
    "{'prompt': str | [messages], 'response': str}; "
    "a message is {'role': str, 'content': str}"
)

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
_SHAREGPT_ROLES |= {"system": "system", "tool": "tool", "function_call": "assistant"}


class RowFormatError(ValueError):
    """A dataset row the collators cannot read; the message names the supported formats."""


def _fail(problem: str) -> RowFormatError:
    return RowFormatError(f"{problem}. Supported row formats: {SUPPORTED_FORMATS}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        kind = "None" if value is None else type(value).__name__
        raise _fail(f"{where} is {kind}, not a str (fill or drop such rows before training)")
    return value


def _messages(value: Any, where: str) -> Messages:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(f"{where} must be a list of messages, got {type(value).__name__}")
    out: Messages = []
    for k, m in enumerate(value):
        if not isinstance(m, Mapping):
            raise _fail(f"{where}[{k}] is a {type(m).__name__}, not a message dict")
        if "from" in m and "value" in m and "role" not in m:
            raise _sharegpt(f"{where}[{k}] has ShareGPT keys 'from'/'value'")
        role = _text(m.get("role"), f"{where}[{k}]['role']")
        content = m.get("content")
        if isinstance(content, list):
            raise _fail(
                f"{where}[{k}]['content'] is a list of parts (multimodal); only text content is "
                "supported: join the text parts into one string"
            )
        out.append({"role": role, "content": _text(content, f"{where}[{k}]['content']")})
    return out


def _prompt(value: Any, where: str) -> str | Messages:
    """A prompt: a str, or a list of messages (a conversational row)."""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return _messages(value, where)
    kind = "None" if value is None else type(value).__name__
    raise _fail(f"{where} is {kind}, not a str or a list of messages")


def _sharegpt(problem: str) -> RowFormatError:
    return _fail(
        f"{problem}: ShareGPT rows are not read directly; convert them with "
        "dskd_align.torch.formats.sharegpt_to_messages (e.g. "
        "dataset.map(sharegpt_to_messages, remove_columns=['conversations']))"
    )


def sharegpt_to_messages(row: Mapping[str, Any]) -> dict[str, Messages]:
    """``{"conversations": [{"from", "value"}, ...]}`` -> ``{"messages": [{"role", "content"}]}``
    (``human`` -> ``user``, ``gpt`` -> ``assistant``; ``system``/``tool`` kept)."""
    conv = row.get("conversations")
    if not isinstance(conv, Sequence) or isinstance(conv, str):
        raise RowFormatError("sharegpt_to_messages needs a row with a 'conversations' list")
    out = []
    for k, m in enumerate(conv):
        who = m.get("from") if isinstance(m, Mapping) else None
        if who not in _SHAREGPT_ROLES:
            raise RowFormatError(
                f"conversations[{k}]['from'] is {who!r}; known: {sorted(_SHAREGPT_ROLES)}"
            )
        out.append({"role": _SHAREGPT_ROLES[who], "content": _text(m.get("value"), "value")})
    return {"messages": out}


def _check_mapping(row: Any) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise _fail(f"a row must be a dict, got {type(row).__name__}")
    if not row:
        raise _fail(
            "the row has no columns (transformers.Trainer drops the columns its model does not "
            "take: pass remove_unused_columns=False)"
        )
    if "conversations" in row:
        raise _sharegpt("the row has a 'conversations' column")
    return row


def split_row(row: Mapping[str, Any]) -> tuple[str | Messages, str]:
    """(prompt as text or messages, response text) of one row (formats in the module notes)."""
    row = _check_mapping(row)
    if "messages" in row:
        msgs = _messages(row["messages"], "row['messages']")
        last = max((k for k, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
        if last < 0:
            raise _fail("row['messages'] has no assistant message to use as the response")
        return msgs[:last], msgs[last]["content"]
    if "prompt" in row and "completion" in row:
        prompt = _prompt(row["prompt"], "row['prompt']")
        if isinstance(prompt, str):
            return prompt, _text(row["completion"], "row['completion']")
        completion = _messages(row["completion"], "row['completion']")
        if [m["role"] for m in completion] != ["assistant"]:
            raise _fail(
                "row['completion'] must hold exactly one assistant message, got roles "
                f"{[m['role'] for m in completion]}"
            )
        return prompt, completion[0]["content"]
    if "prompt" in row and "response" in row:
        return _prompt(row["prompt"], "row['prompt']"), _text(row["response"], "row['response']")
    if "text" in row:
        raise _fail(
            "the row has only 'text' (TRL language modeling): there is no response to distill; "
            "split it into prompt and completion"
        )
    raise _fail(f"unknown row format, got keys {sorted(row)}")


def prompt_only(row: Any) -> str | Messages:
    """The prompt of an on-policy row: a str, ``{"prompt": str | [messages]}``, or
    ``{"messages": [...]}`` without a trailing assistant message."""
    if isinstance(row, str):
        return row
    row = _check_mapping(row)
    if "messages" in row:
        msgs = _messages(row["messages"], "row['messages']")
        return msgs[:-1] if msgs and msgs[-1]["role"] == "assistant" else msgs
    if "prompt" in row:
        return _prompt(row["prompt"], "row['prompt']")
    raise _fail(f"an on-policy row needs 'prompt' or 'messages', got keys {sorted(row)}")
