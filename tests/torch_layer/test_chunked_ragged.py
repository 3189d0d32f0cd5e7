"""``chunked_sums(ragged=...)``: each chunk gets exactly its rows' entries, the sums and gradients
equal one pass over everything, and entries out of order are refused (not silently misread)."""

import pytest
import torch

from dskd_align.torch.chunked import chunked_sums


def _fn(h, rid, scale, e_row, e_val):
    """Per row: h_i * (sum of its entries' values); entries of other chunks would be counted."""
    local = e_row - rid[:1]
    per_row = h.new_zeros(h.shape[0]).index_add(0, local, e_val.to(h.dtype))
    return ((h * per_row * scale).sum(),), (torch.tensor(e_row.numel()),)


def _inputs(n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(0, 4, (n,), generator=g)
    counts[3] = 0  # a row without entries
    e_row = torch.repeat_interleave(torch.arange(n), counts)
    e_val = torch.randn(e_row.numel(), generator=g, dtype=torch.float64)
    h = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    return h, e_row, e_val


@pytest.mark.parametrize("chunk", [1, 3, 4, 64])
def test_ragged_chunks_equal_one_pass(chunk):
    h, e_row, e_val = _inputs()
    rid = torch.arange(h.shape[0])
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    seen = []

    def fn(h_c, rid_c, scale_, e_row_c, e_val_c):
        if e_row_c.numel():  # the chunk's entries, and only them
            seen.append(e_row_c.clone())
            assert rid_c[0] <= e_row_c.min() and e_row_c.max() <= rid_c[-1]
        return _fn(h_c, rid_c, scale_, e_row_c, e_val_c)

    ragged = [("e_row", e_row, [e_row, e_val])]
    (s,), (n,) = chunked_sums(fn, 1, [h, rid], [scale], chunk, ragged)
    (s.sum()).backward()
    g_h, g_s = h.grad.clone(), scale.grad.clone()
    h.grad, scale.grad = None, None
    (r,), (m,) = chunked_sums(_fn, 1, [h, rid], [scale], None, ragged)
    r.backward()
    torch.testing.assert_close(s, r)
    torch.testing.assert_close(g_h, h.grad)
    torch.testing.assert_close(g_s, scale.grad)
    assert int(n) == int(m) == e_row.numel()  # every entry read once
    torch.testing.assert_close(torch.cat(seen), e_row)
    with torch.no_grad():  # the forward-only path slices the same way
        (s2,), _ = chunked_sums(fn, 1, [h, rid], [scale], chunk, ragged)
    torch.testing.assert_close(s2, r.detach())


@pytest.mark.parametrize("bad", ["unsorted", "out_of_range"])
def test_ragged_entries_out_of_order_are_refused(bad):
    h, e_row, e_val = _inputs()
    if bad == "unsorted":
        e_row = e_row.flip(0)
    else:
        e_row = e_row.clone()
        e_row[-1] = h.shape[0]
    with pytest.raises(ValueError, match="e_row: the row index of ragged entries must be sorted"):
        chunked_sums(_fn, 1, [h, torch.arange(h.shape[0])], [torch.tensor(1.0)], 4,
                     [("e_row", e_row, [e_row, e_val])])  # fmt: skip
