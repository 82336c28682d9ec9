"""Tiny random-weight models of the common causal-LM families, built from transformers configs (no download).

They exercise every family's module structure and config conventions (GPT-2's ``Conv1D``, GPT-NeoX's
fused QKV, OPT's ``ffn_dim``, Phi-3's fused gate_up, Gemma's explicit head width, …) in seconds, with
the bundled micro-world tokenizer, so every technique can be tried on every family offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError
from effbench.reference import zoo

TOKENIZER_MODEL = "zoo:micro-m"
LAYERS, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, MLP = 4, 64, 4, 2, 16, 96
_LLAMA_LIKE = {
    "hidden_size": HIDDEN,
    "intermediate_size": MLP,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "max_position_embeddings": 512,
}
# family → (transformers config class name, its fields); grouped-query where the family has it
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", _LLAMA_LIKE),
    "mistral": ("MistralConfig", {**_LLAMA_LIKE, "sliding_window": None}),
    "qwen2": ("Qwen2Config", _LLAMA_LIKE),
    "qwen3": ("Qwen3Config", {**_LLAMA_LIKE, "head_dim": HEAD_DIM}),
    "phi3": ("Phi3Config", _LLAMA_LIKE),
    "gemma2": ("Gemma2Config", {**_LLAMA_LIKE, "head_dim": HEAD_DIM, "sliding_window": 16}),
    "gemma3": ("Gemma3TextConfig", {**_LLAMA_LIKE, "head_dim": HEAD_DIM, "sliding_window": 16}),
    "gpt2": ("GPT2Config", {"n_embd": HIDDEN, "n_layer": LAYERS, "n_head": HEADS, "n_positions": 512}),
    "gpt_neox": (
        "GPTNeoXConfig",
        {k: v for k, v in _LLAMA_LIKE.items() if k != "num_key_value_heads"},
    ),
    "opt": (
        "OPTConfig",
        {
            "hidden_size": HIDDEN,
            "ffn_dim": MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "max_position_embeddings": 512,
            "word_embed_proj_dim": HIDDEN,
        },
    ),
}


# Every builtin and first-party technique, with a second setting where it exercises another code path (the
# attention kernel other than the default, MLP-only structured pruning for fused-attention families).
TRIALS = (
    "attention:implementation=eager",
    "compile",
    "dtype",
    "dynamic-int8",
    "example-drop-last-layers",
    "kv-cache-quant",
    "prompt-lookup",
    "prune-depth",
    "prune-magnitude",
    "prune-nm",
    "prune-structured",
    "prune-structured:heads=0.0,neurons=0.25",
    "sliding-window:window=4",
    "speculative",
    "static-cache",
    "torchao-int4-weight",
    "torchao-int8-dynamic",
    "torchao-int8-weight",
)


# What a technique that changes the weights must show in its stored run-scope figures, as a ratio to the
# baseline's on the same model: the quantity, and the ratio it must stay below. The other techniques change
# how the model runs (kernels, caches, decoding), not what it stores; they check their effect in ``apply``.
STORED_EFFECTS: dict[str, tuple[str, float]] = {
    "dtype": ("weight_bytes", 0.55),
    "dynamic-int8": ("weight_bytes", 0.6),
    "example-drop-last-layers": ("parameters", 0.95),
    "prune-depth": ("parameters", 0.95),
    "prune-magnitude": ("parameters_nonzero", 0.75),
    "prune-nm": ("parameters_nonzero", 0.75),
    "prune-structured": ("parameters", 0.95),
    "torchao-int4-weight": ("weight_bytes", 0.6),
    "torchao-int8-dynamic": ("weight_bytes", 0.6),
    "torchao-int8-weight": ("weight_bytes", 0.6),
}


def build(family: str, seed: int = 0) -> tuple[Any, Any]:
    """A random-weight (model, tokenizer) of ``family``, sharing the bundled tokenizer's vocabulary and special ids."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if family not in FAMILIES:
        raise EffbenchError(f"unknown model family {family!r}; available: {', '.join(FAMILIES)}")
    tokenizer = AutoTokenizer.from_pretrained(zoo.resolve(TOKENIZER_MODEL))
    class_name, fields = FAMILIES[family]
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = getattr(transformers, class_name)(vocab_size=len(tokenizer), **special, **fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval(), tokenizer


def save(family: str, folder: Path, seed: int = 0) -> Path:
    """Write ``family``'s tiny model (safetensors) and tokenizer to ``folder``: a model directory effbench can load."""
    from effbench.reference.zoo.train import save_tokenizer

    model, tokenizer = build(family, seed)
    model.save_pretrained(folder)
    save_tokenizer(tokenizer, Path(folder))
    return folder
