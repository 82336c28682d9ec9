"""Every technique on every common model family through `effbench evaluate`: the matrix of ok / not applicable / failed.

Builds tiny random-weight models of Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3, GPT-2, GPT-NeoX and
OPT (``effbench.reference.families``; no download), runs one sweep of all of them × every builtin and first-party
technique (``families.TRIALS``) on a short task and scenario, and prints the matrix and every refusal's reason.
A run that changes the weights must show it in its stored figures (``families.STORED_EFFECTS``, against the
family's baseline), else its cell reads NO-EFFECT. Exits 1 on any failed or no-effect run.
Run: python benchmarks/architectures.py [RESULTS_DIR]    (about 15-25 minutes on 2 CPU cores)
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from effbench.reference import families
from effbench.store.load import load

SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"
SHORT = {"ok": "ok", "not-applicable": "n/a", "failed": "FAILED", "no-effect": "NO-EFFECT"}


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        output = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "results"
        models = [str(families.save(family, root / family)) for family in families.FAMILIES]
        suite = root / "suite.yaml"
        suite.write_text(
            yaml.safe_dump(
                {
                    "name": "architectures",
                    "models": models,
                    "techniques": ["baseline", *families.TRIALS],
                    "tasks": ["micro_copy"],
                    "limit": 4,
                    "bootstrap_iters": 0,
                    "scenarios": [SCENARIO],
                    "output": str(output),
                }
            )
        )
        started = time.perf_counter()
        sweep = subprocess.run([sys.executable, "-m", "effbench.cli", "evaluate", str(suite)], capture_output=True)
        seconds = time.perf_counter() - started
        results = load(output)
    runs = results.runs
    figures = {(m.run_id, m.metric): m.value for m in results.measurements if not m.scenario and m.phase == "evaluate"}
    baselines = {r.model: r.run_id for r in runs if r.technique == "baseline"}
    status = {r.run_id: r.status for r in runs}
    for r in runs:
        if r.status == "ok" and r.technique in families.STORED_EFFECTS:
            metric, ratio = families.STORED_EFFECTS[r.technique]
            base = figures.get((baselines.get(r.model), metric))
            if not base or figures.get((r.run_id, metric), base) >= ratio * base:
                status[r.run_id] = "no-effect"
    cells = {(Path(r.model).name, r.label): status[r.run_id] for r in runs}
    labels = sorted({r.label for r in runs}, key=lambda label: (label != "baseline", label))
    width = max(map(len, labels))
    print(f"{len(runs)} runs of {len(models)} families in {seconds:.0f} s (effbench evaluate exit {sweep.returncode})")
    print(" " * width + " " + " ".join(f"{f[:8]:>8}" for f in families.FAMILIES))
    for label in labels:
        row = [SHORT.get(cells.get((f, label), ""), "-") for f in families.FAMILIES]
        print(f"{label:<{width}} " + " ".join(f"{c:>8}" for c in row))
    counts = {name: sum(s == name for s in status.values()) for name in SHORT}
    print(", ".join(f"{n} {name}" for name, n in counts.items()))
    for r in sorted(runs, key=lambda r: (status[r.run_id], r.label)):
        if status[r.run_id] != "ok":
            print(f"{status[r.run_id]:>14}  {Path(r.model).name:<9} {r.label}: {r.error or 'stored figures unchanged'}")
    return 1 if counts["failed"] or counts["no-effect"] or sweep.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
