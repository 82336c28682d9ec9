"""Wall-clock time of `effbench evaluate` with no arguments, from a fresh results directory.

Target: <= 120 s on a 2-core CPU.  Run: python benchmarks/default_evaluate.py [RESULTS_DIR]
(RESULTS_DIR keeps the results store, e.g. to render the reference leaderboard from it.)
"""

import os
import subprocess
import sys
import tempfile
import time


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        output = sys.argv[1] if len(sys.argv) > 1 else f"{folder}/effbench-results"
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "effbench.cli", "evaluate", "--output", output],
            cwd=folder,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - started
    print(result.stdout)
    print(f"effbench evaluate (default suite, exit {result.returncode}): {elapsed:.1f} s wall clock")


if __name__ == "__main__":
    main()
