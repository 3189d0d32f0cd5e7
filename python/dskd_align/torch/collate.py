"""``DSKDCollator``: rows of (prompt, response) to a padded teacher/student batch with exact pairs.

Per row and side: ``prompt ids (own chat template) + response ids + EOS``. The response text is
the same on both sides and tokenized on its own, by the Rust core in one batch call that also
aligns it (ids equal the tokenizer's ``add_special_tokens=False`` output); the EOS pair is added
by hand. Pairs become prediction positions (ALIGNMENT.md, "For causal-LM distillation").

Choices recorded here:

- **Truncation** (``max_length`` per side): the response is cut from the right (its EOS goes
  first); pairs whose token is cut on either side are dropped. A prompt longer than
  ``max_length`` keeps its *tail* (the tokens next to the response, which condition it most), and
  the row then has no supervised tokens; a warning would be noise in a data pipeline, so
  ``coverage`` and empty labels are the signal.
- A response token at absolute index 0 (empty prompt, no BOS) has no prediction position, so it
  carries no pair (its label stays; models ignore the first label when shifting).
- **Padding** uses ``pad_token_id``, else ``eos_token_id`` (masked out either way); positions
  include the left-padding offset.
- **Same tokenizer** on both sides (the same object or the same tokenizer.json): no alignment; the
  pairs are the identity over the response and EOS.
- ``num_threads=1`` (default) keeps the core single-threaded, the safe choice in forked
  DataLoader workers; the core's aligner is rebuilt lazily after unpickling (spawn workers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dskd_align import Aligner
from dskd_align.tokenizers import tokenizer_json
from dskd_align.torch.data import DSKDBatch, PromptRenderer, split_row

__all__ = ["DSKDCollator", "RowTokens", "assemble"]


@dataclass(frozen=True)
class RowTokens:
    """One row before padding. Response-local indices: ``pairs [K, 2]`` int64 (teacher, student)
    into ``teacher_response``/``student_response`` (int64), with the EOS pair already included
    (index ``len(response)``) when ``*_eos`` is not None. ``teacher_chunks``/``student_chunks``
    int64: the chunk id (ALIGNMENT.md rule 5, numbered per row, ``-1`` for special tokens) of every
    response token, and of the EOS (its own chunk) when ``*_eos`` is not None."""

    teacher_prompt: list[int]
    student_prompt: list[int]
    teacher_response: np.ndarray
    student_response: np.ndarray
    pairs: np.ndarray
    teacher_eos: int | None
    student_eos: int | None
    teacher_chunks: np.ndarray
    student_chunks: np.ndarray


@dataclass
class Responses:
    """Response texts tokenized on both sides and aligned, per row (int64 arrays, response-local
    indices): ids, ``pairs [K, 2]``, and per token chunk ids (``-1`` for special tokens)."""

    teacher_ids: list[np.ndarray]
    student_ids: list[np.ndarray]
    pairs: list[np.ndarray]
    teacher_chunks: list[np.ndarray]
    student_chunks: list[np.ndarray]


@dataclass(frozen=True)
class SideSpec:
    """How one side is truncated and padded."""

    max_length: int | None
    pad_id: int
    padding_side: str
    pad_to_multiple_of: int | None = None


def _layout(
    prompts: list[list[int]], responses: list[np.ndarray], eos: list[int | None], spec: SideSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Pads one side. Returns ids, mask, labels ``[B, L]`` long, and per row (int64 ``[B]``) the
    absolute index of response token 0 (``start``), the kept prompt length (``plen``) and how
    many response tokens (EOS included) were kept (``kept``)."""
    b = len(prompts)
    seqs, starts, kept = [], np.zeros(b, np.int64), np.zeros(b, np.int64)
    plen = np.zeros(b, np.int64)
    for r, (p, resp, e) in enumerate(zip(prompts, responses, eos, strict=True)):
        tail = resp if e is None else np.append(resp, e)
        if spec.max_length is not None:
            if len(p) > spec.max_length:
                p = p[len(p) - spec.max_length :]  # keep the prompt's tail
            tail = tail[: spec.max_length - len(p)]
        seqs.append((p, tail))
        kept[r], plen[r] = len(tail), len(p)
    lengths = [len(p) + len(t) for p, t in seqs]
    width = max(lengths, default=0)
    if spec.pad_to_multiple_of:
        m = spec.pad_to_multiple_of
        width = -(-width // m) * m
    ids = np.full((b, width), spec.pad_id, np.int64)
    labels = np.full((b, width), -100, np.int64)
    mask = np.zeros((b, width), np.int64)
    for r, ((p, t), n) in enumerate(zip(seqs, lengths, strict=True)):
        off = width - n if spec.padding_side == "left" else 0
        ids[r, off : off + len(p)] = p
        ids[r, off + len(p) : off + n] = t
        labels[r, off + len(p) : off + n] = t
        mask[r, off : off + n] = 1
        starts[r] = off + len(p)
    return (
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        torch.from_numpy(labels),
        starts,
        plen,
        kept,
    )


def _cat(parts: list[np.ndarray]) -> torch.Tensor:
    """Per-row int arrays joined into one ``[A]`` long tensor (empty for an empty batch)."""
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return torch.from_numpy(flat.astype(np.int64))


def _chunk_ids(
    ch_t: np.ndarray, ok_t: np.ndarray, ch_s: np.ndarray, ok_s: np.ndarray, first: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Batch-global chunk ids of one row's response tokens (``-1`` where dropped) and the next
    free id. ``ok_*`` [N] bool: the token was kept and has a prediction position. A chunk keeps
    its id when it has tokens on both sides and all of them are ok (one-sided chunks, like a
    SentencePiece dummy prefix alone, have nothing to compare)."""
    live_t, live_s = np.unique(ch_t[ch_t >= 0]), np.unique(ch_s[ch_s >= 0])
    bad = np.union1d(ch_t[~ok_t], ch_s[~ok_s])
    valid = np.setdiff1d(np.intersect1d(live_t, live_s), bad)  # sorted = in text order

    def lookup(ch: np.ndarray) -> np.ndarray:
        k = np.searchsorted(valid, ch).clip(max=max(len(valid) - 1, 0))
        hit = (valid[k] == ch) if len(valid) else np.zeros(len(ch), bool)
        return np.where(hit, first + k, -1).astype(np.int64)

    return lookup(ch_t), lookup(ch_s), first + len(valid)


def assemble(rows: Sequence[RowTokens], teacher: SideSpec, student: SideSpec) -> DSKDBatch:
    """Truncates, pads and turns response-local pairs into prediction positions and response
    chunks into batch-global chunk ids."""
    tids, tmask, tlab, tstart, tplen, tkept = _layout(
        [r.teacher_prompt for r in rows],
        [r.teacher_response for r in rows],
        [r.teacher_eos for r in rows],
        teacher,
    )
    sids, smask, slab, sstart, splen, skept = _layout(
        [r.student_prompt for r in rows],
        [r.student_response for r in rows],
        [r.student_eos for r in rows],
        student,
    )
    bs, tp, sp = [], [], []
    coverage = np.zeros(len(rows), np.float32)
    supervised_tokens = np.zeros(len(rows), np.int64)
    t_chunk = np.full(tids.shape, -1, np.int64)
    s_chunk = np.full(sids.shape, -1, np.int64)
    next_chunk = 0
    for b, row in enumerate(rows):
        pr = row.pairs.reshape(-1, 2)
        t_pos = tstart[b] + pr[:, 0] - 1
        s_pos = sstart[b] + pr[:, 1] - 1
        # Inside both kept responses, and each token has a real token before it in its row (the
        # one whose logits predict it; with left padding the slot before row start is padding).
        keep = (pr[:, 0] < tkept[b]) & (pr[:, 1] < skept[b])
        keep &= (tplen[b] + pr[:, 0] >= 1) & (splen[b] + pr[:, 1] >= 1)
        tp.append(t_pos[keep])
        sp.append(s_pos[keep])
        bs.append(np.full(int(keep.sum()), b, np.int64))
        supervised = int(skept[b]) - int(splen[b] == 0 and skept[b] > 0)
        supervised_tokens[b] = supervised
        if supervised > 0:
            coverage[b] = keep.sum() / supervised
        n_t, n_s = len(row.teacher_chunks), len(row.student_chunks)
        ok_t = (np.arange(n_t) < tkept[b]) & (tplen[b] + np.arange(n_t) >= 1)
        ok_s = (np.arange(n_s) < skept[b]) & (splen[b] + np.arange(n_s) >= 1)
        ct, cs, next_chunk = _chunk_ids(
            row.teacher_chunks, ok_t, row.student_chunks, ok_s, next_chunk
        )
        t_chunk[b, tstart[b] : tstart[b] + tkept[b]] = ct[: tkept[b]]
        s_chunk[b, sstart[b] : sstart[b] + skept[b]] = cs[: skept[b]]
    return DSKDBatch(
        teacher_input_ids=tids,
        teacher_attention_mask=tmask,
        teacher_labels=tlab,
        teacher_chunk_ids=torch.from_numpy(t_chunk),
        student_input_ids=sids,
        student_attention_mask=smask,
        student_labels=slab,
        student_chunk_ids=torch.from_numpy(s_chunk),
        align_batch=_cat(bs),
        align_teacher_pos=_cat(tp),
        align_student_pos=_cat(sp),
        supervised_tokens=torch.from_numpy(supervised_tokens),
        coverage=torch.from_numpy(coverage),
    )


def _pad_id(tok: Any) -> int:
    for name in ("pad_token_id", "eos_token_id"):
        i = getattr(tok, name, None)
        if i is not None:
            return int(i)
    return 0


def _same_tokenizer(a: Any, b: Any) -> bool:
    return a is b or tokenizer_json(a) == tokenizer_json(b)


@dataclass
class DSKDCollator:
    """Collates rows into a :class:`DSKDBatch` (use as ``DataLoader(collate_fn=collator)``).

    ``teacher_tokenizer``/``student_tokenizer``: transformers fast tokenizers. ``max_length``
    applies to both sides unless ``teacher_max_length`` overrides the teacher's (``None``: no
    truncation). ``padding_side``: ``"right"`` or ``"left"``. ``num_threads``: threads inside the
    core's aligner (0 = all cores). ``add_eos``: end every response with the side's EOS, which is
    ``tokenizer.eos_token_id`` unless ``teacher_eos_token_id``/``student_eos_token_id`` says
    otherwise (a chat model whose turns end with another token, e.g. Llama-3's ``<|eot_id|>``;
    pass the same pair to ``VocabMap(special_pairs=...)``).
    ``use_chat_template``: render prompts with each side's chat template when it has one.
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
    use_chat_template: bool = True
    pad_to_multiple_of: int | None = None
    same_tokenizer: bool = field(init=False, default=False)
    eos: dict[str, int | None] = field(init=False, repr=False, default_factory=dict)
    renderers: dict[str, PromptRenderer] = field(init=False, repr=False, default_factory=dict)
    specs: dict[str, SideSpec] = field(init=False, repr=False, default_factory=dict)
    _aligner: Aligner | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.padding_side not in ("right", "left"):
            raise ValueError(f"padding_side must be 'right' or 'left', got {self.padding_side!r}")
        for name in ("max_length", "teacher_max_length"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {v}")
        for side in ("teacher", "student"):
            tok = getattr(self, f"{side}_tokenizer")
            eos = getattr(self, f"{side}_eos_token_id")
            eos = getattr(tok, "eos_token_id", None) if eos is None else eos
            if self.add_eos and eos is None:
                raise ValueError(
                    f"{side}_tokenizer has no eos_token_id: set tokenizer.eos_token or pass "
                    "add_eos=False"
                )
            self.eos[side] = int(eos) if self.add_eos and eos is not None else None
        self.renderers = {
            s: PromptRenderer(getattr(self, f"{s}_tokenizer"), self.use_chat_template)
            for s in ("teacher", "student")
        }
        self.same_tokenizer = _same_tokenizer(self.teacher_tokenizer, self.student_tokenizer)
        t_max = self.teacher_max_length if self.teacher_max_length is not None else self.max_length
        self.specs = {
            s: SideSpec(
                t_max if s == "teacher" else self.max_length,
                _pad_id(getattr(self, f"{s}_tokenizer")),
                self.padding_side,
                self.pad_to_multiple_of,
            )
            for s in ("teacher", "student")
        }
        if not self.same_tokenizer:
            _ = self.aligner  # build now, so forked workers inherit it instead of each building one

    @property
    def aligner(self) -> Aligner:
        """The core aligner of the two tokenizers (built once)."""
        if self._aligner is None:
            self._aligner = Aligner(self.teacher_tokenizer, self.student_tokenizer)
        return self._aligner

    def __getstate__(self) -> dict[str, Any]:
        # The core tokenizers do not pickle; spawn/forkserver workers rebuild them on first use.
        state = self.__dict__.copy()
        state["_aligner"] = None
        return state

    def responses(self, texts: list[str]) -> Responses:
        """Every response text tokenized on both sides and aligned (response-local indices)."""
        if self.same_tokenizer:
            enc = (
                self.student_tokenizer(texts, add_special_tokens=False)["input_ids"]
                if texts
                else []
            )
            ids = [np.asarray(e, dtype=np.int64) for e in enc]
            ar = [np.arange(len(e), dtype=np.int64) for e in ids]
            pairs = [np.repeat(a[:, None], 2, axis=1) for a in ar]
            return Responses(ids, list(ids), pairs, ar, list(ar))
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

    def rows(
        self,
        prompts: Sequence[Any],
        resp: Responses,
        student_prompts: list[list[int]] | None = None,
        has_eos: Sequence[bool] | None = None,
    ) -> list[RowTokens]:
        """Per-row tokens from prompts and tokenized, aligned responses; adds both EOS, their
        pair and their chunk unless ``has_eos[i]`` is False. ``student_prompts`` replaces the
        rendered ones."""
        t_resp, s_resp, pairs = resp.teacher_ids, resp.student_ids, resp.pairs
        t_prompt = self.renderers["teacher"].ids(prompts)
        s_prompt = (
            student_prompts
            if student_prompts is not None
            else self.renderers["student"].ids(prompts)
        )
        te, se = self.eos["teacher"], self.eos["student"]
        out = []
        for i in range(len(prompts)):
            pr = pairs[i].reshape(-1, 2)
            ct = np.asarray(resp.teacher_chunks[i], np.int64)
            cs = np.asarray(resp.student_chunks[i], np.int64)
            eos = has_eos is None or has_eos[i]
            if eos and te is not None and se is not None:
                pr = np.concatenate([pr, [[len(t_resp[i]), len(s_resp[i])]]]).astype(np.int64)
                end = max(int(ct.max(initial=-1)), int(cs.max(initial=-1))) + 1
                ct, cs = np.append(ct, end), np.append(cs, end)  # the EOS pair: its own chunk
            row_te, row_se = (te, se) if eos else (None, None)
            out.append(
                RowTokens(
                    t_prompt[i], s_prompt[i], t_resp[i], s_resp[i], pr, row_te, row_se, ct, cs
                )
            )
        return out

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> DSKDBatch:
        split = [split_row(row) for row in batch]
        prompts = [p for p, _ in split]
        rows = self.rows(prompts, self.responses([r for _, r in split]))
        return assemble(rows, self.specs["teacher"], self.specs["student"])
