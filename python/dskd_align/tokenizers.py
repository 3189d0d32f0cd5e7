"""Adapters: turn whatever tokenizer a researcher holds into something the core can align.

Two kinds of side:

- **core-tokenized** (fast path): anything with a ``tokenizer.json`` (a ``tokenizers.Tokenizer``, a
  transformers fast tokenizer of v4 or v5, a path to a ``tokenizer.json`` or a folder holding one).
  The core loads the JSON into the Rust ``tokenizers`` crate and tokenizes itself; ids and offsets
  equal the Python tokenizer's (the test suite checks every real tokenizer).
- **Python-encoded**: tiktoken ``Encoding`` and ``sentencepiece.SentencePieceProcessor``. They are
  encoded in Python and handed to the core as ids, character offsets, special mask and token bytes.

Choices recorded here: truncation and padding configured on a tokenizer are ignored (the JSON's
settings are switched off); an alignment is always of the whole text.

Caches (issue 10): building a core for a 150k-262k vocabulary takes 0.1-2 s, and reading a large
tokenizer.json alone ~0.3 s, so ``load_core`` keeps cores (a) by file for paths: the resolved path
plus the file's identity (device, inode, size, mtime in ns), checked with one ``stat`` per call, so
a rewritten file is reloaded and an unchanged one is never re-read; (b) by the JSON text for
tokenizer objects (the same JSON always gives the same core; a tokenizer changed after loading has
a different JSON). Each holds up to 32 tokenizers, least recently used out first: 10 tokenizers
aligned pairwise from 8 threads stay cached (the earlier 8-entry caches thrashed). The caches are
guarded by one lock; a core is built outside it (two threads may build the same one once).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dskd_align._core import AlignmentError, CoreTokenizer

__all__ = ["Encoded", "PythonSide", "char_offsets", "load_core", "resolve", "tokenizer_json"]


@dataclass(frozen=True)
class Encoded:
    """One encoding of one text: ids, character offsets ``[start, end)``, special mask, and the
    bytes each token stands for (``None`` entries, or ``token_bytes=None``, fall back to the
    character range)."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]
    token_bytes: list[bytes | None] | None = None
    # The characters the tokenizer's normalizer drops (``CoreTokenizer.dropped_chars``), where
    # known: placement then need not guess which controls were dropped (rust/drops.rs).
    dropped_chars: str | None = None

    def as_core(self) -> tuple[Any, ...]:
        return (
            list(self.ids),
            list(self.offsets),
            list(self.special),
            self.token_bytes,
            self.dropped_chars,
        )


def _byte_to_char(text: str) -> np.ndarray:
    """``table[b]`` = index of the character containing byte ``b`` (``len(text)`` at the end)."""
    raw = text.encode("utf-8")
    starts = np.frombuffer(raw, dtype=np.uint8) & 0xC0 != 0x80
    table = np.empty(len(raw) + 1, dtype=np.int64)
    table[:-1] = np.cumsum(starts) - 1
    table[-1] = len(text)
    return table


