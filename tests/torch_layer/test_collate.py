"""DSKDCollator against the alignment core: ids, labels, positions, truncation, padding, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batch_checks import check_chunk_ids
from batch_checks import key_of as _key
from torch.utils.data import DataLoader

import dskd_align
from dskd_align.torch import DSKDBatch, DSKDCollator

# The trained student has no chat template: rows with messages need plain rendering on both sides.
PLAIN = {"use_chat_template": False}

ROWS = [
    {"prompt": "Write a haiku.", "response": "Leaves fall in the wind,\nred and gold 🙂 —"},
    {"prompt": "Say hi in Russian", "response": "Привет, мир! ǅ𝔘 tabs\tand  spaces"},
    {"prompt": "Nothing to say?", "response": ""},
    {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4\n#### 4"},
        ]
    },
]


def _templated(row, use_chat_template) -> bool:
    """The rendering policy: chat rows through the templates unless forced either way."""
    return "messages" in row if use_chat_template is None else use_chat_template


def _expected_prompt(tok, row, use_template) -> list[int]:
    """The prompt ids by the tokenizer's own calls (independent of the collator's rendering)."""
    if "messages" in row:
        msgs = row["messages"][:-1]
        plain = "\n\n".join(m["content"] for m in msgs)
    else:
        msgs, plain = [{"role": "user", "content": row["prompt"]}], row["prompt"]
    if use_template:
        # return_dict: transformers v4 returns a bare id list by default, v5 a dict.
        out = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)
        return list(out["input_ids"])
    return list(tok(plain, add_special_tokens=True)["input_ids"])


def _response(row) -> str:
    return row["messages"][-1]["content"] if "messages" in row else row["response"]


def check_batch(batch: DSKDBatch, c: DSKDCollator, rows, t_max=None, s_max=None) -> None:
    """Every field against the tokenizers' own output and ``dskd_align.align`` on the responses."""
    t, s = c.teacher_tokenizer, c.student_tokenizer
    if c.same_tokenizer:
        ct = cs = dskd_align.load_core(t)
    else:
        ct, cs = c.aligner.teacher, c.aligner.student
    B = len(rows)
    for name in ("input_ids", "attention_mask", "labels"):
        for side in ("teacher", "student"):
            x = batch[f"{side}_{name}"]
            assert x.dtype == torch.long and x.ndim == 2 and x.shape[0] == B
    for name in ("align_batch", "align_teacher_pos", "align_student_pos"):
        assert batch[name].dtype == torch.long and batch[name].shape == (batch.num_pairs,)
    assert batch.coverage.dtype == torch.float32 and batch.coverage.shape == (B,)
    emitted = set(
        zip(
            batch.align_batch.tolist(),
            batch.align_teacher_pos.tolist(),
            batch.align_student_pos.tolist(),
            strict=True,
        )
    )
    expected = set()
    for b, row in enumerate(rows):
        resp = _response(row)
        al = dskd_align.align(t, s, resp)
        pairs = [tuple(p) for p in al.pairs.tolist()]
        layout = {}
        templated = _templated(row, c.use_chat_template)
        ends = dict(zip(("teacher", "student"), c.end_ids(templated), strict=True))
        for side, tok, mx in (("teacher", t, t_max), ("student", s, s_max)):
            prompt = _expected_prompt(tok, row, templated)
            ids = tok(resp, add_special_tokens=False)["input_ids"]
            assert ids == (al.teacher_ids if side == "teacher" else al.student_ids).tolist()
            if mx is not None:
                prompt = prompt[-mx:]
            tail = (ids + [ends[side]])[: None if mx is None else mx - len(prompt)]
            mask = batch[f"{side}_attention_mask"][b]
            n = int(mask.sum())
            assert n == len(prompt) + len(tail)
            off = int(mask.argmax()) if n else 0
            assert mask[off : off + n].all()  # one contiguous block, on the padding side
            assert off == (mask.numel() - n if c.padding_side == "left" else 0)
            row_ids = batch[f"{side}_input_ids"][b]
            assert row_ids[off : off + n].tolist() == prompt + tail
            labels = torch.full_like(row_ids, -100)
            labels[off + len(prompt) : off + n] = torch.tensor(tail, dtype=torch.long)
            assert torch.equal(batch[f"{side}_labels"][b], labels)
            layout[side] = (off + len(prompt), len(prompt), len(tail))
        (t0, tp, tk), (s0, sp, sk) = layout["teacher"], layout["student"]
        eos_pair = (len(al.teacher_ids), len(al.student_ids))
        for i, j in [*pairs, eos_pair]:
            if i < tk and j < sk and tp + i >= 1 and sp + j >= 1:
                expected.add((b, t0 + i - 1, s0 + j - 1))
        chunks = _expected_chunks(al, c.same_tokenizer, (t0, tp, tk), (s0, sp, sk))
        assert _batch_chunks(batch, b) == chunks
    assert emitted == expected
    # Each pair's two tokens stand for the same text (or are both the row's end token).
    for b, i, j in emitted:
        ti = int(batch.teacher_input_ids[b, i + 1])
        sj = int(batch.student_input_ids[b, j + 1])
        if ct.is_special(ti):
            assert (ti, sj) == c.end_ids(_templated(rows[b], c.use_chat_template))
        else:
            assert _key(ct.token_bytes(ti)) == _key(cs.token_bytes(sj)), (b, i, j)
        assert batch.teacher_labels[b, i + 1] == ti and batch.student_labels[b, j + 1] == sj
    for b in range(B):
        sup = int((batch.student_labels[b, 1:] != -100).sum())
        got = int((batch.align_batch == b).sum())
        assert batch.coverage[b].item() == pytest.approx(got / sup if sup else 0.0)
        assert int(batch.supervised_tokens[b]) == sup
    assert batch.supervised_tokens.dtype == torch.long and batch.supervised_tokens.shape == (B,)
    check_chunk_ids(batch, ct, cs)


