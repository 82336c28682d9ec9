"""Paired statistics of a technique against its baseline on the same documents: Δ with a bootstrap CI, McNemar, flips.

Two runs that answered the same documents are compared document by document, which is far more
sensitive than comparing two accuracies: the documents' difficulty cancels out. Pure functions on arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from effbench.records import SampleRow

BOOTSTRAP_SEED = 20240917  # fixed: the same two runs always give the same interval
BOOTSTRAP_ITERATIONS = 2000
CONFIDENCE = 0.95
CHUNK_CELLS = 4_000_000  # resampled indexes held at once (32 MB), whatever the number of documents

# values and weights of resampled documents (iterations × documents) → the task's figure per iteration
Aggregate = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def mean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """lm-eval's default aggregation: the mean over documents."""
    return values.mean(axis=-1)


def _weighted_loglikelihood(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Log-likelihood per word or byte over the corpus, as lm-eval's ``weighted_mean``."""
    if weights is None:
        raise ValueError("a corpus-level metric needs each document's words or bytes")
    return values.sum(axis=-1) / weights.sum(axis=-1)


def weighted_perplexity(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """lm-eval's word_perplexity and byte_perplexity: exp of minus the corpus log-likelihood per word or byte."""
    return np.exp(-_weighted_loglikelihood(values, weights))


def bits_per_byte(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """lm-eval's bits_per_byte: minus the corpus log-likelihood per byte, in bits."""
    return -_weighted_loglikelihood(values, weights) / math.log(2)


def perplexity(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """lm-eval's perplexity (loglikelihood tasks): exp of minus the mean log-likelihood per document."""
    return np.exp(-values.mean(axis=-1))


AGGREGATES: dict[str, Aggregate] = {
    "word_perplexity": weighted_perplexity,
    "byte_perplexity": weighted_perplexity,
    "bits_per_byte": bits_per_byte,
    "perplexity": perplexity,
}


def aggregate_of(metric: str) -> Aggregate:
    """How lm-eval turns a metric's per-document values into the task's figure (the mean unless listed)."""
    return AGGREGATES.get(metric, mean)


@dataclass(frozen=True)
class Paired:
    """A technique against its baseline on ``n`` shared documents; accuracy-type fields are None otherwise."""

    n: int
    delta: float  # technique − baseline, the task's figure computed from the documents
    ci_low: float
    ci_high: float
    ratio_low: float | None = None  # 95 % interval of technique ÷ baseline (None when the baseline's figure is 0)
    ratio_high: float | None = None
    p_value: float | None = None  # McNemar's exact test (0/1 outcomes only)
    right_to_wrong: float | None = None  # fraction of documents the baseline got right and the technique wrong
    wrong_to_right: float | None = None


def bootstrap_figures(
    technique: np.ndarray,
    baseline: np.ndarray,
    aggregate: Aggregate = mean,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
    iterations: int = BOOTSTRAP_ITERATIONS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """The task's figure of each run per bootstrap iteration, documents resampled jointly (the same for both)."""
    n = len(technique)
    rng = np.random.default_rng(seed)
    mine, theirs = [], []
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    for start in range(0, iterations, chunk):
        index = rng.integers(0, n, size=(min(chunk, iterations - start), n))
        tw = technique_weights[index] if technique_weights is not None else None
        bw = baseline_weights[index] if baseline_weights is not None else None
        mine.append(aggregate(technique[index], tw))
        theirs.append(aggregate(baseline[index], bw))
    return np.concatenate(mine), np.concatenate(theirs)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The percentile 95 % interval of bootstrap replicates."""
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_delta_ci(
    technique: np.ndarray,
    baseline: np.ndarray,
    aggregate: Aggregate = mean,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
    iterations: int = BOOTSTRAP_ITERATIONS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile 95 % interval of aggregate(technique) − aggregate(baseline), documents resampled jointly."""
    mine, theirs = bootstrap_figures(
        technique, baseline, aggregate, technique_weights, baseline_weights, iterations, seed
    )
    return percentile_interval(mine - theirs)


def bootstrap_interval(values: np.ndarray, metric: str, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile 95 % interval of one run's task figure over its documents (lm-eval gives perplexities no stderr)."""
    mine, _ = bootstrap_figures(values, values, aggregate_of(metric), weights, weights)
    return percentile_interval(mine)


def ratios(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """technique ÷ baseline per replicate; both zero is a ratio of 1 (nothing kept, nothing lost)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((mine == 0) & (theirs == 0), 1.0, mine / theirs)


def mcnemar_exact(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided p-value of McNemar's exact test: the discordant pairs against a fair coin (binomial, p = ½)."""
    discordant = right_to_wrong + wrong_to_right
    if discordant == 0:
        return 1.0
    fewer = min(right_to_wrong, wrong_to_right)
    tail = sum(math.comb(discordant, k) for k in range(fewer + 1))
    return min(1.0, 2 * tail / 2**discordant)  # exact integers: no underflow for thousands of documents


def is_binary(values: np.ndarray) -> bool:
    """Whether every value is 0 or 1: an accuracy-type outcome (right or wrong)."""
    return bool(np.isin(values, (0.0, 1.0)).all())


def compare(
    technique: np.ndarray,
    baseline: np.ndarray,
    metric: str,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
) -> Paired:
    """Δ, its paired bootstrap CI, and for 0/1 outcomes McNemar's p and the flips, of values aligned by document."""
    aggregate = aggregate_of(metric)
    delta = float(
        aggregate(technique, technique_weights) - aggregate(baseline, baseline_weights)  # type: ignore[operator]
    )
    mine, theirs = bootstrap_figures(technique, baseline, aggregate, technique_weights, baseline_weights)
    low, high = percentile_interval(mine - theirs)
    base = float(aggregate(baseline, baseline_weights))  # type: ignore[arg-type]
    ratio_low, ratio_high = percentile_interval(ratios(mine, theirs)) if base > 0 else (None, None)
    n = len(technique)
    if aggregate is not mean or not (is_binary(technique) and is_binary(baseline)):
        return Paired(n, delta, low, high, ratio_low, ratio_high)
    lost = int(((baseline == 1) & (technique == 0)).sum())
    gained = int(((baseline == 0) & (technique == 1)).sum())
    return Paired(n, delta, low, high, ratio_low, ratio_high, mcnemar_exact(lost, gained), lost / n, gained / n)


def _outcomes(samples: list[SampleRow], task: str, metric: str) -> dict[int, SampleRow]:
    """A run's outcome per document for one task and metric, after the first filter lm-eval logged for it."""
    chosen = [s for s in samples if s.task == task and s.metric == metric]
    return {s.doc_id: s for s in chosen if s.filter == chosen[0].filter}


def compare_samples(technique: list[SampleRow], baseline: list[SampleRow], task: str, metric: str) -> Paired | None:
    """The paired comparison of two runs' outcomes; None unless both scored exactly the same documents."""
    mine, theirs = _outcomes(technique, task, metric), _outcomes(baseline, task, metric)
    if not mine or mine.keys() != theirs.keys():
        return None
    docs = sorted(mine)
    weighted = aggregate_of(metric) in (weighted_perplexity, bits_per_byte)
    if weighted and any(mine[d].weight is None or theirs[d].weight is None for d in docs):
        return None

    def column(outcomes: dict[int, SampleRow], field: str) -> np.ndarray:
        return np.array([getattr(outcomes[d], field) for d in docs], dtype=float)

    weights = (column(mine, "weight"), column(theirs, "weight")) if weighted else (None, None)
    return compare(column(mine, "value"), column(theirs, "value"), metric, *weights)


def generated_tokens(samples: list[SampleRow]) -> dict[tuple[str, int], int]:
    """Tokens generated per (task, document) of a run's generative tasks (a document has a row per metric)."""
    return {(s.task, s.doc_id): s.prediction_tokens for s in samples if s.prediction_tokens is not None}


def output_length_ratio(technique: list[SampleRow], baseline: list[SampleRow]) -> float | None:
    """Mean generated tokens of the technique ÷ the baseline's, over the generative documents both answered."""
    mine, theirs = generated_tokens(technique), generated_tokens(baseline)
    shared = mine.keys() & theirs.keys()
    base = sum(theirs[k] for k in shared)
    return sum(mine[k] for k in shared) / base if shared and base else None
