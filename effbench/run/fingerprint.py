"""Which weights a run loaded: a local checkpoint is identified from its headers and samples, not all its bytes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from effbench.reference import zoo

KIND = "st-sampled"  # earlier versions stored "sha256:" (every byte hashed); both kinds stay readable
INDEX = "model.safetensors.index.json"
BLOCK = 64 * 1024  # bytes of each evenly spaced sample of a file's tensor data
BLOCKS = 17  # evenly spaced samples per file, its first and last block among them
TENSOR_HEAD = 4096  # bytes sampled at the start of every tensor
MAX_HEADER = 100_000_000  # safetensors refuses larger headers


def model_fingerprint(model_id: str, model: Any) -> str:
    """Identify the exact weights: a local checkpoint's safetensors fingerprint, else the Hub commit."""
    location = Path(zoo.resolve(model_id))
    if location.is_dir():
        return safetensors_fingerprint(location)
    return f"commit:{getattr(model.config, '_commit_hash', None) or 'unknown'}"


def safetensors_fingerprint(folder: Path) -> str:
    """A hash of every ``*.safetensors`` file's name, size, header and sampled data, and of the shard index.

    Reading a 70 GB checkpoint whole took minutes; this reads about 1 MB per file plus 4 KiB per tensor.
    Detected: any change of a tensor's name, dtype or shape, of a file's size or set of files, of the
    index or metadata, and any change of values within the sampled bytes: the first 4 KiB of every
    tensor and 17 evenly spaced 64 KiB blocks of each file's data. A fine-tuned, pruned or re-quantized
    checkpoint changes values at the start of nearly every tensor and is detected. Not detected: an
    edit of values, in place and same shape, that leaves all sampled bytes alone (say a few weights in
    the middle of a large tensor).
    """
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        for sample in file_samples(path):
            digest.update(len(sample).to_bytes(8, "little") + sample)
    index = folder / INDEX
    if index.is_file():
        digest.update(index.read_bytes())
    return f"{KIND}:{digest.hexdigest()[:16]}"


def file_samples(path: Path) -> list[bytes]:
    """The bytes of one file the fingerprint hashes: name and size, header, then the sampled ranges in order."""
    with path.open("rb") as file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        length = int.from_bytes(os.pread(fd, 8, 0).ljust(8, b"\0"), "little")
        start = 8 + length if length <= MAX_HEADER and 8 + length <= size else min(size, 8)
        header = os.pread(fd, start, 0)
        ranges = _sample_ranges(_tensor_spans(header[8:]), start, size)
        return [f"{path.name}\0{size}".encode(), header, *(os.pread(fd, n, offset) for offset, n in ranges)]


def _tensor_spans(header: bytes) -> list[tuple[int, int]]:
    """Each tensor's data offsets from a safetensors JSON header; none when it is not one (a stray file)."""
    try:
        entries = json.loads(header)
        spans = [entry["data_offsets"] for key, entry in entries.items() if key != "__metadata__"]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    valid = (s for s in spans if isinstance(s, list) and len(s) == 2 and all(type(x) is int for x in s))
    return [(first, last) for first, last in valid if 0 <= first <= last]


def _sample_ranges(spans: list[tuple[int, int]], start: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the sampled bytes: evenly spaced blocks of the data, and the head of every tensor."""
    data = size - start
    ranges = {(start + i * max(data - BLOCK, 0) // (BLOCKS - 1), min(BLOCK, data)) for i in range(BLOCKS)}
    ranges |= {(start + first, min(TENSOR_HEAD, last - first)) for first, last in spans}
    return sorted(ranges)
