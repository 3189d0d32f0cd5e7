"""tokenize_jointly: ids equal the full text's tokenization; only the response is aligned."""

from __future__ import annotations

import pytest
import torch
from batch_checks import check_chunk_ids, key_of

from dskd_align.torch import DSKDCollator
from dskd_align.torch.joint import split_at_seam
from dskd_align.torch.render import turn_end_token_id

ROWS = [
    {"prompt": "Name:", "response": "Natalia"},
    {"prompt": "Write a haiku.", "response": "\nLeaves fall in the wind,\nred and gold 🙂 —"},
    {"prompt": "Say hi in Russian ", "response": "Привет, мир! tabs\tand  spaces"},
    {"prompt": "Nothing to say?", "response": ""},
    {
        "messages": [
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4\n#### 4"},
        ]
    },
]


def _prompt_text(tok, row, templated: bool) -> str:
    if "messages" in row:
        msgs = row["messages"][:-1]
        if not templated:
            return "\n\n".join(m["content"] for m in msgs)
    else:
        msgs = [{"role": "user", "content": row["prompt"]}]
        if not templated:
            return row["prompt"]
    return tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)


def _response(row) -> str:
    return row["messages"][-1]["content"] if "messages" in row else row["response"]


def check_joint(c: DSKDCollator, rows) -> int:
    """Ids, labels, pairs and chunks of a joint batch against the tokenizers' own calls;
    returns how many rows were also compared with ``apply_chat_template``."""
    batch = c(rows)
    compared = 0
    cores = {"teacher": c.aligner.teacher, "student": c.aligner.student}
    for b, row in enumerate(rows):
        templated = c.templated(split_prompt(row))
        ends = dict(zip(("teacher", "student"), c.end_ids(templated), strict=True))
        for side in ("teacher", "student"):
            tok = getattr(c, f"{side}_tokenizer")
            text = _prompt_text(tok, row, templated) + _response(row)
            bos = [] if templated else c.renderers[side].bos
            want = bos + tok(text, add_special_tokens=False)["input_ids"] + [ends[side]]
            mask = batch[f"{side}_attention_mask"][b].bool()
            assert batch[f"{side}_input_ids"][b][mask].tolist() == want
            if templated:  # the start of apply_chat_template of the whole conversation
                prompt = split_prompt(row)
                msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
                msgs = [*msgs, {"role": "assistant", "content": _response(row)}]
                # Only where the template writes the reply right after the generation prompt
                # (ChatML does; the test's "[assistant] " template adds a space).
                if tok.apply_chat_template(msgs, tokenize=False).startswith(text):
                    full = tok.apply_chat_template(msgs, return_dict=True)["input_ids"]
                    assert list(full[: len(want) - 1]) == want[:-1]
                    if turn_end_token_id(tok) is not None:  # and the template's own turn end
                        assert full[len(want) - 1] == want[-1]
                    compared += 1
            # Labels: the response tokens (those reaching past the prompt text) and the end.
            labels = batch[f"{side}_labels"][b][mask]
            n_prompt = int((labels == -100).sum())
            ids, offsets, _ = cores[side].encode(text, False)
            k = split_at_seam(offsets, len(text.encode()) - len(_response(row).encode()))
            assert n_prompt == len(bos) + k
    # Every pair: same canonical text, or the end pair.
    for b, i, j in zip(
        batch.align_batch.tolist(),
        batch.align_teacher_pos.tolist(),
        batch.align_student_pos.tolist(),
        strict=True,
    ):
        ti, sj = int(batch.teacher_input_ids[b, i + 1]), int(batch.student_input_ids[b, j + 1])
        assert batch.teacher_labels[b, i + 1] == ti and batch.student_labels[b, j + 1] == sj
        if cores["teacher"].is_special(ti):
            assert (ti, sj) == c.end_ids(c.templated(split_prompt(rows[b])))
        else:
            t_b, s_b = cores["teacher"].token_bytes(ti), cores["student"].token_bytes(sj)
            assert key_of(t_b) == key_of(s_b)
    check_chunk_ids(batch, cores["teacher"], cores["student"])
    return compared


def split_prompt(row):
    from dskd_align.torch.formats import split_row

    return split_row(row)[0]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_joint_ids_and_pairs(teacher_tok, student_chat_tok, padding_side):
    for t, s in ((teacher_tok, student_chat_tok), (student_chat_tok, teacher_tok)):
        for mode in (None, True):
            c = DSKDCollator(
                t, s, tokenize_jointly=True, padding_side=padding_side, use_chat_template=mode
            )
            compared = check_joint(c, ROWS)
            assert compared >= (len(ROWS) if mode else 1)  # at least the ChatML side's rows


def test_sentencepiece_response_loses_the_dummy_prefix(teacher_tok, student_tok):
    """Apart, the student starts "Natalia" with a ``▁`` piece; together, as at inference, not."""
    row = [ROWS[0]]
    apart = DSKDCollator(teacher_tok, student_tok)(row)
    joint = DSKDCollator(teacher_tok, student_tok, tokenize_jointly=True)(row)

    def first_response_piece(batch) -> str:
        k = int((batch.student_labels[0] != -100).nonzero()[0])
        return student_tok.convert_ids_to_tokens(int(batch.student_input_ids[0, k]))

    assert first_response_piece(apart).startswith("\u2581")
    assert not first_response_piece(joint).startswith("\u2581")
    # The teacher (byte-level, no prefix) is the same either way here.
    assert torch.equal(apart.teacher_input_ids, joint.teacher_input_ids)


def test_seam_straddling_token_is_supervised_but_unpaired(teacher_tok, student_tok):
    """ " world" is one teacher token; cut after "wor" it starts in the prompt."""
    ids = teacher_tok(" world", add_special_tokens=False)["input_ids"]
    assert len(ids) == 1
    row = {"prompt": "Hello wor", "response": "ld and more"}
    c = DSKDCollator(teacher_tok, student_tok, tokenize_jointly=True)
    check_joint(c, [row])
    batch = c([row])
    k = int((batch.teacher_labels[0] != -100).nonzero()[0])
    assert batch.teacher_input_ids[0, k] == ids[0]  # the straddling token is a response label
    assert batch.teacher_chunk_ids[0, k] == -1
    assert k - 1 not in batch.align_teacher_pos.tolist()


def test_same_tokenizer_joint_is_identity(teacher_tok):
    c = DSKDCollator(teacher_tok, teacher_tok, tokenize_jointly=True)
    batch = c(ROWS)
    assert torch.equal(batch.teacher_input_ids, batch.student_input_ids)
    assert torch.equal(batch.align_teacher_pos, batch.align_student_pos)
    assert torch.equal(batch.teacher_chunk_ids, batch.student_chunk_ids)


def test_split_at_seam():
    assert split_at_seam([(0, 3), (3, 5), (5, 9)], 5) == 2
    assert split_at_seam([(0, 3), (3, 7), (7, 9)], 5) == 1  # straddles: response
    assert split_at_seam([(0, 3)], 3) == 1
    assert split_at_seam([(0, 0), (0, 2)], 0) == 0  # empty prompt: all response


@pytest.mark.parametrize("pair", [("qwen2.5", "llama2"), ("llama3", "mistral-7b-v0.3")])
def test_real_pairs_joint(real_tok, rows, pair):
    t, s = real_tok(pair[0]), real_tok(pair[1])
    data = rows[:: max(1, len(rows) // 12)] + ROWS[:4]
    check_joint(DSKDCollator(t, s, tokenize_jointly=True), data)
