"""Builtin metrics: accuracy (from lm-eval), model size, generation speed, peak memory, energy and CO2."""

from __future__ import annotations

import math
import resource
import statistics

from effbench.hookspecs import hookimpl
from effbench.types import QUALITY, Measurement, Metric, RunContext

# lm-eval metrics where a smaller value is better (everything else it reports is higher-is-better).
LOWER_IS_BETTER = {"word_perplexity", "byte_perplexity", "bits_per_byte", "perplexity"}


class Accuracy(Metric):
    """Every task metric lm-eval reported for the run, with its standard error."""

    name = "accuracy"
    unit = ""
    resource = QUALITY
    higher_is_better = True
    description = "Task metrics from lm-evaluation-harness on the modified model (acc, exact_match, ...)."

    def stop(self, run: RunContext) -> list[Measurement]:
        out = []
        for task, result in run.accuracy.items():
            n = result.get("n")
            for key, value in result.items():
                if "," not in key or "_stderr," in key or not isinstance(value, int | float):
                    continue
                metric, filter_name = key.split(",", 1)
                stderr = result.get(f"{metric}_stderr,{filter_name}")
                stderr = float(stderr) if isinstance(stderr, int | float) and math.isfinite(stderr) else None
                out.append(
                    Measurement(
                        metric=metric,
                        value=float(value),
                        unit="",
                        resource=QUALITY,
                        higher_is_better=metric not in LOWER_IS_BETTER,
                        task=task,
                        stderr=stderr,
                        n=n,
                        method=f"lm-eval ({filter_name} filter)",
                    )
                )
        return out


class Parameters(Metric):
    """Total and non-zero parameter counts: what pruning removes shows up here."""

    name = "parameters"
    unit = "count"
    resource = "memory"
    higher_is_better = False
    description = "Total parameters, and those that are not exactly zero."

    def stop(self, run: RunContext) -> list[Measurement]:
        from effbench.builtins.layers import parameter_counts

        total, nonzero = parameter_counts(run.model)
        return [self.measurement(total), Measurement("parameters_nonzero", nonzero, "count", "memory", False)]


class WeightBytes(Metric):
    """Bytes the weights occupy in memory, as stored (a quantized tensor counts its packed size)."""

    name = "weight_bytes"
    unit = "MB"
    resource = "memory"
    higher_is_better = False
    description = "Parameters and buffers in memory, in megabytes (10^6 bytes)."

    def stop(self, run: RunContext) -> float:
        from effbench.builtins.layers import weight_bytes

        return weight_bytes(run.model) / 1e6


class ApplyTime(Metric):
    """One-off cost of applying the technique (compilation, quantization, loading a draft model)."""

    name = "apply_time"
    unit = "s"
    resource = "computation"
    higher_is_better = False
    description = "Wall-clock seconds of Technique.apply (and generation_kwargs), paid once per model."

    def stop(self, run: RunContext) -> Measurement:
        return self.measurement(run.apply_seconds, method="wall clock around Technique.apply")


class GenerationLatency(Metric):
    """Mean end-to-end latency of a generation request of the measured workload."""

    name = "latency"
    unit = "ms"
    resource = "computation"
    higher_is_better = False
    description = "End-to-end latency per request (mean, with standard error and p50/p90 over requests)."

    def stop(self, run: RunContext) -> list[Measurement] | None:
        times = sorted(r.latency_s * 1000 for r in run.requests)
        if not times:
            return None
        n = len(times)
        stderr = statistics.stdev(times) / math.sqrt(n) if n > 1 else None
        method = "wall clock per request (time.perf_counter)"
        return [
            self.measurement(statistics.fmean(times), stderr=stderr, n=n, method=method),
            Measurement("latency_p50", _percentile(times, 50), "ms", "computation", False, n=n, method=method),
            Measurement("latency_p90", _percentile(times, 90), "ms", "computation", False, n=n, method=method),
        ]


def _percentile(sorted_values: list[float], pct: float) -> float:
    """Linear-interpolated percentile of already sorted values."""
    pos = (len(sorted_values) - 1) * pct / 100
    low = math.floor(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


class Throughput(Metric):
    """Output tokens per second over the whole measured workload."""

    name = "throughput"
    unit = "tokens/s"
    resource = "computation"
    higher_is_better = True
    description = "Generated tokens divided by the workload's wall-clock time."

    def stop(self, run: RunContext) -> float | None:
        if not run.requests or run.workload_seconds <= 0:
            return None
        return run.output_tokens / run.workload_seconds


class PeakMemory(Metric):
    """Peak resident memory of the worker process during the workload (kernel high-water mark)."""

    name = "peak_memory"
    unit = "MiB"
    resource = "memory"
    higher_is_better = False
    description = "Peak RSS of the worker during the measured workload (VmHWM, reset at start)."
    method = ""

    def start(self, run: RunContext) -> None:
        try:  # writing 5 to clear_refs resets the peak RSS counter (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "kernel high-water mark VmHWM, reset at workload start"
        except OSError:
            self.method = "getrusage ru_maxrss (peak since worker start)"

    def stop(self, run: RunContext) -> Measurement:
        peak_kib = None
        if self.method.startswith("kernel"):
            with open("/proc/self/status") as f:
                peak_kib = next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), None)
        if peak_kib is None:
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self.measurement(peak_kib / 1024, method=self.method)


class Energy(Metric):
    """Energy and CO2 of the measured workload from codecarbon, saying whether power was measured."""

    name = "energy"
    unit = "kWh"
    resource = "energy"
    higher_is_better = False
    description = "codecarbon energy (kWh), energy per output token (J) and emissions (kg CO2eq)."
    MEASURED_MODES = frozenset({"intel_rapl", "intel_power_gadget", "windows_emi"})

    def start(self, run: RunContext) -> None:
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

    def stop(self, run: RunContext) -> list[Measurement]:
        self.tracker.stop()
        data = self.tracker.final_emissions_data
        method = self._method()
        kwh = float(data.energy_consumed)
        out = [
            self.measurement(kwh, method=method),
            Measurement(
                "co2",
                float(data.emissions),
                "kg CO2eq",
                "energy",
                False,
                method=f"{method}, {data.country_iso_code} grid",
            ),
        ]
        if run.output_tokens:
            out.append(
                Measurement(
                    "energy_per_token", kwh * 3.6e6 / run.output_tokens, "J/token", "energy", False, method=method
                )
            )
        return out

    def _method(self) -> str:
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


@hookimpl
def register_metrics(register):
    for metric in (
        Accuracy(),
        Parameters(),
        WeightBytes(),
        ApplyTime(),
        GenerationLatency(),
        Throughput(),
        PeakMemory(),
        Energy(),
    ):
        register(metric)