def char_offsets(text: str, byte_offsets: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    """Byte ranges to the character ranges that contain them (HF's convention)."""
    b2c = _byte_to_char(text)
    out = []
    for s, e in byte_offsets:
        cs = int(b2c[s]) if s < len(b2c) - 1 else len(text)
        ce = int(b2c[e - 1]) + 1 if e > s else cs
        out.append((cs, ce))
    return out


@dataclass(frozen=True)
class PythonSide:
    """A side encoded in Python; ``encode(text, add_special_tokens)`` gives an :class:`Encoded`."""

    name: str
    encode: Callable[[str, bool], Encoded]


def _tiktoken_side(enc: Any) -> PythonSide:
    def encode(text: str, add_special_tokens: bool) -> Encoded:
        # encode_ordinary: special-token text in the data is text, never a control token.
        ids = enc.encode_ordinary(text)
        tb = [enc.decode_single_token_bytes(i) for i in ids]
        pos, byte_offsets = 0, []
        for b in tb:
            byte_offsets.append((pos, pos + len(b)))
            pos += len(b)
        return Encoded(ids, char_offsets(text, byte_offsets), [False] * len(ids), tb)

    return PythonSide(f"tiktoken:{enc.name}", encode)


def _sentencepiece_side(sp: Any) -> PythonSide:
    def piece_bytes(i: int, piece: str) -> bytes | None:
        if sp.IsUnknown(i):
            return None
        if sp.IsByte(i):
            return bytes([int(piece[3:5], 16)])
        return piece.replace("\u2581", " ").encode("utf-8")

    def pieces(text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and byte offsets. sentencepiece >= 0.2.1 dropped ``immutable_proto`` (and
        ``proto`` needs protobuf); ``offset_mapping`` with ``return_bytes`` replaces it."""
        try:
            out = sp.encode(text, return_type="offset_mapping", return_bytes=True)
            return list(out["ids"]), [tuple(o) for o in out["offsets"]]
        except (TypeError, ValueError):  # older sentencepiece
            proto = sp.encode(text, out_type="immutable_proto")
            return [p.id for p in proto.pieces], [(p.begin, p.end) for p in proto.pieces]

    def encode(text: str, add_special_tokens: bool) -> Encoded:
        ids, offs = pieces(text)
        # A character spelled in byte-fallback pieces: sentencepiece gives the first pieces empty
        # ranges and the last the whole character; give every piece of the run the run's range,
        # as HF does (Llama-2 on "a 🙂": four `<0x..>` pieces all (2, 3)).
        k = 0
        while k < len(ids):
            r = k
            while r < len(ids) and sp.IsByte(ids[r]):
                r += 1
            if r > k:
                run = (min(o[0] for o in offs[k:r]), max(o[1] for o in offs[k:r]))
                offs[k:r] = [run] * (r - k)
            k = max(r, k + 1)
        tb = [piece_bytes(i, sp.IdToPiece(i)) for i in ids]
        special = [bool(sp.IsControl(i)) for i in ids]
        offsets = char_offsets(text, offs)
        if add_special_tokens and sp.bos_id() >= 0:
            ids, offsets = [sp.bos_id(), *ids], [(0, 0), *offsets]
            special, tb = [True, *special], [None, *tb]
        return Encoded(ids, offsets, special, tb)

    return PythonSide("sentencepiece", encode)


def tokenizer_json(tok: Any) -> str:
    """The tokenizer.json text of a tokenizer, path or folder; ``AlignmentError`` if it has none."""
    if isinstance(tok, (str, os.PathLike)):
        p = Path(tok)
        if p.is_dir():
            p = p / "tokenizer.json"
        if not p.is_file():
            raise AlignmentError(
                f"no tokenizer.json at {str(p)!r}: pass a tokenizer.json file, a folder holding "
                "one, or a loaded tokenizer"
            )
        try:
            return p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AlignmentError(
                f"{str(p)!r} is not a tokenizer.json: it is not UTF-8 text (a binary file such "
                "as a sentencepiece tokenizer.model?); pass the tokenizer.json, or load a .model "
                "with sentencepiece.SentencePieceProcessor(model_file=...) and pass that"
            ) from None
    backend = getattr(tok, "backend_tokenizer", None)  # transformers fast tokenizers (v4 and v5)
    if backend is not None:
        return str(backend.to_str())
    if type(tok).__module__.startswith("tokenizers") and hasattr(tok, "to_str"):
        return str(tok.to_str())
    if type(tok).__module__.startswith("transformers"):
        raise AlignmentError(
            f"{type(tok).__name__} is a slow (Python) tokenizer without character offsets; load "
            "it with AutoTokenizer.from_pretrained(..., use_fast=True), or encode yourself and "
            "call dskd_align.align_encodings"
        )
    raise AlignmentError(
        f"cannot align with a {type(tok).__name__}: pass a tokenizers.Tokenizer, a transformers "
        "fast tokenizer, a tiktoken Encoding, a sentencepiece.SentencePieceProcessor, or a path to "
        "a tokenizer.json"
    )


_CACHE_SIZE = 32
_LOCK = threading.Lock()
# JSON hash -> (JSON, core); file identity -> core.
_CORE_CACHE: OrderedDict[int, tuple[str, CoreTokenizer]] = OrderedDict()
_PATH_CACHE: OrderedDict[tuple[Any, ...], CoreTokenizer] = OrderedDict()


def _cached(cache: OrderedDict, key: Any) -> Any:
    with _LOCK:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
        return hit


def _remember(cache: OrderedDict, key: Any, value: Any) -> None:
    with _LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > _CACHE_SIZE:
            cache.popitem(last=False)


def _file_identity(tok: Any) -> tuple[Any, ...] | None:
    """(resolved path, device, inode, size, mtime ns) of the tokenizer.json a path names."""
    p = Path(tok)
    if p.is_dir():
        p = p / "tokenizer.json"
    try:
        st = p.stat()
        return (str(p.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        return None  # tokenizer_json names the problem


def load_core(tok: Any) -> CoreTokenizer:
    """A :class:`CoreTokenizer` for anything with a tokenizer.json, cached (module docs)."""
    if isinstance(tok, CoreTokenizer):
        return tok
    ident = _file_identity(tok) if isinstance(tok, (str, os.PathLike)) else None
    if ident is not None:
        core = _cached(_PATH_CACHE, ident)
        if core is not None:
            return core
    text = tokenizer_json(tok)
    key = hash(text)
    hit = _cached(_CORE_CACHE, key)
    if hit is not None and hit[0] == text:
        core = hit[1]
    else:
        core = CoreTokenizer(text)
        _remember(_CORE_CACHE, key, (text, core))
    if ident is not None:
        _remember(_PATH_CACHE, ident, core)
    return core


def resolve(tok: Any) -> CoreTokenizer | PythonSide:
    """The side the aligner uses for ``tok``: core-tokenized when possible, else Python-encoded."""
    if tok is None:
        raise AlignmentError("tokenizer is None: pass a tokenizer, a tokenizer.json path or folder")
    if isinstance(tok, (CoreTokenizer, PythonSide)):
        return tok
    mod = type(tok).__module__
    if mod.startswith("tiktoken"):
        return _tiktoken_side(tok)
    if mod.startswith("sentencepiece"):
        return _sentencepiece_side(tok)
    return load_core(tok)
