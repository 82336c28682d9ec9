"""Builtin pruning techniques: unstructured magnitude, semi-structured N:M, structured heads/neurons, depth.

They work from each model's module structure and config conventions, not from one family's attribute
names: the blocks are the model's list of decoder layers, the linear layers are whatever ``nn.Linear``
(or GPT-2 ``Conv1D``) the blocks hold, and the MLP's layers are told apart by their widths. Each one
checks that it acted (weights zeroed, tensors shrunk, layers dropped) and raises ``NotApplicable``
when it found nothing to act on.

Structured pruning of attention heads needs separate query, key and value projections. With
grouped-query attention it removes *query* heads only, the same number from every key/value group:
the KV heads (and so the KV cache) are untouched. With multi-head attention (one KV head per query
head: OPT, Llama-1/2) it removes whole heads from queries, keys and values alike.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field

from effbench.api.technique import Technique
from effbench.errors import NotApplicable
from effbench.hookspecs import hookimpl
from effbench.modeling import (
    check_divides,
    decoder_layers,
    head_dim,
    intermediate_size,
    kv_heads,
    linear_layers,
    replace_decoder_layers,
    set_intermediate_size,
)

Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


def _zeros(weights: list[Any]) -> int:
    """Zero entries over ``weights``: what a pruning technique must have raised."""
    return sum(int((w == 0).sum()) for w in weights)


def _block_weights(model: Any) -> list[Any]:
    """The blocks' linear weights; ``NotApplicable`` when the blocks hold none."""
    weights = [layer.weight for _, layer in linear_layers(model)]
    if not weights:
        raise NotApplicable(f"{type(model).__name__}'s decoder blocks hold no linear layer to prune")
    return weights


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
        sparsity: Annotated[float, Field(gt=0.0, lt=1.0, description="fraction of weights set to zero")] = 0.5,
        scope: Literal["layer", "global"] = "layer",
    ) -> Any:
        import torch

        weights = _block_weights(model)
        zeros = _zeros(weights)
        with torch.no_grad():
            if scope == "global":
                threshold = _kth_smallest(torch.cat([w.abs().flatten() for w in weights]), sparsity)
                for weight in weights:
                    _zero_at_most(weight, threshold)
            else:
                for weight in weights:
                    _zero_at_most(weight, _kth_smallest(weight.abs().flatten(), sparsity))
        if _zeros(weights) == zeros:
            raise NotApplicable(f"sparsity {sparsity} zeroes no further weight (the layers are that sparse already)")
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
        weights = _block_weights(model)
        zeros = _zeros(weights)
        with torch.no_grad():
            for weight in weights:
                groups = weight.view(weight.shape[0], -1, m)
                drop = groups.abs().topk(m - n, dim=-1, largest=False).indices
                groups.scatter_(-1, drop, 0.0)
        if _zeros(weights) == zeros:
            raise NotApplicable(f"the layers are {n}:{m} sparse already")
        return model


class PruneStructured(Technique):
    """Remove whole attention heads and MLP neurons: the Linear tensors really shrink, and so do FLOPs."""

    name = "prune-structured"
    stage = "inference"
    resources = ("memory", "computation", "energy")
    description = (
        "Structured pruning: drop the lowest-norm attention heads (query heads equally in every KV group "
        "under grouped-query attention) and MLP neurons, shrinking the weight matrices and the config."
    )
    references = ("https://arxiv.org/abs/2305.11627", "https://arxiv.org/abs/1905.10650")

    def preflight(self, config: Any, *, heads: float, neurons: float) -> None:
        if not heads and not neurons:
            raise ValueError("parameters 'heads' and 'neurons' are both 0, so nothing would be pruned; give one > 0")
        _removed_heads(config, heads)
        _removed_neurons(config, neurons)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        heads: Annotated[Fraction, Field(description="fraction of attention heads removed (per KV group)")] = 0.5,
        neurons: Annotated[Fraction, Field(description="fraction of MLP neurons removed")] = 0.25,
    ) -> Any:
        import torch

        self.preflight(model.config, heads=heads, neurons=neurons)
        config = model.config
        removed_heads, removed_neurons = _removed_heads(config, heads), _removed_neurons(config, neurons)
        shape = _HeadShape(config.num_attention_heads, kv_heads(config), head_dim(config))
        width = intermediate_size(config)
        linear_layers(model)  # GPT-2's Conv1D layers become nn.Linear: one code path prunes every family
        before = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            for block in decoder_layers(model):
                if removed_heads:
                    _prune_heads(_attention(model, block), shape, removed_heads)
                if removed_neurons:
                    _prune_neurons(model, block, width, removed_neurons)
        if removed_heads:
            config.head_dim = shape.dim  # no longer implied by hidden_size / num_attention_heads
            config.num_attention_heads -= removed_heads
            if shape.multi_head and getattr(config, "num_key_value_heads", None):
                config.num_key_value_heads -= removed_heads
        if removed_neurons:
            set_intermediate_size(config, width - removed_neurons)
        if sum(p.numel() for p in model.parameters()) >= before:
            raise NotApplicable("no weight tensor shrank")
        return model


class _HeadShape(NamedTuple):
    """The attention's head layout before pruning."""

    queries: int
    kv: int
    dim: int

    @property
    def multi_head(self) -> bool:
        """One key/value head per query head: pruning a head removes its keys and values too."""
        return self.kv == self.queries


def _nearest(value: float) -> int:
    """Round half up (not to even), so 0.5 of 2 heads is 1 head."""
    return math.floor(value + 0.5)


