"""`effbench evaluate` end to end: table and report files, failure containment, resume after kill -9."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import datasets

from effbench.records import MeasurementRow, RunRecord
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.conftest import QUICK_SCENARIO, cli, make_plugin_dist, run_cli

CRASHING = """
import os, time
from effbench import Technique, hookimpl

class Raises(Technique):
    name = "crash-raise"
    stage = "inference"
    resources = ("computation",)
    def apply(self, model, tokenizer):
        raise RuntimeError("this technique is broken on purpose")

class Aborts(Technique):
    name = "crash-abort"
    stage = "inference"
    resources = ("computation",)
    def apply(self, model, tokenizer):
        os.abort()

class Sleeps(Technique):
    name = "crash-sleep"
    stage = "inference"
    resources = ("computation",)
    def apply(self, model, tokenizer):
        time.sleep(600)
        return model

@hookimpl
def register_techniques(register):
    for t in (Raises(), Aborts(), Sleeps()):
        register(t)
"""

QUICK = ["--task", "micro_copy", "--task", "micro_recall", "--limit", "8", "--scenario", QUICK_SCENARIO]


def _runs(store_dir):
    return {r.technique + r.technique_params: r for r in load(store_dir).runs}


def test_default_techniques_end_to_end(tmp_path):
    out = tmp_path / "results"
    result = cli("evaluate", "--output", str(out), "--limit", "20")  # the real command, default executor
    assert result.returncode == 0, result.stderr
    for text in ("baseline", "dynamic-int8", "prune-magnitude", "Compression", "Speed-up"):
        assert text in result.stdout
    runs = _runs(out)
    assert {r.status for r in runs.values()} == {"ok"}
    assert {r.technique for r in runs.values()} == {"baseline", "dynamic-int8", "prune-magnitude"}
    for name in ("report.md", "report.tex", "report.csv", "report-measurements.csv"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "report.md").read_text()
    assert "| prune-magnitude(scope=layer, sparsity=0.5) |" in markdown
    assert re.search(r"- energy(, \w+)*: (estimated|measured) \(codecarbon", markdown)
    measurements = [m for m in load(out).measurements if m.phase == "evaluate"]
    metrics = {m.metric for m in measurements}
    for metric in (
        "acc",
        "exact_match",
        "word_perplexity",
        "parameters",
        "parameters_nonzero",
        "weight_bytes",
        "latency",
        "throughput",
        "peak_memory",
        "energy",
        "energy_per_token",
        "co2",
    ):
        assert metric in metrics, metric
    int8 = next(r for r in runs.values() if r.technique == "dynamic-int8")
    sizes = {m.run_id: m.value for m in measurements if m.metric == "weight_bytes"}
    base = next(r for r in runs.values() if r.technique == "baseline")
    assert sizes[int8.run_id] < 0.5 * sizes[base.run_id]
    pruned = next(r for r in runs.values() if r.technique == "prune-magnitude")
    nonzero = {m.run_id: m.value for m in measurements if m.metric == "parameters_nonzero"}
    assert nonzero[pruned.run_id] < 0.75 * nonzero[base.run_id]
    for m in measurements:
        if m.metric in ("acc", "exact_match"):
            assert m.stderr is not None and m.n == 20
    # load figures belong to the default scenario, model figures to none; the prices used are stored
    scenario_of = {m.metric: m.scenario for m in measurements}
    assert scenario_of["latency"] == scenario_of["cost_per_mtok"] == "single-stream"
    assert scenario_of["weight_bytes"] == scenario_of["cost_run"] == scenario_of["acc"] == ""
    settings = json.loads(base.settings)
    assert settings["price"]["usd_per_hour"] > 0 and settings["scenarios"][0]["repeats"] == 3
    assert {"gpu", "platform", "power"} <= set(json.loads(base.hardware))
    # the technique's own one-off cost is measured around apply
    apply_phase = {(m.run_id, m.metric) for m in load(out).measurements if m.phase == "apply"}
    assert {(int8.run_id, "apply_time"), (int8.run_id, "peak_memory"), (int8.run_id, "energy")} <= apply_phase

    # rerunning the same command skips every stored run (in this process: nothing is run again)
    again = cli("evaluate", "--output", str(out), "--limit", "20", "--executor", "inline")
    assert again.returncode == 0
    assert "3 already stored" in again.stdout
    assert _runs(out) == runs


def test_failing_runs_become_failed_rows_and_the_sweep_goes_on(tmp_path, plugin_path):
    root, env = plugin_path
    make_plugin_dist(root, "crash-dist", "crash", "crash_plugin", CRASHING)
    out = tmp_path / "results"
    result = run_cli(
        "evaluate",
        "--output",
        str(out),
        *QUICK,
        "--timeout",
        "15",
        "--technique",
        "crash-raise",
        "--technique",
        "crash-abort",
        "--technique",
        "crash-sleep",
        "--technique",
        "prune-magnitude:sparsity=0.2",
        env=env,
    )
    assert result.returncode == 1
    runs = _runs(out)
    assert runs["crash-raise{}"].status == "failed"
    assert "RuntimeError: this technique is broken on purpose" in runs["crash-raise{}"].error
    assert "SIGABRT" in runs["crash-abort{}"].error
    assert "timed out after 15 s" in runs["crash-sleep{}"].error
    assert runs["baseline{}"].status == "ok"
    assert runs['prune-magnitude{"scope": "layer", "sparsity": 0.2}'].status == "ok"
    assert "failed: RuntimeError" in (out / "report.md").read_text()
    log = (out / "logs" / f"{runs['crash-raise{}'].run_id}.log").read_text()
    assert "Traceback" in log


def test_kill_minus_9_then_rerun_stores_every_run_exactly_once(tmp_path):
    out = tmp_path / "results"
    args = [
        sys.executable,
        "-m",
        "effbench.cli",
        "evaluate",
        "--output",
        str(out),
        *QUICK,
        "--technique",
        "prune-magnitude:sparsity=0.1",
        "--technique",
        "prune-magnitude:sparsity=0.3",
        "--technique",
        "prune-magnitude:sparsity=0.6",
    ]
    sweep = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(ResultsStore(out).files("runs")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(sweep.pid, signal.SIGKILL)  # the sweep, its forkserver and its worker
    sweep.wait()
    stored_before = _runs(out)
    assert 2 <= len(stored_before) < 4
    rerun = cli(*args[3:], "--executor", "inline")  # resuming is the sweep's job, whichever executor runs it
    assert rerun.returncode == 0, rerun.stderr
    results = load(out)
    runs = results.runs
    assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
    for key, row in stored_before.items():  # finished runs were not run again
        assert _runs(out)[key].started_at == row.started_at
    per_run = {}
    for m in results.measurements:
        per_run.setdefault(m.run_id, []).append((m.task, m.metric, m.phase))
    assert set(per_run) == {r.run_id for r in runs}
    for pairs in per_run.values():
        assert len(pairs) == len(set(pairs))  # no duplicated measurement


def test_store_tables_round_trip_through_datasets(tmp_path):
    out = tmp_path / "results"
    result = cli("evaluate", "--output", str(out), *QUICK, "--technique", "baseline", "--executor", "inline")
    assert result.returncode == 0, result.stderr
    results = load(out)
    for table, kind in (("runs", RunRecord), ("measurements", MeasurementRow)):
        loaded = datasets.load_dataset("parquet", data_files=str(out / table / "*.parquet"), split="train")
        assert loaded.to_list() == results.table(kind).to_pylist()
    run = results.runs[0]
    assert json.loads(run.hardware)["cpu"]["logical_cores"] >= 1
    assert json.loads(run.versions)["lm_eval"]


def test_bad_input_exits_with_a_clear_message(tmp_path):
    result = cli("evaluate", "--output", str(tmp_path), "--technique", "nope")
    assert result.returncode == 2
    assert "unknown technique 'nope'; valid techniques:" in result.stderr
    assert "Traceback" not in result.stderr
    result = cli("evaluate", "--output", str(tmp_path), "--model", "zoo:micro-x")
    assert result.returncode == 2 and "available: zoo:micro-m, zoo:micro-s" in result.stderr


def test_bad_measurement_settings_fail_before_any_run(tmp_path):
    """Each bad setting's message is tested in test_resources; here: the command stops before writing anything."""
    out = tmp_path / "results"
    result = cli("evaluate", "--output", str(out), "--scenario", "server:rate=-1")
    assert result.returncode == 2 and "scenarios.0.rate: Input should be greater than 0" in result.stderr
    assert not out.exists()  # nothing started, nothing written


def test_version_and_probe():
    assert cli("--version").stdout.startswith("effbench ")
    probe = json.loads(cli("probe").stdout)
    assert probe["fingerprint"] and {"cpu", "memory", "os", "versions"} <= set(probe["probes"])
