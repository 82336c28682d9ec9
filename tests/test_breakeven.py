"""Amortisation: the requests after which a technique's one-off cost is repaid, on a store written by the store's
own writers with figures whose break-even is known by hand."""

import math

import numpy as np
import pytest

from effbench.api.vocabulary import ONE_OFF_PHASES
from effbench.default_plugins.metrics.energy import J_PER_KWH
from effbench.measure.decisions import NEVER, NOT_SIGNIFICANT, Z95, Interval
from effbench.present import breakeven, report
from effbench.records import PHASE_EVALUATE, MeasurementRow
from effbench.store.load import load
from effbench.store.results import ResultsStore, to_table
from tests.store_helpers import COLUMNS, measurement, run_row

SCENARIO = "single-stream"


def test_a_break_even_with_its_interval_never_and_not_significant():
    """Cost ÷ (the baseline's per-request figure − the run's), bounds from the saving's opposite bounds (both
    figures' standard errors): never where it saves nothing or costs more, n.s. where the saving's interval holds 0."""
    runs = [(3.0, 1.0), (1.0, 0.0), (6.0, 0.0), (3.0, 0.0), (1.0, 3.0)]  # value, stderr: the baseline's, the runs'
    value, se = (np.array(column) for column in zip(*runs, strict=True))
    cost = breakeven.Intervals(*(np.full(len(runs), 10.0) for _ in range(3)), np.ones(len(runs), bool))
    mine = breakeven.Intervals(value, value - Z95 * se, value + Z95 * se, np.ones(len(runs), bool))
    cells = breakeven.estimates(cost, mine, 0)
    saving, spread = 2.0, Z95 * math.hypot(1.0, 0.0)
    assert cells.text[:2] == ["–", "5 [3, 250]"]
    repaid = (10 / saving, 10 / (saving + spread), 10 / (saving - spread))
    assert (cells.value[1], cells.low[1], cells.high[1]) == repaid
    assert cells.text[2:] == [NEVER, NOT_SIGNIFICANT, NOT_SIGNIFICANT]  # saves -3 ± 1.96, 0 ± 1.96, 2 ± 6.2


def _difference(a: Interval, b: Interval) -> Interval:
    """a − b (independent figures) with a 95 % interval from both figures' standard errors."""
    value, se = a.value - b.value, math.hypot((a.high - a.low) / (2 * Z95), (b.high - b.low) / (2 * Z95))
    return Interval(value, value - Z95 * se, value + Z95 * se)


def _break_even(one_off: Interval, saving: Interval) -> Interval | str:
    """Requests after which a one-off cost is repaid by a per-request saving, one run at a time."""
    if saving.high <= 0:
        return NEVER
    if saving.low <= 0:
        return NOT_SIGNIFICANT
    return Interval(one_off.value / saving.value, one_off.low / saving.high, one_off.high / saving.low)


def _inverse(figure: Interval) -> Interval:
    """1 / a positive figure, bounds swapped."""
    return Interval(1 / figure.value, 1 / figure.high, 1 / figure.low if figure.low > 0 else math.inf)


def _scenario(rate: float, joules: float | None) -> list:
    rows = [measurement("request_rate", rate, "requests/s", "computation", scenario=SCENARIO, stderr=0.0)]
    if joules is not None:
        rows.append(measurement("energy_per_request", joules, "J/request", "energy", scenario=SCENARIO, stderr=0.1))
    return rows


def _one_off(phase: str, metric: str, value: float, unit: str = "s") -> list:
    return [measurement(metric, value, unit, "computation" if unit == "s" else "energy", phase=phase)]


def _energy(phase: str, joules: float) -> list:
    return _one_off(phase, "energy", joules / J_PER_KWH, "kWh")


@pytest.fixture
def table(tmp_path):
    """A baseline and three techniques: one repaid, one trained whose saving is nil or inside the noise, one slower."""
    store = ResultsStore(tmp_path)
    runs = {
        "a": ("baseline", _one_off("apply", "apply_time", 0.0) + _scenario(10.0, 2.0)),
        "b": ("quick", _one_off("apply", "apply_time", 30.0) + _energy("apply", 100.0) + _scenario(20.0, 1.0)),
        "c": ("trained", _one_off("apply", "apply_time", 0.0) + _one_off("train", "train_time", 50.0)
              + _energy("train", 200.0) + _scenario(10.0, 1.9)),
        "d": ("slower", _one_off("apply", "apply_time", 2.0) + _scenario(5.0, None)),
    }  # fmt: skip
    for run_id, (technique, rows) in runs.items():
        store.write_run(run_row(run_id, technique, {}), rows)
    (built,) = report.build(load(tmp_path), list(runs), columns=COLUMNS)
    return built