def _removed_heads(config: Any, fraction: float) -> int:
    """Query heads removed from every block (a multiple of the KV groups); fail when that is none or all."""
    queries, groups = config.num_attention_heads, kv_heads(config)
    per_group = queries // groups  # 1 under multi-head attention: then whole heads go, as one group
    unit = groups if per_group > 1 else 1
    among = per_group if per_group > 1 else queries
    removed = _nearest(fraction * among)
    if fraction and not 0 < removed < among:
        steps = ", ".join(f"{k / among:g}" for k in range(1, min(among, 9)))
        where = f"of the {per_group} query heads per KV group" if per_group > 1 else f"of the {queries} heads"
        raise ValueError(
            f"parameter 'heads': {fraction} {where} rounds to {removed} heads; "
            f"valid values for this model: 0 or about {steps or '(none)'}"
        )
    return removed * unit


def _removed_neurons(config: Any, fraction: float) -> int:
    """MLP neurons removed from every block; fail when ``fraction`` rounds to all of them."""
    width = intermediate_size(config)
    removed = _nearest(fraction * width)
    if removed >= width:
        raise ValueError(
            f"parameter 'neurons': {fraction} of {width} neurons rounds to all of them; "
            f"valid range: 0 <= neurons < {(width - 0.5) / width:g}"
        )
    return removed


def _attention(model: Any, block: Any) -> Any:
    """The block's attention with separate q/k/v projections; ``NotApplicable`` for a fused one."""
    for module in block.children():
        if all(hasattr(module, p) for p in ("q_proj", "k_proj", "v_proj")):
            return module
    raise NotApplicable(
        f"{type(model).__name__} computes queries, keys and values in one fused layer; structured head pruning "
        "needs separate q/k/v projections (heads=0 prunes MLP neurons only)"
    )


def _output_projection(attention: Any) -> str:
    """The name of the attention's output projection (``o_proj`` in Llama-likes, ``out_proj`` in OPT)."""
    return next(name for name in ("o_proj", "out_proj", "dense") if hasattr(attention, name))


def _prune_heads(attention: Any, shape: _HeadShape, removed: int) -> None:
    """Drop the ``removed`` weakest query heads (equally per KV group), or whole heads under multi-head attention."""
    out_name = _output_projection(attention)
    out = getattr(attention, out_name)
    keep_heads = shape.queries - removed
    keep = _keep_heads(attention.q_proj.weight, out.weight, shape, keep_heads)
    attention.q_proj = _select(attention.q_proj, keep, dim=0)
    setattr(attention, out_name, _select(out, keep, dim=1))
    if shape.multi_head:
        attention.k_proj = _select(attention.k_proj, keep, dim=0)
        attention.v_proj = _select(attention.v_proj, keep, dim=0)
    else:
        attention.num_key_value_groups = keep_heads // shape.kv
    for name, value in (("num_heads", keep_heads), ("num_attention_heads", keep_heads)):
        if hasattr(attention, name):  # OPT reshapes by its own head count
            setattr(attention, name, value)
    if shape.multi_head and hasattr(attention, "num_key_value_heads"):
        attention.num_key_value_heads = keep_heads


def _keep_heads(q_weight: Any, o_weight: Any, shape: _HeadShape, keep_heads: int) -> Any:
    """Row indices of the query projection (= column indices of the output projection) of the strongest heads.

    Under grouped-query attention every KV group keeps the same number of query heads.
    """
    import torch

    dim = shape.dim
    score = q_weight.view(-1, dim, q_weight.shape[1]).norm(dim=(1, 2))
    score = score * o_weight.view(o_weight.shape[0], -1, dim).norm(dim=(0, 2))
    groups = 1 if shape.multi_head else shape.kv
    scores = score.view(groups, -1)
    best = scores.topk(keep_heads // groups, dim=1).indices.sort(dim=1).values
    heads = (best + torch.arange(groups, device=best.device).unsqueeze(1) * scores.shape[1]).flatten()
    return (heads.unsqueeze(1) * dim + torch.arange(dim, device=best.device)).flatten()


def _prune_neurons(model: Any, block: Any, width: int, removed: int) -> None:
    """Drop the ``removed`` weakest MLP neurons; the MLP's layers are found by their widths, not their names.

    Its inputs are the layers ``width`` wide (up, and gate when gated) or one ``2 × width`` wide (Phi-3's
    fused gate_up, split in halves); its output is the one layer reading ``width`` inputs.
    """
    import torch

    linears = {name: m for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    outputs = [name for name, m in linears.items() if m.in_features == width]
    inputs = [name for name, m in linears.items() if m.out_features == width]
    fused = [name for name, m in linears.items() if m.out_features == 2 * width]
    if len(outputs) != 1 or not (1 <= len(inputs) <= 2 or (not inputs and len(fused) == 1)):
        raise NotApplicable(f"cannot tell {type(model).__name__}'s MLP layers apart by their widths")
    halves = 1 if inputs else 2
    score = linears[outputs[0]].weight.norm(dim=0)
    for name in inputs or fused:
        score = score * linears[name].weight.norm(dim=1).view(halves, width).prod(dim=0)
    keep = score.topk(width - removed).indices.sort().values
    rows = torch.cat([keep + half * width for half in range(halves)])
    for name in inputs or fused:
        _replace(block, name, _select(linears[name], rows, dim=0))
    _replace(block, outputs[0], _select(linears[outputs[0]], keep, dim=1))
    for module in block.modules():
        if hasattr(module, "intermediate_size"):
            module.intermediate_size = width - removed


def _replace(root: Any, name: str, module: Any) -> None:
    """Put ``module`` where ``name`` is inside ``root``."""
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent), attr, module)


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
        total = len(decoder_layers(model))
        dropped = _dropped(total, layers, start)
        replace_decoder_layers(model, [i for i in range(total) if i not in dropped])
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
