"""Memory and network of a window (a repeat, a one-off phase): peak RSS, accelerator peak, bytes on the wire."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

from effbench import network
from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric, Quantity, Window
from effbench.hookspecs import hookimpl
from effbench.measure.device import device_type


class PeakTracker:
    """Peaks of a process-wide high-water mark for any number of open windows, nested or overlapping.

    The counter (VmHWM, torch.cuda's peak) is one per process and a new window must reset it;
    before every reset and at every close the counter is folded into each open window's own peak,
    so a reset by one window never hides a peak from another.
    """

    def __init__(self, read: Callable[[], float], reset: Callable[[], bool]) -> None:
        self.read = read
        self.reset = reset
        self.open_peaks: dict[int, float] = {}
        self.starts: dict[int, float] = {}
        self.resettable = True

    def _fold(self) -> None:
        current = self.read()
        for key, peak in self.open_peaks.items():
            self.open_peaks[key] = max(peak, current)

    def begin(self) -> int:
        """Open a window; its id."""
        self._fold()
        self.resettable = self.reset()
        key = max(self.open_peaks, default=0) + 1
        self.open_peaks[key] = self.starts[key] = self.read()  # just reset: the current value
        return key

    def end(self, key: int) -> tuple[float, float]:
        """Close a window: the counter's value when it opened, and the highest it reached while it was open."""
        self._fold()
        return self.starts.pop(key), self.open_peaks.pop(key)


def _vm_hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_vm_hwm() -> bool:
    try:  # writing 5 to clear_refs resets the peak RSS counter (Linux >= 4.0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


RSS_PEAKS = PeakTracker(_vm_hwm_mib, _reset_vm_hwm)


class _PeakWindow(Window):
    """A window over a PeakTracker; the metric turns its peak into measurements."""

    def __init__(self, tracker: PeakTracker, report: Callable[[float, float], Any]) -> None:
        self.tracker, self.report = tracker, report
        self.key = tracker.begin()

    def close(self, run: RunContext) -> Any:
        return self.report(*self.tracker.end(self.key))


class PeakMemory(Metric):
    """Peak resident memory of the worker process during a window (kernel high-water mark)."""

    name = "peak_memory"
    unit = "MiB"
    resource = "memory"
    higher_is_better = False
    phases = ("apply", "train")
    description = "Peak RSS of the process during the window (VmHWM, reset when the window opens)."
    quantities = (
        Quantity(name, unit, resource, False, description, header="Peak RSS (MiB)", digits=0, headline=True,
                 combine="max"),
        Quantity(
            "peak_memory_increase", unit, resource, False,
            "Peak RSS during the window above the RSS when it opened: the memory the phase itself took, without "
            "what the process held before (the interpreter, libraries, the loaded model).",
            header="RSS rise (MiB)", digits=1, detail=True, combine="max",
        ),
    )  # fmt: skip

    def open(self, run: RunContext) -> Window:
        def report(start_mib: float, peak_mib: float) -> list[Measurement]:
            if not RSS_PEAKS.resettable:  # the peak may predate the window: no rise can be told
                method = "kernel high-water mark (not resettable here: peak since the process started)"
                return [self.measurement(peak_mib, method=method)]
            method = "kernel high-water mark VmHWM, reset at window start"
            rise = "VmHWM at window close − VmRSS at window open (VmHWM just reset)"
            return [
                self.measurement(peak_mib, method=method),
                self.measurement(peak_mib - start_mib, "peak_memory_increase", method=rise),
            ]

        return _PeakWindow(RSS_PEAKS, report)


def _cuda_peaks(device: str) -> PeakTracker:
    import torch

    def reset() -> bool:
        torch.cuda.reset_peak_memory_stats(device)
        return True

    return PeakTracker(lambda: torch.cuda.max_memory_allocated(device) / 2**20, reset)


class AcceleratorMemory(Metric):
    """Peak memory torch allocated and reserved on the GPU during a window (nothing to report without one)."""

    name = "accelerator_peak_allocated"
    unit = "MiB"
    resource = "memory"
    higher_is_better = False
    phases = ("apply", "train")
    description = "torch.cuda peak allocated memory of the run's device per window; absent for runs on cpu."
    quantities = (
        Quantity(name, unit, resource, False, description, header="GPU peak (MiB)", digits=0, combine="max"),
        Quantity(
            "accelerator_peak_reserved", "MiB", "memory", False,
            "torch.cuda peak reserved memory per window (allocator cache included).", detail=True, combine="max",
        ),
    )  # fmt: skip
    method = "torch.cuda.max_memory_allocated / max_memory_reserved, reset at window start"

    def __init__(self) -> None:
        self.peaks: dict[str, PeakTracker] = {}

    def open(self, run: RunContext) -> Window | None:
        import torch

        if device_type(run.device) != "cuda":
            return None
        # one allocator per device and process: its tracker is shared by the windows open on it
        if run.device not in self.peaks:
            self.peaks[run.device] = _cuda_peaks(run.device)
        peaks = self.peaks[run.device]

        def report(start_mib: float, peak_mib: float) -> list[Measurement]:
            reserved = torch.cuda.max_memory_reserved(run.device) / 2**20
            return [
                self.measurement(peak_mib, method=self.method),
                self.measurement(reserved, "accelerator_peak_reserved", method=self.method),
            ]

        return _PeakWindow(peaks, report)


class _NetworkWindow(Window):
    """Counters read when the window opened; the difference at close."""

    def __init__(self, metric: NetworkBytes) -> None:
        self.metric = metric
        self.before = (network.interface_bytes(), network.recorded())

    def close(self, run: RunContext) -> list[Measurement]:
        interfaces, recorded = network.interface_bytes(), network.recorded()
        seen = {k: (interfaces[k] - self.before[0][k]) / 1e3 for k in interfaces}
        method = "interface counters of the network namespace, loopback excluded (other processes included)"
        out = [
            self.metric.measurement(seen["sent"], method=method),
            self.metric.measurement(seen["received"], "network_received", method=method),
        ]
        own = {k: (recorded[k] - self.before[1][k]) / 1e3 for k in recorded}
        if own["sent"] or own["received"]:
            how = "reported by the run's own code through effbench.network.record"
            out += [
                self.metric.measurement(own["sent"], "network_sent_recorded", method=how),
                self.metric.measurement(own["received"], "network_received_recorded", method=how),
            ]
        if own["collective"]:
            how = "bytes of the tensors handed to torch.distributed collectives, counted at each call"
            steps = run.training.steps if run.training is not None else 0
            out.append(self.metric.measurement(own["collective"], "train_bytes_communicated", method=how))
            if steps:
                per_step = own["collective"] / steps
                out.append(self.metric.measurement(per_step, "train_bytes_communicated_per_step", method=how))
        return out


class NetworkBytes(Metric):
    """Bytes sent and received during a window: interface counters, plus what distributed code recorded."""

    name = "network_sent"
    unit = "kB"
    resource = "network"
    higher_is_better = False
    phases = ("apply", "train")
    description = "Bytes sent through the network interfaces (loopback excluded) during the window."
    quantities = (
        Quantity(name, unit, resource, False, description, header="Net sent (kB)", digits=1, combine="max"),
        Quantity(
            "network_received", "kB", "network", False,
            "Bytes received through the network interfaces (loopback excluded) during the window.", detail=True,
            combine="max",
        ),  # the namespace's counters: every rank on the machine reads the same ones
        Quantity(
            "network_sent_recorded", "kB", "network", False,
            "Bytes the run's own code reported sending through effbench.network.record.", detail=True, combine="sum",
        ),
        Quantity(
            "network_received_recorded", "kB", "network", False,
            "Bytes the run's own code reported receiving through effbench.network.record.", detail=True,
            combine="sum",
        ),
        Quantity(
            "train_bytes_communicated", "kB", "network", False,
            "Bytes the ranks of a distributed training handed to collectives (gradient all-reduce, compressed "
            "gradients, parameter broadcasts), summed over ranks.", header="Comm (kB)", digits=1, combine="sum",
        ),
        Quantity(
            "train_bytes_communicated_per_step", "kB/step", "network", False,
            "train_bytes_communicated ÷ optimizer steps.", header="Comm (kB/step)", digits=2,
            combine="sum",
        ),
    )  # fmt: skip

    def open(self, run: RunContext) -> Window:
        return _NetworkWindow(self)


@hookimpl
def register_metrics(register):
    for metric in (PeakMemory(), AcceleratorMemory(), NetworkBytes()):
        register(metric)
