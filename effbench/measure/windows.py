"""Instruments: the registered metrics, each opening windows around a phase, a repeat, a scenario or the run.

A metric's window holds its own state, so the same instruments measure the apply phase, every
repeat of every scenario and (with training) a training phase, in any executor. A metric that
raises becomes a warning of the run, never a failed run. The windows of a distributed run's ranks
are combined quantity by quantity by the rule each quantity declares (sum, max, mean).
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Reported, Window
from effbench.api.vocabulary import SCOPES

RULES = {"sum": sum, "max": max, "mean": statistics.fmean}  # the declared combine rules of a quantity


def as_measurements(metric: Metric, reported: Reported) -> list[Measurement]:
    """What a window reported, as Measurements (a bare number is the metric's own quantity)."""
    if reported is None:
        return []
    if isinstance(reported, Measurement):
        return [reported]
    if isinstance(reported, list):
        return reported
    return [metric.measurement(float(reported))]


class Instruments:
    """The registered metrics by scope, opening and closing their windows and keeping the run's warnings."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.by_scope = {scope: [m for m in metrics if m.scope == scope] for scope in SCOPES}
        self.warnings: list[str] = []
        self.declared = {q.name for m in metrics for q in m.declared()}
        self.rules = {q.name: q.combine for m in metrics for q in m.declared()}

    def for_phase(self, phase: str) -> list[Metric]:
        """The repeat-scope metrics that also measure the one-off ``phase`` (e.g. ``apply``)."""
        return [m for m in self.by_scope["repeat"] if phase in m.phases]

    def open(self, metrics: list[Metric], ctx: RunContext) -> list[tuple[Metric, Window]]:
        """Open a window of each metric; one that fails to open is a warning."""
        opened = []
        for metric in metrics:
            try:
                window = metric.open(ctx)
            except Exception as err:  # plugin code: keep the run, report the metric
                self.warnings.append(f"metric {metric.name} failed to start: {err!r}")
                continue
            if window is not None:  # None: nothing this machine can measure (no GPU, no counters)
                opened.append((metric, window))
        return opened

    def close(self, opened: list[tuple[Metric, Window]], ctx: RunContext) -> list[Measurement]:
        """Close windows in reverse order of opening; tag what they report with the run's current phase."""
        out: list[Measurement] = []
        for metric, window in reversed(opened):
            try:
                reported = as_measurements(metric, window.close(ctx))
            except Exception as err:
                self.warnings.append(f"metric {metric.name} failed: {err!r}")
                continue
            for m in reported:
                if m.metric not in self.declared and m.resource != "quality":
                    self.warnings.append(f"metric {metric.name} reported {m.metric!r}, which it does not declare")
            out += [m if m.phase else replace(m, phase=ctx.phase) for m in reported]
        return out

    def measure_once(self, scope: str, ctx: RunContext) -> list[Measurement]:
        """Open and close every metric of ``scope`` at once: properties of the model or of a finished scenario."""
        return self.close(self.open(self.by_scope[scope], ctx), ctx)

    def combine_ranks(self, per_rank: list[list[Measurement]]) -> list[Measurement]:
        """One figure per quantity from every rank's window, by the quantity's declared rule; each rank's in the method.

        Figures are matched on what identifies them (metric, task, scenario, phase, step); rank 0's order is kept.
        """
        grouped: dict[tuple, list[Measurement]] = {}
        for measured in per_rank:
            for m in measured:
                grouped.setdefault((m.metric, m.task, m.scenario, m.phase, m.step), []).append(m)
        out = []
        for same in grouped.values():
            rule = self.rules.get(same[0].metric, "mean")
            values = [m.value for m in same]
            each = ", ".join(f"{v:.6g}" for v in values)
            method = f"{same[0].method}; {rule} over {len(same)} ranks (each: {each})"
            out.append(replace(same[0], value=float(RULES[rule](values)), method=method))
        return out
