"""Small random problems for the loss tests: heads, hidden states and a batch built by hand.

The batch follows CONTRACT.md: labels and ``*_chunk_ids`` at token positions, exact pairs as
prediction positions (token position - 1). The vocabulary map has the cases that matter: teacher
ids with no student twin, student ids that no teacher id maps to, and two teacher ids (and two
student ids) that share one twin (same bytes, as GPT-2 ``x`` and Llama-2 ``<0x78>``).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

V_T, V_S, D_T, D_S = 13, 11, 5, 4


def vocab_map(g: torch.Generator) -> SimpleNamespace:
    """t2s [V_T], s2t [V_S] with unmapped ids on both sides and many-to-one twins."""
    t_ids = torch.randperm(V_T, generator=g)
    s_ids = torch.randperm(V_S, generator=g)
    t2s = torch.full((V_T,), -1, dtype=torch.long)
    s2t = torch.full((V_S,), -1, dtype=torch.long)
    t2s[t_ids[:7]] = s_ids[:7]  # 7 one-to-one twins
    s2t[s_ids[:7]] = t_ids[:7]
    t2s[t_ids[7]] = s_ids[0]  # a second teacher id with the bytes of twin 0
    s2t[s_ids[7]] = t_ids[1]  # a second student id with the bytes of twin 1
    # Teacher ids t_ids[8:] and student ids s_ids[8:] have no twin.
    return SimpleNamespace(
        t2s=t2s, s2t=s2t, overlap_teacher_ids=t_ids[:7].clone(), overlap_student_ids=s_ids[:7]
    )


def _chunks(g: torch.Generator, B: int, L_t: int, L_s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk ids at token positions: from position 2 on each side, chunks of 1-3 tokens per side,
    ids contiguous over the batch; the tail of the longer side stays -1 (a cut chunk)."""
    tc = torch.full((B, L_t), -1, dtype=torch.long)
    sc = torch.full((B, L_s), -1, dtype=torch.long)
    cid = 0
    for b in range(B):
        i = j = 2 + b % 2  # rows start their response at different places
        while True:
            nt, ns = (int(x) for x in torch.randint(1, 4, (2,), generator=g))
            if i + nt > L_t or j + ns > L_s:
                break
            tc[b, i : i + nt] = cid
            sc[b, j : j + ns] = cid
            cid += 1
            i, j = i + nt, j + ns
    return tc, sc


def problem(seed: int = 0, dtype=torch.float64, B: int = 3, L_t: int = 10, L_s: int = 9, A: int = 8,
            bias: bool = False) -> SimpleNamespace:  # fmt: skip
    """Heads ``[V, d]`` (student's requires grad), hidden states, a batch dict, a vocab map."""
    g = torch.Generator().manual_seed(seed)
    W_t = torch.randn(V_T, D_T, generator=g, dtype=dtype)
    W_s = torch.randn(V_S, D_S, generator=g, dtype=dtype).requires_grad_()
    b_t = torch.randn(V_T, generator=g, dtype=dtype) if bias else None
    b_s = torch.randn(V_S, generator=g, dtype=dtype).requires_grad_() if bias else None
    h_t = torch.randn(B, L_t, D_T, generator=g, dtype=dtype) * 2
    h_s = (torch.randn(B, L_s, D_S, generator=g, dtype=dtype) * 2).requires_grad_()
    s_ids = torch.randint(0, V_S, (B, L_s), generator=g)
    t_ids = torch.randint(0, V_T, (B, L_t), generator=g)
    labels = s_ids.clone()
    labels[:, :2] = -100
    tc, sc = _chunks(g, B, L_t, L_s)
    batch = {
        "student_input_ids": s_ids,
        "teacher_input_ids": t_ids,
        "student_labels": labels,
        "teacher_labels": t_ids.masked_fill(torch.arange(L_t) < 2, -100),
        "student_chunk_ids": sc,
        "teacher_chunk_ids": tc,
        "align_batch": torch.randint(0, B, (A,), generator=g),
        "align_teacher_pos": torch.randint(0, L_t - 1, (A,), generator=g),
        "align_student_pos": torch.randint(0, L_s - 1, (A,), generator=g),
        "coverage": torch.rand(B, generator=g),
    }
    return SimpleNamespace(W_t=W_t, W_s=W_s, b_t=b_t, b_s=b_s, h_t=h_t, h_s=h_s, batch=batch,
                           vocab=vocab_map(g))  # fmt: skip


def empty_batch(pr: SimpleNamespace) -> dict:
    """``pr.batch`` with nothing supervised, no pair and no chunk."""
    out = dict(pr.batch)
    out["student_labels"] = torch.full_like(out["student_labels"], -100)
    out["student_chunk_ids"] = torch.full_like(out["student_chunk_ids"], -1)
    out["teacher_chunk_ids"] = torch.full_like(out["teacher_chunk_ids"], -1)
    for k in ("align_batch", "align_teacher_pos", "align_student_pos"):
        out[k] = torch.zeros(0, dtype=torch.long)
    return out


def grads(*ts):
    """Clones of ``.grad`` (None kept)."""
    return [None if t is None or t.grad is None else t.grad.clone() for t in ts]


def zero_grads(*ts) -> None:
    for t in ts:
        if t is not None:
            t.grad = None
