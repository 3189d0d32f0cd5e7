"""``DSKDCollator``: dataset rows to a padded teacher/student batch with exact pairs and chunks.

Per row and side: ``prompt ids + response ids + end token``. Rows are read by ``formats.py``
(TRL's formats and ``prompt``/``response``); prompts are rendered the same way on both sides and
responses end with each side's turn-end token (``render.py``); padding and truncation are in
``assemble.py``.

Tokenization, two modes:

- default (``tokenize_jointly=False``): the response text is tokenized on its own, the same text
  on both sides, by the Rust core in one batch call that also aligns it (ids equal the
  tokenizer's ``add_special_tokens=False`` output of the response). A SentencePiece side then
  starts the response with its dummy prefix (``▁Natal|ia``);
- ``tokenize_jointly=True``: each side tokenizes ``rendered prompt + response`` as one text, so
  the ids are what ``apply_chat_template`` (or tokenizing the full text) gives and what the model
  sees at inference (``N|atal|ia``); only the response part is aligned (``joint.py``).

Choices recorded here:

- The end pair (each side's end token, ``render.py``) is added by hand after the response; it is
  one exact pair and one 1x1 chunk.
- **Same tokenizer** on both sides (the same object or the same tokenizer.json): no alignment; the
  pairs and the chunks are the identity over the response and the end token.
- ``num_threads=1`` (default) keeps the core single-threaded, the safe choice in forked
  DataLoader workers; the core's aligner is rebuilt lazily after unpickling (spawn workers).
- Rows made by :func:`dskd_align.torch.precompute_alignments` (``dskd_*`` columns) skip
  tokenization and alignment; the batch is identical to the one built from the raw rows.
- **Pickling** (``__reduce__``): the state as one C-pickled bytes blob, so ``datasets``, which
  fingerprints ``map`` arguments by dill-pickling them in Python (~25 s for two 150k-vocabulary
  tokenizers), hashes bytes instead; the renderers are rebuilt on restore.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dskd_align import Aligner
from dskd_align.tokenizers import tokenizer_json
from dskd_align.torch.assemble import Responses, RowTokens, SideSpec, Tokenized, assemble
from dskd_align.torch.data import DSKDBatch
from dskd_align.torch.formats import Messages, split_row
from dskd_align.torch.render import (
    PromptRenderer,
    TemplateError,
    is_conversational,
    turn_end_token_id,
)

__all__ = ["DSKDCollator", "RowTokens", "assemble"]

SIDES = ("teacher", "student")


def _pad_id(tok: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        i = getattr(tok, name, None)
        if i is not None:
            return int(i)
    return 0


def _same_tokenizer(a: Any, b: Any) -> bool:
    return a is b or tokenizer_json(a) == tokenizer_json(b)


def _restore(cls: type[DSKDCollator], blob: bytes) -> DSKDCollator:
    """Unpickles a :class:`DSKDCollator` (see ``__reduce__``)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(pickle.loads(blob))
    obj.renderers = {
        s: PromptRenderer(getattr(obj, f"{s}_tokenizer"), obj.templated) for s in SIDES
    }
    return obj


