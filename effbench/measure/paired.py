"""Paired statistics of a technique against its baseline on the same documents: Δ with a bootstrap CI, McNemar, flips.

Two runs that answered the same documents are compared document by document, which is far more
sensitive than comparing two accuracies: the documents' difficulty cancels out. Pure functions on arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SEED = 20240917  # fixed: the same two runs always give the same interval
BOOTSTRAP_ITERATIONS = 2000
CONFIDENCE = 0.95
CHUNK_CELLS = 4_000_000  # resampled indexes held at once (32 MB), whatever the number of documents
BLOCK_CELLS = 131_072  # replicates coded at once (1 MB)
COUNTED_CELLS = 4_000_000  # runs × codes counted at once (32 MB): beyond, replicates are partitioned as numpy does

# the documents' summed values and summed weights (None without weights) and their count → the task's figure
Finish = Callable[[np.ndarray, np.ndarray | None, int], np.ndarray]


@dataclass(frozen=True)
class Aggregate:
    """How lm-eval turns per-document values into the task's figure: a function of their sums (and their weights'),
    so a bootstrap replicate is one matrix–vector product of draw counts and values, whatever the documents."""

    finish: Finish
    weighted: bool = False  # needs each document's words or bytes

    def __call__(self, values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The figure of documents along the last axis."""
        if self.weighted and weights is None:
            raise ValueError("a corpus-level metric needs each document's words or bytes")
        summed = None if weights is None else weights.sum(axis=-1)
        return self.finish(values.sum(axis=-1), summed, values.shape[-1])


