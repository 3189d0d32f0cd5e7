"""Row-chunked sums with gradients taken during the forward pass (the loss's memory bound).

Memory design: the projected paths need ``[N_aligned, V]`` logits for both vocabularies (V up to
256k), for the forward pass *and* for the backward pass. Plain autograd would keep every one of
them alive until ``backward()``. Here the aligned rows are processed ``chunk_size`` at a time by
``_ChunkedSums``, an ``autograd.Function`` that, for each chunk, builds the logits, reduces them to
a few scalars, and immediately back-propagates those scalars to the chunk's inputs (hidden rows,
student head, projector). Only those input-sized gradients are kept; the chunk's logits are freed
before the next chunk. ``backward()`` then just scales the stored gradients by the incoming ones.
Rejected: ``torch.utils.checkpoint`` per chunk gives the same memory bound but recomputes every
chunk's forward pass; by FLOP count (the vocabulary matmuls dominate) that is about 1.6x the
naive time at the paper's shapes, while taking the gradient during the forward pass costs what
autograd does.
The price: gradients are computed whenever an input requires grad, even if ``backward()`` is
never called (wrap evaluation in ``torch.no_grad()``), and double backward is not supported.

**Ragged inputs** (``ragged=``): per-entry tensors that belong to rows (``byte_kd``'s extension
entries, thousands per target with a 152k-vocabulary teacher) are sliced per chunk, so each
chunk reads its own entries only. Passed whole, every chunk would scan all of them: at the
paper's shapes with 6000 entries per target that made a ``byte_sets`` step 115x SFT on an H200
(BENCHMARKS.md, "GPU step"). The slices come from one ``searchsorted`` of the chunk starts over
each group's (sorted) row index and one host sync per call for all groups, which also checks
that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dskd_align.torch.heads import lm_logits

__all__ = ["ChunkFn", "chunked_sums", "token_log_probs"]

ChunkFn = Callable[..., tuple[tuple[Tensor, ...], tuple[Tensor, ...]]]
# (name, row of each entry [E] sorted ascending, the entries' tensors [E, ...]) for ``ragged=``
RaggedGroup = tuple[str, Tensor, list[Tensor]]


class _ChunkedSums(torch.autograd.Function):
    """Row-chunked ``fn`` with gradients taken chunk by chunk during the forward pass.

    ``fn(*row_slices, *shared) -> (sums, counts)``: differentiable scalar sums over the chunk's
    rows and integer counts. Returns the sums and counts added over all chunks.
    """

    @staticmethod
    def forward(ctx: Any, fn: ChunkFn, chunk_size: int, n_row: int, ragged: Any, *inputs: Any
                ) -> Any:  # fmt: skip
        needs = ctx.needs_input_grad[4:]
        n_rows = inputs[0].shape[0]
        # Leaves for the shared inputs are made once; autograd.grad returns per-chunk gradients
        # instead of accumulating into .grad, so the caller's tensors are never touched.
        shared = [
            x.detach().requires_grad_() if need else x
            for x, need in zip(inputs[n_row:], needs[n_row:], strict=True)
        ]
        sums: list[Tensor] | None = None
        counts: list[Tensor] | None = None
        grads: dict[tuple[int, int], Tensor] = {}  # (term k, input i) -> gradient of term k
        # At least one (possibly empty) chunk, so empty inputs still give typed zero sums.
        for start in range(0, max(n_rows, 1), chunk_size):
            stop = min(start + chunk_size, n_rows)
            rows = [
                x[start:stop].detach().requires_grad_() if need else x[start:stop]
                for x, need in zip(inputs[:n_row], needs[:n_row], strict=True)
            ]
            leaves = rows + shared
            with torch.enable_grad():
                c_sums, c_counts = fn(*leaves, *ragged(start // chunk_size))
            for k, term in enumerate(c_sums):
                if not term.requires_grad:
                    continue
                wanted = [i for i, x in enumerate(leaves) if needs[i] and x is not None]
                got = torch.autograd.grad(
                    term, [leaves[i] for i in wanted], retain_graph=True, allow_unused=True
                )
                for i, g in zip(wanted, got, strict=True):
                    if g is None:
                        continue
                    if i < n_row:  # disjoint row slices: write in place, [n_rows, ...]
                        buf = grads.get((k, i))
                        if buf is None:
                            buf = grads[(k, i)] = inputs[i].new_zeros(inputs[i].shape)
                        buf[start:stop] = g
                    else:  # shared input: accumulate over chunks in >= float32
                        acc = torch.promote_types(g.dtype, torch.float32)
                        if (k, i) in grads:
                            grads[(k, i)] += g.to(acc)
                        else:
                            grads[(k, i)] = g.to(acc)
            c_sums = [s.detach() for s in c_sums]
            sums = c_sums if sums is None else [a + b for a, b in zip(sums, c_sums, strict=True)]
            counts = (
                list(c_counts)
                if counts is None
                else [a + b for a, b in zip(counts, c_counts, strict=True)]
            )
            del c_sums, c_counts, leaves, rows  # drop the chunk's graph before the next chunk
        assert sums is not None and counts is not None
        ctx.grads = grads
        ctx.dtypes = [x.dtype if isinstance(x, Tensor) else None for x in inputs]
        ctx.mark_non_differentiable(*counts)
        return (*sums, *counts)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grad_outputs: Tensor) -> Any:
        out: list[Tensor | None] = [None] * len(ctx.dtypes)
        for (k, i), g in ctx.grads.items():
            scaled = g * grad_outputs[k].to(g.dtype)
            out[i] = scaled if out[i] is None else out[i] + scaled
        out = [g if g is None else g.to(dt) for g, dt in zip(out, ctx.dtypes, strict=True)]
        return (None, None, None, None, *out)


def chunked_sums(
    fn: ChunkFn,
    n_sums: int,
    row_inputs: list[Tensor],
    shared: list[Tensor | None],
    chunk_size: int | None,
    ragged: list[RaggedGroup] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Run ``fn`` over row chunks of ``row_inputs`` (all ``[N, ...]``) and add up its outputs.

    ``fn(*row_slices, *shared, *ragged_slices) -> (sums, counts)`` returns ``n_sums``
    differentiable scalars. ``ragged``: groups of per-entry tensors (no gradient) whose rows are
    given, sorted; each chunk gets the entries of its rows (module notes), in group order.

    ``chunk_size=None`` is the naive reference: one call on all rows under plain autograd (same
    math, memory ``O(N x V)``). Returns ``(sums, counts)``.
    """
    groups = ragged or []
    if chunk_size is None:
        sums, counts = fn(*row_inputs, *shared, *(x for _, _, ts in groups for x in ts))
        return list(sums), list(counts)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    slicer = _ragged_slicer(groups, row_inputs[0].shape[0], chunk_size)
    inputs = [*row_inputs, *shared]
    if not (torch.is_grad_enabled() and any(_requires_grad(x) for x in inputs)):
        # Evaluation: no gradient to take, so no reason to pay for one.
        with torch.no_grad():
            return _add_chunks(fn, row_inputs, shared, chunk_size, slicer)
    out = _ChunkedSums.apply(fn, chunk_size, len(row_inputs), slicer, *inputs)
    return list(out[:n_sums]), list(out[n_sums:])


