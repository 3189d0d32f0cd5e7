"""``dskd-align distill``: run a distillation from the command line, on top of ``DSKDTrainer``.

With ``--teacher`` and ``--student`` (local model folders, or hub names where the machine has a
network) it distills on ``--data``; with neither it runs the embedded offline demo (tiny models
pretrained and cached on first use, then every arm distilled and compared on a test split).

Data: ``.jsonl``/``.json``/``.parquet`` files or a folder written by ``Dataset.save_to_disk``
(a ``DatasetDict`` picks ``--split``), in any row format the collator reads: TRL's
``prompt``/``completion`` (plain or conversational), ``messages``, or ``prompt``/``response``.
The first row is checked before any model is loaded, so a wrong format fails in a second.

Output (``--output-dir``): the student (``save_pretrained``) and its tokenizer, the loss's
projectors (``dskd_loss.pt``), checkpoints (``--save-steps``), and ``metrics.jsonl`` (one JSON
object per logging step: every loss term, coverage, agreement, tokens/s). A progress bar shows
the loss terms, coverage and tokens/s; a summary is printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_distill_parser", "cmd_distill", "load_rows"]

_SHOWN = ("loss", "ce_gold", "coverage", "agreement")


def add_distill_parser(sub: Any) -> None:
    d = sub.add_parser(
        "distill",
        help="distill a teacher into a student (no --teacher/--student: the embedded demo)",
        description=__doc__.split("\n\n")[1],
    )
    m = d.add_argument_group("models and data")
    m.add_argument("--teacher", help="teacher model folder (or hub name)")
    m.add_argument("--student", help="student model folder (or hub name)")
    m.add_argument("--teacher-tokenizer", help="default: the teacher folder's tokenizer")
    m.add_argument("--student-tokenizer", help="default: the student folder's tokenizer")
    m.add_argument("--data", help=".jsonl/.json/.parquet file or a datasets folder")
    m.add_argument("--eval-data", help="held-out rows, same formats (evaluated every eval step)")
    m.add_argument("--split", default="train", help="split of a DatasetDict folder")
    m.add_argument("--output-dir", default="dskd-output")
    k = d.add_argument_group("distillation")
    k.add_argument(
        "--loss",
        default=None,
        help="one of dskd_align.torch.LOSS_NAMES (default dskd; demo: an extra cross arm)",
    )
    k.add_argument(
        "--loss-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loss option (repeatable), e.g. unmapped=other, chunk_weight=0.5, branch=true",
    )
    k.add_argument("--alpha", type=float, default=0.5)
    k.add_argument("--tau", type=float, default=None, help="KD temperature (loss default)")
    k.add_argument("--divergence", default="forward_kl")
    k.add_argument("--projector-lr", type=float, default=5e-4)
    k.add_argument("--lmbda", type=float, default=0.0, help="on-policy batch share")
    k.add_argument("--seq-kd", action="store_true", help="teacher generations as responses")
    k.add_argument("--max-new-tokens", type=int, default=128)
    k.add_argument("--temperature", type=float, default=0.9, help="sampling temperature")
    k.add_argument("--top-k", type=int, default=0)
    k.add_argument("--top-p", type=float, default=1.0)
    k.add_argument("--stop-string", action="append", help="generation stop string (repeatable)")
    k.add_argument("--max-length", type=int, default=1024)
    k.add_argument(
        "--chat-template",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: chat rows templated on each side, plain rows plain on both",
    )
    k.add_argument("--tokenize-jointly", action="store_true", help="prompt+response as one text")
    t = d.add_argument_group("training")
    t.add_argument("--learning-rate", type=float, default=2e-5)
    t.add_argument("--batch-size", type=int, default=8, help="per device")
    t.add_argument("--grad-accum", type=int, default=1)
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--max-steps", type=int, default=-1, help="overrides --epochs when > 0")
    t.add_argument("--warmup-steps", type=int, default=0)
    t.add_argument("--logging-steps", type=int, default=10)
    t.add_argument("--save-steps", type=int, default=0, help="checkpoint every N steps (0: off)")
    t.add_argument("--eval-steps", type=int, default=0, help="evaluate every N steps (0: off)")
    t.add_argument("--resume", nargs="?", const="last", help="resume (a checkpoint or the last)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    t.add_argument("--bf16", action="store_true")
    t.add_argument("--seeds", type=int, default=1, help="demo only: seeds 0..N-1, mean and sd")
    d.set_defaults(func=cmd_distill)


def load_rows(path: str, split: str = "train") -> Any:
    """A ``datasets.Dataset`` from a JSONL/JSON/Parquet file or a ``save_to_disk`` folder."""
    import datasets

    p = Path(path)
    if p.is_dir():
        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"{path} has splits {sorted(ds)}, not {split!r}: pass --split")
            ds = ds[split]
        return ds
    kinds = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
    if p.suffix not in kinds:
        raise ValueError(f"{path}: data must be .jsonl, .json, .parquet or a datasets folder")
    if not p.is_file():
        raise ValueError(f"{path}: no such file")
    return datasets.load_dataset(kinds[p.suffix], data_files=str(p), split="train")


def _check_first_row(ds: Any, path: str) -> None:
    from dskd_align.torch.formats import split_row

    if len(ds) == 0:
        raise ValueError(f"{path}: no rows")
    try:
        split_row(ds[0])
    except ValueError as e:
        raise ValueError(f"{path}, row 0: {e}") from None


class _Progress:
    """A progress bar with the loss terms, coverage and tokens/s, and ``metrics.jsonl``."""

    def __init__(self, out_dir: Path, total: int) -> None:
        from tqdm.auto import tqdm

        out_dir.mkdir(parents=True, exist_ok=True)
        self.file = (out_dir / "metrics.jsonl").open("a", encoding="utf-8")
        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)
        self.last_step, self.last_time = 0, time.perf_counter()
        self.last: dict[str, float] = {}

    def callback(self) -> Any:
        from transformers import TrainerCallback

        outer = self

        class _CB(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
                if state.is_world_process_zero and logs:
                    outer.log(state.global_step, dict(logs))

        return _CB()

    def log(self, step: int, logs: dict[str, float]) -> None:
        now = time.perf_counter()
        steps = step - self.last_step
        if steps > 0 and "student_tokens" in logs:
            logs["tokens_per_s"] = round(logs["student_tokens"] * steps / (now - self.last_time), 1)
            self.last_step, self.last_time = step, now
            self.bar.update(steps)
        self.file.write(json.dumps({"step": step, **logs}) + "\n")
        self.file.flush()
        self.last.update(logs)
        kd = [k for k in logs if k.startswith(("kd_", "ce_t2s", "chunk_"))]
        shown = [k for k in (*_SHOWN, *kd, "tokens_per_s") if k in logs]
        self.bar.set_postfix({k: f"{logs[k]:.4g}" for k in shown}, refresh=False)

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def _loss_options(items: list[str]) -> dict[str, Any]:
    """``["unmapped=other", "chunk_weight=0.5"]`` -> ``{"unmapped": "other", "chunk_weight": 0.5}``
    (values parsed as JSON when they parse, so numbers and true/false keep their types)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--loss-option takes KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _config(args: argparse.Namespace, has_eval: bool) -> Any:
    from dskd_align.torch.config import DSKDConfig

    return DSKDConfig(
        output_dir=args.output_dir,
        loss=args.loss or "dskd",
        loss_kwargs=_loss_options(args.loss_option),
        alpha=args.alpha,
        tau=args.tau,
        divergence=args.divergence,
        projector_lr=args.projector_lr,
        lmbda=args.lmbda,
        seq_kd=args.seq_kd,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        stop_strings=args.stop_string,
        max_length=args.max_length,
        use_chat_template={"auto": None, "on": True, "off": False}[args.chat_template],
        tokenize_jointly=args.tokenize_jointly,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps,
        warmup_steps=args.warmup_steps,
        logging_steps=args.logging_steps,
        save_strategy="steps" if args.save_steps > 0 else "no",
        save_steps=max(args.save_steps, 1),
        eval_strategy="steps" if has_eval and args.eval_steps > 0 else "no",
        eval_steps=max(args.eval_steps, 1),
        seed=args.seed,
        use_cpu=args.device == "cpu",
        bf16=args.bf16,
        disable_tqdm=True,  # our own bar shows the loss terms
    )


