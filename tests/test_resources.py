"""Energy from direct counters (a fake source), idle power, money, network, and bad measurement settings."""

from __future__ import annotations

import re
import time

import pytest

from effbench import network
from effbench.api.context import Measurement, Request, RunContext
from effbench.config.suite import load_suite
from effbench.default_plugins.metrics.cost import Cost, RunCost
from effbench.default_plugins.metrics.energy import DirectEnergy
from effbench.default_plugins.metrics.system import NetworkBytes
from effbench.errors import EffbenchError
from effbench.measure.energy_sources import EnergySource


class SteadyPower(EnergySource):
    """A fake counter: a constant draw of ``watts`` since creation, like RAPL's package counter."""

    name = "FAKE"
    method = "measured (fake counter)"

    def __init__(self, watts: float) -> None:
        self.watts = watts
        self.since = time.perf_counter()

    def read_joules(self) -> dict[str, float]:
        return {"package-0": self.watts * (time.perf_counter() - self.since)}

    def span(self) -> dict[str, float]:
        return {"package-0": float("inf")}


def _context(**settings) -> RunContext:
    ctx = RunContext(model=None, tokenizer=None, technique="t", params={}, settings=settings)
    ctx.requests = [Request(16, 10, 0.1), Request(16, 10, 0.1)]
    return ctx


def _work(ctx: RunContext, metric, seconds: float) -> dict[str, Measurement]:
    window = metric.open(ctx)
    time.sleep(seconds)
    return {m.metric: m for m in window.close(ctx)}


def test_direct_counters_give_measured_energy_per_token_and_request():
    ctx = _context()
    started = time.perf_counter()
    out = _work(ctx, DirectEnergy([SteadyPower(20.0)]), 0.3)
    elapsed = time.perf_counter() - started
    joules = out["energy_direct"].value * 3.6e6
    assert 20 * 0.3 <= joules <= 20 * elapsed  # 20 W over the sleep, however long the machine made it
    assert out["energy_direct"].method == "measured (fake counter)"
    assert out["energy_direct_per_token"].value == pytest.approx(joules / 20)
    assert out["energy_direct_per_request"].value == pytest.approx(joules / 2)
    assert "energy_direct_above_idle" not in out


def test_idle_power_is_measured_once_and_subtracted():
    ctx = _context(idle_seconds=0.2)
    metric = DirectEnergy([SteadyPower(20.0)])
    first = _work(ctx, metric, 0.2)
    idle_w = ctx.idle_watts["energy_direct"]  # kept with the run, not on the metric
    assert idle_w == pytest.approx(20.0, rel=0.05)
    # a steady 20 W machine spends nothing above its idle draw
    assert first["energy_direct_above_idle"].value * 3.6e6 == pytest.approx(0.0, abs=0.3)
    stated = re.search(r"idle ([0-9.]+) W subtracted", first["energy_direct_per_token"].method)
    assert stated and float(stated.group(1)) == pytest.approx(idle_w, abs=0.005)
    begins = []
    begin = metric.begin
    metric.begin = lambda run: begins.append(run) or begin(run)
    _work(ctx, metric, 0.0)
    assert len(begins) == 1  # a later repeat starts measuring at once: idle is not measured again


def test_no_counters_opens_no_window():
    assert DirectEnergy([]).open(_context()) is None


def test_cost_prefers_measured_energy_and_stores_its_prices():
    price = {"device": "d", "usd_per_hour": 3.6, "usd_per_kwh": 0.5, "basis": "d 3.6 $/h"}
    ctx = _context(price=price)
    ctx.repeat_seconds, ctx.workload_seconds = [5.0, 5.0], 10.0
    ctx.measurements = [
        Measurement("energy", 1.0, "kWh", "energy", False),
        Measurement("energy_direct", 0.001, "kWh", "energy", False),  # per repeat: 0.002 kWh in all
    ]
    m = Cost().stop(ctx)
    # 10 s at 3.6 $/h = 0.01 $; 0.002 kWh at 0.5 $/kWh = 0.001 $; 20 tokens
    assert m.value == pytest.approx(0.011 / 20 * 1e6)
    assert m.method == "hardware d 3.6 $/h × time + energy_direct × 0.5 $/kWh"
    assert Cost().stop(_context()) is None  # no price table resolved: no cost


