"""Measurement you can trust: every scenario on micro-m, FLOPs against the Llama formula, arrivals, statistics."""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from scipy.stats import t  # an lm-eval dependency (via scikit-learn): the reference for effbench's t table

from effbench.api.context import Measurement, RunContext
from effbench.config.suite import Scenario
from effbench.default_plugins.metrics.model import forward_flops
from effbench.measure.scenarios import Generator, poisson_arrivals, prompts, run_repeat
from effbench.measure.statistics import bootstrap_mean_ci, combine_repeats, cv, percentile, t_interval
from effbench.measure.windows import Instruments
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.run.pipeline import measure

PRICE = {"device": "test", "usd_per_hour": 0.36, "usd_per_kwh": 0.2, "basis": "test 0.36 $/h"}
SCENARIOS = [
    Scenario(min_requests=3, repeats=2, warmup=1, prompt_tokens=16, output_tokens=8),
    Scenario(kind="fixed-batch", batch_size=2, min_requests=3, repeats=2, warmup=1, prompt_tokens=16, output_tokens=8),
    Scenario(kind="server", rate=50, min_requests=4, repeats=2, warmup=1, prompt_tokens=16, output_tokens=8),
    Scenario(kind="offline", batch_size=4, min_requests=4, repeats=2, warmup=0, prompt_tokens=16, output_tokens=8),
]
# metric -> (unit, resource) every scenario must report
PER_SCENARIO = {
    "latency": ("ms", "computation"),
    "latency_p50": ("ms", "computation"),
    "latency_p90": ("ms", "computation"),
    "latency_p95": ("ms", "computation"),
    "latency_p99": ("ms", "computation"),
    "ttft": ("ms", "computation"),
    "tpot": ("ms", "computation"),
    "throughput": ("tokens/s", "computation"),
    "request_rate": ("requests/s", "computation"),
    "peak_memory": ("MiB", "memory"),
    "energy": ("kWh", "energy"),
    "co2": ("kg CO2eq", "energy"),
    "energy_per_token": ("J/token", "energy"),
    "energy_per_request": ("J/request", "energy"),
    "cost_per_mtok": ("USD/Mtok", "money"),
    "network_sent": ("kB", "network"),
    "network_received": ("kB", "network"),
}
PER_RUN = {
    "weight_bytes": ("MB", "memory"),
    "disk_bytes": ("MB", "memory"),
    "parameters": ("count", "memory"),
    "parameters_nonzero": ("count", "memory"),
    "parameters_trainable": ("count", "memory"),
    "flops_prefill": ("GFLOP/token", "computation"),
    "flops_decode": ("GFLOP/token", "computation"),
    "apply_time": ("s", "computation"),
    "cost_run": ("USD", "money"),
}


@pytest.fixture(scope="module")
def micro_m():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the machine is shared: one thread keeps the timings steady
    yield zoo.load("zoo:micro-m")
    torch.set_num_threads(threads)


def _context(model, tokenizer) -> RunContext:
    settings = {"country": "FRA", "idle_seconds": 0, "price": PRICE, "prompt_tokens": 16}
    return RunContext(
        model=model,
        tokenizer=tokenizer,
        technique="baseline",
        params={},
        settings=settings,
        started_at=time.perf_counter(),
    )


def test_every_scenario_yields_every_metric_with_units_and_resources(micro_m):
    model, tokenizer = micro_m
    instruments = Instruments(list(registry().metrics.values()))
    measurements = measure(_context(model, tokenizer), instruments, SCENARIOS)
    assert instruments.warnings == []
    by = {(m.scenario, m.metric): m for m in measurements}
    for metric, (unit, resource) in PER_RUN.items():
        assert (by[("", metric)].unit, by[("", metric)].resource) == (unit, resource), metric
    for scenario in SCENARIOS:
        for metric, (unit, resource) in PER_SCENARIO.items():
            m = by[(scenario.label, metric)]
            assert (m.unit, m.resource) == (unit, resource) and m.method, (scenario.label, metric)
        latency, ttft, tpot = (by[(scenario.label, k)] for k in ("latency", "ttft", "tpot"))
        assert latency.ci_low <= latency.value <= latency.ci_high and latency.cv is not None
        assert 0 < ttft.value < latency.value and tpot.value > 0
        assert by[(scenario.label, "latency_p50")].value <= by[(scenario.label, "latency_p99")].value
        assert by[(scenario.label, "throughput")].n == 2  # one rate per repeat
        assert "codecarbon" in by[(scenario.label, "energy")].method
        assert "FRA grid" in by[(scenario.label, "co2")].method
    # fixed batches of 2 to reach 3 requests: 4 per repeat, 8 in all
    assert by[("fixed-batch(batch=2)", "latency")].n == 8
    # cost: hardware time plus energy; with 0.36 $/h a second costs 1e-4 $
    single = "single-stream"
    tokens = by[(single, "throughput")].value
    assert by[(single, "cost_per_mtok")].value >= 1e-4 / tokens * 1e6 * 0.5


def test_first_token_is_timed_after_the_prefill_and_before_the_rest(micro_m):
    """The streamer first receives the prompt: the clock must stop at the first *generated* token."""
    model, tokenizer = micro_m
    forwards: list[float] = []
    hook = model.register_forward_hook(lambda *_: forwards.append(time.perf_counter()))
    try:
        new_tokens, first, finished = Generator(_context(model, tokenizer), 8)(prompts(tokenizer, 1, 16))
    finally:
        hook.remove()
    assert new_tokens == [8] and len(forwards) == 8  # one prefill, then a forward per further token
    assert forwards[0] <= first <= forwards[1] <= finished  # after the prefill produced token 1, before token 2


