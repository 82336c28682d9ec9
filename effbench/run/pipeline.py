"""One run inside a worker: load -> apply technique -> lm-eval accuracy -> measured scenarios -> metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from effbench.api.types import SCOPES, Measurement, Metric, RunContext
from effbench.config.suite import Scenario
from effbench.measure import accuracy, scenarios
from effbench.measure.statistics import combine_repeats
from effbench.plugins import registry
from effbench.reference import zoo

PHASES = {
    "load": "loading model",
    "apply": "applying technique",
    "accuracy": "accuracy (lm-eval)",
    "measure": "measuring resources",
}


class Phases:
    """Wall-clock seconds per phase of a run; each start is announced to the parent's progress bar."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.started_at = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._current: str | None = None
        self._since = 0.0

    def start(self, name: str) -> None:
        self.stop()
        self._current, self._since = name, time.perf_counter()
        self.emit(PHASES[name])

    def stop(self) -> None:
        if self._current:
            self.seconds[self._current] = round(time.perf_counter() - self._since, 3)
            self._current = None


def model_fingerprint(model_id: str, model: Any) -> str:
    """Identify the exact weights: a hash of local safetensors files, else the Hub commit."""
    location = Path(zoo.resolve(model_id))
    if location.is_dir():
        digest = hashlib.sha256()
        for path in sorted(location.glob("*.safetensors")):
            digest.update(path.read_bytes())
        return f"sha256:{digest.hexdigest()[:16]}"
    return f"commit:{getattr(model.config, '_commit_hash', None) or 'unknown'}"


def _as_measurements(metric: Metric, reported: Any) -> list[Measurement]:
    if reported is None:
        return []
    if isinstance(reported, Measurement):
        return [reported]
    if isinstance(reported, list):
        return reported
    return [metric.measurement(float(reported))]


class Instruments:
    """The registered metrics by scope; a metric that raises becomes a warning, never a failed run."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.by_scope = {scope: [m for m in metrics if m.scope == scope] for scope in SCOPES}
        self.warnings: list[str] = []

    def start(self, scope: str, ctx: RunContext) -> list[Metric]:
        started = []
        for metric in self.by_scope[scope]:
            try:
                metric.start(ctx)
                started.append(metric)
            except Exception as err:  # plugin code: keep the run, report the metric
                self.warnings.append(f"metric {metric.name} failed to start: {err!r}")
        return started

    def stop(self, metrics: list[Metric], ctx: RunContext) -> list[Measurement]:
        out: list[Measurement] = []
        for metric in reversed(metrics):
            try:
                out.extend(_as_measurements(metric, metric.stop(ctx)))
            except Exception as err:
                self.warnings.append(f"metric {metric.name} failed: {err!r}")
        return out


def measure_scenario(ctx: RunContext, scenario: Scenario, instruments: Instruments) -> list[Measurement]:
    """Warm up, then serve every repeat inside the repeat-scope metrics, then the scenario-scope metrics."""
    ctx.scenario = scenario
    scenarios.warm_up(ctx, scenario)
    per_repeat, all_requests, seconds = [], [], []
    for repeat in range(scenario.repeats):
        ctx.requests, ctx.workload_seconds = [], 0.0
        started = instruments.start("repeat", ctx)
        ctx.requests, ctx.workload_seconds = scenarios.run_repeat(ctx, scenario, repeat)
        per_repeat.append(instruments.stop(started, ctx))
        all_requests += ctx.requests
        seconds.append(ctx.workload_seconds)
    ctx.requests, ctx.repeat_seconds, ctx.workload_seconds = all_requests, seconds, sum(seconds)
    ctx.measurements = combine_repeats(per_repeat)
    reported = ctx.measurements + instruments.stop(instruments.by_scope["scenario"], ctx)
    return [replace(m, scenario=scenario.label) for m in reported]


def measure(
    ctx: RunContext, metrics: list[Metric], scenario_list: list[Scenario]
) -> tuple[list[Measurement], list[str]]:
    """Every scenario in turn, then the run-scope metrics (size, parameters, accuracy)."""
    instruments = Instruments(metrics)
    measurements = []
    for scenario in scenario_list:
        measurements += measure_scenario(ctx, scenario, instruments)
    ctx.scenario, ctx.requests, ctx.measurements = None, [], []
    run_level = instruments.stop(instruments.by_scope["run"], ctx)
    return run_level + measurements, instruments.warnings


def execute(payload: dict[str, Any], emit: Callable[[str], None]) -> dict[str, Any]:
    """Run one (model, technique) pair as described by ``payload``; return measurements and notes."""
    reg = registry()
    technique = reg.technique(payload["technique"])
    phases = Phases(emit)
    phases.start("load")
    model, tokenizer = zoo.load(
        payload["model"], revision=payload.get("revision"), trust_remote_code=payload["trust_remote_code"]
    )
    fingerprint = model_fingerprint(payload["model"], model)
    phases.start("apply")
    model = technique.apply(model, tokenizer, **payload["params"])
    model.eval()
    generate_kwargs = technique.generation_kwargs(model, tokenizer, **payload["params"])
    phases.start("accuracy")
    ctx = RunContext(
        model=model,
        tokenizer=tokenizer,
        technique=technique.name,
        params=payload["params"],
        settings={
            **{k: payload[k] for k in ("country", "idle_seconds", "price")},
            "prompt_tokens": payload["scenarios"][0]["prompt_tokens"],
        },
        generate_kwargs=generate_kwargs,
        apply_seconds=phases.seconds["apply"],
        started_at=phases.started_at,
    )
    ctx.accuracy = accuracy.evaluate(
        model,
        tokenizer,
        payload["tasks"],
        task_dirs=tuple(payload["task_dirs"]),
        limit=payload["limit"],
        batch_size=payload["batch_size"],
        bootstrap_iters=payload["bootstrap_iters"],
        generate_kwargs=ctx.generate_kwargs,
    )
    phases.start("measure")
    scenario_list = [Scenario.model_validate(s) for s in payload["scenarios"]]
    measurements, warnings = measure(ctx, list(reg.metrics.values()), scenario_list)
    phases.stop()
    return {
        "phase_seconds": phases.seconds,
        "measurements": [asdict(m) for m in measurements],
        "warnings": warnings,
        "model_fingerprint": fingerprint,
    }