def _per_word(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Log-likelihood per word or byte over the corpus, as lm-eval's ``weighted_mean``."""
    return values / weights  # type: ignore[operator]


mean = Aggregate(lambda values, _, n: values / n)  # lm-eval's default: the mean over documents
# lm-eval's word_perplexity and byte_perplexity: exp of minus the corpus log-likelihood per word or byte
weighted_perplexity = Aggregate(lambda values, weights, _: np.exp(-_per_word(values, weights)), weighted=True)
# lm-eval's bits_per_byte: minus the corpus log-likelihood per byte, in bits
bits_per_byte = Aggregate(lambda values, weights, _: -_per_word(values, weights) / math.log(2), weighted=True)
perplexity = Aggregate(lambda values, _, n: np.exp(-(values / n)))  # loglikelihood tasks: exp(−mean log-likelihood)

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


@functools.lru_cache(maxsize=8)
def _resamples(n: int, iterations: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The bootstrap's resampled document indexes chunk by chunk, with how often each document is drawn in each
    iteration: the same for every pair of runs with ``n`` documents (one seed), so drawn once (read-only, shared)."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_CELLS // max(n, 1))
    out = []
    for start in range(0, iterations, chunk):
        index = rng.integers(0, n, size=(min(chunk, iterations - start), n))
        rows = np.arange(len(index))[:, None] * n
        counts = np.bincount((rows + index).ravel(), minlength=index.size).reshape(index.shape).astype(float)
        index.setflags(write=False)
        counts.setflags(write=False)
        out.append((index, counts))
    return tuple(out)


def bootstrap_figures(
    technique: np.ndarray,
    baseline: np.ndarray,
    aggregate: Aggregate = mean,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
    iterations: int = BOOTSTRAP_ITERATIONS,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """The task's figure of each run per bootstrap iteration, documents resampled jointly (the same for both).

    ``technique`` may hold several runs (runs × documents): each gets the same resampled documents, as it would
    alone, and its figures are a row of the result.
    """
    rows = np.atleast_2d(technique)
    row_weights = None if technique_weights is None else np.atleast_2d(technique_weights)
    counted = bool(is_binary(rows).all() and is_binary(baseline))
    mine, theirs = [], []
    n = technique.shape[-1]
    for _, counts in _resamples(n, iterations, seed):
        # summed draws: of 0/1 outcomes exact integers, every run at once; else run by run, one matrix–vector
        # product each, so a run's figures do not depend on the runs computed beside it
        sums = rows @ counts.T if counted else np.stack([counts @ row for row in rows])
        summed_weights = None if row_weights is None else np.stack([counts @ w for w in row_weights])
        mine.append(aggregate.finish(sums, summed_weights, n))
        base_weights = None if baseline_weights is None else counts @ baseline_weights
        theirs.append(aggregate.finish(counts @ baseline, base_weights, n))
    figures = np.concatenate(mine, axis=1)
    return figures if technique.ndim > 1 else figures[0], np.concatenate(theirs)


TAILS = [(1 - CONFIDENCE) / 2 * 100, 100 - (1 - CONFIDENCE) / 2 * 100]  # the interval's percentiles


def percentile_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The percentile 95 % interval of bootstrap replicates (of each row, for several runs' replicates)."""
    low, high = np.percentile(values, TAILS, axis=-1)
    return low, high


def counted_intervals(
    techniques: np.ndarray, baseline: np.ndarray, with_ratio: bool
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
    """``percentile_interval`` of the bootstrap's Δ and ratio replicates of 0/1 outcomes, from how many right answers
    each draw holds (k/n − j/n takes few values): each row's replicates counted, not partitioned. The order
    statistics are the same and interpolated as numpy's linear method does, so the figures are the same."""
    n = techniques.shape[1]
    counts = np.concatenate([c for _, c in _resamples(n, BOOTSTRAP_ITERATIONS, BOOTSTRAP_SEED)])
    rows, drawn = len(techniques), len(counts)
    width = (n + 1) ** 2
    held = np.empty((rows, width), np.int64)  # per run, how many replicates hold each code
    scaled, base_sums = counts.T * (n + 1), baseline @ counts.T
    block = max(1, BLOCK_CELLS // drawn)
    for start in range(0, rows, block):  # small blocks: their arrays reuse memory instead of faulting in new pages
        codes = techniques[start : start + block] @ scaled  # right answers of the run × (n + 1): whole numbers
        codes += base_sums  # + the baseline's: one code per replicate
        offset = codes.astype(np.int64)
        offset += np.arange(len(offset))[:, None] * width
        held[start : start + block] = np.bincount(offset.ravel(), minlength=offset.size // drawn * width).reshape(
            len(offset), width
        )
    share = np.arange(n + 1) / n  # each share of right answers, as ``mean`` computes it from a sum
    mine, theirs = np.meshgrid(share, share, indexing="ij")
    tables = [mine - theirs, ratios(mine, theirs)] if with_ratio else [mine - theirs]
    intervals = []
    for table in (t.ravel() for t in tables):
        order = np.argsort(table, kind="stable")
        at_or_below = held[:, order].cumsum(axis=1)
        ordered = table[order]
        bounds = []
        for at in np.true_divide(TAILS, 100) * (drawn - 1):
            below = int(np.floor(at))
            gamma = at - below
            low = ordered[(at_or_below > below).argmax(axis=1)]  # each row's (below + 1)-th smallest replicate
            high = ordered[(at_or_below > min(below + 1, drawn - 1)).argmax(axis=1)]
            with np.errstate(invalid="ignore"):  # between two infinite ratios: NaN, as numpy gives
                step = high - low
                bounds.append(high - step * (1 - gamma) if gamma >= 0.5 else low + step * gamma)
        intervals.append((bounds[0], bounds[1]))
    return intervals[0], intervals[1] if with_ratio else None


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
    low, high = percentile_interval(mine - theirs)
    return float(low), float(high)


def bootstrap_interval(values: np.ndarray, metric: str, weights: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile 95 % interval of one run's task figure over its documents (lm-eval gives perplexities no stderr)."""
    mine, _ = bootstrap_figures(values, values, aggregate_of(metric), weights, weights)
    low, high = percentile_interval(mine)
    return float(low), float(high)


def ratios(mine: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    """technique ÷ baseline per replicate; both zero is a ratio of 1 (nothing kept, nothing lost)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((mine == 0) & (theirs == 0), 1.0, mine / theirs)


@functools.lru_cache(maxsize=65536)  # a few hundred pairs of counts recur over thousands of runs
def mcnemar_exact(right_to_wrong: int, wrong_to_right: int) -> float:
    """Two-sided p-value of McNemar's exact test: the discordant pairs against a fair coin (binomial, p = ½)."""
    discordant = right_to_wrong + wrong_to_right
    if discordant == 0:
        return 1.0
    fewer = min(right_to_wrong, wrong_to_right)
    tail = sum(math.comb(discordant, k) for k in range(fewer + 1))
    return min(1.0, 2 * tail / 2**discordant)  # exact integers: no underflow for thousands of documents


def is_binary(values: np.ndarray) -> np.ndarray:
    """Whether every value is 0 or 1 (an accuracy-type outcome: right or wrong), of each row of runs × documents."""
    return ((values == 0.0) | (values == 1.0)).all(axis=-1)


def compare_many(
    techniques: np.ndarray,
    baseline: np.ndarray,
    metric: str,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
) -> list[Paired]:
    """``compare`` of several runs (runs × documents) with one baseline: each run's figures as ``compare`` gives them
    alone, the bootstrap's documents drawn once for all."""
    aggregate = aggregate_of(metric)
    deltas = aggregate(techniques, technique_weights) - aggregate(baseline, baseline_weights)  # type: ignore[operator]
    base = float(aggregate(baseline, baseline_weights))  # type: ignore[arg-type]
    n = techniques.shape[1]
    binary = (aggregate is mean and is_binary(baseline)) & is_binary(techniques)
    if binary.all() and (n + 1) ** 2 * len(techniques) <= COUNTED_CELLS:
        (lows, highs), ratio = counted_intervals(techniques, baseline, base > 0)
        ratio_lows, ratio_highs = ratio or (None, None)
    else:
        mine, theirs = bootstrap_figures(techniques, baseline, aggregate, technique_weights, baseline_weights)
        lows, highs = percentile_interval(mine - theirs)
        ratio_lows, ratio_highs = percentile_interval(ratios(mine, theirs)) if base > 0 else (None, None)
    lost = ((baseline == 1) & (techniques == 0)).sum(axis=1).tolist()
    gained = ((baseline == 0) & (techniques == 1)).sum(axis=1).tolist()
    out = []
    for i in range(len(techniques)):
        ratio_low, ratio_high = (None, None) if ratio_lows is None else (float(ratio_lows[i]), float(ratio_highs[i]))
        shared = (n, float(deltas[i]), float(lows[i]), float(highs[i]), ratio_low, ratio_high)
        if not binary[i]:
            out.append(Paired(*shared))
            continue
        out.append(Paired(*shared, mcnemar_exact(lost[i], gained[i]), lost[i] / n, gained[i] / n))
    return out


def compare(
    technique: np.ndarray,
    baseline: np.ndarray,
    metric: str,
    technique_weights: np.ndarray | None = None,
    baseline_weights: np.ndarray | None = None,
) -> Paired:
    """Δ, its paired bootstrap CI, and for 0/1 outcomes McNemar's p and the flips, of values aligned by document."""
    weights = None if technique_weights is None else technique_weights[None, :]
    return compare_many(technique[None, :], baseline, metric, weights, baseline_weights)[0]


@dataclass(frozen=True)
class Outcome:
    """One run's value per document in one task and metric, after the first filter lm-eval logged for it."""

    doc_ids: np.ndarray  # ascending, each once
    values: np.ndarray
    weights: np.ndarray  # words or bytes (NaN where none was stored)


def outcome(doc_ids: np.ndarray, values: np.ndarray, weights: np.ndarray, filters: np.ndarray) -> Outcome | None:
    """The outcome of a run's rows of one task and metric in stored order (a document logged twice keeps its last)."""
    if not len(doc_ids):
        return None
    if (filters[1:] == filters[0]).all() and (doc_ids[1:] > doc_ids[:-1]).all():  # as lm-eval logs them: as is
        return Outcome(doc_ids, values, weights)
    chosen = filters == filters[0]
    docs = doc_ids[chosen][::-1]
    distinct, first_reversed = np.unique(docs, return_index=True)
    last = len(docs) - 1 - first_reversed
    return Outcome(distinct, values[chosen][last], weights[chosen][last])


@dataclass(frozen=True)
class Aligned:
    """The runs whose outcomes pair with a baseline's (exactly its documents, with their words or bytes where the
    metric weighs them): their positions among the ``count`` runs asked for, and their arrays as (runs × documents)
    matrices, each row in the baseline's order."""

    count: int
    chosen: list[int]
    doc_ids: np.ndarray
    values: np.ndarray
    weights: np.ndarray

    def rows(self, rows: list[int]) -> Aligned:
        """Some of its runs only (their rows)."""
        chosen = [self.chosen[row] for row in rows]
        return Aligned(self.count, chosen, self.doc_ids[rows], self.values[rows], self.weights[rows])


def aligned(
    count: int,
    positions: np.ndarray,
    doc_ids: np.ndarray,
    values: np.ndarray,
    weights: np.ndarray,
    baseline: Outcome | None,
    metric: str,
) -> Aligned:
    """The candidates (rows of these matrices: runs' outcomes of the baseline's length, at ``positions`` among
    ``count`` runs) that pair with the baseline's outcome, checked for every run at once."""
    n = 0 if baseline is None else len(baseline.doc_ids)
    weighted = aggregate_of(metric).weighted
    if baseline is None or (weighted and np.isnan(baseline.weights).any()) or not len(positions):
        empty = np.empty((0, n))
        return Aligned(count, [], empty.astype(np.int64), empty, empty)
    same = (doc_ids == baseline.doc_ids).all(axis=1)
    if weighted:
        same &= ~np.isnan(weights).any(axis=1)
    order = np.argsort(positions[same], kind="stable")  # the runs in the order asked for
    rows = np.flatnonzero(same)[order]
    return Aligned(count, positions[rows].tolist(), doc_ids[rows], values[rows], weights[rows])


def align(techniques: list[Outcome | None], baseline: Outcome | None, metric: str) -> Aligned:
    """``aligned`` of runs' outcomes given one by one."""
    n = 0 if baseline is None else len(baseline.doc_ids)
    sized = [i for i, mine in enumerate(techniques) if mine is not None and len(mine.doc_ids) == n]
    stacked = [np.stack([getattr(techniques[i], name) for i in sized]) if sized else np.empty((0, n))
               for name in ("doc_ids", "values", "weights")]  # fmt: skip
    return aligned(len(techniques), np.array(sized, np.int64), *stacked, baseline, metric)


def compare_aligned(runs: Aligned, baseline: Outcome | None, metric: str) -> list[Paired | None]:
    """The paired comparison of each run with the baseline; None for a run that did not score the same documents."""
    out: list[Paired | None] = [None] * runs.count
    if not runs.chosen or baseline is None:
        return out
    weighted = aggregate_of(metric).weighted
    weights = (runs.weights, baseline.weights) if weighted else (None, None)
    for i, result in zip(runs.chosen, compare_many(runs.values, baseline.values, metric, *weights), strict=True):
        out[i] = result
    return out


def compare_outcomes(techniques: list[Outcome | None], baseline: Outcome | None, metric: str) -> list[Paired | None]:
    """``compare_aligned`` of runs' outcomes given one by one."""
    return compare_aligned(align(techniques, baseline, metric), baseline, metric)
