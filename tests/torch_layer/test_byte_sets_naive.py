"""``byte_sets`` against a plain float64 reference written here from the definitions in
``set_kd.py`` (Python byte strings, one target at a time, sets as explicit id lists), with every
option: tight extension sets, the student-boundary filter, crossing tokens."""

from __future__ import annotations

import pytest
import torch
from conftest import BUILTIN

from dskd_align.torch import DSKDCollator
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.set_kd import SetKD


@pytest.fixture(scope="module")
def batch(teacher_tok, student_tok, rows, set_tables):
    texts = [{"prompt": p, "response": r} for p, r in BUILTIN[2:5]] + rows[:1]
    return ByteKDCollator(DSKDCollator(teacher_tok, student_tok), set_tables)(texts)


def _strings(set_tables, side):
    ln, off, flat = (getattr(set_tables, f"{side}_{k}").tolist() for k in ("len", "off", "bytes"))
    return [bytes(flat[o : o + n]) for o, n in zip(off, ln, strict=True)]


def naive(set_tables, batch, h_s, h_t, W_s, W_t, *, sb, tight_ext, crossing, branch=False,
          unfiltered="keep"):  # fmt: skip
    tb, sbytes = _strings(set_tables, "t"), _strings(set_tables, "s")
    rep = set_tables._first.rep  # bytes -> student id (one per distinct string)
    teacher = {b for b in tb if b}
    v_t = len(tb)
    pm = set_tables.pm.tolist()

    def tight_ok(base: bytes, s: bytes) -> bool:  # no teacher token t, base < t <= s
        return not any(s[:j] in teacher for j in range(len(base) + 1, len(s) + 1))

    memo: dict = {}

    def members(r: bytes, first: int, ctx: tuple | None) -> list[int]:
        if (r, first, ctx) in memo:
            return memo[r, first, ctx]
        out = {first}
        for s, u in rep.items():
            if (
                len(s) > len(r)
                and s.startswith(r)
                and (ctx is None or tight_ok(ctx[0], ctx[1] + s))
            ):
                out.add(u)
        memo[r, first, ctx] = sorted(out)
        return memo[r, first, ctx]

    nxt = torch.zeros(v_t, len(sbytes), dtype=torch.float64)
    for w, b in enumerate(tb):
        if pm[w] >= 0:
            nxt[w, members(b, pm[w], (b, b"")) if b else [pm[w]]] = 1.0
    # Prefix lengths of ByteTables' prefix ids: an entry's remainder is bytes(v)[m:].
    pid_len = {}
    for g, b in enumerate(tb):
        for m in range(1, len(b) + 1):
            pid_len[int(set_tables.prefix_id[int(set_tables.t_off[g]) + m - 1])] = m
    ptr = set_tables.ext_ptr
    s_ids, s_lab = batch["student_input_ids"], batch["student_labels"]
    kl_all = []
    for i in range(batch["byte_batch"].numel()):
        r, sp, tp = (int(batch[k][i]) for k in ("byte_batch", "byte_student_pos",
                                                "byte_teacher_pos"))  # fmt: skip
        g, nxt_pos = int(batch["byte_token"][i]), min(tp + 1, h_t.shape[1] - 1)
        if branch and int(batch["set_branch_token"][i]) >= 0:
            # inside k: the teacher wrote P (the consumed bytes) and goes on from there
            g = int(batch["set_branch_token"][i])
            nxt_pos = batch["teacher_input_ids"].shape[1] + int(batch["set_branch_slot"][i])
        if crossing == "skip" and bool(batch["byte_crosses"][i]):
            continue
        prev = sbytes[int(s_ids[r, sp])]
        after = b"".join(sbytes[int(x)] for x, y in zip(s_ids[r, sp:], s_lab[r, sp:], strict=True)
                         if int(y) != -100)  # fmt: skip
        longer = any(len(s) > len(prev) and after.startswith(s) for s in rep)
        filt = sb and prev and not longer
        # where the filter is off at a shared boundary: the teacher's boundary, no extensions
        shared = int(batch["byte_token"][i]) >= 0
        trust = sb and prev and longer and unfiltered == "teacher" and shared

        def dropped(R: bytes) -> bool:
            return filt and any(prev + R[:k] in rep for k in range(1, len(R) + 1))  # noqa: B023

        p = torch.softmax(h_t[r, tp] @ W_t.T, -1)
        p2 = torch.softmax(h_t[r, nxt_pos] @ W_t.T, -1)
        ps = torch.softmax(h_s[r, sp] @ W_s.T, -1)
        masses, logs = [], []
        for e in (batch["byte_entry_row"] == i).nonzero()[:, 0].tolist():
            j = int(batch["set_entry_index"][e])
            v = int(batch["byte_entry_teacher"][e])
            m = pid_len[int(torch.searchsorted(ptr, torch.tensor(j), right=True)) - 1]
            rem = tb[v][m:]
            if dropped(rem) or trust:
                continue
            ids = members(rem, set_tables.first(rem), (tb[v], tb[v][:m]) if tight_ext else None)
            masses.append(p[v])
            logs.append(torch.log(ps[ids].sum()))
        if g >= 0:
            keep = torch.tensor([pm[w] >= 0 and not (tb[w] and dropped(tb[w]))
                                 for w in range(v_t)])  # fmt: skip
            q_next = torch.where(keep, p[g] * p2, 0.0)
            log_next = torch.log((nxt @ ps).clamp_min(1e-300))
            masses.append(q_next.sum())
            ce_next = (q_next * torch.where(keep, log_next, 0.0)).sum()
            # entropy over next classes: same bytes (specials: same twin) = one class
            cls = {}
            for w in range(v_t):
                if keep[w]:
                    key = tb[w] or ("special", pm[w])
                    cls[key] = cls.get(key, 0.0) + q_next[w]
        else:
            ce_next, cls = ps.new_zeros(()), {}
        mass = sum(masses) if masses else ps.new_zeros(())
        if float(mass) == 0:
            kl_all.append(ps.sum() * 0)
            continue
        n_ext = len(logs)
        q_ext = [x / mass for x in masses[:n_ext]]
        ent = sum(q * torch.log(q) for q in q_ext if q > 0) + sum(
            (c / mass) * torch.log(c / mass) for c in cls.values() if c > 0
        )
        ce = sum(q * lg for q, lg in zip(q_ext, logs, strict=True)) + ce_next / mass
        kl_all.append(ent - ce)
    return torch.stack(kl_all).mean() if kl_all else h_s.sum() * 0


