"""The statistics behind every reported figure: percentiles, bootstrap CIs, and pooling repeats."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import replace

from effbench.types import Measurement

BOOTSTRAP_SAMPLES = 2000
# Two-sided 97.5 % Student t quantiles by degrees of freedom (normal beyond 30): repeats are few.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


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
    half = _T975.get(len(values) - 1, 1.96) * stderr
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
