"""Bad input gets a clear ``dskd_align.AlignmentError`` (a ``ValueError``) naming the problem;
odd but valid input (empty, lone surrogates refused, 1 MB) is handled; nothing ever raises a
``BaseException`` that is not an ``Exception`` (a PyO3 panic would)."""

from __future__ import annotations

import re

import pytest
from families import core, trained_tokenizer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import texts

import dskd_align
from dskd_align import AlignmentError

TEXT = "hello world"
ENC = {"ids": [1, 2], "offsets": [(0, 5), (5, 11)], "special_tokens_mask": [0, 0]}


def enc(ids=(1, 2), offsets=((0, 5), (5, 11)), special=(0, 0)):
    return {"ids": list(ids), "offsets": list(offsets), "special_tokens_mask": list(special)}


def test_error_class():
    assert issubclass(AlignmentError, ValueError)


OUTSIDE = (
    "outside the text of 11 characters; the encoding does not belong to this text (encode exactly "
    "this text, and pass character offsets as HF fast tokenizers report them)"
)
PER_TOKEN = "pass one entry per token, all from the same encoding of the text"
NO_IDS = (
    "student encoding has no ids/offsets: pass a tokenizers.Encoding, a transformers "
    "BatchEncoding from return_offsets_mapping=True, or a dict with 'ids' and 'offsets'"
)
INTS = "pass the encoding's own integer values (no floats, strings or bools)"
ONE_D = "pass a 1-D sequence (one encoding of one text, e.g. enc['input_ids'][0])"
BIG = 2**70


def full(message: str) -> str:
    """A ``match`` pattern for exactly this message (a wrong value anywhere in it fails)."""
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    ("student", "message"),
    [
        (enc(offsets=[(0, 5), (5, 12)]), f"student: token 1 has offsets (5, 12) {OUTSIDE}"),
        (enc(offsets=[(0, 5), (9, 8)]), f"student: token 1 has offsets (9, 8) {OUTSIDE}"),
        (
            enc(offsets=[(5, 11), (0, 5)]),
            "student: token 1 starts before token 0 does; offsets must be non-decreasing along "
            "the sequence (was the encoding truncated with overflow, padded, or concatenated "
            "from several texts?)",
        ),
        (
            enc(offsets=[(-1, 5), (5, 11)]),
            "student: token 0 has offsets (-1, 5); offsets are character positions in the text "
            "and cannot be negative (pass character offsets as HF fast tokenizers report them)",
        ),
        (
            enc(offsets=[(0, 5), (5, -7)]),
            "student: token 1 has offsets (5, -7); offsets are character positions in the text "
            "and cannot be negative (pass character offsets as HF fast tokenizers report them)",
        ),
        (enc(offsets=[(0, 5)]), f"student: `offsets` has 1 entries but `ids` has 2; {PER_TOKEN}"),
        (
            enc(special=[0]),
            f"student: `special_tokens_mask` has 1 entries but `ids` has 2; {PER_TOKEN}",
        ),
        (enc(ids=[1, -3]), "student: ids[1] = -3 is not a token id (0..2^32)"),
        (enc(ids=[1, 2**32]), "student: ids[1] = 4294967296 is not a token id (0..2^32)"),
        (enc(ids=[BIG, 2]), f"student: ids[0] = {BIG} is not a token id (0..2^32)"),
        (enc(ids=[1.0, 2.0]), f"student: `ids` must be integers, got float 1.0; {INTS}"),
        (enc(ids=[1, "2"]), f"student: `ids` must be integers, got str '1'; {INTS}"),
        (enc(ids=[True, False]), f"student: `ids` must be integers, got bool True; {INTS}"),
        (enc(ids=[[1, 2]]), f"student: `ids` has shape (1, 2); {ONE_D}"),
        (
            enc(offsets=[(0.0, 5.0), (5, 11)]),
            f"student: `offsets` must be integers, got float 0.0; {INTS}",
        ),
        (
            enc(offsets=[0, 5, 5, 11]),
            "student: `offsets` has shape (4,); pass [N, 2]",
        ),
        (
            enc(offsets=[(0, BIG), (5, 11)]),
            f"student: token 0 has offsets (0, {BIG}), not character positions of the text",
        ),
        (
            enc(special=["0", "1"]),
            "student: `special_tokens_mask` must be booleans or 0/1, got str '0'",
        ),
        (
            enc(special=[0, 2]),
            "student: `special_tokens_mask` must be booleans or 0/1, got int 2",
        ),
        (
            enc(special=[[0, 0]]),
            f"student: `special_tokens_mask` has shape (1, 2); {ONE_D}",
        ),
        ({"ids": [1, 2]}, NO_IDS),
        (None, "student encoding is None"),
        (object(), NO_IDS),
    ],
)
def test_bad_encodings(student, message):
    with pytest.raises(AlignmentError, match=full(message)):
        dskd_align.align_encodings(TEXT, ENC, student)


