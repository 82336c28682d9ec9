"""One run inside a worker: load -> apply technique -> lm-eval accuracy -> measured workload -> metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from effbench import accuracy, workload, zoo
from effbench.plugins import registry
from effbench.types import Measurement, Metric, RunContext

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


def measure(ctx: RunContext, metrics: list[Metric], load: dict[str, Any]) -> tuple[list[Measurement], list[str]]:
    """Start every metric, run the workload, stop them in reverse; a failing metric becomes a warning."""
    warnings: list[str] = []
    started = []
    for metric in metrics:
        try:
            metric.start(ctx)
            started.append(metric)
        except Exception as err:  # plugin code: keep the run, report the metric
            warnings.append(f"metric {metric.name} failed to start: {err!r}")
    workload.run(ctx, **load)
    measurements: list[Measurement] = []
    for metric in reversed(started):
        try:
            measurements.extend(_as_measurements(metric, metric.stop(ctx)))
        except Exception as err:
            warnings.append(f"metric {metric.name} failed: {err!r}")
    return measurements, warnings


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
        settings={"country": payload["country"]},
        generate_kwargs=generate_kwargs,
        apply_seconds=phases.seconds["apply"],
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
    measurements, warnings = measure(ctx, list(reg.metrics.values()), payload["workload"])
    phases.stop()
    return {
        "phase_seconds": phases.seconds,
        "measurements": [asdict(m) for m in measurements],
        "warnings": warnings,
        "model_fingerprint": fingerprint,
    }
