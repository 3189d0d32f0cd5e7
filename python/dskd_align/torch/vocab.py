"""Byte-canonical vocabulary maps between a teacher and a student tokenizer (the overlap O of DSKD).

Two token ids are twins when they stand for the same bytes (the core's ``token_bytes`` table), so
GPT-2 ``Ġx``, SentencePiece ``▁x`` and a Llama-3 ``Ġx`` all meet as ``b" x"``, and ``Ċ``,
``<0x0A>`` and a literal ``"\\n"`` piece all meet as ``b"\\n"``. Raw string equality of the
vocabularies finds only the spellings two families happen to share (``raw_overlap``, kept for
comparison; ``benches/vocab_overlap.py`` prints both).

Choices recorded here:

- **Several ids with the same bytes on one side** (Gemma-3 has a ``\\n`` piece and the byte
  fallback ``<0x0A>``; Llama-2 has ``x`` and ``<0x78>``; BERT has ``x`` and ``##x``): every one of
  them maps to the other side, but to one *representative* id there: a regular piece before a
  byte-fallback ``<0xNN>`` piece (the tokenizer only emits byte fallback when no piece exists, so
  the regular piece is the id it would produce), then the lowest id. O is one-to-one: it pairs
  the two representatives of every shared byte string, so ``t2s``/``s2t`` are inverse on O.
- **WordPiece ``##x`` matches ``x``.** The core gives both BERT ``x`` (word-initial) and ``##x``
  (continuation) the bytes ``x``: WordPiece tokens never carry the space, the pre-tokenizer drops
  it. A byte-level ``x`` (glued to what precedes it) has exactly the meaning of ``##x``, so
  refusing the match would lose most of a WordPiece vocabulary; the representative of ``x`` is
  then the lower id (BERT's word-initial ``x``).
- **Special tokens** never take part in byte matching (Qwen's ``<|endoftext|>`` text is not
  GPT-2's control token). BOS, EOS and PAD are mapped by role, EOS first (it is the one special
  that is a prediction target), then BOS, then PAD; a role pair enters O only when neither id is
  mapped yet (GPT-2's single ``<|endoftext|>`` is both its BOS and EOS: it pairs with Llama-2's
  ``</s>``, and ``s2t[<s>]`` still points at it). Before the roles come the caller's
  ``special_pairs`` and then, with ``match_turn_ends`` (default), the two chat templates'
  turn-end tokens (``render.turn_end_token_id``: Qwen's ``<|im_end|>`` with Llama-3's
  ``<|eot_id|>``), the pair the collator ends templated rows with, so the map and the batches
  agree without the caller passing it. With ``match_special_names`` (default) the
  remaining special tokens whose strings are equal on both sides pair too (``<|im_start|>`` of
  Qwen2.5 and Qwen3), again only when both are free.
- **Model vocabularies larger than the tokenizer** (Qwen2.5 embeds 152064 rows for 151665 ids):
  the maps are sized to the model's rows and padding rows are ``-1`` (never a target, never in O).
  Ids at or beyond a *smaller* model vocabulary are ignored by the constructor (a map over a
  subset is legal); :meth:`VocabMap.for_models` and :func:`check_vocab_sizes`, the paths the
  trainer takes, refuse a tokenizer with more ids than its model's head has rows (the wrong
  tokenizer for the model, or added tokens without ``resize_token_embeddings``), and
  :meth:`VocabMap.check_models` refuses a map sized for other heads (``VocabMap(t, s)`` without
  sizes, then a model whose head has padding rows), so the mistake surfaces when the map is
  built, not as a shape error at the first forward.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import tokenizers
import torch

from dskd_align import CoreTokenizer, load_core
from dskd_align.tokenizers import tokenizer_json
from dskd_align.torch.render import turn_end_token_id

__all__ = ["VocabMap", "check_vocab_sizes", "head_rows", "raw_string_overlap", "role_ids"]

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_ROLES = ("eos", "bos", "pad")
# Role names for a bare ``tokenizers.Tokenizer`` (no transformers attributes): the spellings the
# major families use, tried in order.
_ROLE_NAMES = {
    "bos": ("<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>", "[CLS]"),
    "eos": ("</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>", "[SEP]"),
    "pad": ("<pad>", "[PAD]", "<|pad|>", "<|finetune_right_pad_id|>"),
}


def _backend(tok: Any) -> tokenizers.Tokenizer:
    """The ``tokenizers.Tokenizer`` behind a transformers tokenizer, a Tokenizer, or a path."""
    if isinstance(tok, tokenizers.Tokenizer):
        return tok
    backend = getattr(tok, "backend_tokenizer", None)
    if isinstance(backend, tokenizers.Tokenizer):
        return backend
    return tokenizers.Tokenizer.from_str(tokenizer_json(tok))


def role_ids(tok: Any) -> dict[str, int]:
    """``{"bos"|"eos"|"pad": id}`` for the roles ``tok`` has.

    A transformers tokenizer answers through ``bos_token_id``/``eos_token_id``/``pad_token_id``;
    a bare ``tokenizers.Tokenizer`` (or path) by the usual names among its special tokens.
    """
    out: dict[str, int] = {}
    if hasattr(tok, "eos_token_id"):
        for role in _ROLES:
            i = getattr(tok, f"{role}_token_id", None)
            if i is not None:
                out[role] = int(i)
        return out
    backend = _backend(tok)
    specials = {t.content: i for i, t in backend.get_added_tokens_decoder().items() if t.special}
    for role, names in _ROLE_NAMES.items():
        for name in names:
            if name in specials:
                out[role] = specials[name]
                break
    return out


@dataclass(frozen=True)
class _Side:
    """One vocabulary as the matcher sees it (Python lists, built once)."""

    size: int  # rows of the map (model vocab size)
    bytes_of: list[bytes | None]  # None: special, unknown, empty or beyond the model rows
    rank: list[tuple[int, int]]  # representative order: (is byte fallback, id)
    strings: list[str | None]
    specials: dict[str, int]  # special token string -> id (within the model rows)


def _side(tok: Any, vocab_size: int | None) -> _Side:
    core: CoreTokenizer = load_core(tok)
    backend = _backend(tok)
    n = core.table_size
    size = n if vocab_size is None else int(vocab_size)
    if size <= 0:
        raise ValueError(f"vocab_size must be positive, got {vocab_size}")
    live = min(n, size)
    bytes_of: list[bytes | None] = [None] * live
    strings: list[str | None] = [None] * live
    rank: list[tuple[int, int]] = [(0, i) for i in range(live)]
    specials: dict[str, int] = {}
    for i in range(live):
        s = backend.id_to_token(i)
        strings[i] = s
        if core.is_special(i):
            if s is not None:
                specials.setdefault(s, i)
            continue
        b = core.token_bytes(i)
        if not b:
            continue
        bytes_of[i] = b
        if len(b) == 1 and s is not None and _BYTE_FALLBACK.match(s):
            rank[i] = (1, i)
    return _Side(size, bytes_of, rank, strings, specials)


def _text_strings(side: _Side) -> set[str]:
    """The token strings of the ids that take part in byte matching."""
    pairs = zip(side.strings, side.bytes_of, strict=True)
    return {x for x, b in pairs if x is not None and b is not None}


def _representatives(side: _Side) -> dict[bytes, int]:
    """bytes -> the id of ``side`` chosen to stand for them (see the module notes)."""
    best: dict[bytes, int] = {}
    for i, b in enumerate(side.bytes_of):
        if b is None:
            continue
        j = best.get(b)
        if j is None or side.rank[i] < side.rank[j]:
            best[b] = i
    return best


@dataclass(init=False, eq=False)
class VocabMap:
    """Teacher <-> student token maps by the bytes the tokens stand for.

    Attributes (all ``torch.long``, CPU until :meth:`to`):

    - ``t2s [V_t]``: the student twin of every teacher id, ``-1`` where none;
    - ``s2t [V_s]``: the teacher twin of every student id, ``-1`` where none;
    - ``overlap_teacher_ids [|O|]``, ``overlap_student_ids [|O|]``: the one-to-one overlap O
      (sorted by teacher id); ``t2s[overlap_teacher_ids] == overlap_student_ids`` and back;
    - ``raw_overlap``: how many non-special token *strings* the two vocabularies share (the
      naive count, for comparison only).

    ``V_t``/``V_s`` are the model vocabulary sizes when given (``teacher_vocab_size``,
    ``student_vocab_size``: the embedding rows, e.g. ``model.config.vocab_size``), else the
    tokenizer's table size. ``teacher_tok``/``student_tok``: a transformers fast tokenizer, a
    ``tokenizers.Tokenizer``, or a path to a tokenizer.json (or its folder). ``special_pairs``:
    (teacher id, student id) pairs linked before the roles, where both ids are still unmapped
    (``collator.special_pairs``); ``match_turn_ends``: link the chat templates' turn-end tokens
    next (module notes).
    """

    t2s: torch.Tensor
    s2t: torch.Tensor
    overlap_teacher_ids: torch.Tensor
    overlap_student_ids: torch.Tensor
    raw_overlap: int

    def __init__(
        self,
        teacher_tok: Any,
        student_tok: Any,
        teacher_vocab_size: int | None = None,
        student_vocab_size: int | None = None,
        *,
        special_pairs: Sequence[tuple[int, int]] = (),
        match_special_names: bool = True,
        match_turn_ends: bool = True,
    ) -> None:
        t = _side(teacher_tok, teacher_vocab_size)
        s = _side(student_tok, student_vocab_size)
        t2s = [-1] * t.size
        s2t = [-1] * s.size
        rep_t, rep_s = _representatives(t), _representatives(s)
        for i, b in enumerate(t.bytes_of):
            if b is not None and b in rep_s:
                t2s[i] = rep_s[b]
        for j, b in enumerate(s.bytes_of):
            if b is not None and b in rep_t:
                s2t[j] = rep_t[b]
        pairs = [(rep_t[b], rep_s[b]) for b in rep_t.keys() & rep_s.keys()]

        def link(i: int, j: int) -> None:
            free_t, free_s = t2s[i] == -1, s2t[j] == -1
            if free_t:
                t2s[i] = j
            if free_s:
                s2t[j] = i
            if free_t and free_s:
                pairs.append((i, j))

        for i, j in special_pairs:  # the caller's pairs (e.g. turn-end tokens) before the roles
            if not (0 <= i < t.size and 0 <= j < s.size):
                raise ValueError(f"special_pairs: ({i}, {j}) outside the vocabularies")
            link(int(i), int(j))
        if match_turn_ends:
            te, se = turn_end_token_id(teacher_tok), turn_end_token_id(student_tok)
            if te is not None and se is not None and te < t.size and se < s.size:
                link(te, se)
        rt, rs = role_ids(teacher_tok), role_ids(student_tok)
        for role in _ROLES:
            ri, rj = rt.get(role), rs.get(role)
            if ri is not None and rj is not None and ri < t.size and rj < s.size:
                link(ri, rj)
        if match_special_names:
            for name, ni in sorted(t.specials.items(), key=lambda kv: kv[1]):
                nj = s.specials.get(name)
                if nj is not None:
                    link(ni, nj)
        pairs.sort()
        self.t2s = torch.tensor(t2s, dtype=torch.long)
        self.s2t = torch.tensor(s2t, dtype=torch.long)
        self.overlap_teacher_ids = torch.tensor([p[0] for p in pairs], dtype=torch.long)
        self.overlap_student_ids = torch.tensor([p[1] for p in pairs], dtype=torch.long)
        self.raw_overlap = len(_text_strings(t) & _text_strings(s))

    @property
    def num_overlap(self) -> int:
        """|O|."""
        return int(self.overlap_teacher_ids.numel())

    @property
    def teacher_vocab_size(self) -> int:
        return int(self.t2s.numel())

    @property
    def student_vocab_size(self) -> int:
        return int(self.s2t.numel())

    @classmethod
    def for_models(
        cls,
        teacher_tok: Any,
        student_tok: Any,
        teacher_model: Any,
        student_model: Any,
        **kwargs: Any,
    ) -> VocabMap:
        """The map sized to both models' heads (``head_rows``), after :func:`check_vocab_sizes`.
        ``*_model``: a model, its head weight ``[V, d]``, or its row count; ``kwargs``: as for
        the constructor (``special_pairs=collator.special_pairs``, ...)."""
        v_t, v_s = check_vocab_sizes(teacher_tok, student_tok, teacher_model, student_model)
        return cls(teacher_tok, student_tok, v_t, v_s, **kwargs)

    def check_models(self, teacher_model: Any, student_model: Any) -> None:
        """Raises ``ValueError`` (naming the fix) unless the maps have one entry per head row of
        each model (a model, its head weight ``[V, d]``, or its row count)."""
        for side, have, model in (
            ("teacher", self.teacher_vocab_size, teacher_model),
            ("student", self.student_vocab_size, student_model),
        ):
            rows = head_rows(model)
            if rows != have:
                raise ValueError(
                    f"this VocabMap has {have} {side} entries but the {side} model's head has "
                    f"{rows} rows: build it with VocabMap.for_models(teacher_tok, student_tok, "
                    f"teacher_model, student_model) (or pass {side}_vocab_size={rows})"
                )

    def to(self, device: torch.device | str) -> VocabMap:
        """A copy with every tensor on ``device``."""
        out = copy.copy(self)
        for name in ("t2s", "s2t", "overlap_teacher_ids", "overlap_student_ids"):
            setattr(out, name, getattr(self, name).to(device))
        return out

    def __repr__(self) -> str:
        return (
            f"VocabMap(V_t={self.teacher_vocab_size}, V_s={self.student_vocab_size}, "
            f"overlap={self.num_overlap}, raw_overlap={self.raw_overlap})"
        )


def head_rows(model: Any) -> int:
    """Output rows of a model (its logits' last dimension): the output embedding's rows when it
    has one, else ``config.vocab_size``; an int or an ``[V, d]`` weight tensor passes through."""
    if isinstance(model, int):
        return model
    if isinstance(model, torch.Tensor):
        return int(model.shape[0])
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    weight = getattr(head, "weight", None)
    if isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size is None:
        raise ValueError(
            f"cannot tell the vocabulary rows of a {type(model).__name__}: pass the model's "
            "vocab size as an int (e.g. model.config.vocab_size)"
        )
    return int(size)


def check_vocab_sizes(
    teacher_tok: Any, student_tok: Any, teacher_model: Any, student_model: Any
) -> tuple[int, int]:
    """Raises ``ValueError`` (naming the fix) when a tokenizer has ids its model has no row for.

    ``*_model``: a model, its head weight ``[V, d]`` or its row count. Returns the two row
    counts ``(V_t, V_s)``."""
    out = []
    for side, tok, model in (
        ("teacher", teacher_tok, teacher_model),
        ("student", student_tok, student_model),
    ):
        rows = head_rows(model)
        ids = load_core(tok).table_size
        if ids > rows:
            raise ValueError(
                f"the {side} tokenizer has {ids} ids but the {side} model's head has {rows} rows: "
                f"the tokenizer does not belong to this model (check {side} paths), or tokens "
                f"were added to it without model.resize_token_embeddings(len(tokenizer))"
            )
        out.append(rows)
    return out[0], out[1]


def raw_string_overlap(teacher_tok: Any, student_tok: Any) -> int:
    """Non-special token strings both vocabularies contain (``Ġx`` != ``▁x``): the naive count."""
    t, s = _side(teacher_tok, None), _side(student_tok, None)
    return len(_text_strings(t) & _text_strings(s))
