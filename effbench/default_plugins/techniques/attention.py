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

import inspect
from typing import Annotated, Any, Literal

from pydantic import Field

from effbench.api.technique import Technique
from effbench.errors import EffbenchError, NotApplicable
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
        if model.config._attn_implementation == implementation:
            raise NotApplicable(f"the model runs {implementation} attention already; compare the other implementation")
        _set_attention(model, implementation)
        return model


def _set_attention(model: Any, implementation: str) -> None:
    """Switch the attention implementation; a family without it (Gemma 2 has no SDPA) is not applicable."""
    try:
        model.set_attn_implementation(implementation)
    except ValueError as err:
        raise NotApplicable(str(err).split(". ")[0]) from None


def _sliding_window_mask(*, mask_function: Any, config: Any, **kwargs: Any) -> Any:
    """transformers' SDPA mask with a band of ``config.sliding_window`` positions on top of causality."""
    from transformers.masking_utils import and_masks, sdpa_mask, sliding_window_overlay

    window = config.sliding_window
    band = and_masks(mask_function, sliding_window_overlay(window))
    kwargs.pop("local_size", None)  # given for a family's own sliding layers (Mistral, Gemma): ours is the band
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
        for module in model.modules():
            if hasattr(module, "has_sliding_layers"):  # Qwen2/3 build a sliding mask only when told at init
                module.has_sliding_layers = True
        _set_attention(model, SLIDING_WINDOW_ATTENTION)
        if not _window_reaches_every_block(model, window):
            raise NotApplicable(f"{type(model).__name__} does not pass a sliding-window mask to its attention blocks")
        return model


def _window_reaches_every_block(model: Any, window: int) -> bool:
    """Whether every block receives a mask hiding, from the last of ``window + 1`` tokens, the first one."""
    import torch

    masks: list[Any] = []
    blocks = decoder_layers(model)

    def record(block: Any, args: tuple, kwargs: dict) -> None:
        bound = inspect.signature(block.forward).bind_partial(*args, **kwargs).arguments
        masks.append(bound.get("attention_mask"))  # GPT-2 passes it by position

    hooks = [block.register_forward_pre_hook(record, with_kwargs=True) for block in blocks]
    try:
        with torch.no_grad():
            model(torch.zeros((1, window + 1), dtype=torch.long, device=model.device))
    finally:
        for hook in hooks:
            hook.remove()
    return len(masks) == len(blocks) and all(_hides_first_from_last(mask) for mask in masks)


def _hides_first_from_last(mask: Any) -> bool:
    """A 4-D mask (boolean: True attends; float: 0 attends) where the last query sees itself, not the first."""
    import torch

    if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
        return False
    first, own = mask[..., -1, 0], mask[..., -1, -1]
    if mask.dtype == torch.bool:
        return bool((~first).all() and own.all())
    return bool((first < 0).all() and (own == 0).all())


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
        import torch._dynamo

        torch._dynamo.reset()  # compile afresh: graphs cached by an earlier run in this process would hide the cost
        graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        model.compile(mode=mode, dynamic=True)
        brief_generation(model, tokenizer)  # compiles the prefill and the decode step
        if torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs:
            raise EffbenchError(f"torch.compile captured no graph of {type(model).__name__}: it would run eagerly")
        return model


def brief_generation(model: Any, tokenizer: Any, **generate_kwargs: Any) -> Any:
    """One short greedy generation from a fixed micro-world prompt, paid inside ``apply`` (warm-ups, effect checks)."""
    import torch

    from effbench.measure.scenarios import prompts

    input_ids = torch.tensor(prompts(tokenizer, 1, 16), device=model.device)
    with torch.inference_mode():
        return model.generate(
            input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=4, do_sample=False,
            return_dict_in_generate=True, **generate_kwargs,
        )  # fmt: skip


def check_cache(technique: Technique, model: Any, tokenizer: Any, expected: str) -> None:
    """Raise unless generating with the technique's arguments keeps the KV cache in an ``expected`` cache object."""
    cache = brief_generation(model, tokenizer, **technique.generation_kwargs(model, tokenizer)).past_key_values
    if type(cache).__name__ != expected:
        raise NotApplicable(f"{type(model).__name__} generated with a {type(cache).__name__}, not a {expected}")


class StaticCache(Technique):
    """Pre-allocate the KV cache at its final size: fixed shapes, no re-allocation while decoding."""

    name = "static-cache"
    stage = "system"
    resources = ("computation",)
    description = "transformers' static KV cache for every generation (fixed shapes; what CUDA graphs need)."
    references = ("https://huggingface.co/docs/transformers/kv_cache",)

    def apply(self, model: Any, tokenizer: Any) -> Any:
        check_cache(self, model, tokenizer, "StaticCache")
        return model

    def generation_kwargs(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"cache_implementation": "static"}


@hookimpl
def register_techniques(register):
    for technique in (Attention(), SlidingWindow(), Compile(), StaticCache()):
        register(technique)
