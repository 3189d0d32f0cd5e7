"""Row formats (TRL's and ours), their errors, the same rendering on both sides, turn-end tokens."""

from __future__ import annotations

import copy

import pytest
import torch

from dskd_align.torch import DSKDCollator
from dskd_align.torch.formats import RowFormatError, sharegpt_to_messages, split_row
from dskd_align.torch.render import TemplateError, turn_end_token_id

USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
ANSWER = {"role": "assistant", "content": "4\n#### 4"}


def _same(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "row,prompt,response",
    [
        ({"prompt": "Hi", "completion": " there"}, "Hi", " there"),
        ({"prompt": "Hi", "response": " there"}, "Hi", " there"),
        ({"prompt": USER, "completion": [ANSWER]}, USER, ANSWER["content"]),
        ({"prompt": USER, "response": "4\n#### 4"}, USER, ANSWER["content"]),
        ({"messages": [*USER, ANSWER, {"role": "user", "content": "x"}]}, USER, "4\n#### 4"),
        ({"prompt": "", "completion": "", "id": 7}, "", ""),  # extra columns are ignored
    ],
)
def test_supported_formats_split(row, prompt, response):
    assert split_row(row) == (prompt, response)


@pytest.mark.parametrize(
    "row,match",
    [
        ({"conversations": [{"from": "human", "value": "x"}]}, "sharegpt_to_messages"),
        ({"messages": [{"from": "human", "value": "x"}]}, "ShareGPT"),
        ({"text": "a whole document"}, "no response to distill"),
        ({"prompt": "x", "response": None}, r"row\['response'\] is None"),
        ({"prompt": None, "completion": "y"}, r"row\['prompt'\] is None"),
        ({"prompt": 3, "response": "y"}, "is int, not a str or a list of messages"),
        ({}, "remove_unused_columns=False"),
        ({"question": "q", "answer": "a"}, "unknown row format"),
        ({"prompt": USER, "completion": [ANSWER, ANSWER]}, "exactly one assistant"),
        ({"messages": [{"role": "user", "content": None}]}, "is None"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "parts"),
        ({"messages": "not a list"}, "list of messages"),
        ("a bare string", "must be a dict"),
    ],
)
def test_bad_rows_name_the_problem_and_the_formats(row, match):
    with pytest.raises(RowFormatError, match=match) as err:
        split_row(row)
    assert "Supported row formats" in str(err.value) and "completion" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_sharegpt_conversion_then_collates(teacher_tok, student_chat_tok):
    row = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "2+2?"},
            {"from": "gpt", "value": "4\n#### 4"},
        ]
    }
    converted = sharegpt_to_messages(row)
    assert converted == {"messages": [*USER, ANSWER]}
    c = DSKDCollator(teacher_tok, student_chat_tok)
    assert _same(c([converted]), c([{"messages": [*USER, ANSWER]}]))
    with pytest.raises(RowFormatError, match="from"):
        sharegpt_to_messages({"conversations": [{"from": "robot", "value": "x"}]})


def test_trl_formats_give_the_same_batches(teacher_tok, student_chat_tok, student_tok):
    chat = DSKDCollator(teacher_tok, student_chat_tok, max_length=40)
    conv = [{"prompt": USER, "completion": [ANSWER]}, {"prompt": USER, "response": "4\n#### 4"}]
    ref = chat([{"messages": [*USER, ANSWER]}] * 2)
    assert _same(chat(conv), ref)
    plain = DSKDCollator(teacher_tok, student_tok)
    a = plain([{"prompt": "Write a haiku.", "completion": "Leaves fall."}])
    b = plain([{"prompt": "Write a haiku.", "response": "Leaves fall."}])
    assert _same(a, b)


def test_plain_rows_are_plain_on_both_sides_even_with_templates(teacher_tok, student_chat_tok):
    """The default renders a plain row without templates on both sides (BOS where the tokenizer
    adds one), whatever templates the tokenizers carry; True forces templates on both."""
    row = {"prompt": "Write a haiku.", "response": "Leaves fall."}
    for teacher, student in ((teacher_tok, student_chat_tok), (student_chat_tok, teacher_tok)):
        c = DSKDCollator(teacher, student)
        batch = c([row])
        for side, tok in (("teacher", teacher), ("student", student)):
            ids = batch[f"{side}_input_ids"][0][batch[f"{side}_labels"][0] == -100].tolist()
            assert ids == tok(row["prompt"], add_special_tokens=True)["input_ids"]
        forced = DSKDCollator(teacher, student, use_chat_template=True)([row])
        for side, tok in (("teacher", teacher), ("student", student)):
            msgs = [{"role": "user", "content": row["prompt"]}]
            want = tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=True)
            got = forced[f"{side}_input_ids"][0][forced[f"{side}_labels"][0] == -100]
            assert got.tolist() == list(want["input_ids"])


