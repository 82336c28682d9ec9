"""Paired statistics against the baseline: checked against scipy's independent implementations and exact counts."""

import math
import re

import numpy as np
import pytest
from scipy import stats

from effbench.measure import paired
from effbench.present import report
from effbench.store.load import load
from tests.conftest import QUICK_SCENARIO, cli
from tests.store_helpers import COLUMNS, as_written_by, synthetic_store


@pytest.mark.parametrize(("lost", "gained"), [(0, 0), (0, 1), (5, 20), (20, 5), (7, 7), (3, 30), (600, 540)])
def test_mcnemar_exact_is_scipys_binomial_test_on_the_discordant_pairs(lost, gained):
    expected = 1.0 if lost + gained == 0 else stats.binomtest(lost, lost + gained, 0.5).pvalue
    assert paired.mcnemar_exact(lost, gained) == pytest.approx(expected, rel=1e-9)


def _scipy_ci(statistic, *samples) -> tuple[float, float]:
    result = stats.bootstrap(
        samples, statistic, paired=True, vectorized=False, n_resamples=4000, method="percentile", random_state=7
    )
    return result.confidence_interval.low, result.confidence_interval.high


def test_the_paired_bootstrap_interval_of_accuracy_matches_scipys():
    rng = np.random.default_rng(1)
    baseline = (rng.random(400) < 0.8).astype(float)
    technique = np.where(rng.random(400) < 0.15, 1 - baseline, baseline)  # 15 % of the answers flipped
    low, high = paired.bootstrap_delta_ci(technique, baseline)
    expected = _scipy_ci(lambda t, b: t.mean() - b.mean(), technique, baseline)
    assert (low, high) == pytest.approx(expected, abs=0.006)
    unpaired = 1.96 * math.sqrt(0.8 * 0.2 / 400 * 2)  # pairing removes the documents' difficulty: narrower
    assert high - low < 2 * unpaired


def test_the_interval_of_a_corpus_perplexity_matches_scipys():
    rng = np.random.default_rng(2)
    words = rng.integers(5, 40, 200).astype(float)
    base = -words * rng.normal(1.6, 0.3, 200)
    tech = base - words * rng.normal(0.2, 0.1, 200)  # every text a little less likely
    low, high = paired.bootstrap_delta_ci(tech, base, paired.weighted_perplexity, words, words)
    expected = _scipy_ci(lambda t, b, w: math.exp(-t.sum() / w.sum()) - math.exp(-b.sum() / w.sum()), tech, base, words)
    assert (low, high) == pytest.approx(expected, rel=0.02)
    result = paired.compare(tech, base, "word_perplexity", words, words)
    assert result.delta == pytest.approx(math.exp(-tech.sum() / words.sum()) - math.exp(-base.sum() / words.sum()))
    assert low < result.delta < high and result.p_value is None and result.right_to_wrong is None


