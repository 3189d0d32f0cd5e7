"""Embedded defaults: two tokenizers of different families, trained on the fly from text every
Python installation has (the standard library's own source and docstrings), so the CLI and demo
run on a fresh machine with no download.

- ``teacher``: byte-level BPE (GPT-2 / Qwen / Llama-3 family: ``Ġ`` for space, bytes as chars).
- ``student``: SentencePiece-style BPE with ``▁`` and byte fallback (Llama-2 / Mistral family).

Training is deterministic for a given Python version (same corpus, same trainer settings) and
takes about a second each.
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

__all__ = ["SAMPLE_TEXT", "corpus", "student_tokenizer", "teacher_tokenizer"]

# A short multilingual text with code, newlines and emoji: the cases where string-based
# alignment (the paper's walk) breaks and byte spans do not.
SAMPLE_TEXT = (
    "Knowledge distillation trains a small student on a large teacher.\n"
    'def greet(name):\n    return f"Привет, {name}! 🙂"\n'
    "日本語のテキストも naïve café 😀 works.\n"
)

_MODULES = ("textwrap", "difflib", "argparse", "string", "json.decoder", "collections", "typing")


@functools.lru_cache(maxsize=1)
def corpus() -> list[str]:
    """Lines of stdlib source (code + English docstrings), plus the sample text."""
    import importlib

    lines: list[str] = []
    for name in _MODULES:
        try:
            lines.extend(inspect.getsource(importlib.import_module(name)).splitlines(True))
        except (OSError, TypeError):  # a Python built without sources: fall back to docstrings
            doc = importlib.import_module(name).__doc__ or ""
            lines.extend(doc.splitlines(True))
    lines.extend(SAMPLE_TEXT.splitlines(True))
    return lines


@functools.lru_cache(maxsize=4)
def teacher_tokenizer(vocab_size: int = 2000) -> Tokenizer:
    """Byte-level BPE (GPT-2 style) trained on :func:`corpus`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


@functools.lru_cache(maxsize=4)
def student_tokenizer(vocab_size: int = 1500) -> Tokenizer:
    """SentencePiece-style BPE with ``▁`` and byte fallback (Llama-2 style) trained on
    :func:`corpus`."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Split before each "▁" so merges stay inside words, as SentencePiece does.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>", *byte_tokens],
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def save(tok: Tokenizer, folder: Path) -> Path:
    """Writes ``tokenizer.json`` into ``folder`` and returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "embedded.json").write_text(json.dumps({"source": "dskd_align.embedded"}))
    return folder
