"""Run by ``torchrun`` from ``test_distributed.py`` (not a test module itself): trains the tiny
student saved in ``DIR`` for a few steps with ``DSKDTrainer`` on the CPU (gloo) and writes the
student's and the projectors' final tensors to ``DIR/<out>.pt`` from rank 0.

Usage: ``torchrun --standalone --nproc_per_node N ddp_worker.py DIR OUT PER_DEVICE_BATCH LOSS
[fsdp]`` (``fsdp``: FSDP2 ``fully_shard`` instead of DDP).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dskd_align.distill_cli import _leave_process_group
from dskd_align.torch import DSKDConfig, DSKDTrainer


def main() -> None:
    root, out, per_device, loss = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
    fsdp = len(sys.argv) > 5 and sys.argv[5] == "fsdp"
    extra = {}
    if fsdp:  # FSDP2 (fully_shard) over the decoder layers and the root, on the CPU
        extra = {
            "fsdp": "full_shard",
            "fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]},
        }
    torch.set_num_threads(1)
    rows = json.loads((root / "rows.json").read_text())
    args = DSKDConfig(
        output_dir=str(root / f"run-{out}"),
        loss=loss,
        per_device_train_batch_size=per_device,
        max_steps=3,
        learning_rate=0.5,
        optim="sgd",  # Adam's first steps are ~sign(g): too sensitive to float32 summation order
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        save_strategy="no",
        logging_steps=1,
        max_length=64,
        seed=0,
        use_cpu=True,
        ddp_backend="gloo",
        disable_tqdm=True,
        report_to="none",
        **extra,
    )
    trainer = DSKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(root / "student"),
        teacher_model=AutoModelForCausalLM.from_pretrained(root / "teacher"),
        args=args,
        train_dataset=rows,
        processing_class=AutoTokenizer.from_pretrained(root / "student"),
        teacher_processing_class=AutoTokenizer.from_pretrained(root / "teacher"),
    )
    trainer.train()
    full = trainer.model.state_dict()  # FSDP2: DTensor shards, gathered on every rank
    full = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in full.items()}
    if trainer.args.process_index == 0:
        state = {f"student.{k}": v for k, v in full.items()}
        state.update({f"loss.{k}": v for k, v in trainer.loss_module.state_dict().items()})
        torch.save({k: v.detach().cpu() for k, v in state.items()}, root / f"{out}.pt")
    # Leave the group before exit, with `dskd-align distill`'s own helper: a gloo rank that exits
    # with it alive can abort in teardown (SIGABRT; seen once in CI on the FSDP launch).
    _leave_process_group()


if __name__ == "__main__":
    main()
