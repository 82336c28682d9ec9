"""lm-eval runs every bundled task offline on the reference models, and the models are good enough."""

import math

import pytest

from effbench.measure import accuracy
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.reference.tasks import CHANCE, GROUP, HARD_TASK_NAMES, PRIMARY_METRIC, TASK_NAMES


@pytest.fixture(scope="module")
def evaluated():
    task_dirs = tuple(str(d) for d in registry().task_dirs)
    out = {}
    for name in ("micro-m", "micro-s"):
        model, tokenizer = zoo.load(f"zoo:{name}")
        out[name] = accuracy.evaluate(
            model, tokenizer, [GROUP], task_dirs=task_dirs, limit=None, batch_size=64, bootstrap_iters=1000
        )
    return out


@pytest.fixture(scope="module")
def results(evaluated):
    return {name: figures for name, (figures, _) in evaluated.items()}


def test_every_document_has_an_outcome_that_averages_to_the_task_figure(evaluated):
    """The samples are lm-eval's per-document values: their mean (or, for perplexity, the corpus formula) is the
    task's figure, and a generated answer's length is counted in tokens."""
    figures, samples = evaluated["micro-s"]
    for task in TASK_NAMES:
        metrics = {s["metric"] for s in samples if s["task"] == task}
        uncertainty = ("_stderr", *accuracy.CI_KEYS)  # lm-eval's stderr, effbench's bootstrap interval of perplexities
        figure_names = {key.split(",")[0] for key in figures[task] if key.endswith(",none")}
        assert metrics == {name for name in figure_names if not name.endswith(uncertainty)}
        if task == "micro_text":
            low, high = (figures[task][f"word_perplexity{key},none"] for key in accuracy.CI_KEYS)
            assert low < figures[task]["word_perplexity,none"] < high
        for metric in metrics:
            rows = [s for s in samples if s["task"] == task and s["metric"] == metric]
            assert sorted(s["doc_id"] for s in rows) == list(range(500))
            if metric == "word_perplexity":
                per_word = sum(s["value"] for s in rows) / sum(s["weight"] for s in rows)
                assert math.exp(-per_word) == pytest.approx(figures[task][f"{metric},none"])
            elif metric not in ("byte_perplexity", "bits_per_byte"):
                assert sum(s["value"] for s in rows) / 500 == pytest.approx(figures[task][f"{metric},none"])
                assert all(s["weight"] is None for s in rows)
    copied = [s for s in samples if s["task"] == "micro_copy"]
    assert all(s["prediction_tokens"] > 0 for s in copied)
    assert all(s["prediction_tokens"] is None for s in samples if s["task"] == "micro_recall")


def test_group_runs_every_task_with_every_output_type(results):
    m = results["micro-m"]
    assert set(m) == set(TASK_NAMES)
    for task in TASK_NAMES:
        assert m[task]["n"] == 500
    for task in ("micro_recall", "micro_agree", "micro_recall_long", "micro_agree2"):
        assert {"acc,none", "acc_norm,none"} <= set(m[task])
    for task in ("micro_copy", "micro_add", "micro_copy_long", "micro_add3"):
        assert "exact_match,none" in m[task]
    assert {"word_perplexity,none", "bits_per_byte,none"} <= set(m["micro_text"])


def test_every_accuracy_has_a_standard_error(results):
    for task, metric in PRIMARY_METRIC.items():
        if task in CHANCE:
            stderr = results["micro-m"][task][f"{metric}_stderr,none"]
            assert isinstance(stderr, float) and stderr >= 0


def _interval(result: dict, task: str) -> tuple[float, float]:
    """The primary metric's 95 % interval, ± 1.96 standard errors."""
    value, stderr = result[task][f"{PRIMARY_METRIC[task]},none"], result[task][f"{PRIMARY_METRIC[task]}_stderr,none"]
    return value - 1.96 * stderr, value + 1.96 * stderr


def test_micro_m_is_at_least_halfway_from_chance_to_perfect_on_the_original_skills(results):
    for task, chance in CHANCE.items():
        if task not in HARD_TASK_NAMES:
            score = results["micro-m"][task][f"{PRIMARY_METRIC[task]},none"]
            assert score >= chance + (1 - chance) / 2, (task, score)


def test_micro_m_is_below_the_ceiling_and_above_chance_on_at_least_two_hard_tasks(results):
    """Clear of both ends by the 95 % interval (an exact-match task's floor counts as chance 0)."""
    between = []
    for task in HARD_TASK_NAMES:
        low, high = _interval(results["micro-m"], task)
        if CHANCE[task] < low and high < 1:
            between.append(task)
    assert len(between) >= 2, {task: _interval(results["micro-m"], task) for task in HARD_TASK_NAMES}


def test_micro_s_is_worse_than_micro_m_beyond_the_intervals_on_at_least_two_tasks(results):
    worse = [task for task in CHANCE if _interval(results["micro-s"], task)[1] < _interval(results["micro-m"], task)[0]]
    assert len(worse) >= 2, worse


def test_perplexity_orders_the_models(results):
    assert (
        results["micro-m"]["micro_text"]["word_perplexity,none"]
        < results["micro-s"]["micro_text"]["word_perplexity,none"]
    )
