"""An alignment oracle that does not trust offsets (issue 10).

Ground truth comes from each token's own bytes (the core's token-to-bytes table) and the text,
never from the offsets the tokenizer reports:

- **Exact spelling.** When a side's tokens spell the text (each token's bytes follow where the
  previous one ended, a dummy-prefix space aside, specials written in the text included), their
  true spans are that tiling (:func:`true_spans`): the library's span of every text token must
  hold exactly its own bytes (a dummy-prefix space aside) and the spans must tile the text.
- **Normalized text.** When they do not (a normalizer changed the text: lowercasing, accents,
  NFC/NFD/NFKC, dropped control characters), a token is right when the side's own normalizer
  turns the original text of its span into the token's bytes (up to edge whitespace and `▁`)
  (:func:`normalized_ok`). Tokens without known bytes (`[UNK]`) cannot be checked: counted apart.

A pair is wrong when the two tokens do not stand for the same original bytes: both sides exact
and their true keys differ, or a side's token fails its check. ``python tests/test_oracle.py``
measures the wrong pairs per tokenizer family on the shared corpora (BENCHMARKS.md, "Alignment
oracle"); the tests below assert zero wrong pairs on hypothesis texts, for every tokenizer in
``../shared/tokenizers`` and tokenizers trained here with ``trim_offsets``, NFC/NFD/NFKC
normalizers and lowercasing.
"""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from families import REAL_DIR, TRAINED_NAMES, real_names, require_real, trained_tokenizer
from families import training_corpus as _training_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import WHITE_SPACE, Text, canonical_key
from support import FRAGMENTS
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

import dskd_align

Span = tuple[int, int]
WS = "".join(sorted(WHITE_SPACE))


def true_spans(raw: bytes, tokens: list[bytes | None], special: list[bool]) -> list[Span] | None:
    """The tiling of ``raw`` by the tokens' own bytes, or None when they do not spell it.

    A token's bytes must follow where the previous one ended; one that starts with a space the
    text lacks there (a dummy prefix) stands for the rest. Specials are written in the text (the
    oracle encodes without added special tokens)."""
    pos, out = 0, []
    for b, sp in zip(tokens, special, strict=True):
        if b is None:
            return None
        if raw.startswith(b, pos):
            out.append((pos, pos + len(b)))
        elif not sp and b.startswith(b" ") and raw.startswith(b[1:], pos):
            out.append((pos, pos + len(b) - 1))
        else:
            return None
        pos = out[-1][1]
    return out if pos == len(raw) else None


def _canon(s: str) -> str:
    return s.replace("\u2581", " ").strip(WS)


def normalized_ok(raw: bytes, span: Span, b: bytes, normalize: Callable[[str], str]) -> bool:
    """Whether a token with bytes ``b`` stands for ``raw[span]`` under the side's normalizer."""
    seg = raw[span[0] : span[1]]
    if seg == b or (b.startswith(b" ") and seg == b[1:]):
        return True
    try:
        s, t = seg.decode("utf-8"), b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return _canon(normalize(s)) == _canon(t)


