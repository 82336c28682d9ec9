"""Metric: an instrument that measures windows of a run and reports the quantities it declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from effbench.api.context import Measurement, RunContext
from effbench.api.vocabulary import PHASES, QUALITY, RESOURCES, SCOPES

Reported = float | Measurement | list[Measurement] | None
COMBINE_RULES = ("mean", "sum", "max")  # how a distributed run's per-rank figures of a quantity make one figure


@dataclass(frozen=True)
class Quantity:
    """A quantity a metric reports: its meaning, and how tables show it (reports, leaderboards, the card)."""

    name: str
    unit: str
    resource: str
    higher_is_better: bool
    description: str = ""
    header: str = ""  # column header with the shown unit; "name (unit)" when empty
    scale: float = 1.0  # shown value = stored value × scale (e.g. 1e3 to show GFLOP as MFLOP)
    digits: int = 2
    ratio_header: str = ""  # also show baseline ÷ this value under this header (compression ×, speed-up ×)
    headline: bool = False  # one of the few columns of leaderboards' and compare's narrow tables
    detail: bool = False  # only in the long-form outputs (CSV, report details), not in printed tables
    combine: str = "mean"  # over a distributed run's ranks: sum (energy, bytes), max (peak memory, wall clock), mean

    @property
    def label(self) -> str:
        """The column header."""
        return self.header or (f"{self.name} ({self.unit})" if self.unit else self.name)


class Window:
    """One open measurement of a metric: it holds the window's state, so windows can overlap and nest.

    ``close`` returns what ``Metric.stop`` would: a number, a Measurement, a list of them, or None.
    """

    def close(self, run: RunContext) -> Reported:
        """Finish measuring this window and report."""
        raise NotImplementedError


class _StartStopWindow(Window):
    """A window over a metric written before windows existed: its ``start``/``stop`` keep state on the metric."""

    def __init__(self, metric: Metric, run: RunContext) -> None:
        self.metric = metric
        metric.start(run)

    def close(self, run: RunContext) -> Reported:
        return self.metric.stop(run)


class Metric:
    """An instrument of a run; ``scope`` says which windows it measures, ``open`` starts one.

    ``repeat`` (default): a window around every repeat of every scenario; effbench combines the
    repeats (mean, 95 % interval, coefficient of variation). With ``phases`` (e.g. ``("apply",)``)
    it also measures those one-off phases of the run (the technique's own cost).
    ``scenario``: one window per scenario, closed seeing all its requests (latency distributions).
    ``run``: one window per run, closed after the scenarios (model size, parameters, accuracy).

    ``open(run)`` returns a ``Window`` holding the window's state; its ``close(run)`` reports a
    number (this metric's own quantity), a Measurement, a list of them, or None. Metrics written
    before windows implement ``start``/``stop`` instead and keep working: the default ``open``
    calls them (such a metric must not measure two windows at once).
    ``quantities`` declare everything the metric reports; by default its one quantity is its
    own ``name``, ``unit``, ``resource``, ``higher_is_better`` and ``description``.
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    resource: ClassVar[str]
    higher_is_better: ClassVar[bool]
    description: ClassVar[str] = ""
    scope: ClassVar[str] = "repeat"
    phases: ClassVar[tuple[str, ...]] = ()
    quantities: ClassVar[tuple[Quantity, ...]] = ()

    def open(self, run: RunContext) -> Window:
        """Begin measuring a window (the default wraps ``start``/``stop``)."""
        return _StartStopWindow(self, run)

    def start(self, run: RunContext) -> None:
        """Begin measuring, for metrics without ``open`` (the default does nothing: static metrics only ``stop``)."""

    def stop(self, run: RunContext) -> Reported:
        """Finish measuring and report, for metrics without ``open``."""
        raise NotImplementedError

    def declared(self) -> tuple[Quantity, ...]:
        """Every quantity this metric reports, its own first."""
        own = Quantity(self.name, self.unit, self.resource, self.higher_is_better, self.description)
        if any(q.name == self.name for q in self.quantities):
            return self.quantities
        return (own, *self.quantities)

    def quantity(self, name: str) -> Quantity:
        """The declared quantity called ``name``."""
        return next(q for q in self.declared() if q.name == name)

    def measurement(self, value: float, name: str | None = None, **extra: Any) -> Measurement:
        """A Measurement of one of this metric's declared quantities (its own by default)."""
        q = self.quantity(name or self.name)
        return Measurement(q.name, float(value), q.unit, q.resource, q.higher_is_better, **extra)


def check_metric(obj: Metric) -> None:
    """Reject a malformed metric at registration, naming what is wrong."""
    if not isinstance(obj, Metric):
        raise TypeError(f"{obj!r} is not an effbench.Metric")
    for attr in ("name", "unit", "resource", "higher_is_better"):
        if not hasattr(obj, attr):
            raise TypeError(f"metric {type(obj).__name__} lacks {attr!r}")
    if obj.resource not in (*RESOURCES, QUALITY):
        raise TypeError(f"metric {obj.name!r}: resource must be one of {', '.join((*RESOURCES, QUALITY))}")
    if obj.scope not in SCOPES:
        raise TypeError(f"metric {obj.name!r}: scope must be one of {', '.join(SCOPES)}")
    unknown = set(obj.phases) - set(PHASES)
    if unknown:
        raise TypeError(f"metric {obj.name!r}: unknown phase {sorted(unknown)[0]!r}; phases: {', '.join(PHASES)}")
    for q in obj.declared():
        if q.resource not in (*RESOURCES, QUALITY):
            raise TypeError(f"metric {obj.name!r}: quantity {q.name!r} has resource {q.resource!r}")
        if q.combine not in COMBINE_RULES:
            raise TypeError(f"metric {obj.name!r}: quantity {q.name!r} combines by one of {', '.join(COMBINE_RULES)}")
