"""``byte_kd``: the tables, the per-batch targets and the loss against a plain float64 reference
written here (per row, per token, per vocabulary id); gradients reach the student only; empty
batches give 0; the targets survive the trainer's re-wrapping, ``.to`` and pickling, and come out
the same from precomputed rows; truncation only drops targets."""

from __future__ import annotations

import pickle
import re

import pytest
import torch
from conftest import BUILTIN

from dskd_align import load_core
from dskd_align.torch import DSKDCollator, VocabMap
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import (
    BYTE_FIELDS,
    ByteKDBatch,
    ByteKDCollator,
    byte_targets,
    with_byte_targets,
)
from dskd_align.torch.data import DSKDBatch
from dskd_align.torch.objectives import build_loss
from dskd_align.torch.precompute import precompute_alignments

FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@pytest.fixture(scope="module")
def pair(teacher_tok, student_tok):
    v_t, v_s = len(teacher_tok) + 8, len(student_tok) + 4  # padding rows, as real heads have
    vmap = VocabMap(teacher_tok, student_tok, v_t, v_s)
    return ByteTables(teacher_tok, student_tok, vmap), vmap


@pytest.fixture(scope="module")
def texts(rows):
    return [{"prompt": p, "response": r} for p, r in BUILTIN] + rows[:6]


# ---- the plain reference ----


def plain_bytes(tok, n):
    core, out, fb = load_core(tok), [], []
    for i in range(n):
        m = FALLBACK.match(tok.convert_ids_to_tokens(i) or "") if i < core.table_size else None
        if m:
            out.append(bytes([int(m.group(1), 16)]))
        elif i < core.table_size and not core.is_special(i):
            out.append(core.token_bytes(i) or None)
        else:
            out.append(None)
        fb.append(bool(m))
    return out, fb


def plain_first(r, sb, fb):
    """The longest student token that is a prefix of r; a regular piece before byte fallback,
    then the lowest id."""
    best = None
    for j, b in enumerate(sb):
        if b and r.startswith(b):
            key = (len(b), not fb[j], -j)
            if best is None or key > best[0]:
                best = (key, j)
    return -1 if best is None else best[1]


def plain_targets(batch, tb, sb):
    """[(row, student pos, teacher pos, P, k's id or -1, crosses)] for complete rows."""
    out = []
    for r in range(batch["student_labels"].shape[0]):
        sides = []
        for ids, labels, table in (
            (batch["teacher_input_ids"][r], batch["teacher_labels"][r], tb),
            (batch["student_input_ids"][r], batch["student_labels"][r], sb),
        ):
            pos = [p for p in range(len(labels)) if labels[p] != -100]
            toks = [(p, int(ids[p])) for p in pos]
            if any(table[i] is None for _, i in toks[:-1]) or table[toks[-1][1]] is not None:
                sides.append(None)  # a special token inside the response, or no end token
                continue
            spans, a = [], 0
            for p, i in toks[:-1]:
                spans.append((p, i, a, a + len(table[i])))
                a += len(table[i])
            sides.append((spans, toks[-1][0], b"".join(table[i] for _, i in toks[:-1])))
        if None in sides:
            continue
        (t_spans, _, text), (s_spans, s_end, s_text) = sides
        shift = 0 if s_text == text else 1 if s_text == b" " + text else None
        if shift is None:
            continue
        starts = [(p, i, a - shift, e - shift, False) for p, i, a, e in s_spans]
        starts.append((s_end, -1, len(text), len(text), True))
        for p, u, a, e, is_end in starts:
            if p < 1 or a <= 0 or (a >= len(text) and not is_end) or (is_end and a != len(text)):
                continue
            ik = next(j for j, s in enumerate(t_spans) if s[2] < a <= s[3])
            t_pos, g, c, d = t_spans[ik]
            ix = ik if a < d else ik + 1  # the teacher token the student token starts in
            crosses = not is_end and e > t_spans[ix][3]
            cross = None
            if crosses:  # (x, the teacher token after x, x's bytes from a, the student token)
                _, x, cx, _ = t_spans[ix]
                cross = (x, t_spans[ix + 1][1], tb[x][a - cx :], u)
            out.append((r, p - 1, t_pos - 1, text[c:a], g if d == a else -1, crosses, cross))
    return out


def plain_q(P, g, p, p2, tb, pm, first, v_s):
    """The target distribution (unnormalized) of one student position, float64."""
    q = torch.zeros(v_s, dtype=torch.float64)
    for v, b in enumerate(tb):
        if b is not None and len(b) > len(P) and b.startswith(P):
            u = first(b[len(P) :])
            if u >= 0:
                q[u] += p[v]
    if g >= 0:
        for w in range(len(tb)):
            if pm[w] >= 0:
                q[pm[w]] += p[g] * p2[w]
    return q


