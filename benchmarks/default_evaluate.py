"""Wall-clock time of `effbench evaluate` with no arguments, and of the refusals of bad input before any run.

Targets (issue 11): a malformed model config and an unknown technique reported in <= 5 s each; the default
`effbench evaluate` <= 30 s on a 2-core CPU (with lm-eval's task names already cached by an earlier sweep,
as on any machine after its first sweep; the first sweep's time is printed too).
Run: python benchmarks/default_evaluate.py [RESULTS_DIR]
(RESULTS_DIR keeps the results store, e.g. to render the reference leaderboard from it.)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from effbench.reference import zoo


def timed(folder: str, *args: str, cache: str) -> tuple[float, subprocess.CompletedProcess]:
    """Run the command line as a user would (a fresh process) and time it."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "effbench.cli", *args],
        cwd=folder,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "EFFBENCH_CACHE": cache},
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, result


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        cache = f"{folder}/cache"
        broken = Path(folder) / "broken-model"
        shutil.copytree(zoo.resolve("zoo:micro-s"), broken)
        config = json.loads((broken / "config.json").read_text())
        (broken / "config.json").write_text(json.dumps({**config, "num_hidden_layers": "four"}))
        for what, args in (
            ("malformed model config", ("evaluate", "--model", str(broken), "--output", f"{folder}/a")),
            ("unknown technique", ("evaluate", "--technique", "prune-magnitud", "--output", f"{folder}/b")),
        ):
            elapsed, result = timed(folder, *args, cache=cache)
            print(f"{what}: exit {result.returncode} in {elapsed:.1f} s: {result.stderr.strip().splitlines()[-1]}")
        first, _ = timed(folder, "evaluate", "--output", f"{folder}/first", cache=cache)
        print(f"first sweep on this machine (lm-eval's task names listed and cached): {first:.1f} s")
        output = sys.argv[1] if len(sys.argv) > 1 else f"{folder}/effbench-results"
        elapsed, result = timed(folder, "evaluate", "--output", output, cache=cache)
    print(result.stdout)
    print(f"effbench evaluate (default suite, exit {result.returncode}): {elapsed:.1f} s wall clock")


if __name__ == "__main__":
    main()
