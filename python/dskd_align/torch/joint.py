"""``tokenize_jointly=True``: each side tokenizes rendered prompt + response as one text.

Why: tokenized apart, a SentencePiece side starts the response with its dummy prefix
(``▁Natal|ia``), and a BPE side may split the prompt/response seam differently from
``apply_chat_template`` and from inference, where the model continues the prompt's ids. Tokenized
together, each side's ids are exactly ``tokenizer(prompt_text + response,
add_special_tokens=False)`` (BOS first for plain rows), which for templated rows is the start of
``apply_chat_template`` of the whole conversation.

Which tokens are the response: the first token that ends after the prompt's last byte, and every
token after it. A token that straddles the seam (starts in the prompt, ends in the response, as
``?4`` would for ``"2+2?" + "4"`` with no separator) is a response token (its label is kept, so
every response byte is supervised) but takes part in no pair and no chunk: it does not cover the
same text as any token of the other side's response.

Alignment: each side's response tokens, with offsets moved to the response text, go to
:func:`dskd_align.align_encodings` with the core's token bytes (one call per row, in Python:
slower than the default batch path, which aligns in Rust). The rules are ALIGNMENT.md's, so pairs
and chunks mean the same as in the default mode; only the tokens differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dskd_align import CoreTokenizer, align_encodings, load_core
from dskd_align.tokenizers import char_offsets
from dskd_align.torch.assemble import Responses, Tokenized
from dskd_align.torch.formats import Messages

__all__ = ["joint_tokenize", "split_at_seam"]


def split_at_seam(offsets: Sequence[tuple[int, int]], seam: int) -> int:
    """Index of the first response token: the first whose byte span ends after ``seam`` or starts
    at or after it (``len(offsets)`` when the response has no token)."""
    for k, (start, end) in enumerate(offsets):
        if end > seam or start >= seam:
            return k
    return len(offsets)


def _side(core: CoreTokenizer, prompt_text: str, text: str) -> tuple[list[int], dict[str, Any]]:
    """(prompt ids, response encoding for ``align_encodings``) of one row on one side."""
    full = prompt_text + text
    ids, byte_offsets, special = core.encode(full, False)
    seam = len(prompt_text.encode("utf-8"))
    k = split_at_seam(byte_offsets, seam)
    shift = len(prompt_text)
    offsets, mask = [], []
    for (start, end), (b0, _), sp in zip(
        char_offsets(full, byte_offsets[k:]), byte_offsets[k:], special[k:], strict=True
    ):
        offsets.append((max(start - shift, 0), max(end - shift, 0)))
        mask.append(int(sp or b0 < seam))  # a seam-straddling token pairs with nothing
    return ids[:k], {"ids": ids[k:], "offsets": offsets, "special_tokens_mask": mask}


def joint_tokenize(
    collator: Any, prompts: Sequence[str | Messages], templated: Sequence[bool], texts: list[str]
) -> Tokenized:
    """Prompt ids and aligned responses of every row, each side tokenized in one piece."""
    c = collator
    cores = {
        side: load_core(getattr(c, f"{side}_tokenizer"))
        if c.same_tokenizer
        else getattr(c.aligner, side)
        for side in ("teacher", "student")
    }
    prompt_ids: dict[str, list[list[int]]] = {"teacher": [], "student": []}
    encs: dict[str, list[dict[str, Any]]] = {"teacher": [], "student": []}
    for side, core in cores.items():
        if not isinstance(core, CoreTokenizer):
            raise TypeError(f"tokenize_jointly needs transformers fast tokenizers ({side} side)")
        r = c.renderers[side]
        for p, t, text in zip(prompts, templated, texts, strict=True):
            ids, enc = _side(core, r.text(p, t), text)
            prompt_ids[side].append(r.prefix(t) + ids)
            encs[side].append(enc)
    t_ids = [np.asarray(e["ids"], np.int64) for e in encs["teacher"]]
    s_ids = [np.asarray(e["ids"], np.int64) for e in encs["student"]]
    if c.same_tokenizer:
        resp = Responses.identity(t_ids)
    else:
        resp = Responses(t_ids, s_ids, [], [], [])
        for text, te, se in zip(texts, encs["teacher"], encs["student"], strict=True):
            al = align_encodings(
                text,
                te,
                se,
                teacher_token_bytes=cores["teacher"],
                student_token_bytes=cores["student"],
            )
            resp.pairs.append(al.pairs.reshape(-1, 2))
            resp.teacher_chunks.append(al.teacher_chunks)
            resp.student_chunks.append(al.student_chunks)
    return Tokenized(list(templated), prompt_ids["teacher"], prompt_ids["student"], resp)