def _demo(args: argparse.Namespace) -> int:
    """The embedded demo (``dskd_align.demo``): ``--seeds``, ``--max-steps`` (distillation
    steps per arm), ``--loss`` (one more cross-tokenizer arm), ``--output-dir``."""
    from dskd_align.demo import run_demo

    kw: dict[str, Any] = {"seeds": tuple(range(max(args.seeds, 1))), "out_dir": args.output_dir}
    if args.max_steps > 0:
        kw["steps"] = args.max_steps
    if args.loss:
        kw["loss"] = args.loss
    run_demo(**kw)
    return 0


def _leave_process_group() -> None:
    """Under torchrun, leave the process group before the interpreter exits. A gloo rank that
    exits with it alive can abort in teardown (SIGABRT, "terminate called without an active
    exception": its threads still hold tensors), failing the whole launch after a good run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def cmd_distill(args: argparse.Namespace) -> int:
    try:
        import transformers  # noqa: F401

        import dskd_align.torch  # noqa: F401
    except ImportError as e:  # torch is an optional extra
        msg = f"distill needs the torch extra: pip install 'dskd-align[torch]' ({e})"
        print(msg, file=sys.stderr)
        return 2
    if args.teacher is None and args.student is None:
        if args.data is not None:
            raise ValueError("--data needs --teacher and --student (without them: the demo)")
        return _demo(args)
    if args.teacher is None or args.student is None:
        raise ValueError("pass both --teacher and --student (or neither, for the embedded demo)")
    if args.data is None:
        raise ValueError("--data is required with --teacher/--student (a .jsonl file, say)")
    train = load_rows(args.data, args.split)
    _check_first_row(train, args.data)
    evals = load_rows(args.eval_data, args.split) if args.eval_data else None
    if evals is not None:
        _check_first_row(evals, args.eval_data)

    from transformers import AutoModelForCausalLM, PrinterCallback

    from dskd_align.torch.trainer import DSKDTrainer

    cfg = _config(args, evals is not None)
    trainer = DSKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(args.student),
        teacher_model=AutoModelForCausalLM.from_pretrained(args.teacher),
        args=cfg,
        train_dataset=train,
        eval_dataset=evals,
        processing_class=args.student_tokenizer or args.student,
        teacher_processing_class=args.teacher_tokenizer or args.teacher,
    )
    steps = cfg.max_steps if cfg.max_steps > 0 else None
    progress = _Progress(Path(args.output_dir), steps or len(trainer.get_train_dataloader()))
    trainer.add_callback(progress.callback())
    trainer.remove_callback(PrinterCallback)  # the bar and metrics.jsonl replace its dict dumps
    resume = args.resume
    start = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=True if resume == "last" else resume)
        trainer.save_model()
        trainer.processing_class.save_pretrained(args.output_dir)
        final = {"steps": result.global_step, "train_loss": round(result.training_loss, 4)}
        if evals is not None:
            final.update({k: round(v, 4) for k, v in trainer.evaluate().items()})
    finally:
        progress.close()
        _leave_process_group()
    final["seconds"] = round(time.perf_counter() - start, 1)
    keys = ("ce_gold", "coverage", "agreement", "n_aligned", "unsupervised_rows", "tokens_per_s")
    final.update({k: progress.last[k] for k in keys if k in progress.last})
    print(f"\ndistilled {args.teacher} -> {args.student} with loss {args.loss!r}")
    for k, v in final.items():
        print(f"{k:>20}: {v}")
    print(f"{'saved to':>20}: {args.output_dir} (student, tokenizer, dskd_loss.pt, metrics.jsonl)")
    return 0
