"""Tracker: sends each stored run to an experiment tracker (MLflow, Weights & Biases, ...) after it is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # plugins import effbench without pyarrow's import cost
    from effbench.records import MeasurementRow, RunRecord


@dataclass(frozen=True)
class TrackedRun:
    """A run as a tracker receives it: the stored rows, its comparison table and where it is stored."""

    run: RunRecord
    measurements: list[MeasurementRow]
    report: str  # the run's comparison table beside its baseline, as Markdown (what `effbench report` writes)
    store: Path  # the results store the run is in


class Tracker:
    """Exports stored runs; chosen per suite (``trackers:``) or per command (``--tracker NAME[:k=v,...]``).

    ``validate`` checks the parameters before any run starts; ``log_run`` is called once per run right after
    the run is stored. An exception from ``log_run`` is reported with the run's id and never changes the
    stored run.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters with defaults filled in; a ``ValueError`` names a bad or unknown one (default: takes none)."""
        if params:
            raise ValueError(f"unknown parameter {sorted(params)[0]!r}: tracker {self.name!r} takes none")
        return params

    def log_run(self, tracked: TrackedRun, **params: Any) -> None:
        """Send one stored run (ok, failed or not applicable: ``tracked.run.status`` says) to the tracker."""
        raise NotImplementedError


def check_tracker(obj: Tracker) -> None:
    """Reject a malformed tracker at registration, naming what is wrong."""
    if not isinstance(obj, Tracker) or not getattr(obj, "name", ""):
        raise TypeError(f"{obj!r} is not an effbench.Tracker with a name")
