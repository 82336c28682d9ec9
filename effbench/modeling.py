"""The public helpers for technique authors: a decoder model's linear layers, its blocks, its real weight bytes.

Plugins import only ``effbench`` and this module, so effbench can reorganise everything else without breaking them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "check_divides",
    "decoder_layers",
    "head_dim",
    "linear_input_sizes",
    "linear_layers",
    "parameter_counts",
    "tensor_bytes",
    "weight_bytes",
]


def linear_layers(model: Any) -> list[tuple[str, Any]]:
    """The transformer blocks' linear layers, what quantization and pruning rewrite (not embeddings or the LM head)."""
    import torch

    head = model.get_output_embeddings()
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]


def decoder_layers(model: Any) -> Any:
    """The decoder's ``ModuleList`` of transformer blocks, for techniques that drop or rewrite whole blocks."""
    return model.get_decoder().layers


def head_dim(config: Any) -> int:
    """Width of one attention head (explicit in the config or hidden size / heads), to check head-wise parameters."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def linear_input_sizes(config: Any) -> dict[str, int]:
    """The input widths of a Llama-style block's linear layers, named by config field so errors can cite them."""
    return {
        "hidden_size": config.hidden_size,
        "num_attention_heads × head_dim": config.num_attention_heads * head_dim(config),
        "intermediate_size": config.intermediate_size,
    }


def check_divides(parameter: str, value: int, config: Any, choices: Iterable[int] | None = None) -> None:
    """Raise ValueError unless ``value`` divides every linear layer's input width (groups must not straddle rows).

    ``choices`` are the values the technique supports at all; the message lists those that fit this model.
    """
    sizes = linear_input_sizes(config)
    if all(size % value == 0 for size in sizes.values()):
        return
    widths = sorted(set(sizes.values()))
    candidates = range(2, widths[0] + 1) if choices is None else choices
    valid = [d for d in candidates if all(w % d == 0 for w in widths)]
    raise ValueError(
        f"parameter {parameter!r}: must divide every linear layer's input width "
        f"({', '.join(f'{f}={s}' for f, s in sizes.items())}); got {value}; "
        f"valid values for this model: {', '.join(map(str, valid)) or 'none'}"
    )


def tensor_bytes(tensor: Any) -> int:
    """Bytes a tensor really holds: a quantized tensor subclass (torchao) counts its inner tensors."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _packed_weights(model: Any) -> list[Any]:
    """Weights and biases of torch's dynamically quantized layers, which live outside ``parameters()``."""
    tensors = []
    for module in model.modules():
        packed = getattr(module, "_packed_params", None)
        if packed is not None and hasattr(packed, "_weight_bias"):
            tensors += [t for t in packed._weight_bias() if t is not None]
    return tensors


def parameter_counts(model: Any) -> tuple[int, int]:
    """Total and non-zero parameters, packed quantized weights included (tied tensors counted once)."""
    import torch

    def nonzero(tensor: Any) -> int:
        # quantized tensors cannot count their zeros: count them in real values; an opaque packed
        # layout that cannot even be dequantized (torchao int4 on CPU) is counted as dense
        try:
            return int(torch.count_nonzero(tensor.dequantize() if hasattr(tensor, "dequantize") else tensor))
        except NotImplementedError:
            return tensor.numel()

    tensors = [*{id(p): p for p in model.parameters()}.values(), *_packed_weights(model)]
    return sum(t.numel() for t in tensors), sum(nonzero(t) for t in tensors)


def weight_bytes(model: Any) -> int:
    """Bytes of a model's parameters, buffers and packed quantized weights (tied tensors counted once).

    torch's dynamically quantized ``Linear`` keeps its int8 weight in ``_packed_params``, outside
    ``parameters()``; it is counted here as its weight and bias (its scale and zero point are two scalars).
    """
    tensors = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return sum(tensor_bytes(t) for t in (*tensors.values(), *_packed_weights(model)))
