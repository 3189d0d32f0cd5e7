"""On-policy batches: student generations (left-padded) give the collator's batch on their text."""

from __future__ import annotations

import pytest
import torch

from dskd_align.torch import DSKDCollator, OnPolicyBatcher
from dskd_align.torch.onpolicy import prompt_of

ROWS = [
    {"prompt": "Write a haiku.", "response": "Leaves fall in the wind,\nred and gold 🙂 —"},
    {"prompt": "Say hi in Russian", "response": "Привет, мир! ǅ𝔘 tabs\tand  spaces"},
    {"prompt": "Nothing to say?", "response": ""},
    {"prompt": "Spaces first", "response": "  two leading spaces"},
    {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4\n#### 4"},
        ]
    },
]


def _response(row) -> str:
    return row["messages"][-1]["content"] if "messages" in row else row["response"]


def _generate(ob: OnPolicyBatcher, rows, responses: list[list[int]], extra_pad: int = 3):
    """What ``model.generate`` returns: left-padded prompts, then each response padded on the
    right with the pad id (after its own EOS, when it has one)."""
    gi = ob.generation_inputs(rows)
    pad = ob.collator.specs["student"].pad_id
    width = max(len(r) for r in responses) + extra_pad
    gen = torch.tensor([r + [pad] * (width - len(r)) for r in responses], dtype=torch.long)
    return torch.cat([gi["input_ids"], gen], dim=1), gi


def _equal(a, b) -> list[str]:
    return [k for k in a if not torch.equal(a[k], b[k])]


def _same_as_collator(
    teacher, student, rows, padding_side="right", max_length=None, use_chat_template=False
):
    # The trained student has no chat template: the messages row is rendered plain on both sides.
    c = DSKDCollator(
        teacher,
        student,
        padding_side=padding_side,
        max_length=max_length,
        use_chat_template=use_chat_template,
    )
    ob = OnPolicyBatcher(c)
    # Each row ends with its end token: the turn-end on templated rows, else the EOS.
    ends = [c.end_ids(c.templated(prompt_of(r)))[1] for r in rows]
    responses = [
        student(_response(r), add_special_tokens=False)["input_ids"] + [e]
        for r, e in zip(rows, ends, strict=True)
    ]
    gen, gi = _generate(ob, rows, responses)
    gold = c(rows)
    for mask in (None, gi["attention_mask"]):
        got = ob(rows, gen, gi["input_ids"].shape[1], attention_mask=mask)
        assert _equal(got, gold) == []
    return c, ob


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_trained_pair_equals_collator(teacher_tok, student_tok, padding_side):
    _same_as_collator(teacher_tok, student_tok, ROWS, padding_side)
    _same_as_collator(student_tok, teacher_tok, ROWS, padding_side, max_length=24)


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_chat_rows_end_with_each_sides_turn_end(teacher_tok, student_chat_tok, padding_side):
    """Templated rows: the ChatML side generates and learns <|im_end|>, the other its EOS."""
    c, _ = _same_as_collator(student_chat_tok, teacher_tok, ROWS, padding_side, None, None)
    im_end = teacher_tok.convert_tokens_to_ids("<|im_end|>")
    assert c.end_ids(True) == (student_chat_tok.eos_token_id, im_end)
    assert c.end_ids(False) == (student_chat_tok.eos_token_id, teacher_tok.eos_token_id)
    _same_as_collator(teacher_tok, student_chat_tok, ROWS, padding_side, 24, True)
    assert OnPolicyBatcher(c).stop_token_ids == [im_end, teacher_tok.eos_token_id]


def test_decode_is_exact_with_dummy_prefix(teacher_tok, student_tok):
    ob = OnPolicyBatcher(DSKDCollator(teacher_tok, student_tok))
    for row in ROWS:
        text = _response(row)
        ids = student_tok(text, add_special_tokens=False)["input_ids"]
        d = ob.decode(ids + [student_tok.eos_token_id, student_tok.pad_token_id])
        assert d.text == text and d.ids.tolist() == ids and d.has_eos and not d.cut_invalid
        assert d.spans.shape == (len(ids), 2) and d.spans.dtype.kind == "i"


