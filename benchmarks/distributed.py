"""Distributed training on 2 ranks of this machine: what each gradient exchange sends, keeps in memory and costs.

A random-weight Llama (benchmarks/gpu_check.py's builder: micro-m's tokenizer, no download) fully fine-tuned on
2 gloo ranks (`training.ranks: 2`) with each exchange: plain all-reduce, ZeRO stage 1, FSDP2 with and without
resharding after forward. Prints each run's stored train-phase figures side by side (bytes and memory are the
largest or summed over ranks, as the README's "Distributed runs" says). Checks the effects on a model whose weights
are a visible share of the process's memory (the default size; at --hidden 512 FSDP's peak RSS was above
all-reduce's): FSDP's and ZeRO's optimizer state is half of all-reduce's, FSDP's peak RSS is below
all-reduce's, FSDP sends twice all-reduce's bytes per step (1.5 times without resharding), all within 2 %.
Exits 1 when one fails.
Run: python benchmarks/distributed.py [--hidden 1024] [--layers 8] [--steps 3] [--batch-size 4]   (minutes, 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from gpu_check import build_model
from train_figures import sweep, table, verdict

EXCHANGES = ["ddp-allreduce", "ddp-zero", "fsdp", "fsdp:reshard=false"]
FIGURES = [
    ("train_bytes_communicated_per_step", "kB/step (2 ranks)", "{:,.1f}"),
    ("optimizer_state_size", "optimizer state (MB, max rank)", "{:.1f}"),
    ("peak_memory", "peak RSS (MiB, max rank)", "{:.0f}"),
    ("peak_memory_increase", "RSS rise (MiB, max rank)", "{:.0f}"),
    ("train_step_time", "s/step", "{:.2f}"),
    ("final_train_loss", "final loss", "{:.4f}"),
]


def within(value: float, expected: float, share: float = 0.02) -> bool:
    """``value`` is ``expected`` give or take ``share`` of it."""
    return abs(value - expected) <= share * abs(expected)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024, help="hidden size")
    parser.add_argument("--layers", type=int, default=8, help="decoder layers")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=4, help="global batch: rows of up to 256 tokens per step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="effbench-distributed-") as folder:
        model_dir = Path(folder) / "llama-random"
        count = build_model(model_dir, args.hidden, args.layers)
        training = {"data": "micro_world", "steps": args.steps, "batch_size": args.batch_size, "max_length": 256,
                    "ranks": 2}  # fmt: skip
        print(f"random Llama, {count / 1e6:.1f} M parameters ({count * 4 / 1e6:.0f} MB in float32); {training}")
        results = sweep(model_dir, [f"finetune-full + {exchange}" for exchange in EXCHANGES], training, Path(folder))
        figures = {
            f"{name}:reshard={params['reshard']}" if "reshard" in params else name: train
            for run, train in table(results, FIGURES)
            for name, params in json.loads(run.technique_params).items()
            if name != "finetune-full"
        }
    plain, zero = figures.get("ddp-allreduce", {}), figures.get("ddp-zero", {})
    fsdp, kept = figures.get("fsdp:reshard=True", {}), figures.get("fsdp:reshard=False", {})
    failures = []
    sent, state, peak = "train_bytes_communicated_per_step", "optimizer_state_size", "peak_memory"
    if not all(run.get(sent) for run in (plain, zero, fsdp, kept)):
        return verdict(["a run is missing or failed (see the sweep's output above)"])
    if not within(fsdp[sent], 2 * plain[sent]):
        failures.append("FSDP did not send twice all-reduce's bytes per step")
    if not within(kept[sent], 1.5 * plain[sent]):
        failures.append("FSDP without resharding did not send 1.5 times all-reduce's bytes per step")
    for label, run in (("ZeRO", zero), ("FSDP", fsdp)):
        if not within(run[state], plain[state] / 2):
            failures.append(f"{label}'s optimizer state is not half of all-reduce's")
    if not fsdp[peak] < plain[peak]:
        failures.append("FSDP's peak RSS is not below all-reduce's")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