def test_the_report_shows_after_how_many_requests_each_technique_has_paid_for_itself(table):
    section = dict(table.sections)[breakeven.SECTION]
    assert [table.short_headers[i] for i in section] == ["Technique", f"{SCENARIO}: time", f"{SCENARIO}: energy"]
    time, energy = (table.headers.index(f"break-even: {SCENARIO}: {what}") for what in ("time", "energy"))
    # time: 30 s ÷ (0.1 − 0.05 s per request) = 600; the trained run serves as fast (never), the slower one is slower
    assert [row[time].text for row in table.rows] == ["–", "600 [600, 600]", NEVER, NEVER]
    # energy: 100 J ÷ (2 − 1 J, ± 1.96 · √2 · 0.1) = 100 [100 ÷ 1.277, 100 ÷ 0.723]; 0.1 J ± 0.28 is no saving
    assert [row[energy].text for row in table.rows] == ["–", "100 [79, 139]", NOT_SIGNIFICANT, "–"]
    repaid = table.rows[1][energy]
    assert repaid.value == pytest.approx(100.0)
    spread = Z95 * 0.1 * 2**0.5
    assert (repaid.ci_low, repaid.ci_high) == pytest.approx((100 / (1 + spread), 100 / (1 - spread)))
    assert breakeven.NOTE in table.notes and report.NOT_SIGNIFICANT_NOTE not in table.notes  # no ratio is n.s. here
    markdown = report.to_markdown(table)
    assert f"**{breakeven.SECTION}**" in markdown and "| quick | 600 \\[600, 600\\] | 100 \\[79, 139\\] |" in markdown
    assert f"break-even: {SCENARIO}: time,break-even: {SCENARIO}: time stderr" in report.to_csv([table])


