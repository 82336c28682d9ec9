"""Interrupt sweeps at random moments and count what was lost, duplicated or left unreadable (target: 0, 0, 0).

Each trial starts `effbench evaluate` on one shared results store, sometimes a second sweep on the same
store at the same time (it must be refused), then stops the first with SIGINT (to its process group, as
Ctrl-C does), SIGTERM or SIGKILL after a random delay. After every trial the store is checked: every run
stored before is still stored (lost), no run or measurement appears twice (duplicated), no file fails to
read (unreadable), and no process of the sweep is left running. A last sweep completes the suite.
Run: python benchmarks/interrupts.py [--trials 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil

from effbench.store.load import load
from effbench.store.lock import LOCK_NAME
from effbench.store.results import ResultsStore

SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"
TECHNIQUES = ("prune-magnitude:sparsity=0.1", "prune-magnitude:sparsity=0.3", "dtype:dtype=bf16", "prune-nm")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


def command(out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "effbench.cli", "evaluate", "--output", str(out), "--task", "micro_copy", *extra]
    args += ["--limit", "8", "--scenario", SCENARIO]
    for technique in TECHNIQUES:
        args += ["--technique", technique]
    return args


def check(out: Path) -> tuple[int, int]:
    """Duplicated entries and unreadable files in the store."""
    if not (out / "runs").is_dir():
        return 0, 0
    results = load(out, "store")
    ids = Counter(run.run_id for run in results.runs)
    duplicated = sum(n - 1 for n in ids.values())
    for run in results.runs:
        keys = Counter((m.task, m.metric, m.phase, m.scenario) for m in results.measurements_of(run.run_id))
        duplicated += sum(n - 1 for n in keys.values())
    return duplicated, len(results.problems)


def holds_the_lock(out: Path, sweep: subprocess.Popen) -> bool:
    """Wait until the sweep has locked the store (its pid in the lock file); False if it ended first."""
    lock = out / LOCK_NAME
    while sweep.poll() is None:
        if lock.is_file() and f'"pid": {sweep.pid}' in lock.read_text():
            return True
        time.sleep(0.1)
    return False


def main(trials: int, seed: int) -> None:
    rng = random.Random(seed)
    out = Path(tempfile.mkdtemp(prefix="effbench-interrupts-")) / "results"
    lost = duplicated = unreadable = survivors = refused = concurrent = 0
    for trial in range(trials):
        before = {k for k, v in ResultsStore(out).statuses().items() if v == "ok"}
        sweep = subprocess.Popen(  # --force: every trial reruns every run, so the signal lands mid-run
            command(out, "--force"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal, even from `cmd &`
        )
        second = None
        if trial % 4 == 0 and holds_the_lock(out, sweep):  # a second sweep on the same store at the same time
            concurrent += 1
            second = subprocess.run(command(out), capture_output=True, text=True, timeout=600)
            refused += second.returncode == 2 and "another effbench sweep" in second.stderr
        time.sleep(rng.uniform(3, 25))
        how = rng.choice(SIGNALS)
        descendants = [p.pid for p in psutil.Process(sweep.pid).children(recursive=True)]
        if how == signal.SIGINT:
            os.killpg(sweep.pid, how)  # Ctrl-C reaches the whole foreground group
        else:
            os.kill(sweep.pid, how)
        sweep.wait(timeout=120)
        time.sleep(2)
        alive = [p for p in descendants if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
        survivors += len(alive)
        after = {k for k, v in ResultsStore(out).statuses().items() if v == "ok"}
        dup, bad = check(out)
        lost += len(before - after)
        duplicated += dup
        unreadable += bad
        refusal = "-" if second is None else second.returncode
        print(
            f"trial {trial + 1:2d}: {how.name:7s} exit {sweep.returncode:4d}, runs stored {len(after)}, "
            f"second sweep {refusal}, processes left {len(alive)}",
            flush=True,
        )
    final = subprocess.run(command(out), capture_output=True, text=True, timeout=900)
    results = load(out, "store")
    dup, bad = check(out)
    print(f"final sweep: exit {final.returncode}; {len(results.runs)} runs stored (expected {1 + len(TECHNIQUES)})")
    print(f"over {trials} trials: lost {lost}, duplicated {duplicated + dup}, unreadable {unreadable + bad}, "
          f"processes left running {survivors}; concurrent sweeps refused {refused} of {concurrent}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    main(options.trials, options.seed)