@dataclass
class Counts:
    texts: int = 0
    tokens: int = 0  # text tokens of the side under test
    pairs: int = 0
    wrong_pairs: int = 0
    unverifiable: int = 0  # pairs with a token of unknown bytes on a normalized side
    wrong_spans: int = 0  # text tokens of an exactly spelling side not holding their own bytes
    examples: list[str] = field(default_factory=list)

    def add(self, other: Counts) -> None:
        for f in ("texts", "tokens", "pairs", "wrong_pairs", "unverifiable", "wrong_spans"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.examples.extend(other.examples[: max(0, 5 - len(self.examples))])


class SideView:
    """One side of an alignment as the oracle sees it."""

    def __init__(self, text: str, raw: bytes, ids, spans, special, core, normalize):
        self.spans = [tuple(int(x) for x in s) for s in spans]
        self.special = [bool(x) for x in special]
        self.bytes = [core.token_bytes(int(i)) for i in ids]
        self.normalize = normalize
        self.truth = true_spans(raw, self.bytes, self.special)
        self.raw = raw

    def wrong_spans(self) -> int:
        """Text tokens whose span does not hold their own bytes, or breaks the tiling."""
        if self.truth is None:
            return 0
        bad, pos = 0, 0
        for (a, b), own, sp in zip(self.spans, self.bytes, self.special, strict=True):
            seg = self.raw[a:b]
            ok = a == pos and own is not None and (seg == own or b" " + seg == own)
            bad += not ok and not sp
            pos = b
        return bad + (pos != len(self.raw) and bool(self.spans))

    def verdict(self, t: Text, i: int) -> bool | None:
        """Whether token i's span is right (None: cannot be checked), and its true key."""
        if self.truth is not None:
            return canonical_key(t, self.truth[i]) == canonical_key(t, self.spans[i])
        if self.bytes[i] is None:
            return None
        return normalized_ok(self.raw, self.spans[i], self.bytes[i], self.normalize)


def check(text: str, a, tcore, score, tnorm, snorm) -> Counts:
    """Oracle counts for one :class:`dskd_align.Alignment` (encoded without added specials)."""
    raw = text.encode("utf-8")
    t = Text(text)
    ts = SideView(text, raw, a.teacher_ids, a.teacher_spans, a.teacher_special, tcore, tnorm)
    ss = SideView(text, raw, a.student_ids, a.student_spans, a.student_special, score, snorm)
    c = Counts(texts=1, tokens=len(ts.spans) - sum(ts.special))
    c.wrong_spans = ts.wrong_spans() + ss.wrong_spans()
    for i, j in a.pairs.tolist():
        if ts.special[i]:
            continue
        c.pairs += 1
        right: bool | None
        if ts.truth is not None and ss.truth is not None:
            right = canonical_key(t, ts.truth[i]) == canonical_key(t, ss.truth[j])
        else:
            vt, vs = ts.verdict(t, i), ss.verdict(t, j)
            right = False if False in (vt, vs) else None if None in (vt, vs) else True
        if right is None:
            c.unverifiable += 1
        elif not right:
            c.wrong_pairs += 1
            if len(c.examples) < 5:
                c.examples.append(f"{text!r}: {a.pair_texts()[a.pairs.tolist().index([i, j])]}")
    return c


def normalizer_for(tok) -> Callable[[str], str]:
    """The side's own normalizer as a function (identity when it has none)."""
    n = tok.normalizer
    return (lambda s: s) if n is None else n.normalize_str


# ---- tokenizers and texts for the oracle -----------------------------------------------------


def _byte_bpe(normalizer, *, trim: bool, prefix: bool = False) -> Tokenizer:
    """Byte-level BPE with a normalizer and (GPT-NeoX style) trimmed offsets."""
    tok = Tokenizer(models.BPE())
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=900,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(_training_corpus()[::2], trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=trim)
    return tok


_NEW = {
    "neox-trim": lambda: _byte_bpe(None, trim=True),
    "nfc-trim": lambda: _byte_bpe(normalizers.NFC(), trim=True, prefix=True),
    "nfd-bpe": lambda: _byte_bpe(normalizers.NFD(), trim=False),
    "nfkc-lower-trim": lambda: _byte_bpe(
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]), trim=True
    ),
}
ORACLE_TRAINED = (*TRAINED_NAMES, *_NEW)
_CACHE: dict[str, Tokenizer] = {}


def oracle_trained(name: str) -> Tokenizer:
    if name not in _CACHE:
        _CACHE[name] = trained_tokenizer(name) if name in TRAINED_NAMES else _NEW[name]()
    return _CACHE[name]


_SIDES: dict[str, tuple] = {}


def side(name: str) -> tuple:
    """(core tokenizer, normalizer function) for a trained or real tokenizer name."""
    if name not in _SIDES:
        if name in ORACLE_TRAINED:
            tok = oracle_trained(name)
        else:
            require_real(name)
            tok = Tokenizer.from_file(str(REAL_DIR / name / "tokenizer.json"))
        _SIDES[name] = (dskd_align.load_core(tok), normalizer_for(tok))
    return _SIDES[name]


