"""Builtin hardware probes: CPU, memory, GPUs, operating system, container/VM, power counters, library versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from effbench.api.probe import Probe
from effbench.hookspecs import hookimpl
from effbench.measure.energy_sources import load_nvml, power_capability

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
            "min_mhz": round(freq.min, 1) if freq and freq.min else None,
            "current_mhz": round(freq.current, 1) if freq and freq.current else None,
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


class GpuProbe(Probe):
    """NVIDIA GPUs through NVML (torch's own CUDA build shows in the versions probe: e.g. 2.13.0+cu124).

    torch is deliberately not imported: probes run in the sweep's parent, which otherwise never loads it.
    """

    name = "gpu"
    fingerprint_keys = ("count", "names")

    def __init__(self, nvml: Any = None) -> None:
        self.nvml = nvml

    def collect(self) -> dict[str, Any]:
        data: dict[str, Any] = {"count": 0, "names": []}
        nvml, reason = load_nvml(self.nvml)
        if nvml is None:
            return {**data, "nvml": f"unavailable: {reason}"}
        try:
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
            return {
                **data,
                "count": len(handles),
                "names": [_text(nvml.nvmlDeviceGetName(h)) for h in handles],
                "memory_gib": [round(nvml.nvmlDeviceGetMemoryInfo(h).total / 2**30, 1) for h in handles],
                "driver": _text(nvml.nvmlSystemGetDriverVersion()),
                "cuda_driver": _cuda_driver(nvml),
                "nvml": "ok",
            }
        except nvml.NVMLError as err:
            return {**data, "nvml": f"unavailable: {err}"}
        finally:
            nvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    """NVML strings: bytes from older nvidia-ml-py releases, str from newer ones."""
    return value.decode() if isinstance(value, bytes) else value


def _cuda_driver(nvml: Any) -> str | None:
    """The CUDA version the driver supports, e.g. 12040 -> "12.4" (older drivers lack the _v2 call)."""
    for call in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        try:
            version = getattr(nvml, call)()
        except (AttributeError, nvml.NVMLError):
            continue
        return f"{version // 1000}.{version % 1000 // 10}"
    return None


# DMI vendor/product text of common hypervisors and clouds, most specific first.
_DMI_HYPERVISORS = (
    ("Amazon EC2", "amazon"),
    ("Google Compute Engine", "google"),
    ("KVM", "kvm"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VirtualBox", "virtualbox"),
    ("Virtual Machine", "hyperv"),
    ("Xen", "xen"),
    ("Parallels", "parallels"),
    ("OpenStack", "openstack"),
)
# /proc/1/cgroup path parts of container runtimes, orchestrator first (cgroup v2 shows only "0::/" inside one).
_CGROUP_RUNTIMES = (("kubepods", "kubernetes"), ("docker", "docker"), ("containerd", "containerd"), ("lxc", "lxc"))


def _read(path: Path) -> str:
    """A small text file, or "" when it is absent or unreadable: every platform hint is optional."""
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def detect_platform(root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Whether this runs in a container and/or a virtual machine, with the evidence for each."""
    containers: list[str] = []
    vms: list[str] = []
    evidence: list[str] = []
    if environ.get("KUBERNETES_SERVICE_HOST"):
        containers.append("kubernetes")
        evidence.append("env KUBERNETES_SERVICE_HOST")
    cgroup = _read(root / "proc/1/cgroup")
    for part, runtime in _CGROUP_RUNTIMES:
        if part in cgroup:
            containers.append(runtime)
            evidence.append(f"/proc/1/cgroup mentions {part}")
    for marker, runtime in ((".dockerenv", "docker"), ("run/.containerenv", "podman")):
        if (root / marker).exists():
            containers.append(runtime)
            evidence.append(f"/{marker}")
    if hypervisor := _read(root / "sys/hypervisor/type"):
        vms.append(hypervisor)
        evidence.append(f"/sys/hypervisor/type: {hypervisor}")
    dmi = " ".join(_read(root / "sys/class/dmi/id" / f) for f in ("sys_vendor", "product_name")).strip()
    if not dmi.endswith(".metal"):  # EC2 bare-metal instances keep the Amazon EC2 vendor string
        vms += [name for text, name in _DMI_HYPERVISORS if text in dmi][:1]
    if dmi:
        evidence.append(f"dmi: {dmi}")
    flags = next((line for line in _read(root / "proc/cpuinfo").splitlines() if line.startswith("flags")), "")
    if "hypervisor" in flags.split():
        vms.append("unidentified")
        evidence.append("cpu flag hypervisor")
    return {
        "container": containers[0] if containers else None,
        "virtualization": vms[0] if vms else None,
        "evidence": evidence,
    }


class PlatformProbe(Probe):
    """Container and virtual-machine hints: both change how much of the hardware a run really gets."""

    name = "platform"
    # No fingerprint keys: a container or VM on the same hardware is the same hardware.

    def __init__(self, root: Path = Path("/"), environ: Mapping[str, str] = os.environ) -> None:
        self.root = root
        self.environ = environ

    def collect(self) -> dict[str, Any]:
        return detect_platform(self.root, self.environ)


class PowerProbe(Probe):
    """Which energy counters this machine exposes: it decides whether energy is measured or estimated."""

    name = "power"
    # No fingerprint keys: counter access depends on permissions and drivers, not on the hardware itself.

    def collect(self) -> dict[str, Any]:
        return power_capability()


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
    for probe in (CpuProbe(), MemoryProbe(), GpuProbe(), OsProbe(), PlatformProbe(), PowerProbe(), VersionsProbe()):
        register(probe)
