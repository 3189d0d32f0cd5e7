"""Regression tests of the alignment oracle (``test_oracle.py``): one per wrong answer the fuzz
targets found (issue 10), each pinned on the text that showed it. Split from ``test_oracle.py``,
which holds the oracle and its property test."""

from __future__ import annotations

import unicodedata

from families import require_real
from support import as_encoding, core_side
from test_oracle import _spans, check, oracle_counts, side

import dskd_align


def test_fuzz_regressions():
    """Found by tests/test_oracle_fuzz.py: falcon drops a `\\x05` its vocabulary cannot spell and
    reports the next byte piece on it (it paired with the other side's `\\x05`); t5-small's
    `<unk>` before offsets shifted by a dropped control character (4 wrong pairs)."""
    require_real("falcon", "gpt2", "t5-small")
    c = oracle_counts("falcon", "\x05\x80")
    assert c.wrong_pairs == 0 and c.pairs >= 1
    # falcon also drops the lead byte F2 of U+80000 and reports its first `80` piece on the
    # `\x05`: a byte piece placed on whole characters may not pair (it paired with `\x05`)
    c = oracle_counts("falcon", "\x05\U00080000")
    assert c.wrong_pairs == 0 and c.wrong_spans == 0
    # NFKC + lowercase: "Ǆ" -> `d` + the two byte pieces of "ž", all reported on "Ǆ"; the second
    # piece took "A" as a lag (the first, placed empty, looked like a dummy prefix), `ab` got "B"
    c = oracle_counts("nfkc-lower-trim", "ǄAB")
    assert c.wrong_pairs == 0 and c.wrong_spans == 0
    # Qwen's NFC `dé` for "de" + U+0301 reported on "de", then a second U+0301: the search for
    # the next token's bytes stopped at the first U+0301 (`dé` got "de", paired with `de`)
    (qwen, qnorm), (bpe, bnorm) = side("qwen2"), side("bytebpe")
    text = "Ünïcöde\u0301\u0301"
    a = dskd_align.Aligner(bpe, qwen)(text)
    assert "de\u0301".encode() in _spans(a, "student")
    assert check(text, a, bpe, qwen, bnorm, qnorm).wrong_pairs == 0
    # t5-small on "\\x08<0x0A>": `<unk>` for "<" reported on the dropped `\\x08`, every later
    # token one character early; the unknown token runs to where `0`'s own bytes are
    c = oracle_counts("t5-small", "\x08<0x0A>")
    assert c.wrong_pairs == 0 and c.pairs >= 4
    # two dropped characters: every token two characters early (t5-small against itself)
    (t5, norm) = side("t5-small")
    text = "\x08\x08Ünïcödé"
    c = check(text, dskd_align.Aligner(t5, t5)(text), t5, t5, norm, norm)
    assert c.wrong_pairs == 0 and c.pairs >= 5


def test_no_lag_after_a_token_that_overran():
    """Found by the oracle table (BENCHMARKS.md) on Yoruba: BERT's `##i` for "í" was found at the
    next word's "i", so the next `i` started before where it ended. That is no lag of the offsets
    (it took "y", paired with gpt2's `y`). Since the fuzz finding of "¼ 42" a match after skipped
    characters needs offsets that reach past where the previous token ended, and the search for
    the next token's bytes (case 3) passes whitespace only within that token's reported
    characters: every token now gets its own text ("ès", "í", "i", "yì")."""
    require_real("bert-base-uncased", "gpt2")
    (bert, _), (gpt2, _) = side("bert-base-uncased"), side("gpt2")
    text = "àkíyèsí iyì tó"
    a = dskd_align.Aligner(bert, gpt2)(text)
    got = [bert.token_bytes(i) for i in a.teacher_ids.tolist()]
    assert got[2:6] == [b"es", b"i", b"i", b"yi"]
    assert _spans(a, "teacher")[2:6] == [t.encode() for t in ("ès", "í", "i", "yì")]
    assert oracle_counts("bert-base-uncased", text).wrong_pairs == 0