def partner(name: str) -> str:
    """What each tokenizer is aligned against: a byte-level BPE that spells every text."""
    if name in ORACLE_TRAINED:
        return "llama" if name == "bytebpe" else "bytebpe"
    return "llama2" if name == "gpt2" else "gpt2"


HARD = [
    "\x08", "\x00", "\x1b", "\x7f", "\u200b", "\u200d", "\ufeff", "\u00ad", "\ufffd", "\u202e",
    "   ", "    ", "\t\t  ", "\n\n\n", "  \n", " \n\n  ", "\r\n", "\u3000", "\xa0",
    "    return  x", "def f(x):\n", "日本語", "你好，世界", "한국어", "🙂", "🇫🇷",
    "👨\u200d👩\u200d👧",
    "שלום", "مرحبا", "café", "e\u0301", "Å", "ﬁ", "Ǆ", "İ", "ß", "HELLO", "Ünïcödé", "ｶﾀｶﾅ",
]  # fmt: skip
FORMS = ("raw", "NFC", "NFD", "NFKC")
hard_texts = st.tuples(
    st.lists(
        st.one_of(st.sampled_from(HARD), st.sampled_from(FRAGMENTS), st.text(max_size=3)),
        max_size=12,
    ).map("".join),
    st.sampled_from(FORMS),
).map(lambda p: p[0] if p[1] == "raw" else unicodedata.normalize(p[1], p[0]))

# Derandomized: the suite checks a fixed sample (CI stays reproducible); the random search is the
# fuzz target's job (test_oracle_fuzz.py).
SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def oracle_counts(name: str, text: str) -> Counts:
    (tc, tn), (sc, sn) = side(name), side(partner(name))
    return check(text, dskd_align.Aligner(tc, sc)(text), tc, sc, tn, sn)


@pytest.mark.parametrize("name", [*ORACLE_TRAINED, *real_names()])
@SETTINGS
@given(text=hard_texts)
def test_no_wrong_pair(name, text):
    """Every pair joins the same original bytes; an exactly spelling side's spans hold their own
    bytes and tile the text."""
    c = oracle_counts(name, text)
    assert c.wrong_pairs == 0, c.examples
    assert c.wrong_spans == 0


def _spans(a, side_: str) -> list[bytes]:
    raw = a.text.encode()
    return [raw[s:e] for s, e in getattr(a, f"{side_}_spans").tolist()]


def test_issue_trimmed_offsets_gpt_neox():
    """The issue's example: GPT-NeoX `ĠĊĊ` holds the space, the four-space token its spaces."""
    require_real("gpt2", "gpt-neox-20b")
    text = "def f(x):\n    return  x \n\n  y"
    a = dskd_align.align(str(REAL_DIR / "gpt2"), str(REAL_DIR / "gpt-neox-20b"), text)
    assert b"".join(_spans(a, "student")) == text.encode()
    assert b"    " in _spans(a, "student") and b" \n\n" in _spans(a, "student")
    assert (b"\n\n", b" \n\n") not in [(x.encode(), y.encode()) for x, y in a.pair_texts()]
    assert oracle_counts("gpt-neox-20b", text).wrong_pairs == 0


def test_issue_nfc_and_dropped_control_character():
    """Qwen's NFC `é` covers "e" + U+0301; t5-small's tokens after a dropped `\\x08` keep
    their own bytes."""
    require_real("qwen2.5", "t5-small", "gpt2")
    a = dskd_align.align(str(REAL_DIR / "qwen2.5"), str(REAL_DIR / "gpt2"), "cafe\u0301 x")
    assert "fe\u0301".encode() in _spans(a, "teacher")
    assert oracle_counts("qwen2.5", "cafe\u0301 x").wrong_pairs == 0
    t5 = oracle_counts("t5-small", "\x08Lll,def f")
    assert t5.wrong_pairs == 0 and t5.pairs >= 4


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
    """Found by the oracle table (BENCHMARKS.md) on Yoruba: BERT's `##i` for "í" is found at the
    next word's "i", so the next `i` starts before where it ended. That is no lag of the offsets
    (it took "y", paired with gpt2's `y`); it stays empty, `##yi` keeps "yì"."""
    require_real("bert-base-uncased", "gpt2")
    (bert, _), (gpt2, _) = side("bert-base-uncased"), side("gpt2")
    a = dskd_align.Aligner(bert, gpt2)("àkíyèsí iyì tó")
    got = [bert.token_bytes(i) for i in a.teacher_ids.tolist()]
    spans = _spans(a, "teacher")
    k = got.index(b"yi")
    assert got[k - 1] == b"i" and spans[k - 1] == b"" and spans[k] == "yì".encode()
    assert oracle_counts("bert-base-uncased", "àkíyèsí iyì tó").wrong_pairs == 0


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


