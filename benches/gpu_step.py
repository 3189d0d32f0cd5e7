"""Time and peak memory of one training step for every loss of ``build_loss``, next to plain SFT.

The step: a stand-in student body (one ``Linear(d_s, d_s)``) maps fixed inputs to ``h^s``; the
loss runs on ``h^s``, frozen teacher hidden states ``h^t`` and both heads; then backward and an
AdamW step on the student (body + head) and the loss's own parameters (DSKD's projector). The
real models' forwards are left out: they are the same for every loss, which differ only in the
loss. So "step s" is the loss's cost (plus a small body), and the difference to ``sft`` is what
distillation adds on top of the gold cross-entropy.

Runs (``--runs``, comma-separated): any name of ``LOSS_NAMES`` (chunked, ``--chunk`` rows at a
time), and two DSKD baselines: ``dskd:naive`` (the same module with ``chunk_size=None``: all
``[A, V]`` logits at once) and ``dskd:loop`` (naive, plus what the paper's released code does
around it: aligned rows gathered and pseudo-labels found one row at a time with ``.item()``, a
device sync per token on GPU).

The batch is synthetic but shaped like a real one: a prompt of ``L/8`` tokens, then the
response; both sides have ``L`` tokens; ~80 % of response tokens are 1x1 alignment chunks (the
exact pairs), the rest fall in chunks of 2-3 tokens per side. ``kd`` (same vocabulary) uses a
teacher head with the student's ``V_s`` rows. ``byte_kd`` gets synthetic tables and targets
(``byte_synthetic.py``): ~90 % of response tokens, ``--byte-ext`` extension entries each (55,
the demo's count, by default; ~6000 for a Qwen2.5 teacher), built outside the timed step as
``ByteKDCollator`` would build them in the DataLoader; ``byte_sets`` the same plus synthetic set
tables and fields (``synthetic_set_*``: 16 ruled-out ranges per target, a tight range for 30 %
of the entries). Each run is a fresh child process (clean
peak memory): one warm-up step, then ``--steps`` timed steps (median). Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA, the resident-set high-water mark (``VmHWM``, reset
first) on CPU; "over start" subtracts what was allocated before the first step.

    python benches/gpu_step.py --device cpu                    # small shapes, fp32
    python benches/gpu_step.py --device cuda                   # H100/H200: --shapes paper, bf16
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
    "tiny": (2, 64, 2048, 1024, 64, 32),
    "small": (4, 256, 16384, 8000, 256, 128),
    # Qwen2.5-7B teacher (d 3584, 152064 head rows) -> TinyLlama-1.1B student (d 2048, 32000).
    "paper": (8, 512, 152064, 32000, 3584, 2048),
}
RUNS = (
    "sft,dskd,kd,exact_kd,chunk_kd,exact_kd+chunk_kd,dskd+exact_kd,byte_kd,byte_sets,dskd:naive,"
    "dskd:loop"
)


def _cpu_peak_reset() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cpu_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith(field + ":"))


def synthetic_batch(B: int, L: int, vt: int, vs: int, g, dev) -> dict:
    """Labels, ids, exact pairs and chunk ids of a batch shaped like a real one (module notes)."""
    import torch

    s_ids = torch.randint(0, vs, (B, L), generator=g)
    t_ids = torch.randint(0, vt, (B, L), generator=g)
    labels = s_ids.clone()
    labels[:, : L // 8] = -100  # prompt
    # Chunk sizes along the response: 1 (a pair) with p 0.8, else 2 or 3 tokens (same on both
    # sides here: only the count of tokens per chunk matters for the cost).
    sizes = torch.where(torch.rand(B * L, generator=g) < 0.8, 1, torch.randint(2, 4, (B * L,),
                        generator=g))  # fmt: skip
    chunk = torch.full((B, L), -1, dtype=torch.long)
    starts = []
    cid, k = 0, 0
    for b in range(B):  # building the batch, not the step: a loop is fine here
        p = L // 8 + 1
        while p + int(sizes[k]) <= L:
            n = int(sizes[k])
            chunk[b, p : p + n] = cid
            if n == 1:
                starts.append((b, p - 1))  # prediction position of the pair
            cid, p, k = cid + 1, p + n, k + 1
    pairs = torch.tensor(starts, dtype=torch.long)
    batch = {
        "student_input_ids": s_ids,
        "teacher_input_ids": t_ids,
        "student_labels": labels,
        "student_chunk_ids": chunk,
        "teacher_chunk_ids": chunk.clone(),
        "align_batch": pairs[:, 0],
        "align_teacher_pos": pairs[:, 1],
        "align_student_pos": pairs[:, 1],
        "coverage": torch.full((B,), 0.8),
    }
    return {k: v.to(dev) for k, v in batch.items()}


def _loop_gather(align, h_t, h_s, W_t, t2s):
    """The paper's pattern: one row at a time, a Python int (a sync) per index and per label."""
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
    from byte_synthetic import (
        synthetic_byte_targets,
        synthetic_set_tables,
        synthetic_set_targets,
        synthetic_tables,
    )

    from dskd_align.torch.losses import dskd_terms, gold_cross_entropy
    from dskd_align.torch.objectives import build_loss

    dev = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    B, L, vt, vs, dt, ds = args.shape
    name, _, impl = args.run.partition(":")
    if name == "kd":
        vt = vs  # same vocabulary
    torch.manual_seed(0)  # the nn.Linear inits: the same weights in every run
    g = torch.Generator(device="cpu").manual_seed(0)
    batch = synthetic_batch(B, L, vt, vs, g, dev)  # first: the same batch in every run

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dev, dtype)

    W_t = rand(vt, dt, scale=dt**-0.5)  # teacher lm_head.weight [V_t, d_t], frozen
    head = torch.nn.Linear(ds, vs, bias=False, device=dev, dtype=dtype)  # student lm_head
    body = torch.nn.Linear(ds, ds, device=dev, dtype=dtype)  # stand-in student body
    o = min(vs, vt) // 2
    o_t, o_s = torch.randperm(vt, generator=g)[:o], torch.randperm(vs, generator=g)[:o]
    t2s, s2t = torch.full((vt,), -1, dtype=torch.long), torch.full((vs,), -1, dtype=torch.long)
    t2s[o_t], s2t[o_s] = o_s, o_t

    class Vocab:
        overlap_teacher_ids, overlap_student_ids = o_t.to(dev), o_s.to(dev)

    Vocab.t2s, Vocab.s2t = t2s.to(dev), s2t.to(dev)
    vocab = None if name == "kd" else Vocab
    if name in ("byte_kd", "byte_sets"):  # tables and targets (the collator's job), untimed
        gb = torch.Generator(device="cpu").manual_seed(1)  # g's draws stay those of other runs
        vocab = synthetic_tables(vt, vs, gb)
        labels = batch["student_labels"].cpu()
        fields = synthetic_byte_targets(labels, vt, vs, args.byte_ext, gb)
        if name == "byte_sets":
            vocab = synthetic_set_tables(vt, vs, gb)
            fields.update(synthetic_set_targets(fields, vocab, gb))
        batch.update({k: v.to(dev) for k, v in fields.items()})
    chunk = None if impl else args.chunk
    loss_fn = build_loss(name, W_t, head.weight.detach(), vocab, chunk_size=chunk).to(dev)
    params = [*body.parameters(), *head.parameters(), *loss_fn.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-5)
    x = rand(B, L, ds)
    h_t = rand(B, L, dt, scale=4.0)
    align = (batch["align_batch"], batch["align_teacher_pos"], batch["align_student_pos"])

    def step():
        h_s = body(x) * 4.0
        if impl == "loop":
            rows_t, rows_s, _ = _loop_gather(align, h_t, h_s, W_t, Vocab.t2s)
            s2t_m = loss_fn.s2t_projector.matrix_from_lm_head(head.weight)
            proj = loss_fn.t2s_projector.weight
            terms = dskd_terms(rows_t, rows_s, W_t, head.weight, proj, s2t_m, Vocab.t2s, tau=2.0,
                               chunk_size=None)  # fmt: skip
            ce, _ = gold_cross_entropy(h_s, head.weight, batch["student_labels"], chunk_size=None)
            kd = terms["kd_student_space"] + terms["ce_t2s"] + terms["kd_teacher_space"]
            loss = 0.5 * ce + 0.5 * kd
        else:
            loss, _ = loss_fn.forward_batch(batch, h_s, h_t, head.weight, W_t)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    # The peak is taken from before the warm-up step: on CPU the allocator keeps what one step
    # freed, so only the first step shows the resident-set growth. The warm-up also creates the
    # AdamW state.
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
        "run": args.run,
        "step_s": sorted(times)[len(times) // 2],
        "peak_mb": peak / 2**20,
        "peak_over_base_mb": (peak - base) / 2**20,
        # byte_kd's and byte_sets' rows are their targets, not the exact pairs
        "aligned": int(
            batch["byte_batch"].numel() if name.startswith("byte_") else align[0].shape[0]
        ),  # fmt: skip
        "loss": float(loss),
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--shapes", help="tiny | small | paper | B,L,V_t,V_s,d_t,d_s (default: by device)"
    )
    ap.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--byte-ext", type=int, default=55, help="byte_kd: extension entries/target")
    ap.add_argument("--runs", default=RUNS, help=f"default: {RUNS}")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device.startswith("cuda")
    args.shapes = args.shapes or ("paper" if cuda else "small")
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.shape = PRESETS.get(args.shapes) or tuple(int(v) for v in args.shapes.split(","))
    if len(args.shape) != 6:
        sys.exit("--shapes: a preset name or six integers B,L,V_t,V_s,d_t,d_s")
    if args.run:
        worker(args)
        return
    here = os.path.abspath(__file__)
    common = [f"--device={args.device}", f"--shapes={args.shapes}", f"--dtype={args.dtype}"]
    common += [f"--steps={args.steps}", f"--chunk={args.chunk}", f"--byte-ext={args.byte_ext}"]
    rows = []
    for run in args.runs.split(","):
        proc = subprocess.run(
            [sys.executable, here, f"--run={run}", *common], capture_output=True, text=True
        )
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-3:]
            rows.append({"run": run, "error": " / ".join(tail)})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    B, L, vt, vs, dt, ds = args.shape
    print(
        f"device={args.device} dtype={args.dtype} B={B} L={L} V_t={vt} V_s={vs} d_t={dt} "
        f"d_s={ds} chunk={args.chunk} steps={args.steps} (median) byte_ext={args.byte_ext}"
    )
    sft = next((r["step_s"] for r in rows if r["run"] == "sft" and "error" not in r), None)
    print(
        "| loss | pairs (byte_kd: targets) | step s | x sft | peak MB | peak over start MB "
        "| loss after steps |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['run']} | failed: {r['error']} | | | | | |")
            continue
        ratio = f"{r['step_s'] / sft:.2f}" if sft else "-"
        print(
            f"| {r['run']} | {r['aligned']} | {r['step_s']:.3f} | {ratio} | {r['peak_mb']:.0f} | "
            f"{r['peak_over_base_mb']:.0f} | {r['loss']:.5f} |"
        )


if __name__ == "__main__":
    main()
