"""Tiny random-weight causal LMs built from configs (no downloads), shared by the trainer, CLI
and distributed tests: a GPT-2-style teacher and a Llama-style student whose model vocabularies
are a few rows larger than their tokenizers, as real checkpoints pad them."""

from __future__ import annotations

import torch
import transformers


def teacher_model(tok, seed: int = 0, d: int = 48) -> transformers.GPT2LMHeadModel:
    torch.manual_seed(seed)
    return transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=len(tok) + 8,
            n_positions=256,
            n_embd=d,
            n_layer=2,
            n_head=2,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
        )
    )


def student_model(tok, seed: int = 1, d: int = 32) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=len(tok) + 4,
            hidden_size=d,
            intermediate_size=2 * d,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=False,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
