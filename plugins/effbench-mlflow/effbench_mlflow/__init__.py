"""The ``mlflow`` tracker: every stored effbench run becomes an MLflow run.

Parameters: model, technique stack and its parameters, device, dtype, tasks, settings. Metrics: every
measurement under ``[phase/][scenario/][task/]metric`` (with ``.stderr``, ``.ci_low``, ``.ci_high`` beside
it), its unit in the tag ``unit.<key>``. Tags: the effbench run id and status, the hardware fingerprint and
every scalar the hardware probes recorded. Artifacts: the run's comparison table (``effbench-report.md``)
and its stored record (``effbench-run.json``).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from effbench import TrackedRun, Tracker, hookimpl

PARAMS = {"tracking_uri": "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else MLflow's own default)",
          "experiment": "experiment name (default: effbench-<suite name>)"}  # fmt: skip
KEY_UNSAFE = re.compile(r"[^\w\-. /]")  # MLflow keys allow letters, digits, _ - . space and /
MAX_TAG = 5000  # MLflow's limit on a tag value is 8000 characters; hardware records are short, error text may not be
EVALUATE = "evaluate"
BATCH = 100  # params per log_batch call (MLflow allows 100 params and 1000 metrics)


def _key(*parts: str) -> str:
    return "/".join(KEY_UNSAFE.sub("_", p) for p in parts if p)


def _ms(moment: Any) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def params_of(tracked: TrackedRun) -> dict[str, str]:
    """The run's identity as MLflow parameters: what was applied to which model, where and how."""
    run = tracked.run
    settings = json.loads(run.settings or "{}")
    params = {
        "model": run.model,
        "model_revision": run.model_revision or "",
        "technique": run.technique,
        "technique_label": run.label,
        "technique_params": run.technique_params,
        "stage": run.stage,
        "device": run.device or "",
        "dtype": run.dtype or "",
        "tasks": ",".join(run.tasks),
        "limit": str(settings.get("limit")),
        "scenarios": ",".join(s.get("kind", "") for s in settings.get("scenarios", [])),
        "suite": run.suite,
        "effbench_version": run.effbench_version,
    }
    for index, entry in enumerate(run.stack_entries()):
        params[_key(f"stack.{index}", "name")] = entry.name
        params.update({_key(f"stack.{index}", str(k)): json.dumps(v) for k, v in sorted(entry.params.items())})
    return params


def metrics_of(tracked: TrackedRun) -> tuple[dict[str, float], dict[str, str]]:
    """Every stored figure under a key naming its phase, scenario, task and metric, and each key's unit."""
    values: dict[str, float] = {}
    units: dict[str, str] = {}
    for m in tracked.measurements:
        phase = m.phase if m.phase and m.phase != EVALUATE else ""
        key = _key(phase, m.scenario or "", m.task, m.metric)
        if key in values:  # the same quantity from a second instrument (codecarbon and RAPL): named by it
            key = _key(key + "." + m.method)
        values[key] = m.value
        for bound in ("stderr", "ci_low", "ci_high"):
            if getattr(m, bound) is not None:
                values[f"{key}.{bound}"] = getattr(m, bound)
        if m.unit:
            units[key] = m.unit
    return values, units


def tags_of(tracked: TrackedRun) -> dict[str, str]:
    """The effbench run id and status, and the machine: fingerprint and every scalar its probes recorded."""
    run = tracked.run
    tags = {
        "effbench.run_id": run.run_id,
        "effbench.status": run.status,
        "effbench.store": str(tracked.store),
        "hardware.fingerprint": run.hardware_fingerprint,
        "hardware.machine": run.machine,
    }
    if run.error:
        tags["effbench.error"] = run.error[:MAX_TAG]
    for probe, fields in json.loads(run.hardware or "{}").items():
        for name, value in fields.items() if isinstance(fields, dict) else ():
            if isinstance(value, str | int | float | bool):
                tags[_key(f"hardware.{probe}.{name}")] = str(value)[:MAX_TAG]
    return tags


class MlflowTracker(Tracker):
    """Logs each stored run to an MLflow tracking server or local store."""

    name = "mlflow"
    description = "each stored run as an MLflow run: parameters, metrics with units, hardware tags, the report"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise ValueError(f"unknown parameter {unknown[0]!r}; valid: {', '.join(PARAMS)}")
        for name, value in params.items():
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} must be a non-empty text, got {value!r}")
        return params

    def log_run(self, tracked: TrackedRun, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient(tracking_uri=tracking_uri)
        name = experiment or f"effbench-{tracked.run.suite or 'default'}"
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
        values, units = metrics_of(tracked)
        tags = {**tags_of(tracked), **{f"unit.{key}": unit for key, unit in units.items()}}
        run = client.create_run(
            experiment_id, start_time=_ms(tracked.run.started_at), tags=tags, run_name=tracked.run.label
        )
        run_id = run.info.run_id
        stamp = _ms(tracked.run.finished_at) or int(time.time() * 1000)
        metrics = [Metric(key, value, stamp, 0) for key, value in values.items()]
        params = [Param(key, value) for key, value in params_of(tracked).items()]
        for start in range(0, max(len(metrics), len(params)), BATCH):  # MLflow's limits per batch
            client.log_batch(run_id, metrics=metrics[start : start + BATCH], params=params[start : start + BATCH])
        client.log_text(run_id, tracked.report, "effbench-report.md")
        client.log_text(run_id, json.dumps(tracked.run.as_row(), default=str, indent=1), "effbench-run.json")
        status = "FAILED" if tracked.run.status == "failed" else "FINISHED"
        client.set_terminated(run_id, status=status, end_time=stamp)


@hookimpl
def register_trackers(register):
    register(MlflowTracker())
