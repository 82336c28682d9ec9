"""End-to-end GPU check: every inference technique on a random-weight ~100 M-parameter Llama, on cuda in bfloat16.

Builds the model from a LlamaConfig (no download; the bundled character tokenizer of zoo:micro-m), saves it with
safetensors to a temporary folder, runs suites/inference.yaml's techniques that have kernels for the device
through the sweep (as `effbench evaluate` does), and prints per technique its status, device, dtype, latency,
accelerator peak memory and whether energy was measured (NVML) or estimated. Exit status: 0 when every run is ok
or not applicable (with its reason: e.g. a bf16 cast of a model already in bf16), 1 when one failed, 2 when the
device is missing (one line saying so).
Run: python benchmarks/gpu_check.py                      (a GPU machine)
     python benchmarks/gpu_check.py --device cpu --dtype float32 --hidden 64 --layers 2 --quick   (the script itself)
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from pathlib import Path

from effbench.config.suite import Suite, load_suite
from effbench.config.yaml_reader import read_suite_file
from effbench.errors import EffbenchError
from effbench.measure.device import resolve_device
from effbench.plugins import registry
from effbench.records import FINAL_STATUSES, STATUS_OK, StackEntry
from effbench.reference import zoo
from effbench.run.sweep import check_devices, run_suite
from effbench.store.load import load

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = zoo.MODELS_DIR / "micro-m"
QUICK_SCENARIO = "single-stream:repeats=2,min_requests=3,output_tokens=16,prompt_tokens=16,warmup=1"


def build_model(folder: Path, hidden: int, layers: int) -> int:
    """A random-weight Llama sized by ``hidden`` and ``layers`` with micro-m's tokenizer, saved; its parameter count."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    heads = max(4, hidden // 64)  # at least 4 query heads per KV group below: prune-structured removes some
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 32 * 32,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads // math.gcd(heads, 4),  # grouped-query attention, as most checkpoints have
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    shutil.copy(TOKENIZER / "generation_config.json", folder)
    return sum(p.numel() for p in model.parameters())


def runnable(stacks: list[str], device: str) -> tuple[list[str], list[str]]:
    """The suite's techniques installed and with kernels for the device, and those left out with the reason."""
    reg = registry()
    keep, left_out = [], []
    for stack in stacks:
        names = [step.strip().partition(":")[0] for step in stack.split("+")]
        try:
            missing = [name for name in names if name not in reg.techniques]
            if missing:
                raise EffbenchError(f"not installed: {', '.join(missing)}")
            check_devices([tuple(StackEntry(name) for name in names)], reg, device, None)
        except EffbenchError as err:
            left_out.append(f"{stack} ({err})")
            continue
        keep.append(stack)
    return keep, left_out


def energy_source(methods: list[str]) -> str:
    """Whether the GPU's energy was read from NVML counters or estimated (what the run's methods say)."""
    if any("NVML energy counters" in m or "GPU measured (NVML)" in m for m in methods):
        return "measured (NVML)"
    return "estimated"


def report(suite: Suite, run_ids: list[str]) -> bool:
    """Print one line per run, in suite order; whether none failed."""
    results = load(suite.output)
    print(
        f"{'technique':<44} {'status':<14} {'device':<7} {'dtype':<9} {'latency ms':>10} {'GPU peak MiB':>12}  energy"
    )
    runs = [results.run(run_id) for run_id in run_ids]
    for run in runs:
        rows = [m for m in results.measurements_of(run.run_id) if m.in_phase == "evaluate"]
        latency = next((m.value for m in rows if m.metric == "latency"), math.nan)
        peaks = [m.value for m in rows if m.metric == "accelerator_peak_allocated"]
        peak = f"{max(peaks):.1f}" if peaks else "–"  # runs on cpu have none
        energy = energy_source([m.method for m in rows if m.metric.startswith("energy")])
        where = f"{run.device:<7} {run.dtype:<9}"
        print(f"{run.label[:44]:<44} {run.status:<14} {where} {latency:>10.2f} {peak:>12}  {energy}")
        if run.status != STATUS_OK:
            print(f"  {run.status}: {run.error}")
    return all(run.status in FINAL_STATUSES for run in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu to check the script itself")
    parser.add_argument("--dtype", default="bfloat16", help="bfloat16 (default), float16 or float32")
    parser.add_argument("--hidden", type=int, default=768, help="hidden size (768 with 16 layers: ~100 M parameters)")
    parser.add_argument("--layers", type=int, default=16, help="decoder layers")
    parser.add_argument("--limit", type=int, default=50, help="documents per micro_world task")
    parser.add_argument("--quick", action="store_true", help="one short single-stream scenario instead of the suite's")
    parser.add_argument("--output", type=Path, help="results store to keep (default: a temporary folder)")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except EffbenchError as err:
        print(f"error: {err}; this check needs a GPU (or --device cpu --dtype float32 to check the script)")
        return 2
    with tempfile.TemporaryDirectory(prefix="effbench-gpu-check-") as folder:
        model_dir = Path(folder) / "llama-random"
        count = build_model(model_dir, args.hidden, args.layers)
        techniques, left_out = runnable(read_suite_file(ROOT / "suites" / "inference.yaml")["techniques"], device)
        print(f"model: random Llama, {count / 1e6:.1f} M parameters, in {model_dir}")
        for entry in left_out:
            print(f"left out: {entry}")
        overrides = {"scenarios": [QUICK_SCENARIO]} if args.quick else {}
        suite = load_suite(
            ROOT / "suites" / "inference.yaml",
            models=[str(model_dir)],
            techniques=techniques,
            limit=args.limit,
            device=device,
            dtype=args.dtype,
            output=args.output or Path(folder) / "results",
            **overrides,
        )
        try:
            result = run_suite(suite, force=True)
        except EffbenchError as err:
            print(f"error: {err}")
            return 2
        ok = report(suite, result.run_ids) and not result.failed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
