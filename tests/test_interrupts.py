"""One writer per store; SIGTERM and kill -9 of a sweep stop its worker and lose or duplicate nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from effbench.store.load import load
from effbench.store.lock import LOCK_NAME
from effbench.store.results import ResultsStore
from tests.conftest import QUICK_SCENARIO, cli, make_plugin_dist
from tests.test_evaluate import CRASHING

TECHNIQUES = ("prune-magnitude:sparsity=0.3",)


def _args(out, techniques: tuple[str, ...] = TECHNIQUES) -> list[str]:
    args = ["evaluate", "--output", str(out), "--task", "micro_copy", "--limit", "8", "--scenario", QUICK_SCENARIO]
    for technique in techniques:
        args += ["--technique", technique]
    return args


def _sweep(out) -> subprocess.Popen:
    command = [sys.executable, "-m", "effbench.cli", *_args(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def _as_from_a_terminal() -> None:
    """Ctrl-C delivered as in a terminal: a test runner started in the background inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _worker_started(sweep: subprocess.Popen) -> bool:
    """A run's worker is busy: the sweep has its resource tracker, its forkserver and a worker forked from it."""
    return len(psutil.Process(sweep.pid).children(recursive=True)) >= 3


def _all_gone(pids: list[int], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def test_a_second_sweep_on_the_same_store_is_refused_while_the_first_writes(tmp_path):
    out = tmp_path / "results"
    first = _sweep(out)
    try:
        _wait_for(lambda: (out / LOCK_NAME).is_file() and (out / LOCK_NAME).read_text())
        second = cli(*_args(out), "--executor", "inline")
        assert second.returncode == 2
        assert f"another effbench sweep (pid {first.pid}, since" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 or "choose another --output" in second.stderr
    finally:
        _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert len(load(out).runs) == 1 + len(TECHNIQUES)


def test_ctrl_c_sigterm_and_kill_minus_9_stop_the_worker_at_once_and_store_nothing_half_done(tmp_path, plugin_path):
    root, env = plugin_path
    make_plugin_dist(root, "crash-dist", "crash", "crash_plugin", CRASHING)  # crash-sleep: asleep in apply
    out = tmp_path / "results"
    args = [sys.executable, "-m", "effbench.cli", *_args(out, ("crash-sleep",))]
    moments = (
        (signal.SIGINT, "starting"),
        (signal.SIGINT, "running"),
        (signal.SIGTERM, "running"),
        (signal.SIGKILL, "running"),
    )
    for how, moment in moments:
        log = tmp_path / f"{how.name}-{moment}.log"
        with open(log, "w") as stderr:  # a file, not a pipe: a pipe would tie the workers' fate to its reader
            sweep = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, **env},
                start_new_session=True,
                preexec_fn=_as_from_a_terminal,
            )
        try:
            if moment == "starting":  # the forkserver is still importing torch and lm-eval
                _wait_for(lambda: (out / LOCK_NAME).is_file())
            else:
                _wait_for(lambda sweep=sweep: len(ResultsStore(out).statuses()) == 1 and _worker_started(sweep))
                time.sleep(1)  # the baseline's worker has ended; the one asleep in apply is the run in progress
                _wait_for(lambda sweep=sweep: _worker_started(sweep))  # forked later on a loaded machine
            descendants = [p.pid for p in psutil.Process(sweep.pid).children(recursive=True)]
            if how == signal.SIGINT:
                os.killpg(sweep.pid, how)  # Ctrl-C: the terminal signals the whole process group
            else:
                os.kill(sweep.pid, how)  # the sweep's process only: its forkserver and worker must follow it
            sweep.wait(timeout=60)
        except BaseException:  # a step that failed leaves no sweep behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(sweep.pid, signal.SIGKILL)
            raise
        assert _all_gone(descendants), f"a worker outlived the sweep after {how.name}"
        said = log.read_text()
        if how != signal.SIGKILL:
            assert sweep.returncode == 128 + how
            assert "the run in progress was stopped and not stored" in said
            assert "Traceback" not in said  # one line, from the sweep; nothing from the server or the worker
        assert list(ResultsStore(out).statuses().values()) == ["ok"] * (moment == "running")  # nothing half-done


ORPHAN = """
import os, subprocess, sys, time
code = "from effbench.run.forkserver import {guard}; {guard}(); print(flush=True); time.sleep(120)"
child = subprocess.Popen([sys.executable, "-c", "import time; " + code], stdout=subprocess.PIPE, text=True)
child.stdout.readline()  # the guard is in place
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize(
    "guard",
    [
        "follow_the_sweep",  # the forkserver: Python's own outlives a parent killed with -9
        "die_with_parent",  # a worker (a rank): killed by the kernel when its forkserver (worker) ends
    ],
)
def test_a_guarded_process_does_not_outlive_its_killed_parent(guard):
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN.format(guard=guard)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    assert _all_gone([child], seconds=5)
