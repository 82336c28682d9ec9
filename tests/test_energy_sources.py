"""Direct energy counters on fake powercap trees and a fake NVML module: joules, wrap-around, unavailability."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from effbench.measure.energy_sources import (
    EnergyMeter,
    NvmlSource,
    RaplSource,
    detect_sources,
    load_nvml,
    power_capability,
)
from tests.fake_nvml import FakeNvml

RANGE_UJ = 262_143_328_850


def make_zone(root: Path, dirname: str, name: str, energy_uj: int, range_uj: int = RANGE_UJ) -> Path:
    """One powercap zone directory as the kernel lays it out (flat under /sys/class/powercap)."""
    zone = root / dirname
    zone.mkdir(parents=True)
    (zone / "name").write_text(f"{name}\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return zone


def set_energy(root: Path, dirname: str, energy_uj: int) -> None:
    (root / dirname / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def server(tmp_path):
    """Two packages, each with core (inside the package) and dram (outside it), plus an MMIO duplicate."""
    make_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    make_zone(tmp_path, "intel-rapl:0:0", "core", 400_000)
    make_zone(tmp_path, "intel-rapl:0:1", "dram", 200_000)
    make_zone(tmp_path, "intel-rapl:1", "package-1", 3_000_000)
    make_zone(tmp_path, "intel-rapl:1:0", "dram", 500_000)
    make_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 1_000_000)
    return tmp_path


def test_rapl_reads_packages_and_dram_in_joules(server):
    source = RaplSource(server)
    assert source.available()
    assert source.read_joules() == {"package-0": 1.0, "package-0/dram": 0.2, "package-1": 3.0, "package-1/dram": 0.5}
    assert source.span() == dict.fromkeys(source.zones, RANGE_UJ / 1e6)
    assert source.method == "measured (RAPL counters: package-0, package-0/dram, package-1, package-1/dram)"


def test_rapl_orders_zones_numerically(tmp_path):
    for n in (10, 2):
        make_zone(tmp_path, f"intel-rapl:{n}", f"package-{n}", n)
    assert list(RaplSource(tmp_path).zones) == ["package-2", "package-10"]


def test_rapl_leaves_out_psys_which_contains_the_packages(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 5_000_000)
    make_zone(tmp_path, "intel-rapl:1", "psys", 9_000_000)
    assert RaplSource(tmp_path).read_joules() == {"package-0": 5.0}


def test_meter_reports_joules_per_counter_and_survives_a_wrap(server):
    meter = EnergyMeter([RaplSource(server)])
    meter.start()
    set_energy(server, "intel-rapl:0", 4_500_000)
    set_energy(server, "intel-rapl:0:1", 1_200_000)
    set_energy(server, "intel-rapl:1", 1_000_000)  # wrapped: 3 J -> range -> 1 J
    used = meter.stop()
    assert used["RAPL:package-0"] == pytest.approx(3.5)
    assert used["RAPL:package-0/dram"] == pytest.approx(1.0)
    assert used["RAPL:package-1"] == pytest.approx(RANGE_UJ / 1e6 - 3.0 + 1.0)
    assert used["RAPL:package-1/dram"] == 0.0
    assert set(used) == {"RAPL:package-0", "RAPL:package-0/dram", "RAPL:package-1", "RAPL:package-1/dram"}
    assert meter.method() == RaplSource(server).method


def test_meter_samples_accumulate_across_several_wraps(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0, range_uj=10_000_000)
    meter = EnergyMeter([RaplSource(tmp_path)])
    meter.start()
    for energy_uj in (8_000_000, 2_000_000, 9_000_000, 1_000_000):  # two wraps of a 10 J counter
        set_energy(tmp_path, "intel-rapl:0", energy_uj)
        meter.sample()
    set_energy(tmp_path, "intel-rapl:0", 3_000_000)
    assert meter.stop() == {"RAPL:package-0": pytest.approx(23.0)}


def _unreadable(path: Path) -> None:
    """Make ``path`` unreadable: chmod where that blocks reads, else (root) turn it into a directory."""
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: a directory fails to read the same way
        path.unlink()
        path.mkdir()
    with pytest.raises(OSError):
        path.read_text()


def test_unreadable_counters_mean_unavailable_not_a_crash(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    _unreadable(tmp_path / "intel-rapl:0" / "energy_uj")
    source = RaplSource(tmp_path)
    assert not source.available()
    assert source.read_joules() == {}
    assert "none readable" in source.method


def test_one_unreadable_zone_leaves_the_others(server):
    _unreadable(server / "intel-rapl:1" / "energy_uj")
    assert set(RaplSource(server).zones) == {"package-0", "package-0/dram", "package-1/dram"}


def test_garbled_counter_is_unavailable(tmp_path):
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("not a number\n")
    assert not RaplSource(tmp_path).available()


def test_nvml_joules_per_gpu():
    nvml = FakeNvml([1_000_000, 50_000])
    source = NvmlSource(nvml)
    assert source.available()
    assert source.read_joules() == {"gpu0": 1000.0, "gpu1": 50.0}
    assert source.span() == {"gpu0": math.inf, "gpu1": math.inf}
    meter = EnergyMeter([source])
    meter.start()
    nvml.tick(250_500, 12_000)
    assert meter.stop() == {"NVML:gpu0": pytest.approx(250.5), "NVML:gpu1": pytest.approx(12.0)}
    assert meter.method() == "measured (NVML energy counters: gpu0, gpu1)"


def test_nvml_counter_going_backwards_is_an_error_not_a_number():
    nvml = FakeNvml([5_000])
    meter = EnergyMeter([NvmlSource(nvml)])
    meter.start()
    nvml.counters_mj = [100]
    with pytest.raises(RuntimeError, match="NVML:gpu0 went backwards"):
        meter.stop()


def test_nvml_not_supported_is_unavailable_and_says_why():
    source = NvmlSource(FakeNvml([None]))
    assert not source.available()
    assert source.reason == "gpu0: Not Supported"
    mixed = NvmlSource(FakeNvml([None, 7_000]))
    assert mixed.read_joules() == {"gpu1": 7.0}


@pytest.mark.parametrize(
    ("nvml", "reason"),
    [
        (FakeNvml([], init_error=FakeNvml.NVMLError("Driver Not Loaded")), "Driver Not Loaded"),
        (FakeNvml([], init_error=OSError("libnvidia-ml.so.1: cannot open")), "libnvidia-ml.so.1: cannot open"),
        (FakeNvml([]), "no NVIDIA GPU"),
    ],
)
def test_nvml_without_driver_or_gpus_is_unavailable(nvml, reason):
    source = NvmlSource(nvml)
    assert not source.available()
    assert source.reason == reason


def test_load_nvml_reports_a_missing_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` raise ImportError
    assert load_nvml() == (None, "pynvml not installed")


def test_meter_combines_sources(server):
    nvml = FakeNvml([0])
    meter = EnergyMeter([RaplSource(server), NvmlSource(nvml)])
    meter.start()
    nvml.tick(2_000)
    set_energy(server, "intel-rapl:0", 1_500_000)
    used = meter.stop()
    assert used["NVML:gpu0"] == pytest.approx(2.0) and used["RAPL:package-0"] == pytest.approx(0.5)
    assert meter.method() == f"{RaplSource(server).method}; measured (NVML energy counters: gpu0)"


def test_detect_sources_finds_what_is_there(server, tmp_path_factory):
    empty = tmp_path_factory.mktemp("no-powercap")
    failing = FakeNvml([], init_error=FakeNvml.NVMLError("Driver Not Loaded"))
    assert detect_sources(empty, failing) == []
    assert detect_sources(empty / "missing", failing) == []
    assert [s.name for s in detect_sources(server, FakeNvml([1]))] == ["RAPL", "NVML"]


def test_power_capability_on_fakes(server):
    assert power_capability(server, FakeNvml([None, 3])) == {
        "rapl": True,
        "rapl_zones": ["package-0", "package-0/dram", "package-1", "package-1/dram"],
        "nvml_energy": True,
        "nvml_devices": ["gpu1"],
        "nvml_reason": "gpu0: Not Supported",
    }


def test_power_capability_on_this_machine_is_cheap_and_json():
    """The power probe runs in every sweep's parent: it must not start codecarbon (a tracker takes seconds)."""
    code = (
        "import sys; from effbench.measure.energy_sources import power_capability; "
        "power_capability(); print('codecarbon' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    capability = power_capability()
    assert set(capability) == {"rapl", "rapl_zones", "nvml_energy", "nvml_devices", "nvml_reason"}
    json.dumps(capability)
