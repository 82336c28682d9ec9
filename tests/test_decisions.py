"""Conclusions with uncertainty: ratio intervals, three-valued gates, the output-length rule, significance marks,
Pareto dominance and ranks — checked against independent computations (scipy, simulation) and by hand."""

import numpy as np
import pytest
from scipy import stats

from effbench.measure import decisions
from effbench.measure.decisions import FAIL, INCONCLUSIVE, PASS, Interval
from effbench.measure.paired import compare
from effbench.present import report
from effbench.records import SampleRow
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.store_helpers import COLUMNS, measurement, run_row


def test_the_paired_ratio_interval_matches_scipys_bootstrap():
    rng = np.random.default_rng(3)
    baseline = (rng.random(400) < 0.8).astype(float)
    technique = np.where(rng.random(400) < 0.1, 1 - baseline, baseline)  # 10 % of the answers flipped
    paired = compare(technique, baseline, "acc")
    reference = stats.bootstrap(
        (technique, baseline),
        lambda t, b, axis=-1: t.mean(axis=axis) / b.mean(axis=axis),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=11,
    ).confidence_interval
    assert paired.ratio_low == pytest.approx(reference.low, abs=0.01)
    assert paired.ratio_high == pytest.approx(reference.high, abs=0.01)
    assert paired.ratio_low < technique.mean() / baseline.mean() < paired.ratio_high


def test_a_baseline_scoring_zero_has_no_ratio():
    zeros = np.zeros(20)
    assert compare(np.ones(20), zeros, "acc").ratio_low is None


def test_the_delta_method_ratio_matches_a_simulation():
    numerator, denominator = Interval.of(50.0, 1.5), Interval.of(100.0, 2.0)
    defined, value, low, high = decisions.ratios(*((i.value, i.low, i.high) for i in (numerator, denominator)))
    rng = np.random.default_rng(0)
    simulated = rng.normal(50.0, 1.5, 200_000) / rng.normal(100.0, 2.0, 200_000)
    expected_low, expected_high = np.percentile(simulated, [2.5, 97.5])
    assert defined and value == 0.5
    assert low == pytest.approx(expected_low, abs=0.002) and high == pytest.approx(expected_high, abs=0.002)
    top = np.array([3.0, 3.0, -1.0])  # exact ÷ exact; ÷ 0; a negative numerator
    defined, value, low, high = decisions.ratios((top, top, top), (np.array([2.0, 0.0, 2.0]),) * 3)
    assert defined.tolist() == [True, False, False] and (value[0], low[0], high[0]) == (1.5, 1.5, 1.5)


def test_a_gate_is_three_valued():
    kept = [Interval(0.995, 0.991, 0.999), Interval(0.980, 0.970, 0.989), Interval(0.992, 0.985, 0.999)]
    low, high = (np.array([getattr(k, bound) for k in kept] + [np.nan]) for bound in ("low", "high"))
    defined = np.array([True, True, True, False])  # the last has no interval
    verdicts = decisions.gate(defined, low, high, 0.99).tolist()
    assert verdicts == [PASS, FAIL, INCONCLUSIVE, None]  # the third straddles 0.99


def test_verdicts_over_tasks():
    runs = [[PASS, PASS, PASS], [PASS, INCONCLUSIVE, PASS], [INCONCLUSIVE, FAIL, None], [PASS, None, PASS]]
    tasks = np.array(runs, object).T  # tasks × runs
    assert decisions.combine(tasks).tolist() == [PASS, INCONCLUSIVE, FAIL, None]  # one failed task fails a run
    assert decisions.combine(np.empty((0, 2), object)).tolist() == [None, None]  # no task: unknown