def test_a_side_without_template(teacher_tok, student_tok):
    with pytest.raises(TemplateError, match="student tokenizer has none"):
        DSKDCollator(teacher_tok, student_tok, use_chat_template=True)
    c = DSKDCollator(teacher_tok, student_tok)
    c([{"prompt": "x", "response": "y"}])  # plain rows need no template
    with pytest.raises(TemplateError, match="use_chat_template=False"):
        c([{"messages": [*USER, ANSWER]}])
    plain = DSKDCollator(teacher_tok, student_tok, use_chat_template=False)
    batch = plain([{"messages": [*USER, ANSWER]}])
    prompt = batch.teacher_input_ids[0][batch.teacher_labels[0] == -100].tolist()
    assert prompt == teacher_tok("Be brief.\n\n2+2?", add_special_tokens=True)["input_ids"]


def test_turn_end_from_the_template_and_paired(teacher_tok, student_chat_tok, student_tok):
    im_end = teacher_tok.convert_tokens_to_ids("<|im_end|>")
    assert turn_end_token_id(teacher_tok) == im_end
    assert turn_end_token_id(student_chat_tok) is None  # its template ends turns with "\n"
    assert turn_end_token_id(student_tok) is None  # no template
    c = DSKDCollator(teacher_tok, student_chat_tok)
    eos_t, eos_s = teacher_tok.eos_token_id, student_chat_tok.eos_token_id
    assert c.end_ids(True) == (im_end, eos_s) and c.end_ids(False) == (eos_t, eos_s)
    assert c.special_pairs == [(im_end, eos_s), (eos_t, eos_s)]
    batch = c([{"messages": [*USER, ANSWER]}, {"prompt": "2+2?", "response": "4"}])
    for b, end in ((0, im_end), (1, eos_t)):
        last = int(batch.teacher_attention_mask[b].sum()) - 1
        assert batch.teacher_labels[b, last] == end
        # The end pair is the row's last pair and its own chunk.
        k = (batch.align_batch == b).nonzero()[-1]
        assert batch.align_teacher_pos[k] + 1 == last
        ch = batch.teacher_chunk_ids[b, last]
        assert ch >= 0 and (batch.teacher_chunk_ids == ch).sum() == 1
    forced = DSKDCollator(teacher_tok, student_chat_tok, teacher_eos_token_id=eos_t)
    assert forced.end_ids(True) == forced.end_ids(False) == (eos_t, eos_s)


def test_vocab_map_pairs_the_turn_ends(teacher_tok, student_chat_tok):
    from dskd_align.torch import VocabMap

    # A student template that ends assistant turns with its EOS (Llama-2 style).
    student = copy.deepcopy(student_chat_tok)
    student.chat_template = (
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
        "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    im_end, eos_s = teacher_tok.convert_tokens_to_ids("<|im_end|>"), student.eos_token_id
    assert turn_end_token_id(student) == eos_s
    c = DSKDCollator(teacher_tok, student)
    assert c.end_ids(True) == (im_end, eos_s)
    m = VocabMap(teacher_tok, student)
    pairs = set(zip(m.overlap_teacher_ids.tolist(), m.overlap_student_ids.tolist(), strict=True))
    assert (im_end, eos_s) in pairs and m.t2s[im_end] == eos_s
    # The role pair then finds the student's EOS taken: <|endoftext|> maps to it, outside O.
    assert m.t2s[teacher_tok.eos_token_id] == eos_s and m.s2t[eos_s] == im_end
    off = VocabMap(teacher_tok, student, match_turn_ends=False)
    assert off.t2s[im_end] == -1 and off.s2t[eos_s] == teacher_tok.eos_token_id


def test_template_that_fails_on_the_probe_falls_back(teacher_tok):
    class Broken:
        chat_template = "{{ raise_exception('no') }}"

        def apply_chat_template(self, *a, **k):
            raise ValueError("template error")

    assert turn_end_token_id(Broken()) is None


@pytest.mark.parametrize(
    "name,token",
    [
        ("qwen2.5", "<|im_end|>"),
        ("llama3", "<|eot_id|>"),
        ("phi-3-mini", "<|end|>"),
        ("gemma3", "<end_of_turn>"),
    ],
)
def test_real_turn_ends(real_tok, name, token):
    tok = real_tok(name)
    assert turn_end_token_id(tok) == tok.convert_tokens_to_ids(token)


def test_real_chat_pair_ends_and_vocab_pairs(real_tok):
    from dskd_align.torch import VocabMap

    q, ll = real_tok("qwen2.5"), real_tok("llama3")
    c = DSKDCollator(q, ll, max_length=64)
    eot = ll.convert_tokens_to_ids("<|eot_id|>")
    assert c.end_ids(True) == (q.convert_tokens_to_ids("<|im_end|>"), eot)
    im_end = q.convert_tokens_to_ids("<|im_end|>")
    for m in (VocabMap(q, ll, special_pairs=c.special_pairs), VocabMap(q, ll)):
        assert m.t2s[im_end] == eot and m.s2t[eot] == im_end  # found without being told
    assert VocabMap(q, ll, match_turn_ends=False).t2s[im_end] == ll.eos_token_id
    batch = c([{"messages": [*USER, ANSWER]}])
    last = int(batch.student_attention_mask[0].sum()) - 1
    assert batch.student_labels[0, last] == eot
