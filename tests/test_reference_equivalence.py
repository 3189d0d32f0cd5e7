"""The Rust core equals the pure-Python reference (tests/reference.py), token for token: on the
examples of ALIGNMENT.md, on random text under tokenizers of every family, and on random
hand-made encodings that no tokenizer would produce."""

from __future__ import annotations

import pytest
from families import TRAINED_NAMES, core, require_real
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import Side, align_reference
from support import (
    align_both,
    align_sides,
    as_encoding,
    assert_same,
    check_properties,
    spells_exactly,
    texts,
)

import dskd_align

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def lay(tokens: list[str]) -> tuple[str, Side]:
    """A side whose tokens are the given strings laid end to end (offsets in characters)."""
    text, offsets = "", []
    for t in tokens:
        offsets.append((len(text), len(text) + len(t)))
        text += t
    n = len(tokens)
    return text, Side(list(range(n)), offsets, [False] * n, [t.encode() for t in tokens])


def test_worked_example():
    """ALIGNMENT.md's worked example through align_encodings, with and without token bytes."""
    text, t = lay(["my", " boy", "fr", "ie", "nd", " is", " a", " good", " peop", "le", "!"])
    text2, s = lay(["my", " boyfri", "end", " is", " a", " good", " people", "!"])
    assert text == text2
    for tb in (True, False):
        got = dskd_align.align_encodings(
            text,
            as_encoding(t),
            as_encoding(s),
            teacher_token_bytes=(lambda i: t.token_bytes[i]) if tb else None,
            student_token_bytes=(lambda i: s.token_bytes[i]) if tb else None,
        )
        assert got.pairs.tolist() == [[0, 0], [5, 3], [6, 4], [7, 5], [10, 7]]
        assert got.pair_texts() == [
            ("my", "my"),
            (" is", " is"),
            (" a", " a"),
            (" good", " good"),
            ("!", "!"),
        ]
        # `boyfriend`: teacher [1, 5), student [1, 3); `people`: teacher [8, 10), student [6, 7)
        assert got.teacher_chunks.tolist() == [0, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6]
        assert got.student_chunks.tolist() == [0, 1, 1, 2, 3, 4, 5, 6]
        assert got.teacher_coverage == 5 / 11 and got.student_coverage == 5 / 8
        ref = align_reference(text, t, s)
        assert_same(got, ref, t, s)


def test_gpt2_cyrillic_byte_pieces():
    """GPT-2 on "Привет мир": `ĠÐ`=(6,8), `¼`=(7,8) split `м` into its two bytes."""
    text = "Привет мир"
    t = Side(
        [0, 1, 2, 3],
        [(0, 6), (6, 8), (7, 8), (8, 10)],
        [False] * 4,
        ["Привет".encode(), b" \xd0", b"\xbc", "ир".encode()],
    )
    s = Side([0, 1], [(0, 6), (6, 10)], [False, False], ["Привет".encode(), " мир".encode()])
    ref = align_reference(text, t, s)
    assert ref.teacher_spans == [(0, 12), (12, 14), (14, 15), (15, 19)]
    assert ref.pairs == [(0, 0)]
    assert ref.teacher_chunks == [0, 1, 1, 1] and ref.student_chunks == [0, 1]
    got = align_sides(text, t, s)
    assert_same(got, ref, t, s)


def test_byte_fallback_pieces_and_dummy_prefix():
    """Llama-2 on "a 🙂": four `<0x..>` pieces all (2,3); on "日": `▁`=(0,1) stands for no bytes."""
    text = "a 🙂"
    pieces = list("🙂".encode())
    t = Side(
        list(range(6)),
        [(0, 1), (1, 2)] + [(2, 3)] * 4,
        [False] * 6,
        [b" a", b" "] + [bytes([b]) for b in pieces],
    )
    ref = align_reference(text, t, t)
    assert ref.teacher_spans == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert ref.pairs == [(i, i) for i in range(6)]
    text = "日"
    t = Side([0, 1], [(0, 1), (0, 1)], [False, False], [b" ", "日".encode()])
    s = Side([7], [(0, 1)], [False], ["日".encode()])
    ref = align_reference(text, t, s)
    assert ref.teacher_spans == [(0, 0), (0, 3)]
    assert ref.pairs == [(1, 0)]
    # the pair is a chunk of its own; the dummy prefix is a chunk with no student token
    assert ref.teacher_chunks == [0, 1] and ref.student_chunks == [1]
    got = dskd_align.align_encodings(
        text,
        as_encoding(t),
        as_encoding(s),
        teacher_token_bytes=lambda i: [b" ", "日".encode()][i],
        student_token_bytes=lambda i: "日".encode(),
    )
    assert got.pairs.tolist() == [[1, 0]]
    assert got.teacher_chunks.tolist() == [0, 1]


