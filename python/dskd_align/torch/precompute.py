"""Precomputed alignments: tokenize and align a corpus once, as Arrow columns, then collate fast.

``precompute_alignments(batch, collator)`` is a *batched* map function: it takes a dict of
columns (``datasets.Dataset.map(batched=True)`` or ``ray.data.Dataset.map_batches`` give one) and
returns the new columns below; the collator, given rows that carry them, skips rendering,
tokenization and alignment and only pads and truncates. The batches are identical (every field,
``torch.equal``) to the ones built from the raw rows, since both paths hand the same
:class:`~dskd_align.torch.assemble.Tokenized` to the same assembly.

>>> ds = ds.map(precompute_alignments, batched=True, num_proc=8,          # doctest: +SKIP
...             fn_kwargs={"collator": collator})
>>> ds = precompute_dataset(ds, collator, num_proc=8)  # same, quick fingerprint  # doctest: +SKIP
>>> ray_ds = ray_ds.map_batches(precompute_alignments,                     # doctest: +SKIP
...                             fn_kwargs={"collator": collator}, batch_format="numpy")

Columns (one value per row; lists of int64 become Arrow ``list<int64>``):

- ``dskd_key`` (str): fingerprint of what the columns depend on: both tokenizers' JSON, the
  rendering mode, ``tokenize_jointly`` and the end tokens. A collator with another configuration
  refuses the rows (``ValueError`` naming the fix) instead of training on stale ids.
  ``max_length``, padding and ``num_threads`` are not in it: truncation happens at collate time,
  so one precomputed corpus serves any ``max_length``.
- ``dskd_templated`` (bool): the row went through the chat templates (so it takes the
  turn-end tokens);
- ``dskd_teacher_prompt_ids``, ``dskd_student_prompt_ids``: prompt ids, BOS included;
- ``dskd_teacher_ids``, ``dskd_student_ids``: response ids (no end token);
- ``dskd_pairs``: the response-local exact pairs flattened ``[t0, s0, t1, s1, ...]``;
- ``dskd_teacher_chunks``, ``dskd_student_chunks``: per response token, its chunk id in the row.

The original columns are kept (``remove_columns`` drops them if you like); a row needs only the
``dskd_*`` columns to be collated. Under ``num_proc > 1`` the collator is pickled to each worker
and rebuilds its core aligner there (once per process). Ray hands columns as NumPy arrays (list
values as arrays, strings as ``numpy.str_``): both are read, and with NumPy input the output
columns are NumPy object arrays, which Ray stores as Arrow lists; since Ray replaces a batch
with what the function returns (``datasets`` adds the returned columns instead), NumPy input
columns are returned too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dskd_align.tokenizers import tokenizer_json
from dskd_align.torch.assemble import Responses, Tokenized

__all__ = [
    "PRECOMPUTED_COLUMNS",
    "is_precomputed",
    "precompute_alignments",
    "precompute_dataset",
    "read_precomputed",
]

PRECOMPUTED_COLUMNS = (
    "dskd_key",
    "dskd_templated",
    "dskd_teacher_prompt_ids",
    "dskd_student_prompt_ids",
    "dskd_teacher_ids",
    "dskd_student_ids",
    "dskd_pairs",
    "dskd_teacher_chunks",
    "dskd_student_chunks",
)


def collator_key(collator: Any) -> str:
    """Fingerprint of everything the precomputed columns depend on (cached on the collator)."""
    key = collator.__dict__.get("_precompute_key")
    if key is None:
        h = hashlib.sha256()
        for side in ("teacher", "student"):
            h.update(tokenizer_json(getattr(collator, f"{side}_tokenizer")).encode("utf-8"))
            h.update(repr(getattr(collator, f"{side}_tokenizer").chat_template).encode("utf-8"))
        settings = [
            collator.use_chat_template,
            collator.tokenize_jointly,
            collator.end_ids(True),
            collator.end_ids(False),
            [r.bos for r in collator.renderers.values()],
        ]
        h.update(json.dumps(settings).encode("utf-8"))
        key = h.hexdigest()[:32]
        collator.__dict__["_precompute_key"] = key
    return key


def _rows(batch: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Columns to rows, with NumPy values (Ray) turned into Python lists/str."""
    cols = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in batch.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    if any(len(v) != n for v in cols.values()):
        raise ValueError("precompute_alignments: the batch's columns differ in length")
    return [{k: _plain(v[i]) for k, v in cols.items()} for i in range(n)]


