"""The public Python API: result types, shapes and dtypes, indexing, paths, the one-shot cache."""

from __future__ import annotations

import numpy as np
import pytest
from families import core, trained_tokenizer

import dskd_align


def test_public_names():
    for name in dskd_align.__all__:
        assert hasattr(dskd_align, name), name


def test_alignment_shapes_dtypes_and_helpers():
    text = "Hello wörld 日本 🙂"
    a = dskd_align.Aligner(core("bytebpe"), core("llama"), add_special_tokens=True)(text)
    n, m = len(a.teacher_ids), len(a.student_ids)
    assert a.pairs.shape == (a.num_pairs, 2) and a.pairs.dtype == np.int64
    assert a.teacher_spans.shape == (n, 2) and a.student_spans.shape == (m, 2)
    assert a.teacher_special.dtype == np.bool_ and a.student_chunks.shape == (m,)
    assert a.student_special[0]  # <s>
    for t, s in a.pair_texts():
        if t:
            assert t.strip() == s.strip()
    assert a.token_text("teacher", 0) == text.encode()[slice(*a.teacher_spans[0])].decode()
    assert "Alignment(pairs=" in repr(a)


def test_batch_indexing_and_views():
    aligner = dskd_align.Aligner(core("bert"), core("t5"))
    b = aligner.batch(["one", "two words", ""])
    assert len(b) == 3 and [r.text for r in b] == ["one", "two words", ""]
    assert b[-1].text == "" and b[-3].text == "one"
    with pytest.raises(IndexError):
        b[3]
    row = b[1]
    assert np.shares_memory(row.teacher_ids, b.teacher_ids)  # views, not copies
    assert "BatchAlignment(rows=3" in repr(b)


def test_paths_and_tokenizer_objects(tmp_path):
    tok = trained_tokenizer("llama")
    tok.save(str(tmp_path / "tokenizer.json"))
    text = "x = 1 日本"
    by_obj = dskd_align.align(tok, trained_tokenizer("bytebpe"), text)
    by_dir = dskd_align.align(str(tmp_path), trained_tokenizer("bytebpe"), text)
    by_file = dskd_align.align(tmp_path / "tokenizer.json", trained_tokenizer("bytebpe"), text)
    for other in (by_dir, by_file):
        assert other.pairs.tolist() == by_obj.pairs.tolist()
        assert other.teacher_chunks.tolist() == by_obj.teacher_chunks.tolist()
    core_tok = dskd_align.load_core(tok)
    assert dskd_align.load_core(core_tok) is core_tok
    assert (
        core_tok.vocab_size == tok.get_vocab_size() and core_tok.table_size >= core_tok.vocab_size
    )
    assert core_tok.token_bytes(tok.token_to_id("<0x0A>")) == b"\n"
    assert core_tok.is_special(tok.token_to_id("<s>"))


def test_one_shot_cache_reuses_aligners():
    t, s = trained_tokenizer("bert"), trained_tokenizer("t5")
    a = dskd_align.align(t, s, "same text")
    b = dskd_align.align(t, s, "same text")
    assert a.pairs.tolist() == b.pairs.tolist()
    # each side is cached by identity (issue 10: pairs of cached sides cost nothing)
    assert id(t) in dskd_align.aligner._SIDES and id(s) in dskd_align.aligner._SIDES
    for k in range(10):  # bounded
        dskd_align.align(
            core("bytebpe"), core("llama"), f"text {k}", add_special_tokens=bool(k % 2)
        )
    assert len(dskd_align.aligner._SIDES) <= dskd_align.aligner._SIDES_SIZE


def test_align_many_streams_batches():
    aligner = dskd_align.Aligner(core("bytebpe"), core("roberta"))
    texts = [f"line {i}" for i in range(23)]
    batches = list(dskd_align.align_many(aligner, texts, batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 3]
    assert [r.text for b in batches for r in b] == texts
