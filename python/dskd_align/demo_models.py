"""Models of the embedded demo: a teacher and two pretrained students, cached on disk.

- teacher: GPT-2 style (byte-level BPE tokenizer), trained on the ``teacher`` slice and the task's
  train rows (the paper's teachers are fine-tuned on the task);
- ``cross`` student: Llama style with the embedded SentencePiece-style tokenizer, pretrained on the
  ``student`` slice (the paper distills into pretrained students; from a random init the student's
  head is noise, and DSKD projects the teacher through it);
- ``same`` student: the same architecture and pretraining, with the teacher's tokenizer: the
  same-tokenizer reference every cross-tokenizer figure is compared with.

Pretraining is plain next-token CE on the responses of the slice's rows. The weights are cached in
``$XDG_CACHE_HOME/dskd-align`` (else ``~/.cache/dskd-align``) under a hash of everything that
decides them (configs, steps, learning rate, seed, tokenizers, corpus, library versions), so a
rerun loads them instead of training; the key changes whenever any of those does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from dskd_align import embedded
from dskd_align.demo_data import make_batches, task_rows
from dskd_align.tokenizers import tokenizer_json
from dskd_align.torch import DSKDCollator

__all__ = ["DemoSize", "Tokenizers", "cache_root", "pretrained_models", "tokenizers"]


@dataclass(frozen=True)
class DemoSize:
    """Everything that decides the pretrained weights (the cache key hashes all of it)."""

    teacher_dim: int = 128
    teacher_layers: int = 4
    teacher_steps: int = 400
    student_dim: int = 64
    student_layers: int = 2
    student_steps: int = 250
    pretrain_batch: int = 16
    lr: float = 3e-3
    train_rows: int = 256  # task train rows (the teacher sees them too)
    pretrain_rows: int | None = None  # rows per pretraining slice (None: all; tests use few)


@dataclass
class Tokenizers:
    teacher: PreTrainedTokenizerFast
    student: PreTrainedTokenizerFast


def tokenizers() -> Tokenizers:
    """The embedded pair as transformers fast tokenizers (byte-level BPE -> SentencePiece-style)."""
    t = PreTrainedTokenizerFast(
        tokenizer_object=embedded.teacher_tokenizer(),
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    s = PreTrainedTokenizerFast(
        tokenizer_object=embedded.student_tokenizer(),
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<unk>",
    )
    return Tokenizers(t, s)


def build_teacher(tok: Any, size: DemoSize) -> GPT2LMHeadModel:
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=size.teacher_dim,
        n_layer=size.teacher_layers,
        n_head=4,
        n_positions=256,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(cfg)
    # transformers derives the loss from the class name, finds none in "GPT2LMHeadModel" and warns
    # on every first labelled call (then uses this same causal-LM loss): name it, quiet the warning.
    model.loss_type = "ForCausalLM"
    return model


def build_student(tok: Any, size: DemoSize) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=size.student_dim,
        intermediate_size=3 * size.student_dim,
        num_hidden_layers=size.student_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(cfg)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else ``$XDG_CACHE_HOME/dskd-align``, else ``~/.cache/dskd-align``."""
    if cache_dir is not None:
        return Path(cache_dir)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dskd-align"


def _key(size: DemoSize, seed: int, toks: Tokenizers) -> str:
    h = hashlib.sha256()
    parts = [
        # None fields are left out, so adding an optional field keeps existing caches valid.
        json.dumps({k: v for k, v in asdict(size).items() if v is not None}, sort_keys=True),
        str(seed),
        tokenizer_json(toks.teacher),
        tokenizer_json(toks.student),
        "".join(embedded.corpus()),
        torch.__version__,
        transformers.__version__,
        "v1",
    ]
    for p in parts:
        h.update(p.encode("utf-8"))
    return h.hexdigest()[:16]


def _pretrain(
    model: Any,
    batches: list[Any],
    side: str,
    steps: int,
    lr: float,
    seed: int,
    tick: Callable[[int, float], None] = lambda step, loss: None,
) -> float:
    """Next-token CE on one side of the batches; returns the last loss. ``tick(step, loss)``
    every 100 steps, so a first run (minutes) shows it is moving."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / 20))
    model.train()
    loss = torch.zeros(())
    for step in range(steps):
        b = batches[step % len(batches)]
        loss = model(
            input_ids=b[f"{side}_input_ids"],
            attention_mask=b[f"{side}_attention_mask"],
            labels=b[f"{side}_labels"],
        ).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % 100 == 0 and step + 1 < steps:
            tick(step + 1, float(loss.detach()))
    model.eval()
    return float(loss.detach())


def pretrained_models(
    size: DemoSize,
    seed: int,
    toks: Tokenizers,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``{"teacher", "cross", "same"}`` models (eval mode, teacher frozen), from the cache when
    present, else trained and saved there."""
    folder = cache_root(cache_dir) / f"demo-{_key(size, seed, toks)}"
    models = {
        "teacher": build_teacher(toks.teacher, size),
        "cross": build_student(toks.student, size),
        "same": build_student(toks.teacher, size),
    }
    paths = {k: folder / f"{k}.pt" for k in models}
    if all(p.exists() for p in paths.values()):
        for k, m in models.items():
            m.load_state_dict(torch.load(paths[k], map_location="cpu", weights_only=True))
            m.eval()
        log(f"pretrained teacher and students loaded from the cache ({folder})")
    else:
        t0 = time.perf_counter()
        log(f"pretraining teacher and students (once; cached in {folder}) ...")
        cross = DSKDCollator(toks.teacher, toks.student)
        n = size.pretrain_rows
        rows = task_rows("teacher", n, seed) + task_rows("train", size.train_rows, seed)
        tb = make_batches(cross, rows, size.pretrain_batch)
        sb = make_batches(cross, task_rows("student", n, seed), size.pretrain_batch)
        same = DSKDCollator(toks.teacher, toks.teacher)
        sb_same = make_batches(same, task_rows("student", n, seed), size.pretrain_batch)
        torch.manual_seed(seed)
        models = {
            "teacher": build_teacher(toks.teacher, size),
            "cross": build_student(toks.student, size),
            "same": build_student(toks.teacher, size),
        }
        jobs = (
            ("teacher", tb, "teacher", size.teacher_steps),
            ("cross", sb, "student", size.student_steps),
            ("same", sb_same, "student", size.student_steps),
        )
        for name, batches, side, steps in jobs:

            def tick(step: int, loss: float, name: str = name, steps: int = steps) -> None:
                t = time.perf_counter() - t0
                log(f"  {name:<8} step {step}/{steps}, CE {loss:.3f} ({t:.0f} s)")

            last = _pretrain(models[name], batches, side, steps, size.lr, seed, tick)
            log(f"  {name:<8} {steps} steps, last CE {last:.3f} ({time.perf_counter() - t0:.0f} s)")
        folder.mkdir(parents=True, exist_ok=True)
        for k, m in models.items():
            tmp = paths[k].with_suffix(".tmp")
            torch.save(m.state_dict(), tmp)
            tmp.replace(paths[k])  # atomic: a killed run never leaves half a cache
    models["teacher"].requires_grad_(False)
    return models