def test_fuzz_regression_t5_unknown_and_nfkc_after_dropped_control():
    """Found by tests/test_oracle_fuzz.py (the strict xfail of 647750f, and the first 600 s run
    after its fix): t5-small against itself on "\\x08{²" gave its `2`
    (NFKC of `²`) the span "{²" (the `<unk>` for "{" was left on the dropped `\\x08`), so the
    pair `2`/`2` joined "{²". Neither token's bytes are in the text; the `<unk>`'s offsets lag
    by the dropped character (place.rs, `lag_chars`), so it runs one character on."""
    require_real("t5-small")
    (t5, norm) = side("t5-small")
    # two dropped characters: the lag carries on to `23` for "²³"
    for text, spans in (
        ("\x08{²", ["", "\x08{", "²"]),
        ("\x08\x08{²³x", ["", "\x08\x08{", "²³", "x"]),
    ):
        a = dskd_align.Aligner(t5, t5)(text)
        assert _spans(a, "teacher") == [x.encode() for x in spans]
        c = check(text, a, t5, t5, norm, norm)
        # the core knows t5-small drops `\x08`: tokens of case 3 after it do not pair (their
        # spans rest on a guessed lag; rust/drops.rs), only the dummy-prefix `▁` (empty) and
        # `x`, found by their bytes
        assert c.wrong_pairs == 0 and c.pairs == 1 + text.count("x"), c.examples
        # encodings without the tokenizer (`Drops::Unknown`): the guessed lag, confirmed, pairs
        enc = as_encoding(core_side(t5, text, False))
        tb = t5.token_bytes  # a callable: nothing known about the normalizer
        a = dskd_align.align_encodings(
            text, enc, enc, teacher_token_bytes=tb, student_token_bytes=tb
        )
        c = check(text, a, t5, t5, norm, norm)
        assert c.wrong_pairs == 0 and c.pairs == len(spans) - 1, c.examples
    # llama against t5-small on "\x08你好，世界": t5's `<unk>` for "你好" is reported on "\x08你",
    # and its NFKC `,` for "，" took "好" (paired with llama's `好`)
    (llama, lnorm) = side("llama")
    text = "\x08你好，世界"
    a = dskd_align.Aligner(llama, t5)(text)
    assert _spans(a, "student") == [x.encode() for x in ("", "\x08你好", "，", "世界")]
    assert check(text, a, llama, t5, lnorm, norm).wrong_pairs == 0
    # t5-small keeps a `\x00` (an `<unk>` with right offsets): no lag; `fic` stands for "ﬁc"
    # (paired `c` with bytebpe's `c` when the `<unk>` was taken to lag)
    (bpe, bnorm) = side("bytebpe")
    text = "\x00ﬁcafé"
    a = dskd_align.Aligner(bpe, t5)(text)
    assert _spans(a, "student") == [x.encode() for x in ("", "\x00", "ﬁc", "a", "f", "é")]
    assert check(text, a, bpe, t5, bnorm, norm).wrong_pairs == 0
    # a dropped `\x08`, then a kept `\x00` in the `<unk>`: the lag is 1, not 2 (qwen2's `ﾅ`
    # paired with t5's `2` for "²" when no lag held)
    (qwen, qnorm) = side("qwen2")
    text = "\x08\x00ｶﾀｶﾅ²{"
    a = dskd_align.Aligner(qwen, t5)(text)
    assert _spans(a, "student")[2:] == ["²".encode(), b"{"]
    assert check(text, a, qwen, t5, qnorm, norm).wrong_pairs == 0
    # the same on NFD text, which t5 composes: lag 1 (`n` lies one character on), not 2
    (gemma, gnorm) = side("gemma3")
    text = unicodedata.normalize("NFD", "\x08\x00Ünïcödé")
    a = dskd_align.Aligner(gemma, t5)(text)
    assert _spans(a, "student")[2] == "U\u0308".encode()
    assert check(text, a, gemma, t5, gnorm, norm).wrong_pairs == 0


