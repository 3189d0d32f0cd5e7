"""The public entry points: :func:`align`, :class:`Aligner`, :func:`align_encodings`.

``Aligner`` builds each side once (tokenizer + token-to-bytes table; ~0.1-1 s for a 150k-262k
vocabulary) and reuses it. ``align`` is the one-shot form: each side is resolved through caches
(a path by file identity, see ``tokenizers.load_core``; a tokenizer object by identity, holding a
reference so an id is never reused while cached, up to 32 objects); an ``Aligner`` over two
resolved sides costs nothing, so any number of tokenizer pairs share the cached sides.

Bad input gets an ``AlignmentError`` naming the field and the fix, never a silent coercion (issue
10): ids must be a 1-D sequence of integers in 0..2^32, offsets ``[N, 2]`` integers, the special
mask booleans or 0/1; ``num_threads`` an int in 0..``MAX_THREADS``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from dskd_align._core import AlignmentError, CoreTokenizer, align_encoded, align_texts_flat
from dskd_align.alignment import Alignment, BatchAlignment
from dskd_align.tokenizers import Encoded, PythonSide, char_offsets, resolve

__all__ = ["MAX_THREADS", "Aligner", "align", "align_encodings"]

# More threads than this is a mistake (a count of texts or bytes passed by position?).
MAX_THREADS = 1024


def _check_threads(num_threads: Any) -> int:
    if (
        not isinstance(num_threads, (int, np.integer))
        or isinstance(num_threads, bool)
        or not 0 <= num_threads <= MAX_THREADS
    ):
        raise AlignmentError(
            f"num_threads must be an int in 0..{MAX_THREADS} (0 = all cores), got {num_threads!r}"
        )
    return int(num_threads)


class Aligner:
    """Aligns texts tokenized by a teacher and a student tokenizer.

    >>> aligner = Aligner("path/to/qwen", "path/to/llama")      # doctest: +SKIP
    >>> aligner("Hello world").pairs                              # doctest: +SKIP
    >>> aligner.batch(texts, num_threads=2)[0].student_coverage   # doctest: +SKIP
    """

    def __init__(self, teacher: Any, student: Any, *, add_special_tokens: bool = False):
        self.teacher = resolve(teacher)
        self.student = resolve(student)
        self.add_special_tokens = add_special_tokens

    def __call__(self, text: str) -> Alignment:
        return self.batch([text])[0]

    def batch(self, texts: Sequence[str], *, num_threads: int = 1) -> BatchAlignment:
        """Aligns every text. ``num_threads`` threads inside the core (0 = all cores; default 1,
        safe in forked DataLoader workers). Results do not depend on ``num_threads``."""
        if isinstance(texts, str):
            raise AlignmentError("batch() takes a list of texts, not one str; use aligner(text)")
        num_threads = _check_threads(num_threads)
        texts = list(texts)
        t, s = self.teacher, self.student
        if isinstance(t, CoreTokenizer) and isinstance(s, CoreTokenizer):
            flat = align_texts_flat(t, s, texts, self.add_special_tokens, num_threads)
            return BatchAlignment(texts, flat)
        parts = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise AlignmentError(f"texts[{i}] is a {type(text).__name__}, not a str")
            parts.append(
                align_encoded(
                    text, self._encode(t, text).as_core(), self._encode(s, text).as_core()
                )
            )
        return BatchAlignment.concat(texts, parts)

    def _encode(self, side: CoreTokenizer | PythonSide, text: str) -> Encoded:
        if isinstance(side, PythonSide):
            return side.encode(text, self.add_special_tokens)
        ids, byte_offsets, special = side.encode(text, self.add_special_tokens)
        offsets = char_offsets(text, byte_offsets)
        return Encoded(
            ids, offsets, special, [side.token_bytes(i) for i in ids], side.dropped_chars
        )


_SIDES: OrderedDict[int, tuple[Any, CoreTokenizer | PythonSide]] = OrderedDict()
_SIDES_SIZE = 32
_SIDES_LOCK = threading.Lock()


def _side(tok: Any) -> CoreTokenizer | PythonSide:
    """``resolve(tok)``, cached by object identity (paths are cached by ``load_core``)."""
    if isinstance(tok, (str, os.PathLike)):
        return resolve(tok)
    with _SIDES_LOCK:
        hit = _SIDES.get(id(tok))
        if hit is not None:
            _SIDES.move_to_end(id(tok))
            return hit[1]
    side = resolve(tok)
    with _SIDES_LOCK:
        _SIDES[id(tok)] = (tok, side)  # the reference keeps id(tok) from being reused
        while len(_SIDES) > _SIDES_SIZE:
            _SIDES.popitem(last=False)
    return side


def align(teacher: Any, student: Any, text: str, *, add_special_tokens: bool = False) -> Alignment:
    """Exact token alignment of ``text`` under two tokenizers (see ALIGNMENT.md).

    ``teacher``/``student``: a ``tokenizers.Tokenizer``, a transformers fast tokenizer, a path to
    a ``tokenizer.json`` or a folder with one, a tiktoken ``Encoding``, or a
    ``sentencepiece.SentencePieceProcessor``.
    """
    aligner = Aligner(_side(teacher), _side(student), add_special_tokens=add_special_tokens)
    return aligner(text)


TokenBytes = Callable[[int], "bytes | None"]


def _as_encoded(side: str, enc: Any, token_bytes: Any) -> tuple[Any, ...]:
    """Reads ids, character offsets and the special mask off an encoding-like object."""
    if enc is None:
        raise AlignmentError(f"{side} encoding is None")
    if isinstance(enc, dict) or hasattr(enc, "keys"):
        ids = enc.get("ids", enc.get("input_ids"))
        offsets = enc.get("offsets", enc.get("offset_mapping"))
        special = enc.get("special_tokens_mask")
    else:
        ids = getattr(enc, "ids", None)
        offsets = getattr(enc, "offsets", None)
        special = getattr(enc, "special_tokens_mask", None)
    if ids is None or offsets is None:
        raise AlignmentError(
            f"{side} encoding has no ids/offsets: pass a tokenizers.Encoding, a transformers "
            "BatchEncoding from return_offsets_mapping=True, or a dict with 'ids' and 'offsets'"
        )
    ids_, offsets_ = _ints(side, "ids", ids, 1), _ints(side, "offsets", offsets, 2)
    for i, x in enumerate(ids_):
        if not 0 <= x < 2**32:
            raise AlignmentError(f"{side}: ids[{i}] = {x} is not a token id (0..2^32)")
    offs = [(int(a), int(b)) for a, b in offsets_]
    for i, (a, b) in enumerate(offs):
        if not (-(2**63) <= a < 2**63 and -(2**63) <= b < 2**63):
            raise AlignmentError(
                f"{side}: token {i} has offsets ({a}, {b}), not character positions of the text"
            )
    special_ = [False] * len(ids_) if special is None else _mask(side, special)
    tb, dropped = None, None
    if token_bytes is not None:
        lookup: Callable[[int], bytes | None]
        if callable(token_bytes) and not isinstance(token_bytes, CoreTokenizer):
            lookup = token_bytes
        else:
            try:
                core = resolve(token_bytes)
            except AlignmentError as e:
                raise AlignmentError(f"{side}_token_bytes: {e}") from None
            if not isinstance(core, CoreTokenizer):
                raise AlignmentError(
                    f"{side}_token_bytes: pass a callable id -> bytes or an HF tokenizer"
                )
            lookup, dropped = core.token_bytes, core.dropped_chars
        tb = [lookup(i) for i in ids_]
        for i, b in enumerate(tb):
            if b is not None and not isinstance(b, bytes):
                raise AlignmentError(
                    f"{side}_token_bytes returned a {type(b).__name__} for ids[{i}] = "
                    f"{ids_[i]}; it must return bytes or None"
                )
    return ids_, offs, special_, tb, dropped


_SHAPES = {1: "a 1-D sequence (one encoding of one text, e.g. enc['input_ids'][0])", 2: "[N, 2]"}


def _ints(side: str, field: str, value: Any, ndim: int) -> list[Any]:
    """``value`` as a list of Python ints (ndim 1) or int pairs (ndim 2), refusing floats,
    strings and wrong shapes by name."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged
        arr = np.asarray(value, dtype=object)
    if arr.size == 0 and arr.ndim <= ndim:
        return []
    want = (arr.ndim == 1) if ndim == 1 else (arr.ndim == 2 and arr.shape[1] == 2)
    if not want:
        raise AlignmentError(
            f"{side}: `{field}` has shape {tuple(arr.shape)}; pass {_SHAPES[ndim]}"
        )
    flat = arr.reshape(-1)
    if arr.dtype.kind not in "iu":
        bad = next(
            (x for x in flat.tolist() if not isinstance(x, int) or isinstance(x, bool)), None
        )
        if bad is not None or arr.dtype.kind == "b":
            bad = flat[0] if bad is None else bad
            raise AlignmentError(
                f"{side}: `{field}` must be integers, got {type(bad).__name__} {bad!r}; pass "
                "the encoding's own integer values (no floats, strings or bools)"
            )
    return arr.tolist()


