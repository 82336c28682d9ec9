"""Direct hardware energy counters (Linux RAPL via powercap, NVIDIA NVML): measured joules, not modelled ones."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

RAPL_ROOT = Path("/sys/class/powercap")
# intel-rapl:<package>[:<subzone>]; AMD's RAPL driver uses the same names. intel-rapl-mmio:* duplicates packages.
_RAPL_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?")


def load_nvml(nvml: Any = None) -> tuple[Any | None, str]:
    """NVML initialised, or None and a short reason: no GPU driver is a normal machine, not an error."""
    if nvml is None:
        try:
            import pynvml as nvml
        except ImportError:
            return None, "pynvml not installed"
    try:
        nvml.nvmlInit()
    except Exception as err:  # NVMLError, or OSError from a broken driver install
        return None, str(err) or type(err).__name__
    return nvml, ""


class EnergySource:
    """A set of cumulative energy counters, read in joules, that the EnergyMeter differences."""

    name: str
    method: str

    def read_joules(self) -> dict[str, float]:
        """Each counter's cumulative value in joules, keyed by device or zone."""
        raise NotImplementedError

    def span(self) -> dict[str, float]:
        """Each counter's wrap-around range in joules (math.inf when it never wraps)."""
        raise NotImplementedError

    def available(self) -> bool:
        """True when this machine exposes at least one readable counter of this kind."""
        return bool(self.span())


def _read_int(path: Path) -> int | None:
    """An integer sysfs file, or None when it is missing, unreadable (often root-only) or garbled."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


class RaplSource(EnergySource):
    """CPU package and DRAM energy from Linux powercap (Intel RAPL, and AMD RAPL which uses the same layout).

    Counted: top-level package zones and their ``dram`` sub-zones (RAPL's DRAM domain is outside the
    package domain). Not counted: ``core``/``uncore`` sub-zones, which are inside their package, and
    ``psys``, the whole-platform zone of client CPUs, which contains package and DRAM (adding it would
    double-count, and servers lack it, so package + DRAM is the measure comparable across machines).
    """

    name = "RAPL"

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        self.zones: dict[str, Path] = {}
        self._span: dict[str, float] = {}
        packages: dict[str, str] = {}
        for path in sorted(root.glob("intel-rapl:*"), key=lambda p: _zone_order(p.name)):
            match = _RAPL_ZONE.fullmatch(path.name)
            if not match:
                continue
            package, sub = match.groups()
            zone = _zone_name(path)
            if sub is None:
                packages[package] = zone
                key = zone if zone != "psys" else None
            else:
                parent = packages.get(package, "psys")
                key = f"{parent}/dram" if zone == "dram" and parent != "psys" else None
            energy, limit = _read_int(path / "energy_uj"), _read_int(path / "max_energy_range_uj")
            if key and energy is not None and limit:
                self.zones[key] = path / "energy_uj"
                self._span[key] = limit / 1e6
        self.method = f"measured (RAPL counters: {', '.join(self.zones) or 'none readable'})"

    def read_joules(self) -> dict[str, float]:
        return {key: int(path.read_text()) / 1e6 for key, path in self.zones.items()}

    def span(self) -> dict[str, float]:
        return dict(self._span)


def _zone_order(dirname: str) -> tuple[int, ...]:
    """Numeric order of powercap zones (intel-rapl:10 after intel-rapl:2), parents before sub-zones."""
    return tuple(int(n) for n in re.findall(r"\d+", dirname))


def _zone_name(path: Path) -> str:
    try:
        return (path / "name").read_text().strip()
    except OSError:
        return path.name


class NvmlSource(EnergySource):
    """NVIDIA GPU energy from NVML's total-energy counter (millijoules since driver load; Volta and newer)."""

    name = "NVML"

    def __init__(self, nvml: Any = None) -> None:
        self._nvml, self.reason = load_nvml(nvml)
        self.handles: dict[str, Any] = self._energy_handles() if self._nvml else {}
        if not self.handles:
            self.reason = self.reason or "no NVIDIA GPU"
        self.method = f"measured (NVML energy counters: {', '.join(self.handles) or 'none'})"

    def _energy_handles(self) -> dict[str, Any]:
        """The GPUs whose energy counter answers; ``reason`` keeps why the last other one did not."""
        handles = {}
        try:
            for index in range(self._nvml.nvmlDeviceGetCount()):
                handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
                try:
                    self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
                    handles[f"gpu{index}"] = handle
                except self._nvml.NVMLError as err:  # NotSupported before Volta: leave that GPU out
                    self.reason = f"gpu{index}: {err}"
        except self._nvml.NVMLError as err:
            self.reason = str(err)
            return {}
        return handles

    def read_joules(self) -> dict[str, float]:
        return {
            key: self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3 for key, handle in self.handles.items()
        }

    def span(self) -> dict[str, float]:
        return dict.fromkeys(self.handles, math.inf)  # a 64-bit millijoule counter does not wrap in practice


class EnergyMeter:
    """Joules consumed between ``start`` and ``stop`` per ``SOURCE:device`` counter, across counter wrap-around.

    Each counter may wrap at most once between two readings; a run longer than the shortest wrap
    period (RAPL: range / power, typically tens of minutes) must call ``sample`` in between.
    """

    def __init__(self, sources: list[EnergySource]) -> None:
        self.sources = sources
        self._span = {f"{s.name}:{k}": v for s in sources for k, v in s.span().items()}
        self._last: dict[str, float] = {}
        self._total: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {f"{s.name}:{k}": v for s in self.sources for k, v in s.read_joules().items()}

    def start(self) -> None:
        """Take the starting reading of every counter."""
        self._last = self._read()
        self._total = dict.fromkeys(self._last, 0.0)

    def sample(self) -> None:
        """Fold the energy since the previous reading into the totals (call within each wrap period)."""
        now = self._read()
        for key, previous in self._last.items():
            delta = now[key] - previous
            if delta < 0:
                if math.isinf(self._span[key]):
                    raise RuntimeError(f"energy counter {key} went backwards (driver reloaded?)")
                delta += self._span[key]
            self._total[key] += delta
        self._last = now

    def stop(self) -> dict[str, float]:
        """Joules consumed per counter since ``start``."""
        self.sample()
        return dict(self._total)

    def method(self) -> str:
        """The sources' descriptions, for a Measurement's ``method``."""
        return "; ".join(s.method for s in self.sources) or "no energy counters"


def detect_sources(rapl_root: Path = RAPL_ROOT, nvml: Any = None) -> list[EnergySource]:
    """The energy sources this machine can read (often none: RAPL is root-only on many systems)."""
    return [s for s in (RaplSource(rapl_root), NvmlSource(nvml)) if s.available()]


def power_capability(rapl_root: Path = RAPL_ROOT, nvml: Any = None) -> dict[str, Any]:
    """What energy this machine can measure directly, cheaply (codecarbon's own mode needs a tracker: left out)."""
    rapl, gpus = RaplSource(rapl_root), NvmlSource(nvml)
    return {
        "rapl": rapl.available(),
        "rapl_zones": list(rapl.zones),
        "nvml_energy": gpus.available(),
        "nvml_devices": list(gpus.handles),
        "nvml_reason": gpus.reason or None,
    }