def _expected_chunks(al, same: bool, t_layout, s_layout) -> set:
    """Surviving chunks of one row as (teacher positions, student positions), from the core's
    per-text chunks plus the EOS chunk, independent of the collator."""
    n_t, n_s = len(al.teacher_ids), len(al.student_ids)
    t_ch = list(range(n_t)) if same else al.teacher_chunks.tolist()
    s_ch = list(range(n_s)) if same else al.student_chunks.tolist()
    groups: dict = {}
    for side, ch, (start, plen, kept) in (("t", t_ch, t_layout), ("s", s_ch, s_layout)):
        for i, c in enumerate([*ch, "eos"]):
            if c == -1:
                continue
            g = groups.setdefault(c, {"t": [], "s": [], "ok": True})
            g[side].append(start + i)
            g["ok"] &= i < kept and plen + i >= 1
    return {
        (frozenset(g["t"]), frozenset(g["s"]))
        for g in groups.values()
        if g["t"] and g["s"] and g["ok"]
    }


def _batch_chunks(batch: DSKDBatch, b: int) -> set:
    out: dict = {}
    for side in ("teacher", "student"):
        for p, c in enumerate(batch[f"{side}_chunk_ids"][b].tolist()):
            if c >= 0:
                out.setdefault(c, {"teacher": set(), "student": set()})[side].add(p)
    return {(frozenset(g["teacher"]), frozenset(g["student"])) for g in out.values()}


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_trained_pair_matches_core(teacher_tok, student_tok, padding_side):
    # The student has no chat template: the chat row is rendered plain on both sides.
    c = DSKDCollator(teacher_tok, student_tok, padding_side=padding_side, use_chat_template=False)
    check_batch(c(ROWS), c, ROWS)
    assert not c.same_tokenizer
    auto = DSKDCollator(teacher_tok, student_tok, padding_side=padding_side)
    check_batch(auto(ROWS[:3]), auto, ROWS[:3])