def test_flips_count_exactly_and_the_interval_is_fixed_by_its_seed():
    baseline = np.array([1, 1, 1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    technique = np.array([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], dtype=float)  # lost docs 1, 2, 8; gained doc 4
    result = paired.compare(technique, baseline, "acc")
    assert (result.n, result.right_to_wrong, result.wrong_to_right) == (10, 0.3, 0.1)
    assert result.delta == pytest.approx(-0.2) and result.p_value == pytest.approx(stats.binomtest(1, 4).pvalue)
    assert paired.compare(technique, baseline, "acc") == result


def test_the_report_shows_delta_ci_p_and_flips_and_dashes_without_samples(tmp_path):
    store = synthetic_store(tmp_path)  # baseline right on docs 0-44; hwA-2 (shift 6) on 0-28 and 44-49
    (table,) = report.build(load(tmp_path), columns=COLUMNS)
    col = {h: i for i, h in enumerate(table.headers)}
    pruned = next(row for row in table.rows if row[0].text == "prune-magnitude(sparsity=0.5)")
    flips = [pruned[col[f"{kind} micro_copy"]].text for kind in ("right→wrong", "wrong→right")]
    assert flips == ["30.0 %", "10.0 %"]
    assert pruned[col["p micro_copy"]].value == pytest.approx(stats.binomtest(5, 20).pvalue)
    delta = pruned[col["Δ micro_copy"]]
    assert delta.text.startswith("-0.200 [") and delta.ci_low < -0.2 < delta.ci_high
    ppl = pruned[col["Δ micro_text"]]  # the same value on every text: no spread
    assert ppl.text == "+1.000 [+1.000, +1.000]" and pruned[col["p micro_text"]].text == "–"
    assert [title for title, _, _ in table.parts()][:2] == ["accuracy", report.PAIRED_SECTION]
    assert table.rows[0][col["p micro_copy"]].text == "–"  # the baseline itself
    as_written_by(store, "1.3")
    (old,) = report.build(load(tmp_path), columns=COLUMNS)
    assert "p micro_copy" not in old.headers and report.PAIRED_SECTION not in [t for t, _, _ in old.parts()]
    assert [row[old.headers.index("Δ micro_copy")].text for row in old.rows] == ["+0.000", "-0.020", "-0.200", "-0.700"]


def test_evaluate_stores_every_documents_outcome_and_reports_paired_statistics(tmp_path):
    out = tmp_path / "results"
    args = ("--model", "zoo:micro-s", "--task", "micro_copy", "--limit", "8", "--scenario", QUICK_SCENARIO)
    techniques = ("--technique", "baseline", "--technique", "prune-magnitude:sparsity=0.9")
    result = cli("evaluate", "--output", str(out), *args, *techniques, "--executor", "inline")
    assert result.returncode == 0, result.stderr
    results = load(out)
    assert len(results.runs) == 2
    for run in results.runs:
        rows = results.samples_of(run.run_id)
        outcomes = sorted((s.task, s.metric, s.doc_id) for s in rows)
        assert outcomes == [("micro_copy", "exact_match", i) for i in range(8)]
        assert all(s.prediction_tokens is not None and s.prediction_tokens >= 0 for s in rows)
        accuracy = next(m for m in results.measurements_of(run.run_id) if m.metric == "exact_match")
        assert sum(s.value for s in rows) / 8 == pytest.approx(accuracy.value)
    markdown = (out / "report.md").read_text()
    assert report.PAIRED_SECTION in markdown and "| p micro_copy | right→wrong micro_copy |" in markdown
    assert re.search(r"\| [+-]\d\.\d{3} \\\[[+-]\d\.\d{3}, [+-]\d\.\d{3}\\\] \|", markdown), markdown


def test_a_perplexity_gets_a_bootstrap_interval_over_its_documents_like_scipys():
    """lm-eval gives word_perplexity no stderr: effbench resamples the documents (log-likelihood, words) jointly."""
    from effbench.api.context import RunContext
    from effbench.default_plugins.metrics.model import Accuracy
    from effbench.measure.accuracy import add_corpus_intervals

    rng = np.random.default_rng(5)
    words = rng.integers(5, 40, 300)
    loglik = -words * rng.uniform(1.5, 2.5, 300)
    rows = [
        {"task": "t", "doc_id": i, "metric": "word_perplexity", "filter": "none", "value": v, "weight": int(w)}
        for i, (v, w) in enumerate(zip(loglik, words, strict=True))
    ]
    figure = math.exp(-loglik.sum() / words.sum())
    results = {"t": {"word_perplexity,none": figure, "word_perplexity_stderr,none": "N/A", "n": 300}}
    add_corpus_intervals(results, rows)
    reference = stats.bootstrap(
        (loglik, words),
        lambda v, w, axis=-1: np.exp(-v.sum(axis=axis) / w.sum(axis=axis)),
        paired=True,
        vectorized=True,
        n_resamples=4000,
        method="percentile",
        random_state=2,
    ).confidence_interval
    low, high = results["t"]["word_perplexity_ci_low,none"], results["t"]["word_perplexity_ci_high,none"]
    assert low == pytest.approx(reference.low, rel=0.01) and high == pytest.approx(reference.high, rel=0.01)
    (stored,) = Accuracy().stop(RunContext(None, None, "baseline", {}, accuracy=results))
    assert (stored.metric, stored.value, stored.stderr) == ("word_perplexity", figure, None)
    assert (stored.ci_low, stored.ci_high) == (low, high) and low < figure < high


@pytest.mark.parametrize(("runs", "documents", "right"), [(1, 1, 0.5), (3, 7, 0.5), (130, 33, 0.6), (40, 10, 0.1)])
def test_counted_intervals_are_numpys_percentiles_of_the_replicates(runs, documents, right):
    """Counting each run's replicates gives np.percentile's bounds exactly (a baseline right on 1 of 10 documents
    draws replicates with no right answer: infinite ratios)."""
    rng = np.random.default_rng(runs)
    baseline = (rng.random(documents) < right).astype(float)
    techniques = (rng.random((runs, documents)) < right).astype(float)
    counted = paired.compare_many(techniques, baseline, "acc")
    mine, theirs = paired.bootstrap_figures(techniques, baseline)
    lows, highs = paired.percentile_interval(mine - theirs)
    assert [p.ci_low for p in counted] == lows.tolist() and [p.ci_high for p in counted] == highs.tolist()
    if baseline.any():
        with np.errstate(invalid="ignore"):
            ratio_lows, ratio_highs = paired.percentile_interval(paired.ratios(mine, theirs))
        assert np.array_equal([p.ratio_low for p in counted], ratio_lows, equal_nan=True)
        assert np.array_equal([p.ratio_high for p in counted], ratio_highs, equal_nan=True)
    else:
        assert all(p.ratio_low is None and p.ratio_high is None for p in counted)
