"""The size of the safetensors files ``save_pretrained`` writes, computed from dtypes and shapes: no multi-GB write.

A safetensors file is 8 bytes (the header's length), a compact JSON header padded with spaces to a multiple
of 8, then every tensor's bytes. The header is built here as safetensors builds it (tensors laid out by
descending dtype rank, then by name), for the state dict transformers would save: keys it ignores dropped,
tied weights once, weight conversions reverted, split into shards of ``max_shard_size`` (one header each).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

# torch dtype and safetensors dtype, in the order of safetensors' ``Dtype`` enum (its layout sorts by it).
DTYPES = (
    ("bool", "BOOL"),
    ("uint8", "U8"),
    ("int8", "I8"),
    ("float8_e5m2", "F8_E5M2"),
    ("float8_e4m3fn", "F8_E4M3"),
    ("float8_e8m0fnu", "F8_E8M0"),
    ("float8_e4m3fnuz", "F8_E4M3FNUZ"),
    ("float8_e5m2fnuz", "F8_E5M2FNUZ"),
    ("int16", "I16"),
    ("uint16", "U16"),
    ("float16", "F16"),
    ("bfloat16", "BF16"),
    ("int32", "I32"),
    ("uint32", "U32"),
    ("float32", "F32"),
    ("complex64", "C64"),
    ("float64", "F64"),
    ("int64", "I64"),
    ("uint64", "U64"),
)
RANK = {torch_name: rank for rank, (torch_name, _) in enumerate(DTYPES)}
NAME = dict(DTYPES)
METADATA = {"format": "pt"}  # what save_pretrained writes without a transformers quantizer
SHARD = "50GB"  # save_pretrained's default max_shard_size


class NotComputable(Exception):
    """Why the saved size cannot be known without writing: the caller writes instead."""


class Entry(NamedTuple):
    """One tensor as a safetensors header describes it: torch dtype name, shape, bytes."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def header(entries: dict[str, Entry]) -> bytes:
    """The first bytes of the file safetensors writes for these tensors: length, then the padded JSON header."""
    layout: dict[str, Any] = {"__metadata__": METADATA}
    offset = 0
    for name in sorted(entries, key=lambda n: (-RANK[entries[n].dtype], n.encode())):
        entry = entries[name]
        layout[name] = {
            "dtype": NAME[entry.dtype],
            "shape": list(entry.shape),
            "data_offsets": [offset, offset + entry.nbytes],
        }
        offset += entry.nbytes
    text = json.dumps(layout, ensure_ascii=False, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def file_bytes(entries: dict[str, Entry]) -> int:
    """Size of the safetensors file holding these tensors."""
    return len(header(entries)) + sum(e.nbytes for e in entries.values())


def saved_bytes(model: Any, max_shard_size: int | str = SHARD) -> int:
    """Bytes of the safetensors files ``model.save_pretrained`` would write, or NotComputable."""
    from huggingface_hub import split_torch_state_dict_into_shards

    state_dict = _state_dict_to_save(model)
    entries = {name: _entry(name, tensor) for name, tensor in state_dict.items()}
    split = split_torch_state_dict_into_shards(
        state_dict, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    return sum(file_bytes({n: entries[n] for n in names}) for names in split.filename_to_tensors.values())


def _state_dict_to_save(model: Any) -> dict[str, Any]:
    """The tensors ``save_pretrained`` hands safetensors, prepared by transformers' own functions."""
    if getattr(model, "hf_quantizer", None) is not None:
        raise NotComputable("a transformers quantizer decides what is saved")
    if getattr(model, "_hf_peft_config_loaded", False):
        raise NotComputable("PEFT adapters are saved instead of the model")
    if getattr(model.config, "distributed_config", None) is not None:
        raise NotComputable("distributed weights are gathered before saving")
    try:
        from transformers.core_model_loading import revert_weight_conversion
        from transformers.modeling_utils import remove_tied_weights_from_state_dict
    except ImportError as err:  # private helpers: another transformers may have moved them
        raise NotComputable(f"transformers helper not found: {err}") from None
    state_dict = model.state_dict()
    for key in model._keys_to_ignore_on_save or ():
        state_dict.pop(key, None)
    return revert_weight_conversion(model, remove_tied_weights_from_state_dict(state_dict, model))


def _entry(name: str, tensor: Any) -> Entry:
    """The header entry of one plain dense tensor; NotComputable for anything safetensors might store otherwise."""
    import torch

    if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        raise NotComputable(f"{name} is a {type(tensor).__name__}, not a plain tensor")
    dtype = str(tensor.dtype).removeprefix("torch.")
    if tensor.device.type == "meta":
        raise NotComputable(f"{name} is offloaded (on the meta device)")
    if dtype not in RANK or tensor.layout != torch.strided:
        raise NotComputable(f"{name} is a {dtype} {tensor.layout} tensor")
    return Entry(dtype, tuple(tensor.shape), tensor.numel() * tensor.element_size())
