"""The embedded demo: does cross-tokenizer KD give a student what same-tokenizer KD gives it?

Fully offline on CPU. The default: six arms at 384 steps (256 before stop 21, 128 before stop
19: the cross-tokenizer arms kept improving past each, BENCHMARKS.md "The demo's budget" and
"On-policy"). Cost, models cached, 2 quiet cores: ~2 min 50 s per seed (the on-policy cross arm
69 s, on-policy KD 34 s, DSKD 23 s, KD 19 s, the SFT arms 8-12 s); pretraining, once per seed,
adds 1-3 min. The on-policy arms (``lmbda=0.5``: half the batches' responses are the student's own
samples, scored by the teacher) cost ~2x their off-policy arm; DSKD ~2x an SFT arm (the trainer
runs the teacher every step); fewer ``steps`` is the knob. The paper's regime, shrunk
(``demo_data``/``demo_models`` record choices):

1. a GPT-2-style teacher (byte-level BPE) trained on one slice of the embedded corpus (Python
   stdlib source) and the task's train rows; two Llama-style students *pretrained* on another
   slice: ``cross`` (embedded SentencePiece-style tokenizer) and ``same`` (the teacher's
   tokenizer). All three are cached under the user's cache directory;
2. distillation on the task (rows = a corpus line as prompt, the next lines as response): every
   arm starts from the same pretrained student and sees the same batches for the same steps
   through :class:`~dskd_align.torch.DSKDTrainer`; only the loss differs (and, in on-policy
   arms, the responses of the batches the student samples);
3. the validation split picks each arm's best step; the test split at that step is reported in
   bits/byte (tokenizer-independent: a per-token CE means nothing across tokenizers);
4. gap closure of a cross-tokenizer arm X = (SFT_cross - X_cross) / (SFT_same - KD_same): the
   share of what vanilla KD gives a same-tokenizer student that X gives a cross-tokenizer one.
   On-policy cross arms are also measured against on-policy KD (``ON_POLICY_KD``), like for
   like: on-policy batches help the same-tokenizer student too.

``backend="loop"`` runs the same arms (but the on-policy ones) through a plain loop
(``demo_train``) that computes the frozen teacher once per batch: same losses and batches, about
2x faster; the benchmark (``benches/gap_closure.py``) uses it for its many arms.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dskd_align.demo_data import make_batches, response_bytes, task_rows
from dskd_align.demo_models import DemoSize, Tokenizers, pretrained_models, tokenizers
from dskd_align.demo_train import (
    ArmData,
    ArmResult,
    eval_point,
    finish_arm,
    teacher_hidden,
    train_arm,
    with_branch_states,
)

__all__ = ["ARMS", "DEFAULT_ARMS", "DemoSize", "run_demo"]

# arm name -> (student, build_loss name, loss options). "*-same" students use the teacher's
# tokenizer. DSKD as the paper: alpha 0.5, tau 2, pinv-initialized projector.
ARMS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "sft-cross": ("cross", "sft", {}),
    "dskd-cross": ("cross", "dskd", {"tau": 2.0}),
    "exact_kd-cross": ("cross", "exact_kd", {"tau": 1.0}),
    "chunk_kd-cross": ("cross", "chunk_kd", {"tau": 1.0}),
    "exact_kd+chunk_kd-cross": ("cross", "exact_kd+chunk_kd", {"tau": 1.0}),
    "byte_kd-cross": ("cross", "byte_kd", {"tau": 1.0, "alpha": 1 / 3}),
    # The best library loss on this benchmark (BENCHMARKS.md "Gap closure"), at its alpha, with
    # the teacher's branch states (branch.py: better on 30 of 33 seed x regime pairs).
    "byte_sets-cross": ("cross", "byte_sets", {"tau": 1.0, "alpha": 0.5, "branch": True}),
    "sft-same": ("same", "sft", {}),
    "kd-same": ("same", "kd", {"tau": 1.0}),
    # On-policy (GKD's lmbda; trainer backend only): half the batches' responses are the
    # student's samples, scored by the teacher through the same loss; gold CE stays on gold rows.
    "byte_sets-cross lmbda=0.5": (
        "cross",
        "byte_sets",
        {"tau": 1.0, "alpha": 0.5, "branch": True, "lmbda": 0.5},
    ),
    "kd-same lmbda=0.5": ("same", "kd", {"tau": 1.0, "lmbda": 0.5}),
}
# DSKDConfig fields an arm may set (the rest of an arm's options go to the loss).
TRAINER_OPTS = ("lmbda", "seq_kd", "max_new_tokens", "temperature", "top_k", "top_p")
# The cross arm is `byte_sets` on-policy (stop 21): +0.89 ± 0.17 of vanilla KD's gain over 15
# seeds at 384 steps, +0.84 ± 0.17 of on-policy KD's, against +0.78 / +0.73 off-policy
# (BENCHMARKS.md "On-policy"); `loss="byte_sets"` adds the off-policy arm.
DEFAULT_ARMS = (
    "sft-cross", "dskd-cross", "byte_sets-cross lmbda=0.5", "sft-same", "kd-same",
    "kd-same lmbda=0.5",
)  # fmt: skip
REFERENCE = ("sft-cross", "sft-same", "kd-same")  # needed for the gap closure
ON_POLICY_KD = "kd-same lmbda=0.5"  # the like-for-like denominator of on-policy cross arms
BYTE_LOSSES = ("byte_kd", "byte_sets")  # losses that read the pair's byte tables


class DemoError(ValueError):
    """Bad demo settings; the message names the fix."""


def _arm(name: str) -> tuple[str, str, dict[str, Any]]:
    if name in ARMS:
        return ARMS[name]
    for suffix in ("-cross", "-same"):
        if name.endswith(suffix):  # any build_loss name, e.g. "dskd+exact_kd-cross"
            return suffix[1:], name[: -len(suffix)], {}
    raise DemoError(f"unknown arm {name!r}: use one of {sorted(ARMS)} or '<loss>-cross'")


def _check_arm(name: str, backend: str) -> None:
    opts = _arm(name)[2]
    if backend == "loop" and any(k in opts for k in TRAINER_OPTS):
        raise DemoError(f"arm {name!r} samples from the student: run it with backend='trainer'")


def _data(col: Any, teacher: Any, train: list, val: list, test: list, bs: int) -> ArmData:
    tr = make_batches(col, train, bs)
    return ArmData(
        tr,
        teacher_hidden(teacher, tr),
        make_batches(col, val, 32),
        make_batches(col, test, 32),
        response_bytes(val),
        response_bytes(test),
    )


def _trainer_arm(
    name: str, student: Any, teacher: Any, toks: Tokenizers, kind: str, loss: str,
    opts: dict[str, Any], train: list, data: ArmData, *, steps: int, eval_every: int, lr: float,
    alpha: float, batch_size: int, seed: int, log: Callable[[str], None], track_test: bool = False,
) -> ArmResult:  # fmt: skip
    """One arm through DSKDTrainer; a callback evaluates validation bits/byte and keeps the best
    weights."""
    import time

    from transformers import PrinterCallback, TrainerCallback

    from dskd_align.torch import DSKDConfig, DSKDTrainer

    res = ArmResult(name)
    t0 = time.perf_counter()
    res.val_bpb = eval_point(res, student, data, 0, track_test)
    best = [copy.deepcopy(student.state_dict())]

    class _Val(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            step = state.global_step
            if step % eval_every and step != steps:
                return
            v = eval_point(res, student, data, step, track_test)
            if v < res.val_bpb:
                res.val_bpb, res.best_step = v, step
                best[0] = copy.deepcopy(student.state_dict())

    opts = dict(opts)
    tau = opts.pop("tau", None)
    extra = {k: opts.pop(k) for k in TRAINER_OPTS if k in opts}
    with tempfile.TemporaryDirectory() as out:
        cfg = DSKDConfig(
            output_dir=out, loss=loss, alpha=alpha if loss != "sft" else 0.0, tau=tau,
            loss_kwargs=opts or None, max_steps=steps, per_device_train_batch_size=batch_size,
            learning_rate=lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            max_grad_norm=1.0, logging_steps=max(1, steps // 8), save_strategy="no",
            report_to=[], seed=seed, use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
            **extra,
        )  # fmt: skip
        same = kind == "same"
        trainer = DSKDTrainer(
            model=student, teacher_model=teacher, args=cfg, train_dataset=train,
            processing_class=toks.teacher if same else toks.student,
            teacher_processing_class=toks.teacher, callbacks=[_Val()],
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
        res.train_loss = [h["loss"] for h in logs]
        res.metrics = {k: float(v) for k, v in logs[-1].items() if isinstance(v, int | float)}
        if "on_policy" in logs[-1]:  # equal logging windows: the share of sampled batches
            res.metrics["on_policy_share"] = statistics.fmean(h["on_policy"] for h in logs)
    return finish_arm(res, student, best[0], data, t0, log)


def run_seed(
    seed: int, arms: Sequence[str], *, steps: int, size: DemoSize, cache_dir: Any, lr: float,
    alpha: float, batch_size: int, eval_every: int, backend: str, log: Callable[[str], None],
    n_val: int = 128, n_test: int = 256, track_test: bool = False,
) -> dict[str, ArmResult]:  # fmt: skip
    """Every arm of one seed (the seed picks the pretraining, the task rows and their order).
    ``track_test``: also the test figure at every validation point (``ArmResult.at_budget``)."""
    from dskd_align.torch import ByteKDCollator, DSKDCollator, VocabMap
    from dskd_align.torch.objectives import build_loss
    from dskd_align.torch.set_tables import SetTables

    for name in arms:
        _check_arm(name, backend)  # before any pretraining
    toks = tokenizers()
    models = pretrained_models(size, seed, toks, cache_dir, log)
    teacher = models["teacher"]
    train = task_rows("train", size.train_rows, seed)
    val, test = task_rows("val", n_val, seed), task_rows("test", n_test, seed)
    vmap = VocabMap(
        toks.teacher,
        toks.student,
        teacher_vocab_size=teacher.lm_head.weight.shape[0],
        student_vocab_size=models["cross"].lm_head.weight.shape[0],
    )
    cross: Any = DSKDCollator(toks.teacher, toks.student)
    tables = None
    if any(_arm(n)[1] in BYTE_LOSSES for n in arms):  # targets come with the cross batches
        tables = SetTables(toks.teacher, toks.student, vmap)  # byte_kd's tables + the sets
        cross = ByteKDCollator(cross, tables)
    cols = {"cross": cross, "same": DSKDCollator(toks.teacher, toks.teacher)}
    data = {k: _data(c, teacher, train, val, test, batch_size) for k, c in cols.items()}
    out = {}
    for name in arms:
        kind, loss, opts = _arm(name)
        opts = dict(opts)
        arm_alpha = opts.pop("alpha", alpha)  # an arm may fix its own (byte_kd: 1/3)
        torch.manual_seed(seed)
        student = copy.deepcopy(models[kind])
        common = dict(steps=steps, eval_every=eval_every, lr=lr, seed=seed, log=log,
                      track_test=track_test)  # fmt: skip
        if backend == "trainer":
            out[name] = _trainer_arm(
                name, student, teacher, toks, kind, loss, opts, train, data[kind],
                alpha=arm_alpha, batch_size=batch_size, **common,
            )  # fmt: skip
        else:
            if opts.get("branch") and "branch" not in data:  # the teacher's branch states too
                data["branch"] = with_branch_states(data["cross"], teacher)
            fn = build_loss(
                loss,
                teacher.lm_head.weight.detach(),
                student.lm_head.weight.detach(),
                tables if loss in BYTE_LOSSES else vmap if kind == "cross" else None,
                alpha=arm_alpha if loss != "sft" else 0.0,
                **opts,
            )
            arm_data = data["branch" if opts.get("branch") else kind]
            out[name] = train_arm(name, student, teacher, fn, arm_data, projector_lr=5e-4, **common)
    return out


def _is_cross(name: str) -> bool:
    """A cross-tokenizer arm: its name's first word ends in ``-cross`` (every ARMS entry follows
    it; options may follow, e.g. ``byte_sets-cross lmbda=0.5``). Unlike ``_arm`` it takes names
    a benchmark made up, as read from its results files."""
    return name.split(" ")[0].endswith("-cross")


def gap_closure(results: dict[str, ArmResult], kd: str = "kd-same") -> dict[str, float]:
    """(SFT_cross - X_cross) / (SFT_same - KD_same) of every cross arm (needs the references).
    ``kd``: the same-tokenizer KD arm of the denominator (the measure's is vanilla KD)."""
    if not all(r in results for r in (*REFERENCE[:2], kd)):
        return {}
    den = results["sft-same"].test_bpb - results[kd].test_bpb
    base = results["sft-cross"].test_bpb
    return {
        n: (base - r.test_bpb) / den if den else float("nan")
        for n, r in results.items()
        if _is_cross(n) and n != "sft-cross"
    }


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _plot(per_seed: list[dict[str, ArmResult]], path: Path, log: Callable[[str], None]) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("no PNG: matplotlib is not installed (pip install 'dskd-align[plot]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in per_seed[0].items():
        steps, vals = zip(*r.curve, strict=True)
        ax.plot(steps, vals, marker=".", ls="--" if name.endswith("-same") else "-", label=name)
    ax.set_xlabel("distillation step")
    ax.set_ylabel("validation bits/byte (lower is better)")
    ax.set_title("dskd-align demo: cross- vs same-tokenizer distillation (seed 0 of the run)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _print_table(out: dict[str, Any], n_seeds: int, log: Callable[[str], None]) -> None:
    pm = "±"
    both = bool(out["gap_closure_on_policy_kd"])
    log(f"\ntest bits/byte over {n_seeds} seed(s) (lower is better; best validation step):")
    head = f"  {'arm':<26} {'bits/byte':>16} {'gap closure':>16}"
    log(head + (f" {'vs on-policy KD':>16}" if both else ""))
    for name, a in out["arms"].items():
        cells = [f"  {name:<26} {a['mean']:>8.4f} {pm} {a['sd']:.4f}"]
        for key in ("gap_closure", "gap_closure_on_policy_kd")[: 1 + both]:
            g = out[key].get(name)
            cells.append(f"{g['mean']:+.2f} {pm} {g['sd']:.2f}" if g else "")
        log(" ".join([cells[0], *(f"{c:>16}" for c in cells[1:])]))
    if out["gap_closure"]:
        log("gap closure = (SFT_cross - X_cross) / (SFT_same - KD_same): 1 = a cross-tokenizer")
        log("student gains what vanilla KD gives a student with the teacher's tokenizer.")
    if both:
        log(f"vs on-policy KD: the same with KD_same = {ON_POLICY_KD!r}, like for like for")
        log("the on-policy cross arms (lmbda=0.5: half the batches are the student's samples).")


def run_demo(
    seeds: Sequence[int] = (0,),
    out_dir: str | Path | None = "dskd-demo",
    steps: int = 384,
    arms: Sequence[str] = DEFAULT_ARMS,
    loss: str | None = None,
    cache_dir: str | Path | None = None,
    verbose: bool = True,
    plot: bool = True,
    *,
    size: DemoSize | None = None,
    backend: str = "trainer",
    lr: float = 3e-4,
    alpha: float = 0.5,
    batch_size: int = 8,
    eval_every: int = 16,
    seed: int | None = None,
    teacher: str | None = None,
    student: str | None = None,
) -> dict[str, Any]:
    """Runs the demo (module notes). ``loss``: one more cross-tokenizer arm, any build_loss name.
    ``seed``/``teacher``/``student``: the old ``dskd-align demo`` options (``seed`` = one seed;
    other tokenizers are refused: real models go through ``dskd-align distill``).

    Returns ``{"arms": {name: {"test_bpb": [per seed], "mean", "sd", "best_step": [...],
    "curve": [(step, val bpb)] of the first seed}}, "gap_closure": {name: {"per_seed", "mean",
    "sd"}}, "gap_closure_on_policy_kd": {the same against ON_POLICY_KD, when run}, "plot": path
    or None}``."""
    if teacher is not None or student is not None:
        raise DemoError(
            "the demo runs on the embedded tokenizer pair; distill real models with "
            "`dskd-align distill --teacher ... --student ...`"
        )
    if seed is not None:
        seeds = (seed,)
    if backend not in ("trainer", "loop"):
        raise DemoError(f"backend must be 'trainer' or 'loop', got {backend!r}")
    if steps < 1 or not seeds:
        raise DemoError("steps must be >= 1 and seeds non-empty")
    arms = list(dict.fromkeys([*arms, *([f"{loss}-cross"] if loss else [])]))
    for a in arms:
        _check_arm(a, backend)  # fail before any training
    log = print if verbose else (lambda *a, **k: None)
    size = size or DemoSize()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    per_seed = []
    for s in seeds:
        log(f"seed {s}: {len(arms)} arms x {steps} steps, batch {batch_size}, lr {lr}")
        per_seed.append(
            run_seed(
                s,
                arms,
                steps=steps,
                size=size,
                cache_dir=cache_dir,
                lr=lr,
                alpha=alpha,
                batch_size=batch_size,
                eval_every=eval_every,
                backend=backend,
                log=log,
            )  # fmt: skip
        )
    out: dict[str, Any] = {"arms": {}, "gap_closure": {}, "plot": None}
    for name in arms:
        xs = [r[name].test_bpb for r in per_seed]
        m, sd = _mean_sd(xs)
        out["arms"][name] = {
            "test_bpb": xs, "mean": m, "sd": sd,
            "best_step": [r[name].best_step for r in per_seed],
            "curve": per_seed[0][name].curve,
            "train_loss": per_seed[0][name].train_loss,
        }  # fmt: skip
    out["gap_closure_on_policy_kd"] = {}
    for key, kd in (("gap_closure", "kd-same"), ("gap_closure_on_policy_kd", ON_POLICY_KD)):
        gaps = [gap_closure(r, kd) for r in per_seed]
        for name in gaps[0]:
            if kd == ON_POLICY_KD and not _arm(name)[2].get("lmbda"):
                continue  # like for like: only on-policy arms against on-policy KD
            xs = [g[name] for g in gaps]
            m, sd = _mean_sd(xs)
            out[key][name] = {"per_seed": xs, "mean": m, "sd": sd}
    _print_table(out, len(seeds), log)
    if plot and out_dir is not None:
        out["plot"] = _plot(per_seed, Path(out_dir) / "demo_curves.png", log)
        if out["plot"]:
            log(f"validation curves: {out['plot']}")
    return out
