"""Time and peak memory of one DSKD training step: chunked loss, naive loss, paper-style loop.

The step: a stand-in student body (one ``Linear(d_s, d_s)``) maps fixed inputs to ``h^s``; the
loss runs on ``h^s``, frozen teacher hidden states ``h^t`` and both heads; then backward and an
AdamW step on the student (body + head) and the t->s projector. The real models' forwards are
left out: they are the same for the three implementations, which differ only in the loss.

- ``chunked``: ``DualSpaceKDLoss(chunk_size=256)``.
- ``naive``: the same module with ``chunk_size=None`` (all ``[A, V]`` logits at once).
- ``loop``: naive, plus what the paper's released code does around it: aligned rows gathered and
  pseudo-labels found one row at a time in Python, with ``.item()`` (a device sync on GPU) and a
  single-row write per token.

Each implementation runs in its own child process (clean peak memory): one warm-up step, then
``--steps`` timed steps (median). Peak memory is ``torch.cuda.max_memory_allocated`` on CUDA,
resident-set high-water mark (``VmHWM``, reset first) on CPU; "over start" subtracts what was
allocated before the first step (weights, inputs, the projectors' pinv).

    python benches/gpu_step.py                                  # CPU, small shapes
    python benches/gpu_step.py --device cuda                    # H100/H200: --shapes paper
    python benches/gpu_step.py --device cuda --shapes 8,512,151936,32000,3584,2048
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# B, L (tokens per sequence, both sides), V_t, V_s, d_t, d_s
PRESETS = {
    "small": (4, 256, 16384, 8000, 256, 128),
    # Qwen2.5-7B teacher (d 3584, 152064 head rows) -> TinyLlama-1.1B student (d 2048, 32000).
    "paper": (8, 512, 152064, 32000, 3584, 2048),
}


def _cpu_peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cpu_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(field + ":"))


def _loop_gather(align, h_t, h_s, W_t, t2s):
    """The paper's pattern: one row at a time, a Python int (a sync) per index and per label.

    The teacher argmax itself is batched (one extra no-grad matmul, freed at once) so that the
    loop measures the syncs and single-row writes, not a per-row matvec.
    """
    import torch

    a = align[0].shape[0]
    rows_t = torch.zeros(a, h_t.shape[-1], dtype=h_t.dtype, device=h_t.device)
    rows_s = []
    for i in range(a):
        b, tp, sp = align[0][i].item(), align[1][i].item(), align[2][i].item()
        rows_t[i] = h_t[b, tp]  # single-row write
        rows_s.append(h_s[b, sp])
    with torch.no_grad():
        arg = (rows_t @ W_t.T).argmax(-1)  # [A]
    labels = torch.full((a,), -1, dtype=torch.long, device=h_t.device)
    for i in range(a):
        labels[i] = t2s[arg[i].item()].item()
    return rows_t, torch.stack(rows_s), labels


def worker(args: argparse.Namespace) -> None:
    import torch

    from dskd_align.torch.losses import DualSpaceKDLoss, dskd_terms, gold_cross_entropy
    from dskd_align.torch.projector import projector_param_group

    dev = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    B, L, vt, vs, dt, ds = args.shape
    torch.manual_seed(0)  # the nn.Linear inits: the same weights in every implementation
    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dev, dtype)

    W_t = rand(vt, dt, scale=dt**-0.5)  # teacher lm_head.weight [V_t, d_t], frozen
    head = torch.nn.Linear(ds, vs, bias=False, device=dev, dtype=dtype)  # student lm_head
    body = torch.nn.Linear(ds, ds, device=dev, dtype=dtype)  # stand-in student body
    o = min(vs, vt) // 2
    o_t, o_s = torch.randperm(vt, generator=g)[:o], torch.randperm(vs, generator=g)[:o]
    t2s = torch.full((vt,), -1, dtype=torch.long)
    t2s[o_t] = o_s

    class Vocab:
        overlap_teacher_ids, overlap_student_ids = o_t.to(dev), o_s.to(dev)

    Vocab.t2s = t2s.to(dev)
    chunk = args.chunk if args.impl == "chunked" else None
    loss_fn = DualSpaceKDLoss(W_t, head.weight.detach(), Vocab, chunk_size=chunk).to(dev)
    params = [{"params": [*body.parameters(), *head.parameters()]}, projector_param_group(loss_fn)]
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = rand(B, L, ds)
    h_t = rand(B, L, dt, scale=4.0)
    labels = torch.randint(0, vs, (B, L), generator=g).to(dev)
    labels[:, : L // 8] = -100  # prompt
    # About 80% of response positions aligned, as with real tokenizer pairs.
    b, p = (labels[:, 1:] != -100).nonzero(as_tuple=True)
    keep = torch.rand(b.shape[0], generator=g).to(dev) < 0.8
    align = (b[keep], p[keep], p[keep])

    def step():
        h_s = body(x) * 4.0
        if args.impl == "loop":
            rows_t, rows_s, _ = _loop_gather(align, h_t, h_s, W_t, Vocab.t2s)
            s2t = loss_fn.s2t_projector.matrix_from_lm_head(head.weight)
            proj = loss_fn.t2s_projector.weight
            terms = dskd_terms(rows_t, rows_s, W_t, head.weight, proj, s2t, Vocab.t2s, tau=2.0,
                               chunk_size=None)  # fmt: skip
            ce, _ = gold_cross_entropy(h_s, head.weight, labels, chunk_size=None)
            kd = terms["kd_student_space"] + terms["ce_t2s"] + terms["kd_teacher_space"]
            loss = 0.5 * ce + 0.5 * kd
        else:
            loss, _ = loss_fn(h_s, h_t, head.weight, W_t, labels, *align)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # The peak is taken from before the warm-up step: on CPU the allocator keeps what one step
    # freed, so only the first step shows the resident-set growth. The warm-up also creates the
    # AdamW state, which is the same for every implementation.
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        _cpu_peak_reset()
        base = _cpu_kb("VmRSS") * 1024
    step()  # warm-up: kernels, allocator, optimizer state; not timed
    sync()
    times, loss = [], None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else _cpu_kb("VmHWM") * 1024
    out = {
        "impl": args.impl,
        "step_s": sorted(times)[len(times) // 2],
        "peak_mb": peak / 2**20,
        "peak_over_base_mb": (peak - base) / 2**20,
        "aligned": int(align[0].shape[0]),
        "loss": float(loss),
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--shapes", help="small | paper | B,L,V_t,V_s,d_t,d_s (default: by device)")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--impls", default="chunked,naive,loop")
    ap.add_argument("--impl", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    args.shapes = args.shapes or ("paper" if cuda else "small")
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.shape = PRESETS.get(args.shapes) or tuple(int(v) for v in args.shapes.split(","))
    if len(args.shape) != 6:
        sys.exit("--shapes: a preset name or six integers B,L,V_t,V_s,d_t,d_s")
    if args.impl:
        worker(args)
        return
    here = os.path.abspath(__file__)
    common = [f"--device={args.device}", f"--shapes={args.shapes}", f"--dtype={args.dtype}"]
    common += [f"--steps={args.steps}", f"--chunk={args.chunk}"]
    rows = []
    for impl in args.impls.split(","):
        proc = subprocess.run(
            [sys.executable, here, f"--impl={impl}", *common], capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            rows.append({"impl": impl, "error": " / ".join(tail)})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    B, L, vt, vs, dt, ds = args.shape
    print(
        f"device={args.device} dtype={args.dtype} B={B} L={L} V_t={vt} V_s={vs} d_t={dt} "
        f"d_s={ds} chunk={args.chunk} steps={args.steps} (median)"
    )
    print("| impl | aligned | step s | peak MB | peak over start MB | loss after steps |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['impl']} | failed: {r['error']} | | | | |")
            continue
        print(
            f"| {r['impl']} | {r['aligned']} | {r['step_s']:.3f} | {r['peak_mb']:.0f} | "
            f"{r['peak_over_base_mb']:.0f} | {r['loss']:.5f} |"
        )


if __name__ == "__main__":
    main()
