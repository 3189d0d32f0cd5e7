"""Generation for the trainer's on-policy and sequence-level KD steps.

- The student *samples* (``temperature``, ``top_k``, ``top_p`` from the config, TRL's meaning);
  the teacher decodes *greedily* for ``seq_kd`` (sequence-level KD distils the teacher's mode).
- Generation stops at the side's EOS and at its chat turn end (both: a dataset may mix plain and
  conversational rows), and after any ``stop_strings``; it pads with the collator's pad id. A
  response that stops at a string keeps it and has no EOS (``OnPolicyBatcher``'s rule for any
  stop other than the EOS).
- Prompts are left-padded, so every row's response starts at the same column.
- The model is put in eval mode for generation and restored afterwards (dropout off while
  sampling; the training mode is the caller's business).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from dskd_align.torch.onpolicy import prompt_of

__all__ = ["generate", "left_padded", "seq_kd_rows"]


def left_padded(ids: list[list[int]], pad: int, device: Any) -> dict[str, Tensor]:
    """``input_ids``/``attention_mask`` ``[B, max_len]`` long, each row right-aligned."""
    width = max((len(i) for i in ids), default=0)
    out = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for b, i in enumerate(ids):
        if i:
            out[b, width - len(i) :], mask[b, width - len(i) :] = torch.tensor(i), 1
    return {"input_ids": out.to(device), "attention_mask": mask.to(device)}


def generate(
    model: nn.Module, inputs: dict[str, Tensor], collator: Any, side: str, args: Any
) -> Tensor:
    """``model.generate`` output ``[B, L_prompt + L_new]`` for ``side`` ("student" samples,
    "teacher" decodes greedily); ``args`` a DSKDConfig."""
    tok = getattr(collator, f"{side}_tokenizer")
    sample = side == "student"
    kw: dict[str, Any] = {"max_new_tokens": args.max_new_tokens, "do_sample": sample}
    if sample:
        kw.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    if args.stop_strings:  # matched on decoded text, so generate needs the tokenizer
        kw.update(stop_strings=list(args.stop_strings), tokenizer=tok)
    ends = {collator.eos.get(side), collator.turn_end.get(side), getattr(tok, "eos_token_id", None)}
    eos = sorted(int(e) for e in ends if e is not None) or None
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model.generate(
            **inputs, **kw, pad_token_id=collator.specs[side].pad_id, eos_token_id=eos
        )
    model.train(was_training)
    return out


def seq_kd_rows(
    teacher: nn.Module, collator: Any, rows: list[Any], args: Any
) -> list[dict[str, Any]]:
    """Rows whose responses are the teacher's greedy generations (the prompts kept)."""
    prompts = [prompt_of(r) for r in rows]
    ids = collator.prompt_ids("teacher", prompts)
    gen_in = left_padded(ids, collator.specs["teacher"].pad_id, args.device)
    out = generate(teacher, gen_in, collator, "teacher", args)[:, gen_in["input_ids"].shape[1] :]
    texts = collator.teacher_tokenizer.batch_decode(out, skip_special_tokens=True)
    return [{"prompt": p, "response": t} for p, t in zip(prompts, texts, strict=True)]