@pytest.mark.xfail(
    strict=True, reason="open: t5-small NFKC `ﬁ` -> `f` + `i`, `i` on a dropped \\x08"
)
def test_fuzz_open_t5_expansion_before_dropped_control():
    """Found by tests/test_oracle_fuzz.py at the deadline, not fixed: t5-small on "\\x00ﬁ\\x08"
    reports `f`=(1,2) on "ﬁ" and `i`=(2,3) on the dropped `\\x08` (NFKC made two characters of
    one, and the second one's offsets run past it), so `f` alone gets "ﬁ" and pairs with
    nfkc-lower-trim's `fi` for it; `f` would have to be unpairable like the pieces of one
    character (place.rs, `shares_characters`), which only sees overlapping offsets. Same on
    "Ǆ\\x08" (t5-small against itself: `▁D` on "Ǆ", `Ž` on the `\\x08`; found by the last run)."""
    require_real("t5-small")
    (t5, norm), (nfkc, nnorm) = side("t5-small"), side("nfkc-lower-trim")
    text = "\x00ﬁ\x08"
    assert check(text, dskd_align.Aligner(nfkc, t5)(text), nfkc, t5, nnorm, norm).wrong_pairs == 0
    assert check("Ǆ\x08", dskd_align.Aligner(t5, t5)("Ǆ\x08"), t5, t5, norm, norm).wrong_pairs == 0


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


# ---- measurement (BENCHMARKS.md) ------------------------------------------------------------


def corpus(shared: Path) -> dict[str, list[str]]:
    """Hard texts from the shared corpora: code (whitespace runs), UDHR in NFC and NFD (every
    script, RTL included), the naughty strings (control characters, emoji, zalgo)."""
    out: dict[str, list[str]] = {}
    code = shared / "corpora/code/HumanEval.jsonl"
    out["code"] = [(r["prompt"] + r["canonical_solution"]) for r in map(json.loads, code.open())][
        :120
    ]
    udhr = shared / "corpora/multilingual/udhr_selected.jsonl"
    paras = [" ".join(r["paragraphs"][1:3]) for r in map(json.loads, udhr.open())]
    out["udhr-nfc"] = [unicodedata.normalize("NFC", p) for p in paras]
    out["udhr-nfd"] = [unicodedata.normalize("NFD", p) for p in paras]
    out["blns"] = json.loads((shared / "corpora/unicode_edge_cases/blns.json").read_text())
    return out


def measure(names: list[str], partner_of: Callable[[str], str], load, texts) -> None:
    print("| tokenizer | vs | texts | tokens | pairs | wrong pairs | wrong spans | unchecked |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        partner = partner_of(name)
        (tc, tn), (sc, sn) = load(name), load(partner)
        aligner = dskd_align.Aligner(tc, sc)
        total = Counts()
        for group in texts.values():
            for text, a in zip(group, aligner.batch(group), strict=True):
                total.add(check(text, a, tc, sc, tn, sn))
        print(
            f"| {name} | {partner} | {total.texts} | {total.tokens} | {total.pairs} | "
            f"{total.wrong_pairs} | {total.wrong_spans} | {total.unverifiable} |",
            flush=True,
        )
        for e in total.examples[:2]:
            print("   e.g.", e[:160], file=sys.stderr)


if __name__ == "__main__":
    # python tests/test_oracle.py [names...]: every real tokenizer against gpt2 (gpt2 against
    # llama2) and every tokenizer trained here against the trained byte-level BPE.
    from families import SHARED

    measure(sys.argv[1:] or [*real_names(), *ORACLE_TRAINED], partner, side, corpus(SHARED))
