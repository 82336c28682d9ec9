"""Real effbench runs logged to a real local MLflow store (sqlite), read back with MLflow's own client."""

import json

import effbench_mlflow
import mlflow.artifacts
import pytest
from mlflow import MlflowClient

import effbench
from effbench.errors import EffbenchError
from effbench.store.load import load
from effbench.testing import registered

SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"


def _sweep(output, trackers):
    return effbench.evaluate(
        models=["zoo:micro-s"],
        techniques=["baseline", "prune-magnitude:sparsity=0.5"],
        tasks=["micro_copy"],
        limit=4,
        scenarios=[SCENARIO],
        executor="inline",
        output=str(output),
        trackers=trackers,
    )


def test_every_run_is_in_mlflow_with_params_metrics_units_tags_and_the_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow keeps a sqlite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with registered(effbench_mlflow):
        results = _sweep(tmp_path / "out", [f"mlflow:tracking_uri={uri},experiment=pruning"])
    assert not results.tracker_failures and not results.failed
    stored = load(tmp_path / "out")
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("pruning")
    logged = {r.data.tags["effbench.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(logged) == {r.run_id for r in stored.runs}
    for run in stored.runs:
        mlflow_run = logged[run.run_id]
        assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == run.label
        params, metrics, tags = mlflow_run.data.params, mlflow_run.data.metrics, mlflow_run.data.tags
        assert (params["model"], params["technique"], params["device"], params["dtype"]) == (
            "zoo:micro-s", run.technique, run.device, run.dtype,
        )  # fmt: skip
        assert json.loads(params["technique_params"]) == json.loads(run.technique_params)
        assert params["stack.0/name"] == run.technique
        accuracy = next(m for m in stored.measurements_of(run.run_id) if m.metric == "exact_match")
        assert metrics["micro_copy/exact_match"] == accuracy.value
        latency = next(m for m in stored.measurements_of(run.run_id) if m.metric == "latency")
        assert metrics["single-stream/latency"] == latency.value and tags["unit.single-stream/latency"] == "ms"
        assert metrics["single-stream/latency.ci_high"] == latency.ci_high
        assert tags["hardware.fingerprint"] == run.hardware_fingerprint and tags["hardware.machine"] == run.machine
        assert tags["hardware.cpu.logical_cores"] == str(json.loads(run.hardware)["cpu"]["logical_cores"])
        assert {a.path for a in client.list_artifacts(mlflow_run.info.run_id)} == {
            "effbench-report.md", "effbench-run.json",
        }  # fmt: skip
        report = mlflow.artifacts.load_text(f"{mlflow_run.info.artifact_uri}/effbench-report.md")
        assert "| baseline |" in report and f"| {run.label} |".replace("[", "\\[") in report
        record = json.loads(mlflow.artifacts.load_text(f"{mlflow_run.info.artifact_uri}/effbench-run.json"))
        assert record["run_id"] == run.run_id and record["status"] == "ok"
    pruned = next(r for r in stored.runs if r.technique == "prune-magnitude")
    assert logged[pruned.run_id].data.params["stack.0/sparsity"] == "0.5"


def test_an_unreachable_store_is_reported_and_the_runs_stay_stored(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"  # no database can be created under a file
    with registered(effbench_mlflow), pytest.warns(UserWarning, match="tracker 'mlflow' could not export run"):
        results = _sweep(tmp_path / "out", [f"mlflow:tracking_uri={uri}"])
    stored = load(tmp_path / "out")
    assert [r.status for r in stored.runs] == ["ok", "ok"]
    assert sorted(f.run_id for f in results.tracker_failures) == sorted(r.run_id for r in stored.runs)


def test_bad_parameters_are_refused_before_any_run(tmp_path):
    with registered(effbench_mlflow):
        for tracker, message in (
            ("mlflow:uri=x", "tracker 'mlflow': unknown parameter 'uri'; valid: tracking_uri, experiment"),
            ("mlflow:experiment=", "tracker 'mlflow': experiment must be a non-empty text"),
        ):
            with pytest.raises(EffbenchError, match=message):
                _sweep(tmp_path / "out", [tracker])
    assert not (tmp_path / "out").exists()