def test_no_break_even_without_a_baseline(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_run(run_row("b", "quick", {}), _one_off("apply", "apply_time", 30.0) + _scenario(20.0, 1.0))
    (built,) = report.build(load(tmp_path), ["b"], columns=COLUMNS)
    assert breakeven.SECTION not in dict(built.sections) and breakeven.NOTE not in built.notes


REPAYMENTS = breakeven.REPAYMENTS
RUNS = 1000  # besides the baseline: enough that where numpy's hypot differs from math's (1 in 500) shows
ONE_OFF_SIZES = {"apply_time": 30.0, "train_time": 300.0, "energy_direct": 1e-3, "energy": 1e-3}  # s, kWh


def _figure(rng: np.random.Generator, value: float) -> dict:
    """A figure's value with a stderr (none, NaN, infinite, 0 or some) and 95 % bounds (none, one, both; both may
    leave out the value)."""
    stderr = [None, math.nan, math.inf, 0.0, abs(value) * rng.random()][rng.integers(5)]
    low, high = value * rng.uniform(0.5, 1.1), value * rng.uniform(0.9, 1.5)
    ci_low, ci_high = [(None, None), (low, None), (None, high), (low, high)][rng.integers(4)]
    return {"value": value, "stderr": stderr, "ci_low": ci_low, "ci_high": ci_high}


def _one_offs(rng: np.random.Generator) -> dict[tuple[str, str, str], dict]:
    """A run's one-off figures: each phase's and metric's often missing, nil, negative or some."""
    figures = {}
    for phase in ONE_OFF_PHASES:
        for metric, size in ONE_OFF_SIZES.items():
            if rng.random() < 0.5:
                figures[phase, "", metric] = _figure(rng, [0.0, -size, size * rng.random()][rng.integers(3)])
    return figures


def _runs(rng: np.random.Generator, scenarios: list[str]) -> list[dict[tuple[str, str, str], dict]]:
    """Each run's figures by (phase, scenario, metric): the first run, the baseline, has every per-request one (with
    a standard error) but a rate of 0 in the last scenario; the others' are often missing, the baseline's, 0 or
    negative, or near it."""
    base = _one_offs(rng)
    for scenario in scenarios:
        for repayment in REPAYMENTS:
            value = rng.uniform(1, 10)
            base[PHASE_EVALUATE, scenario, repayment.per_request] = _figure(rng, value) | {"stderr": value / 50}
    base[PHASE_EVALUATE, scenarios[-1], "request_rate"] = _figure(rng, 0.0)
    runs = [base]
    for _ in range(RUNS):
        figures = _one_offs(rng)
        for key in base:
            if key[0] == PHASE_EVALUATE and rng.random() < 0.8:
                theirs = base[key]["value"]
                figures[key] = _figure(rng, [theirs, 0.0, -1.0, theirs * rng.uniform(0.5, 2)][rng.integers(4)])
        runs.append(figures)
    return runs


def _interval(figure: dict) -> Interval:
    """The figure's interval as the report reads one stored figure."""
    return Interval.of(figure["value"], figure["stderr"], figure["ci_low"], figure["ci_high"])


def _cell_at_a_time(figures: dict, base: dict, scenario: str, repayment: breakeven.Repayment) -> report.Cell:
    """A break-even cell as the one-run rules above give it for one run and one resource at a time."""
    parts = [_interval(figures[p, "", metric]) for p in ONE_OFF_PHASES for metric in repayment.one_off
             if (p, "", metric) in figures]  # fmt: skip
    key = (PHASE_EVALUATE, scenario, repayment.per_request)
    mine, theirs = figures.get(key), base.get(key)
    if not parts or mine is None or theirs is None or (repayment.rate and min(mine["value"], theirs["value"]) <= 0):
        return report.Cell(text="–")
    s = repayment.scale
    cost = Interval(*(s * sum(getattr(i, bound) for i in parts) for bound in ("value", "low", "high")))
    mine_per_request, theirs_per_request = _interval(mine), _interval(theirs)
    if repayment.rate:
        mine_per_request, theirs_per_request = _inverse(mine_per_request), _inverse(theirs_per_request)
    verdict = _break_even(cost, _difference(theirs_per_request, mine_per_request))
    if isinstance(verdict, str):
        return report.Cell(text=verdict)
    requests, fewest, most = (math.ceil(round(v, 6)) for v in (verdict.value, verdict.low, verdict.high))
    text = f"{requests:,} [{fewest:,}, {most:,}]"
    return report.Cell(verdict.value, text=text, ci_low=verdict.low, ci_high=verdict.high)


@pytest.mark.filterwarnings("error")  # numpy warns of what the rules never compute: a column computes none of it
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_break_even_a_column_at_a_time_equals_one_run_at_a_time(seed):
    """The columns computed with arrays give the cells the one-run rules above give, the same floats and
    texts, on runs with missing figures, zero and negative savings, rates of 0 or less, NaN or infinite stderrs,
    bounds stored or not, one-off costs of one or several phases; a column of "–" only (no baseline rate) is left
    out."""
    rng = np.random.default_rng(seed)
    scenarios = ["single-stream", "server"]
    runs = _runs(rng, scenarios)
    rows = [
        measurement(metric, unit="", resource="computation", phase=phase, scenario=scenario, run_id=f"r{run}", **figure)
        for run, figures in enumerate(runs)
        for (phase, scenario, metric), figure in figures.items()
    ]
    counts = [len(figures) for figures in runs]
    figures = report.RunFigures.of(to_table(rows, MeasurementRow), counts)
    made = breakeven.columns(figures.intervals, 0, scenarios)
    expected = []
    for scenario in scenarios:
        for repayment in REPAYMENTS:
            cells = [report.Cell(text="–")] + [_cell_at_a_time(f, runs[0], scenario, repayment) for f in runs[1:]]
            if any(cell.text != "–" for cell in cells):
                expected.append((f"{scenario}: {repayment.label}", cells))
    assert [header for header, _ in made] == [header for header, _ in expected]
    assert "server: time" not in dict(made)
    for (_, estimates), (_, cells) in zip(made, expected, strict=True):
        column = report._break_even_cells(estimates)
        assert list(map(repr, map(column.cell, range(len(runs))))) == list(map(repr, cells))  # repr: every bit
    texts = {text.split(" ")[0] for _, estimates in made for text in estimates.text}
    assert {"–", NEVER, NOT_SIGNIFICANT} < texts and len(texts) > 10  # every kind of cell, numbers too