def test_significance_and_ties():
    assert decisions.significant(np.array([0.97, 1.10, 1.0]), np.array([1.07, 1.50, 1.2])).tolist() == [
        False,
        True,
        False,
    ]
    a, b = Interval(75.8, 75.0, 76.6), Interval(75.9, 75.1, 76.7)
    score = Interval(0.9, 0.88, 0.92)
    assert decisions.tied((a, score), (b, score))
    assert decisions.pareto_front([(a, score), (b, score)]) == {0, 1}  # overlapping: neither dominates
    clearly_faster = Interval(60.0, 59.5, 60.5)
    assert decisions.pareto_front([(a, score), (clearly_faster, score)]) == {1}


def test_dominance_needs_a_separated_interval_and_no_loss_beyond_one():
    cheap_worse = (Interval(10.0, 9.0, 11.0), Interval(0.80, 0.78, 0.82))
    dear_better = (Interval(20.0, 19.0, 21.0), Interval(0.90, 0.88, 0.92))
    assert decisions.pareto_front([cheap_worse, dear_better]) == {0, 1}  # a real trade-off
    dear_same = (Interval(20.0, 19.0, 21.0), Interval(0.81, 0.79, 0.83))
    assert decisions.pareto_front([cheap_worse, dear_same]) == {0}  # same accuracy within noise, dearer


def test_ranks_are_shared_until_an_interval_tells_runs_apart():
    keys = [
        (Interval(-0.90, -0.92, -0.88), Interval(10.0, 9.0, 11.0)),
        (Interval(-0.89, -0.91, -0.87), Interval(10.5, 9.5, 11.5)),  # tied with the first on both
        (Interval(-0.89, -0.91, -0.87), Interval(20.0, 19.0, 21.0)),  # same score, clearly slower
        (Interval(-0.50, -0.52, -0.48), Interval(5.0, 4.0, 6.0)),  # clearly worse score
    ]
    assert decisions.tie_ranks(keys) == [1, 1, 3, 4]


def _samples(correct, tokens):
    return [
        SampleRow(task="gen", doc_id=i, metric="exact_match", value=float(c), prediction_tokens=t)
        for i, (c, t) in enumerate(zip(correct, tokens, strict=True))
    ]


@pytest.mark.parametrize(("longer", "gates"), [(1.05, ["pass", "pass"]), (1.2, ["fail", "fail"])])
def test_mlperfs_output_length_rule_fails_a_run_that_answers_longer(tmp_path, longer, gates):
    store = ResultsStore(tmp_path)
    correct, tokens = [1] * 100, [20] * 100
    answer = [measurement("exact_match", 1.0, "", "quality", "gen", stderr=0.0)]
    store.write_run(run_row("a", "baseline", {}), answer, _samples(correct, tokens))
    store.write_run(run_row("b", "x", {}), answer, _samples(correct, [round(t * longer) for t in tokens]))
    results = load(store.root)
    assert results.length_ratios(["b"], "a") == [pytest.approx(longer)]
    (table,) = report.build(results, ["a", "b"], columns=COLUMNS)
    row = table.rows[1]
    assert [row[table.headers.index(f"{g} gate")].text for g in ("99%", "99.9%")] == gates
    assert row[table.headers.index(report.LENGTH_HEADER)].value == pytest.approx(longer)


def test_a_speed_up_inside_the_noise_is_marked_not_significant(tmp_path):
    store = ResultsStore(tmp_path)
    for run_id, technique, latency, stderr in (
        ("a", "baseline", 100.0, 2.0),
        ("b", "x", 98.0, 2.0),
        ("c", "y", 50.0, 1.0),
    ):
        store.write_run(
            run_row(run_id, technique, {}), [measurement("latency", latency, "ms", "computation", stderr=stderr)]
        )
    (table,) = report.build(load(store.root), ["a", "b", "c"], columns=COLUMNS)
    speedup = table.headers.index("Speed-up ×")
    assert [row[speedup].text for row in table.rows] == ["1.00", "1.02 n.s.", "2.00"]
    assert table.rows[2][speedup].ci_low > 1.0 and any(n.startswith("n.s.:") for n in table.notes)
