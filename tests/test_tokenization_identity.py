"""The core tokenizes exactly like the Python tokenizers (``tokenizers`` and transformers v5 fast
tokenizers) on every real tokenizer and a sample of every corpus; and ``Aligner.batch`` (core
tokenization) equals ``align_encodings`` fed the Python tokenizer's own encodings."""

from __future__ import annotations

import json
import random
import warnings
from functools import cache

import pytest
from families import CORPORA_DIR, REAL_DIR, core, python_tokenizer, real_names, require_real
from tokenizers import Tokenizer

import dskd_align

PER_CORPUS = 100


def _jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@cache
def corpus_samples() -> dict[str, list[str]]:
    """~PER_CORPUS texts from every corpus (deterministic sample)."""
    if not CORPORA_DIR.is_dir():
        return {}
    rng = random.Random(0)
    out: dict[str, list[str]] = {}

    def sample(name, items):
        items = [t for t in items if t]
        out[name] = rng.sample(items, min(PER_CORPUS, len(items)))

    d = CORPORA_DIR
    sample(
        "dolly",
        [
            r["instruction"] + "\n\n" + r["context"]
            for r in _jsonl(d / "dolly/dolly15k_instruction_context.jsonl")
        ],
    )
    sample("gsm8k", [r["question"] + "\n" + r["answer"] for r in _jsonl(d / "gsm8k/test.jsonl")])
    sample(
        "humaneval",
        [r["prompt"] + r["canonical_solution"] for r in _jsonl(d / "code/HumanEval.jsonl")],
    )
    pieces = []
    for r in _jsonl(d / "code/cpython311_stdlib_sample.jsonl"):
        lines = r["text"].splitlines(keepends=True)
        pieces += ["".join(lines[i : i + 60]) for i in range(0, len(lines), 60)]
    sample("cpython", pieces)
    sample(
        "udhr",
        ["\n".join(r["paragraphs"][:3]) for r in _jsonl(d / "multilingual/udhr_selected.jsonl")]
        + [p for r in _jsonl(d / "multilingual/udhr_selected.jsonl") for p in r["paragraphs"][3:6]],
    )
    with open(d / "unicode_edge_cases/blns.json", encoding="utf-8") as f:
        sample("blns", json.load(f))
    return out


def _samples() -> dict[str, list[str]]:
    s = corpus_samples()
    if not s:
        pytest.skip(f"no corpora: {CORPORA_DIR} is absent")
    return s


def _char_to_byte(text: str) -> list[int]:
    out = [0]
    for ch in text:
        out.append(out[-1] + len(ch.encode("utf-8")))
    return out


NAMES = real_names() or ["<none>"]


@pytest.mark.parametrize("name", NAMES)
def test_core_encode_equals_tokenizers(name):
    require_real(name)
    samples = _samples()
    c, py = core(name), python_tokenizer(name)
    checked = 0
    for corpus, texts in samples.items():
        for add_special in (False, True):
            encs = py.encode_batch(texts, add_special_tokens=add_special)
            for text, enc in zip(texts, encs, strict=False):
                ids, offs, special = c.encode(text, add_special)
                where = f"{name} on {corpus} text {text[:40]!r}"
                assert ids == enc.ids, where
                c2b = _char_to_byte(text)
                assert offs == [(c2b[a], c2b[b]) for a, b in enc.offsets], where
                # special: HF's mask, plus special added tokens met in the text (HF says 0);
                # the unknown token is text, never special
                want = [
                    bool(m) or c.is_special(i)
                    for m, i in zip(enc.special_tokens_mask, ids, strict=False)
                ]
                assert special == want, where
                checked += 1
    assert checked >= 2 * sum(len(t) for t in samples.values())


def _auto_tokenizer(name):
    import transformers

    path = REAL_DIR / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if (path / "tokenizer_config.json").is_file():
            return transformers.AutoTokenizer.from_pretrained(str(path))
        return transformers.PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))