def test_fuzz_regression_t5_expansion_before_dropped_control():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x00ﬁ\\x08" reports `f`=(1,4) on "ﬁ" and
    `i`=(4,5) on the dropped `\\x08` (NFKC made two characters of one, and the second one is
    reported on the dropped character after it); `f` alone got "ﬁ" and paired with
    nfkc-lower-trim's `fi` for it. Same on "Ǆ\\x08" (`▁D` on "Ǆ", an `<unk>` for `Ž` on the
    `\\x08`). Both parts are unpairable now (rust/place_lag.rs, `spills_onto_dropped`)."""
    require_real("t5-small")
    (t5, norm), (nfkc, nnorm) = side("t5-small"), side("nfkc-lower-trim")
    text = "\x00ﬁ\x08"
    a = dskd_align.Aligner(nfkc, t5)(text)
    assert check(text, a, nfkc, t5, nnorm, norm).wrong_pairs == 0
    assert 2 not in a.pairs[:, 1].tolist() and 3 not in a.pairs[:, 1].tolist()
    a = dskd_align.Aligner(t5, t5)("Ǆ\x08")
    assert check("Ǆ\x08", a, t5, t5, norm, norm).wrong_pairs == 0
    assert a.pairs.tolist() == []
    # the text after them still pairs
    assert dskd_align.Aligner(t5, t5)("Ǆ\x08\x08a").pairs.tolist() == [[2, 2]]


def test_whitespace_tokens_of_different_lengths_are_a_chunk_not_a_pair():
    """Rule 5 as the core states it (walk.rs): 5 spaces + ` C` against 6 spaces + `C` is a 1x1
    chunk of the two whitespace tokens (different text: no pair), then the pair `C`/`C`."""
    text = "      C"
    t = {"ids": [0, 1], "offsets": [(0, 5), (5, 7)], "special_tokens_mask": [0, 0]}
    s = {"ids": [0, 1], "offsets": [(0, 6), (6, 7)], "special_tokens_mask": [0, 0]}
    tb, sb = [b"     ", b" C"], [b"      ", b"C"]
    a = dskd_align.align_encodings(
        text, t, s, teacher_token_bytes=tb.__getitem__, student_token_bytes=sb.__getitem__
    )
    assert a.pairs.tolist() == [[1, 1]]
    assert a.teacher_chunks.tolist() == a.student_chunks.tolist() == [0, 1]


def test_nfd_pieces_of_one_character_never_pair():
    """NFD splits "é" into `e` + U+0301 (both reported on the one character): neither pairs with
    the other side's `é`."""
    text = "é!"
    t = {"ids": [0, 1], "offsets": [(0, 1), (1, 2)], "special_tokens_mask": [0, 0]}
    s = {"ids": [0, 1, 2], "offsets": [(0, 1), (0, 1), (1, 2)], "special_tokens_mask": [0] * 3}
    tb, sb = ["é".encode(), b"!"], [b"e", "\u0301".encode(), b"!"]
    a = dskd_align.align_encodings(
        text, t, s, teacher_token_bytes=tb.__getitem__, student_token_bytes=sb.__getitem__
    )
    assert a.pairs.tolist() == [[1, 2]]
    # `é` with `e` (the span of the whole character); the empty U+0301 piece is a chunk alone
    assert a.teacher_chunks.tolist() == [0, 2] and a.student_chunks.tolist() == [0, 1, 2]


def test_fuzz_regression_t5_unk_before_a_composed_character():
    """Found by tests/test_oracle_fuzz.py: t5-small on NFD "\\x00e\\u0301" reports an `<unk>` for
    the kept `\\x00` and its NFC `é` on the "e" alone; the text left after that (U+0301) was taken
    as evidence that the offsets lag one character behind a dropped `\\x00`, so the `<unk>` took
    the "e" and `é` the U+0301 alone, paired with nfd-bpe's U+0301. A combining mark after the
    last token's reported end is no such evidence (rust/place_lag.rs, `composes`)."""
    require_real("t5-small")
    (t5, norm), (nfd, nnorm) = side("t5-small"), side("nfd-bpe")
    text = "\x00e\u0301"
    a = dskd_align.Aligner(nfd, t5)(text)
    assert check(text, a, nfd, t5, nnorm, norm).wrong_pairs == 0
    assert _spans(a, "student")[2] == "e\u0301".encode()
    # the same with a dropped \x08 after it: dropped text left at the end is no sign of a lag
    text = "\x00e\u0301\x08"
    a = dskd_align.Aligner(t5, t5)(text)
    assert check(text, a, t5, t5, norm, norm).wrong_pairs == 0
    assert _spans(a, "student")[2] == "e\u0301\x08".encode()