def test_specials_pair_by_offset_in_order():
    """Rule 4: BOS with BOS, EOS with EOS; an unmatched BOS stays unaligned."""
    text = "ab"
    t = Side([1, 5, 2], [(0, 0), (0, 2), (0, 0)], [True, False, True], [None, b"ab", None])
    s = Side([9, 3], [(0, 2), (0, 0)], [False, True], [b"ab", None])
    ref = align_reference(text, t, s)
    assert ref.pairs == [(1, 0), (2, 1)]
    assert ref.teacher_chunks == [-1, 0, -1] and ref.student_chunks == [0, -1]
    assert ref.aligned == 1 and ref.teacher_text_tokens == 1
    got = dskd_align.align_encodings(text, as_encoding(t), as_encoding(s))
    assert_same(got, ref, t, s)


TRAINED_PAIRS = [(a, b) for a in TRAINED_NAMES for b in TRAINED_NAMES if a != b]


@pytest.mark.parametrize(("teacher", "student"), TRAINED_PAIRS)
@SETTINGS
@given(text=texts, add_special=st.booleans())
def test_core_equals_reference_trained(teacher, student, text, add_special):
    got, ref, _, _ = align_both(core(teacher), core(student), text, add_special)
    check_properties(text, ref, lossless=spells_exactly((teacher, student), text))


REAL_PAIRS = [
    ("qwen2.5", "gpt2"),
    ("qwen2.5", "llama2"),
    ("gemma3", "llama3"),
    ("llama3", "mistral-7b-v0.3"),
    ("bert-base-uncased", "roberta-base"),
    ("t5-small", "phi-3-mini"),
]


@pytest.mark.parametrize(("teacher", "student"), REAL_PAIRS)
@SETTINGS
@given(text=texts, add_special=st.booleans())
def test_core_equals_reference_real(teacher, student, text, add_special):
    require_real(teacher, student)
    got, ref, _, _ = align_both(core(teacher), core(student), text, add_special)
    check_properties(text, ref, lossless=spells_exactly((teacher, student), text))


@st.composite
def hand_made(draw):
    """A text and two arbitrary valid encodings of it: token bytes right, wrong, with an extra
    leading space, or unknown; specials anywhere, with or without text."""
    text = draw(texts)
    n = len(text)

    def side():
        tokens, start = [], 0
        for _ in range(draw(st.integers(0, 12))):
            special = draw(st.booleans()) and draw(st.booleans())
            if special:
                at = draw(st.integers(0, n))
                tokens.append(((at, at) if draw(st.booleans()) else (0, 0), True, None))
                continue
            a = draw(st.integers(start, n))
            b = draw(st.integers(a, min(n, a + 4)))
            start = draw(st.integers(start, a))  # starts never decrease
            start = a
            real = text[a:b].encode()
            kind = draw(st.sampled_from(["real", "space", "piece", "wrong", "none"]))
            tb = {
                "real": real,
                "space": b" " + real,
                "piece": real[: draw(st.integers(0, len(real)))],
                "wrong": draw(st.binary(max_size=4)),
                "none": None,
            }[kind]
            tokens.append(((a, b), False, tb))
        return Side(
            list(range(len(tokens))),
            [t[0] for t in tokens],
            [t[1] for t in tokens],
            [t[2] for t in tokens],
        )

    return text, side(), side()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=hand_made())
def test_core_equals_reference_hand_made(case):
    text, t, s = case
    ref = align_reference(text, t, s)
    got = align_sides(text, t, s)
    assert_same(got, ref, t, s)
    check_properties(text, ref, lossless=False)
