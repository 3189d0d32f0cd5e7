"""The public entry points: :func:`align`, :class:`Aligner`, :func:`align_encodings`.

``Aligner`` builds each side once (tokenizer + token-to-bytes table; ~0.1-1 s for a 150k-262k
vocabulary) and reuses it. ``align`` is the one-shot form; it keeps the last few aligners keyed by
the tokenizer objects (holding a reference, so an id is never reused while cached).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from dskd_align._core import AlignmentError, CoreTokenizer, align_encoded, align_texts_flat
from dskd_align.alignment import Alignment, BatchAlignment
from dskd_align.tokenizers import Encoded, PythonSide, char_offsets, resolve

__all__ = ["Aligner", "align", "align_encodings"]


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
        if num_threads < 0:
            raise AlignmentError(f"num_threads must be >= 0 (0 = all cores), got {num_threads}")
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
        return Encoded(ids, offsets, special, [side.token_bytes(i) for i in ids])


_CACHE: OrderedDict[tuple[int, int, bool], tuple[Any, Any, Aligner]] = OrderedDict()
_CACHE_SIZE = 8


def align(teacher: Any, student: Any, text: str, *, add_special_tokens: bool = False) -> Alignment:
    """Exact token alignment of ``text`` under two tokenizers (see ALIGNMENT.md).

    ``teacher``/``student``: a ``tokenizers.Tokenizer``, a transformers fast tokenizer, a path to
    a ``tokenizer.json`` or a folder with one, a tiktoken ``Encoding``, or a
    ``sentencepiece.SentencePieceProcessor``.
    """
    key = (id(teacher), id(student), add_special_tokens)
    hit = _CACHE.get(key)
    if hit is None or isinstance(teacher, str) or isinstance(student, str):
        hit = (teacher, student, Aligner(teacher, student, add_special_tokens=add_special_tokens))
        _CACHE[key] = hit
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return hit[2](text)


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
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    offsets = [(int(a), int(b)) for a, b in np.asarray(offsets, dtype=np.int64).reshape(-1, 2)]
    special = (
        [False] * len(ids)
        if special is None
        else [bool(x) for x in np.asarray(special).reshape(-1)]
    )
    tb = None
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
            lookup = core.token_bytes
        tb = [lookup(i) for i in ids]
    return ids, offsets, special, tb


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
    character range."""
    if not isinstance(text, str):
        raise AlignmentError(f"text is a {type(text).__name__}, not a str")
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
