"""What the training benchmarks share: a sweep of training stacks on a saved model, and its train figures printed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from effbench.store.load import load

SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"
Figure = tuple[str, str, str]  # (train-phase quantity, column label, format)


def sweep(model_dir: Path, techniques: list[str], training: dict[str, Any], folder: Path) -> Any:
    """Run ``effbench evaluate`` on the stacks (a fresh worker per run: its peak RSS is its own); the results."""
    output, suite = folder / "results", folder / "suite.yaml"
    settings = {"name": "training-benchmark", "models": [str(model_dir)], "techniques": techniques,
                "tasks": ["micro_agree"], "limit": 4, "scenarios": [SCENARIO], "training": training, "timeout": 3600,
                "output": str(output)}  # fmt: skip
    suite.write_text(yaml.safe_dump(settings))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "effbench.cli", "evaluate", str(suite)], capture_output=True)
    print(f"sweep: exit {run.returncode} in {time.perf_counter() - started:.0f} s")
    if run.returncode:
        print(run.stderr.decode()[-3000:])
    return load(output)


def table(results: Any, figures: list[Figure]) -> list[tuple[Any, dict[str, float]]]:
    """Print each training run's train-phase figures as a Markdown table; each run with its figures."""
    by_run: list[tuple[Any, dict[str, float]]] = []
    print("\n| run | " + " | ".join(label for _, label, _ in figures) + " |")
    print("|---|" + "---|" * len(figures))
    for run in results.runs:
        if run.technique == "baseline":
            continue
        train = {m.metric: m.value for m in results.measurements_of(run.run_id) if m.in_phase == "train"}
        by_run.append((run, train))
        cells = [fmt.format(train[key]) if key in train else "–" for key, _, fmt in figures]
        print(f"| `{run.label}` | " + " | ".join(cells) + " |")
    return by_run


def verdict(failures: list[str]) -> int:
    """Print the checks that failed (or that all passed); the exit status."""
    print("\n" + ("\n".join(f"FAIL: {f}" for f in failures) or "all checks passed"))
    return 1 if failures else 0
