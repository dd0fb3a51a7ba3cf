"""Tiny randomly initialised models of the architectures the course supports (built offline from config), and random
bottleneck adapters."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    OPTConfig,
    Qwen2Config,
)

TINY_CONFIGS = {
    "opt": lambda: OPTConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, ffn_dim=128, num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=256),
    "llama": lambda: LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "qwen2": lambda: Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "gpt2": lambda: GPT2Config(vocab_size=512, n_embd=64, n_layer=2, n_head=4, n_positions=256),
    "gpt_neox": lambda: GPTNeoXConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
}

#: facebook/opt-350m's shape (from its config.json), for parameter counts without downloading it.
OPT_350M = dict(
    vocab_size=50272, hidden_size=1024, num_hidden_layers=24, ffn_dim=4096, num_attention_heads=16,
    word_embed_proj_dim=512, do_layer_norm_before=False, max_position_embeddings=2048,
)


def tiny_model(arch: str, seed: int = 0, **overrides):
    """A seeded tiny model; ``overrides`` change config fields (e.g. ``vocab_size=49152`` for the embedded tokenizer)."""
    torch.manual_seed(seed)
    config = TINY_CONFIGS[arch]()
    for key, value in overrides.items():
        setattr(config, key, value)
    return AutoModelForCausalLM.from_config(config)


def save_tiny(arch: str, folder: Path, tokenizer, **overrides) -> Path:
    """Save a tiny model (with the embedded tokenizer, ids clipped to its vocab unless ``vocab_size`` is given) as a local model folder."""
    model = tiny_model(arch, **overrides)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def randomize_adapters(model: torch.nn.Module) -> None:
    """Give every bottleneck adapter's up-projection random values, as if trained (it starts at zero)."""
    from ftcourse.bottleneck import BottleneckAdapter

    for module in model.modules():
        if isinstance(module, BottleneckAdapter):
            torch.nn.init.normal_(module.up.weight, std=0.2)
            torch.nn.init.normal_(module.up.bias, std=0.2)
