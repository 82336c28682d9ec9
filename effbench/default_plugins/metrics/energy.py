"""Energy and carbon per repeat: codecarbon always, direct RAPL / NVML counters when this machine has them.

Both can measure the machine's idle power first (suite ``idle_seconds``) and report the energy
above idle as well, and both give energy per output token and per request.
"""

from __future__ import annotations

import time
from typing import Any

from effbench.api.types import Measurement, Metric, RunContext
from effbench.hookspecs import hookimpl

J_PER_KWH = 3.6e6


class _Meter(Metric):
    """A repeat-scope energy instrument: ``begin``/``end`` read joules; idle power is measured once per run."""

    resource = "energy"
    higher_is_better = False
    idle_w: float | None = None

    def begin(self, run: RunContext) -> None:
        raise NotImplementedError

    def end(self) -> tuple[float, float]:
        """Joules and seconds since ``begin``."""
        raise NotImplementedError

    def method(self) -> str:
        raise NotImplementedError

    def start(self, run: RunContext) -> None:
        idle = float(run.settings.get("idle_seconds") or 0)
        if idle and self.idle_w is None:
            self.begin(run)
            time.sleep(idle)
            joules, seconds = self.end()
            self.idle_w = joules / seconds
        self.begin(run)

    def per_work(self, prefix: str, joules: float, seconds: float, run: RunContext, method: str) -> list[Measurement]:
        """Energy above idle (when measured), per output token and per request."""
        out = []
        if self.idle_w is not None:
            joules = max(joules - self.idle_w * seconds, 0.0)
            method = f"{method}, idle {self.idle_w:.2f} W subtracted"
            out.append(Measurement(f"{prefix}_above_idle", joules / J_PER_KWH, "kWh", "energy", False, method=method))
        per = (("per_token", "J/token", run.output_tokens), ("per_request", "J/request", len(run.requests)))
        out += [
            Measurement(f"{prefix}_{what}", joules / count, unit, "energy", False, method=method)
            for what, unit, count in per
            if count
        ]
        return out


class Energy(_Meter):
    """Energy and CO2 from codecarbon, saying per device whether power was measured or estimated."""

    name = "energy"
    unit = "kWh"
    description = "codecarbon energy (kWh) and emissions (kg CO2eq); J per output token and per request."
    MEASURED_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi"})

    def begin(self, run: RunContext) -> None:
        from codecarbon import OfflineEmissionsTracker

        self.tracker = OfflineEmissionsTracker(
            country_iso_code=run.settings.get("country", "USA"),
            save_to_file=False,
            log_level="error",
            tracking_mode="process",
            measure_power_secs=1,
            allow_multiple_runs=True,
        )
        self.tracker.start()

    def end(self) -> tuple[float, float]:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        return float(data.energy_consumed) * J_PER_KWH, float(data.duration)

    def stop(self, run: RunContext) -> list[Measurement]:
        joules, seconds = self.end()
        data = self.tracker.final_emissions_data
        method = self.method()
        co2 = Measurement(
            "co2", float(data.emissions), "kg CO2eq", "energy", False, method=f"{method}, {data.country_iso_code} grid"
        )
        return [
            self.measurement(joules / J_PER_KWH, method=method),
            co2,
            *self.per_work(self.name, joules, seconds, run, method),
        ]

    def method(self) -> str:
        """Say per device whether codecarbon measured power or estimated it."""
        parts = []
        for hw in self.tracker._hardware:
            kind = type(hw).__name__
            mode = getattr(hw, "_mode", None)
            if kind == "GPU":
                parts.append("GPU measured (NVML)")
            elif kind == "CPU":
                how = "measured" if mode in self.MEASURED_MODES else "estimated"
                parts.append(f"CPU {how} ({mode})")
            else:
                parts.append(f"{kind} estimated")
        measured = all("measured" in p for p in parts)
        return f"{'measured' if measured else 'estimated'} (codecarbon: {', '.join(parts)})"


class DirectEnergy(_Meter):
    """Energy read straight from hardware counters (RAPL, NVML); nothing to report where none are readable."""

    name = "energy_direct"
    unit = "kWh"
    description = "Hardware energy counters (RAPL package/DRAM, NVML GPU): kWh, J per output token and per request."

    def __init__(self, sources: list[Any] | None = None) -> None:
        self.sources = sources

    def begin(self, run: RunContext) -> None:
        from effbench.measure.energy_sources import EnergyMeter

        self.meter = EnergyMeter(self.sources)
        self.meter.start()
        self.began = time.perf_counter()

    def end(self) -> tuple[float, float]:
        return sum(self.meter.stop().values()), time.perf_counter() - self.began

    def method(self) -> str:
        return self.meter.method()

    def start(self, run: RunContext) -> None:
        if self.sources is None:
            from effbench.measure.energy_sources import detect_sources

            self.sources = detect_sources()
        if self.sources:
            super().start(run)

    def stop(self, run: RunContext) -> list[Measurement] | None:
        if not self.sources:
            return None
        joules, seconds = self.end()
        method = self.method()
        return [
            self.measurement(joules / J_PER_KWH, method=method),
            *self.per_work(self.name, joules, seconds, run, method),
        ]


@hookimpl
def register_metrics(register):
    for metric in (Energy(), DirectEnergy()):
        register(metric)
