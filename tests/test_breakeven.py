"""Amortisation: the requests after which a technique's one-off cost is repaid, on a store written by the store's
own writers with figures whose break-even is known by hand."""

import pytest

from effbench.default_plugins.metrics.energy import J_PER_KWH
from effbench.measure import decisions
from effbench.measure.decisions import NEVER, NOT_SIGNIFICANT, Z95, Interval
from effbench.present import breakeven, report
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.store_helpers import COLUMNS, measurement, run_row

SCENARIO = "single-stream"


def test_a_difference_and_a_break_even_with_their_intervals():
    assert decisions.difference(Interval(3, 3 - Z95, 3 + Z95), Interval(1, 1, 1)) == Interval(2, 2 - Z95, 2 + Z95)
    assert decisions.break_even(Interval(10, 10, 10), Interval(2, 1, 4)) == Interval(5, 2.5, 10)
    assert decisions.break_even(Interval(10, 8, 12), Interval(2, 1, 4)) == Interval(5, 2, 12)
    assert decisions.break_even(Interval(10, 10, 10), Interval(0, 0, 0)) == NEVER  # saves nothing
    assert decisions.break_even(Interval(10, 10, 10), Interval(-1, -2, -0.5)) == NEVER  # costs more per request
    assert decisions.break_even(Interval(10, 10, 10), Interval(0.5, -0.1, 1.1)) == NOT_SIGNIFICANT


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
