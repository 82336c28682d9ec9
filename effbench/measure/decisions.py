"""Conclusions drawn from figures with uncertainty: three-valued quality gates, significant ratios, Pareto
dominance and ranks that respect intervals.

A conclusion is only drawn where the intervals allow it: a gate whose interval straddles its threshold is
inconclusive, a ratio whose interval includes 1 is not significant, and two runs whose intervals overlap on
an axis are tied on it. Pure functions on numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95 % quantile of the normal distribution
GATES = {"99%": 0.99, "99.9%": 0.999}  # MLPerf's accuracy targets: the share of the baseline's figure kept
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
NOT_SIGNIFICANT = "n.s."  # a change whose interval includes no change
NEVER = "never"  # a one-off cost no saving repays
OUTPUT_LENGTH_TOLERANCE = 0.10  # MLPerf: mean generated tokens within ±10 % of the reference's
PAIRS_AT_ONCE = 4_000_000  # pairs of points compared at once by pareto_front (a few MB of booleans)


@dataclass(frozen=True)
class Interval:
    """A figure and its 95 % interval; an exact figure (nothing known about its uncertainty) has low = high."""

    value: float
    low: float
    high: float

    @classmethod
    def of(
        cls, value: float, stderr: float | None = None, ci_low: float | None = None, ci_high: float | None = None
    ) -> Interval:
        """The stored interval, else value ± 1.96 standard errors, else the value alone (taken as exact)."""
        if ci_low is not None and ci_high is not None:
            return cls(value, min(ci_low, value), max(ci_high, value))
        if stderr is not None and math.isfinite(stderr):
            return cls(value, value - Z95 * stderr, value + Z95 * stderr)
        return cls(value, value, value)

    @staticmethod
    def bounds_of(
        value: np.ndarray, stderr: np.ndarray, ci_low: np.ndarray, ci_high: np.ndarray, bounded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The low and high bounds ``of`` gives many figures, computed at once (a NaN stderr stands for a missing
        one; ``bounded`` says where both interval bounds are stored): for tables of hundreds of thousands."""
        spread = Z95 * stderr
        finite = np.isfinite(stderr)
        low = np.where(finite, value - spread, value)
        high = np.where(finite, value + spread, value)
        low = np.where(bounded, np.where(value < ci_low, value, ci_low), low)  # min(ci_low, value), NaN and all
        high = np.where(bounded, np.where(value > ci_high, value, ci_high), high)
        return low, high

    @property
    def exact(self) -> bool:
        """Whether nothing is known about the figure's uncertainty (or it has none)."""
        return self.low == self.high

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point: the figures cannot be told apart."""
        return self.low <= other.high and other.low <= self.high


def standard_error(low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    """The standard errors 95 % intervals imply."""
    return np.subtract(high, low) / (2 * Z95)


Bounded = tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]  # figures' values, low and high bounds


def ratios(numerator: Bounded, denominator: Bounded) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """numerator ÷ denominator of many independent figures (arrays, or one figure's floats on a side) with their
    delta-method 95 % intervals: whether each has one (a numerator not negative, a positive denominator), its value,
    low and high bounds."""
    (top, top_low, top_high), (bottom, bottom_low, bottom_high) = numerator, denominator
    with np.errstate(divide="ignore", invalid="ignore"):  # where there is no ratio, or infinite figures
        value = np.divide(top, bottom)
        spreads = np.broadcast_arrays(
            standard_error(top_low, top_high) / bottom,
            (value * standard_error(bottom_low, bottom_high)) / bottom,
        )
        se = np.array(list(map(math.hypot, *(spread.ravel().tolist() for spread in spreads)))).reshape(value.shape)
        low, high = value - Z95 * se, value + Z95 * se
    defined = ~(np.less(top, 0) | np.less_equal(bottom, 0))
    return np.array(np.broadcast_to(defined, value.shape)), value, np.where(low > 0.0, low, 0.0), high


def significant(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Which ratios to the baseline differ from 1 beyond their intervals."""
    return ~((low <= 1.0) & (high >= 1.0))


def gate(defined: np.ndarray, low: np.ndarray, high: np.ndarray, threshold: float) -> np.ndarray:
    """Each kept share's verdict (an object array): pass when its whole interval reaches the threshold, fail when none
    of it does, else inconclusive; None where ``defined`` says it has no interval."""
    verdicts = np.full(len(low), INCONCLUSIVE, object)
    verdicts[high < threshold] = FAIL
    verdicts[low >= threshold] = PASS
    verdicts[~defined] = None
    return verdicts


def combine(verdicts: np.ndarray) -> np.ndarray:
    """One verdict per run over its tasks' (tasks × runs): any fail fails; all must pass to pass; unknown (None) if
    any is unknown or there is no task."""
    combined = np.full(verdicts.shape[1], PASS, object)
    combined[(verdicts == INCONCLUSIVE).any(axis=0)] = INCONCLUSIVE
    combined[np.equal(verdicts, None).any(axis=0) | (len(verdicts) == 0)] = None
    combined[(verdicts == FAIL).any(axis=0)] = FAIL
    return combined


def output_length_ok(length_ratio: float | None) -> bool | None:
    """MLPerf's rule: the mean number of generated tokens within ±10 % of the baseline's."""
    return None if length_ratio is None else abs(length_ratio - 1) <= OUTPUT_LENGTH_TOLERANCE


# A point on a Pareto chart: (cost, lower is better; score, higher is better).
Point = tuple[Interval, Interval]


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` beats ``b`` beyond the intervals on one axis and is not beaten beyond them on the other."""
    (a_cost, a_score), (b_cost, b_score) = a, b
    a_cheaper, b_cheaper = a_cost.high < b_cost.low, b_cost.high < a_cost.low
    a_better, b_better = a_score.low > b_score.high, b_score.low > a_score.high
    return (a_cheaper or a_better) and not (b_cheaper or b_better)


def pareto_front(points: Sequence[Point]) -> set[int]:
    """Indices of the points no other point dominates beyond the intervals (``dominates``, for every pair at once)."""
    if not points:
        return set()
    cost_low, cost_high, score_low, score_high = (
        np.array([getattr(point[axis], bound) for point in points], dtype=float)
        for axis, bound in ((0, "low"), (0, "high"), (1, "low"), (1, "high"))
    )
    dominated = np.zeros(len(points), dtype=bool)
    block = max(1, PAIRS_AT_ONCE // len(points))
    for start in range(0, len(points), block):
        p = slice(start, start + block)  # the points judged: columns; every other point q: rows
        q_wins = (cost_high[:, None] < cost_low[None, p]) | (score_low[:, None] > score_high[None, p])
        p_wins = (cost_high[None, p] < cost_low[:, None]) | (score_low[None, p] > score_high[:, None])
        dominated[p] = (q_wins & ~p_wins).any(axis=0)
    return set(np.flatnonzero(~dominated).tolist())


def tied(a: Point, b: Point) -> bool:
    """Whether two points cannot be told apart on either axis."""
    return a[0].overlaps(b[0]) and a[1].overlaps(b[1])


def tie_ranks(keys: Sequence[Sequence[Interval]]) -> list[int]:
    """Ranks (1-based) of items already sorted best first by their keys' values, compared key by key.

    An item is ranked apart from the leader of the group above it only when some key tells them apart beyond the
    intervals; otherwise it shares the leader's rank (a tie).
    """
    ranks: list[int] = []
    leader = 0
    for i, key in enumerate(keys):
        if i and any(not mine.overlaps(theirs) for mine, theirs in zip(key, keys[leader], strict=True)):
            leader = i
        ranks.append(leader + 1)
    return ranks
