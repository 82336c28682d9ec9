"""Computation under load: latency distributions, time to first token, time per output token, throughput."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from effbench.api.context import Measurement, Request, RunContext
from effbench.api.metric import Metric, Quantity
from effbench.hookspecs import hookimpl
from effbench.measure.statistics import bootstrap_mean_ci, combine_repeats, cv, percentile

PERCENTILES = (50, 90, 95, 99)
CLOCK = "time.perf_counter around generate(), read once the device has finished its work"


def _per_repeat_means(requests: list[Request], value: Callable[[Request], float | None]) -> list[float]:
    by_repeat: dict[int, list[float]] = {}
    for r in requests:
        v = value(r)
        if v is not None:
            by_repeat.setdefault(r.repeat, []).append(v)
    return [statistics.fmean(vs) for vs in by_repeat.values()]


def distribution(
    name: str, requests: list[Request], value: Callable[[Request], float | None], method: str
) -> list[Measurement]:
    """Mean (standard error, bootstrap 95 % CI, CV of the repeats' means) and percentiles, in milliseconds."""
    values = [v * 1000 for r in requests if (v := value(r)) is not None]
    if not values:
        return []
    n = len(values)
    low, high = bootstrap_mean_ci(values)
    stderr = statistics.stdev(values) / math.sqrt(n) if n > 1 else None
    mean = Measurement(
        name,
        statistics.fmean(values),
        "ms",
        "computation",
        False,
        stderr=stderr,
        ci_low=low,
        ci_high=high,
        n=n,
        cv=cv(_per_repeat_means(requests, value)),
        method=f"{method}; 95 % CI: bootstrap of the mean over {n} requests",
    )
    tails = [
        Measurement(f"{name}_p{p}", percentile(values, p), "ms", "computation", False, n=n, method=method)
        for p in PERCENTILES
    ]
    return [mean, *tails]


def distribution_quantities(
    name: str, description: str, header: str, digits: int, ratio_header: str = ""
) -> tuple[Quantity, ...]:
    """A per-request time's declared quantities: the mean, and percentiles (latency's p99 shown, others detail)."""
    is_latency = name == "latency"
    mean = Quantity(
        name, "ms", "computation", False, description,
        header=header, digits=digits, ratio_header=ratio_header, headline=is_latency,
    )  # fmt: skip
    tails = []
    for p in PERCENTILES:
        shown = is_latency and p == 99
        tails.append(
            Quantity(
                f"{name}_p{p}",
                "ms",
                "computation",
                False,
                f"{p}th percentile of {name} over the scenario's requests.",
                header=f"p{p} (ms)" if is_latency else f"{name} p{p} (ms)",
                digits=digits,
                detail=not shown,
            )
        )
    return (mean, *tails)


class _Distribution(Metric):
    """A per-request time: its mean with a bootstrap CI and its percentiles, over all repeats of a scenario."""

    unit = "ms"
    resource = "computation"
    higher_is_better = False
    scope = "scenario"
    method = f"{CLOCK}, first token from a streamer"

    def value(self, request: Request) -> float | None:
        raise NotImplementedError

    def stop(self, run: RunContext) -> list[Measurement]:
        return distribution(self.name, run.requests, self.value, self.method)


class Latency(_Distribution):
    """End-to-end latency per request, from arrival to last token (queueing included in the server scenario)."""

    name = "latency"
    description = "End-to-end latency per request: mean with bootstrap 95 % CI, p50/p90/p95/p99."
    quantities = distribution_quantities(name, description, "Latency (ms)", 1, ratio_header="Speed-up ×")
    method = CLOCK

    def value(self, request: Request) -> float:
        return request.latency_s


class TimeToFirstToken(_Distribution):
    """Time from a request's arrival to its first generated token (prefill plus any queueing)."""

    name = "ttft"
    description = "Time to first token: mean with bootstrap 95 % CI, p50/p90/p95/p99."
    quantities = distribution_quantities(name, description, "TTFT (ms)", 2)

    def value(self, request: Request) -> float | None:
        return request.ttft_s


class TimePerOutputToken(_Distribution):
    """Decode speed: (latency - time to first token) / (output tokens - 1), per request."""

    name = "tpot"
    description = "Time per output token after the first: mean with bootstrap 95 % CI, p50/p90/p95/p99."
    quantities = distribution_quantities(name, description, "TPOT (ms)", 2)

    def value(self, request: Request) -> float | None:
        return request.tpot_s


class Throughput(Metric):
    """Output tokens and requests per second of each repeat's wall-clock time (idle waits included)."""

    name = "throughput"
    unit = "tokens/s"
    resource = "computation"
    higher_is_better = True
    scope = "scenario"
    description = "Output tokens/s and requests/s per repeat: mean with 95 % t-interval over repeats and CV."
    quantities = (
        Quantity(name, unit, resource, True, "Output tokens per second of each repeat's wall clock (idle included).",
                 header="Tokens/s", digits=1, headline=True),
        Quantity("request_rate", "requests/s", "computation", True,
                 "Requests served per second of each repeat's wall clock.", header="Requests/s", digits=2),
    )  # fmt: skip

    def stop(self, run: RunContext) -> list[Measurement]:
        if not run.requests or not all(run.repeat_seconds):
            return []
        method = "count / wall-clock seconds of each repeat"
        per_repeat = []
        for i, seconds in enumerate(run.repeat_seconds):
            served = [r for r in run.requests if r.repeat == i]
            tokens = sum(r.new_tokens for r in served)
            per_repeat.append(
                [
                    self.measurement(tokens / seconds, method=method),
                    self.measurement(len(served) / seconds, "request_rate", method=method),
                ]
            )
        return combine_repeats(per_repeat)


@hookimpl
def register_metrics(register):
    for metric in (Latency(), TimeToFirstToken(), TimePerOutputToken(), Throughput()):
        register(metric)