def _plain(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def precompute_alignments(batch: Mapping[str, Sequence[Any]], collator: Any) -> dict[str, Any]:
    """The ``dskd_*`` columns (module notes) of a batch of rows given as columns."""
    numpy_in = any(isinstance(v, np.ndarray) for v in batch.values())
    rows = _rows(batch)
    tok = collator.tokenize(rows)
    resp = tok.responses
    n = len(rows)

    def ints(arrays: Sequence[Any]) -> list[list[int]]:
        return [np.asarray(a, np.int64).reshape(-1).tolist() for a in arrays]

    out: dict[str, Any] = {
        "dskd_key": [collator_key(collator)] * n,
        "dskd_templated": list(tok.templated),
        "dskd_teacher_prompt_ids": [list(map(int, p)) for p in tok.teacher_prompts],
        "dskd_student_prompt_ids": [list(map(int, p)) for p in tok.student_prompts],
        "dskd_teacher_ids": ints(resp.teacher_ids),
        "dskd_student_ids": ints(resp.student_ids),
        "dskd_pairs": ints(resp.pairs),
        "dskd_teacher_chunks": ints(resp.teacher_chunks),
        "dskd_student_chunks": ints(resp.student_chunks),
    }
    if numpy_in:  # Ray: the returned batch replaces the input, so pass its columns through
        out = {**{k: v for k, v in batch.items() if k not in out}, **out}
        for k, v in list(out.items()):
            if k not in PRECOMPUTED_COLUMNS:
                continue
            if k in ("dskd_key", "dskd_templated"):
                out[k] = np.asarray(v)
            else:
                arr = np.empty(n, dtype=object)
                arr[:] = [np.asarray(x, np.int64) for x in v]
                out[k] = arr
    return out


def precompute_dataset(
    dataset: Any,
    collator: Any,
    *,
    num_proc: int | None = None,
    batch_size: int = 256,
    **kwargs: Any,
) -> Any:
    """``dataset.map(precompute_alignments, batched=True, ...)`` for a ``datasets.Dataset``, with
    a fingerprint from :func:`collator_key` instead of the one ``datasets`` would hash from the
    function's arguments: that hash pickles both tokenizers through ``dill`` in Python (tens of
    seconds for a 150k vocabulary on every ``map`` call, more than aligning a few thousand rows).
    ``kwargs`` go to ``map`` (``remove_columns``, ``keep_in_memory``, ``desc``, ...)."""
    h = hashlib.sha256()
    h.update(f"{dataset._fingerprint}|{collator_key(collator)}|{batch_size}".encode())
    return dataset.map(
        precompute_alignments,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        fn_kwargs={"collator": collator},
        new_fingerprint=h.hexdigest()[:32],
        **kwargs,
    )


def is_precomputed(row: Any) -> bool:
    return isinstance(row, Mapping) and "dskd_pairs" in row


def read_precomputed(collator: Any, rows: Sequence[Mapping[str, Any]]) -> Tokenized:
    """The :class:`Tokenized` stored in rows made by :func:`precompute_alignments`."""
    key = collator_key(collator)
    for i, row in enumerate(rows):
        missing = [c for c in PRECOMPUTED_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"row {i} lacks the precomputed columns {missing}")
        if row["dskd_key"] != key:
            raise ValueError(
                f"row {i} was precomputed with another collator configuration (tokenizers, "
                "chat templates, use_chat_template, tokenize_jointly or end tokens): rerun "
                "precompute_alignments with this collator, or drop the dskd_* columns"
            )

    def col(name: str) -> list[np.ndarray]:
        return [np.asarray(r[name], np.int64).reshape(-1) for r in rows]

    resp = Responses(
        col("dskd_teacher_ids"),
        col("dskd_student_ids"),
        [p.reshape(-1, 2) for p in col("dskd_pairs")],
        col("dskd_teacher_chunks"),
        col("dskd_student_chunks"),
    )
    return Tokenized(
        [bool(r["dskd_templated"]) for r in rows],
        [c.tolist() for c in col("dskd_teacher_prompt_ids")],
        [c.tolist() for c in col("dskd_student_prompt_ids")],
        resp,
    )
