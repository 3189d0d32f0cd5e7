"""On-policy batches: the student's own samples, re-tokenized by the teacher and aligned.

``OnPolicyBatcher(collator)(rows, generated, prompt_length)`` builds the same :class:`DSKDBatch`
the collator builds for ``{"prompt", "response": <what the student wrote>}``, except that the
student side keeps the ids it generated. Steps per row:

1. The generated part ``generated[b, prompt_length:]`` ends at the first stop token: the row's
   end token (the student's turn-end token on templated rows, its EOS on plain rows: see
   ``render.py``), its EOS, its pad id, or any special token (a turn marker, an unknown id).
   Only a stop at the row's end token keeps it (and its pair and chunk), as the collator does;
   otherwise the row has no end token ("EOS" below).
2. The response text is rebuilt from the core's token bytes, not ``tokenizer.decode`` (which
   cleans up spaces and replaces invalid bytes, so the teacher would read other text than the
   student wrote). A SentencePiece dummy prefix (the ``▁`` that the student's tokenizer puts
   before a text on its own) on the first token stands for no text, as in the collator. A
   Metaspace ``prepend_scheme="first"`` tokenizer adds no prefix to a text that starts with a
   space, so when the text left after taking the prefix off starts with whitespace and does
   not re-tokenize to the generated ids, the space is kept if that text does.
3. **Invalid UTF-8** (a response that stops inside a multi-byte character, or byte-fallback
   pieces that do not form one): the response is cut before the first token that reaches into
   the bad bytes, and the row loses its EOS. ``errors="replace"`` was rejected: the teacher would
   read U+FFFD where the student wrote bytes, so no token there is an exact pair anyway, and the
   student's byte pieces would no longer lie inside the text.
4. When the student's tokenizer, run on that text, gives back the generated ids (the usual case),
   the row goes through the collator's own batch path, so both batches are equal. Otherwise the
   pairs come from :func:`dskd_align.align_encodings` with the generated ids and the byte
   offsets computed from their token bytes; the teacher side is its tokenizer's output, except
   with one tokenizer (``collator.same_tokenizer``), where it is the generated ids too: the
   teacher scores what the student wrote, position by position.

With ``tokenize_jointly`` the teacher side is still the response tokenized on its own (the
student's ids are what it generated): on-policy batches then differ from the collator's.

Student prompt ids are the ones the student generated from: ``generated[b, :prompt_length]``
without its padding, read from ``attention_mask`` when given, else the student's rendering of the
prompt (which must then match the ids, or a ``ValueError`` asks for the mask).
:meth:`OnPolicyBatcher.generation_inputs` makes those left-padded prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dskd_align import Alignment, CoreTokenizer, align_encodings, load_core
from dskd_align.tokenizers import char_offsets
from dskd_align.torch.assemble import Tokenized
from dskd_align.torch.collate import DSKDCollator, assemble
from dskd_align.torch.data import DSKDBatch
from dskd_align.torch.formats import Messages, prompt_only

__all__ = ["DecodedResponse", "OnPolicyBatcher", "prompt_of"]


def prompt_of(row: Any) -> str | Messages:
    """The prompt of a row: a str, ``{"prompt": str | [messages]}``, or ``{"messages": [...]}``
    (a trailing assistant message, the gold response, is dropped); see ``formats.py``."""
    return prompt_only(row)


@dataclass(frozen=True)
class DecodedResponse:
    """One generated response as text. ``ids [N]`` int64: the kept generated ids (stop token
    excluded); ``spans [N, 2]`` int64: the UTF-8 byte range of ``text`` each stands for;
    ``has_eos``: it stopped at the EOS; ``cut_invalid``: cut at invalid UTF-8 (step 3)."""

    text: str
    ids: np.ndarray
    spans: np.ndarray
    has_eos: bool
    cut_invalid: bool


@dataclass
class OnPolicyBatcher:
    """Turns student generations into a :class:`DSKDBatch` laid out like ``collator``'s."""

    collator: DSKDCollator
    _core: CoreTokenizer | None = field(init=False, default=None, repr=False)
    _prefix: bool = field(init=False, default=False, repr=False)

    @property
    def student_core(self) -> CoreTokenizer:
        if self._core is None:
            c = self.collator
            core = c.aligner.student if not c.same_tokenizer else None
            self._core = core if isinstance(core, CoreTokenizer) else load_core(c.student_tokenizer)
            # Does the student put a dummy-prefix space before a text on its own?
            ids = self._core.encode("a", False)[0]
            self._prefix = bool(ids) and (self._core.token_bytes(ids[0]) or b"").startswith(b" ")
        return self._core

    @property
    def stop_token_ids(self) -> list[int]:
        """The student's end tokens (templated rows' turn end, plain rows' EOS, its EOS), for
        ``model.generate(eos_token_id=...)``: a chat student must stop at its turn end."""
        c = self.collator
        ids = [c.end_ids(True)[1], c.end_ids(False)[1], c.student_tokenizer.eos_token_id]
        return list(dict.fromkeys(int(i) for i in ids if i is not None))

    def generation_inputs(self, rows: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Left-padded student prompts for ``model.generate``: ``input_ids``, ``attention_mask``
        ``[B, L_prompt]`` long."""
        ids = self.collator.prompt_ids("student", [prompt_of(r) for r in rows])
        width = max((len(i) for i in ids), default=0)
        pad = self.collator.specs["student"].pad_id
        out = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for b, i in enumerate(ids):
            if i:
                out[b, width - len(i) :] = torch.tensor(i)
                mask[b, width - len(i) :] = 1
        return {"input_ids": out, "attention_mask": mask}

    def decode(self, response_ids: Sequence[int], end: int | None = None) -> DecodedResponse:
        """The exact text of one generated response (steps 1-3 of the module notes). ``end``:
        the row's end token (default: the plain rows' one, ``collator.end_ids(False)``)."""
        core = self.student_core
        tok = self.collator.student_tokenizer
        eos = self.collator.end_ids(False)[1] if end is None else end
        eos = getattr(tok, "eos_token_id", None) if eos is None else eos
        pad = getattr(tok, "pad_token_id", None)
        kept: list[int] = []
        pieces: list[bytes] = []
        has_eos = False
        for i in response_ids:
            i = int(i)
            b = core.token_bytes(i) if 0 <= i < core.table_size else None
            if i in (eos, pad) or b is None or core.is_special(i):
                has_eos = i == eos
                break
            kept.append(i)
            pieces.append(b)
        if pieces and self._prefix and pieces[0].startswith(b" "):
            stripped, rest = pieces[0][1:], b"".join(pieces[1:])
            keep_space = (
                (stripped + rest)[:1].isspace()
                and not self._encodes_to(stripped + rest, kept)
                and self._encodes_to(pieces[0] + rest, kept)
            )
            if not keep_space:
                pieces[0] = stripped  # the dummy prefix stands for no text
        ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
        raw = b"".join(pieces)
        cut_invalid = False
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            n = int(np.searchsorted(ends, err.start, side="right"))  # tokens ending by the bad byte
            kept, ends = kept[:n], ends[:n]
            text = raw[: int(ends[-1]) if n else 0].decode("utf-8")
            has_eos, cut_invalid = False, True
        spans = np.stack([np.append(0, ends[:-1]), ends], axis=1) if len(ends) else np.zeros((0, 2))
        return DecodedResponse(
            text, np.asarray(kept, np.int64), spans.astype(np.int64), has_eos, cut_invalid
        )

    def _encodes_to(self, raw: bytes, ids: list[int]) -> bool:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return self.student_core.encode(text, False)[0] == ids

    def _student_prompts(
        self, prompts: list[Any], generated: torch.Tensor, prompt_length: int, mask: Any
    ) -> list[list[int]]:
        area = generated[:, :prompt_length].tolist()
        if mask is not None:
            m = mask[:, :prompt_length].bool().tolist()
            rows = zip(area, m, strict=True)
            return [[i for i, k in zip(a, mk, strict=True) if k] for a, mk in rows]
        rendered = self.collator.prompt_ids("student", prompts)
        for b, (a, r) in enumerate(zip(area, rendered, strict=True)):
            if a[len(a) - len(r) :] != r or len(r) > len(a):
                raise ValueError(
                    f"row {b}: the prompt ids in generated[:, :prompt_length] are not the "
                    "student's rendering of the prompt; pass attention_mask (the generation "
                    "input's mask)"
                )
        return rendered

    def __call__(
        self,
        rows: Sequence[Any],
        generated: torch.Tensor,
        prompt_length: int,
        attention_mask: torch.Tensor | None = None,
    ) -> DSKDBatch:
        """``rows``: the prompts (see :func:`prompt_of`); ``generated [B, prompt_length + L_gen]``
        long: ``model.generate`` output (prompt part padded, typically on the left);
        ``attention_mask [B, >= prompt_length]``: the generation input's mask (optional)."""
        c = self.collator
        if generated.ndim != 2 or generated.shape[0] != len(rows):
            raise ValueError(f"generated must be [B={len(rows)}, L], got {tuple(generated.shape)}")
        if not 0 <= prompt_length <= generated.shape[1]:
            raise ValueError(f"prompt_length {prompt_length} outside [0, {generated.shape[1]}]")
        prompts = [prompt_of(r) for r in rows]
        flags = [c.templated(p) for p in prompts]
        s_prompts = self._student_prompts(prompts, generated, prompt_length, attention_mask)
        gen = generated[:, prompt_length:].tolist()
        decoded = [self.decode(g, c.end_ids(f)[1]) for g, f in zip(gen, flags, strict=True)]
        texts = [d.text for d in decoded]
        resp = c.responses(texts)
        for b, d in enumerate(decoded):
            if np.array_equal(resp.student_ids[b], d.ids):
                continue  # the student's tokenizer reproduces its samples: collator path
            al = self._align_generated(d)
            resp.teacher_ids[b], resp.pairs[b] = al.teacher_ids, al.pairs.reshape(-1, 2)
            resp.teacher_chunks[b], resp.student_chunks[b] = al.teacher_chunks, al.student_chunks
            resp.student_ids[b] = d.ids
        tok = Tokenized(flags, c.prompt_ids("teacher", prompts, flags), s_prompts, resp)
        rows_t = c.rows(tok, [d.has_eos for d in decoded])
        return assemble(rows_t, c.specs["teacher"], c.specs["student"])

    def _align_generated(self, d: DecodedResponse) -> Alignment:
        """``d.text`` on the teacher side aligned with the generated ids (step 4)."""
        c = self.collator
        s_enc = {
            "ids": d.ids.tolist(),
            "offsets": char_offsets(d.text, d.spans.tolist()),
            "special_tokens_mask": [0] * len(d.ids),
        }
        if c.same_tokenizer:
            # One tokenizer: the teacher scores the ids the student wrote, position by position
            # (what on-policy KD means, and what `kd` needs), even where re-tokenizing the text
            # would give other ids.
            t_enc = {"input_ids": s_enc["ids"], "offset_mapping": s_enc["offsets"],
                     "special_tokens_mask": s_enc["special_tokens_mask"]}  # fmt: skip
        else:
            t_enc = c.teacher_tokenizer(
                d.text,
                add_special_tokens=False,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )
        t_ids = np.asarray(t_enc["input_ids"], np.int64)
        core = self.student_core
        # The student's own token bytes (dummy prefix included): the core places a leading space
        # the text does not have at no bytes, exactly as for the collator's tokenization.
        al = align_encodings(
            d.text,
            {
                "ids": t_ids.tolist(),
                "offsets": t_enc["offset_mapping"],
                "special_tokens_mask": t_enc["special_tokens_mask"],
            },
            s_enc,
            teacher_token_bytes=core if c.same_tokenizer else c.aligner.teacher,
            student_token_bytes=core,
        )
        return al
