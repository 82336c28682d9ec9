"""A sweep: validate everything up front, then run each (model, technique) pair in a worker and store it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from effbench.config import prices
from effbench.config.suite import Suite, TechniqueSpec
from effbench.errors import EffbenchError
from effbench.plugins import Registry, registry
from effbench.reference import zoo
from effbench.run.forkserver import Outcome, WorkerPool
from effbench.store.results import ResultsStore

RUN_TARGET = "effbench.run.pipeline:execute"


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def collect_probes(reg: Registry) -> dict[str, Any]:
    """Every probe's data; a failing probe records its error instead of stopping the sweep."""
    data = {}
    for name, probe in reg.probes.items():
        try:
            data[name] = probe.collect()
        except Exception as err:  # plugin code
            data[name] = {"error": repr(err)}
    return data


def hardware_fingerprint(reg: Registry, probes: dict[str, Any]) -> str:
    """A stable id of the machine: the probes' identifying fields only (nothing that varies by moment)."""
    keyed = {
        name: {k: probes.get(name, {}).get(k) for k in probe.fingerprint_keys}
        for name, probe in sorted(reg.probes.items())
        if probe.fingerprint_keys
    }
    return _digest(keyed)


@dataclass
class PlannedRun:
    """One (model, technique) run of a suite with its stable id."""

    run_id: str
    model: str
    technique: TechniqueSpec
    payload: dict[str, Any]


@dataclass
class SweepResult:
    """What a sweep did: run ids in suite order, and which were skipped or failed."""

    run_ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


SETTINGS = ("limit", "batch_size", "bootstrap_iters", "scenarios", "country", "idle_seconds", "price")


def plan(
    suite: Suite,
    reg: Registry,
    fingerprint: str,
    known_tasks: set[str] | None = None,
    price: dict[str, Any] | None = None,
) -> list[PlannedRun]:
    """Validate models, techniques, parameters and tasks before any work, and give each run its id.

    ``price`` is the suite's price table resolved for this machine (stored with, and part of, every run).
    """
    from effbench.measure import accuracy

    checked = [(spec, reg.technique(spec.name).validate(spec.params)) for spec in suite.techniques]
    for model in suite.models:
        config = zoo.config(model, revision=suite.revision, trust_remote_code=suite.trust_remote_code)
        for spec, params in checked:
            try:
                reg.technique(spec.name).preflight(config, **params)
            except ValueError as err:
                raise EffbenchError(f"technique {spec.name!r} cannot run on {model}: {err}") from None
    task_dirs = tuple(str(d) for d in reg.task_dirs)
    if known_tasks is None:
        known_tasks = set(accuracy.known_tasks({"task_dirs": task_dirs}))
    accuracy.check_tasks(suite.tasks, task_dirs, known_tasks)
    settings = {
        "limit": suite.limit,
        "batch_size": suite.batch_size,
        "bootstrap_iters": suite.bootstrap_iters,
        "scenarios": [s.model_dump() for s in suite.scenarios],
        "country": suite.country,
        "idle_seconds": suite.idle_seconds,
        "price": price,
    }
    runs = []
    for model in suite.models:
        for spec, params in checked:
            identity = {
                "model": model,
                "revision": suite.revision,
                "technique": spec.name,
                "params": params,
                "tasks": suite.tasks,
                "settings": settings,
                "hardware": fingerprint,
            }
            payload = {
                "model": model,
                "revision": suite.revision,
                "technique": spec.name,
                "params": params,
                "tasks": suite.tasks,
                "task_dirs": task_dirs,
                "trust_remote_code": suite.trust_remote_code,
                **settings,
            }
            runs.append(PlannedRun(_digest(identity), model, TechniqueSpec(name=spec.name, params=params), payload))
    return runs


def _run_row(
    suite: Suite, run: PlannedRun, reg: Registry, outcome: Outcome, started: datetime, probes: dict, fingerprint: str
) -> dict[str, Any]:
    from effbench import __version__

    technique = reg.technique(run.technique.name)
    finished = datetime.now(UTC)
    result = outcome.result or {}
    return {
        "run_id": run.run_id,
        "suite": suite.name,
        "model": run.model,
        "model_revision": suite.revision,
        "model_fingerprint": result.get("model_fingerprint"),
        "technique": run.technique.name,
        "technique_params": json.dumps(run.technique.params, sort_keys=True),
        "stage": technique.stage,
        "resources": list(technique.resources),
        "tasks": list(suite.tasks),
        "settings": json.dumps(
            {k: run.payload[k] for k in SETTINGS},
            sort_keys=True,
        ),
        "status": "ok" if outcome.error is None else "failed",
        "error": outcome.error,
        "warnings": result.get("warnings", []),
        "hardware_fingerprint": fingerprint,
        "hardware": json.dumps(probes, sort_keys=True),
        "versions": json.dumps(probes.get("versions", {}), sort_keys=True),
        "effbench_version": __version__,
        "started_at": started,
        "finished_at": finished,
        "duration_s": (finished - started).total_seconds(),
        "phase_seconds": json.dumps(result.get("phase_seconds", {})),
    }


def run_suite(
    suite: Suite,
    *,
    force: bool = False,
    on_start: Callable[[PlannedRun, int, int], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    on_done: Callable[[PlannedRun, Outcome | None], None] | None = None,
    pool: WorkerPool | None = None,
) -> SweepResult:
    """Run every planned run not already stored (all of them with ``force``), each in its own worker."""
    reg = registry()
    probes = collect_probes(reg)
    fingerprint = hardware_fingerprint(reg, probes)
    price = prices.resolve(suite.prices, probes)  # an unpriced device is an error before any work
    pool = pool or WorkerPool()
    if on_event:
        on_event("starting workers (torch, transformers and lm-eval are imported once)")
    listing = pool.run(
        "effbench.measure.accuracy:known_tasks", {"task_dirs": [str(d) for d in reg.task_dirs]}, timeout=600
    )
    if listing.error:
        raise EffbenchError(f"the worker pool could not start: {listing.error}")
    runs = plan(suite, reg, fingerprint, set(listing.result), price=price)
    store = ResultsStore(suite.output)
    done = store.statuses()
    logs = suite.output / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = SweepResult(run_ids=[r.run_id for r in runs])
    for index, run in enumerate(runs):
        if not force and done.get(run.run_id) == "ok":
            result.skipped.append(run.run_id)
            if on_done:
                on_done(run, None)
            continue
        if on_start:
            on_start(run, index, len(runs))
        started = datetime.now(UTC)
        outcome = pool.run(
            RUN_TARGET, run.payload, timeout=suite.timeout, log_path=logs / f"{run.run_id}.log", on_event=on_event
        )
        row = _run_row(suite, run, reg, outcome, started, probes, fingerprint)
        store.write_run(row, (outcome.result or {}).get("measurements", []))
        if outcome.error is not None:
            result.failed[run.run_id] = outcome.error
        if on_done:
            on_done(run, outcome)
    return result
