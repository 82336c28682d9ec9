"""Builtin pruning techniques: unstructured magnitude, semi-structured N:M, structured heads/neurons, depth.

Structured pruning of attention heads keeps grouped-query attention consistent by removing
*query* heads only, the same number from every key/value group: the KV heads (and so the
KV cache) are untouched, and every group keeps ``num_attention_heads / num_key_value_heads``
query heads, which is what Llama-style attention assumes.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from effbench.api.technique import Technique
from effbench.hookspecs import hookimpl
from effbench.modeling import check_divides, decoder_layers, head_dim, linear_layers

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


class PruneMagnitude(Technique):
    """Zero the smallest-magnitude weights of the linear layers (unstructured sparsity)."""

    name = "prune-magnitude"
    stage = "inference"
    resources = ("memory", "computation")
    description = "Unstructured magnitude pruning of linear layers, per layer or with one global threshold."
    references = ("https://arxiv.org/abs/1506.02626",)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        sparsity: Annotated[Fraction, Field(description="fraction of weights set to zero")] = 0.5,
        scope: Literal["layer", "global"] = "layer",
    ) -> Any:
        import torch

        weights = [layer.weight for _, layer in linear_layers(model)]
        with torch.no_grad():
            if scope == "global":
                threshold = _kth_smallest(torch.cat([w.abs().flatten() for w in weights]), sparsity)
                for weight in weights:
                    _zero_at_most(weight, threshold)
            else:
                for weight in weights:
                    _zero_at_most(weight, _kth_smallest(weight.abs().flatten(), sparsity))
        return model


def _kth_smallest(values: Any, fraction: float) -> Any:
    """The value below which ``fraction`` of ``values`` lie, or None when that is no value at all."""
    k = int(fraction * values.numel())
    return values.kthvalue(k).values if k else None


def _zero_at_most(weight: Any, threshold: Any) -> None:
    """Zero, in place, every weight whose magnitude is at most ``threshold`` (None: nothing to prune)."""
    if threshold is not None:
        weight.masked_fill_(weight.abs() <= threshold, 0.0)


class PruneNM(Technique):
    """Keep the ``n`` largest of every ``m`` consecutive weights of a row (2:4 runs on sparse tensor cores)."""

    name = "prune-nm"
    stage = "inference"
    resources = ("memory", "computation")
    description = "Semi-structured N:M magnitude pruning: n weights kept in every group of m along the input."
    references = ("https://arxiv.org/abs/2104.08378", "https://arxiv.org/abs/2102.04010")

    def preflight(self, config: Any, *, n: int, m: int) -> None:
        if n >= m:
            raise ValueError(f"parameter 'n': weights kept per group must be between 1 and m - 1 = {m - 1} (got {n})")
        check_divides("m", m, config)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        n: Annotated[int, Field(ge=1, description="weights kept in every group")] = 2,
        m: Annotated[int, Field(ge=2, description="group size along the input dimension")] = 4,
    ) -> Any:
        import torch

        self.preflight(model.config, n=n, m=m)
        with torch.no_grad():
            for _, layer in linear_layers(model):
                groups = layer.weight.view(layer.weight.shape[0], -1, m)
                drop = groups.abs().topk(m - n, dim=-1, largest=False).indices
                groups.scatter_(-1, drop, 0.0)
        return model


class PruneStructured(Technique):
    """Remove whole query heads and MLP neurons: the Linear tensors really shrink, and so do FLOPs."""

    name = "prune-structured"
    stage = "inference"
    resources = ("memory", "computation", "energy")
    description = (
        "Structured pruning: drop the lowest-norm query heads (equally in every KV group) and MLP neurons, "
        "shrinking the weight matrices and the config."
    )
    references = ("https://arxiv.org/abs/2305.11627", "https://arxiv.org/abs/1905.10650")

    def preflight(self, config: Any, *, heads: float, neurons: float) -> None:
        _removed_heads_per_group(config, heads)
        _removed_neurons(config, neurons)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        heads: Annotated[Fraction, Field(description="fraction of query heads removed (per KV group)")] = 0.5,
        neurons: Annotated[Fraction, Field(description="fraction of MLP neurons removed")] = 0.25,
    ) -> Any:
        import torch

        config = model.config
        per_group = _removed_heads_per_group(config, heads)
        drop_neurons = _removed_neurons(config, neurons)
        dim = head_dim(config)
        kv_heads = config.num_key_value_heads
        q_per_group = config.num_attention_heads // kv_heads
        with torch.no_grad():
            for block in decoder_layers(model):
                if per_group:
                    attn = block.self_attn
                    keep = _keep_heads(attn.q_proj.weight, attn.o_proj.weight, dim, kv_heads, q_per_group - per_group)
                    attn.q_proj = _select(attn.q_proj, keep, dim=0)
                    attn.o_proj = _select(attn.o_proj, keep, dim=1)
                    attn.num_key_value_groups = q_per_group - per_group
                if drop_neurons:
                    mlp = block.mlp
                    score = mlp.gate_proj.weight.norm(dim=1) * mlp.up_proj.weight.norm(dim=1)
                    score = score * mlp.down_proj.weight.norm(dim=0)
                    keep = score.topk(score.numel() - drop_neurons).indices.sort().values
                    mlp.gate_proj = _select(mlp.gate_proj, keep, dim=0)
                    mlp.up_proj = _select(mlp.up_proj, keep, dim=0)
                    mlp.down_proj = _select(mlp.down_proj, keep, dim=1)
                    mlp.intermediate_size = keep.numel()
        config.head_dim = dim  # no longer implied by hidden_size / num_attention_heads
        config.num_attention_heads = (q_per_group - per_group) * kv_heads
        config.intermediate_size -= drop_neurons
        return model


def _nearest(value: float) -> int:
    """Round half up (not to even), so 0.5 of 2 heads is 1 head."""
    return math.floor(value + 0.5)


def _removed_heads_per_group(config: Any, fraction: float) -> int:
    """Query heads removed from each KV group; fail when ``fraction`` rounds to none or to all of them."""
    per_group = config.num_attention_heads // config.num_key_value_heads
    removed = _nearest(fraction * per_group)
    if fraction and not 0 < removed < per_group:
        steps = ", ".join(f"{k / per_group:g}" for k in range(1, per_group))
        raise ValueError(
            f"parameter 'heads': {fraction} of the {per_group} query heads per KV group rounds to {removed} heads; "
            f"valid values for this model: 0 or about {steps or '(none: one query head per group)'}"
        )
    return removed


def _removed_neurons(config: Any, fraction: float) -> int:
    """MLP neurons removed from every block; fail when ``fraction`` rounds to all of them."""
    removed = _nearest(fraction * config.intermediate_size)
    if removed >= config.intermediate_size:
        raise ValueError(
            f"parameter 'neurons': {fraction} of {config.intermediate_size} neurons rounds to all of them; "
            f"valid range: 0 <= neurons < {(config.intermediate_size - 0.5) / config.intermediate_size:g}"
        )
    return removed


def _keep_heads(q_weight: Any, o_weight: Any, dim: int, kv_heads: int, keep_per_group: int) -> Any:
    """Row indices of q_proj (= column indices of o_proj) of the strongest query heads of every KV group."""
    import torch

    score = q_weight.view(-1, dim, q_weight.shape[1]).norm(dim=(1, 2))
    score = score * o_weight.view(o_weight.shape[0], -1, dim).norm(dim=(0, 2))
    groups = score.view(kv_heads, -1)
    best = groups.topk(keep_per_group, dim=1).indices.sort(dim=1).values
    heads = (best + torch.arange(kv_heads, device=best.device).unsqueeze(1) * groups.shape[1]).flatten()
    return (heads.unsqueeze(1) * dim + torch.arange(dim, device=best.device)).flatten()


def _select(linear: Any, index: Any, *, dim: int) -> Any:
    """A new Linear holding only the output rows (dim 0) or input columns (dim 1) in ``index``."""
    import torch

    weight = linear.weight.index_select(dim, index.to(linear.weight.device))
    out_features, in_features = weight.shape
    bias = linear.bias is not None
    new = torch.nn.Linear(in_features, out_features, bias=bias, device=weight.device, dtype=weight.dtype)
    new.weight.copy_(weight)
    if bias:
        new.bias.copy_(linear.bias[index] if dim == 0 else linear.bias)
    return new


class PruneDepth(Technique):
    """Drop whole decoder layers: parameters and FLOPs per token fall by the fraction dropped."""

    name = "prune-depth"
    stage = "inference"
    resources = ("memory", "computation", "energy")
    description = (
        "Depth pruning: remove `layers` consecutive decoder layers from `start` "
        "(default: the block just before the last layer)."
    )
    references = ("https://arxiv.org/abs/2403.17887", "https://arxiv.org/abs/2403.03853")

    def preflight(self, config: Any, *, layers: int, start: int | None) -> None:
        _dropped(config.num_hidden_layers, layers, start)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        layers: Annotated[int, Field(ge=1, description="decoder layers removed")] = 1,
        start: Annotated[int, Field(ge=0, description="index of the first removed layer")] | None = None,
    ) -> Any:
        import torch

        blocks = decoder_layers(model)
        dropped = _dropped(len(blocks), layers, start)
        kept = [block for i, block in enumerate(blocks) if i not in dropped]
        for index, block in enumerate(kept):
            block.self_attn.layer_idx = index  # the KV cache is indexed by position in the stack
        model.get_decoder().layers = torch.nn.ModuleList(kept)
        model.config.num_hidden_layers = len(kept)
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = [t for i, t in enumerate(model.config.layer_types) if i not in dropped]
        return model


def _dropped(total: int, layers: int, start: int | None) -> range:
    """The indices of the layers to drop; fail unless at least one layer is left and the block fits."""
    if layers >= total:
        raise ValueError(f"parameter 'layers': must be between 1 and {total - 1} (the model has {total}); got {layers}")
    first = total - 1 - layers if start is None else start
    if first + layers > total:
        raise ValueError(
            f"parameter 'start': must be between 0 and {total - layers} to drop {layers} of {total} layers; got {start}"
        )
    return range(first, first + layers)


@hookimpl
def register_techniques(register):
    for technique in (PruneMagnitude(), PruneNM(), PruneStructured(), PruneDepth()):
        register(technique)
