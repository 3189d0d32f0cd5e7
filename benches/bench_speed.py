"""End-to-end speed: ``Aligner.batch`` (tokenize both sides + align) against tokenizing both sides
alone with ``tokenizers.Tokenizer.encode_batch``, same texts, same process, same thread count.

Also measures what the core avoids by tokenizing itself: reading ids, offsets and the special mask
out of the Python ``Encoding`` objects into numpy, as a fraction of ``encode_batch``.

The ``tokenizers`` Rust pool is global and sized once from ``RAYON_NUM_THREADS``, so every thread
count runs in its own child process that sets it before importing ``tokenizers``. Repetitions are
interleaved and medians reported (the machine is shared and noisy; only ratios mean anything).

    python benches/bench_speed.py                  # threads 1 and 2, both pairs, dolly + code
    python benches/bench_speed.py --reps 9 --dolly 4996
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

PAIRS = [("qwen2.5", "gpt2"), ("qwen2.5", "llama2")]


def worker(args: argparse.Namespace) -> None:
    """Runs in a child process with RAYON_NUM_THREADS already set; prints one JSON line per case."""
    import numpy as np
    from bench_data import code, dolly, interleaved, tokenizer_path
    from tokenizers import Tokenizer

    from dskd_align import Aligner

    n = args.threads[0]
    corpora = {"dolly": dolly(args.dolly), "code": code(args.code)}
    corpora["dolly+code"] = corpora["dolly"] + corpora["code"]
    for t_name, s_name in PAIRS:
        toks = [Tokenizer.from_file(tokenizer_path(x)) for x in (t_name, s_name)]
        aligner = Aligner(tokenizer_path(t_name), tokenizer_path(s_name))
        for corpus in args.corpora:
            texts = corpora[corpus]
            encs = [tok.encode_batch(texts, add_special_tokens=False) for tok in toks]

            def encode_both(texts=texts, toks=toks):
                for tok in toks:
                    tok.encode_batch(texts, add_special_tokens=False)

            def read_per_encoding(encs=encs):
                # What a caller does to hand encodings to a numpy/Rust aligner: three arrays each.
                for side in encs:
                    for e in side:
                        np.asarray(e.ids, dtype=np.int64)
                        np.asarray(e.offsets, dtype=np.int64)
                        np.asarray(e.special_tokens_mask, dtype=bool)

            def read_flat(encs=encs):
                # The cheapest form found: one list per field, one array per side.
                for side in encs:
                    ids, offs, mask = [], [], []
                    for e in side:
                        ids += e.ids
                        offs += e.offsets
                        mask += e.special_tokens_mask
                    np.asarray(ids, dtype=np.int64)
                    np.asarray(offs, dtype=np.int64)
                    np.asarray(mask, dtype=bool)

            med = interleaved(
                {
                    "encode": encode_both,
                    "align": lambda texts=texts, al=aligner: al.batch(texts, num_threads=n),
                    "read_per_enc": read_per_encoding,
                    "read_flat": read_flat,
                },
                args.reps,
            )
            tokens = sum(len(e.ids) for side in encs for e in side)
            print(
                json.dumps(
                    {
                        "pair": f"{t_name}/{s_name}",
                        "corpus": corpus,
                        "threads": n,
                        "texts": len(texts),
                        "tokens": tokens,
                        **med,
                    }
                ),
                flush=True,
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--dolly", type=int, default=2000, help="Dolly records (max 4996)")
    p.add_argument("--code", type=int, default=None, help="code texts (default: all)")
    p.add_argument("--corpora", nargs="+", default=["dolly", "code"])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    rows = []
    for n in args.threads:
        env = {**os.environ, "RAYON_NUM_THREADS": str(n), "TOKENIZERS_PARALLELISM": "true"}
        cmd = [sys.executable, __file__, "--worker", "--threads", str(n), "--reps", str(args.reps)]
        cmd += ["--dolly", str(args.dolly), "--corpora", *args.corpora]
        if args.code is not None:
            cmd += ["--code", str(args.code)]
        out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(
        "| pair | corpus | threads | texts | tokens (t+s) | encode_batch x2 (s) "
        "| Aligner.batch (s) | ratio align/encode | offsets->numpy / encode (per-enc, flat) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['pair']} | {r['corpus']} | {r['threads']} | {r['texts']} | {r['tokens']:,} "
            f"| {r['encode']:.3f} | {r['align']:.3f} | **{r['align'] / r['encode']:.3f}x** "
            f"| {r['read_per_enc'] / r['encode']:.0%}, {r['read_flat'] / r['encode']:.0%} |"
        )


if __name__ == "__main__":
    main()
