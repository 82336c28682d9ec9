"""Device and dtype: validated before any work, part of each run's identity, stored, shown, and really applied."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effbench import Technique, hookimpl
from effbench.config.suite import load_suite
from effbench.measure.device import available_devices
from effbench.plugins import registry
from effbench.records import RunRecord
from effbench.run.sweep import check_parameters, plan
from effbench.store.load import load
from tests.conftest import QUICK_SCENARIO, cli
from tests.test_suite_validation import evaluate_until_planned, override_error

QUICK = ["--task", "micro_copy", "--limit", "4", "--scenario", QUICK_SCENARIO, "--executor", "inline"]
NO_CUDA = not torch.cuda.is_available()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"device": "gpu"}, "device: unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N or mps"),
        ({"device": "cuda:"}, "device: unknown device 'cuda:'; valid: auto, cpu, cuda, cuda:N or mps"),
        ({"dtype": "float8"}, "dtype: Input should be 'auto', 'float32', 'bfloat16' or 'float16'"),
        ({"device_map": "everywhere"}, "device_map: Input should be 'auto', 'balanced', 'balanced_low_0' or"),
        ({"attn_implementation": "fast"}, "attn_implementation: unknown attention 'fast'; valid: eager, sdpa,"),
    ],
)
def test_bad_placement_fields_name_the_valid_choices(overrides, expected):
    assert f"\n  {expected}" in override_error(**overrides)


def test_placement_fields_are_read_from_a_suite_file(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("device: cuda:1\ndtype: bfloat16\ndevice_map: auto\nattn_implementation: org/kernel\n")
    suite = load_suite(path)
    assert (suite.device, suite.dtype, suite.device_map, suite.attn_implementation) == (
        "cuda:1",
        "bfloat16",
        "auto",
        "org/kernel",
    )


@pytest.mark.parametrize("flag", ["--device-map", "--device_map"])
def test_the_flags_reach_the_suite(flag):
    suite = evaluate_until_planned(
        "--device", "cpu", "--dtype", "float16", flag, "sequential", "--attn-implementation", "eager"
    )
    assert (suite.device, suite.dtype, suite.device_map, suite.attn_implementation) == (
        "cpu",
        "float16",
        "sequential",
        "eager",
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The command's error, checked to be exit status 2 and one line (after the progress bar's blank line)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# devices this machine lacks: always an index beyond any machine's count, and CUDA or mps where they are missing
MISSING = ["cuda:99", *(["cuda"] if NO_CUDA else []), *([] if torch.backends.mps.is_available() else ["mps"])]


@pytest.mark.parametrize("device", MISSING)
def test_a_missing_gpu_is_refused_before_any_worker_starts(tmp_path, device):
    out = tmp_path / "results"
    result = cli("evaluate", "--output", str(out), "--device", device, "--technique", "baseline")
    message = one_line_error(result)
    assert message.startswith(f"error: device '{device}' is not on this machine (torch ")
    assert message.endswith(f"available: {', '.join(available_devices())}")
    assert not out.exists()  # the worker pool never started: it would have made the logs folder


def test_device_map_with_a_cpu_only_technique_is_refused(tmp_path):
    out = tmp_path / "results"
    result = cli(
        "evaluate", "--output", str(out), "--device", "cpu", "--device-map", "auto", "--technique", "dynamic-int8"
    )
    message = one_line_error(result)
    assert message.startswith("error: technique 'dynamic-int8' runs on cpu only, but device_map 'auto'")
    assert not out.exists()


class GpuOnly(Technique):
    """A technique declaring CUDA kernels only."""

    name = "gpu-only"
    stage = "inference"
    resources = ("computation",)
    devices = ("cuda",)


class GpuOnlyPlugin:
    @hookimpl
    def register_techniques(self, register):
        register(GpuOnly())


def test_a_technique_without_kernels_for_the_device_is_refused(tmp_path, effbench_registry):
    effbench_registry(GpuOnlyPlugin())
    result = cli("evaluate", "--output", str(tmp_path / "r"), "--device", "cpu", "--technique", "gpu-only")
    assert one_line_error(result) == "error: technique 'gpu-only' has no kernels for device 'cpu'; it runs on: cuda"


def test_a_malformed_devices_declaration_is_a_load_error():
    from effbench.api.technique import check_technique

    bad = type("Bad", (GpuOnly,), {"name": "bad", "devices": "cuda"})
    with pytest.raises(TypeError, match="devices must be None"):
        check_technique(bad())
    check_technique(GpuOnly())


def _run_ids(**overrides: object) -> list[str]:
    suite = load_suite(**{"techniques": ["baseline"], "tasks": ["micro_copy"], **overrides})
    reg = registry()
    return [r.run_id for r in plan(suite, reg, "fp", {"micro_copy"}, stacks=check_parameters(suite, reg))]


def test_placement_is_part_of_the_identity_and_cpu_float32_keeps_the_old_id():
    default = _run_ids(device="cpu")
    assert default == _run_ids(device="cpu", dtype="float32") == _run_ids(device="cpu", dtype="auto")
    others = [_run_ids(device="cpu", dtype="bfloat16"), _run_ids(device="cpu", dtype="float16")]
    others += [_run_ids(device="cpu", attn_implementation="eager"), _run_ids(device="cpu", device_map="auto")]
    assert len({tuple(ids) for ids in [default, *others]}) == 5


def _by_technique(out) -> dict[str, RunRecord]:
    return {r.technique: r for r in load(out).runs}


def test_a_bfloat16_run_loads_bf16_weights_and_is_a_new_run(tmp_path):
    out = tmp_path / "results"
    first = cli("evaluate", "--output", str(out), "--device", "cpu", "--technique", "baseline", *QUICK)
    assert first.returncode == 0, first.stderr
    half = cli("evaluate", "--output", str(out), "--dtype", "bfloat16", "--technique", "baseline", *QUICK)
    assert half.returncode == 0, half.stderr
    assert "0 already stored" in half.stdout  # another dtype is another run
    runs = load(out).runs
    placements = {(r.device, r.dtype) for r in runs}
    assert placements == {("cpu", "float32"), ("cpu", "bfloat16")}
    weights = {
        next(r.dtype for r in runs if r.run_id == m.run_id): m.value
        for m in load(out).measurements
        if m.metric == "weight_bytes" and m.phase == "evaluate"
    }
    assert 0.45 < weights["bfloat16"] / weights["float32"] < 0.55  # every tensor really is 16-bit
    assert "on device cpu, dtype bfloat16" in half.stdout and "device cpu, dtype float32" in first.stdout
    markdown = (out / "report.md").read_text()
    assert "### zoo:micro-m (" in markdown and ") on device cpu, dtype bfloat16" in markdown
    again = cli("evaluate", "--output", str(out), "--dtype", "bfloat16", "--technique", "baseline", *QUICK)
    assert "1 already stored" in again.stdout
    assert json.loads(runs[0].settings).keys().isdisjoint({"device_map", "attn_implementation"})


def test_loading_options_are_stored_with_the_run(tmp_path):
    out = tmp_path / "results"
    result = cli("evaluate", "--output", str(out), "--attn-implementation", "eager", "--technique", "baseline", *QUICK)
    assert result.returncode == 0, result.stderr
    (run,) = load(out).runs
    assert json.loads(run.settings)["attn_implementation"] == "eager" and run.device == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(NO_CUDA, reason="needs a CUDA device (torch.cuda.is_available() is false)")
def test_a_cuda_run_stores_its_device_and_accelerator_memory(tmp_path):
    out = tmp_path / "results"
    result = cli(
        "evaluate", "--output", str(out), "--device", "cuda", "--dtype", "bfloat16", "--technique", "baseline", *QUICK
    )
    assert result.returncode == 0, result.stderr
    (run,) = load(out).runs
    assert (run.device, run.dtype, run.status) == ("cuda:0", "bfloat16", "ok")
    peaks = [m.value for m in load(out).measurements if m.metric == "accelerator_peak_allocated"]
    assert peaks and min(peaks) > 0


def test_the_gpu_check_says_in_one_line_when_its_device_is_missing():
    script = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    result = subprocess.run([sys.executable, str(script), "--device", "cuda:99"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout.startswith("error: device 'cuda:99' is not on this machine")
    assert len(result.stdout.strip().splitlines()) == 1 and "Traceback" not in result.stderr
