"""Fine-tuning micro-m on the new micro_sub skill: full fine-tuning against LoRA, DoRA, QLoRA and IA3, one budget.

One sweep through `effbench evaluate` (baseline, finetune-full, lora, dora, qlora, ia3; 300 steps of 32
examples each) evaluated on the first 300 documents of micro_sub (the skill) and of micro_add, micro_copy,
micro_recall (forgetting), then prints each run's stored training figures and accuracies.
Checks: full fine-tuning takes micro_sub from near chance to at least halfway to perfect, LoRA trains
≤ 2 % of the parameters and the RSS its training adds (the train window's rise: peft is imported before the window
opens, so the process's absolute peak is no measure of the method) is below full fine-tuning's. Exits 1 when one
fails.
Run: OMP_NUM_THREADS=1 python benchmarks/finetuning.py [RESULTS_DIR]    (minutes on 2 CPU cores; on cores busy
with other jobs, two OpenMP threads spin at every barrier: full fine-tuning took over 30 minutes so, here)
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from effbench.store.load import load

TECHNIQUES = ["baseline", "finetune-full", "lora", "dora", "qlora", "ia3"]
TASKS = ["micro_sub", "micro_add", "micro_copy", "micro_recall"]
TRAINING = {"data": "micro_sub", "steps": 300, "batch_size": 32, "target_loss": 0.3}
SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"
TRAIN_FIGURES = [
    ("train_time", "train s", "{:.0f}"),
    ("train_step_time", "s/step", "{:.3f}"),
    ("train_tokens_per_s", "tok/s", "{:.0f}"),
    ("train_flops_per_s", "GFLOP/s", "{:.2f}"),
    ("peak_memory", "peak RSS MiB", "{:.0f}"),
    ("peak_memory_increase", "RSS rise MiB", "{:.1f}"),
    ("trainable_params_pct", "trainable %", "{:.2f}"),
    ("checkpoint_size", "ckpt MB", "{:.3f}"),
    ("final_train_loss", "final loss", "{:.3f}"),
    ("steps_to_target_loss", "steps≤0.3", "{:.0f}"),
]


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        output = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(folder) / "results"
        suite = Path(folder) / "suite.yaml"
        suite.write_text(
            yaml.safe_dump(
                {
                    "name": "finetuning",
                    "models": ["zoo:micro-m"],
                    "techniques": TECHNIQUES,
                    "tasks": TASKS,
                    "limit": 300,
                    "scenarios": [SCENARIO],
                    "training": TRAINING,
                    "timeout": 3600,
                    "output": str(output),
                }
            )
        )
        started = time.perf_counter()
        sweep = subprocess.run([sys.executable, "-m", "effbench.cli", "evaluate", str(suite)], capture_output=True)
        print(f"sweep: exit {sweep.returncode} in {time.perf_counter() - started:.0f} s; training {TRAINING}")
        if sweep.returncode:
            print(sweep.stderr.decode()[-3000:])
        results = load(output)
    figures: dict[str, dict[str, float]] = {}
    for run in results.runs:
        rows = results.measurements_of(run.run_id)
        mine = {m.metric: m.value for m in rows if m.in_phase == "train" and m.step is None}
        for m in rows:
            if m.task and m.metric in ("exact_match", "acc"):
                mine[m.task] = m.value
                mine[f"{m.task}_stderr"] = m.stderr or 0.0
        figures[run.technique] = mine
        print(f"\n{run.label}: {run.status} {run.error or ''}")
        print("  " + "  ".join(f"{label} {fmt.format(mine[k])}" for k, label, fmt in TRAIN_FIGURES if k in mine))
        print("  " + "  ".join(f"{t} {mine.get(t, float('nan')):.3f}±{mine.get(t + '_stderr', 0):.3f}" for t in TASKS))
        curve = [m.value for m in sorted((m for m in rows if m.metric == "train_loss"), key=lambda m: m.step)]
        if curve:
            print("  loss every 50 steps: " + " ".join(f"{loss:.3f}" for loss in curve[::50]))
        for warning in run.warnings:
            print(f"  warning: {warning}")
    failures = []
    base, full, lora = (figures.get(n, {}) for n in ("baseline", "finetune-full", "lora"))
    if not full.get("micro_sub", 0) >= (base.get("micro_sub", 0) + 1) / 2:
        failures.append("full fine-tuning did not take micro_sub at least halfway from the baseline to perfect")
    if not lora.get("trainable_params_pct", 100) <= 2:
        failures.append("LoRA trains more than 2 % of micro-m")
    if not lora.get("peak_memory_increase", 1e9) < full.get("peak_memory_increase", 0):
        failures.append("LoRA's training RSS rise is not below full fine-tuning's")
    if lora and full:
        gap = full["micro_sub"] - lora["micro_sub"]
        ci = 1.96 * (full["micro_sub_stderr"] ** 2 + lora["micro_sub_stderr"] ** 2) ** 0.5
        print(f"\nmicro_sub: full − LoRA = {gap:+.3f} (95 % CI half-width of the difference {ci:.3f})")
    print("\n" + ("\n".join(f"FAIL: {f}" for f in failures) or "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
