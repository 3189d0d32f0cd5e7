"""Student-side coverage of the exact alignment next to the paper's string walk, per tokenizer pair
and corpus, with the speed ratio of the two and a correctness check of the walk's pairs.

Coverage is pooled: total aligned student tokens / total student text tokens (add_special_tokens
off, so every token is text unless the text itself spells an added special token). Both methods
see the same token sequences (the core's ids equal ``encode_batch``'s; checked per row).

Speed, one thread each (``RAYON_NUM_THREADS=1`` is set before ``tokenizers`` loads):
- ``walk/ours``: paper walk *without* tokenization (``id_to_token``, marker deletion, walk) over
  ``Aligner.batch`` *with* tokenization of both sides (ours pays more work here);
- ``(enc+walk)/ours``: both include tokenizing both sides (``encode_batch``).
Medians of interleaved repetitions.

    python benches/bench_coverage.py            # all pairs x all corpora
    python benches/bench_coverage.py --pairs qwen2.5/llama2 --corpora code --reps 5
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers is imported (its pool is global)

import argparse  # noqa: E402
import sys  # noqa: E402

from bench_data import LOADERS, interleaved, tokenizer_path  # noqa: E402
from paper_walk import clean_tokens, paper_walk  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from dskd_align import Aligner  # noqa: E402

PAIRS = ["qwen2.5/gpt2", "llama2/gpt2", "qwen2.5/llama2", "gemma3/llama3", "llama3/mistral-7b-v0.3"]
LIMITS = {"dolly": 1000, "gsm8k": None, "code": 600, "multilingual": None, "blns": None}

_WS = frozenset(b" \t\n\r\x0b\x0c")


def _key(raw: bytes, span) -> tuple[int, int]:
    """Canonical key of a byte span (ALIGNMENT.md rule 2), enough for a sanity check: trims whole
    whitespace characters, decoding one character at each end."""
    s, e = int(span[0]), int(span[1])
    s0, e0 = s, e

    def char_at(k: int) -> tuple[str, int]:
        for n in (1, 2, 3, 4):
            try:
                return raw[k : k + n].decode("utf-8"), n
            except UnicodeDecodeError:
                continue
        return "x", 1

    while s < e:
        c, n = char_at(s)
        if s + n > e or not c.isspace():
            break
        s += n
    while e > s:
        k = e - 1
        while k > s and raw[k] & 0xC0 == 0x80:
            k -= 1
        c, n = char_at(k)
        if k + n != e or not c.isspace():
            break
        e = k
    return (s0, e0) if s == e else (s, e)


def run_case(aligner, toks, texts, reps):
    res = aligner.batch(texts, num_threads=1)
    encs = [tok.encode_batch(texts, add_special_tokens=False) for tok in toks]
    cleaned = [
        [clean_tokens(e.ids, tok.id_to_token) for e in side]
        for tok, side in zip(toks, encs, strict=True)
    ]
    walk_pairs = [paper_walk(t, s) for t, s in zip(*cleaned, strict=True)]

    student_text = int(res.student_text_tokens.sum())
    ours_aligned = int(res.aligned.sum())
    walk_aligned, not_ours, not_exact, id_mismatch = 0, 0, 0, 0
    for b, row in enumerate(res):
        if list(row.teacher_ids) != encs[0][b].ids or list(row.student_ids) != encs[1][b].ids:
            id_mismatch += 1
            continue
        ours = set(map(tuple, row.pairs.tolist()))
        raw = row.text.encode("utf-8")
        for i, j in walk_pairs[b]:
            if row.student_special[j]:
                continue
            walk_aligned += 1
            if (i, j) not in ours:
                not_ours += 1
                if _key(raw, row.teacher_spans[i]) != _key(raw, row.student_spans[j]):
                    not_exact += 1

    def walk_only():
        for t_enc, s_enc in zip(*encs, strict=True):
            paper_walk(
                clean_tokens(t_enc.ids, toks[0].id_to_token),
                clean_tokens(s_enc.ids, toks[1].id_to_token),
            )

    def enc_and_walk():
        e = [tok.encode_batch(texts, add_special_tokens=False) for tok in toks]
        for t_enc, s_enc in zip(*e, strict=True):
            paper_walk(
                clean_tokens(t_enc.ids, toks[0].id_to_token),
                clean_tokens(s_enc.ids, toks[1].id_to_token),
            )

    med = interleaved(
        {
            "ours": lambda: aligner.batch(texts, num_threads=1),
            "walk": walk_only,
            "enc_walk": enc_and_walk,
        },
        reps,
    )
    return {
        "texts": len(texts),
        "student_tokens": student_text,
        "ours": ours_aligned / max(student_text, 1),
        "walk": walk_aligned / max(student_text, 1),
        "walk_pairs": walk_aligned,
        "not_ours": not_ours,
        "not_exact": not_exact,
        "id_mismatch": id_mismatch,
        "walk_ratio": med["walk"] / med["ours"],
        "enc_walk_ratio": med["enc_walk"] / med["ours"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", nargs="+", default=PAIRS, help="teacher/student tokenizer names")
    p.add_argument("--corpora", nargs="+", default=list(LIMITS))
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    corpora = {c: LOADERS[c](LIMITS[c]) for c in args.corpora}
    cache: dict[str, Tokenizer] = {}

    def tok(name: str) -> Tokenizer:
        if name not in cache:
            cache[name] = Tokenizer.from_file(tokenizer_path(name))
        return cache[name]

    print(
        "| teacher -> student | corpus | texts | student tokens | coverage ours "
        "| coverage paper walk | walk pairs not ours (not same bytes) "
        "| walk/ours (walk excl. tok.) | (enc+walk)/ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for pair in args.pairs:
        t_name, s_name = pair.split("/")
        aligner = Aligner(tokenizer_path(t_name), tokenizer_path(s_name))
        toks = (tok(t_name), tok(s_name))
        for corpus, texts in corpora.items():
            r = run_case(aligner, toks, texts, args.reps)
            bad = f"{r['not_ours']} ({r['not_exact']})"
            if r["walk_pairs"]:
                bad += f" = {r['not_ours'] / r['walk_pairs']:.2%}"
            if r["id_mismatch"]:
                bad += f"; {r['id_mismatch']} rows skipped (ids differ)"
            print(
                f"| {t_name} -> {s_name} | {corpus} | {r['texts']} | {r['student_tokens']:,} "
                f"| {r['ours']:.1%} | {r['walk']:.1%} | {bad} | {r['walk_ratio']:.1f}x "
                f"| {r['enc_walk_ratio']:.1f}x |",
                flush=True,
            )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
