"""Builtin quantization on the real micro-m: int8 weight bytes, and an fp8 KV cache used by generate."""

from pathlib import Path

import torch
from safetensors import safe_open

from effbench.modeling import linear_layers, tensor_bytes, weight_bytes
from effbench.reference.zoo import load, resolve
from tests.technique_helpers import applied, generation_kwargs, ids


def test_dynamic_int8_stores_quantized_layers_in_at_most_03_of_fp32_bytes():
    base, tokenizer = load("zoo:micro-m")
    targets = dict(linear_layers(base))
    model, _ = applied("dynamic-int8")
    modules = dict(model.named_modules())
    for name, original in targets.items():
        quantized = modules[name]
        weight, _ = quantized._packed_params._weight_bias()
        assert weight.dtype == torch.qint8, name
        assert tensor_bytes(weight) <= 0.3 * original.weight.numel() * 4, name
    assert weight_bytes(model) < 0.45 * weight_bytes(base)  # embeddings (tied with the head) stay fp32
    x = ids(tokenizer)
    with torch.no_grad():  # same function up to quantization error (per-tensor int8 weights and activations)
        quantized, exact = model(x).logits, base(x).logits
    assert float((quantized - exact).norm() / exact.norm()) < 0.25


def test_weight_bytes_counts_tied_weights_once():
    model, _ = load("zoo:micro-m")
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied: one tensor under two names
    with safe_open(Path(resolve("zoo:micro-m")) / "model.safetensors", "pt") as f:  # stores the tied tensor once
        stored = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())  # noqa: SIM118
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())  # rotary inv_freq: not saved
    assert weight_bytes(model) == stored + buffers


def test_kv_cache_quant_generates_with_an_fp8_cache():
    model, tokenizer = applied("kv-cache-quant")
    kwargs = generation_kwargs("kv-cache-quant", model, tokenizer)
    x = ids(tokenizer)
    with torch.inference_mode():
        out = model.generate(
            x, max_new_tokens=6, min_new_tokens=6, do_sample=False, return_dict_in_generate=True, **kwargs
        )
    cache = out.past_key_values
    assert type(cache).__name__ == "QuantizedCache"
    stored, _scale = cache.layers[0]._quantized_keys
    assert stored.dtype == torch.float8_e4m3fn
    assert stored.shape[-2] == x.shape[1] + 6 - 1  # every token but the last generated one is cached
    assert out.sequences.shape[1] == x.shape[1] + 6