@pytest.mark.parametrize("use_chat_template", [None, True, False])
def test_trained_pair_both_templates(teacher_tok, student_chat_tok, use_chat_template):
    c = DSKDCollator(
        student_chat_tok, teacher_tok, padding_side="left", use_chat_template=use_chat_template
    )
    check_batch(c(ROWS), c, ROWS)


def test_left_and_right_padding_give_the_same_pairs_after_shifting(teacher_tok, student_tok):
    right = DSKDCollator(teacher_tok, student_tok, padding_side="right", **PLAIN)(ROWS)
    left = DSKDCollator(teacher_tok, student_tok, padding_side="left", **PLAIN)(ROWS)
    shift_t = (left.teacher_attention_mask == 0).sum(1)  # left padding per row
    shift_s = (left.student_attention_mask == 0).sum(1)
    assert torch.equal(left.align_batch, right.align_batch)
    assert torch.equal(left.align_teacher_pos - shift_t[left.align_batch], right.align_teacher_pos)
    assert torch.equal(left.align_student_pos - shift_s[left.align_batch], right.align_student_pos)
    assert torch.equal(left.coverage, right.coverage)


@pytest.mark.parametrize("t_max,s_max", [(30, 12), (12, 30), (8, 8), (3, 40)])
def test_truncation(teacher_tok, student_tok, t_max, s_max):
    c = DSKDCollator(teacher_tok, student_tok, max_length=s_max, teacher_max_length=t_max, **PLAIN)
    batch = c(ROWS)
    assert batch.teacher_input_ids.shape[1] <= t_max and batch.student_input_ids.shape[1] <= s_max
    check_batch(batch, c, ROWS, t_max, s_max)
    full = DSKDCollator(teacher_tok, student_tok, **PLAIN)(ROWS)
    # Pairs that survive truncation are pairs of the untruncated batch (prompts unchanged here
    # when they fit; compared through the tokens they predict).
    assert batch.num_pairs <= full.num_pairs


def test_prompt_longer_than_max_length_keeps_its_tail(teacher_tok, student_tok):
    row = [{"prompt": "word " * 60, "response": "an answer"}]
    c = DSKDCollator(teacher_tok, student_tok, max_length=10)
    batch = c(row)
    check_batch(batch, c, row, 10, 10)
    assert (batch.student_labels == -100).all() and batch.num_pairs == 0
    tail = student_tok(row[0]["prompt"])["input_ids"][-10:]
    assert batch.student_input_ids[0].tolist() == tail
    assert batch.coverage.tolist() == [0.0] and batch.supervised_tokens.tolist() == [0]
    assert batch.empty_rows == 1 and (batch.student_chunk_ids == -1).all()


def test_empty_response_and_empty_prompt(teacher_tok, student_tok):
    rows = [{"prompt": "", "response": ""}, {"prompt": "", "response": "Hello world"}]
    c = DSKDCollator(teacher_tok, student_tok, use_chat_template=False)
    batch = c(rows)
    check_batch(batch, c, rows)
    # Teacher (no BOS) puts the response at index 0: its first token has no prediction position.
    assert batch.teacher_labels[0, 0] == teacher_tok.eos_token_id
    assert batch.student_labels[0, :2].tolist() == [-100, student_tok.eos_token_id]
    assert 0 not in batch.align_batch.tolist() and 1 in batch.align_batch.tolist()


def test_empty_batch(teacher_tok, student_tok):
    batch = DSKDCollator(teacher_tok, student_tok)([])
    assert batch.batch_size == 0 and batch.num_pairs == 0


