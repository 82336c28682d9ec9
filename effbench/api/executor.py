"""Executors: where a planned run executes (a forked worker, this process, a cluster); the parent writes the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: call ``target`` (``module:function``) with ``payload``."""

    key: str  # the run id (or a name for helper jobs such as listing tasks)
    target: str
    payload: dict[str, Any]
    timeout: float
    log_path: Path | None = None


@dataclass
class Outcome:
    """What came back from one job: its result, or an error saying how the run failed."""

    result: dict[str, Any] | None = None
    error: str | None = None
    ready_after_s: float | None = None  # dispatch until the worker could start work


EventSink = Callable[[str], None]


class Executor:
    """Runs jobs and returns their outcomes; a failure of the job is an Outcome with ``error``, never an exception.

    ``start`` may begin starting workers early; ``run`` executes one job; ``run_many`` may run several at
    once and yields each outcome as it finishes (the default runs them one after another); ``close``
    releases workers.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def start(self, logs: Path) -> None:
        """Begin starting workers in the background while the sweep is checked; their own output goes to ``logs``."""

    def run(self, job: Job, on_event: EventSink | None = None) -> Outcome:
        """Execute one job and wait for its outcome."""
        raise NotImplementedError

    def run_many(self, jobs: Iterable[Job], on_event: EventSink | None = None) -> Iterator[tuple[Job, Outcome]]:
        """Execute jobs, yielding (job, outcome) as each finishes."""
        for job in jobs:
            yield job, self.run(job, on_event)

    def close(self) -> None:
        """Release whatever the executor started (the default holds nothing)."""


def check_executor(obj: Executor) -> None:
    """Reject a malformed executor at registration, naming what is wrong."""
    if not isinstance(obj, Executor) or not getattr(obj, "name", ""):
        raise TypeError(f"{obj!r} is not an effbench.Executor with a name")
