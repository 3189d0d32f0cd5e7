"""Properties of ALIGNMENT.md that involve more than one call: swapping sides, self-alignment,
batch equals a loop of single calls for any thread count, special tokens, pooled coverage; and
the caches behind one-shot `align` (by file identity for paths, enough for ten tokenizers in
eight threads)."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from families import TRAINED_NAMES, core, require_real
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import align_both, check_properties, check_swap, spells_exactly, texts

import dskd_align

SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PAIRS = [("bytebpe", "llama"), ("roberta", "t5"), ("llama", "bert"), ("t5", "bytebpe")]
REAL_PAIRS = [("qwen2.5", "llama2"), ("llama3", "mistral-7b-v0.3"), ("gemma3", "gpt2")]


@pytest.mark.parametrize(("teacher", "student"), PAIRS + REAL_PAIRS)
@SETTINGS
@given(text=texts)
def test_swapping_sides_swaps_pairs(teacher, student, text):
    if teacher not in TRAINED_NAMES:
        require_real(teacher, student)
    t, s = core(teacher), core(student)
    got = dskd_align.Aligner(t, s)(text)
    check_swap(t, s, text, got)


@pytest.mark.parametrize(
    "name", [*TRAINED_NAMES, "gpt2", "llama2", "bert-base-uncased", "t5-small"]
)
@SETTINGS
@given(text=texts, add_special=st.booleans())
def test_self_alignment_pairs_every_pairable_token(name, text, add_special):
    if name not in TRAINED_NAMES:
        require_real(name)
    c = core(name)
    got, ref, t, _ = align_both(c, c, text, add_special)
    n = len(t.ids)
    # every token but the unpairable pieces of a normalized character (rust/place.rs: NFD
    # Hangul under BERT's accent stripping splits one character into several tokens)
    blocked = ref.teacher_unpairable
    assert got.pairs.tolist() == [[i, i] for i in range(n) if not blocked[i]]
    if not any(blocked):
        assert got.teacher_coverage == got.student_coverage == 1.0
        # every text token is a chunk of its own, numbered in order
        text_tokens = [i for i in range(n) if not t.special[i]]
        assert [got.teacher_chunks[i] for i in text_tokens] == list(range(len(text_tokens)))
    check_properties(text, ref, lossless=spells_exactly((name,), text))


def _rows_equal(a: dskd_align.Alignment, b: dskd_align.Alignment) -> None:
    assert a.text == b.text
    for f in (
        "pairs",
        "teacher_ids",
        "teacher_spans",
        "teacher_special",
        "teacher_chunks",
        "student_ids",
        "student_spans",
        "student_special",
        "student_chunks",
    ):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), f
    assert (a.teacher_text_tokens, a.student_text_tokens, a.aligned) == (
        b.teacher_text_tokens,
        b.student_text_tokens,
        b.aligned,
    )


@pytest.mark.parametrize(
    ("teacher", "student"), [("bytebpe", "llama"), ("bert", "t5"), ("qwen2.5", "llama2")]
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(texts, min_size=0, max_size=9), add_special=st.booleans())
def test_batch_equals_loop_for_any_thread_count(teacher, student, batch, add_special):
    if teacher not in TRAINED_NAMES:
        require_real(teacher, student)
    aligner = dskd_align.Aligner(core(teacher), core(student), add_special_tokens=add_special)
    singles = [aligner(x) for x in batch]
    for threads in (0, 1, 2, 3):
        out = aligner.batch(batch, num_threads=threads)
        assert len(out) == len(batch)
        for row, single in zip(out, singles, strict=False):
            _rows_equal(row, single)
        # flat layout: splits delimit rows, pair indices are local to the row
        assert out.teacher_splits[0] == 0 and out.teacher_splits[-1] == len(out.teacher_ids)
        assert out.pair_splits[-1] == len(out.pairs)
        t_pool, s_pool = out.pooled_coverage()
        a, tt, st_ = (
            sum(getattr(r, f) for r in singles)
            for f in ("aligned", "teacher_text_tokens", "student_text_tokens")
        )
        assert t_pool == (a / tt if tt else 1.0) and s_pool == (a / st_ if st_ else 1.0)
        assert out.teacher_coverage.tolist() == [r.teacher_coverage for r in singles]
        assert out.student_coverage.tolist() == [r.student_coverage for r in singles]


def test_batch_many_rows_threads():
    """More rows than threads and uneven parts: results identical for 1, 2, 5 and 0 threads."""
    texts_ = [f"row {i}: " + "naïve 日本 🙂 x=1\n" * (i % 7) for i in range(101)]
    aligner = dskd_align.Aligner(core("bytebpe"), core("llama"))
    base = aligner.batch(texts_, num_threads=1)
    for threads in (2, 5, 0):
        out = aligner.batch(texts_, num_threads=threads)
        for f in ("pairs", "pair_splits", "teacher_splits", "student_spans", "student_chunks"):
            assert np.array_equal(getattr(out, f), getattr(base, f)), (threads, f)
    assert (
        list(dskd_align.align_many(aligner, iter(texts_), batch_size=10))[-1][0].text == texts_[100]
    )


def test_special_tokens_pair_in_order():
    """Llama-style `<s>` + text vs BERT-style `[CLS]` text `[SEP]`: BOS pairs with CLS (both at
    offset 0); `[SEP]` at the end has no partner; specials are never chunked or counted."""
    text = "hello world"
    got, ref, t, s = align_both(core("llama"), core("bert"), text, True)
    assert t.special[0] and s.special[0] and s.special[-1]
    assert [0, 0] in got.pairs.tolist()
    assert [len(t.ids) - 1, len(s.ids) - 1] not in got.pairs.tolist()
    assert got.teacher_chunks[0] == -1 and got.student_chunks[-1] == -1
    assert got.teacher_text_tokens == len(t.ids) - 1 and got.student_text_tokens == len(s.ids) - 2
    # `$A </s>` (T5 style) vs `[CLS] $A [SEP]`: the EOS pair at the end of the text
    got, _, t, s = align_both(core("t5"), core("bert"), text, True)
    assert got.pairs.tolist()[-1] == [len(t.ids) - 1, len(s.ids) - 1]


def test_real_bos_unmatched():
    """Llama-2 adds `<s>`, GPT-2 adds nothing: the BOS stays unaligned, text pairs are kept."""
    require_real("llama2", "gpt2")
    got, *_ = align_both(core("llama2"), core("gpt2"), "Hello world", True)
    assert got.teacher_special.tolist()[0] and not got.student_special.any()
    assert all(i > 0 for i, _ in got.pairs.tolist())
    assert got.teacher_coverage == 1.0 and got.student_coverage == 1.0


def test_empty_text_coverage_is_one():
    got = dskd_align.Aligner(core("bytebpe"), core("llama"))("")
    assert got.num_pairs == 0 and got.teacher_coverage == got.student_coverage == 1.0
    got = dskd_align.Aligner(core("llama"), core("bert"), add_special_tokens=True)("")
    assert got.teacher_text_tokens == 0 and got.student_text_tokens == 0
    assert got.teacher_coverage == 1.0 and got.pairs.tolist() == [[0, 0]]  # BOS with CLS


def _counting_reads(monkeypatch) -> list[int]:
    """Counts reads of tokenizer JSON (each cache miss reads it once)."""
    import dskd_align.tokenizers as adapters

    calls = [0]
    real = adapters.tokenizer_json

    def counted(tok):
        calls[0] += 1
        return real(tok)

    monkeypatch.setattr(adapters, "tokenizer_json", counted)
    return calls


def test_path_cache_by_file_identity(tmp_path, monkeypatch):
    """`align(path, path, text)` reads the file once; a rewritten file is read again and gives
    the new tokenizer."""
    from families import trained_tokenizer

    path = tmp_path / "tokenizer.json"
    path.write_text(trained_tokenizer("bytebpe").to_str(), encoding="utf-8")
    reads = _counting_reads(monkeypatch)
    first = [dskd_align.align(path, str(tmp_path), "hello world") for _ in range(5)]
    assert reads[0] == 1
    assert all(a.pairs.tolist() == first[0].pairs.tolist() for a in first)
    loaded = dskd_align.load_core(path)
    path.write_text(trained_tokenizer("llama").to_str(), encoding="utf-8")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert dskd_align.load_core(path) is not loaded
    assert reads[0] == 2
    assert dskd_align.load_core(path).vocab_size == core("llama").vocab_size


def test_caches_hold_ten_tokenizers_in_eight_threads(monkeypatch):
    """Ten tokenizers aligned pairwise from eight threads: each is read once (the earlier
    8-entry caches re-read them on almost every call), and every result equals a fresh one."""
    from families import trained_tokenizer
    from tokenizers import Tokenizer

    toks = []
    for k in range(10):
        tok = Tokenizer.from_str(trained_tokenizer(TRAINED_NAMES[k % 5]).to_str())
        tok.add_tokens([f"<extra_{k}>"])  # ten different tokenizer.json texts
        toks.append(tok)
    reads = _counting_reads(monkeypatch)
    text = "def f(x):\n    return  x  # naïve 日本 🙂"
    want = {
        (a, b): dskd_align.Aligner(toks[a], toks[b])(text).pairs.tolist()
        for a in range(10)
        for b in range(10)
    }
    reads[0] = 0
    errors: list[str] = []

    def work(seed: int) -> None:
        for r in range(3):
            for a in range(10):
                b = (a * (seed + 1) + r) % 10
                got = dskd_align.align(toks[a], toks[b], text).pairs.tolist()
                if got != want[(a, b)]:
                    errors.append(f"{a} {b}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert reads[0] <= 10