@pytest.mark.parametrize("name", NAMES)
def test_core_encode_equals_transformers_fast(name):
    require_real(name)
    samples = _samples()
    tok = _auto_tokenizer(name)
    assert tok.is_fast
    # The core built from the transformers object (what align() uses). Not always the file's:
    # transformers v5 rebuilds e.g. Llama-2 with a Metaspace pre-tokenizer ("    #" gives
    # `▁▁▁|▁#` there, `▁▁▁▁|▁#` from tokenizer.json), and the core follows the object.
    c = dskd_align.load_core(tok)
    # transformers v5 builds some tokenizers in memory in a way its own serialization does not
    # reproduce (t5-small: a Unigram tie on a run of dashes splits `-|---` in the object,
    # `---|-` in Tokenizer.from_str(object.backend_tokenizer.to_str())). The core can only follow
    # the serialization: it must equal that exactly, and the object wherever the two agree.
    roundtrip = Tokenizer.from_str(tok.backend_tokenizer.to_str())
    upstream_diffs = total = 0
    for corpus, texts in samples.items():
        texts = texts[:40]
        out = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        rts = roundtrip.encode_batch(texts, add_special_tokens=False)
        for text, ids, offsets, rt in zip(
            texts, out["input_ids"], out["offset_mapping"], rts, strict=False
        ):
            total += 1
            cids, coffs, _ = c.encode(text, False)
            where = f"{name} on {corpus} text {text[:40]!r}"
            c2b = _char_to_byte(text)
            assert cids == rt.ids, where
            assert coffs == [(c2b[a], c2b[b]) for a, b in rt.offsets], where
            if rt.ids != list(ids):
                upstream_diffs += 1
                continue
            assert cids == list(ids), where
            assert coffs == [(c2b[a], c2b[b]) for a, b in offsets], where
        # the transformers object is accepted by align() and tokenizes as the core does
        got = dskd_align.align(tok, c, texts[0])
        assert got.teacher_ids.tolist() == got.student_ids.tolist() == c.encode(texts[0], False)[0]
        assert all(i == j for i, j in got.pairs.tolist())
        # unpaired: only tokens whose bytes are not in the text, made from characters they share
        # with a neighbour (a normalizer split one character, rust/place.rs: never paired)
        raw = texts[0].encode()
        paired = {i for i, _ in got.pairs.tolist()}
        for k, (a, b) in enumerate(got.teacher_spans.tolist()):
            if k not in paired and not got.teacher_special[k]:
                assert c.token_bytes(int(got.teacher_ids[k])) not in (raw[a:b], b" " + raw[a:b])
    assert upstream_diffs <= 0.02 * total, f"{upstream_diffs}/{total} transformers round-trip diffs"


BATCH_PAIRS = [
    ("qwen2.5", "llama2"),
    ("gemma3", "llama3"),
    ("bert-base-uncased", "phi-2"),
    ("t5-small", "gpt2"),
]


@pytest.mark.parametrize(("teacher", "student"), BATCH_PAIRS)
def test_batch_equals_align_encodings_of_python_encodings(teacher, student):
    require_real(teacher, student)
    samples = _samples()
    t, s = core(teacher), core(student)
    pt, ps = python_tokenizer(teacher), python_tokenizer(student)
    aligner = dskd_align.Aligner(t, s)
    compared = total = 0
    for texts in samples.values():
        texts = texts[:50]
        batch = aligner.batch(texts, num_threads=2)
        for text, row, te, se in zip(
            texts,
            batch,
            pt.encode_batch(texts, add_special_tokens=False),
            ps.encode_batch(texts, add_special_tokens=False),
            strict=False,
        ):
            total += 1
            if any(c.is_special(i) for c, e in ((t, te), (s, se)) for i in e.ids):
                continue  # a special-token string in the text: HF says text, the core special
            got = dskd_align.align_encodings(
                text, te, se, teacher_token_bytes=t, student_token_bytes=s
            )
            for f in (
                "pairs",
                "teacher_spans",
                "student_spans",
                "teacher_chunks",
                "student_chunks",
            ):
                assert getattr(got, f).tolist() == getattr(row, f).tolist(), (f, text[:40])
            assert (got.aligned, got.teacher_text_tokens) == (row.aligned, row.teacher_text_tokens)
            compared += 1
    assert compared >= 0.9 * total


def test_unknown_token_is_text():
    """BERT's `[UNK]` and T5's `<unk>` are text tokens standing for the text they replaced."""
    require_real("bert-base-uncased", "t5-small")
    text = "hi 🙂 x"
    for name in ("bert-base-uncased", "t5-small"):
        c = core(name)
        ids, offs, special = c.encode(text, False)
        unk = python_tokenizer(name).token_to_id("[UNK]" if name.startswith("bert") else "<unk>")
        assert unk in ids and not c.is_special(unk) and c.token_bytes(unk) is None
        assert not any(special)
        got = dskd_align.Aligner(c, core("gpt2"))(text)
        k = ids.index(unk)
        # from where the previous token ended (rust/place.rs): the space is the key's trim
        a, b = got.teacher_spans[k].tolist()
        assert text.encode()[a:b].strip() == "🙂".encode()
        assert got.teacher_chunks[k] >= 0
