"""The packed teacher forward of ``byte_sets(branch=True)`` on a real attention kernel: are the
gold states a plain forward's, are the branch states those of one-by-one forwards, and what does
the packing cost next to the plain forward?

A random-weight Qwen2-style teacher (``--d``, ``--layers``; HF ``sdpa`` attention), a synthetic
batch of ``B`` rows of ``L`` tokens (the last row half padding) with ``--branches`` branch
targets per row at random teacher positions (the fields ``set_targets.py`` builds: the real
batch's branch targets are about a quarter of the student's tokens on the demo). Reports the
largest gold-state difference against a plain forward and the largest branch-state difference
against a forward of the row's prefix plus the branch token (both relative to the states' RMS),
and the median time of each forward (``--steps``).

    python benches/gpu_branch.py --device cuda                 # bf16, d 2048, 16 layers
    .venv/bin/python benches/gpu_branch.py --device cpu --d 64 --layers 2 --L 64 --branches 8
"""

from __future__ import annotations

import argparse
import time

import torch


def _batch(B: int, L: int, n_br: int, vocab: int, dev: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (B, L), generator=g)
    att = torch.ones(B, L, dtype=torch.long)
    att[-1, L // 2 :] = 0  # a padded row
    rows, tps, toks, slots = [], [], [], []
    for r in range(B):
        n_valid = int(att[r].sum())
        tp = torch.randperm(n_valid - 2, generator=g)[:n_br].sort().values  # k at tp + 1
        rows += [r] * tp.numel()
        tps.append(tp)
        toks.append(torch.randint(0, vocab, (tp.numel(),), generator=g))
        slots.append(torch.arange(tp.numel()))
    fields = {
        "teacher_input_ids": ids,
        "teacher_attention_mask": att,
        "byte_batch": torch.tensor(rows),
        "byte_teacher_pos": torch.cat(tps),
        "set_branch_token": torch.cat(toks),
        "set_branch_slot": torch.cat(slots),
    }
    return {k: v.to(dev) for k, v in fields.items()}


def _timed(fn, steps: int, dev: torch.device) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(steps):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], out


def measure(device: str = "cpu", dtype: str | None = None, d: int = 2048, layers: int = 16,
            B: int = 8, L: int = 512, branches: int = 128, steps: int = 5) -> dict:  # fmt: skip
    """The check and the timings (module notes) as a dict."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dskd_align.torch.branch import teacher_hidden_with_branches

    dev = torch.device(device)
    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[
        dtype or ("bf16" if dev.type == "cuda" else "fp32")
    ]
    heads = max(d // 128, 2)
    cfg = Qwen2Config(vocab_size=32000, hidden_size=d, intermediate_size=3 * d,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=max(heads // 4, 1), max_position_embeddings=4 * L,
                      attn_implementation="sdpa")  # fmt: skip
    torch.manual_seed(0)
    with torch.device(dev):  # initialized where it runs: a 1B-parameter init on CPU is slow
        model = Qwen2ForCausalLM(cfg).to(dt).eval()
    batch = _batch(B, L, branches, cfg.vocab_size, dev)
    ids, att = batch["teacher_input_ids"], batch["teacher_attention_mask"]

    @torch.no_grad()
    def plain():
        return model.model(input_ids=ids, attention_mask=att, use_cache=False).last_hidden_state

    t_plain, h_plain = _timed(plain, steps, dev)
    t_br, h_br = _timed(lambda: teacher_hidden_with_branches(model, batch), steps, dev)
    keep = att.bool()
    rms = h_plain[keep].float().pow(2).mean().sqrt()
    gold = (h_br[:, :L][keep].float() - h_plain[keep].float()).abs().max() / rms
    worst, n_chk = 0.0, 0
    n_tg = batch["byte_batch"].numel()
    with torch.no_grad():
        for i in range(0, n_tg, max(1, n_tg // 16)):
            r, tp = int(batch["byte_batch"][i]), int(batch["byte_teacher_pos"][i])
            x = torch.cat([ids[r, : tp + 1], batch["set_branch_token"][i : i + 1]])[None]
            ref = model.model(input_ids=x, use_cache=False).last_hidden_state[0, -1].float()
            got = h_br[r, L + int(batch["set_branch_slot"][i])].float()
            worst = max(worst, float((got - ref).abs().max() / rms))
            n_chk += 1
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
    return {"dtype": str(dt), "t_plain": t_plain, "t_branch": t_br, "positions": h_br.shape[1],
            "gold": float(gold), "branch": worst, "checked": n_chk, "peak_mb": peak}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", choices=["bf16", "fp32"], help="default: bf16 on CUDA, else fp32")
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--L", type=int, default=512)
    ap.add_argument("--branches", type=int, default=128, help="branch targets per row")
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    r = measure(a.device, a.dtype, a.d, a.layers, a.B, a.L, a.branches, a.steps)
    print(
        f"device={a.device} dtype={r['dtype']} d={a.d} layers={a.layers} B={a.B} L={a.L} "
        f"branches/row={a.branches} steps={a.steps} (median)\n"
        f"| forward | positions/row | s | x plain |\n|---|---:|---:|---:|\n"
        f"| plain | {a.L} | {r['t_plain']:.4f} | 1.00 |\n"
        f"| packed with branches | {r['positions']} | {r['t_branch']:.4f} | "
        f"{r['t_branch'] / r['t_plain']:.2f} |\n"
        f"gold states vs plain forward: max |diff| / rms = {r['gold']:.2e}\n"
        f"branch states vs one-by-one forwards ({r['checked']} checked): max |diff| / rms = "
        f"{r['branch']:.2e}\npeak MB: {r['peak_mb']:.0f}"
    )


if __name__ == "__main__":
    main()
