"""Tokenizers that are not HF ones: tiktoken ``Encoding`` and ``SentencePieceProcessor`` (both
built in-test, nothing downloaded), plus transformers fast tokenizer objects. Their alignments
equal the reference and the HF equivalent where one exists, and satisfy the properties."""

from __future__ import annotations

import io
import json

import pytest
from families import MULTILINGUAL, REAL_DIR, core, require_real, trained_tokenizer, training_corpus
from hypothesis import HealthCheck, given, settings
from reference import Side, align_reference
from support import assert_same, check_properties, check_swap, core_side, texts

import dskd_align
from dskd_align.tokenizers import resolve

GPT2_PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _byte_decoder() -> dict[str, int]:
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=False)}


def tiktoken_from_hf_byte_bpe(tok_json: dict, name: str):
    """A tiktoken Encoding with the vocabulary of a byte-level BPE tokenizer.json (ranks = ids,
    which follow merge order for GPT-2 and for the trained tokenizer). Skips the calling test when
    tiktoken is absent (per test, so the transformers test below still runs)."""
    tiktoken = pytest.importorskip("tiktoken")
    dec = _byte_decoder()
    ranks = {bytes(dec[c] for c in piece): i for piece, i in tok_json["model"]["vocab"].items()}
    return tiktoken.Encoding(name, pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={})


@pytest.fixture(scope="module")
def tiktoken_trained():
    spec = json.loads(trained_tokenizer("bytebpe").to_str())
    spec["model"]["vocab"] = {
        k: v for k, v in spec["model"]["vocab"].items() if k != "<|endoftext|>"
    }
    return tiktoken_from_hf_byte_bpe(spec, "trained-bytebpe")


@pytest.fixture(scope="module")
def sentencepiece_trained():
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(training_corpus()[::3]),
        model_writer=model,
        vocab_size=600,
        model_type="bpe",
        byte_fallback=True,
        normalization_rule_name="identity",
        character_coverage=0.9995,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_proto=model.getvalue())


def python_side(tok, text: str, add_special: bool = False) -> Side:
    e = resolve(tok).encode(text, add_special)
    return Side(list(e.ids), list(e.offsets), list(e.special), list(e.token_bytes))


def test_tiktoken_ids_equal_hf(tiktoken_trained):
    hf = trained_tokenizer("bytebpe")
    for line in MULTILINGUAL.splitlines():
        assert tiktoken_trained.encode_ordinary(line) == hf.encode(line).ids, line


@SETTINGS
@given(text=texts)
def test_tiktoken_alignment_equals_hf_equivalent(tiktoken_trained, text):
    other = core("llama")
    via_tiktoken = dskd_align.align(tiktoken_trained, other, text)
    hf_ids = core("bytebpe").encode(text, False)[0]
    tside = python_side(tiktoken_trained, text)
    ref = align_reference(text, tside, core_side(other, text, False))
    assert_same(via_tiktoken, ref, tside, core_side(other, text, False))
    check_properties(text, ref, lossless="\u2581" not in text)
    if tside.ids == hf_ids:  # tiktoken and HF BPE may break rank ties differently
        via_hf = dskd_align.align(trained_tokenizer("bytebpe"), other, text)
        for f in ("pairs", "teacher_spans", "teacher_chunks", "student_chunks"):
            assert getattr(via_tiktoken, f).tolist() == getattr(via_hf, f).tolist(), f


def test_tiktoken_gpt2_equals_hf_gpt2():
    require_real("gpt2", "llama2")
    spec = json.loads((REAL_DIR / "gpt2" / "tokenizer.json").read_text(encoding="utf-8"))
    enc = tiktoken_from_hf_byte_bpe(spec, "gpt2-from-vocab")
    text = "Hello world!\n你好 🙂 Привет мир\tx = [1, 2]  # naïve\n"
    a = dskd_align.align(enc, core("llama2"), text)
    b = dskd_align.align(core("gpt2"), core("llama2"), text)
    for f in ("pairs", "teacher_ids", "teacher_spans", "teacher_chunks", "student_chunks"):
        assert getattr(a, f).tolist() == getattr(b, f).tolist(), f


@SETTINGS
@given(text=texts)
def test_sentencepiece_equals_reference_and_properties(sentencepiece_trained, text):
    sp = sentencepiece_trained
    for other_name, add_special in (("bytebpe", False), ("llama", True)):
        other = core(other_name)
        got = dskd_align.Aligner(sp, other, add_special_tokens=add_special)(text)
        sside = python_side(sp, text, add_special)
        oside = core_side(other, text, add_special)
        ref = align_reference(text, sside, oside)
        assert_same(got, ref, sside, oside)
        check_properties(text, ref, lossless="\u2581" not in text and other_name == "bytebpe")
        check_swap(sp, other, text, got, add_special)
    # self-alignment pairs every token
    self_ = dskd_align.align(sp, sp, text)
    assert self_.num_pairs == len(self_.teacher_ids)


def test_sentencepiece_spans_spell_the_text(sentencepiece_trained):
    """Byte-fallback pieces land on the bytes they stand for; the dummy prefix on nothing."""
    text = "hello 🦜 wörld"  # the parrot is not in the training text: byte fallback
    side = python_side(sentencepiece_trained, text)
    ref = align_reference(text, side, side)
    raw = text.encode()
    assert b"".join(raw[a:b] for a, b in ref.teacher_spans) == raw
    assert any(tb is not None and len(tb) == 1 and tb[0] >= 0x80 for tb in side.token_bytes)
    with_bos = python_side(sentencepiece_trained, text, True)
    assert with_bos.special[0] and with_bos.offsets[0] == (0, 0)


def test_transformers_fast_objects_accepted():
    transformers = pytest.importorskip("transformers")
    hf = trained_tokenizer("llama")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=hf)
    text = "Hello wörld 日本 🙂\n\tx = 1"
    a = dskd_align.align(fast, trained_tokenizer("bert"), text)
    b = dskd_align.align(core("llama"), core("bert"), text)
    for f in ("pairs", "teacher_ids", "teacher_spans", "student_spans", "teacher_chunks"):
        assert getattr(a, f).tolist() == getattr(b, f).tolist(), f
    # and AutoTokenizer on a real folder, both sides
    require_real("qwen2.5", "llama3")
    qwen = transformers.AutoTokenizer.from_pretrained(str(REAL_DIR / "qwen2.5"))
    llama3 = transformers.AutoTokenizer.from_pretrained(str(REAL_DIR / "llama3"))
    got = dskd_align.align(qwen, llama3, text)
    assert got.teacher_ids.tolist() == qwen(text, add_special_tokens=False)["input_ids"]
    assert got.student_ids.tolist() == llama3(text, add_special_tokens=False)["input_ids"]
    assert got.num_pairs > 0
