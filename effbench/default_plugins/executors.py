"""The builtin executors: a fresh forked worker per run (isolation, deadlines), this very process, or a Ray cluster."""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path

from effbench.api.executor import EventSink, Executor, Job, Outcome
from effbench.errors import error_text
from effbench.hookspecs import hookimpl
from effbench.run.forkserver import WorkerPool
from effbench.run.raycluster import RayExecutor
from effbench.run.targets import call_target


class ForkserverExecutor(Executor):
    """Each run in its own process, forked from a server that imported torch, transformers and lm-eval once.

    A run that raises, aborts the interpreter, is killed or exceeds its timeout becomes a failed outcome.
    """

    name = "forkserver"
    description = "each run in a fresh process forked from a preloaded server: crash and timeout containment"

    def __init__(self) -> None:
        self.pool: WorkerPool | None = None

    def start(self, logs: Path) -> None:
        self.pool = self.pool or WorkerPool()
        self.pool.start(logs / "forkserver.log")

    def run(self, job: Job, on_event: EventSink | None = None) -> Outcome:
        self.pool = self.pool or WorkerPool()
        return self.pool.run(job.target, job.payload, timeout=job.timeout, log_path=job.log_path, on_event=on_event)


class InlineExecutor(Executor):
    """Runs in this process, one after another: for tests and debugging (no timeout, no crash containment)."""

    name = "inline"
    description = "in this process: breakpoints and profilers work; a crash or hang stops the sweep"

    def run(self, job: Job, on_event: EventSink | None = None) -> Outcome:
        with contextlib.ExitStack() as stack:
            if job.log_path:
                log = stack.enter_context(open(job.log_path, "a"))
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            try:
                return Outcome(result=call_target(job.target, job.payload, on_event or (lambda text: None)))
            except Exception as err:  # a failed run is a failed row, as in a worker
                traceback.print_exc()
                return Outcome(error=error_text(err))


@hookimpl
def register_executors(register):
    register(ForkserverExecutor())
    register(InlineExecutor())
    register(RayExecutor())
