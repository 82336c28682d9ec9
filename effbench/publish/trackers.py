"""Exporting each stored run to the suite's trackers right after it is written.

A tracker that fails (unreachable server, bad credentials, a bug) is reported with the run's id; the run stays
stored as it was, and the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effbench.api.tracker import TrackedRun, Tracker
from effbench.config.suite import Suite
from effbench.errors import EffbenchError, error_text
from effbench.plugins import Registry
from effbench.present import report
from effbench.records import RunRecord
from effbench.store.load import Results, load


@dataclass(frozen=True)
class TrackerFailure:
    """A run a tracker could not export, and why."""

    run_id: str
    tracker: str
    error: str

    def __str__(self) -> str:
        return f"tracker {self.tracker!r} could not export run {self.run_id} (it stays stored): {self.error}"


def chosen_trackers(suite: Suite, reg: Registry) -> list[tuple[Tracker, dict[str, Any]]]:
    """The suite's trackers with validated parameters: an unknown name or a bad parameter stops the sweep first."""
    chosen = []
    for spec in suite.trackers:
        if not reg.trackers:
            raise EffbenchError(
                f"unknown tracker {spec.name!r}: no tracker is installed (effbench's MLflow tracker: "
                "pip install -e ./plugins/effbench-mlflow in effbench's checkout)"
            )
        tracker = reg.tracker(spec.name)
        try:
            chosen.append((tracker, tracker.validate(dict(spec.params))))
        except (TypeError, ValueError) as err:
            raise EffbenchError(f"tracker {spec.name!r}: {err}") from None
    return chosen


def run_report(stored: Results, run: RunRecord, unstable_cv: float) -> str:
    """The run's comparison table beside its model's latest baseline on the same machine and placement (Markdown)."""
    where = (run.model, run.hardware_fingerprint, run.placement)
    baselines = sorted(
        (
            r
            for r in stored.runs
            if r.technique == "baseline" and (r.model, r.hardware_fingerprint, r.placement) == where
        ),
        key=lambda r: (r.settings == run.settings, r.finished_at is not None, r.finished_at),
    )
    chosen = list(dict.fromkeys([*(b.run_id for b in baselines[-1:]), run.run_id]))
    return "\n".join(report.to_markdown(table) for table in report.build(stored, chosen, unstable_cv))


def tracked_run(store: Path, run_id: str, unstable_cv: float) -> TrackedRun:
    """A run as stored (read back, so a tracker sees exactly what the store holds) with its report."""
    stored = load(store, "store")
    run = stored.run(run_id)
    try:
        text = run_report(stored, run, unstable_cv)
    except Exception as err:  # a report that cannot be built must not keep the figures from the trackers
        text = f"no report: {error_text(err)}"
    return TrackedRun(run, stored.measurements_of(run_id), text, store)


@dataclass
class Exporter:
    """Sends each stored run to the chosen trackers; what failed is kept in ``failures`` (and told to ``warn``)."""

    store: Path
    trackers: list[tuple[Tracker, dict[str, Any]]]
    unstable_cv: float
    warn: Callable[[TrackerFailure], None] | None = None
    failures: list[TrackerFailure] = field(default_factory=list)

    @classmethod
    def for_suite(cls, suite: Suite, reg: Registry, warn: Callable[[TrackerFailure], None] | None = None) -> Exporter:
        """The suite's trackers, checked before any run."""
        return cls(suite.output, chosen_trackers(suite, reg), suite.unstable_cv, warn)

    def __call__(self, run: RunRecord) -> None:
        """Export one run just stored to every tracker."""
        if not self.trackers:
            return
        tracked = tracked_run(self.store, run.run_id, self.unstable_cv)
        for tracker, params in self.trackers:
            try:
                tracker.log_run(tracked, **params)
            except Exception as err:  # plugin code talking to a server: reported, never the run's failure
                failure = TrackerFailure(run.run_id, tracker.name, error_text(err))
                self.failures.append(failure)
                if self.warn:
                    self.warn(failure)
