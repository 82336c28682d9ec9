"""disk_bytes computes the safetensors size save_pretrained would write, byte for byte, without writing it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from transformers import GPT2Config, GPT2LMHeadModel

from effbench.api.context import RunContext
from effbench.default_plugins.metrics.model import DiskBytes
from effbench.default_plugins.metrics.safetensors_size import DTYPES, Entry, header, saved_bytes
from effbench.reference.zoo import load
from tests.technique_helpers import applied


def written(model: Any, max_shard_size: str = "50GB") -> tuple[int, int]:
    """Total bytes and number of the safetensors files save_pretrained really writes."""
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, max_shard_size=max_shard_size)
        files = list(Path(folder).glob("*.safetensors"))
        return sum(p.stat().st_size for p in files), len(files)


def tiny_gpt2() -> Any:
    """A random GPT-2: Conv1D layers, the LM head tied to the token embeddings."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=100, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


MODELS = {
    "micro-s": lambda: load("zoo:micro-s")[0],
    "micro-m": lambda: load("zoo:micro-m")[0],
    "gpt2-tied-conv1d": tiny_gpt2,
    "gpt2-bf16": lambda: tiny_gpt2().to(torch.bfloat16),
    "micro-m-bf16": lambda: applied("dtype", dtype="bf16")[0],
    "micro-m-magnitude-pruned": lambda: applied("prune-magnitude", sparsity=0.5)[0],
    "micro-m-structured-pruned": lambda: applied("prune-structured")[0],
    "micro-m-depth-pruned": lambda: applied("prune-depth", layers=1)[0],
}


@pytest.mark.parametrize("name", MODELS)
def test_computed_size_equals_the_written_files_byte_for_byte(name):
    model = MODELS[name]()
    measurement = DiskBytes().stop(RunContext(model=model, tokenizer=None, technique=name, params={}))
    assert measurement.method == DiskBytes.method  # computed, nothing written
    size, _ = written(model)
    assert saved_bytes(model) == size
    assert measurement.value == size / 1e6


@pytest.mark.parametrize("name", ["micro-m", "gpt2-tied-conv1d"])
def test_shards_each_with_its_own_header_are_computed_exactly(name):
    model = MODELS[name]()
    size, files = written(model, "40KB")
    assert files > 1
    assert saved_bytes(model, "40KB") == size


def test_header_is_the_one_safetensors_writes_for_every_dtype_and_odd_names():
    tensors = {f"t{i}.{torch_name}": torch.zeros(i + 1, 3, dtype=getattr(torch, torch_name))
               for i, (torch_name, _) in enumerate(DTYPES) if hasattr(torch, torch_name)}  # fmt: skip
    tensors |= {"scalar": torch.zeros(()), "empty": torch.zeros(0, 4), 'ü"\\\n': torch.ones(2, dtype=torch.int8)}
    entries = {n: Entry(str(t.dtype).removeprefix("torch."), tuple(t.shape), t.nbytes) for n, t in tensors.items()}
    with tempfile.TemporaryDirectory() as folder:
        save_file(tensors, Path(folder) / "x.safetensors", metadata={"format": "pt"})
        real = (Path(folder) / "x.safetensors").read_bytes()
    expected = header(entries)
    assert real[: len(expected)] == expected
    assert len(real) == len(expected) + sum(e.nbytes for e in entries.values())


def test_a_transformers_quantizer_makes_it_write_and_say_so():
    from torchao.quantization import Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    model, _ = load("zoo:micro-s", quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))
    measurement = DiskBytes().stop(RunContext(model=model, tokenizer=None, technique="torchao", params={}))
    assert measurement.method.startswith("safetensors files written by save_pretrained (size not computable: a ")
    assert measurement.value == written(model)[0] / 1e6


def test_packed_int8_layers_keep_the_torch_save_fallback():
    model, _ = applied("dynamic-int8")
    measurement = DiskBytes().stop(RunContext(model=model, tokenizer=None, technique="dynamic-int8", params={}))
    assert measurement.method.startswith("torch.save of the state dict (safetensors cannot store it")
    assert 0 < measurement.value < saved_bytes(load("zoo:micro-m")[0]) / 1e6
