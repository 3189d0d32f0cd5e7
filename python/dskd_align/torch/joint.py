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
every response byte is supervised) but is left out of the alignment, so it takes part in no pair
and no chunk: it stands for prompt text too, which the response text being aligned lacks (two
straddlers would even meet as special tokens at offset 0 if marked special instead).

Alignment: each side's response tokens, with offsets moved to the response text, go to
:func:`dskd_align.align_encodings` with the core's token bytes (one call per row, in Python:
slower than the default batch path, which aligns in Rust). The rules are ALIGNMENT.md's, so pairs
and chunks mean the same as in the default mode; only the tokens differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dskd_align import Alignment, CoreTokenizer, align_encodings, load_core
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


def _side(
    core: CoreTokenizer, prompt_text: str, text: str
) -> tuple[list[int], list[int], dict[str, Any], int]:
    """(prompt ids, response ids, the response's encoding for ``align_encodings`` without a
    seam-straddling token, 1 if there is one else 0) of one row on one side."""
    full = prompt_text + text
    ids, byte_offsets, special = core.encode(full, False)
    seam = len(prompt_text.encode("utf-8"))
    k = split_at_seam(byte_offsets, seam)
    cut = int(k < len(ids) and byte_offsets[k][0] < seam)  # the straddler is left out
    shift = len(prompt_text)
    offsets = [(a - shift, b - shift) for a, b in char_offsets(full, byte_offsets[k + cut :])]
    enc = {"ids": ids[k + cut :], "offsets": offsets, "special_tokens_mask": special[k + cut :]}
    return ids[:k], ids[k:], enc, cut


def _same_text_chunks(al: Alignment, text: str) -> tuple[np.ndarray, np.ndarray]:
    """The alignment's chunk ids, ``-1`` for chunks whose two sides do not cover the same text
    (whitespace at the edges aside). The chunk walk assumes both sides cover the text from its
    start; with a straddler left out, the other side's first tokens cover text this side has no
    token for, and the first chunk would pair different texts."""
    raw = text.encode("utf-8")
    extent: dict[int, list[tuple[int, int]]] = {}
    for k, (chunks, spans) in enumerate(
        ((al.teacher_chunks, al.teacher_spans), (al.student_chunks, al.student_spans))
    ):
        for c, (a, b) in zip(chunks.tolist(), spans.tolist(), strict=True):
            if c < 0:
                continue
            ext = extent.setdefault(c, [(1 << 62, -1), (1 << 62, -1)])
            lo, hi = ext[k]
            ext[k] = (min(lo, a), max(hi, b))
    bad = [
        c for c, ((ta, tb), (sa, sb)) in extent.items() if raw[ta:tb].strip() != raw[sa:sb].strip()
    ]
    t_ch, s_ch = al.teacher_chunks.copy(), al.student_chunks.copy()
    t_ch[np.isin(t_ch, bad)] = -1
    s_ch[np.isin(s_ch, bad)] = -1
    return t_ch, s_ch


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
    resp_ids: dict[str, list[np.ndarray]] = {"teacher": [], "student": []}
    encs: dict[str, list[dict[str, Any]]] = {"teacher": [], "student": []}
    cuts: dict[str, list[int]] = {"teacher": [], "student": []}
    for side, core in cores.items():
        if not isinstance(core, CoreTokenizer):
            raise TypeError(f"tokenize_jointly needs transformers fast tokenizers ({side} side)")
        r = c.renderers[side]
        for p, t, text in zip(prompts, templated, texts, strict=True):
            p_ids, r_ids, enc, cut = _side(core, r.text(p, t), text)
            prompt_ids[side].append(r.prefix(t) + p_ids)
            resp_ids[side].append(np.asarray(r_ids, np.int64))
            encs[side].append(enc)
            cuts[side].append(cut)
    if c.same_tokenizer:
        resp = Responses.identity(resp_ids["teacher"])
    else:
        resp = Responses(resp_ids["teacher"], resp_ids["student"], [], [], [])
        for i, text in enumerate(texts):
            al = align_encodings(
                text,
                encs["teacher"][i],
                encs["student"][i],
                teacher_token_bytes=cores["teacher"],
                student_token_bytes=cores["student"],
            )
            ct, cs = cuts["teacher"][i], cuts["student"][i]
            t_ch, s_ch = al.teacher_chunks, al.student_chunks
            if ct or cs:
                t_ch, s_ch = _same_text_chunks(al, text)
            # Put a left-out straddler back: indices shift by one, and it has no chunk.
            resp.pairs.append(al.pairs.reshape(-1, 2) + np.array([ct, cs], np.int64))
            resp.teacher_chunks.append(np.concatenate([[-1] * ct, t_ch]).astype(np.int64))
            resp.student_chunks.append(np.concatenate([[-1] * cs, s_ch]).astype(np.int64))
    return Tokenized(list(templated), prompt_ids["teacher"], prompt_ids["student"], resp)
