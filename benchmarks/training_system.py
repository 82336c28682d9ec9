"""Training-system techniques on a model big enough for activations to matter: peak memory and time per step.

A random-weight Llama (benchmarks/gpu_check.py's builder: micro-m's tokenizer, no download) pre-trained from
scratch on packed micro-world rows, through `effbench evaluate` (a fresh worker per run, so each run's peak RSS
is its own): the reference recipe, then with gradient checkpointing, bf16 autocast and Adafactor stacked on it.
Prints each run's stored train-phase figures side by side. Checks: gradient checkpointing lowers the train
phase's peak RSS and raises its time per step; Adafactor's optimizer state is below AdamW's. Exits 1 when one fails.
Run: python benchmarks/training_system.py [--hidden 256] [--layers 4] [--steps 3] [--batch-size 4]   (minutes, 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from gpu_check import build_model
from train_figures import sweep, table, verdict

BASE = "pretrain-scratch + packing"
TECHNIQUES = [BASE, *(f"{BASE} + {extra}" for extra in ("gradient-checkpointing", "autocast-bf16",
                                                         "optimizer:name=adafactor"))]  # fmt: skip
FIGURES = [
    ("train_step_time", "s/step", "{:.2f}"),
    ("peak_memory", "peak RSS (MiB)", "{:.0f}"),
    ("peak_memory_increase", "RSS rise (MiB)", "{:.1f}"),
    ("optimizer_state_size", "optimizer state (MB)", "{:.1f}"),
    ("train_tokens_per_s", "tokens/s", "{:.0f}"),
    ("final_train_loss", "final loss", "{:.3f}"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256, help="hidden size")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=4, help="packed rows of 256 tokens per step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="effbench-training-system-") as folder:
        model_dir = Path(folder) / "llama-random"
        count = build_model(model_dir, args.hidden, args.layers)
        training = {"data": "micro_world", "steps": args.steps, "batch_size": args.batch_size, "max_length": 256}
        print(f"random Llama, {count / 1e6:.1f} M parameters; training {training}")
        results = sweep(model_dir, TECHNIQUES, training, Path(folder))
        figures = {run.technique: train for run, train in table(results, FIGURES)}  # the stack's names joined by +
    base = figures.get("pretrain-scratch+packing", {})
    checkpointed = figures.get("pretrain-scratch+packing+gradient-checkpointing", {})
    adafactor = figures.get("pretrain-scratch+packing+optimizer", {})
    failures = []
    if not checkpointed.get("peak_memory", 1e12) < base.get("peak_memory", 0):
        failures.append("gradient checkpointing did not lower the train phase's peak RSS")
    if not checkpointed.get("train_step_time", 0) > base.get("train_step_time", 1e12):
        failures.append("gradient checkpointing did not raise the time per step")
    if not adafactor.get("optimizer_state_size", 1e12) < base.get("optimizer_state_size", 0):
        failures.append("Adafactor's optimizer state is not below AdamW's")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