def _mask(side: str, value: Any) -> list[bool]:
    """The special-token mask: booleans or 0/1, 1-D."""
    arr = np.asarray(value)
    if arr.ndim != 1 and arr.size:
        raise AlignmentError(
            f"{side}: `special_tokens_mask` has shape {tuple(arr.shape)}; pass {_SHAPES[1]}"
        )
    out = []
    for x in arr.reshape(-1).tolist():
        if not (isinstance(x, (bool, int)) and x in (0, 1)):
            raise AlignmentError(
                f"{side}: `special_tokens_mask` must be booleans or 0/1, got "
                f"{type(x).__name__} {x!r}"
            )
        out.append(bool(x))
    return out


def align_encodings(
    text: str,
    teacher: Any,
    student: Any,
    *,
    teacher_token_bytes: Any = None,
    student_token_bytes: Any = None,
) -> Alignment:
    """Aligns two encodings you made yourself (any tokenizer that gives ids, character offsets and
    a special-token mask). ``*_token_bytes`` (a tokenizer, or a callable ``id -> bytes | None``)
    places byte pieces exactly inside multi-byte characters; without it a token spans its whole
    character range. A tokenizer also tells which control characters its normalizer drops (see
    docs/ALIGNMENT.md, rule 1), so prefer it to a callable where you have one."""
    if not isinstance(text, str):
        raise AlignmentError(f"text is a {type(text).__name__}, not a str")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise AlignmentError(
            f"text is not valid Unicode ({e.reason} at index {e.start}); lone surrogates cannot "
            "be tokenized, clean the text (e.g. s.encode('utf-8', 'replace').decode())"
        ) from None
    t = _as_encoded("teacher", teacher, teacher_token_bytes)
    s = _as_encoded("student", student, student_token_bytes)
    return BatchAlignment([text], align_encoded(text, t, s))[0]


def align_many(
    aligner: Aligner, texts: Iterable[str], batch_size: int = 256
) -> Iterable[BatchAlignment]:
    """Streams ``aligner.batch`` over an iterable of texts, ``batch_size`` at a time."""
    buf: list[str] = []
    for t in texts:
        buf.append(t)
        if len(buf) == batch_size:
            yield aligner.batch(buf)
            buf = []
    if buf:
        yield aligner.batch(buf)
