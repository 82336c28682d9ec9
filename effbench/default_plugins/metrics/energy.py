"""Energy and carbon per repeat: codecarbon always, direct RAPL / NVML counters when this machine has them.

Both can measure the machine's idle power first (suite ``idle_seconds``) and report the energy
above idle as well, and both give energy per output token and per request; measured around lm-eval's
generative requests too, they give energy per correct answer.
"""

from __future__ import annotations

import time
from typing import Any

from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity, Window
from effbench.api.vocabulary import GENERATE
from effbench.hookspecs import hookimpl

J_PER_KWH = 3.6e6


def _energy_quantities(prefix: str, source: str, label: str, combine: str) -> tuple[Quantity, ...]:
    """What an energy instrument reports: its total, the share above idle, and per output token and request.

    Stored in kWh (codecarbon's unit), shown in joules: a window of a small model spends a few of them.
    ``combine`` joins the totals of a distributed run's ranks: ``sum`` for per-process energy, ``max`` for
    machine-wide counters that every rank on the machine reads alike.
    """
    return (
        Quantity(
            prefix, "kWh", "energy", False, f"Energy ({source}) of the window, kWh.",
            header=f"{label} (J)", scale=J_PER_KWH, digits=2, detail=True, combine=combine,
        ),
        Quantity(
            f"{prefix}_above_idle", "kWh", "energy", False,
            f"Energy ({source}) above the idle power measured first (suite idle_seconds).",
            header=f"{label} above idle (J)", scale=J_PER_KWH, digits=2, detail=True, combine=combine,
        ),
        Quantity(
            f"{prefix}_per_token", "J/token", "energy", False, f"Energy ({source}) per output token.",
            header=f"{label} (mJ/token)", scale=1e3, digits=2, headline=True,
        ),
        Quantity(
            f"{prefix}_per_request", "J/request", "energy", False, f"Energy ({source}) per request.", detail=True
        ),
        Quantity(
            f"{prefix}_per_correct_answer", "J/correct answer", "energy", False,
            f"Energy ({source}) of lm-eval's generative requests per correct answer: longer or wrong answers cost "
            "without counting.", header=f"{label} (J/correct answer)", digits=3, headline=True,
        ),
        Quantity(
            f"{prefix}_to_target_loss", "kWh", "energy", False,
            f"Energy ({source}) of training until the loss first reached training.target_loss: the train window's "
            "energy × the share of its wall clock spent until then.",
            header=f"{label} to target (J)", scale=J_PER_KWH, digits=2, headline=True,
        ),
    )  # fmt: skip


class _MeterWindow(Window):
    """An energy window: joules since it opened, above idle and per unit of work when those are known."""

    def __init__(self, meter: _Meter, run: RunContext) -> None:
        self.meter = meter
        self.reading = meter.begin(run)

    def close(self, run: RunContext) -> list[Measurement]:
        joules, seconds, method, extra = self.meter.end(self.reading)
        out = [self.meter.measurement(joules / J_PER_KWH, method=method), *extra]
        idle_w = run.idle_watts.get(self.meter.name)
        if idle_w is not None:
            joules = max(joules - idle_w * seconds, 0.0)
            method = f"{method}, idle {idle_w:.2f} W subtracted"
            out.append(self.meter.measurement(joules / J_PER_KWH, f"{self.meter.name}_above_idle", method=method))
        per = (("per_token", run.output_tokens), ("per_request", len(run.requests)))
        out += [
            self.meter.measurement(joules / count, f"{self.meter.name}_{what}", method=method)
            for what, count in per
            if count
        ]
        return out


class _Meter(Metric):
    """An energy instrument: each window reads joules from its own reading; idle power is measured once per run."""

    resource = "energy"
    higher_is_better = False
    phases = ("apply", "train", GENERATE)

    def begin(self, run: RunContext) -> Any:
        """Start a reading (a tracker, counters) that ``end`` finishes."""
        raise NotImplementedError

    def end(self, reading: Any) -> tuple[float, float, str, list[Measurement]]:
        """Joules and seconds of the reading, how they were measured, and any other quantity it gives."""
        raise NotImplementedError

    def available(self) -> bool:
        """Whether this machine can measure it at all."""
        return True

    def open(self, run: RunContext) -> Window | None:
        if not self.available():
            return None
        idle = float(run.settings.get("idle_seconds") or 0)
        if idle and self.name not in run.idle_watts:
            reading = self.begin(run)
            time.sleep(idle)
            joules, seconds, _, _ = self.end(reading)
            run.idle_watts[self.name] = joules / seconds
        return _MeterWindow(self, run)


class Energy(_Meter):
    """Energy and CO2 from codecarbon, saying per device whether power was measured or estimated."""

    name = "energy"
    unit = "kWh"
    description = "codecarbon energy (kWh) and emissions (kg CO2eq); J per output token and per request."
    quantities = (
        *_energy_quantities("energy", "codecarbon", "Energy", "sum"),
        Quantity(
            "co2", "kg CO2eq", "energy", False, "Emissions of the window's energy on the suite country's grid "
            "(codecarbon).", header="CO2 (mg)", scale=1e6, digits=3, headline=True, combine="sum",
        ),
    )  # fmt: skip
    MEASURED_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi"})

    def begin(self, run: RunContext) -> Any:
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(
            country_iso_code=run.settings.get("country", "USA"),
            save_to_file=False,
            log_level="error",
            tracking_mode="process",
            measure_power_secs=1,
            allow_multiple_runs=True,
        )
        tracker.start()
        return tracker

    def end(self, reading: Any) -> tuple[float, float, str, list[Measurement]]:
        reading.stop()
        data = reading.final_emissions_data
        method = self.method(reading)
        co2 = self.measurement(float(data.emissions), "co2", method=f"{method}, {data.country_iso_code} grid")
        return float(data.energy_consumed) * J_PER_KWH, float(data.duration), method, [co2]

    def method(self, tracker: Any) -> str:
        """Say per device whether codecarbon measured power or estimated it."""
        parts = []
        for hw in tracker._hardware:
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
    quantities = _energy_quantities("energy_direct", "hardware counters", "Energy, counters", "max")

    def __init__(self, sources: list[Any] | None = None) -> None:
        self.sources = sources

    def available(self) -> bool:
        if self.sources is None:  # what the machine offers does not change: detect once
            from effbench.measure.energy_sources import detect_sources

            self.sources = detect_sources()
        return bool(self.sources)

    def begin(self, run: RunContext) -> Any:
        from effbench.measure.energy_sources import EnergyMeter

        meter = EnergyMeter(self.sources)
        meter.start()
        return meter, time.perf_counter()

    def end(self, reading: Any) -> tuple[float, float, str, list[Measurement]]:
        meter, began = reading
        joules = sum(meter.stop().values())
        return joules, time.perf_counter() - began, meter.method(), []


@hookimpl
def register_metrics(register):
    for metric in (Energy(), DirectEnergy()):
        register(metric)
