"""The model fingerprint: from safetensors headers and sampled blocks, without reading whole checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from effbench.default_plugins.metrics.safetensors_size import Entry, header
from effbench.reference.zoo import load, resolve
from effbench.run.fingerprint import (
    BLOCK,
    BLOCKS,
    INDEX,
    TENSOR_HEAD,
    _sample_ranges,
    _tensor_spans,
    file_samples,
    model_fingerprint,
    safetensors_fingerprint,
)

MICRO_M = Path(resolve("zoo:micro-m"))


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of micro-m's weights in a folder of its own."""
    shutil.copy(MICRO_M / "model.safetensors", tmp_path / "model.safetensors")
    return tmp_path


def flip_byte(path: Path, offset: int) -> None:
    """Change one byte of a file in place: same size, same header."""
    with path.open("r+b") as file:
        file.seek(offset)
        value = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([value ^ 0xFF]))


def data_start(path: Path) -> int:
    """Where a safetensors file's tensor data begins."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def test_identical_copies_share_the_fingerprint_of_the_new_kind(copy):
    model, _ = load("zoo:micro-m")
    fingerprint = model_fingerprint("zoo:micro-m", model)
    assert fingerprint.startswith("st-sampled:")  # earlier stores hold "sha256:" ones: another kind
    assert safetensors_fingerprint(copy) == fingerprint


def test_a_changed_dtype_shape_or_name_changes_it(copy):
    before = safetensors_fingerprint(copy)
    tensors = load_file(copy / "model.safetensors")
    name = sorted(tensors)[0]
    for changed in (
        {**tensors, name: tensors[name].to(torch.float16)},
        {**tensors, name: tensors[name].flatten()},
        {**{k: v for k, v in tensors.items() if k != name}, name + "_renamed": tensors[name]},
    ):
        save_file(changed, copy / "model.safetensors", metadata={"format": "pt"})
        assert safetensors_fingerprint(copy) != before


def test_a_changed_value_in_a_sampled_block_changes_it(copy):
    path = copy / "model.safetensors"
    before = safetensors_fingerprint(copy)
    start = data_start(path)
    tensor_heads = [start + first for first, _ in _tensor_spans(path.read_bytes()[8:start])]
    for offset in (*tensor_heads, path.stat().st_size - 1):  # every tensor's first byte, the data's last byte
        flip_byte(path, offset)
        assert safetensors_fingerprint(copy) != before
        flip_byte(path, offset)
    assert safetensors_fingerprint(copy) == before


def test_an_edit_outside_the_samples_goes_unseen_as_documented(copy):
    path = copy / "model.safetensors"
    before = safetensors_fingerprint(copy)
    start, size = data_start(path), path.stat().st_size
    sampled = _sample_ranges(_tensor_spans(path.read_bytes()[8:start]), start, size)
    offset = next(o for o in range(start, size) if not any(s <= o < s + n for s, n in sampled))
    flip_byte(path, offset)
    assert safetensors_fingerprint(copy) == before


def test_the_shard_index_and_extra_files_change_it(copy):
    before = safetensors_fingerprint(copy)
    (copy / INDEX).write_text('{"weight_map": {}}')
    with_index = safetensors_fingerprint(copy)
    shutil.copy(copy / "model.safetensors", copy / "model-extra.safetensors")
    assert len({before, with_index, safetensors_fingerprint(copy)}) == 3


def test_a_4_gib_checkpoint_is_fingerprinted_from_about_a_megabyte(tmp_path):
    entries = {"big": Entry("float32", (1 << 30,), 1 << 32), "small": Entry("bfloat16", (8, 8), 128)}
    path = tmp_path / "model.safetensors"
    start = header(entries)
    with path.open("wb") as file:  # sparse: the zeros are never written
        file.write(start)
        file.truncate(len(start) + sum(e.nbytes for e in entries.values()))
    with safe_open(path, "pt") as file:  # a valid safetensors file
        assert set(file.keys()) == {"big", "small"}
    hashed = sum(len(sample) for sample in file_samples(path))
    assert hashed <= len(start) + BLOCKS * BLOCK + 2 * TENSOR_HEAD + 100  # name and size
    read_before = _bytes_read()
    safetensors_fingerprint(tmp_path)
    assert _bytes_read() - read_before < 4 * 1024 * 1024  # of 4 GiB: what the kernel really handed over


def _bytes_read() -> int:
    """Bytes this process has read through system calls so far (Linux)."""
    io = Path("/proc/self/io")
    if not io.exists():
        pytest.skip("no /proc/self/io on this system")
    return int(next(line for line in io.read_text().splitlines() if line.startswith("rchar:")).split()[1])
