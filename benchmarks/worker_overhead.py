"""Per-run fixed overhead of the worker pool next to a fresh interpreter importing the ML stack.

Dispatch -> worker ready (before any model load) is what every run pays; a fresh
interpreter that imports torch + transformers + lm-eval is what it would pay without the
preloaded forkserver. Both are measured here, in the same run.  Target: <= 0.5 s per run.
Run: python benchmarks/worker_overhead.py
"""

import statistics
import subprocess
import sys
import time

from effbench.run.forkserver import WorkerPool

IMPORTS = (
    "import torch, transformers, lm_eval.evaluator, lm_eval.models.huggingface, "
    "transformers.models.llama.modeling_llama"
)


def main(runs: int = 10) -> None:
    pool = WorkerPool()
    started = time.perf_counter()
    first = pool.run("effbench.run.forkserver:ping", {}, timeout=300)
    print(f"forkserver start + preload (once per sweep): {time.perf_counter() - started:.2f} s")
    ready, round_trip = [], []
    for _ in range(runs):
        t = time.perf_counter()
        outcome = pool.run("effbench.run.forkserver:ping", {}, timeout=60)
        round_trip.append(time.perf_counter() - t)
        ready.append(outcome.ready_after_s)
        assert outcome.result["pid"] != first.result["pid"]
    fresh = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True)
        fresh.append(time.perf_counter() - t)
    print(f"worker dispatch -> ready, per run (median of {runs}): {statistics.median(ready):.3f} s")
    print(f"worker dispatch -> result returned, per run (median of {runs}): {statistics.median(round_trip):.3f} s")
    print(f"fresh interpreter importing torch+transformers+lm-eval (median of 3): {statistics.median(fresh):.2f} s")
    print(f"ratio fresh / pooled round trip: {statistics.median(fresh) / statistics.median(round_trip):.0f}x")


if __name__ == "__main__":
    main()
