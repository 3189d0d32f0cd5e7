"""Fixtures for the data side of the torch layer: two tokenizers trained here and wrapped as
transformers fast tokenizers (eos/bos/pad, chat templates), the real ones when present, and
prompt/response rows from ``../shared/corpora`` (or built-in text when absent).

- ``teacher_tok``: GPT-2 style byte-level BPE (``Ġ``, ``Ċ``), one ``<|endoftext|>`` as BOS and EOS,
  ``<|pad|>``, a ChatML-like template.
- ``student_tok``: SentencePiece style BPE with a Metaspace pre-tokenizer (``▁``, dummy prefix)
  and byte fallback (``<0x0A>``), ``<s>``/``</s>``/``<pad>``, BOS added, no chat template (so the
  plain-prompt path is exercised too); ``student_chat_tok`` is the same with a template.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# The torch layer's tests need the `torch` extra; without it the whole directory is skipped.
pytest.importorskip("torch")
pytest.importorskip("transformers")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

SHARED = Path(os.environ.get("DSKD_SHARED", Path(__file__).resolve().parents[3] / "shared"))
REAL = SHARED / "tokenizers"
CORPORA = SHARED / "corpora"

BUILTIN = [
    (
        "Write a haiku about autumn.",
        "Leaves fall in the wind,\nred and gold upon the ground —\nthe year breathes out slow.",
    ),
    ("What is 12 * 7?", "12 * 7 = 84.\n#### 84"),
    ("Translate 'hello world' to Russian.", "Привет, мир! (Privet, mir!)"),
    ("Say something in Chinese and add an emoji.", "你好，世界！我们今天学习。🙂👍🏽"),
    (
        "Write a Python function that adds two numbers.",
        'def add(a, b):\n    """Return a + b."""\n    return a + b\n',
    ),
    ("Give three colors.", "Red, green  and\tblue.\n\n- café\n- naïve\n- Zürich"),
]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
INST = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def _read_jsonl(path: Path, n: int) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def corpus_rows(n: int = 24) -> list[dict[str, str]]:
    """Prompt/response rows: GSM8K (question -> answer), Dolly (instruction -> context), code
    (docstring prompt -> HumanEval solution); the built-in rows when the corpora are absent."""
    rows: list[dict[str, str]] = []
    gsm = CORPORA / "gsm8k" / "test.jsonl"
    dolly = CORPORA / "dolly" / "dolly15k_instruction_context.jsonl"
    code = CORPORA / "code" / "HumanEval.jsonl"
    if gsm.is_file():
        rows += [{"prompt": r["question"], "response": r["answer"]} for r in _read_jsonl(gsm, n)]
    if dolly.is_file():
        for r in _read_jsonl(dolly, 4 * n):
            if r["context"]:
                rows.append({"prompt": r["instruction"], "response": r["context"]})
            if len(rows) >= 2 * n:
                break
    if code.is_file():
        rows += [
            {"prompt": r["prompt"], "response": r["canonical_solution"]}
            for r in _read_jsonl(code, n // 2)
        ]
    return rows or [{"prompt": p, "response": r} for p, r in BUILTIN]


def training_text() -> list[str]:
    lines = [f"{p}\n{r}\n" for p, r in BUILTIN] * 30
    lines += [f"{r['prompt']}\n{r['response']}\n" for r in corpus_rows(200)]
    return lines


def _wrap(tok: Tokenizer, template: str | None, **special: str) -> PreTrainedTokenizerFast:
    out = PreTrainedTokenizerFast(tokenizer_object=tok, **special)
    out.chat_template = template
    return out


def train_byte_level(vocab_size: int = 800) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"],
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer)
    return tok


def train_metaspace_byte_fallback(vocab_size: int = 700) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Sequence(
        [decoders.Metaspace(replacement="\u2581", prepend_scheme="first"), decoders.ByteFallback()]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<pad>"], show_progress=False
    )
    tok.train_from_iterator(training_text(), trainer)
    # The trainer knows nothing of byte fallback: add the 256 <0xNN> pieces to the model.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return tok


@pytest.fixture(scope="session")
def teacher_tok() -> PreTrainedTokenizerFast:
    return _wrap(
        train_byte_level(),
        CHATML,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",
    )


@pytest.fixture(scope="session")
def _metaspace() -> Tokenizer:
    return train_metaspace_byte_fallback()


@pytest.fixture(scope="session")
def student_tok(_metaspace: Tokenizer) -> PreTrainedTokenizerFast:
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    return _wrap(Tokenizer.from_str(_metaspace.to_str()), None, **special)


@pytest.fixture(scope="session")
def student_chat_tok(_metaspace: Tokenizer) -> PreTrainedTokenizerFast:
    special = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    return _wrap(Tokenizer.from_str(_metaspace.to_str()), INST, **special)


def real(name: str) -> PreTrainedTokenizerFast:
    """A real tokenizer by folder name; skips the test when it is absent."""
    path = REAL / name
    if not (path / "tokenizer.json").is_file():
        pytest.skip(f"real tokenizer {name!r} not present under {REAL}")
    return _real_cached(str(path))


_CACHE: dict[str, PreTrainedTokenizerFast] = {}


def _real_cached(path: str) -> PreTrainedTokenizerFast:
    if path not in _CACHE:
        _CACHE[path] = AutoTokenizer.from_pretrained(path)
    return _CACHE[path]


@pytest.fixture(scope="session")
def rows() -> list[dict[str, str]]:
    return corpus_rows()


@pytest.fixture(scope="session")
def real_tok():
    """``real_tok(name)``: a real tokenizer, or a skip when ``../shared/tokenizers`` lacks it."""
    return real


@pytest.fixture(scope="session")
def set_tables(teacher_tok, student_tok):
    """``byte_sets`` tables of the trained pair (heads padded past the tokenizers: 8, 4 rows)."""
    from dskd_align.torch import VocabMap
    from dskd_align.torch.set_tables import SetTables

    vmap = VocabMap(teacher_tok, student_tok, len(teacher_tok) + 8, len(student_tok) + 4)
    return SetTables(teacher_tok, student_tok, vmap)
