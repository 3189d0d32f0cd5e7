"""Checks shared by the data-side tests (chunk ids of any batch, canonical token keys)."""

from __future__ import annotations

import torch

from dskd_align.torch import DSKDBatch


def key_of(b: bytes) -> bytes:
    """The canonical key of a token's bytes: whitespace trimmed unless only whitespace."""
    try:
        s = b.decode("utf-8").strip()
        return s.encode("utf-8") if s else b
    except UnicodeDecodeError:
        return b.strip() or b


def _dummy_prefix(core) -> bool:
    """Whether the tokenizer adds a SentencePiece dummy prefix: its first token of "x" carries a
    space the text does not have (Llama-2 under transformers 4.x: "    for" -> `▁▁▁▁` `▁for`)."""
    ids, _, _ = core.encode("x", False)
    first = core.token_bytes(ids[0]) if ids else None
    return bool(first) and first.startswith(b" ")


def _texts(core, ids: list[int], at_start: bool, prefixed: bool) -> list[bytes]:
    """The bytes a run of tokens may stand for: its tokens' bytes, and, at the start of a
    separately tokenized response of a tokenizer with a dummy prefix, those bytes less one
    leading space (the prefix stands for no bytes, ALIGNMENT rule 1). Only whitespace-only
    chunks, whose key is their raw span, can tell the two apart."""
    text = b"".join(core.token_bytes(i) for i in ids)
    if at_start and prefixed and text.startswith(b" "):
        return [text, text[1:]]
    return [text]


def check_chunk_ids(batch: DSKDBatch, ct, cs) -> None:
    """Ids 0..C-1 in (row, position) order on both sides, C <= B * L_s, chunks on response
    labels only, and each chunk's two sides stand for the same text (or are the EOS pair)."""
    t_ids, s_ids = batch.teacher_chunk_ids, batch.student_chunk_ids
    assert t_ids.dtype == s_ids.dtype == torch.long
    assert t_ids.shape == batch.teacher_input_ids.shape
    assert s_ids.shape == batch.student_input_ids.shape
    for ids, labels in ((t_ids, batch.teacher_labels), (s_ids, batch.student_labels)):
        assert (labels[ids >= 0] != -100).all()
        seq = ids[ids >= 0].tolist()  # row-major order
        assert seq == sorted(seq)
    c = int(s_ids.max()) + 1 if (s_ids >= 0).any() else 0
    assert sorted(set(t_ids[t_ids >= 0].tolist())) == list(range(c))
    assert sorted(set(s_ids[s_ids >= 0].tolist())) == list(range(c))
    assert c <= s_ids.numel()
    prefixed = (_dummy_prefix(ct), _dummy_prefix(cs))
    first_label = [
        (labels != -100).int().argmax(1).tolist()
        for labels in (batch.teacher_labels, batch.student_labels)
    ]
    for k in range(c):
        (bt, pt), (bs, ps) = ((ids == k).nonzero().T.tolist() for ids in (t_ids, s_ids))
        assert len(set(bt)) == 1 and bt[:1] == bs[:1]
        assert pt == list(range(pt[0], pt[-1] + 1)) and ps == list(range(ps[0], ps[-1] + 1))
        tt = [int(batch.teacher_input_ids[bt[0], p]) for p in pt]
        ss = [int(batch.student_input_ids[bs[0], p]) for p in ps]
        if len(tt) == len(ss) == 1 and ct.is_special(tt[0]):
            assert cs.is_special(ss[0])  # the EOS pair
            continue
        t_keys = {key_of(t) for t in _texts(ct, tt, pt[0] == first_label[0][bt[0]], prefixed[0])}
        s_keys = {key_of(s) for s in _texts(cs, ss, ps[0] == first_label[1][bs[0]], prefixed[1])}
        assert t_keys & s_keys, (k, tt, ss)