# ---- tests ----


def test_tables_first_and_pm(pair, teacher_tok, student_tok):
    tables, vmap = pair
    sb, fb = plain_bytes(student_tok, vmap.student_vocab_size)
    tb, _ = plain_bytes(teacher_tok, vmap.teacher_vocab_size)
    for r in (b" the", b"\n    return", b"\xf0\x9f\x99\x82!", b"12 * 7", b"\t", b"  x"):
        assert tables.first(r) == plain_first(r, sb, fb), r
    for i in range(0, vmap.teacher_vocab_size, 7):
        want = plain_first(tb[i], sb, fb) if tb[i] else int(vmap.t2s[i])
        assert int(tables.pm[i]) == want, i
    assert int(tables.pm[teacher_tok.eos_token_id]) == student_tok.eos_token_id
    # Extensions of one prefix: every teacher token that strictly extends it.
    g = next(i for i, b in enumerate(tb) if b and len(b) >= 2)
    pid = int(tables.prefix_id[int(tables.t_off[g])])  # the first byte of token g
    lo, hi = int(tables.ext_ptr[pid]), int(tables.ext_ptr[pid + 1])
    want = {v for v, b in enumerate(tb) if b and len(b) > 1 and b[:1] == tb[g][:1]}
    assert set(tables.ext_v[lo:hi].tolist()) == want


def test_targets_equal_the_plain_walk(pair, teacher_tok, student_tok, texts):
    tables, vmap = pair
    tb, _ = plain_bytes(teacher_tok, vmap.teacher_vocab_size)
    sb, fb = plain_bytes(student_tok, vmap.student_vocab_size)
    batch = DSKDCollator(teacher_tok, student_tok)(texts)
    tg = byte_targets(batch, tables)
    want = plain_targets(batch, tb, sb)
    got = list(zip(*(tg[k].tolist() for k in BYTE_FIELDS[:5]), strict=True))
    assert [(r, sp, tp, g, x) for r, sp, tp, _, g, x, _ in want] == got
    assert len(got) > 0.8 * int(batch.supervised_tokens.sum())  # most student tokens
    # Entries: every teacher token extending the consumed bytes, with first() of the rest.
    ents = list(zip(*(tg[k].tolist() for k in BYTE_FIELDS[5:8]), strict=True))
    for n, (_, _, _, P, _, _, _) in enumerate(want[:60]):
        mine = {(v, u) for row, v, u in ents if row == n}
        ref = {(v, plain_first(b[len(P) :], sb, fb)) for v, b in enumerate(tb)
               if b and len(b) > len(P) and b.startswith(P)}  # fmt: skip
        assert mine == {x for x in ref if x[1] >= 0}, n
    # Crossing targets: x, the teacher token after it, first() of x's rest, the student token.
    cross = list(zip(*(tg[k].tolist() for k in BYTE_FIELDS[8:]), strict=True))
    for (*_, crosses, c), (x, y, frm, to) in zip(want, cross, strict=True):
        assert (x, y, frm, to) == ((c[0], c[1], plain_first(c[2], sb, fb), c[3]) if crosses
                                   else (-1, -1, -1, -1))  # fmt: skip