@dataclass
class DSKDCollator:
    """Collates rows into a :class:`DSKDBatch` (use as ``DataLoader(collate_fn=collator)``).

    ``teacher_tokenizer``/``student_tokenizer``: transformers fast tokenizers. ``max_length``
    applies to both sides unless ``teacher_max_length`` overrides the teacher's (``None``: no
    truncation). ``padding_side``: ``"right"`` or ``"left"``. ``num_threads``: threads inside the
    core's aligner (0 = all cores). ``use_chat_template``: ``None`` (plain rows plain, chat rows
    through each side's template), ``True`` or ``False`` for every row (``render.py``).
    ``tokenize_jointly``: tokenize prompt + response as one text per side (module notes).
    ``add_eos``: end every response with the side's end token: its template's turn-end token on
    templated rows, ``eos_token_id`` on plain rows; ``teacher_eos_token_id``/
    ``student_eos_token_id`` force one id for every row. Pass :attr:`special_pairs` to
    ``VocabMap`` so the map pairs the same end tokens.
    """

    teacher_tokenizer: Any = field(repr=False)
    student_tokenizer: Any = field(repr=False)
    max_length: int | None = None
    teacher_max_length: int | None = None
    padding_side: str = "right"
    num_threads: int = 1
    add_eos: bool = True
    teacher_eos_token_id: int | None = None
    student_eos_token_id: int | None = None
    use_chat_template: bool | None = None
    pad_to_multiple_of: int | None = None
    tokenize_jointly: bool = False
    same_tokenizer: bool = field(init=False, default=False)
    eos: dict[str, int | None] = field(init=False, repr=False, default_factory=dict)
    turn_end: dict[str, int | None] = field(init=False, repr=False, default_factory=dict)
    renderers: dict[str, PromptRenderer] = field(init=False, repr=False, default_factory=dict)
    specs: dict[str, SideSpec] = field(init=False, repr=False, default_factory=dict)
    _aligner: Aligner | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        if self.use_chat_template not in (None, True, False):
            raise ValueError(
                f"use_chat_template must be None, True or False, got {self.use_chat_template!r}"
            )
        for name in ("max_length", "teacher_max_length"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        self.renderers = {
            s: PromptRenderer(getattr(self, f"{s}_tokenizer"), self.templated) for s in SIDES
        }
        if self.use_chat_template:
            self._need_templates("use_chat_template=True")
        for side in SIDES:
            tok = getattr(self, f"{side}_tokenizer")
            forced = getattr(self, f"{side}_eos_token_id")
            eos = getattr(tok, "eos_token_id", None) if forced is None else forced
            turn = forced if forced is not None else turn_end_token_id(tok)
            if self.add_eos and eos is None and self.use_chat_template is not True:
                raise ValueError(
                    f"{side}_tokenizer has no eos_token_id: set tokenizer.eos_token, pass "
                    f"{side}_eos_token_id, or add_eos=False"
                )
            self.eos[side] = int(eos) if self.add_eos and eos is not None else None
            turn = turn if turn is not None else eos
            self.turn_end[side] = int(turn) if self.add_eos and turn is not None else None
        self.same_tokenizer = _same_tokenizer(self.teacher_tokenizer, self.student_tokenizer)
        t_max = self.teacher_max_length if self.teacher_max_length is not None else self.max_length
        self.specs = {
            s: SideSpec(
                t_max if s == "teacher" else self.max_length,
                _pad_id(getattr(self, f"{s}_tokenizer")),
                self.padding_side,
                self.pad_to_multiple_of,
            )
            for s in SIDES
        }
        if not self.same_tokenizer:
            _ = self.aligner  # build now, so forked workers inherit it instead of each building one

    def _need_templates(self, why: str) -> None:
        missing = [s for s in SIDES if not self.renderers[s].has_template]
        if missing:
            raise TemplateError(
                f"{why} needs a chat template on both sides; the {' and '.join(missing)} "
                "tokenizer has none: set tokenizer.chat_template, or pass "
                "use_chat_template=False to render both sides as plain text"
            )

    @property
    def aligner(self) -> Aligner:
        """The core aligner of the two tokenizers (built once)."""
        if self._aligner is None:
            self._aligner = Aligner(self.teacher_tokenizer, self.student_tokenizer)
        return self._aligner

    def __getstate__(self) -> dict[str, Any]:
        # The core tokenizers do not pickle; spawn/forkserver workers rebuild them on first use.
        # The renderers hold a bound method of self: rebuilt on restore.
        state = self.__dict__.copy()
        state["_aligner"] = None
        state["renderers"] = None
        return state

    def __reduce__(self) -> tuple[Any, ...]:
        # One standard (C) pickle of the state, as bytes: ``datasets`` fingerprints map()
        # arguments by dill-pickling them in Python, ~25 s for two 150k-vocabulary tokenizers;
        # bytes hash in milliseconds, and worker processes get the same bytes.
        blob = pickle.dumps(self.__getstate__(), protocol=pickle.HIGHEST_PROTOCOL)
        return (_restore, (type(self), blob))

    # ---- rendering policy (render.py) ----

    def templated(self, prompt: str | Messages) -> bool:
        """Whether a row with this prompt goes through the chat templates (both sides)."""
        if self.use_chat_template is None and is_conversational(prompt):
            self._need_templates("a conversational row (a message list)")
            return True
        return bool(self.use_chat_template)

    def end_ids(self, templated: bool) -> tuple[int | None, int | None]:
        """(teacher, student) end token of a row (``None`` with ``add_eos=False``)."""
        ends = self.turn_end if templated else self.eos
        return ends["teacher"], ends["student"]

    @property
    def special_pairs(self) -> list[tuple[int, int]]:
        """The end pairs this collator emits, for ``VocabMap(special_pairs=...)`` (templated
        rows' pair first, then the EOS pair where it differs)."""
        out: list[tuple[int, int]] = []
        for templated in (True, False):
            t, s = self.end_ids(templated)
            if t is not None and s is not None and (t, s) not in out:
                out.append((t, s))
        return out

    def prompt_ids(
        self, side: str, prompts: Sequence[str | Messages], templated: Sequence[bool] | None = None
    ) -> list[list[int]]:
        """``side``'s prompt ids of every prompt (BOS included), rendered by the policy."""
        flags = [self.templated(p) for p in prompts] if templated is None else templated
        return self.renderers[side].ids(prompts, flags)

    # ---- tokenization and alignment ----

    def responses(self, texts: list[str]) -> Responses:
        """Every response text tokenized on its own on both sides and aligned."""
        if self.same_tokenizer:
            enc = (
                self.student_tokenizer(texts, add_special_tokens=False)["input_ids"]
                if texts
                else []
            )
            ids = [np.asarray(e, dtype=np.int64) for e in enc]
            return Responses.identity(ids)
        ba = self.aligner.batch(texts, num_threads=self.num_threads)
        ts, ss, ps = ba.teacher_splits, ba.student_splits, ba.pair_splits
        n = range(len(texts))
        return Responses(
            [ba.teacher_ids[ts[i] : ts[i + 1]] for i in n],
            [ba.student_ids[ss[i] : ss[i + 1]] for i in n],
            [ba.pairs[ps[i] : ps[i + 1]] for i in n],
            [ba.teacher_chunks[ts[i] : ts[i + 1]] for i in n],
            [ba.student_chunks[ss[i] : ss[i + 1]] for i in n],
        )

    def tokenize(self, batch: Sequence[Mapping[str, Any]]) -> Tokenized:
        """Rows to prompt ids and aligned responses (everything but padding)."""
        split = [split_row(row) for row in batch]
        prompts = [p for p, _ in split]
        texts = [r for _, r in split]
        flags = [self.templated(p) for p in prompts]
        if self.tokenize_jointly:
            from dskd_align.torch.joint import joint_tokenize

            return joint_tokenize(self, prompts, flags, texts)
        return Tokenized(
            flags,
            self.prompt_ids("teacher", prompts, flags),
            self.prompt_ids("student", prompts, flags),
            self.responses(texts),
        )

    def rows(self, tok: Tokenized, has_eos: Sequence[bool] | None = None) -> list[RowTokens]:
        """Per-row tokens; adds both end tokens, their pair and their chunk unless
        ``has_eos[i]`` is False."""
        resp = tok.responses
        out = []
        for i, templated in enumerate(tok.templated):
            t_resp, s_resp = resp.teacher_ids[i], resp.student_ids[i]
            pr = np.asarray(resp.pairs[i], np.int64).reshape(-1, 2)
            ct = np.asarray(resp.teacher_chunks[i], np.int64)
            cs = np.asarray(resp.student_chunks[i], np.int64)
            te, se = self.end_ids(templated)
            if (has_eos is None or has_eos[i]) and te is not None and se is not None:
                pr = np.concatenate([pr, [[len(t_resp), len(s_resp)]]]).astype(np.int64)
                end = max(int(ct.max(initial=-1)), int(cs.max(initial=-1))) + 1
                ct, cs = np.append(ct, end), np.append(cs, end)  # the end pair: its own chunk
            else:
                te = se = None
            prompts = tok.teacher_prompts[i], tok.student_prompts[i]
            out.append(RowTokens(*prompts, t_resp, s_resp, pr, te, se, ct, cs))
        return out

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> DSKDBatch:
        from dskd_align.torch.precompute import is_precomputed, read_precomputed

        if batch and all(is_precomputed(row) for row in batch):
            tok = read_precomputed(self, batch)
        else:
            tok = self.tokenize(batch)
        return assemble(self.rows(tok), self.specs["teacher"], self.specs["student"])