def test_run_cost_is_hardware_time_since_the_run_began():
    price = {"device": "d", "usd_per_hour": 36.0, "usd_per_kwh": 0.5, "basis": "d 36 $/h"}
    ctx = _context(price=price)
    ctx.started_at = time.perf_counter() - 100  # the run began 100 s ago: 36 $/h × 100 s = 1 $
    m = RunCost().stop(ctx)
    assert m.value == pytest.approx(1.0, rel=0.01) and m.unit == "USD" and m.resource == "money"
    assert RunCost().stop(_context()) is None  # no price table resolved: no cost


def test_network_hook_point_counts_recorded_bytes():
    ctx = _context()
    window = NetworkBytes().open(ctx)
    network.record(sent=3000, received=1500)
    out = {m.metric: m for m in window.close(ctx)}
    assert out["network_sent_recorded"].value == 3.0 and out["network_received_recorded"].value == 1.5
    assert out["network_sent"].resource == "network" and "loopback excluded" in out["network_sent"].method
    with pytest.raises(ValueError, match="negative"):
        network.record(sent=-1)


@pytest.mark.parametrize(
    ("scenario", "message"),
    [
        ({"kind": "server", "rate": -2}, "scenarios.0.rate: Input should be greater than 0"),
        ({"kind": "server"}, "scenario 'server' needs rate"),
        ({"kind": "single-stream", "rate": 3}, "rate is only for 'server'"),
        ({"min_requests": 0}, "scenarios.0.min_requests: Input should be greater than or equal to 1"),
        ({"repeats": 0}, "scenarios.0.repeats: Input should be greater than or equal to 1"),
        ({"kind": "burst"}, "scenarios.0.kind: Input should be 'single-stream', 'fixed-batch', 'server' or 'offline'"),
        ({"kind": "single-stream", "batch_size": 4}, "batch_size is for fixed-batch"),
        ({"min_duration_s": -1}, "scenarios.0.min_duration_s: Input should be greater than or equal to 0"),
    ],
)
def test_bad_scenarios_are_rejected_before_any_run(scenario, message):
    with pytest.raises(EffbenchError) as info:
        load_suite(scenarios=[scenario])
    assert message in str(info.value)


def test_bad_country_price_and_idle_are_rejected():
    with pytest.raises(EffbenchError, match=r"country: .*unknown country code 'XYZ'"):
        load_suite(country="XYZ")
    with pytest.raises(EffbenchError, match=r"prices.usd_per_kwh: Input should be greater than or equal to 0"):
        load_suite(prices={"usd_per_kwh": -0.1})
    with pytest.raises(EffbenchError, match="idle_seconds: Input should be greater than or equal to 0"):
        load_suite(idle_seconds=-5)
    assert load_suite(country="fra").country == "FRA"


def test_codecarbon_idle_power_path_runs_for_real():
    """The real codecarbon tracker measures idle power too; its mode is stated in every figure."""
    from effbench.default_plugins.metrics.energy import Energy

    ctx = _context(idle_seconds=0.5, country="USA")
    metric = Energy()
    out = _work(ctx, metric, 0.3)
    assert ctx.idle_watts["energy"] > 0  # measured per run, kept with the run
    assert _context().idle_watts == {} and not vars(metric)  # nothing carried over to the next run
    assert out["energy"].value > 0 and out["co2"].value > 0
    above = out["energy_above_idle"]
    assert 0 <= above.value <= out["energy"].value
    assert "codecarbon" in above.method and "W subtracted" in above.method
    assert above.method.startswith(("measured", "estimated"))
