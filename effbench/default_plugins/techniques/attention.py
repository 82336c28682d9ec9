"""Builtin attention and compilation techniques: attention kernel, sliding window, torch.compile, static cache.

Stages: choosing the attention kernel, compiling and pre-allocating the cache change how the same
computation is executed, not what is computed, so they are ``system`` techniques (the survey puts
compilation there). A sliding window changes what the model attends to and is applied to a
trained model at inference time, so it is ``inference``.

Llama ignores ``config.sliding_window``: its causal mask is always full. ``sliding-window`` therefore
registers its own attention implementation with transformers (``AttentionInterface`` and
``AttentionMaskInterface``): SDPA attention with the causal mask ANDed with a band of ``window``
positions. It also declares every layer ``sliding_attention``, so transformers' ``DynamicCache`` keeps
only the last ``window - 1`` keys and values of every layer: the KV cache really stops growing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from effbench.api.technique import Technique
from effbench.hookspecs import hookimpl
from effbench.modeling import decoder_layers

SLIDING_WINDOW_ATTENTION = "effbench_sliding_window_sdpa"


class Attention(Technique):
    """Run attention through the eager reference code or PyTorch's fused scaled-dot-product kernel."""

    name = "attention"
    stage = "system"
    resources = ("computation", "memory")
    description = "Attention implementation: eager (materialised attention matrix) or sdpa (fused kernel)."
    references = ("https://arxiv.org/abs/2205.14135",)

    def apply(self, model: Any, tokenizer: Any, *, implementation: Literal["eager", "sdpa"] = "sdpa") -> Any:
        model.set_attn_implementation(implementation)
        return model


def _sliding_window_mask(*, mask_function: Any, config: Any, **kwargs: Any) -> Any:
    """transformers' SDPA mask with a band of ``config.sliding_window`` positions on top of causality."""
    from transformers.masking_utils import and_masks, sdpa_mask, sliding_window_overlay

    window = config.sliding_window
    band = and_masks(mask_function, sliding_window_overlay(window))
    return sdpa_mask(mask_function=band, local_size=window, config=config, **kwargs)


def _register_sliding_window_attention() -> None:
    """Make ``SLIDING_WINDOW_ATTENTION`` a valid ``attn_implementation`` (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    AttentionInterface.register(SLIDING_WINDOW_ATTENTION, ALL_ATTENTION_FUNCTIONS["sdpa"])
    AttentionMaskInterface.register(SLIDING_WINDOW_ATTENTION, _sliding_window_mask)


class SlidingWindow(Technique):
    """Each token attends only to the last ``window`` positions, and the KV cache keeps only those."""

    name = "sliding-window"
    stage = "inference"
    resources = ("memory", "computation")
    description = "Sliding-window attention: attend to the last `window` tokens only; bounded KV cache."
    references = ("https://arxiv.org/abs/2004.05150", "https://arxiv.org/abs/2310.06825")

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        window: Annotated[int, Field(ge=2, description="positions each token attends to, itself included")] = 32,
    ) -> Any:
        _register_sliding_window_attention()
        model.config.sliding_window = window
        model.config.layer_types = ["sliding_attention"] * len(decoder_layers(model))
        model.set_attn_implementation(SLIDING_WINDOW_ATTENTION)
        return model


class Compile(Technique):
    """Compile the forward pass with torch.compile; the one-off compile time is reported on its own."""

    name = "compile"
    stage = "system"
    resources = ("computation", "energy")
    description = (
        "torch.compile of the model's forward (dynamic shapes), warmed up in apply, so the one-off "
        "compile time is the run's apply_time and steady-state latency excludes it."
    )
    references = ("https://pytorch.org/docs/stable/torch.compiler.html",)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        mode: Literal["default", "reduce-overhead", "max-autotune"] = "default",
    ) -> Any:
        model.compile(mode=mode, dynamic=True)
        _warm_up(model, tokenizer)  # compiles the prefill and the decode step
        return model


def _warm_up(model: Any, tokenizer: Any) -> None:
    """One short greedy generation from a fixed micro-world prompt, paid inside ``apply``."""
    import torch

    from effbench.measure.scenarios import prompts

    input_ids = torch.tensor(prompts(tokenizer, 1, 16), device=model.device)
    with torch.inference_mode():
        model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=4, do_sample=False)


class StaticCache(Technique):
    """Pre-allocate the KV cache at its final size: fixed shapes, no re-allocation while decoding."""

    name = "static-cache"
    stage = "system"
    resources = ("computation",)
    description = "transformers' static KV cache for every generation (fixed shapes; what CUDA graphs need)."
    references = ("https://huggingface.co/docs/transformers/kv_cache",)

    def generation_kwargs(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"cache_implementation": "static"}


@hookimpl
def register_techniques(register):
    for technique in (Attention(), SlidingWindow(), Compile(), StaticCache()):
        register(technique)
