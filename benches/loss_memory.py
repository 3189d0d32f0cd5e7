"""Peak memory and time of one forward+backward of a loss (``--loss``, default the DSKD loss):
chunked against naive.

"Naive" is the same module with ``chunk_size=None``: the same math on all aligned rows at once,
so it holds ``[N_aligned, V]`` float32 logits for both vocabularies. Each mode runs in a fresh
child process (the allocator never returns all freed memory, so one process cannot measure two
modes). Peak memory is the growth of the resident set during the step: the kernel's high-water
mark (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the step and read after;
tracemalloc does not see torch's allocations. Inputs, the loss module (its pinv) and the heads
exist before the reset, so they are not counted; gradient buffers created by the step are.

    python benches/loss_memory.py                    # N=2048, V_t=151936, V_s=32000, d 2048/1024
    python benches/loss_memory.py --quick            # small shapes, a few seconds
    python benches/loss_memory.py --out benches/results/loss_memory.md
    python benches/loss_memory.py --loss exact_kd      # any build_loss name but "kd"

For ``chunk_kd`` the sequence is split into chunks of 2 tokens on both sides (n/2 chunks). For
``byte_kd`` the tables and targets are synthetic (``byte_synthetic.py``): ~90 % of the n tokens
get a target, each with ``--byte-ext`` extension entries (55 by default, the demo's count; ~6000
for a Qwen2.5 teacher); they are built before the measured step, as the collator would;
``byte_sets`` adds synthetic set tables and fields (``synthetic_set_*``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(args: argparse.Namespace) -> None:
    """One mode in this (fresh) process; prints one JSON line, saves the gradients to args.save."""
    import torch
    from byte_synthetic import (
        synthetic_byte_targets,
        synthetic_set_tables,
        synthetic_set_targets,
        synthetic_tables,
    )

    from dskd_align.torch.objectives import build_loss

    torch.manual_seed(args.seed)
    n, vt, vs, dt, ds = args.n, args.vt, args.vs, args.dt, args.ds
    W_t = torch.randn(vt, dt) / dt**0.5  # teacher lm_head.weight [V_t, d_t]
    W_s = (torch.randn(vs, ds) / ds**0.5).requires_grad_()  # student lm_head.weight [V_s, d_s]
    o = min(args.overlap, vs, vt)
    o_t, o_s = torch.randperm(vt)[:o], torch.randperm(vs)[:o]
    t2s = torch.full((vt,), -1, dtype=torch.long)
    t2s[o_t] = o_s

    class Vocab:
        overlap_teacher_ids, overlap_student_ids = o_t, o_s

    Vocab.t2s = t2s
    Vocab.s2t = torch.full((vs,), -1, dtype=torch.long)
    Vocab.s2t[o_s] = o_t
    gb = torch.Generator().manual_seed(args.seed + 1)  # byte_kd's own draws: the rest unchanged
    vocab = synthetic_tables(vt, vs, gb) if args.loss == "byte_kd" else Vocab
    if args.loss == "byte_sets":
        vocab = synthetic_set_tables(vt, vs, gb)
    chunk = None if args.mode == "naive" else args.chunk
    loss_fn = build_loss(
        args.loss, W_t, W_s.detach(), vocab, divergence=args.divergence, chunk_size=chunk
    )
    proj = [p for p in loss_fn.parameters() if p.requires_grad]
    # One sequence of n+1 tokens per side: n aligned prediction positions, n gold labels.
    h_t = torch.randn(1, n + 1, dt) * 4
    h_s = (torch.randn(1, n + 1, ds) * 4).requires_grad_()
    labels = torch.randint(0, vs, (1, n + 1))
    pos = torch.arange(n)
    chunks = torch.cat([torch.tensor([-1]), torch.arange(n) // 2])[None]  # [1, n+1]
    batch = {
        "student_labels": labels,
        "student_input_ids": labels,
        "teacher_input_ids": torch.randint(0, vt, (1, n + 1)),
        "student_chunk_ids": chunks,
        "teacher_chunk_ids": chunks,
        "align_batch": torch.zeros(n, dtype=torch.long),
        "align_teacher_pos": pos,
        "align_student_pos": pos,
    }

    def run(b: dict) -> tuple:
        return loss_fn.forward_batch(b, h_s, h_t, W_s, W_t)

    def clear() -> None:
        h_s.grad = W_s.grad = None
        for p in proj:
            p.grad = None

    # Warm-up on 4 rows: thread pools and kernels initialize lazily on the first call, which
    # would otherwise be timed; 4 rows of logits are too small to move the memory baseline.
    warm = dict(batch, student_labels=labels.clone(), student_chunk_ids=chunks.clone())
    warm["student_labels"][:, 5:] = -100
    warm["student_chunk_ids"][:, 5:] = -1
    for k in ("align_batch", "align_teacher_pos", "align_student_pos"):
        warm[k] = batch[k][:4]
    if args.loss in ("byte_kd", "byte_sets"):
        batch.update(synthetic_byte_targets(labels, vt, vs, args.byte_ext, gb))
        warm.update(synthetic_byte_targets(warm["student_labels"], vt, vs, args.byte_ext, gb))
    if args.loss == "byte_sets":
        batch.update(synthetic_set_targets(batch, vocab, gb))
        warm.update(synthetic_set_targets(warm, vocab, gb))
    run(warm)[0].backward()
    clear()
    rss_before = _status_kb("VmRSS")
    exact = _reset_peak()
    hwm_before = _status_kb("VmHWM")
    t0 = time.perf_counter()
    loss, metrics = run(batch)
    loss.backward()
    seconds = time.perf_counter() - t0
    peak_kb = _status_kb("VmHWM") - (rss_before if exact else hwm_before)
    times = [seconds]
    for _ in range(args.reps - 1):  # more timings; the machine is noisy, report the median
        clear()
        t0 = time.perf_counter()
        run(batch)[0].backward()
        times.append(time.perf_counter() - t0)
    grads = {"h_s": h_s.grad, "W_s": W_s.grad, **{f"proj{i}": p.grad for i, p in enumerate(proj)}}
    torch.save(grads, args.save)
    out = {
        "mode": args.mode,
        "peak_mb": peak_kb / 1024,
        "seconds": sorted(times)[len(times) // 2],
        "loss": loss.item(),
        "n_agree": int(metrics.get("n_agree", -1)),
        "n_valid": int(metrics.get("n_valid", -1)),
        "exact_peak": exact,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


def _max_rel(a, b) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2048, help="aligned rows (= gold labels)")
    ap.add_argument("--vt", type=int, default=151936)
    ap.add_argument("--vs", type=int, default=32000)
    ap.add_argument("--dt", type=int, default=2048)
    ap.add_argument("--ds", type=int, default=1024)
    ap.add_argument("--overlap", type=int, default=8192, help="|O| (only the init depends on it)")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--divergence", default="forward_kl")
    ap.add_argument("--loss", default="dskd", help="a build_loss name (not 'kd')")
    ap.add_argument("--byte-ext", type=int, default=55, help="byte_kd: extension entries/target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3, help="timed steps per mode (median)")
    ap.add_argument("--quick", action="store_true", help="N=512, V 16384/8000, d 256/128, chunk 64")
    ap.add_argument("--out", help="also write the markdown table to this file")
    ap.add_argument("--worker", choices=["naive", "chunked"], help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.n, args.vt, args.vs, args.dt, args.ds, args.overlap = 512, 16384, 8000, 256, 128, 2000
        args.chunk = 64
    if args.worker:
        args.mode = args.worker
        worker(args)
        return

    import torch

    here = os.path.dirname(os.path.abspath(__file__))
    passthrough = [f"--{k}={getattr(args, k)}" for k in ("n", "vt", "vs", "dt", "ds", "overlap")]
    passthrough += [f"--chunk={args.chunk}", f"--divergence={args.divergence}"]
    passthrough += [f"--seed={args.seed}", f"--reps={args.reps}", f"--loss={args.loss}"]
    passthrough += [f"--byte-ext={args.byte_ext}"]
    results, grads = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("naive", "chunked"):
            save = os.path.join(tmp, f"{mode}.pt")
            cmd = [sys.executable, os.path.join(here, "loss_memory.py"), f"--worker={mode}"]
            proc = subprocess.run(
                [*cmd, f"--save={save}", *passthrough], capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(f"{mode} worker failed:\n{proc.stderr}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            grads[mode] = torch.load(save)
    nv, ch = results["naive"], results["chunked"]
    loss_rel = abs(ch["loss"] - nv["loss"]) / abs(nv["loss"])
    grad_rel = {k: _max_rel(grads["chunked"][k], grads["naive"][k]) for k in grads["naive"]}
    lines = [
        f"loss={args.loss} N_aligned={args.n} V_t={args.vt} V_s={args.vs} d_t={args.dt} "
        f"d_s={args.ds} "
        f"chunk={args.chunk} divergence={args.divergence} float32 CPU, "
        f"{nv['threads']} threads; |A'|={nv['n_valid']} |G|={nv['n_agree']}"
        + (f"; byte_ext={args.byte_ext}" if args.loss.startswith("byte_") else ""),
        "",
        f"| mode | peak MB (RSS growth, fwd+bwd) | time s (median of {args.reps}) | loss |",
        "|---|---:|---:|---:|",
    ]
    for r in (nv, ch):
        lines.append(f"| {r['mode']} | {r['peak_mb']:.0f} | {r['seconds']:.2f} | {r['loss']:.6f} |")
    mem_ratio = ch["peak_mb"] / nv["peak_mb"]
    time_ratio = ch["seconds"] / nv["seconds"]
    grads_txt = ", ".join(f"{k} {v:.1e}" for k, v in grad_rel.items())
    lines += [
        "",
        f"- memory chunked/naive: {mem_ratio:.3f}x (target <= 0.25x)",
        f"- time chunked/naive: {time_ratio:.2f}x (target <= 1.3x)",
        f"- loss relative difference: {loss_rel:.1e}; gradients max relative: {grads_txt}"
        " (target 1e-5)",
    ]
    if not (nv["exact_peak"] and ch["exact_peak"]):
        lines.append("- peak not reset (no /proc/self/clear_refs): growth over the prior peak")
    text = "\n".join(lines)
    print(text)
    if args.out:
        cmd = "python benches/loss_memory.py " + " ".join(sys.argv[1:])
        with open(args.out, "w") as f:
            f.write(f"## DSKD loss memory: chunked vs naive\n\n`{cmd}`\n\n{text}\n")


if __name__ == "__main__":
    main()
