"""VocabMap: byte-canonical twins, one-to-one overlap, roles, model rows beyond the tokenizer."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer

import dskd_align
from dskd_align.torch import VocabMap, raw_string_overlap
from dskd_align.torch.vocab import check_vocab_sizes, role_ids


def _check_invariants(m: VocabMap, teacher, student) -> None:
    """Shapes, dtypes; O one-to-one, t2s/s2t inverse on it; every byte twin has equal bytes."""
    o_t, o_s = m.overlap_teacher_ids, m.overlap_student_ids
    for t in (m.t2s, m.s2t, o_t, o_s):
        assert t.dtype == torch.long and t.ndim == 1
    assert o_t.shape == o_s.shape
    assert len(set(o_t.tolist())) == len(o_t) and len(set(o_s.tolist())) == len(o_s)
    assert torch.equal(m.t2s[o_t], o_s) and torch.equal(m.s2t[o_s], o_t)
    assert int(m.t2s.max()) < m.student_vocab_size and int(m.s2t.max()) < m.teacher_vocab_size
    ct, cs = dskd_align.load_core(teacher), dskd_align.load_core(student)
    for i, j in enumerate(m.t2s.tolist()):
        if j >= 0 and not ct.is_special(i):
            assert not cs.is_special(j)
            assert ct.token_bytes(i) == cs.token_bytes(j), (i, j)
    for j, i in enumerate(m.s2t.tolist()):
        if i >= 0 and not cs.is_special(j):
            assert ct.token_bytes(i) == cs.token_bytes(j), (i, j)


def test_trained_pair_newline_meets_and_invariants(teacher_tok, student_tok):
    m = VocabMap(teacher_tok, student_tok)
    _check_invariants(m, teacher_tok, student_tok)
    assert (m.teacher_vocab_size, m.student_vocab_size) == (len(teacher_tok), len(student_tok))
    nl_t = teacher_tok.convert_tokens_to_ids("Ċ")
    fb = student_tok.convert_tokens_to_ids("<0x0A>")
    # The student has a regular "\n" piece and the byte fallback <0x0A>: both map to Ċ, and Ċ
    # maps to the regular piece (the one the student's tokenizer emits for a newline).
    regular = student_tok("a\nb", add_special_tokens=False)["input_ids"]
    nl_s = [i for i in regular if student_tok.convert_ids_to_tokens(i) == "\n"][0]
    assert m.s2t[fb] == nl_t and m.s2t[nl_s] == nl_t and m.t2s[nl_t] == nl_s
    # Ġx meets ▁x: a space-prefixed word on both sides.
    word_t = teacher_tok("a the", add_special_tokens=False)["input_ids"][-1]
    word_s = student_tok.convert_tokens_to_ids("▁the")
    assert teacher_tok.convert_ids_to_tokens(word_t) == "Ġthe" and m.t2s[word_t] == word_s
    # Byte matching finds more than string equality (Ġ/▁ spellings never meet as strings).
    assert m.num_overlap > m.raw_overlap == raw_string_overlap(teacher_tok, student_tok)


def test_byte_fallback_piece_is_never_the_representative(teacher_tok, student_tok):
    m = VocabMap(teacher_tok, student_tok)
    e_t = teacher_tok.convert_tokens_to_ids("e")
    e_s = student_tok.convert_tokens_to_ids("e")
    assert e_s != student_tok.unk_token_id
    assert m.t2s[e_t] == e_s  # not <0x65>
    assert m.s2t[student_tok.convert_tokens_to_ids("<0x65>")] == e_t


def test_roles_and_specials(teacher_tok, student_tok):
    m = VocabMap(teacher_tok, student_tok)
    # The teacher's single <|endoftext|> is BOS and EOS: EOS wins the t2s slot and O.
    eot = teacher_tok.eos_token_id
    assert m.t2s[eot] == student_tok.eos_token_id
    assert m.s2t[student_tok.eos_token_id] == eot and m.s2t[student_tok.bos_token_id] == eot
    assert m.t2s[teacher_tok.pad_token_id] == student_tok.pad_token_id
    assert (eot, student_tok.eos_token_id) in set(
        zip(m.overlap_teacher_ids.tolist(), m.overlap_student_ids.tolist(), strict=True)
    )
    # Specials without a role or twin map nowhere, and no text token maps to a special.
    assert m.t2s[teacher_tok.convert_tokens_to_ids("<|im_start|>")] == -1
    assert m.s2t[student_tok.unk_token_id] == -1
    # A bare tokenizers.Tokenizer answers roles by name.
    bare = Tokenizer.from_str(student_tok.backend_tokenizer.to_str())
    assert role_ids(bare) == {"bos": 1, "eos": 2, "pad": 3}


def test_same_tokenizer_names_match_specials(teacher_tok):
    m = VocabMap(teacher_tok, teacher_tok)
    specials = set(teacher_tok.all_special_ids) | {teacher_tok.convert_tokens_to_ids("<|im_end|>")}
    ids = torch.arange(len(teacher_tok))
    assert torch.equal(m.t2s, ids) and torch.equal(m.s2t, ids)
    assert m.num_overlap == len(teacher_tok)
    assert specials <= set(m.overlap_teacher_ids.tolist())
    im_end = teacher_tok.convert_tokens_to_ids("<|im_end|>")
    strict = VocabMap(teacher_tok, teacher_tok, match_special_names=False, match_turn_ends=False)
    assert strict.t2s[im_end] == -1
    # <|im_end|> is the template's turn end: paired by that rule even without name matching.
    assert VocabMap(teacher_tok, teacher_tok, match_special_names=False).t2s[im_end] == im_end


def test_model_rows_beyond_tokenizer_and_fewer_rows(teacher_tok, student_tok):
    n_t, n_s = len(teacher_tok), len(student_tok)
    m = VocabMap(teacher_tok, student_tok, teacher_vocab_size=n_t + 64, student_vocab_size=n_s + 8)
    _check_invariants(m, teacher_tok, student_tok)
    assert m.t2s.shape == (n_t + 64,) and m.s2t.shape == (n_s + 8,)
    assert (m.t2s[n_t:] == -1).all() and (m.s2t[n_s:] == -1).all()
    assert int(m.overlap_teacher_ids.max()) < n_t and int(m.overlap_student_ids.max()) < n_s
    small = VocabMap(teacher_tok, student_tok, teacher_vocab_size=300)
    assert small.t2s.shape == (300,) and int(small.s2t.max()) < 300
    with pytest.raises(ValueError, match="vocab_size"):
        VocabMap(teacher_tok, student_tok, teacher_vocab_size=0)


def test_to_and_repr(teacher_tok, student_tok):
    m = VocabMap(teacher_tok, student_tok).to("cpu")
    assert "overlap=" in repr(m) and m.t2s.device.type == "cpu"


# ---- real tokenizers (skip when ../shared/tokenizers is absent) ----


def test_real_qwen_llama2_newline_space_and_padding_rows(real_tok):
    q, ll = real_tok("qwen2.5"), real_tok("llama2")
    m = VocabMap(q, ll, teacher_vocab_size=152064)
    assert m.t2s.shape == (152064,) and (m.t2s[len(q) :] == -1).all()
    assert m.t2s[q.convert_tokens_to_ids("Ċ")] == ll.convert_tokens_to_ids("<0x0A>")
    assert m.s2t[ll.convert_tokens_to_ids("<0x0A>")] == q.convert_tokens_to_ids("Ċ")
    assert m.t2s[q.convert_tokens_to_ids("Ġthe")] == ll.convert_tokens_to_ids("▁the")
    assert m.t2s[q.convert_tokens_to_ids("x")] == ll.convert_tokens_to_ids("x")  # not <0x78>
    assert m.t2s[q.eos_token_id] == ll.eos_token_id
    assert m.t2s[q.convert_tokens_to_ids("<|im_start|>")] == -1
    assert torch.equal(m.t2s[m.overlap_teacher_ids], m.overlap_student_ids)
    assert torch.equal(m.s2t[m.overlap_student_ids], m.overlap_teacher_ids)
    assert m.num_overlap > 2 * m.raw_overlap


def test_real_gpt2_llama2_full_invariants_and_roles(real_tok):
    g, ll = real_tok("gpt2"), real_tok("llama2")
    m = VocabMap(g, ll)
    _check_invariants(m, g, ll)
    assert m.t2s[50256] == ll.eos_token_id and m.s2t[ll.bos_token_id] == 50256


def test_real_wordpiece_continuation_matches_plain(real_tok):
    b, g = real_tok("bert-base-uncased"), real_tok("gpt2")
    m = VocabMap(b, g)
    x = g.convert_tokens_to_ids("x")
    assert m.t2s[b.convert_tokens_to_ids("##x")] == x and m.t2s[b.convert_tokens_to_ids("x")] == x
    assert m.s2t[x] == b.convert_tokens_to_ids("x")  # the lower id represents b"x"


def test_special_pairs_link_first(teacher_tok, student_tok):
    im_end = teacher_tok.convert_tokens_to_ids("<|im_end|>")
    eos_s = student_tok.eos_token_id
    m = VocabMap(teacher_tok, student_tok, special_pairs=[(im_end, eos_s)])
    assert m.t2s[im_end] == eos_s and m.s2t[eos_s] == im_end
    # The role pair of <|endoftext|> then finds the student's EOS taken: t2s only, not in O.
    assert m.t2s[teacher_tok.eos_token_id] == eos_s
    assert teacher_tok.eos_token_id not in m.overlap_teacher_ids.tolist()
    with pytest.raises(ValueError, match="special_pairs"):
        VocabMap(teacher_tok, student_tok, special_pairs=[(10**6, 0)])


def _tiny_lm(vocab_size: int):
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=16, n_embd=8, n_layer=1, n_head=1
    )
    return transformers.GPT2LMHeadModel(cfg)


def test_for_models_sizes_to_the_heads_and_checks(teacher_tok, student_tok):
    n_t, n_s = len(teacher_tok), len(student_tok)
    t_model, s_model = _tiny_lm(n_t + 8), _tiny_lm(n_s + 3)
    m = VocabMap.for_models(teacher_tok, student_tok, t_model, s_model)
    assert (m.teacher_vocab_size, m.student_vocab_size) == (n_t + 8, n_s + 3)
    m.check_models(t_model, s_model)
    m.check_models(n_t + 8, s_model.get_output_embeddings().weight)  # ints and weights too
    assert check_vocab_sizes(teacher_tok, student_tok, t_model, s_model) == (n_t + 8, n_s + 3)
    # Built without the models' sizes: refused against the models, with the fix.
    bare = VocabMap(teacher_tok, student_tok)
    with pytest.raises(ValueError, match=r"VocabMap.for_models\(") as err:
        bare.check_models(t_model, s_model)
    assert f"{n_t} teacher entries" in str(err.value) and f"{n_t + 8} rows" in str(err.value)
    # A tokenizer with more ids than the head has rows: the wrong tokenizer for the model.
    with pytest.raises(ValueError, match="resize_token_embeddings") as err:
        VocabMap.for_models(teacher_tok, student_tok, t_model, _tiny_lm(n_s - 1))
    assert "student tokenizer" in str(err.value) and f"{n_s - 1} rows" in str(err.value)
    with pytest.raises(ValueError, match="vocab size"):
        check_vocab_sizes(teacher_tok, student_tok, object(), 5)
