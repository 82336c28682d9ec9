"""Model fingerprint and disk size on a real-sized checkpoint: what a run pays before and after reading less.

Writes a 2.2 GB safetensors checkpoint shaped like TinyLlama-1.1B in bf16 (real bytes, not sparse) to a
temporary folder, then times the sampled fingerprint (target <= 1 s) and the previous full sha256 of every
byte, each with the file in the page cache and evicted from it (posix_fadvise DONTNEED). Then the disk size
of a 134M-parameter fp32 Llama computed from its tensors against a real save_pretrained (into the page cache).
Run: python benchmarks/fingerprint.py
"""

import hashlib
import os
import tempfile
import time
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import LlamaConfig, LlamaForCausalLM

from effbench.default_plugins.metrics.safetensors_size import Entry, header, saved_bytes
from effbench.run.fingerprint import safetensors_fingerprint

CHUNK = 64 * 1024 * 1024


def tinyllama_entries(layers: int = 22, hidden: int = 2048, kv: int = 256, mlp: int = 5632) -> dict[str, Entry]:
    """TinyLlama-1.1B's tensors in bf16: 201 tensors, 2.2 GB."""
    shapes = {"model.embed_tokens.weight": (32000, hidden), "lm_head.weight": (32000, hidden)}
    shapes["model.norm.weight"] = (hidden,)
    for i in range(layers):
        block = f"model.layers.{i}"
        shapes |= {
            f"{block}.self_attn.q_proj.weight": (hidden, hidden),
            f"{block}.self_attn.k_proj.weight": (kv, hidden),
            f"{block}.self_attn.v_proj.weight": (kv, hidden),
            f"{block}.self_attn.o_proj.weight": (hidden, hidden),
            f"{block}.mlp.gate_proj.weight": (mlp, hidden),
            f"{block}.mlp.up_proj.weight": (mlp, hidden),
            f"{block}.mlp.down_proj.weight": (hidden, mlp),
            f"{block}.input_layernorm.weight": (hidden,),
            f"{block}.post_attention_layernorm.weight": (hidden,),
        }
    return {name: Entry("bfloat16", shape, 2 * torch.Size(shape).numel()) for name, shape in shapes.items()}


def write_checkpoint(path: Path, entries: dict[str, Entry]) -> int:
    """A valid safetensors file of these tensors, its data pseudo-random bytes really written; returns its size."""
    data = sum(e.nbytes for e in entries.values())
    block = os.urandom(CHUNK)
    with path.open("wb") as file:
        file.write(header(entries))
        for done in range(0, data, CHUNK):
            file.write(block[: min(CHUNK, data - done)])
        file.flush()
        os.fsync(file.fileno())
    return path.stat().st_size


def full_sha256(folder: Path) -> str:
    """The fingerprint of earlier versions: sha256 of every byte of every safetensors file."""
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache, so the next read comes from disk."""
    with path.open("rb") as file:
        os.posix_fadvise(file.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def fingerprints(folder: Path) -> None:
    path = folder / "model.safetensors"
    seconds, size = timed(write_checkpoint, path, tinyllama_entries())
    print(f"checkpoint: {size / 1e9:.2f} GB TinyLlama-1.1B-shaped bf16, real (non-sparse) bytes, in {seconds:.1f} s")
    with safe_open(path, "pt") as file:
        tensors = len(list(file.keys()))
    print(f"valid safetensors: {tensors} tensors; allocated on disk {os.stat(path).st_blocks * 512 / 1e9:.2f} GB")
    for cache in ("evicted from page cache", "in page cache"):
        for name, function in (("new sampled fingerprint", safetensors_fingerprint), ("old full sha256", full_sha256)):
            if cache.startswith("evicted"):
                evict(path)
            seconds, value = timed(function, folder)
            print(f"{name:>24} ({cache}): {seconds:7.3f} s  {value}")


def disk_size() -> None:
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                         num_key_value_heads=12, vocab_size=32000, tie_word_embeddings=False)  # fmt: skip
    model = LlamaForCausalLM(config).eval()
    computed_s, computed = timed(saved_bytes, model)
    with tempfile.TemporaryDirectory() as folder:
        written_s, _ = timed(model.save_pretrained, folder)
        written = sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
    print(f"disk size of a {model.num_parameters() / 1e6:.0f}M-parameter fp32 Llama:")
    print(f"  computed:             {computed} B in {computed_s * 1e3:.1f} ms")
    print(f"  save_pretrained wrote {written} B in {written_s:.2f} s (unflushed); equal: {computed == written}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="effbench-fingerprint-") as folder:
        fingerprints(Path(folder))
    disk_size()