def test_fuzz_regression_nfd_piece_not_found_after_a_space():
    """Found by tests/test_oracle_fuzz.py: nfd-bpe on "À \\u0301" writes "À" as `A` + the two
    byte pieces of U+0300, all reported on "À"; the lead-byte piece `CC` was searched past the
    space and found in the U+0301, then paired with bytebpe's `CC` piece of it. A match after
    skipped characters ignores the offsets only when they reach the skipped text (lagging
    offsets, falcon's `\\x05`); these end before the space (rust/place.rs, `find`)."""
    (b, bnorm), (nfd, nnorm) = side("bytebpe"), side("nfd-bpe")
    text = "À \u0301"
    a = dskd_align.Aligner(b, nfd)(text)
    assert check(text, a, b, nfd, bnorm, nnorm).wrong_pairs == 0
    assert a.pairs.tolist() == [[2, 3]]  # the spaces


def test_fuzz_regression_nfkc_part_not_found_after_a_space():
    """Found by tests/test_oracle_fuzz.py: t5-small writes "¼" as `▁1` + `<unk>` (for ⁄) + `4`, all
    reported on "¼"; on "¼ 42" the `4` was searched past the space and found at the "4" of "42",
    which left `▁42` the "2" alone, paired with bytebpe's `2`. The offsets of `4` end before the
    space, so no match after it is this token (rust/place.rs, `find`)."""
    require_real("t5-small")
    (b, bnorm), (t5, norm) = side("bytebpe"), side("t5-small")
    text = "¼ 42"
    a = dskd_align.Aligner(b, t5)(text)
    assert check(text, a, b, t5, bnorm, norm).wrong_pairs == 0
    assert _spans(a, "student")[3] == b" 42"


def test_fuzz_regression_t5_lag_behind_spaces_and_a_vertical_tab():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x08   你好，世界" reports every token one
    character early (the dropped `\\x08`), but the first `<unk>` is reported on " 你", so the lag's
    sign (reported on a dropped character) was hidden by the spaces and NFKC's `,` got "好",
    paired with llama's `好`. A token reported on whitespace past dropped characters may lag by
    as many (rust/place_lag.rs, `lag_chars`)."""
    require_real("t5-small")
    (llama, lnorm), (t5, norm) = side("llama"), side("t5-small")
    for text in ("\x08   你好，世界", "\x0b你好，世界", "\x0b 你好，世界"):
        # (t5-small drops a leading \x0b, White_Space, as it drops a \x08; not a leading space)
        a = dskd_align.Aligner(llama, t5)(text)
        assert check(text, a, llama, t5, lnorm, norm).wrong_pairs == 0
        assert _spans(a, "student")[2:] == ["，".encode(), "世界".encode()]


def test_fuzz_regression_t5_unk_lag_decided_by_the_normalizer():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x00你好，世界\\x08" reports an `<unk>` for
    "\\x00你好" on exactly those characters (no lag), but offsets and bytes alone cannot tell that
    from "\\x08你好" (the `\\x08` dropped, the `<unk>` reported one character early); the trailing
    `\\x08` was taken as a kept character after an `<unk>` (as t5-small keeps a `\\x00`), the lag of
    1 gave NFKC's `,` the "世", paired with llama's `世`. The core now asks the normalizer which
    characters it drops (rust/drops.rs: `\\x08` yes, `\\x00` no). Same for "\\x08שלוםﬁ\\x08" against
    bytebpe (t5's `f` took "ם"): a span of case 3 after a dropped character does not pair."""
    require_real("t5-small")
    (llama, lnorm), (t5, norm) = side("llama"), side("t5-small")
    assert "\x08" in t5.dropped_chars and "\x00" not in t5.dropped_chars
    text = "\x00你好，世界\x08"
    a = dskd_align.Aligner(llama, t5)(text)
    assert check(text, a, llama, t5, lnorm, norm).wrong_pairs == 0
    assert _spans(a, "student")[1:3] == ["\x00你好".encode(), "，".encode()]
    (bpe, bnorm) = side("bytebpe")
    text = "\x08שלוםﬁ\x08"
    a = dskd_align.Aligner(bpe, t5)(text)
    assert check(text, a, bpe, t5, bnorm, norm).wrong_pairs == 0


