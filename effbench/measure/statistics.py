"""The statistics behind every reported figure: percentiles, bootstrap CIs, and pooling repeats."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import replace

from effbench.api.context import Measurement

BOOTSTRAP_SAMPLES = 2000
# Two-sided 95 % Student t quantiles (0.975) by degrees of freedom, then the normal's 1.96 beyond 30
# (within 4 %): repeats are few, and scipy.stats would add 0.7 s to every worker's start.
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
NORMAL975 = 1.96


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default), so p50 of two values is their mean."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def bootstrap_mean_ci(values: Sequence[float], seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean: no normality assumed for skewed latencies."""
    if len(values) < 2:
        return values[0], values[0]
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(BOOTSTRAP_SAMPLES))
    tail = (1 - level) / 2 * 100
    return percentile(means, tail), percentile(means, 100 - tail)


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample stdev / |mean|): the spread of repeats, free of units."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / abs(mean) if mean else None


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Standard error and 95 % Student-t interval of the mean of a few repeats."""
    mean = statistics.fmean(values)
    stderr = statistics.stdev(values) / math.sqrt(len(values))
    df = len(values) - 1
    half = (T975[df - 1] if df <= len(T975) else NORMAL975) * stderr
    return stderr, mean - half, mean + half


def combine_repeats(per_repeat: list[list[Measurement]]) -> list[Measurement]:
    """One Measurement per (task, metric): the mean over repeats, with its t-interval and the repeats' CV.

    A quantity reported by only some repeats is combined over those; ``n`` becomes the number of repeats.
    """
    groups: dict[tuple[str, str], list[Measurement]] = {}
    for measurements in per_repeat:
        for m in measurements:
            groups.setdefault((m.task, m.metric), []).append(m)
    combined = []
    for group in groups.values():
        if len(group) == 1:
            combined.append(group[0])
            continue
        values = [m.value for m in group]
        stderr, low, high = t_interval(values)
        combined.append(
            replace(
                group[0],
                value=statistics.fmean(values),
                stderr=stderr,
                ci_low=low,
                ci_high=high,
                n=len(group),
                cv=cv(values),
                method=f"{group[0].method}; mean of {len(group)} repeats, 95 % t-interval".lstrip("; "),
            )
        )
    return combined