def test_bad_token_bytes_and_ids():
    """Token ids outside 0..2^32 and token bytes that are not bytes: named, never a bare
    OverflowError or TypeError."""
    c = core("bytebpe")
    for bad in (-1, 2**32, BIG, "a", 1.5, True):
        with pytest.raises(
            AlignmentError,
            match=full(f"token id {bad!r} is not a token id: pass an int in 0..2^32"),
        ):
            c.token_bytes(bad)
        with pytest.raises(
            AlignmentError,
            match=full(f"token id {bad!r} is not a token id: pass an int in 0..2^32"),
        ):
            c.is_special(bad)
    assert c.token_bytes(2**32 - 1) is None
    with pytest.raises(
        AlignmentError,
        match=full(
            "teacher_token_bytes returned a str for ids[0] = 1; it must return bytes or None"
        ),
    ):
        dskd_align.align_encodings(TEXT, ENC, ENC, teacher_token_bytes=lambda i: "x")


def test_binary_file_as_tokenizer(tmp_path):
    """A sentencepiece ``tokenizer.model`` (binary) passed as a tokenizer path."""
    model = tmp_path / "tokenizer.model"
    model.write_bytes(b"\n\x0e\x80\xff\xfe binary protobuf")
    message = (
        f"{str(model)!r} is not a tokenizer.json: it is not UTF-8 text (a binary file such as a "
        "sentencepiece tokenizer.model?); pass the tokenizer.json, or load a .model with "
        "sentencepiece.SentencePieceProcessor(model_file=...) and pass that"
    )
    with pytest.raises(AlignmentError, match=full(message)):
        dskd_align.align(model, trained_tokenizer("bytebpe"), TEXT)
    with pytest.raises(AlignmentError, match=full(message)):
        dskd_align.Aligner(str(model), trained_tokenizer("bytebpe"))


@pytest.mark.parametrize("bad", [-1, 1025, 10**10, 1.5, "2", None, True])
def test_num_threads_type_and_size(bad):
    aligner = dskd_align.Aligner(core("bytebpe"), core("llama"))
    message = f"num_threads must be an int in 0..1024 (0 = all cores), got {bad!r}"
    with pytest.raises(AlignmentError, match=full(message)):
        aligner.batch(["a"], num_threads=bad)


def test_text_not_matching_encodings():
    """An encoding of another (longer) text: offsets outside this text, named."""
    other = core("bytebpe")
    ids, boffs, special = other.encode("a much longer text than the one aligned", False)
    from support import byte_to_char

    b2c = byte_to_char("a much longer text than the one aligned")
    e = {
        "ids": ids,
        "offsets": [(b2c[a], b2c[b]) for a, b in boffs],
        "special_tokens_mask": special,
    }
    with pytest.raises(AlignmentError, match="teacher: token .* outside the text"):
        dskd_align.align_encodings("short", e, ENC)


def test_token_bytes_length_and_type():
    with pytest.raises(AlignmentError, match="teacher_token_bytes"):
        dskd_align.align_encodings(TEXT, ENC, ENC, teacher_token_bytes=42)
    with pytest.raises(AlignmentError, match="text is a bytes"):
        dskd_align.align_encodings(b"hello", ENC, ENC)


def test_slow_tokenizer_and_unknown_objects():
    transformers = pytest.importorskip("transformers")
    # a slow (Python) tokenizer: no offsets, no tokenizer.json
    slow = transformers.PreTrainedTokenizer.__new__(transformers.PreTrainedTokenizer)
    with pytest.raises(AlignmentError, match="slow"):
        dskd_align.align(slow, trained_tokenizer("bytebpe"), TEXT)
    with pytest.raises(AlignmentError, match="cannot align with a int"):
        dskd_align.align(3, trained_tokenizer("bytebpe"), TEXT)
    with pytest.raises(AlignmentError, match="tokenizer is None"):
        dskd_align.align(None, trained_tokenizer("bytebpe"), TEXT)
    with pytest.raises(AlignmentError, match="no tokenizer.json"):
        dskd_align.Aligner("/nonexistent/folder", trained_tokenizer("bytebpe"))


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(AlignmentError, match="not valid JSON"):
        dskd_align.load_core(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"model": {"type": "Nope"}}', encoding="utf-8")
    with pytest.raises(AlignmentError, match="could not load this tokenizer.json"):
        dskd_align.load_core(tmp_path)
    with pytest.raises(AlignmentError, match="tokenizer"):
        dskd_align.CoreTokenizer("[]")