def test_server_latency_includes_queueing(micro_m):
    """Arrivals far faster than the model serves them queue: each request waits for all before it."""
    model, tokenizer = micro_m
    flood = Scenario(kind="server", rate=1000, min_requests=6, repeats=1, warmup=0, prompt_tokens=16, output_tokens=8)
    requests, seconds = run_repeat(_context(model, tokenizer), flood, 0)
    service = [r.latency_s - r.queued_s for r in requests]
    assert all(s > 0 for s in service) and len(requests) == 6
    for i, r in enumerate(requests):
        # arrivals are ~1 ms apart, so request i waits for the i services before it (less the arrival gaps)
        assert r.queued_s == pytest.approx(sum(service[:i]), abs=0.01 * (i + 1))
    assert requests[-1].latency_s > 4 * statistics.median(service)
    assert seconds == pytest.approx(sum(service), abs=0.05)
    # a slow arrival rate leaves the server idle between requests: no queueing, and the repeat lasts longer
    calm = Scenario(kind="server", rate=4, min_requests=3, repeats=1, warmup=0, prompt_tokens=16, output_tokens=8)
    requests, seconds = run_repeat(_context(model, tokenizer), calm, 0)
    arrivals = poisson_arrivals(4, seed=0)
    last_arrival = [next(arrivals) for _ in requests][-1]
    assert all(r.queued_s < 0.02 for r in requests)  # seed 0 spaces them wider than a service
    assert seconds == pytest.approx(last_arrival + requests[-1].latency_s, abs=0.01)


def _llama_flops(config, tokens: int, context: int) -> float:
    """Analytical matmul FLOPs of a Llama forward pass: projections, attention scores and values, LM head."""
    h, layers = config.hidden_size, config.num_hidden_layers
    dh = config.head_dim
    q_width, kv_width = config.num_attention_heads * dh, config.num_key_value_heads * dh
    projections = h * (q_width + 2 * kv_width) + q_width * h + 3 * h * config.intermediate_size
    attention = 2 * context * q_width  # q·k and weights·v per query token
    per_token = 2 * (layers * (projections + attention) + h * config.vocab_size)
    return per_token * tokens


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_measured_flops_match_the_llama_formula(micro_m, attention):
    """Attention is counted whichever kernel runs it (torch has no formula for SDPA's CPU kernel)."""
    model, tokenizer = micro_m
    model.set_attn_implementation(attention)
    try:
        ids = torch.tensor(prompts(tokenizer, 1, 96))
        prefill = forward_flops(model, ids)
        with torch.inference_mode():
            cache = model(ids, use_cache=True).past_key_values
        decode = forward_flops(model, ids[:, -1:], cache)
    finally:
        model.set_attn_implementation("sdpa")
    # at 96 tokens attention is 9 % of the FLOPs: leaving it out would miss the 5 % tolerance
    assert prefill == pytest.approx(_llama_flops(model.config, 96, 96), rel=0.05)
    assert decode == pytest.approx(_llama_flops(model.config, 1, 97), rel=0.05)


def test_quantized_kernels_count_the_same_flops(micro_m):
    """int8 weights change the precision of the multiplications, not how many there are."""
    from effbench.default_plugins.techniques.quantization import DynamicInt8

    model, tokenizer = micro_m
    ids = torch.tensor(prompts(tokenizer, 1, 32))
    quantized = DynamicInt8().apply(zoo.load("zoo:micro-m")[0], tokenizer)
    assert forward_flops(quantized, ids) == forward_flops(model, ids)


def test_poisson_arrivals_have_the_configured_rate():
    arrivals = poisson_arrivals(rate=4.0, seed=7)
    times = [next(arrivals) for _ in range(20000)]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert len(times) / times[-1] == pytest.approx(4.0, rel=0.03)
    assert statistics.stdev(gaps) / statistics.fmean(gaps) == pytest.approx(1.0, rel=0.05)  # exponential: CV 1
    assert sum(g < 0.25 for g in gaps) / len(gaps) == pytest.approx(1 - 2.718281828**-1, abs=0.02)  # P(gap<1/λ)
    assert next(poisson_arrivals(4.0, seed=7)) == times[0] != next(poisson_arrivals(4.0, seed=8))


def test_statistics_on_known_values():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([5.0], 99) == 5.0
    assert cv([10.0, 10.0]) == 0.0 and cv([1.0]) is None
    assert cv([9.0, 11.0]) == pytest.approx(statistics.stdev([9, 11]) / 10)
    stderr, low, high = t_interval([9.0, 11.0, 10.0])
    assert stderr == pytest.approx(1 / 3**0.5) and (low + high) / 2 == pytest.approx(10.0)
    for n in (2, 5, 12, 31, 32, 100):  # the table, and the normal approximation beyond it
        values = [float(i % 3) for i in range(n)]
        stderr, low, high = t_interval(values)
        assert (high - low) / 2 / stderr == pytest.approx(t.ppf(0.975, n - 1), rel=0.04 if n > 31 else 1e-3)
    wide = bootstrap_mean_ci([float(i % 10) for i in range(20)])
    narrow = bootstrap_mean_ci([float(i % 10) for i in range(2000)])
    assert wide[0] < 4.5 < wide[1] and narrow[0] < 4.5 < narrow[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5


def test_repeats_combine_into_mean_interval_and_cv():
    def energy(value):
        return Measurement("energy", value, "kWh", "energy", False, method="codecarbon")

    combined = combine_repeats([[energy(1.0)], [energy(2.0)], [energy(3.0)]])
    (m,) = combined
    assert m.value == 2.0 and m.n == 3 and m.cv == pytest.approx(0.5)
    assert m.ci_low < 2.0 < m.ci_high and "mean of 3 repeats" in m.method
    assert combine_repeats([[energy(1.0)]]) == [energy(1.0)]  # one repeat: reported as measured