@pytest.mark.parametrize("crossing", ["skip", "one_step", "two_step"])
def test_loss_equals_the_float64_reference(pair, teacher_tok, student_tok, texts, crossing):
    tables, vmap = pair
    tb, _ = plain_bytes(teacher_tok, vmap.teacher_vocab_size)
    sb, fb = plain_bytes(student_tok, vmap.student_vocab_size)
    batch = DSKDCollator(teacher_tok, student_tok)(texts[:5])
    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    v_t, v_s = vmap.teacher_vocab_size, vmap.student_vocab_size
    W_t, W_s = (
        torch.randn(v_t, 6, generator=g, dtype=f64),
        torch.randn(v_s, 5, generator=g, dtype=f64),
    )
    h_t = torch.randn(*batch.teacher_input_ids.shape, 6, generator=g, dtype=f64)
    h_s = torch.randn(*batch.student_input_ids.shape, 5, generator=g, dtype=f64)
    alpha, tau = 0.4, 1.5
    fn = build_loss("byte_kd", W_t, W_s, tables, alpha=alpha, tau=tau, crossing=crossing,
                    chunk_size=7)  # fmt: skip
    loss, m = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    pm = tables.pm.tolist()
    kls = []
    n_cross = 0
    for r, sp, tp, P, k, crosses, cross in plain_targets(batch, tb, sb):
        if crosses and crossing == "skip":
            continue
        p = torch.softmax(h_t[r, tp] @ W_t.T / tau, -1)
        p2 = torch.softmax(h_t[r, tp + 1] @ W_t.T / tau, -1)
        q = plain_q(P, k, p, p2, tb, pm, lambda x: plain_first(x, sb, fb), v_s)
        if crosses and crossing == "two_step":
            # Of x's mass, the share the teacher gives the next token y goes to the student's.
            x, y, rest, u = cross
            if k < 0:  # the student token starts inside k: x = k, y read at the next position
                moved = p[x] * p2[y]
            else:  # it starts where k ends: x follows k, y two positions on
                p3 = torch.softmax(h_t[r, tp + 2] @ W_t.T / tau, -1)
                moved = p[k] * p2[x] * p3[y]
            q[plain_first(rest, sb, fb)] -= moved
            q[u] += moved
            n_cross += 1
        q = q / q.sum()
        ls = torch.log_softmax(h_s[r, sp] @ W_s.T / tau, -1)
        kls.append(sum(q[u] * (q[u].log() - ls[u]) for u in range(v_s) if q[u] > 0))
    lab = batch.student_labels[:, 1:]
    z = h_s[:, :-1] @ W_s.T
    ce = torch.nn.functional.cross_entropy(z[lab != -100], lab[lab != -100])
    ref = (1 - alpha) * ce + alpha * torch.stack(kls).mean()
    torch.testing.assert_close(loss, ref, rtol=1e-9, atol=1e-9)
    assert int(m["n_byte_targets"]) == len(kls)
    assert crossing != "two_step" or n_cross > 0


def test_gradients_reach_the_student_not_the_teacher(pair, teacher_tok, student_tok, texts):
    tables, vmap = pair
    batch = with_byte_targets(DSKDCollator(teacher_tok, student_tok)(texts[:4]), tables)
    W_t = torch.randn(vmap.teacher_vocab_size, 6, requires_grad=True)
    W_s = torch.randn(vmap.student_vocab_size, 5, requires_grad=True)
    h_t = torch.randn(*batch.teacher_input_ids.shape, 6, requires_grad=True)
    h_s = torch.randn(*batch.student_input_ids.shape, 5, requires_grad=True)
    fn = build_loss("byte_kd", W_t.detach(), W_s.detach(), tables, alpha=1.0, chunk_size=16)
    loss, m = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    loss.backward()
    assert h_s.grad is not None and h_s.grad.abs().sum() > 0 and W_s.grad.abs().sum() > 0
    assert h_t.grad is None and W_t.grad is None
    # Chunked gradients equal plain autograd's.
    ref_fn = build_loss("byte_kd", W_t.detach(), W_s.detach(), tables, alpha=1.0, chunk_size=None)
    h2 = h_s.detach().clone().requires_grad_()
    ref, _ = ref_fn.forward_batch(batch, h2, h_t.detach(), W_s.detach(), W_t.detach())
    ref.backward()
    torch.testing.assert_close(loss.detach(), ref.detach())
    torch.testing.assert_close(h_s.grad, h2.grad)
    assert 0 < float(m["byte_coverage"]) <= 1 and 0 < float(m["byte_teacher_mass"]) <= 1


def test_all_masked_batch_gives_zero(pair, teacher_tok, student_tok, texts):
    tables, vmap = pair
    batch = dict(DSKDCollator(teacher_tok, student_tok)(texts[:3]))
    batch["student_labels"] = torch.full_like(batch["student_labels"], -100)
    batch["supervised_tokens"] = torch.zeros_like(batch["supervised_tokens"])
    W_t, W_s = torch.randn(vmap.teacher_vocab_size, 6), torch.randn(vmap.student_vocab_size, 5)
    h_s = torch.randn(*batch["student_input_ids"].shape, 5, requires_grad=True)
    h_t = torch.randn(*batch["teacher_input_ids"].shape, 6)
    fn = build_loss("byte_kd", W_t, W_s, tables)
    loss, m = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    loss.backward()
    assert loss.item() == 0.0 and int(m["n_byte_targets"]) == 0
    assert all(torch.isfinite(v).all() for v in m.values()) and torch.isfinite(h_s.grad).all()


