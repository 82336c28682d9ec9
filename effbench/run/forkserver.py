"""Isolated worker processes: every run in its own process, forked from a preloaded forkserver.

The forkserver imports torch, transformers, lm-eval and the plugins once (``effbench.run.preload``);
each run is then a cheap fork of it. A run that raises, aborts the interpreter, is killed
or exceeds its timeout only takes its own process down and comes back as a failed outcome.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver
import multiprocessing.popen_forkserver
import os
import signal
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from effbench.api.executor import Outcome
from effbench.errors import error_text
from effbench.run.targets import call_target

PRELOAD = ["effbench.run.preload"]
POLL_SECONDS = 0.2


PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_SECONDS = 0.5
SERVER_LOG_ENV = "EFFBENCH_SERVER_LOG"


def follow_the_sweep() -> None:
    """In the forkserver: leave Ctrl-C to the sweep, and exit as soon as the sweep's process is gone.

    The terminal's SIGINT reaches the whole process group; the sweep stops the worker itself, so the
    server and its workers ignore it (no traceback of a half-imported library, no failed row for a run
    that was only interrupted). Python's forkserver outlives a parent killed with -9: a thread checks
    twice a second, and the workers die with the server (``die_with_parent``), so a killed
    sweep leaves no process behind (on a GPU, none holding its memory).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = os.environ.get(SERVER_LOG_ENV)
    if log:  # library warnings while importing go to the sweep's log, not over the user's terminal
        handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        os.close(handle)
    sweep = os.getppid()

    def watch() -> None:
        while os.getppid() == sweep:
            time.sleep(WATCH_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="effbench-sweep-watch", daemon=True).start()


def die_with_parent() -> None:
    """Be killed by the kernel when the process that started this one ends (a worker's forkserver, a rank's worker)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the forkserver went before the request took effect
        os._exit(1)


def _child(conn: Connection, target: str, payload: dict[str, Any], log_path: str | None, dispatched: float) -> None:
    """Worker body: report readiness, run ``target(payload, emit)``, send back its result or traceback."""
    die_with_parent()
    conn.send(("ready", time.perf_counter() - dispatched))
    if log_path:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    try:
        conn.send(("result", call_target(target, payload, lambda text: conn.send(("event", text)))))
    except BaseException as err:  # everything must come back as a failed outcome
        traceback.print_exc()
        conn.send(("error", error_text(err)))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"worker process died ({name})"
    return f"worker process exited with code {exitcode} before reporting a result"


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Hide the caller's ``__main__`` while a worker's start-up data is gathered, so the worker never runs it.

    multiprocessing tells every new process which script (or ``-m`` module) is ``__main__`` and runs it
    again there as ``__mp_main__``, for functions defined in it. A worker runs effbench's own functions
    only, and running the user's script again would run its ``effbench.evaluate(...)`` again (a script
    without an ``if __name__ == "__main__":`` guard): the worker sees a bare ``__main__`` instead.
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


class _PopenWithoutMain(multiprocessing.popen_forkserver.Popen):
    """Starts a worker through the forkserver without the caller's main module."""

    def _launch(self, process_obj: multiprocessing.process.BaseProcess) -> None:
        with _main_module_hidden():
            super()._launch(process_obj)


class WorkerProcess(multiprocessing.context.ForkServerProcess):
    """A forkserver process that does not import the caller's ``__main__`` (scripts, ``python -m``) again."""

    @staticmethod
    def _Popen(process_obj: multiprocessing.process.BaseProcess) -> _PopenWithoutMain:
        return _PopenWithoutMain(process_obj)


class WorkerPool:
    """Runs callables in fresh processes forked from one preloaded forkserver."""

    def __init__(self, preload: list[str] | None = None) -> None:
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD if preload is None else preload)

    def start(self, log_path: Path) -> None:
        """Start the forkserver now: it imports torch, transformers and lm-eval while the parent validates.

        Its own output (library warnings while it imports) goes to ``log_path``, not to the user's terminal.
        """
        log_path.parent.mkdir(parents=True, exist_ok=True)
        previous = os.environ.get(SERVER_LOG_ENV)
        os.environ[SERVER_LOG_ENV] = str(log_path)  # the server is spawned with this environment
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            if previous is None:
                del os.environ[SERVER_LOG_ENV]
            else:
                os.environ[SERVER_LOG_ENV] = previous

    def run(
        self,
        target: str,
        payload: dict[str, Any],
        *,
        timeout: float,
        log_path: Path | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> Outcome:
        """Run ``module:function`` on ``payload`` in a new worker and wait at most ``timeout`` seconds."""
        receiver, sender = self.context.Pipe(duplex=False)
        dispatched = time.perf_counter()
        process = WorkerProcess(
            target=_child,
            args=(sender, target, payload, str(log_path) if log_path else None, dispatched),
            daemon=True,
        )
        process.start()
        sender.close()
        outcome = Outcome()
        deadline = time.monotonic() + timeout
        try:
            while outcome.result is None and outcome.error is None:
                if time.monotonic() > deadline:
                    outcome.error = f"timed out after {timeout:g} s"
                    break
                if not receiver.poll(POLL_SECONDS):
                    continue
                try:
                    kind, value = receiver.recv()
                except EOFError:
                    process.join(5)
                    outcome.error = _death_reason(process.exitcode)
                    break
                if kind == "ready":
                    outcome.ready_after_s = value
                elif kind == "event":  # progress, whether or not anyone listens: never an error
                    if on_event:
                        on_event(value)
                elif kind == "result":
                    outcome.result = value
                else:  # "error"
                    outcome.error = value
        finally:
            if process.is_alive():
                process.join(2 if outcome.result is not None else 0)
            if process.is_alive():
                process.kill()
                process.join()
            receiver.close()
        return outcome


def ping(payload: dict[str, Any], emit: Callable[[str], None]) -> dict[str, Any]:
    """A run that does nothing: measures the pool's own overhead and checks a worker is alive."""
    return {"pid": os.getpid()}
