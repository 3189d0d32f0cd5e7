import torch
from test_byte_sets import _inputs, _run, batch  # noqa: F401

from dskd_align.torch.set_kd import SetKD


def test_gold(set_tables, batch):  # noqa: F811
    h_s, h_t, W_s, W_t = _inputs(set_tables, batch, torch.float64, seed=3)
    one = _run(SetKD(set_tables, gold_split=True, chunk_size=None).double(), batch, h_s, h_t, W_s, W_t)
    off = _run(SetKD(set_tables, chunk_size=None).double(), batch, h_s, h_t, W_s, W_t)
    ch = _run(SetKD(set_tables, gold_split=True, chunk_size=16).double(), batch, h_s, h_t, W_s, W_t)
    print("gold", float(one[0]), "off", float(off[0]), "chunked", float(ch[0]))
    for a, b in zip(ch[:3], one[:3]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(one[1], off[1])
    mod = SetKD(set_tables, gold_split=True)
    gt = mod._gold
    tg = mod.targets(batch, torch.device("cpu"))
    f = gt.fields(batch, dict(tg))
    n_t = int((f["gs_tok"] >= 0).sum())
    print("targets with a gold split", n_t, "of", f["gs_tok"].numel(), "members", f["gs_row"].numel(), "amb", f["ga_row"].numel())
    # brute force S(X) for members: teacher tokens whose bytes start with X
    tb = gt.tb
    p = torch.rand(len(tb), dtype=torch.float64)
    cum = torch.cat([torch.zeros(1, dtype=torch.float64), p[gt.t_sorted].cumsum(0)])
    sb = {v: k for k, v in gt.rep.items()}
    checked = 0
    for j in range(f["gs_row"].numel()):
        if int(f["gs_parent"][j]) == -2:
            continue
        i = int(f["gs_row"][j]); wg = int(f["gs_tok"][i]); u = int(f["gs_u"][j])
        x = sb[u][len(tb[wg]):]
        assert sb[u].startswith(tb[wg]) and x
        want = sum(float(p[t]) for t, b in enumerate(tb) if b.startswith(x))
        got = float(cum[f["gs_xhi"][j]] - cum[f["gs_xlo"][j]])
        assert abs(want - got) < 1e-9
        par = int(f["gs_parent"][j])
        if par >= 0:
            assert x.startswith(sb[int(f["gs_u"][par])][len(tb[wg]):])
        checked += 1
        if checked > 200:
            break
    assert checked > 5