@pytest.mark.parametrize(("sb", "tight_ext", "crossing"), [
    (True, True, "one_step"), (True, False, "skip"), (False, True, "skip")])  # fmt: skip
def test_equals_the_plain_reference(set_tables, batch, sb, tight_ext, crossing):
    _check(set_tables, batch, sb=sb, tight_ext=tight_ext, crossing=crossing)


def test_unfiltered_teacher_equals_the_plain_reference(set_tables, batch):
    """``unfiltered="teacher"``: the extensions are dropped at the shared-boundary targets that
    the filter leaves alone; the batch must have such entries, else this checks nothing."""
    trust = batch["set_unfiltered"] & (batch["byte_token"] >= 0)
    assert bool((trust[batch["byte_entry_row"]] & batch["set_entry_sb_ok"]).any())
    _check(set_tables, batch, sb=True, tight_ext=False, crossing="one_step", unfiltered="teacher")


def _check(set_tables, batch, **opts):
    g = torch.Generator().manual_seed(11)
    W_t = torch.randn(set_tables.teacher_vocab_size, 6, generator=g, dtype=torch.float64)
    W_s = torch.randn(set_tables.student_vocab_size, 5, generator=g, dtype=torch.float64)
    h_t = torch.randn(*batch["teacher_input_ids"].shape, 6, generator=g, dtype=torch.float64)
    h_s = torch.randn(*batch["student_input_ids"].shape, 5, generator=g, dtype=torch.float64)
    a, b = h_s.clone().requires_grad_(), h_s.clone().requires_grad_()
    mod = SetKD(set_tables, student_boundary=opts["sb"], tight_extensions=opts["tight_ext"],
                crossing=opts["crossing"], unfiltered=opts.get("unfiltered", "keep"),
                chunk_size=32).double()  # fmt: skip
    got, _ = mod.kd(batch, a, h_t, W_s, W_t)
    ref = naive(set_tables, batch, b, h_t, W_s, W_t, **opts)
    got.backward()
    ref.backward()
    assert ref > 0 and b.grad.abs().sum() > 0 and batch["set_echild_entry"].numel() > 0
    torch.testing.assert_close(got.detach(), ref.detach(), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-9)
