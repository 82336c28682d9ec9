"""Executors: where a planned run executes (a forked worker, this process, a cluster); the parent writes the store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from effbench.errors import EffbenchError


@dataclass(frozen=True)
class Job:
    """One unit of work for an executor: call ``target`` (``module:function``) with ``payload``."""

    key: str  # the run id (or a name for helper jobs such as listing tasks)
    target: str
    payload: dict[str, Any]
    timeout: float
    log_path: Path | None = None
    # payload keys whose values are paths of files on this machine that the target reads (a baseline's fidelity
    # reference in the store): an executor on other machines ships their content and points the key at its copy
    files: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What came back from one job: its result, or an error saying how the run failed."""

    result: dict[str, Any] | None = None
    error: str | None = None
    ready_after_s: float | None = None  # dispatch until the worker could start work


EventSink = Callable[[str], None]


class Executor:
    """Runs jobs and returns their outcomes; a failure of the job is an Outcome with ``error``, never an exception.

    ``configure`` returns the executor set up with the suite's options; ``start`` may begin starting workers
    early; ``run`` executes one job; ``run_many`` may run several at once and yields each outcome as it
    finishes (the default runs them one after another); ``close`` releases workers.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {}  # option name → what it sets (suite executor_options, --executor-option)

    def configure(self, options: Mapping[str, Any]) -> Executor:
        """This executor set up with the suite's options (a cluster's address, resources per run); checked up front.

        The default takes none; an executor with ``options`` returns a new instance holding their values.
        """
        check_option_names(self, options)
        return self

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


def check_option_names(executor: Executor, options: Mapping[str, Any]) -> None:
    """Refuse an option the executor does not take, in one line naming the ones it does."""
    unknown = sorted(set(options) - set(executor.options))
    if unknown:
        valid = f"valid: {', '.join(sorted(executor.options))}" if executor.options else "it takes none"
        raise EffbenchError(f"executor {executor.name!r} has no option {', '.join(map(repr, unknown))}; {valid}")


def check_executor(obj: Executor) -> None:
    """Reject a malformed executor at registration, naming what is wrong."""
    if not isinstance(obj, Executor) or not getattr(obj, "name", ""):
        raise TypeError(f"{obj!r} is not an effbench.Executor with a name")