def _key(b: bytes) -> bytes:
    """A token's bytes with surrounding whitespace trimmed (unless it is only whitespace)."""
    return b.strip() or b


def _respelled(tok, core, text: str) -> tuple[list[int], list[int], int, int]:
    """``text``'s ids with its first multi-byte token after the first spelled in byte-fallback
    pieces: ``(canonical ids, respelled ids, index k of that token, pieces it became)``."""
    canon = tok(text, add_special_tokens=False)["input_ids"]
    k = next(i for i, t in enumerate(canon) if i > 0 and len(core.token_bytes(t)) > 1)
    pieces = [f"<0x{b:02X}>" for b in core.token_bytes(canon[k])]
    return canon, canon[:k] + tok.convert_tokens_to_ids(pieces) + canon[k + 1 :], k, len(pieces)


def test_non_canonical_split_keeps_generated_ids(teacher_tok, student_tok):
    """The student spelled " world" in byte-fallback pieces; its ids stay, pairs follow the text."""
    c = DSKDCollator(teacher_tok, student_tok)
    ob = OnPolicyBatcher(c)
    core_t, core_s = c.aligner.teacher, c.aligner.student
    text = "Hello world\nx"
    _, ids, k, n_pieces = _respelled(student_tok, core_s, text)
    rows = [{"prompt": "Greet"}]
    gen, gi = _generate(ob, rows, [ids + [student_tok.eos_token_id]])
    assert ob.decode(ids).text == text
    batch = ob(rows, gen, gi["input_ids"].shape[1])
    gold = c([{"prompt": "Greet", "response": text}])
    assert torch.equal(batch.teacher_input_ids, gold.teacher_input_ids)  # teacher side the same
    n_p = gi["input_ids"].shape[1]
    assert batch.student_input_ids[0, n_p:].tolist() == ids + [student_tok.eos_token_id]
    pairs = list(
        zip(batch.align_teacher_pos.tolist(), batch.align_student_pos.tolist(), strict=True)
    )
    for i, j in pairs:
        ti, sj = int(batch.teacher_input_ids[0, i + 1]), int(batch.student_input_ids[0, j + 1])
        if ti == teacher_tok.eos_token_id:
            assert sj == student_tok.eos_token_id
        else:
            assert _key(core_t.token_bytes(ti)) == _key(core_s.token_bytes(sj))
    # Every gold pair away from the respelled token survives (shifted by the extra pieces).
    extra = n_pieces - 1
    s0 = n_p - 1  # prediction position of response token 0
    gold_pairs = list(
        zip(gold.align_teacher_pos.tolist(), gold.align_student_pos.tolist(), strict=True)
    )
    moved = {(i, j if j - s0 < k else j + extra) for i, j in gold_pairs if j - s0 != k}
    assert moved <= set(pairs)
    # Chunk ids come from the pairs against the generated ids: every pair is a 1x1 chunk.
    for i, j in pairs:
        ci, cj = batch.teacher_chunk_ids[0, i + 1], batch.student_chunk_ids[0, j + 1]
        assert ci >= 0 and ci == cj
        assert (batch.teacher_chunk_ids == ci).sum() == (batch.student_chunk_ids == cj).sum() == 1


def test_one_tokenizer_teacher_reads_the_generated_ids(student_tok):
    """With one tokenizer a non-canonical sample stays position by position on both sides (the
    teacher scores what the student wrote), so `kd`'s [B, L] contract holds on-policy too."""
    c = DSKDCollator(student_tok, student_tok)
    ob = OnPolicyBatcher(c)
    canon, ids, _, _ = _respelled(student_tok, ob.student_core, "Hello world\nx")
    rows = [{"prompt": "Greet"}]
    gen, gi = _generate(ob, rows, [ids + [student_tok.eos_token_id]])
    batch = ob(rows, gen, gi["input_ids"].shape[1])
    assert torch.equal(batch.teacher_input_ids, batch.student_input_ids)
    assert len(ids) > len(canon)  # re-tokenizing the text would have given other ids
    # Every response token and the EOS is a pair with itself (prediction positions).
    n_p, n = gi["input_ids"].shape[1], int(batch.student_attention_mask.sum())
    t_pos, s_pos = batch.align_teacher_pos.tolist(), batch.align_student_pos.tolist()
    assert list(zip(t_pos, s_pos, strict=True)) == [(j, j) for j in range(n_p - 1, n - 1)]


