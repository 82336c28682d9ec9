"""Builtin hardware probes: CPU, memory, operating system and library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

from effbench.hookspecs import hookimpl
from effbench.types import Probe

LIBRARIES = (
    "effbench",
    "torch",
    "transformers",
    "lm_eval",
    "datasets",
    "huggingface_hub",
    "codecarbon",
    "pluggy",
    "tokenizers",
    "safetensors",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class CpuProbe(Probe):
    """Processor model, core counts and frequency."""

    name = "cpu"
    fingerprint_keys = ("model", "logical_cores")

    def collect(self) -> dict[str, Any]:
        import psutil

        freq = psutil.cpu_freq()
        return {
            "model": _cpu_model(),
            "architecture": platform.machine(),
            "logical_cores": psutil.cpu_count(logical=True),
            "physical_cores": psutil.cpu_count(logical=False),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "max_mhz": round(freq.max, 1) if freq and freq.max else None,
        }


class MemoryProbe(Probe):
    """Installed and available memory."""

    name = "memory"
    fingerprint_keys = ("total_gib",)

    def collect(self) -> dict[str, Any]:
        import psutil

        vm = psutil.virtual_memory()
        return {"total_gib": round(vm.total / 2**30), "available_gib": round(vm.available / 2**30, 1)}


class OsProbe(Probe):
    """Operating system, kernel and Python."""

    name = "os"
    fingerprint_keys = ("system", "machine")

    def collect(self) -> dict[str, Any]:
        return {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        }


class VersionsProbe(Probe):
    """Versions of the libraries that shape a result."""

    name = "versions"

    def collect(self) -> dict[str, Any]:
        versions = {}
        for lib in LIBRARIES:
            try:
                versions[lib] = importlib.metadata.version(lib.replace("_", "-"))
            except importlib.metadata.PackageNotFoundError:
                versions[lib] = None
        return versions


@hookimpl
def register_probes(register):
    for probe in (CpuProbe(), MemoryProbe(), OsProbe(), VersionsProbe()):
        register(probe)
