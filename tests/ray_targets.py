"""Job targets for the ray executor's tests: each does one thing a run can do (finish, raise, die, hang, read)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def report(payload: dict[str, Any], emit: Callable[[str], None]) -> dict[str, Any]:
    """Finish: say where it ran and with which resources, and print a line for the run's log."""
    import ray

    print(f"ran {payload['name']}", flush=True)
    resources = ray.get_runtime_context().get_assigned_resources()
    threads, mark = os.environ.get("OMP_NUM_THREADS"), os.environ.get("EFFBENCH_TEST_MARK")
    return {"pid": os.getpid(), "resources": resources, "threads": threads, "mark": mark}


def read_file(payload: dict[str, Any], emit: Callable[[str], None]) -> dict[str, Any]:
    """Read the file the parent named: the executor must ship it (the parent's disk is not the worker's)."""
    return {"path": payload["reference"], "content": Path(payload["reference"]).read_text()}


def raises(payload: dict[str, Any], emit: Callable[[str], None]) -> None:
    raise RuntimeError("this run is broken on purpose")


def dies(payload: dict[str, Any], emit: Callable[[str], None]) -> None:
    os.abort()


def hangs(payload: dict[str, Any], emit: Callable[[str], None]) -> None:
    """Hang, having said where (``pid_file``) so a test can see the process go."""
    if "pid_file" in payload:
        Path(payload["pid_file"]).write_text(str(os.getpid()))
    time.sleep(600)
