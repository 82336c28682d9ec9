"""Every technique on every common model family through `effbench evaluate`: the matrix of ok / not applicable / failed.

Builds tiny random-weight models of Llama, Mistral, Qwen2, Qwen3, Phi-3, Gemma 2, Gemma 3, GPT-2, GPT-NeoX and
OPT (``effbench.reference.families``; no download), runs one sweep of all of them × every builtin and first-party
technique (``families.TRIALS``) on a short task and scenario, and prints the matrix and every refusal's reason.
Exits 1 if any run failed (a technique must act or be refused, never crash).
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
SHORT = {"ok": "ok", "not-applicable": "n/a", "failed": "FAILED"}


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
        runs = load(output).runs
    cells = {(Path(r.model).name, r.label): r for r in runs}
    labels = list(dict.fromkeys(r.label for r in runs))
    width = max(map(len, labels))
    print(f"{len(runs)} runs of {len(models)} families in {seconds:.0f} s (effbench evaluate exit {sweep.returncode})")
    print(" " * width + " " + " ".join(f"{f[:8]:>8}" for f in families.FAMILIES))
    for label in labels:
        row = [SHORT.get(getattr(cells.get((f, label)), "status", ""), "-") for f in families.FAMILIES]
        print(f"{label:<{width}} " + " ".join(f"{c:>8}" for c in row))
    counts = {status: sum(r.status == status for r in runs) for status in SHORT}
    print(", ".join(f"{n} {status}" for status, n in counts.items()))
    for r in sorted(runs, key=lambda r: (r.status, r.label)):
        if r.status != "ok":
            print(f"{r.status:>14}  {Path(r.model).name:<9} {r.label}: {r.error}")
    return 1 if counts["failed"] or sweep.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
