"""Precomputed alignments: Arrow columns from datasets.map / ray map_batches give batches equal
(torch.equal on every field) to the ones the collator builds from the raw rows."""

from __future__ import annotations

import pytest
import torch

from dskd_align.torch import DSKDCollator
from dskd_align.torch.precompute import (
    PRECOMPUTED_COLUMNS,
    precompute_alignments,
    precompute_dataset,
)

PLAIN = [
    {"prompt": "Write a haiku.", "response": "Leaves fall in the wind,\nred and gold 🙂 —"},
    {"prompt": "Say hi in Russian", "response": "Привет, мир! ǅ𝔘 tabs\tand  spaces"},
    {"prompt": "Nothing to say?", "response": ""},
    {"prompt": "word " * 40, "response": "a prompt longer than max_length"},
    {"prompt": "", "response": "Hello world"},
]
CHAT = [
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4\n#### 4"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Name?"},
            {"role": "assistant", "content": "Natalia 🙂"},
        ]
    },
]


def _columns(rows):
    return {k: [r[k] for r in rows] for k in rows[0]}


def _with_columns(rows, cols):
    return [dict(r, **{k: cols[k][i] for k in cols}) for i, r in enumerate(rows)]


def _equal(a, b) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def _check(c: DSKDCollator, rows, pre) -> None:
    for lo in range(0, len(rows), 3):  # several batch sizes and compositions
        assert _equal(c(pre[lo : lo + 3]), c(rows[lo : lo + 3])) == []
    assert _equal(c(pre), c(rows)) == []


CONFIGS = [
    {},
    {"max_length": 12, "padding_side": "left"},
    {"tokenize_jointly": True, "teacher_max_length": 20},
    {"use_chat_template": True, "max_length": 30},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_function_equals_on_the_fly(teacher_tok, student_chat_tok, config):
    for t, s in ((teacher_tok, student_chat_tok), (student_chat_tok, teacher_tok)):
        c = DSKDCollator(t, s, **config)
        for rows in (PLAIN, CHAT):
            cols = precompute_alignments(_columns(rows), c)
            assert set(cols) == set(PRECOMPUTED_COLUMNS)
            pre = _with_columns(rows, cols)
            _check(c, rows, pre)
            # Only the dskd_* columns are needed.
            _check(c, rows, [{k: r[k] for k in PRECOMPUTED_COLUMNS} for r in pre])


def test_same_tokenizer(teacher_tok):
    c = DSKDCollator(teacher_tok, teacher_tok, max_length=16)
    _check(c, PLAIN, _with_columns(PLAIN, precompute_alignments(_columns(PLAIN), c)))


def test_stale_columns_are_refused(teacher_tok, student_chat_tok, student_tok):
    c = DSKDCollator(teacher_tok, student_chat_tok)
    pre = _with_columns(PLAIN, precompute_alignments(_columns(PLAIN), c))
    DSKDCollator(teacher_tok, student_chat_tok, max_length=8)(pre)  # truncation: not in the key
    for other in (
        DSKDCollator(teacher_tok, student_tok),  # another student tokenizer (no template)
        DSKDCollator(teacher_tok, student_chat_tok, tokenize_jointly=True),
        DSKDCollator(teacher_tok, student_chat_tok, use_chat_template=True),
        DSKDCollator(teacher_tok, student_chat_tok, teacher_eos_token_id=3),
    ):
        with pytest.raises(ValueError, match="rerun precompute_alignments"):
            other(pre)
    with pytest.raises(ValueError, match="lacks the precomputed columns"):
        c([{k: v for k, v in pre[0].items() if k != "dskd_key"}])


@pytest.mark.parametrize("num_proc", [1, 2])
def test_datasets_map(teacher_tok, student_chat_tok, num_proc):
    datasets = pytest.importorskip("datasets")
    c = DSKDCollator(teacher_tok, student_chat_tok, max_length=24)
    for rows in (PLAIN * 2, CHAT * 3):
        ds = datasets.Dataset.from_list(rows).map(
            precompute_alignments,
            batched=True,
            batch_size=3,
            num_proc=num_proc,
            fn_kwargs={"collator": c},
            load_from_cache_file=False,
        )
        assert ds.features["dskd_pairs"].feature.dtype == "int64"
        _check(c, rows, list(ds))
        quick = precompute_dataset(
            datasets.Dataset.from_list(rows), c, num_proc=num_proc, batch_size=3
        )
        _check(c, rows, list(quick))
        assert (
            quick._fingerprint
            == precompute_dataset(
                datasets.Dataset.from_list(rows), c, num_proc=num_proc, batch_size=3
            )._fingerprint
        )  # deterministic, so datasets' cache finds it again
        slim = ds.remove_columns([k for k in ds.column_names if not k.startswith("dskd_")])
        loader = torch.utils.data.DataLoader(slim, batch_size=4, collate_fn=c)
        for k, batch in enumerate(loader):
            assert _equal(batch, c(rows[4 * k : 4 * k + 4])) == []


def test_ray_map_batches(teacher_tok, student_chat_tok):
    """The same function under ray.data on a local Ray instance (1 CPU)."""
    ray = pytest.importorskip("ray")
    c = DSKDCollator(teacher_tok, student_chat_tok, max_length=24)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        for rows in (PLAIN, CHAT):
            ds = ray.data.from_items(rows).map_batches(
                precompute_alignments,
                fn_kwargs={"collator": c},
                batch_size=2,
                batch_format="numpy",
            )
            got = sorted(ds.take_all(), key=lambda r: str(r.get("prompt", r.get("messages"))))
            want = sorted(rows, key=lambda r: str(r.get("prompt", r.get("messages"))))
            _check(c, want, got)
    finally:
        ray.shutdown()


def test_collator_pickles_as_one_blob(teacher_tok, student_chat_tok):
    """``__reduce__`` hands pickle (and datasets' dill hasher) one bytes blob of the state; the
    restored collator is bound to itself and collates the same batches."""
    import pickle

    c = DSKDCollator(teacher_tok, student_chat_tok, max_length=24, tokenize_jointly=True)
    fn, (cls, blob) = c.__reduce__()
    assert cls is DSKDCollator and isinstance(blob, bytes)
    again = pickle.loads(pickle.dumps(c))
    assert again.renderers["student"].policy.__self__ is again
    for rows in (PLAIN, CHAT):
        assert _equal(again(rows), c(rows)) == []
    hasher = pytest.importorskip("datasets.fingerprint").Hasher
    assert hasher.hash(c) == hasher.hash(c)
    assert hasher.hash(c) != hasher.hash(DSKDCollator(teacher_tok, student_chat_tok))
