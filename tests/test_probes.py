"""Hardware probes: real collection on this machine, fake NVML GPUs, fake container/VM trees, fingerprint stability."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from effbench.default_plugins.probes import (
    CpuProbe,
    GpuProbe,
    MemoryProbe,
    OsProbe,
    PlatformProbe,
    PowerProbe,
    VersionsProbe,
    detect_platform,
)
from effbench.plugins import registry
from effbench.run.sweep import collect_probes, hardware_fingerprint
from tests.fake_nvml import FakeNvml


@pytest.mark.parametrize("probe", [CpuProbe, MemoryProbe, GpuProbe, OsProbe, PlatformProbe, PowerProbe, VersionsProbe])
def test_probe_collects_json_on_this_machine(probe):
    data = probe().collect()
    assert isinstance(data, dict) and data
    assert json.loads(json.dumps(data)) == data
    assert set(probe.fingerprint_keys) <= set(data)


def test_cpu_frequency_is_reported_but_not_fingerprinted():
    data = CpuProbe().collect()
    assert {"current_mhz", "min_mhz", "max_mhz"} <= set(data)
    assert CpuProbe.fingerprint_keys == ("model", "logical_cores")


def test_gpu_probe_with_two_fake_gpus():
    nvml = FakeNvml()
    data = GpuProbe(nvml).collect()
    assert data["count"] == 2
    assert data["names"] == ["NVIDIA A100-SXM4-80GB"] * 2
    assert data["memory_gib"] == [80.0, 80.0]
    assert data["driver"] == "550.54.15"
    assert data["cuda_driver"] == "12.4"
    assert data["nvml"] == "ok"
    assert nvml.open == 0
    json.dumps(data)


def test_gpu_probe_keeps_the_gpus_when_only_the_cuda_version_is_missing():
    data = GpuProbe(FakeNvml(fail_on="cuda")).collect()
    assert data["count"] == 2 and data["cuda_driver"] is None


@pytest.mark.parametrize(("fail_on", "reason"), [("init", "init failed"), ("count", "count failed")])
def test_gpu_probe_without_a_working_driver_says_why(fail_on, reason):
    nvml = FakeNvml(fail_on=fail_on)
    data = GpuProbe(nvml).collect()
    assert data["count"] == 0 and data["names"] == []
    assert data["nvml"] == f"unavailable: {reason}"
    assert nvml.open == 0


def test_gpu_probe_on_this_machine_reports_a_reason_when_there_is_no_driver():
    data = GpuProbe().collect()
    assert data["nvml"] == "ok" or (data["nvml"].startswith("unavailable: ") and data["count"] == 0)


def tree(root: Path, files: dict[str, str]) -> Path:
    """A fake filesystem root with the given files."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


CPUINFO_VM = "processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor avx2\n"
CPUINFO_METAL = "processor\t: 0\nflags\t\t: fpu vme sse2 avx2\n"


def dmi(vendor: str, product: str) -> dict[str, str]:
    """The firmware's system vendor and product name files."""
    return {"sys/class/dmi/id/sys_vendor": f"{vendor}\n", "sys/class/dmi/id/product_name": f"{product}\n"}


@pytest.mark.parametrize(
    ("files", "environ", "container", "virtualization"),
    [
        ({"proc/cpuinfo": CPUINFO_METAL, "proc/1/cgroup": "0::/\n"}, {}, None, None),
        ({".dockerenv": ""}, {}, "docker", None),
        ({"run/.containerenv": 'engine="podman-4.9"\n'}, {}, "podman", None),
        ({"proc/1/cgroup": "12:memory:/docker/0123abcd\n"}, {}, "docker", None),
        ({"proc/1/cgroup": "11:cpu:/kubepods/burstable/pod1/0123\n", ".dockerenv": ""}, {}, "kubernetes", None),
        ({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes", None),
        ({"proc/1/cgroup": "1:name=systemd:/lxc/web01\n"}, {}, "lxc", None),
        (dmi("QEMU", "KVM"), {}, None, "kvm"),
        (dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)"), {}, None, "qemu"),
        (dmi("Microsoft Corporation", "Virtual Machine"), {}, None, "hyperv"),
        (dmi("Microsoft Corporation", "Surface Laptop 5"), {}, None, None),
        (dmi("VMware, Inc.", "VMware Virtual Platform"), {}, None, "vmware"),
        (dmi("Amazon EC2", "m5.large"), {}, None, "amazon"),
        (dmi("Amazon EC2", "m5.metal"), {}, None, None),
        ({"sys/hypervisor/type": "xen\n", "proc/cpuinfo": CPUINFO_VM}, {}, None, "xen"),
        ({"proc/cpuinfo": CPUINFO_VM, ".dockerenv": ""}, {}, "docker", "unidentified"),
    ],
)
def test_container_and_vm_detection_on_fake_trees(tmp_path, files, environ, container, virtualization):
    data = PlatformProbe(tree(tmp_path, files), environ).collect()
    assert (data["container"], data["virtualization"]) == (container, virtualization)
    assert bool(data["evidence"]) == bool(container or virtualization or "sys/class/dmi/id/sys_vendor" in files)


def test_detection_names_its_evidence(tmp_path):
    root = tree(
        tmp_path,
        {
            ".dockerenv": "",
            "proc/cpuinfo": CPUINFO_VM,
            "sys/class/dmi/id/sys_vendor": "Google\n",
            "sys/class/dmi/id/product_name": "Google Compute Engine\n",
        },
    )
    assert detect_platform(root, {}) == {
        "container": "docker",
        "virtualization": "google",
        "evidence": ["/.dockerenv", "dmi: Google Google Compute Engine", "cpu flag hypervisor"],
    }


def test_empty_root_is_bare_metal_without_evidence(tmp_path):
    assert detect_platform(tmp_path, {}) == {"container": None, "virtualization": None, "evidence": []}


def test_new_probes_are_registered_and_only_gpu_joins_the_fingerprint():
    probes = registry().probes
    assert {"gpu", "platform", "power"} <= set(probes)
    assert probes["gpu"].fingerprint_keys == ("count", "names")
    assert probes["platform"].fingerprint_keys == () and probes["power"].fingerprint_keys == ()


def test_fingerprint_is_stable_on_this_machine_and_follows_the_gpus():
    reg = registry()
    first, second = collect_probes(reg), collect_probes(reg)
    assert not [name for name, data in first.items() if "error" in data]
    assert hardware_fingerprint(reg, first) == hardware_fingerprint(reg, second)
    moment = copy.deepcopy(first)
    moment["cpu"]["current_mhz"] = 1.0
    moment["platform"]["container"] = "podman"
    moment["power"]["rapl"] = not first["power"]["rapl"]
    assert hardware_fingerprint(reg, moment) == hardware_fingerprint(reg, first)
    other_gpu = copy.deepcopy(first)
    other_gpu["gpu"]["names"] = [*first["gpu"]["names"], "NVIDIA H100 80GB HBM3"]
    assert hardware_fingerprint(reg, other_gpu) != hardware_fingerprint(reg, first)


def test_probing_does_not_import_torch():
    """Probes run in the sweep's parent process, which never needs torch: importing it costs seconds."""
    code = (
        "import sys; from effbench.plugins import registry; from effbench.run.sweep import collect_probes; "
        "collect_probes(registry()); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