def test_bf16_inputs_give_a_float32_loss(pair, teacher_tok, student_tok, texts):
    tables, vmap = pair
    batch = DSKDCollator(teacher_tok, student_tok)(texts[:3])
    W_t, W_s = torch.randn(vmap.teacher_vocab_size, 6), torch.randn(vmap.student_vocab_size, 5)
    h_t = torch.randn(*batch.teacher_input_ids.shape, 6)
    h_s = torch.randn(*batch.student_input_ids.shape, 5)
    fn = build_loss("byte_kd", W_t, W_s, tables, chunk_size=8)
    ref, _ = fn.forward_batch(batch, h_s, h_t, W_s, W_t)
    hb = h_s.bfloat16().requires_grad_()
    loss, _ = fn.forward_batch(batch, hb, h_t.bfloat16(), W_s.bfloat16(), W_t.bfloat16())
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.detach(), ref, rtol=0.05, atol=0.05)
    loss.backward()
    assert hb.grad.dtype == torch.bfloat16 and torch.isfinite(hb.grad.float()).all()


def test_batch_survives_rewrapping_to_and_pickling(pair, teacher_tok, student_tok, texts):
    tables, _ = pair
    col = ByteKDCollator(DSKDCollator(teacher_tok, student_tok), tables)
    batch = col(texts[:4])
    assert isinstance(batch, ByteKDBatch)
    for again in (
        type(batch)(dict(batch.items())),
        batch.to("cpu"),
        pickle.loads(pickle.dumps(batch)),
    ):
        assert isinstance(again, ByteKDBatch)
        assert all(torch.equal(again[k], batch[k]) for k in batch)
    restored = pickle.loads(pickle.dumps(col))  # DataLoader workers (spawn)
    assert all(torch.equal(restored(texts[:4])[k], batch[k]) for k in batch)
    assert col.special_pairs == col.collator.special_pairs  # the wrapped collator's attributes
    assert not isinstance(DSKDCollator(teacher_tok, student_tok)(texts[:2]), ByteKDBatch)
    assert set(DSKDBatch._names()) < set(batch)


def test_precomputed_rows_give_the_same_targets(pair, teacher_tok, student_tok, texts):
    tables, _ = pair
    col = ByteKDCollator(DSKDCollator(teacher_tok, student_tok), tables)
    cols = precompute_alignments({k: [r[k] for r in texts] for k in texts[0]}, col.collator)
    pre = [dict(r, **{k: cols[k][i] for k in cols}) for i, r in enumerate(texts)]
    a, b = col(pre), col(texts)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_truncation_and_left_padding_only_move_or_drop_targets(pair, teacher_tok, student_tok,
                                                               texts):  # fmt: skip
    tables, _ = pair
    full = with_byte_targets(DSKDCollator(teacher_tok, student_tok)(texts), tables)

    def keyed(b):
        ids = b.student_input_ids
        return {(r, int(ids[r, : sp + 1].ne(student_tok.pad_token_id).sum()), g, x)
                for r, sp, g, x in zip(*(b[k].tolist() for k in ("byte_batch", "byte_student_pos",
                "byte_token", "byte_crosses")), strict=True)}  # fmt: skip

    left = with_byte_targets(
        DSKDCollator(teacher_tok, student_tok, padding_side="left")(texts), tables
    )
    assert keyed(left) == keyed(full)
    cut = with_byte_targets(DSKDCollator(teacher_tok, student_tok, max_length=40)(texts), tables)
    assert 0 < len(keyed(cut)) < len(keyed(full)) and keyed(cut) <= keyed(full)


def test_refusals_name_the_fix(pair):
    tables, vmap = pair
    W_t, W_s = torch.randn(vmap.teacher_vocab_size, 6), torch.randn(vmap.student_vocab_size, 5)
    with pytest.raises(TypeError, match="ByteTables.for_models"):
        build_loss("byte_kd", W_t, W_s, vmap)
    with pytest.raises(ValueError, match="forward_kl"):
        build_loss("byte_kd", W_t, W_s, tables, divergence="reverse_kl")
    with pytest.raises(ValueError, match="for_models"):
        build_loss("byte_kd", W_t[:-1], W_s, tables)
    with pytest.raises(ValueError, match="crossing"):
        build_loss("byte_kd", W_t, W_s, tables, unmapped="other")


@pytest.mark.parametrize(
    "config", [{"tokenize_jointly": True}, {"use_chat_template": True, "tokenize_jointly": True}]
)
def test_templated_and_jointly_tokenized_rows_get_targets(teacher_tok, student_chat_tok, config):
    vmap = VocabMap(teacher_tok, student_chat_tok)
    tables = ByteTables(teacher_tok, student_chat_tok, vmap)
    rows = [{"prompt": p, "response": r} for p, r in BUILTIN]
    batch = with_byte_targets(DSKDCollator(teacher_tok, student_chat_tok, **config)(rows), tables)
    per_row = batch.byte_batch.bincount(minlength=len(rows))
    assert (per_row > 0).all() and per_row.sum() > 0.8 * batch.supervised_tokens.sum()