def test_lone_surrogates_and_non_str():
    aligner = dskd_align.Aligner(core("bytebpe"), core("llama"))
    for bad in ("\ud800", "ok \udfff ok"):
        with pytest.raises(AlignmentError, match=r"texts\[0\] is not valid Unicode"):
            aligner(bad)
        with pytest.raises(AlignmentError, match=r"texts\[1\] is not valid Unicode"):
            aligner.batch(["fine", bad], num_threads=2)
        at = bad.index(bad.strip(" ok")[0]) if bad != "\ud800" else 0
        message = (
            f"text is not valid Unicode (surrogates not allowed at index {at}); lone surrogates "
            "cannot be tokenized, clean the text (e.g. s.encode('utf-8', 'replace').decode())"
        )
        with pytest.raises(AlignmentError, match=full(message)):
            dskd_align.align_encodings(bad, ENC, ENC)
    with pytest.raises(AlignmentError, match=r"texts\[1\] is None"):
        aligner.batch(["a", None])
    with pytest.raises(AlignmentError, match=r"texts\[2\] is a int, not a str"):
        aligner.batch(["a", "b", 3])
    with pytest.raises(AlignmentError, match="not one str"):
        aligner.batch("a str")
    with pytest.raises(AlignmentError):
        aligner(None)


def test_empty_text_and_empty_batch():
    aligner = dskd_align.Aligner(core("bytebpe"), core("t5"))
    a = aligner("")
    assert a.num_pairs == 0 and len(a.teacher_ids) == 0 and a.student_coverage == 1.0
    b = aligner.batch([])
    assert len(b) == 0 and b.pooled_coverage() == (1.0, 1.0)
    e = dskd_align.align_encodings("", enc([], [], []), enc([], [], []))
    assert e.num_pairs == 0 and e.teacher_coverage == 1.0


def test_one_megabyte_text():
    """A 1 MB text aligns correctly (every pair's bytes equal; self-alignment complete)."""
    unit = "def f(x):\n    return x  # naïve 日本 🙂\n\tThe quick brown fox.\n"
    text = unit * (1_000_000 // len(unit.encode()) + 1)
    assert len(text.encode()) >= 1_000_000
    t, s = core("bytebpe"), core("llama")
    got = dskd_align.Aligner(t, s)(text)
    raw = text.encode()
    assert got.num_pairs > 0.3 * len(got.student_ids)
    spans_t, spans_s = got.teacher_spans, got.student_spans
    for i, j in got.pairs[:: max(1, got.num_pairs // 2000)].tolist():
        assert raw[slice(*spans_t[i])].strip() == raw[slice(*spans_s[j])].strip()
    assert spans_t[-1][1] == spans_s[-1][1] == len(raw)
    self_ = dskd_align.Aligner(s, s).batch([text], num_threads=2)[0]
    assert self_.num_pairs == len(self_.student_ids)


ANY = st.one_of(
    st.none(), st.integers(), st.binary(max_size=8), texts, st.lists(st.integers(), max_size=3)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.one_of(
        texts, st.text(alphabet=st.characters(categories=["Cs", "Co", "Cc"]), max_size=5), ANY
    ),
    ids=st.lists(st.integers(-(2**40), 2**40), max_size=4),
    offsets=st.lists(st.tuples(st.integers(-3, 30), st.integers(-3, 30)), max_size=4),
    special=st.lists(st.booleans(), max_size=4),
    tb=st.one_of(st.none(), st.lists(st.one_of(st.none(), st.binary(max_size=3)), max_size=4)),
)
def test_never_a_panic(text, ids, offsets, special, tb):
    """Random garbage: an AlignmentError, never another exception (a bare TypeError,
    OverflowError, UnicodeEncodeError) nor a BaseException outside Exception
    (pyo3_runtime.PanicException)."""
    e = {"ids": ids, "offsets": offsets, "special_tokens_mask": special}
    calls = [
        lambda: dskd_align.align_encodings(
            text, e, ENC, teacher_token_bytes=(lambda i: tb[i % len(tb)] if tb else None)
        ),
        lambda: dskd_align.align_encodings(text, ENC, e),
        lambda: dskd_align.Aligner(core("bytebpe"), core("llama")).batch(
            [text, "x"], num_threads=2
        ),
    ]
    for call in calls:
        try:
            call()
        except AlignmentError:
            pass
        except BaseException as exc:  # noqa: B036 - the point: a panic is a BaseException
            assert isinstance(exc, Exception), f"not an Exception: {type(exc)}"
            raise


def test_text_longer_than_the_tokenizing_limit():
    """Above 8 MiB a text is refused before tokenizing (20 MB of spaces took 8.9 GB), by name;
    the same text given as encodings is not tokenized and has no such limit."""
    n = 8 * 2**20 + 1
    message = (
        f"text of {n} bytes is longer than the 8388608 bytes the core tokenizes in one piece "
        "(tokenizing peaks at ~400 bytes of memory per token, and a run of whitespace can be one "
        "token per byte); split it (per document or paragraph) and align the pieces"
    )
    aligner = dskd_align.Aligner(core("bytebpe"), core("llama"))
    with pytest.raises(AlignmentError, match=full(message)):
        aligner(" " * n)
    with pytest.raises(AlignmentError, match=full(message)):
        aligner.batch(["fine", "x" * n], num_threads=2)
    with pytest.raises(AlignmentError, match=full(message)):
        core("bytebpe").encode(" " * n, False)
    one = {"ids": [0], "offsets": [(0, n)], "special_tokens_mask": [0]}
    assert dskd_align.align_encodings(" " * n, one, one).num_pairs == 1
