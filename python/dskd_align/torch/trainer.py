"""``DSKDTrainer``: a ``transformers.Trainer`` that distills a teacher into a student.

It reads like TRL's ``GKDTrainer``: ``DSKDTrainer(model=student, teacher_model=teacher,
args=DSKDConfig(...), train_dataset=rows, processing_class=student_tokenizer,
teacher_processing_class=teacher_tokenizer)``, then ``trainer.train()``. The two tokenizers may
differ (exact token alignment pairs the positions) or be the same (identity pairs).

What it does on top of ``Trainer``, and why:

- **Data.** Rows in any format :func:`~dskd_align.torch.data.split_row` reads go through a
  :class:`~dskd_align.torch.DSKDCollator` built from the config (``max_length``...); the batch is
  moved with ``DSKDBatch.to`` (never rebuilt field by field). The raw rows ride along in the
  batch dict for on-policy steps.
- **Teacher.** Moved to the student's device and dtype, ``eval()`` and frozen; it runs its base
  model only (``model.base_model``), so no ``[B, L, V_t]`` logits are built: the loss forms the
  logits it needs in row chunks from the last hidden states and the head weight.
- **Student.** Called through the (possibly DDP-wrapped) model with ``output_hidden_states`` and
  ``logits_to_keep=1``, so DDP's gradient hooks run and the full-vocabulary logits are not built.
- **Loss.** :func:`~dskd_align.torch.objectives.build_loss` by ``args.loss``. Its trainable
  parameters (projectors) get their own optimizer group (``projector_lr``, no weight decay) and
  are saved as ``dskd_loss.pt`` beside every checkpoint and the final model, and restored on
  resume. Under DDP their gradients are averaged across ranks by hand (they live outside the
  DDP-wrapped student). Under FSDP2 the student's head is a DTensor shard outside the forward;
  it is gathered (differentiably) before the loss. FSDP1 and ZeRO-3 are refused (flat shards).
- **On-policy** (``lmbda``): a batch's responses are sampled from the student and rebuilt by
  :class:`~dskd_align.torch.OnPolicyBatcher`; the KD part is scored on them and the gold
  cross-entropy stays on the gold batch (DSKD.md). ``seq_kd``: the teacher's greedy generations
  replace the gold responses first (sequence-level KD). Generation settings: ``generation.py``.
- **Logging.** Every metric the loss returns (terms, ``n_aligned``, ``agreement``, coverage) is
  averaged over the logging window and logged through the Trainer (rank 0's view under DDP).

DDP semantics: each rank normalizes its terms over its own rows and DDP averages the gradients,
as ``Trainer`` does for a plain causal LM without ``average_tokens_across_devices``; a run equals
a single-process run on the global batch when the ranks' term counts are equal (the test checks
that case to float32 precision with exact-pair KD). DSKD's student-space term is normalized by
|G|, a count that depends on the models, so under DDP it is a per-rank mean of that term.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback

from dskd_align.torch.branch import branch_part, teacher_hidden_with_branches
from dskd_align.torch.byte_tables import ByteTables
from dskd_align.torch.byte_targets import ByteKDCollator
from dskd_align.torch.collate import DSKDCollator
from dskd_align.torch.config import DSKDConfig
from dskd_align.torch.data import DSKDBatch
from dskd_align.torch.generation import generate, seq_kd_rows
from dskd_align.torch.losses import gold_cross_entropy
from dskd_align.torch.objectives import build_loss
from dskd_align.torch.onpolicy import OnPolicyBatcher
from dskd_align.torch.set_tables import SetTables
from dskd_align.torch.vocab import VocabMap

__all__ = ["LOSS_STATE_FILE", "DSKDTrainer"]

LOSS_STATE_FILE = "dskd_loss.pt"


def _head(model: nn.Module, name: str) -> nn.Module:
    """The output head (an ``nn.Linear``-like with ``weight [V, d]``; a bias, as Phi's, is fine)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or not isinstance(getattr(head, "weight", None), Tensor):
        raise ValueError(
            f"the {name} model has no output embedding (lm_head) with a weight; the trainer "
            "needs a causal LM (AutoModelForCausalLM)"
        )
    return head


def _full(t: Tensor) -> Tensor:
    """A whole parameter: FSDP2 keeps a shard (a DTensor) outside the forward pass; gathering it
    is differentiable, so the gradient flows back to the shards (every rank calls this)."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def _load(model: Any, what: str) -> Any:
    if isinstance(model, str):
        return AutoModelForCausalLM.from_pretrained(model)
    if model is None:
        raise ValueError(f"{what} is required (a model or a local folder to load it from)")
    return model


def _tokenizer(tok: Any) -> Any:
    tok = AutoTokenizer.from_pretrained(tok) if isinstance(tok, str) else tok
    if getattr(tok, "pad_token_id", None) is None and getattr(tok, "eos_token", None) is not None:
        tok.pad_token = tok.eos_token  # padding is masked out; any id will do
    return tok


def _disable_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0


def last_hidden(model: nn.Module, inputs: Mapping[str, Tensor], base: bool) -> Tensor:
    """Last hidden states ``[B, L, d]`` of a causal LM. ``base``: call ``model.base_model`` (no
    head at all; not for a DDP-wrapped student, whose forward must run for gradient sync)."""
    if base and getattr(model, "base_model", model) is not model:
        return model.base_model(**inputs, use_cache=False).last_hidden_state
    kw = {"output_hidden_states": True, "use_cache": False, "return_dict": True}
    try:
        out = model(**inputs, **kw, logits_to_keep=1)  # skip [B, L, V] logits
    except TypeError:  # a model without logits_to_keep
        out = model(**inputs, **kw)
    return out.hidden_states[-1]


class _RowsCollator:
    """The distillation collator's batch plus the raw rows (for on-policy generation)."""

    def __init__(self, collator: DSKDCollator) -> None:
        self.collator = collator

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return {"batch": self.collator(rows), "rows": list(rows)}


class _ZeroLossGrads(TrainerCallback):
    """The Trainer zeroes the model's gradients after each optimizer step, not those of parameters
    outside the model: without this the projectors' gradients would pile up across steps."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.module.zero_grad(set_to_none=True)


class DSKDTrainer(Trainer):
    """Knowledge distillation with exact token alignment (module notes: what and why).

    ``model``: the student (``PreTrainedModel`` or a local folder); ``teacher_model``: the teacher
    (or ``args.teacher_model_name_or_path``); ``processing_class``: the student's tokenizer;
    ``teacher_processing_class``: the teacher's (None: the student's); ``vocab_map``: a prebuilt
    :class:`VocabMap` (None: built from the tokenizers and the heads' row counts);
    ``data_collator``: a :class:`DSKDCollator` to use instead of the one built from ``args``.
    """

    def __init__(
        self,
        model: Any = None,
        teacher_model: Any = None,
        args: DSKDConfig | None = None,
        data_collator: DSKDCollator | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        teacher_processing_class: Any = None,
        vocab_map: VocabMap | None = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else DSKDConfig(output_dir="dskd-output")
        if not isinstance(args, DSKDConfig):
            raise TypeError(f"args must be a DSKDConfig, got {type(args).__name__}")
        model = _load(model, "model (the student)")
        teacher_model = _load(teacher_model or args.teacher_model_name_or_path, "teacher_model")
        if processing_class is None:
            raise ValueError("processing_class (the student's tokenizer) is required")
        s_tok = _tokenizer(processing_class)
        t_tok = _tokenizer(teacher_processing_class) if teacher_processing_class else s_tok
        s_head, t_head = _head(model, "student"), _head(teacher_model, "teacher")
        collator = data_collator or DSKDCollator(
            t_tok,
            s_tok,
            max_length=args.max_length,
            teacher_max_length=args.teacher_max_length,
            use_chat_template=args.use_chat_template,
            tokenize_jointly=args.tokenize_jointly,
        )
        if vocab_map is None and not collator.same_tokenizer:
            # Sized to the heads (checked against the tokenizers, with the fix in the error);
            # the two sides' end tokens (EOS, chat turn ends) are linked as one pair.
            vocab_map = VocabMap.for_models(
                t_tok, s_tok, teacher_model, model, special_pairs=collator.special_pairs
            )
        elif vocab_map is not None:
            vocab_map.check_models(teacher_model, model)
        if args.disable_dropout:
            _disable_dropout(model)
        options = dict(args.loss_kwargs or {})
        if args.tau is not None:
            options["tau"] = args.tau
        vocab: Any = None if collator.same_tokenizer else vocab_map
        batches: Any = collator
        if args.loss in ("byte_kd", "byte_sets"):
            # byte_kd/byte_sets read the pair's byte tables (built once here) and their batches
            # carry their targets, built by the collator (in the DataLoader workers), not in
            # the step.
            pairs = collator.special_pairs
            vmap = vocab_map or VocabMap.for_models(
                t_tok, s_tok, teacher_model, model, special_pairs=pairs
            )
            vocab = (SetTables if args.loss == "byte_sets" else ByteTables)(t_tok, s_tok, vmap)
            batches = ByteKDCollator(collator, vocab)
        self.loss_module = build_loss(
            args.loss,
            t_head.weight.detach().float(),
            s_head.weight.detach().float(),
            vocab,
            alpha=args.alpha,
            divergence=args.divergence,
            chunk_size=args.loss_chunk_size,
            **options,
        )
        super().__init__(
            model=model,
            args=args,
            data_collator=_RowsCollator(batches),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=s_tok,
            **kwargs,
        )
        self._refuse_sharded_heads()
        dtype = next(model.parameters()).dtype
        self.teacher = teacher_model.to(device=self.args.device, dtype=dtype).eval()
        self.teacher.requires_grad_(False)
        self.loss_module.to(self.args.device)
        self.add_callback(_ZeroLossGrads(self.loss_module))
        self.collator, self.vocab_map = collator, vocab_map
        self.onpolicy = OnPolicyBatcher(collator)
        self.needs_teacher = args.loss != "sft" or args.seq_kd
        self._metrics: dict[str, dict[str, list[Tensor]]] = {
            "train": defaultdict(list),
            "eval": defaultdict(list),
        }

    def _refuse_sharded_heads(self) -> None:
        """The losses read ``lm_head.weight`` outside the model's forward. FSDP2 hands it out as
        a DTensor that :func:`_full` gathers; FSDP1 and ZeRO-3 hand out a flat shard there, which
        would give wrong shapes or silently wrong logits."""
        ds = getattr(self.accelerator.state, "deepspeed_plugin", None)
        zero3 = self.is_deepspeed_enabled and getattr(ds, "zero_stage", 0) == 3
        fsdp = getattr(self.accelerator.state, "fsdp_plugin", None)
        fsdp1 = self.is_fsdp_enabled and getattr(fsdp, "fsdp_version", 1) != 2
        if fsdp1 or zero3:
            raise ValueError(
                "DSKDTrainer needs whole lm_head weights outside the forward pass: FSDP1 and "
                "DeepSpeed ZeRO-3 keep flat shards there. Use FSDP2 (fsdp_config={'version': "
                "2}), DDP (torchrun) or DeepSpeed ZeRO-1/2"
            )

    # ---- optimizer: the loss's projectors get their own group ----
    def create_optimizer(self, model: Any = None) -> Any:
        opt = super().create_optimizer(model) if model is not None else super().create_optimizer()
        params = [p for p in self.loss_module.parameters() if p.requires_grad]
        known = {id(p) for g in opt.param_groups for p in g["params"]}
        if params and not any(id(p) in known for p in params):
            opt.add_param_group(
                {"params": params, "lr": self.args.projector_lr, "weight_decay": 0.0}
            )
        return opt

    # ---- batches ----
    def _prepare_inputs(self, inputs: Any) -> Any:
        device = self.args.device
        out = dict(inputs)
        for key in ("batch", "gold"):
            if isinstance(out.get(key), DSKDBatch):
                out[key] = out[key].to(device)
        return out

    def training_step(
        self, model: nn.Module, inputs: Any, num_items_in_batch: Any = None
    ) -> Tensor:
        rows = inputs.get("rows")
        if rows is not None and self.args.seq_kd:
            rows = seq_kd_rows(self.teacher, self.collator, rows, self.args)
            inputs = {"batch": self.collator(rows), "rows": rows}
        if rows is not None and self.args.lmbda > 0 and random.random() < self.args.lmbda:
            student = self.accelerator.unwrap_model(model)
            gen_in = {
                k: v.to(self.args.device) for k, v in self.onpolicy.generation_inputs(rows).items()
            }
            out = generate(student, gen_in, self.collator, "student", self.args)
            plen = gen_in["input_ids"].shape[1]
            batch = self.onpolicy(rows, out.cpu(), plen, gen_in["attention_mask"].cpu())
            inputs = {"batch": batch, "gold": inputs["batch"], "rows": rows}
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1:
            self._average_loss_grads()
        return loss

    def _average_loss_grads(self) -> None:
        """The projectors live outside DDP: average their gradients across ranks by hand."""
        world = torch.distributed.get_world_size()
        for p in self.loss_module.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:  # every rank must join each collective, used or not
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world)

    # ---- loss ----
    def compute_loss(
        self,
        model: nn.Module,
        inputs: Any,
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        batch: DSKDBatch = inputs["batch"]
        h_s = last_hidden(model, batch.side("student"), base=False)
        s_head = _head(self.accelerator.unwrap_model(model), "student")
        t_head = _head(self.teacher, "teacher")
        W_s, W_t = _full(s_head.weight), t_head.weight
        biases = {
            f"{side}_lm_head_bias": _full(head.bias)
            for side, head in (("student", s_head), ("teacher", t_head))
            if getattr(head, "bias", None) is not None
        }
        h_t = None
        branch = branch_part(self.loss_module) if self.needs_teacher else None
        if branch is not None:  # byte_sets(branch=True): gold and branch states, one forward
            fields = branch.targets(batch, batch.teacher_input_ids.device)
            h_t = teacher_hidden_with_branches(self.teacher, batch, fields)
        elif self.needs_teacher:
            with torch.no_grad():
                h_t = last_hidden(self.teacher, batch.side("teacher"), base=True)
        loss, metrics = self.loss_module.forward_batch(batch, h_s, h_t, W_s, W_t, **biases)
        gold = inputs.get("gold")
        if gold is not None:
            # On-policy: the KD part from the student's samples, gold CE from the gold batch.
            h_g = last_hidden(model, gold.side("student"), base=False)
            b_s = biases.get("student_lm_head_bias")
            ce_gold, _ = gold_cross_entropy(
                h_g, W_s, gold.student_labels, self.args.loss_chunk_size, b_s
            )
            loss = loss + (1.0 - self.args.alpha) * (ce_gold - metrics["ce_gold"])
            metrics = {**metrics, "loss": loss.detach(), "ce_gold": ce_gold.detach()}
            metrics["on_policy"] = torch.ones((), device=loss.device)
        elif self.args.lmbda > 0:
            metrics["on_policy"] = torch.zeros((), device=loss.device)
        metrics["student_tokens"] = batch.student_attention_mask.sum()
        if "supervised_tokens" in batch:
            metrics["unsupervised_rows"] = (batch["supervised_tokens"] == 0).sum()
        mode = "train" if model.training else "eval"
        for k, v in metrics.items():
            self._metrics[mode][k].append(v.detach().float())
        return (loss, None) if return_outputs else loss

    def prediction_step(
        self, model: nn.Module, inputs: Any, prediction_loss_only: bool, ignore_keys: Any = None
    ) -> tuple[Tensor, None, None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        mode = "eval" if any(k.startswith("eval_") for k in logs) else "train"
        prefix = "eval_" if mode == "eval" else ""
        for k, vals in self._metrics[mode].items():
            if k != "loss":  # the Trainer logs its own loss (averaged the same way)
                logs[prefix + k] = round(torch.stack(vals).mean().item(), 6)
        self._metrics[mode].clear()
        super().log(logs, *args, **kwargs)

    # ---- checkpoints: the projectors travel with the model ----
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        state = self.loss_module.state_dict()
        if state and self.args.should_save:
            out = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(out, exist_ok=True)
            torch.save(
                {k: v.detach().cpu() for k, v in state.items()}, os.path.join(out, LOSS_STATE_FILE)
            )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, LOSS_STATE_FILE)
        if os.path.isfile(path):
            state = torch.load(path, map_location=self.args.device, weights_only=True)
            self.loss_module.load_state_dict(state)
