"""Amortisation: after how many requests a technique's one-off cost is repaid by what it saves per request.

The one-off cost is the sum of the run's one-off phases (applying, training); the saving is the baseline's
per-request figure minus the technique's in the same load scenario. Money needs no column of its own: its
hardware part is $/h × time on both sides (it breaks even with time), its energy part $/kWh × energy. A column is
computed for all its runs at once, with numpy: the same floats as the rules give one run at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from effbench.api.vocabulary import ONE_OFF_PHASES
from effbench.default_plugins.metrics.energy import J_PER_KWH
from effbench.measure import decisions
from effbench.measure.decisions import Z95
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
MISSING = "–"  # a cell without a break-even: the baseline's own, or a figure it needs is missing


@dataclass(frozen=True)
class Intervals:
    """Each run's figure with its 95 % interval (``Interval.of``'s) as arrays, so that a column of hundreds of runs
    is computed at once; ``measured`` says which runs have one (the others' numbers mean nothing)."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    measured: np.ndarray


FiguresOf = Callable[[str, str, str], Intervals]  # (phase, scenario, metric) -> every run's figure


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
class Estimates:
    """A column of break-even cells: each run's text (requests with 95 % bounds, a verdict or "–") and, where the
    cost is repaid (``repaid``), the requests and their bounds (NaN elsewhere)."""

    text: list[str]
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    repaid: np.ndarray


def one_off(figures: FiguresOf, repayment: Repayment) -> Intervals:
    """Each run's one-off cost of this resource in the per-request unit, measured where some one-off phase measured
    it; its figures are added in the phases' and metrics' order, as Python's ``sum`` of one run's would."""
    parts = [figures(phase, "", metric) for phase in ONE_OFF_PHASES for metric in repayment.one_off]
    value, low, high = (np.zeros(len(parts[0].value)) for _ in range(3))
    measured = np.zeros(len(value), bool)
    for part in parts:
        value = np.where(part.measured, value + part.value, value)
        low = np.where(part.measured, low + part.low, low)
        high = np.where(part.measured, high + part.high, high)
        measured |= part.measured
    s = repayment.scale
    return Intervals(s * value, s * low, s * high, measured)


def per_request(figures: Intervals, repayment: Repayment) -> Intervals:
    """What a request of a scenario costs each run's model (its ``repayment.per_request`` figures), with its
    interval: a rate is inverted (``Interval.inverse``), and one that is not positive measures nothing."""
    if not repayment.rate:
        return figures
    with np.errstate(divide="ignore"):  # a rate of 0 measures nothing; a low bound of 0 (or less): no high bound
        value, low = 1 / figures.value, 1 / figures.high
        high = np.where(figures.low > 0, 1 / figures.low, math.inf)
    return Intervals(value, low, high, figures.measured & ~(figures.value <= 0))


def _requests(value: float) -> int:
    """Whole requests, rounded up (after rounding away float noise: 100 J ÷ 1 J is 100 requests, not 101)."""
    return math.ceil(round(value, 6))


def estimates(cost: Intervals, mine: Intervals, base: int) -> Estimates:
    """Each run's break-even of one resource in one scenario: its one-off cost ÷ its saving per request (the
    baseline's figure, at ``base``, − its own, with both standard errors): never where the saving's interval lies at
    or below 0, not significant where it holds 0, else the cost's bounds ÷ the saving's opposite bounds."""
    runs = len(cost.value)
    text = [MISSING] * runs
    value, low, high = (np.full(runs, math.nan) for _ in range(3))
    if not mine.measured[base]:
        return Estimates(text, value, low, high, np.zeros(runs, bool))  # no saving without the baseline's figure
    usable = cost.measured & mine.measured
    usable[base] = False  # the baseline's own
    at = np.flatnonzero(usable)
    saving = mine.value[base] - mine.value[at]
    theirs = float(decisions.standard_error(mine.low[base], mine.high[base]))
    errors = decisions.standard_error(mine.low[at], mine.high[at]).tolist()
    spread = Z95 * np.array([math.hypot(theirs, se) for se in errors])  # math's hypot: np's differs in the last bit
    saving_low, saving_high = saving - spread, saving + spread
    never = saving_high <= 0
    not_significant = ~never & (saving_low <= 0)
    repaid = np.zeros(runs, bool)
    repaid[at] = ~(never | not_significant)
    gaining = repaid[at]
    value[repaid] = cost.value[repaid] / saving[gaining]
    low[repaid] = cost.low[repaid] / saving_high[gaining]
    high[repaid] = cost.high[repaid] / saving_low[gaining]
    for verdict, where in ((decisions.NEVER, never), (decisions.NOT_SIGNIFICANT, not_significant)):
        for run in at[where].tolist():
            text[run] = verdict
    shown = zip(np.flatnonzero(repaid).tolist(), *(v[repaid].tolist() for v in (value, low, high)), strict=True)
    for run, requests, fewest, most in shown:
        text[run] = f"{_requests(requests):,} [{_requests(fewest):,}, {_requests(most):,}]"
    return Estimates(text, value, low, high, repaid)


def columns(figures: FiguresOf, base: int | None, scenarios: list[str]) -> list[tuple[str, Estimates]]:
    """(header, the runs' estimates) of every scenario and resource some run has a break-even or verdict for;
    ``figures`` gives each run's, ``base`` is the baseline run's index (its own cells are "–")."""
    if base is None or not scenarios:
        return []
    out = []
    costs = {repayment: one_off(figures, repayment) for repayment in REPAYMENTS}
    for scenario in scenarios:
        for repayment in REPAYMENTS:
            mine = per_request(figures(PHASE_EVALUATE, scenario, repayment.per_request), repayment)
            column = estimates(costs[repayment], mine, base)
            if any(text != MISSING for text in column.text):
                out.append((f"{scenario}: {repayment.label}", column))
    return out