def test_invalid_utf8_is_cut_before_the_bad_bytes(teacher_tok, student_tok):
    c = DSKDCollator(teacher_tok, student_tok)
    ob = OnPolicyBatcher(c)
    ok = student_tok("ok", add_special_tokens=False)["input_ids"]
    smile = student_tok.convert_tokens_to_ids(["<0xF0>", "<0x9F>", "<0x99>"])  # 3 of 4 bytes
    d = ob.decode(ok + smile + [student_tok.eos_token_id])
    assert d.text == "ok" and d.ids.tolist() == ok and d.cut_invalid and not d.has_eos
    bad = student_tok.convert_tokens_to_ids(["<0x9F>"])  # a lone continuation byte mid-text
    d = ob.decode(ok + bad + ok + [student_tok.eos_token_id])
    assert d.text == "ok" and d.ids.tolist() == ok and d.cut_invalid
    rows = [{"prompt": "Smile"}]
    gen, gi = _generate(ob, rows, [ok + smile + [student_tok.eos_token_id]])
    batch = ob(rows, gen, gi["input_ids"].shape[1])
    gold = c([{"prompt": "Smile", "response": "ok"}])
    n_p = len(gi["input_ids"][0])
    # Same as the collator on "ok", except that no EOS (and no EOS pair) follows.
    assert (
        batch.student_input_ids[0].tolist() == gold.student_input_ids[0, : n_p + len(ok)].tolist()
    )
    assert batch.num_pairs == gold.num_pairs - 1


def test_stops_at_other_specials_and_at_length_without_eos(teacher_tok, student_tok):
    c = DSKDCollator(teacher_tok, student_tok, padding_side="left")
    ob = OnPolicyBatcher(c)
    a = student_tok("one two", add_special_tokens=False)["input_ids"]
    rows = [{"prompt": "x"}, {"prompt": "y"}]
    # Row 0 hit max_new_tokens (no EOS, no padding); row 1 emitted <s> (a special) mid-way.
    gen, gi = _generate(ob, rows, [a, a + [student_tok.bos_token_id] + a], extra_pad=0)
    batch = ob(rows, gen, gi["input_ids"].shape[1])
    gold = c([{"prompt": "x", "response": "one two"}] * 2)
    for b in range(2):
        labels = batch.student_labels[b][batch.student_labels[b] != -100].tolist()
        assert labels == a  # no EOS label
    assert batch.num_pairs == gold.num_pairs - 2


def test_prompt_ids_must_match_without_mask(teacher_tok, student_tok):
    ob = OnPolicyBatcher(DSKDCollator(teacher_tok, student_tok))
    rows = [{"prompt": "abc"}]
    gi = ob.generation_inputs(rows)
    other = student_tok("something else entirely", return_tensors="pt")
    gen = torch.cat([other["input_ids"], torch.tensor([[student_tok.eos_token_id]])], dim=1)
    with pytest.raises(ValueError, match="attention_mask"):
        ob(rows, gen, other["input_ids"].shape[1])
    batch = ob(rows, gen, other["input_ids"].shape[1], attention_mask=other["attention_mask"])
    assert batch.student_input_ids[0, :-1].tolist() == other["input_ids"][0].tolist()
    assert gi["input_ids"].shape[0] == 1
    with pytest.raises(ValueError, match="generated"):
        ob(rows * 2, gen, 1)


@pytest.mark.parametrize(
    "pair", [("qwen2.5", "llama2"), ("llama2", "qwen2.5"), ("gpt2", "mistral-7b-v0.3")]
)
def test_real_pairs_equal_collator(real_tok, rows, pair):
    t, s = real_tok(pair[0]), real_tok(pair[1])
    data = rows[:: max(1, len(rows) // 12)] + ROWS[:4]
    _c, ob = _same_as_collator(t, s, data, "left", max_length=200)
    for row in data:
        text = _response(row)
        d = ob.decode(s(text, add_special_tokens=False)["input_ids"])
        assert d.text == text