def test_fuzz_regression_t5_lag_ends_at_a_special_in_the_text():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x1f{0</s>你好，世界" reports the tokens
    before the `</s>` one character early (the dropped `\\x1f`) and those after it right (the text
    is split at specials before normalizing); the lag was carried past the `</s>`, giving NFKC's
    `,` the "世" (paired with llama's `世`). A special written in the text ends the lag."""
    require_real("t5-small")
    (llama, lnorm), (t5, norm) = side("llama"), side("t5-small")
    text = "\x1f{0</s>你好，世界"
    a = dskd_align.Aligner(llama, t5)(text)
    assert check(text, a, llama, t5, lnorm, norm).wrong_pairs == 0
    assert _spans(a, "student")[-2:] == ["，".encode(), "世界".encode()]


def test_fuzz_regression_t5_expansion_before_a_combining_mark():
    """Found by tests/test_oracle_fuzz.py: t5-small on "Ǆ\\u0301" writes `▁D` on "Ǆ" and an `<unk>`
    for "Ž́" on the U+0301, so `▁D` alone got "Ǆ" and paired with itself. The second part of an
    expansion reported on characters that compose with it is unpairable like one reported on a
    dropped character (rust/place_lag.rs, `spills_onto_dropped`)."""
    require_real("t5-small")
    (t5, norm) = side("t5-small")
    for text in ("Ǆ\u0301", "Ǆ\u0301a"):
        a = dskd_align.Aligner(t5, t5)(text)
        assert check(text, a, t5, t5, norm, norm).wrong_pairs == 0
        assert a.pairs.tolist() == ([[2, 2]] if text.endswith("a") else [])
    # an <unk> for "Ž{" reported from a dropped \x1f on: the same
    a = dskd_align.Aligner(t5, t5)("Ǆ\x1f{")
    assert check("Ǆ\x1f{", a, t5, t5, norm, norm).wrong_pairs == 0 and a.pairs.tolist() == []
    # after a lag: on "\x08Ǆ\x08Å" `ŽÅ` is reported on "Ǆ\x08" (one character early, so on
    # "\x08Å"): from a dropped character on, with more text after it (found by the fuzzer;
    # `▁D` took "\x08Ǆ" and paired with itself)
    a = dskd_align.Aligner(t5, t5)("\x08Ǆ\x08Å")
    assert check("\x08Ǆ\x08Å", a, t5, t5, norm, norm).wrong_pairs == 0 and a.pairs.tolist() == []


def test_fuzz_regression_a_kept_control_stops_the_next_token_search():
    """Found by tests/test_oracle_fuzz.py: nfd-bpe on "dé\\x08" + U+0301 writes `de`, the U+0301 of
    "é", a `\\x08` token and the text's U+0301. `de` (case 3) looked for the next token's bytes
    past the `\\x08` as if it were dropped, found the text's U+0301, and every token after it
    shifted (the two `\\x08`s paired on an empty span). A droppable character that a later token
    is reported on was kept: the search stops there (rust/place.rs, `normalized_end`)."""
    (nfd, norm) = side("nfd-bpe")
    text = "Ünïcödé\x08\u0301"
    a = dskd_align.Aligner(nfd, nfd)(text)
    assert check(text, a, nfd, nfd, norm, norm).wrong_pairs == 0
    assert _spans(a, "teacher")[-2:] == [b"\x08", "\u0301".encode()]


def test_fuzz_regression_a_lone_space_token_confirms_no_lag():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x80   İ\\t\\t  \\x00hello" (right offsets
    throughout) took its `<unk>` for the kept `\\x80` to lag three characters, because a later
    `▁` (bytes " ") lay three characters past its reported start, at one of the spaces; `h` and
    `ello` then shifted onto "llo". A whitespace-only token is no evidence for or against a lag
    (rust/place_lag.rs, `confirms_lag`)."""
    require_real("t5-small")
    (t5, norm) = side("t5-small")
    text = "\x80   İ\t\t  \x00hello"
    a = dskd_align.Aligner(t5, t5)(text)
    assert check(text, a, t5, t5, norm, norm).wrong_pairs == 0
    assert _spans(a, "teacher")[-2:] == [b"h", b"ello"]


def test_fuzz_regression_t5_expansion_spilled_under_a_lag():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x08Ǆ\\x08" reports every token one
    character early (the leading `\\x08`): `▁D` on the first `\\x08`, the `<unk>` for `Ž` on "Ǆ",
    that is, really on the last `\\x08`. The spill of the expansion is seen only where the
    offsets really are (rust/place_lag.rs, `spills_onto_dropped` moves them on by the lag)."""
    require_real("t5-small")
    (t5, norm) = side("t5-small")
    a = dskd_align.Aligner(t5, t5)("\x08Ǆ\x08")
    assert check("\x08Ǆ\x08", a, t5, t5, norm, norm).wrong_pairs == 0
    assert a.pairs.tolist() == []


def test_fuzz_regression_nfkc_space_expansion_then_a_real_space():
    """Found by tests/test_oracle_fuzz.py: nfkc-lower-trim on "A¸   " writes `a` (lowercase,
    case 3), then NFKC's " " + U+0327 for "¸" as a space and two byte pieces, all reported on
    "¸". The case-3 search for where `a` ends found the next token's " " at the text's space right
    *after* "¸", so `a` took "A¸" and paired with itself, and the space token took the text's
    space. A match must start within the next token's reported characters (unless they are empty
    or a dropped character was passed: their offsets may then lag more)."""
    (nfkc, norm) = side("nfkc-lower-trim")
    text = "A¸   "
    a = dskd_align.Aligner(nfkc, nfkc)(text)
    assert check(text, a, nfkc, nfkc, norm, norm).wrong_pairs == 0
    assert _spans(a, "teacher")[0] == b"A"


def test_fuzz_regression_a_normalized_piece_is_not_the_text_after_it():
    """Found by tests/test_oracle_fuzz.py: nfkc-lower-trim on "ⅫiB" writes NFKC's "xii" for "Ⅻ"
    as `x`, `i`, `i` (all reported on "Ⅻ"), then `ib` for "iB". `x` (case 3) took "Ⅻ", and the
    first `i` was found by its bytes at the text's "i" right after it, so every token after moved
    on one: `ib` got "B" and paired with bytebpe's `B`. A piece of a case-3 token's characters
    found wholly past them is not it (rust/place.rs, `piece_past`)."""
    (nfkc, norm), (bpe, bnorm) = side("nfkc-lower-trim"), side("bytebpe")
    text = "ⅫiB"
    a = dskd_align.Aligner(bpe, nfkc)(text)
    assert check(text, a, bpe, nfkc, bnorm, norm).wrong_pairs == 0
    assert _spans(a, "student") == [x.encode() for x in ("Ⅻ", "", "", "iB")]


def test_fuzz_regression_t5_a_control_turned_into_a_space_is_not_kept_text():
    """Found by tests/test_oracle_fuzz.py: t5-small on "\\x0b\\u200b" + backslash + "n\\x00"
    drops the `\\x0b`, turns U+200B into the `▁` and reports the `<unk>` for the backslash on the
    U+200B (one character early). Told which characters the normalizer drops, U+200B was taken
    for kept text, so no lag was seen and `n` took the backslash (paired with bytebpe's). A
    character the normalizer turns into whitespace counts as dropped (rust/drops.rs)."""
    require_real("t5-small")
    (t5, norm), (bpe, bnorm) = side("t5-small"), side("bytebpe")
    assert "\u200b" in t5.dropped_chars
    text = "\x0b\u200b\\n\x00"
    a = dskd_align.Aligner(bpe, t5)(text)
    assert check(text, a, bpe, t5, bnorm, norm).wrong_pairs == 0


def test_fuzz_regression_canonical_reordering_moves_a_mark_past_the_next():
    """Found by tests/test_oracle_fuzz.py: nfd-bpe on "È" + U+1CDC: NFD sorts the marks by
    combining class, so it writes `E`, the U+1CDC (class 220, found by its bytes) and then the
    U+0300 of "È" (class 230), reported on the U+1CDC. `E` (case 3) took "È" and paired with
    itself, while it stands for "E" only. A token of case 3 right before a combining mark does
    not pair (rust/marks.rs)."""
    (nfd, norm) = side("nfd-bpe")
    text = "È\u1cdc"
    a = dskd_align.Aligner(nfd, nfd)(text)
    assert check(text, a, nfd, nfd, norm, norm).wrong_pairs == 0
    assert 0 not in a.pairs[:, 0].tolist()