def test_same_tokenizer_is_identity(teacher_tok):
    c = DSKDCollator(teacher_tok, teacher_tok, padding_side="left")
    assert c.same_tokenizer
    batch = c(ROWS)
    check_batch(batch, c, ROWS)
    assert torch.equal(batch.align_teacher_pos, batch.align_student_pos)
    assert torch.equal(batch.teacher_labels, batch.student_labels)
    assert (batch.coverage == 1).all()


def test_mapping_interface_and_errors(teacher_tok, student_tok):
    batch = DSKDCollator(teacher_tok, student_tok, pad_to_multiple_of=8, **PLAIN)(ROWS)
    assert batch.student_input_ids.shape[1] % 8 == 0
    assert set(batch) >= {"teacher_input_ids", "align_batch", "coverage"} and "nope" not in batch
    assert batch.side("student")["input_ids"] is batch.student_input_ids
    assert batch.to("cpu").num_pairs == batch.num_pairs
    # transformers.Trainer / accelerate re-wrap a mapping with type(batch)({...}).
    again = type(batch)({k: v.clone() for k, v in batch.items()})
    assert isinstance(again, DSKDBatch) and _batches_equal(again, batch)
    assert _batches_equal(DSKDBatch(**batch), batch)
    with pytest.raises(TypeError, match="missing"):
        DSKDBatch({k: v for k, v in batch.items() if k != "coverage"})
    with pytest.raises(TypeError, match="unknown"):
        DSKDBatch({**batch, "extra": batch.coverage})
    with pytest.raises(ValueError, match="padding_side"):
        DSKDCollator(teacher_tok, student_tok, padding_side="middle")
    with pytest.raises(ValueError, match="messages"):
        DSKDCollator(teacher_tok, student_tok)([{"text": "x"}])
    with pytest.raises(ValueError, match="assistant"):
        DSKDCollator(teacher_tok, student_tok)([{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(ValueError, match="chat template"):
        DSKDCollator(teacher_tok, student_tok)(ROWS[3:])


def _batches_equal(a: DSKDBatch, b: DSKDBatch) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_dataloader_workers(teacher_tok, student_tok, rows, context):
    c = DSKDCollator(teacher_tok, student_tok, max_length=64, padding_side="left")
    data = rows[:16]
    loader = DataLoader(
        data,
        batch_size=4,
        collate_fn=c,
        num_workers=2,
        multiprocessing_context=context,
        timeout=120,
    )
    got = list(loader)
    want = [c(data[i : i + 4]) for i in range(0, len(data), 4)]
    assert len(got) == len(want) and all(
        _batches_equal(g, w) for g, w in zip(got, want, strict=True)
    )


# ---- real tokenizers and corpora (skip when ../shared is absent) ----


@pytest.mark.parametrize("pair", [("qwen2.5", "llama2"), ("llama3", "mistral-7b-v0.3")])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_real_pairs_on_corpora(real_tok, rows, pair, padding_side):
    t, s = real_tok(pair[0]), real_tok(pair[1])
    c = DSKDCollator(t, s, padding_side=padding_side, max_length=256, num_threads=2, **PLAIN)
    data = rows[:: max(1, len(rows) // 24)] + ROWS
    batch = c(data)
    check_batch(batch, c, data, 256, 256)
    # Exact pairs on real text: most supervised student tokens are aligned.
    assert float(np.mean(batch.coverage.numpy())) > 0.5


def test_eos_override(teacher_tok, student_tok):
    im_end = teacher_tok.convert_tokens_to_ids("<|im_end|>")
    c = DSKDCollator(teacher_tok, student_tok, teacher_eos_token_id=im_end)
    batch = c(ROWS[:1])
    last = int(batch.teacher_attention_mask[0].sum()) - 1
    assert batch.teacher_labels[0, last] == im_end
    b, i, j = (
        int(x[-1]) for x in (batch.align_batch, batch.align_teacher_pos, batch.align_student_pos)
    )
    assert (i + 1, batch.student_input_ids[b, j + 1]) == (last, student_tok.eos_token_id)
