"""The public helpers for technique authors: a decoder model's linear layers, its blocks, its real weight bytes.

Plugins import only ``effbench`` and this module, so effbench can reorganise everything else without breaking them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from effbench.errors import EffbenchError, NotApplicable
from effbench.reference import zoo

__all__ = [
    "NotApplicable",
    "check_divides",
    "check_same_tokenizer",
    "decoder_layers",
    "head_dim",
    "intermediate_size",
    "kv_heads",
    "linear_input_sizes",
    "linear_layers",
    "parameter_counts",
    "replace_decoder_layers",
    "set_intermediate_size",
    "tensor_bytes",
    "weight_bytes",
]

# Where each family's config keeps the MLP width: Llama-likes and GPT-NeoX, OPT, GPT-2 (None there: 4 × hidden).
INTERMEDIATE_FIELDS = ("intermediate_size", "ffn_dim", "n_inner")


def intermediate_size(config: Any) -> int:
    """Width of the MLP's hidden layer, whatever the family calls it."""
    for field in INTERMEDIATE_FIELDS:
        if hasattr(config, field):
            return getattr(config, field) or 4 * config.hidden_size
    raise NotApplicable(f"{type(config).__name__} names no MLP width ({', '.join(INTERMEDIATE_FIELDS)})")


def set_intermediate_size(config: Any, value: int) -> None:
    """Record a pruned MLP width in the field the family's config uses, so the config matches the weights."""
    field = next(f for f in INTERMEDIATE_FIELDS if hasattr(config, f))
    setattr(config, field, value)


def kv_heads(config: Any) -> int:
    """Key/value heads: grouped-query models say so; multi-head ones (GPT-2, GPT-NeoX, OPT) have one per query head."""
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


def _linearize(model: Any) -> None:
    """Replace GPT-2-style ``Conv1D`` layers (weight stored input × output) by the equivalent ``nn.Linear``.

    The computation is the same (x @ W + b); afterwards every technique sees one kind of layer. The model
    keeps working, but a GPT-2 saved afterwards stores transposed weights that GPT-2's own class cannot reload.
    """
    import torch
    from transformers.pytorch_utils import Conv1D

    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            weight = module.weight
            linear = torch.nn.Linear(weight.shape[0], weight.shape[1], bias=module.bias is not None)
            linear = linear.to(device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(weight.T)
                if module.bias is not None:
                    linear.bias.copy_(module.bias)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, linear)


def linear_layers(model: Any) -> list[tuple[str, Any]]:
    """The decoder blocks' linear layers, what quantization and pruning rewrite (not embeddings or the LM head).

    GPT-2's ``Conv1D`` layers are first replaced by the equivalent ``nn.Linear`` (see ``_linearize``).
    """
    import torch

    _linearize(model)
    prefix = _decoder_layers_name(model) + "."
    return [
        (name, module)
        for name, module in model.named_modules()
        if name.startswith(prefix) and isinstance(module, torch.nn.Linear)
    ]


def _decoder_layers_name(model: Any) -> str:
    """Where the model keeps its blocks: the first ``ModuleList`` as long as the config's layer count."""
    import torch

    layers = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == layers:
            return name
    raise NotApplicable(f"{type(model).__name__} has no list of {layers} decoder blocks")


def decoder_layers(model: Any) -> Any:
    """The decoder's ``ModuleList`` of transformer blocks (``model.layers``, GPT-2's ``transformer.h``, …)."""
    return model.get_submodule(_decoder_layers_name(model))


def replace_decoder_layers(model: Any, keep: list[int]) -> None:
    """Keep only the blocks at ``keep``, renumbered so the KV cache (indexed by position in the stack) stays right."""
    import torch

    name = _decoder_layers_name(model)
    blocks = model.get_submodule(name)
    kept = [blocks[i] for i in keep]
    for index, block in enumerate(kept):
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, torch.nn.ModuleList(kept))
    config = model.config
    if getattr(config, "layer_types", None):  # per-layer attention kinds (Gemma's sliding/full pattern)
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(kept)


def head_dim(config: Any) -> int:
    """Width of one attention head (explicit in the config or hidden size / heads), to check head-wise parameters."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def linear_input_sizes(config: Any) -> dict[str, int]:
    """The input widths of a decoder block's linear layers, named by config field so errors can cite them."""
    return {
        "hidden_size": config.hidden_size,
        "num_attention_heads × head_dim": config.num_attention_heads * head_dim(config),
        "intermediate size": intermediate_size(config),
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


def check_same_tokenizer(parameter: str, model_id: str, tokenizer: Any) -> None:
    """Raise ValueError unless ``model_id``'s tokenizer is ``tokenizer``: a second model's token ids must mean the same.

    ``parameter`` names the technique parameter giving the second model (a draft, a teacher) in the message.
    """
    from transformers import AutoTokenizer

    try:
        other = AutoTokenizer.from_pretrained(zoo.resolve(model_id))
    except (OSError, ValueError, EffbenchError) as err:
        raise ValueError(f"parameter {parameter!r}: no usable tokenizer for {model_id!r}: {err}") from None
    if other.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"parameter {parameter!r}: {model_id!r} has another tokenizer than the evaluated model "
            f"({len(other)} vs {len(tokenizer)} tokens, different vocabularies); "
            f"valid {parameter}s share the model's tokenizer exactly"
        )
