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
    for k in range(c):
        (bt, pt), (bs, ps) = ((ids == k).nonzero().T.tolist() for ids in (t_ids, s_ids))
        assert len(set(bt)) == 1 and bt[:1] == bs[:1]
        assert pt == list(range(pt[0], pt[-1] + 1)) and ps == list(range(ps[0], ps[-1] + 1))
        tt = [int(batch.teacher_input_ids[bt[0], p]) for p in pt]
        ss = [int(batch.student_input_ids[bs[0], p]) for p in ps]
        if len(tt) == len(ss) == 1 and ct.is_special(tt[0]):
            assert cs.is_special(ss[0])  # the EOS pair
            continue
        t_text = b"".join(ct.token_bytes(i) for i in tt)
        s_text = b"".join(cs.token_bytes(i) for i in ss)
        assert key_of(t_text) == key_of(s_text), (k, tt, ss)
