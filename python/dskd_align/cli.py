"""Command line: ``dskd-align align | coverage | distill | demo`` (also ``python -m dskd_align``).

Every command runs offline. Without ``--teacher/--student`` it uses the embedded default pair
(byte-level BPE teacher, SentencePiece-style byte-fallback student, trained on the fly from the
Python standard library's source, see ``dskd_align.embedded``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from dskd_align import Aligner, AlignmentError
from dskd_align.distill_cli import add_distill_parser

__all__ = ["main"]


def _pair(args: argparse.Namespace) -> tuple[Any, Any, str, str]:
    from dskd_align import embedded

    t = args.teacher or embedded.teacher_tokenizer()
    s = args.student or embedded.student_tokenizer()
    tn = args.teacher or "embedded byte-level BPE"
    sn = args.student or "embedded SentencePiece-style BPE"
    return t, s, str(tn), str(sn)


def cmd_align(args: argparse.Namespace) -> int:
    from dskd_align import embedded
    from dskd_align.report import format_alignment

    if args.file:
        text = Path(args.file).read_text(encoding="utf-8")
    else:
        text = args.text if args.text is not None else embedded.SAMPLE_TEXT
    t, s, tn, sn = _pair(args)
    al = Aligner(t, s, add_special_tokens=args.special_tokens)(text)
    if args.json:
        print(
            json.dumps(
                {
                    "pairs": al.pairs.tolist(),
                    "teacher_ids": al.teacher_ids.tolist(),
                    "student_ids": al.student_ids.tolist(),
                    "teacher_spans": al.teacher_spans.tolist(),
                    "student_spans": al.student_spans.tolist(),
                    "teacher_coverage": al.teacher_coverage,
                    "student_coverage": al.student_coverage,
                }
            )
        )
        return 0
    print(f"teacher: {tn}\nstudent: {sn}\n")
    print(format_alignment(al))
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    from dskd_align import embedded
    from dskd_align.report import coverage_summary, plot_coverage, read_corpus

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        # Said before the corpus is aligned, not after.
        print(
            "dskd-align: error: --plot needs matplotlib, which is not installed: "
            "pip install 'dskd-align[plot]' (or drop --plot)",
            file=sys.stderr,
        )
        return 2
    t, s, tn, sn = _pair(args)
    if args.corpus:
        texts = list(read_corpus(Path(args.corpus), args.field, args.limit))
    else:
        texts = embedded.corpus()[: args.limit or None]
    if not texts:
        raise AlignmentError(f"no texts read from {args.corpus!r} (check --field)")
    batch = Aligner(t, s, add_special_tokens=args.special_tokens).batch(
        texts, num_threads=args.threads
    )
    summary = coverage_summary(batch)
    summary_out: dict[str, Any] = {"teacher": tn, "student": sn, **summary}
    if args.plot:
        summary_out["plot"] = str(plot_coverage(batch, Path(args.plot), f"{tn} -> {sn}"))
    if args.json:
        print(json.dumps(summary_out))
    else:
        for k, v in summary_out.items():
            print(f"{k:>20}: {v:.4f}" if isinstance(v, float) else f"{k:>20}: {v}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from dskd_align.demo import run_demo
    except ImportError as e:  # torch is an optional extra
        print(
            f"the demo needs the torch extra: pip install 'dskd-align[torch]' ({e})",
            file=sys.stderr,
        )
        return 2
    steps = {} if args.steps is None else {"steps": args.steps}  # None: the demo's own default
    run_demo(seeds=(args.seed,), out_dir=args.output_dir, **steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dskd-align", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def tok_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--teacher", help="tokenizer.json or folder (default: embedded)")
        sp.add_argument("--student", help="tokenizer.json or folder (default: embedded)")
        sp.add_argument("--special-tokens", action="store_true", help="add BOS/EOS etc.")
        sp.add_argument("--json", action="store_true", help="machine-readable output")

    a = sub.add_parser("align", help="show the exact alignment of one text")
    tok_args(a)
    a.add_argument("--text", help="text to align (default: a built-in multilingual sample)")
    a.add_argument("--file", help="read the text from a file")
    a.set_defaults(func=cmd_align)

    c = sub.add_parser("coverage", help="coverage report over a corpus, with an optional plot")
    tok_args(c)
    c.add_argument("--corpus", help=".jsonl / .json / .txt (default: embedded stdlib corpus)")
    c.add_argument("--field", help="JSON field holding the text (default: all string fields)")
    c.add_argument("--limit", type=int, default=None, help="at most this many texts")
    c.add_argument("--threads", type=int, default=1, help="core threads (0 = all cores)")
    c.add_argument("--plot", help="write a coverage histogram PNG here")
    c.set_defaults(func=cmd_coverage)

    d = sub.add_parser(
        "demo", help="the embedded demo, one seed (same as `distill` without models)"
    )
    d.add_argument("--steps", type=int, default=None,
                   help="distillation steps per arm (default: the demo's, 384)")  # fmt: skip
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--output-dir", default="dskd-demo", help="table, curves PNG")
    d.set_defaults(func=cmd_demo)
    add_distill_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as e:  # AlignmentError and every bad-input error of the torch layer
        print(f"dskd-align: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
