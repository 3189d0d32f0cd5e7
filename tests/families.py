"""Tokenizers for the tests (imported by conftest.py and the test modules): small tokenizers of
every family trained in-test, and the real ones in ``../shared/tokenizers`` where that folder
exists (tests using them skip cleanly otherwise).

Training text is what every machine has: a built-in multilingual paragraph and the source of a
few stdlib modules. Each tokenizer trains in about a second. Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import os
import string
import textwrap
from pathlib import Path

import pytest
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

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DSKD_SHARED", HERE.parent.parent / "shared"))
REAL_DIR = SHARED / "tokenizers"
CORPORA_DIR = SHARED / "corpora"

MULTILINGUAL = """\
The quick brown fox jumps over the lazy dog. Don't panic: 3.14159 is close to pi, isn't it?
Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. Ça va très bien, merci !
Съешь же ещё этих мягких французских булок, да выпей чаю. Привет мир!
Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Γειά σου Κόσμε.
שלום עולם, מה שלומך? مرحبا بالعالم، كيف حالك؟ سلام دنیا
नमस्ते दुनिया, आप कैसे हैं? ওহে বিশ্ব। வணக்கம் உலகம்
你好，世界！我们今天学习自然语言处理。日本語のテキストも少しあります。こんにちは世界。
안녕하세요 세계! 한국어 문장입니다. สวัสดีชาวโลก ภาษาไทย
Emoji: 🙂 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 ❤️ ✨ — “quotes” ‘single’ «guillemets» … • № ½ ² ™ ﬁ Ⅻ
Tabs\tand  double  spaces\n\nand\r\nwindows newlines\u00a0nbsp\u3000ideographic space.
"""

STDLIB_MODULES = (textwrap, difflib, json.decoder, json.encoder, string, functools, inspect)


def training_corpus() -> list[str]:
    lines = MULTILINGUAL.splitlines(keepends=True) * 20
    for mod in STDLIB_MODULES:
        lines.extend(inspect.getsource(mod).splitlines(keepends=True))
    return lines


def _byte_level_bpe(corpus: list[str], *, roberta: bool) -> Tokenizer:
    """GPT-2 style (untrimmed offsets, no specials added) or RoBERTa style (prefix space,
    trimmed offsets, ``<s> $A </s>``)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=roberta)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>"] if roberta else ["<|endoftext|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=1200,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    if roberta:
        tok.post_processor = processors.RobertaProcessing(
            ("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=True
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _metaspace_bpe_byte_fallback(corpus: list[str]) -> Tokenizer:
    """Llama-2 style: Prepend/Replace normalizer, BPE with byte fallback, ``<s> $A``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tok.pre_tokenizer = pre_tokenizers.Split("\u2581", behavior="merged_with_next")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(corpus, trainer)
    # The trainer knows nothing of byte fallback: add the 256 <0xNN> pieces to the model vocab,
    # and drop the training-only pre-tokenizer (Llama-2 has none).
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    spec["pre_tokenizer"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return tok


def _wordpiece_bert(corpus: list[str]) -> Tokenizer:
    """BERT style: lowercase + strip accents, WordPiece ``##``, ``[CLS] $A [SEP]``."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=1000,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    return tok


def _unigram_t5(corpus: list[str]) -> Tokenizer:
    """T5 style: NFKC, Metaspace pre-tokenizer, Unigram with ``<unk>``, ``$A </s>``."""
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(corpus[::4], trainer)  # Unigram trains slower: a quarter is plenty
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tok.token_to_id("</s>"))]
    )
    return tok


# Families whose tokens spell the text exactly (no normalizer drops or rewrites text).
LOSSLESS = {"bytebpe", "roberta", "llama", "gpt2", "qwen2.5", "qwen3", "llama2", "llama3"}
LOSSLESS |= {"mistral-7b-v0.1", "mistral-7b-v0.3", "gemma3", "phi-2", "phi-3-mini", "gpt-neox-20b"}
# qwen (NFC) is lossless on NFC text only; tests that need exactness use NFC-stable text.

TRAINED_NAMES = ("bytebpe", "roberta", "llama", "bert", "t5")


@functools.cache
def trained_tokenizer(name: str) -> Tokenizer:
    corpus = training_corpus()
    build = {
        "bytebpe": lambda: _byte_level_bpe(corpus, roberta=False),
        "roberta": lambda: _byte_level_bpe(corpus, roberta=True),
        "llama": lambda: _metaspace_bpe_byte_fallback(corpus),
        "bert": lambda: _wordpiece_bert(corpus),
        "t5": lambda: _unigram_t5(corpus),
    }[name]
    return build()


def real_names() -> list[str]:
    if not REAL_DIR.is_dir():
        return []
    return sorted(p.name for p in REAL_DIR.iterdir() if (p / "tokenizer.json").is_file())


@functools.cache
def core(name: str) -> dskd_align.CoreTokenizer:
    """The core tokenizer for a trained or real tokenizer name, loaded once per session."""
    if name in TRAINED_NAMES:
        return dskd_align.load_core(trained_tokenizer(name))
    path = REAL_DIR / name
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer {name!r} not present under {REAL_DIR}")
    return dskd_align.load_core(path)


@functools.cache
def python_tokenizer(name: str) -> Tokenizer:
    """The Python ``tokenizers.Tokenizer`` for a name, truncation and padding switched off."""
    if name in TRAINED_NAMES:
        tok = trained_tokenizer(name)
    else:
        core(name)  # skips when absent
        tok = Tokenizer.from_file(str(REAL_DIR / name / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def require_real(*names: str) -> None:
    """Skips the calling test when a real tokenizer is absent."""
    if not REAL_DIR.is_dir():
        pytest.skip(f"no real tokenizers: {REAL_DIR} is absent")
    for n in names:
        if not (REAL_DIR / n / "tokenizer.json").is_file():
            pytest.skip(f"real tokenizer {n!r} not present under {REAL_DIR}")


@pytest.fixture(scope="session")
def trained() -> dict[str, Tokenizer]:
    """Every trained tokenizer by family name."""
    return {n: trained_tokenizer(n) for n in TRAINED_NAMES}


@pytest.fixture(scope="session")
def real_tokenizers() -> list[str]:
    """Names of the real tokenizers present; skips the test when there are none."""
    names = real_names()
    if not names:
        pytest.skip(f"no real tokenizers: {REAL_DIR} is absent or empty")
    return names
