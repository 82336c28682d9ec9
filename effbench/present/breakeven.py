"""Amortisation: after how many requests a technique's one-off cost is repaid by what it saves per request.

The one-off cost is the sum of the run's one-off phases (applying, training); the saving is the baseline's
per-request figure minus the technique's in the same load scenario. Money needs no column of its own: its
hardware part is $/h × time on both sides (it breaks even with time), its energy part $/kWh × energy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from effbench.api.vocabulary import ONE_OFF_PHASES
from effbench.default_plugins.metrics.energy import J_PER_KWH
from effbench.measure import decisions
from effbench.measure.decisions import Interval
from effbench.records import PHASE_EVALUATE

SECTION = "break-even (requests until the one-off cost is repaid)"
NOTE = (
    "break-even: the requests of a scenario after which the technique's one-off cost (the sum of its apply and "
    "train phases) is repaid by its per-request saving against the baseline (baseline − technique; time: seconds "
    "per request = 1 ÷ requests/s; energy: J per request, from the instrument that measured the one-off energy), "
    "rounded up, [95 % bounds: the one-off cost ÷ the saving's bounds]; never: it saves nothing per request "
    f"(beyond the interval); {decisions.NOT_SIGNIFICANT}: the saving's interval includes 0; money breaks even "
    "with time (hardware $/h) and energy ($/kWh)"
)

Figure = tuple[float, float | None, float | None, float | None, float | None]  # value, stderr, bounds, CV
FiguresOf = Callable[[str, str, str], list[Figure | None]]  # (phase, scenario, metric) -> each run's figure, or None


@dataclass(frozen=True)
class Repayment:
    """A resource a technique spends once and its model may save on every request."""

    label: str
    one_off: tuple[str, ...]  # metrics of the one-off phases, summed over the phases
    scale: float  # one-off unit → the per-request figure's unit
    per_request: str  # the scenario's per-request metric
    rate: bool = False  # the scenario's figure is per second of work (requests/s): its inverse is per request


REPAYMENTS = (
    Repayment("time", ("apply_time", "train_time"), 1.0, "request_rate", rate=True),
    Repayment("energy, counters", ("energy_direct",), J_PER_KWH, "energy_direct_per_request"),
    Repayment("energy", ("energy",), J_PER_KWH, "energy_per_request"),
)
METRICS = frozenset(metric for r in REPAYMENTS for metric in (*r.one_off, r.per_request))  # the figures estimates read


@dataclass(frozen=True)
class Estimate:
    """A break-even cell: requests with 95 % bounds, or a verdict (never, n.s.) or "–" in ``text``."""

    text: str
    value: float | None = None
    low: float | None = None
    high: float | None = None


def one_off(figures: FiguresOf, repayment: Repayment) -> list[Interval | None]:
    """Each run's one-off cost of this resource in the per-request unit; None where no one-off phase measured it."""
    found = [figures(phase, "", metric) for phase in ONE_OFF_PHASES for metric in repayment.one_off]
    costs: list[Interval | None] = []
    s = repayment.scale
    for run in zip(*found, strict=True):
        parts = [Interval.of(*figure[:4]) for figure in run if figure is not None]
        if not parts:
            costs.append(None)
            continue
        costs.append(
            Interval(s * sum(i.value for i in parts), s * sum(i.low for i in parts), s * sum(i.high for i in parts))
        )
    return costs


def per_request(figure: Figure | None, repayment: Repayment) -> Interval | None:
    """What a request of a scenario costs a run's model (its ``repayment.per_request`` figure), with its interval."""
    if figure is None or (repayment.rate and figure[0] <= 0):
        return None
    interval = Interval.of(*figure[:4])
    return interval.inverse() if repayment.rate else interval


def _requests(value: float) -> int:
    """Whole requests, rounded up (after rounding away float noise: 100 J ÷ 1 J is 100 requests, not 101)."""
    return math.ceil(round(value, 6))


def estimate(cost: Interval | None, mine: Interval | None, theirs: Interval | None) -> Estimate:
    """One run's break-even of one resource in one scenario: its one-off cost, its per-request figure and the
    baseline's."""
    if cost is None or mine is None or theirs is None:
        return Estimate("–")
    verdict = decisions.break_even(cost, decisions.difference(theirs, mine))
    if isinstance(verdict, str):
        return Estimate(verdict)
    text = f"{_requests(verdict.value):,} [{_requests(verdict.low):,}, {_requests(verdict.high):,}]"
    return Estimate(text, verdict.value, verdict.low, verdict.high)


def columns(figures: FiguresOf, base: int | None, scenarios: list[str]) -> list[tuple[str, list[Estimate]]]:
    """(header, one estimate per run) of every scenario and resource some run has a break-even or verdict for;
    ``figures`` gives each run's, ``base`` is the baseline run's index (its own cells are "–")."""
    if base is None or not scenarios:
        return []
    out = []
    costs = {repayment: one_off(figures, repayment) for repayment in REPAYMENTS}
    for scenario in scenarios:
        for repayment in REPAYMENTS:
            per_run = figures(PHASE_EVALUATE, scenario, repayment.per_request)
            theirs = per_request(per_run[base], repayment)
            cells = [
                Estimate("–") if run == base or theirs is None or cost is None
                else estimate(cost, per_request(figure, repayment), theirs)
                for run, (cost, figure) in enumerate(zip(costs[repayment], per_run, strict=True))
            ]  # fmt: skip
            if any(cell.text != "–" for cell in cells):
                out.append((f"{scenario}: {repayment.label}", cells))
    return out
