"""Money: what a scenario's output and the whole run cost, from the suite's price table, time and energy."""

from __future__ import annotations

import time

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity
from effbench.config.prices import cost
from effbench.hookspecs import hookimpl

ENERGY_SOURCES = ("energy_direct", "energy")  # hardware counters when this machine has them, else codecarbon


class Cost(Metric):
    """Dollars per million output tokens: hardware time at $/hour plus energy at $/kWh."""

    name = "cost_per_mtok"
    unit = "USD/Mtok"
    resource = "money"
    higher_is_better = False
    scope = "scenario"
    description = "Cost per million output tokens (hardware $/h × time + energy × $/kWh), prices stored with it."
    quantities = (Quantity(name, unit, resource, False, description, header="$/M tokens", digits=3),)

    def stop(self, run: RunContext) -> Measurement | None:
        price = run.settings.get("price")
        if not price or not run.output_tokens:
            return None
        energy = next((m for name in ENERGY_SOURCES for m in run.measurements if m.metric == name), None)
        kwh = energy.value * len(run.repeat_seconds) if energy else None  # a repeat's mean, times the repeats
        spent = cost(price, run.workload_seconds, kwh)
        method = f"hardware {price['basis']} × time"
        if spent["energy_usd"] is not None:
            method += f" + {energy.metric} × {price['usd_per_kwh']:g} $/kWh"
        return self.measurement(spent["total_usd"] / run.output_tokens * 1e6, method=method)


class RunCost(Metric):
    """What the whole run (load, apply, accuracy, scenarios) cost in hardware time."""

    name = "cost_run"
    unit = "USD"
    resource = "money"
    higher_is_better = False
    scope = "run"
    description = "Hardware $/h × the run's wall clock from loading the model to the last measurement."
    quantities = (Quantity(name, unit, resource, False, description, header="Run cost ($)", digits=5),)

    def stop(self, run: RunContext) -> Measurement | None:
        price = run.settings.get("price")
        if not price or not run.started_at:
            return None
        seconds = time.perf_counter() - run.started_at
        usd = cost(price, seconds, None)["hardware_usd"]
        return self.measurement(usd, method=f"hardware {price['basis']} × the run's wall clock")


@hookimpl
def register_metrics(register):
    register(Cost())
    register(RunCost())