def _ragged_slicer(
    groups: list[RaggedGroup], n_rows: int, chunk_size: int
) -> Callable[[int], list[Tensor]]:
    """``slicer(c)``: chunk ``c``'s entries of every group, flat. One host sync for all groups."""
    if not groups:
        return lambda c: []
    n_chunks = max(-(-n_rows // chunk_size), 1)
    stats = []
    for _, row, _ in groups:
        starts = torch.arange(n_chunks + 1, device=row.device, dtype=row.dtype) * chunk_size
        stats.append(torch.searchsorted(row, starts))
        # The slices are right only if the rows are sorted and in range: checked in the same sync.
        bad = (row[1:] < row[:-1]).any() if row.numel() > 1 else row.new_zeros((), dtype=bool)
        bad = bad | (row < 0).any() | (row >= n_rows).any()
        stats.append(bad.long()[None])
    flat = torch.cat(stats).tolist()
    bounds = []
    for i, (name, _, _) in enumerate(groups):
        at = i * (n_chunks + 2)
        if flat[at + n_chunks + 1]:
            raise ValueError(
                f"{name}: the row index of ragged entries must be sorted ascending and within "
                f"[0, {n_rows}) (the collator builds them so): rebuild the batch's fields with "
                "its collator instead of editing them"
            )
        bounds.append(flat[at : at + n_chunks + 1])

    def slicer(c: int) -> list[Tensor]:
        return [
            x[b[c] : b[c + 1]] for b, (_, _, ts) in zip(bounds, groups, strict=True) for x in ts
        ]

    return slicer


def _add_chunks(
    fn: ChunkFn,
    row_inputs: list[Tensor],
    shared: list[Tensor | None],
    chunk_size: int,
    slicer: Callable[[int], list[Tensor]],
) -> tuple[list[Tensor], list[Tensor]]:
    """Forward-only loop over row chunks (at least one, possibly empty)."""
    n_rows = row_inputs[0].shape[0]
    sums: list[Tensor] = []
    counts: list[Tensor] = []
    for start in range(0, max(n_rows, 1), chunk_size):
        rows = (x[start : start + chunk_size] for x in row_inputs)
        c_sums, c_counts = fn(*rows, *shared, *slicer(start // chunk_size))
        sums = list(c_sums) if not sums else [a + b for a, b in zip(sums, c_sums, strict=True)]
        counts = (
            list(c_counts) if not counts else [a + b for a, b in zip(counts, c_counts, strict=True)]
        )
    return sums, counts


def _requires_grad(x: Any) -> bool:
    return isinstance(x, Tensor) and x.requires_grad


class _TokenLogProbs(torch.autograd.Function):
    """``log softmax(z_i / T_k)[y_ik]`` for every row ``i`` and target set ``k``, in row chunks.

    Unlike ``_ChunkedSums`` the output is a vector per row (a segment reduction follows, so the
    gradient with respect to each row's value is only known in ``backward``); the chunk's logits
    are therefore recomputed in ``backward`` (one extra head matmul per chunk, about 4/3 of plain
    autograd's cost) instead of being kept: peak memory holds one ``[chunk, V]`` block.
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor, weight: Tensor, bias: Any, targets: Tensor, temps: Any,
                chunk_size: int) -> Tensor:  # fmt: skip
        n_rows = h.shape[0]
        out_dtype = torch.promote_types(weight.dtype, torch.float32)
        out = h.new_zeros((n_rows, len(temps)), dtype=out_dtype)  # [N, K]
        for start in range(0, n_rows, chunk_size):
            stop = min(start + chunk_size, n_rows)
            z = lm_logits(h[start:stop], weight, bias)  # [n, V]
            out[start:stop] = _gather_log_probs(z, targets[start:stop], temps)
            del z
        ctx.save_for_backward(h, weight, bias, targets)
        ctx.temps, ctx.chunk_size = temps, chunk_size
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> Any:
        h, weight, bias, targets = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_h = torch.zeros_like(h) if need_h else None
        grad_w = weight.new_zeros(weight.shape, dtype=acc) if need_w else None
        grad_b = weight.new_zeros(weight.shape[0], dtype=acc) if need_b else None
        for start in range(0, h.shape[0], ctx.chunk_size):
            stop = min(start + ctx.chunk_size, h.shape[0])
            z = lm_logits(h[start:stop], weight, bias)  # [n, V]
            gz = torch.zeros_like(z)  # d out / d z, [n, V]
            for k, t in enumerate(ctx.temps):
                y = targets[start:stop, k]  # [n]
                g = torch.where(y >= 0, grad_out[start:stop, k].to(z.dtype), 0.0) / t  # [n]
                gz -= g[:, None] * torch.softmax(z / t, dim=-1)
                gz.scatter_add_(1, y.clamp_min(0)[:, None], g[:, None])
            if grad_h is not None:
                grad_h[start:stop] = (gz.to(weight.dtype) @ weight).to(h.dtype)  # [n, d]
            if grad_w is not None:
                grad_w += (gz.T.to(weight.dtype) @ h[start:stop].to(weight.dtype)).to(acc)
            if grad_b is not None:
                grad_b += gz.sum(0).to(acc)
            del z, gz
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(bias.dtype)
        return grad_h, grad_w, grad_b, None, None, None


def _gather_log_probs(z: Tensor, targets: Tensor, temps: Any) -> Tensor:
    """``[n, V]`` logits, ``[n, K]`` targets (-1: none, gives 0) -> ``[n, K]`` log-probs."""
    cols = []
    for k, t in enumerate(temps):
        y = targets[:, k]
        zt = z / t
        lp = zt.gather(1, y.clamp_min(0)[:, None]).squeeze(1) - torch.logsumexp(zt, dim=-1)
        cols.append(torch.where(y >= 0, lp, 0.0))
    return torch.stack(cols, dim=1) if cols else z.new_zeros((z.shape[0], 0))


def token_log_probs(
    h: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    targets: Tensor,
    temperatures: tuple[float, ...],
    chunk_size: int | None,
) -> Tensor:
    """Per-row log-probabilities of target tokens, memory-bounded.

    ``h`` ``[N, d]`` rows (prediction positions), ``weight`` ``[V, d]`` (``nn.Linear`` layout),
    ``bias`` ``[V]`` or None, ``targets`` ``[N, K]`` int64 (``-1``: no target, the value is 0 and
    gets no gradient), one temperature per target column. Returns ``[N, K]`` (float32, float64
    for a float64 head) with ``out[i, k] = log_softmax(z_i / T_k)[targets[i, k]]``.
    ``chunk_size=None`` is the naive reference (plain autograd on all rows at once).
    """
    temps = tuple(float(t) for t in temperatures)
    if targets.shape != (h.shape[0], len(temps)):
        raise ValueError(f"targets must be [N={h.shape[0]}, K={len(temps)}]")
    if chunk_size is None:
        return _gather_log_probs(lm_logits(h, weight, bias), targets, temps)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
    return _TokenLogProbs.apply(h, weight, bias, targets, temps, chunk_size)
