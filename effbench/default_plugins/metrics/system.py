"""Memory and network during each repeat: peak RSS, accelerator peak, bytes on the wire."""

from __future__ import annotations

import resource

from effbench import network
from effbench.api.types import Measurement, Metric, RunContext
from effbench.hookspecs import hookimpl


class PeakMemory(Metric):
    """Peak resident memory of the worker process during a repeat (kernel high-water mark, reset per repeat)."""

    name = "peak_memory"
    unit = "MiB"
    resource = "memory"
    higher_is_better = False
    description = "Peak RSS of the worker during each repeat (VmHWM, reset when the repeat starts)."
    method = ""

    def start(self, run: RunContext) -> None:
        try:  # writing 5 to clear_refs resets the peak RSS counter (Linux >= 4.0)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "kernel high-water mark VmHWM, reset at repeat start"
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


class AcceleratorMemory(Metric):
    """Peak memory torch allocated and reserved on the GPU during a repeat (nothing to report without one)."""

    name = "accelerator_peak_allocated"
    unit = "MiB"
    resource = "memory"
    higher_is_better = False
    description = "torch.cuda peak allocated and reserved memory per repeat; absent on CPU-only machines."

    def start(self, run: RunContext) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def stop(self, run: RunContext) -> list[Measurement] | None:
        import torch

        if not torch.cuda.is_available():
            return None
        method = "torch.cuda.max_memory_allocated / max_memory_reserved, reset at repeat start"
        return [
            self.measurement(torch.cuda.max_memory_allocated() / 2**20, method=method),
            Measurement(
                "accelerator_peak_reserved",
                torch.cuda.max_memory_reserved() / 2**20,
                "MiB",
                "memory",
                False,
                method=method,
            ),
        ]


class NetworkBytes(Metric):
    """Bytes sent and received during a repeat: interface counters, plus what distributed code recorded."""

    name = "network_sent"
    unit = "kB"
    resource = "network"
    higher_is_better = False
    description = "Bytes through the network interfaces (loopback excluded) and bytes recorded via effbench.network."

    def start(self, run: RunContext) -> None:
        self.before = (network.interface_bytes(), network.recorded())

    def stop(self, run: RunContext) -> list[Measurement]:
        interfaces, recorded = network.interface_bytes(), network.recorded()
        seen = {k: (interfaces[k] - self.before[0][k]) / 1e3 for k in interfaces}
        method = "interface counters of the network namespace, loopback excluded (other processes included)"
        out = [
            self.measurement(seen["sent"], method=method),
            Measurement("network_received", seen["received"], "kB", "network", False, method=method),
        ]
        own = {k: (recorded[k] - self.before[1][k]) / 1e3 for k in recorded}
        if any(own.values()):
            how = "reported by the run's own code through effbench.network.record"
            out += [
                Measurement("network_sent_recorded", own["sent"], "kB", "network", False, method=how),
                Measurement("network_received_recorded", own["received"], "kB", "network", False, method=how),
            ]
        return out


@hookimpl
def register_metrics(register):
    for metric in (PeakMemory(), AcceleratorMemory(), NetworkBytes()):
        register(metric)
