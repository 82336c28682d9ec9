"""A sweep: validate everything up front, then run each (model, technique) pair in a worker and store it."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from effbench.api.executor import Executor, Job, Outcome
from effbench.api.technique import check_one_training_method, stack_phases
from effbench.config import prices
from effbench.config.suite import LOAD_OPTIONS, Suite
from effbench.errors import EffbenchError, NotApplicable
from effbench.measure import fidelity
from effbench.measure.device import CPU, device_type, resolve_device
from effbench.plugins import Registry, registry
from effbench.records import (
    FINAL_STATUSES,
    STATUS_FAILED,
    STATUS_NOT_APPLICABLE,
    STATUS_OK,
    MeasurementRow,
    RunPlan,
    RunRecord,
    SampleRow,
    StackEntry,
    stack_label,
    stack_name,
    stack_params,
)
from effbench.reference import zoo
from effbench.run.distributed import check_rank_count, check_ranks_needed
from effbench.store.lock import StoreLock
from effbench.store.results import ResultsStore
from effbench.train.data import checked_training

RUN_TARGET = "effbench.run.pipeline:execute"
LIST_TASKS = "effbench.measure.accuracy:known_tasks"


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
class SweepResult:
    """What a sweep did: run ids in suite order, which were skipped, failed or not applicable (with why)."""

    run_ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)


def task_dirs(suite: Suite, reg: Registry) -> tuple[str, ...]:
    """The plugins' task folders, then the suite's (lm-eval lets a later folder's task replace an earlier one's)."""
    return tuple(str(d) for d in (*reg.task_dirs, *suite.task_dirs))


# Where every run ran before device and dtype were settings: such a run keeps the id it had then.
FIRST_PLACEMENT = {"device": CPU, "dtype": "float32"}


def _identity(
    model: str, stack: tuple[StackEntry, ...], suite: Suite, settings: dict, hardware: str, placement: dict
) -> dict:
    """What makes a run itself; a single technique on cpu in float32 keeps the id it had before stacks and devices."""
    identity = {
        "model": model,
        "revision": suite.revision,
        "technique": stack_name(stack),
        "params": stack_params(stack),
        # A task is its name, not the folder it was found in: the same task reached through another path (a moved
        # checkout, another machine) keeps its run ids, so resuming and comparing work; a path says nothing of the
        # content anyway. Change a task's name (or use --force) when its definition changes.
        "tasks": suite.tasks,
        "settings": settings,
        "hardware": hardware,
    }
    if len(stack) > 1:
        identity["stack"] = [asdict(e) for e in stack]
    if placement != FIRST_PLACEMENT:
        identity["placement"] = placement
    return identity


def reference_key(model: str, suite: Suite, settings: dict, hardware: str, placement: dict) -> str:
    """What a baseline's fidelity reference depends on: the model, how and where it is loaded, and the text sample.

    Tasks, scenarios and prices are left out, so runs of any suite on this machine share their model's reference.
    """
    loading = {option: settings[option] for option in LOAD_OPTIONS if option in settings}
    identity = {"model": model, "revision": suite.revision, "loading": loading, "placement": placement,
                "hardware": hardware, "sample": fidelity.SAMPLE}  # fmt: skip
    return _digest(identity)


def builds_reference(stack: tuple[StackEntry, ...]) -> bool:
    """Whether a run is its model's baseline, which builds the fidelity reference the other runs are compared with."""
    return stack_name(stack) == "baseline"


def check_parameters(suite: Suite, reg: Registry) -> list[tuple[StackEntry, ...]]:
    """Every technique known, its parameters valid and its stack's phases in order: from the registry alone, at once."""
    stacks = [
        tuple(StackEntry(step.name, reg.technique(step.name).validate(step.params)) for step in spec.steps)
        for spec in suite.techniques
    ]
    for stack in stacks:
        techniques = [reg.technique(entry.name) for entry in stack]
        stack_phases(techniques)
        check_one_training_method(techniques)
        check_ranks_needed(stack, reg, suite.training.ranks)
    if any(trains(stack, reg) for stack in stacks):  # read the training file once, before any worker starts
        suite.training.data = checked_training(suite.training.model_dump())["data"]  # absolute: workers find it
    return stacks


def trains(stack: tuple[StackEntry, ...], reg: Registry) -> bool:
    """Whether the stack has a training technique: its run trains, and the training settings are part of its id."""
    return any(reg.technique(entry.name).phase == "train" for entry in stack)


def _device_bound(stacks: list[tuple[StackEntry, ...]], reg: Registry) -> dict[str, tuple[str, ...]]:
    """The suite's techniques that run on some device types only, with those types."""
    techniques = {entry.name: reg.technique(entry.name) for stack in stacks for entry in stack}
    return {name: technique.devices for name, technique in techniques.items() if technique.devices is not None}


def check_device_map(stacks: list[tuple[StackEntry, ...]], reg: Registry, device_map: str | None) -> None:
    """Refuse a cpu-only technique on a model spread over accelerators (checked without torch, before any worker)."""
    for name, devices in _device_bound(stacks, reg).items():
        if device_map and set(devices) <= {CPU}:
            raise EffbenchError(
                f"technique {name!r} runs on cpu only, but device_map {device_map!r} spreads the model over "
                "accelerators: drop device_map or the technique"
            )


def check_devices(stacks: list[tuple[StackEntry, ...]], reg: Registry, device: str, device_map: str | None) -> None:
    """Refuse a technique on a device type it has no kernels for, and a cpu-only one on a model spread by device_map."""
    check_device_map(stacks, reg, device_map)
    for name, devices in _device_bound(stacks, reg).items():
        if device_type(device) not in devices:
            raise EffbenchError(
                f"technique {name!r} has no kernels for device {device!r}; it runs on: {', '.join(devices)}"
            )


def resolve_placement(suite: Suite, reg: Registry, stacks: list[tuple[StackEntry, ...]], requested: str) -> str:
    """The run's device (``auto`` resolved once, here, so run ids are stable), checked against every technique."""
    device = resolve_device(requested)
    check_devices(stacks, reg, device, suite.device_map)
    if suite.training.ranks > 1 and any(trains(stack, reg) for stack in stacks):
        check_rank_count(suite.training.ranks, device)
    return device


def run_dtype(suite: Suite, model: str, device: str) -> str:
    """The dtype weights are loaded in: as asked, else float32 on cpu and the checkpoint's own on an accelerator."""
    if suite.dtype != "auto":
        return suite.dtype
    if device == CPU:
        return "float32"
    config = zoo.config(model, revision=suite.revision, trust_remote_code=suite.trust_remote_code)
    saved = str(getattr(config, "dtype", None)).removeprefix("torch.")
    return saved if saved in ("bfloat16", "float16") else "float32"


def validate_stacks(
    suite: Suite, reg: Registry, stacks: list[tuple[StackEntry, ...]] | None = None
) -> list[tuple[StackEntry, ...]]:
    """Every technique known, its parameters valid, no run listed twice: checked before any run starts."""
    stacks = check_parameters(suite, reg) if stacks is None else stacks
    seen: dict[str, str] = {}
    for spec, stack in zip(suite.techniques, stacks, strict=True):
        label = stack_label(list(stack))
        if label in seen:
            raise EffbenchError(
                f"techniques {seen[label]!r} and {spec.label!r} are the same run once defaults are filled in "
                f"({label}): list it once"
            )
        seen[label] = spec.label
    return stacks


Refusals = dict[tuple[str, int], str]  # (model, index of the stack) → why the stack cannot act on that model


def preflight(suite: Suite, reg: Registry, stacks: list[tuple[StackEntry, ...]]) -> Refusals:
    """Read each model's config once and ask every technique whether it can run there, before any run starts.

    A parameter impossible for a model (``ValueError``) stops the sweep; a technique with nothing to act
    on in a model's architecture (``NotApplicable``) becomes that run's "not applicable" row.
    """
    refusals: Refusals = {}
    for model in suite.models:
        config = zoo.config(model, revision=suite.revision, trust_remote_code=suite.trust_remote_code)
        for index, stack in enumerate(stacks):
            for entry in stack:
                try:
                    reg.technique(entry.name).preflight(config, **entry.params)
                except NotApplicable as err:
                    refusals[(model, index)] = f"{entry.name}: {err}" if len(stack) > 1 else str(err)
                    break
                except ValueError as err:
                    raise EffbenchError(f"technique {entry.name!r} cannot run on {model}: {err}") from None
    return refusals


def plan(
    suite: Suite,
    reg: Registry,
    fingerprint: str,
    known_tasks: set[str] | None = None,
    price: dict[str, Any] | None = None,
    stacks: list[tuple[StackEntry, ...]] | None = None,
    refusals: Refusals | None = None,
    device: str = CPU,
) -> list[RunPlan]:
    """Validate models, techniques, parameters and tasks before any work, and give each run its id.

    ``price`` is the suite's price table resolved for this machine (stored with, and part of, every run);
    ``stacks`` and ``refusals`` are the suite's techniques already validated (``validate_stacks``) and
    preflighted (``preflight``), so models are read once; ``device`` is the resolved device
    (``resolve_placement``).
    """
    from effbench.measure import accuracy

    stacks = validate_stacks(suite, reg) if stacks is None else stacks
    refusals = preflight(suite, reg, stacks) if refusals is None else refusals
    folders = task_dirs(suite, reg)
    if known_tasks is None:
        known_tasks = set(accuracy.known_tasks({"task_dirs": folders}))
    accuracy.check_tasks(suite.tasks, folders, known_tasks)
    settings = {
        "limit": suite.limit,
        "batch_size": suite.batch_size,
        "bootstrap_iters": suite.bootstrap_iters,
        "scenarios": [s.model_dump() for s in suite.scenarios],
        "country": suite.country,
        "idle_seconds": suite.idle_seconds,
        "price": price,
    }
    # loading options only when given, so the settings (and ids) of runs that leave them to transformers stay put
    settings.update({k: getattr(suite, k) for k in LOAD_OPTIONS if getattr(suite, k) is not None})
    placements = {model: {"device": device, "dtype": run_dtype(suite, model, device)} for model in suite.models}
    store = ResultsStore(suite.output.resolve())
    references = {
        model: str(store.reference_path(reference_key(model, suite, settings, fingerprint, placements[model])))
        for model in suite.models
    }
    # a training run's data and budget are part of its settings (and id); the other runs keep theirs unchanged
    training = {**settings, "training": suite.training.settings()}
    return [
        RunPlan(
            run_id=_digest(_identity(model, stack, suite, run_settings, fingerprint, placements[model])),
            model=model,
            revision=suite.revision,
            stack=stack,
            tasks=tuple(suite.tasks),
            task_dirs=folders,
            trust_remote_code=suite.trust_remote_code,
            settings=run_settings,
            device=device,
            dtype=placements[model]["dtype"],
            not_applicable=refusals.get((model, index)),
            fidelity_reference=references[model],
            builds_reference=builds_reference(stack),
        )
        for model in suite.models
        for index, stack in enumerate(stacks)
        for run_settings in [training if trains(stack, reg) else settings]
    ]


def run_record(
    suite: Suite, run: RunPlan, reg: Registry, outcome: Outcome, started: datetime, probes: dict, fingerprint: str
) -> RunRecord:
    """The stored row of a finished run (ok or failed)."""
    from effbench.version import __version__

    techniques = [reg.technique(e.name) for e in run.stack]
    finished = datetime.now(UTC)
    result = outcome.result or {}
    reason = outcome.error or result.get("not_applicable")
    return RunRecord(
        run_id=run.run_id,
        suite=suite.name,
        model=run.model,
        model_revision=suite.revision,
        model_fingerprint=result.get("model_fingerprint"),
        technique=stack_name(run.stack),
        technique_params=json.dumps(stack_params(run.stack), sort_keys=True),
        stage="+".join(dict.fromkeys(t.stage for t in techniques)),
        resources=list(dict.fromkeys(r for t in techniques for r in t.resources)),
        tasks=list(suite.tasks),
        settings=json.dumps(run.settings, sort_keys=True),
        status=STATUS_FAILED if outcome.error else STATUS_NOT_APPLICABLE if reason else STATUS_OK,
        error=reason,
        warnings=result.get("warnings", []),
        hardware_fingerprint=fingerprint,
        hardware=json.dumps(probes, sort_keys=True),
        versions=json.dumps(probes.get("versions", {}), sort_keys=True),
        effbench_version=__version__,
        started_at=started,
        finished_at=finished,
        duration_s=(finished - started).total_seconds(),
        phase_seconds=json.dumps(result.get("phase_seconds", {})),
        stack=json.dumps([asdict(e) for e in run.stack], sort_keys=True),
        device=run.device,
        dtype=run.dtype,
    )


def measurement_rows(run_id: str, outcome: Outcome) -> list[MeasurementRow]:
    """The run's measurements as stored rows."""
    reported = (outcome.result or {}).get("measurements", [])
    return [MeasurementRow.from_row({**m, "run_id": run_id}) for m in reported]  # the instruments set each phase


def sample_rows(run_id: str, outcome: Outcome) -> list[SampleRow]:
    """The run's per-document outcomes as stored rows."""
    return [SampleRow.from_row({**s, "run_id": run_id}) for s in (outcome.result or {}).get("samples", [])]


def known_tasks(folders: tuple[str, ...], executor: Executor, on_event: Callable[[str], None] | None) -> set[str]:
    """lm-eval's task names: kept from an earlier sweep (same lm-eval, same task folders), else listed by a worker."""
    from effbench.measure import accuracy

    cached = accuracy.cached_known_tasks(folders)
    if cached is not None:
        return cached
    if on_event:
        on_event("starting workers (torch, transformers and lm-eval are imported once)")
    listing = executor.run(Job("list-tasks", LIST_TASKS, {"task_dirs": list(folders)}, timeout=600))
    if listing.error:
        raise EffbenchError(f"the {executor.name} executor could not start: {listing.error}")
    accuracy.remember_known_tasks(folders, listing.result)
    return set(listing.result)


def run_suite(
    suite: Suite,
    *,
    force: bool = False,
    on_start: Callable[[RunPlan, int, int], None] | None = None,
    on_event: Callable[[str], None] | None = None,
    on_done: Callable[[RunPlan, Outcome | None], None] | None = None,
    executor: Executor | None = None,
    on_stored: Callable[[RunRecord], None] | None = None,
) -> SweepResult:
    """Run every planned run not already stored (all of them with ``force``) in the suite's executor.

    ``on_stored`` is called with each run's record once its rows are stored (the trackers' export).
    """
    reg = registry()
    executor = executor or reg.executor(suite.executor).configure(suite.executor_options)
    stacks = check_parameters(suite, reg)  # a typo is reported at once, before any worker starts
    check_device_map(stacks, reg, suite.device_map)
    # a GPU this machine lacks is refused before any worker starts; auto cannot fail: it is resolved while they start
    device = None if suite.device == "auto" else resolve_placement(suite, reg, stacks, suite.device)
    executor.start(suite.output / "logs")  # workers import torch and lm-eval while the rest is checked here
    with contextlib.closing(executor):
        validate_stacks(suite, reg, stacks)
        refusals = preflight(suite, reg, stacks)  # a broken model is reported before torch is imported here
        device = device or resolve_placement(suite, reg, stacks, "auto")
        probes = collect_probes(reg)
        fingerprint = hardware_fingerprint(reg, probes)
        price = prices.resolve(suite.prices, probes)  # an unpriced device is an error before any work
        with StoreLock(suite.output):  # one writer per store
            tasks = known_tasks(task_dirs(suite, reg), executor, on_event)
            runs = plan(suite, reg, fingerprint, tasks, price=price, stacks=stacks, refusals=refusals, device=device)
            store = ResultsStore(suite.output)
            store.clean_leftovers()  # temporary files of writes an earlier, interrupted sweep never finished
            done = store.statuses()
            result = SweepResult(run_ids=[r.run_id for r in runs])
            pending = []
            for run in runs:
                if not force and done.get(run.run_id) in FINAL_STATUSES:
                    result.skipped.append(run.run_id)
                    if on_done:
                        on_done(run, None)
                elif run.not_applicable:  # refused by a technique's preflight: stored without a worker
                    outcome = Outcome(result={"not_applicable": run.not_applicable})
                    record = run_record(suite, run, reg, outcome, datetime.now(UTC), probes, fingerprint)
                    store.write_run(record, [])
                    if on_stored:
                        on_stored(record)
                    result.not_applicable[run.run_id] = run.not_applicable
                    if on_done:
                        on_done(run, outcome)
                else:
                    pending.append(run)
            logs = suite.output / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            started: dict[str, datetime] = {}
            # The baselines first, as a batch of their own: the other runs read the reference a baseline builds, so an
            # executor that runs several at once starts none of them before its baseline is stored.
            batches = [[run for run in pending if run.builds_reference == first] for first in (True, False)]
            position = {run.run_id: index for index, run in enumerate(run for batch in batches for run in batch)}

            def jobs(batch: list[RunPlan]) -> Iterator[Job]:
                for run in batch:
                    if on_start:
                        on_start(run, position[run.run_id], len(pending))
                    started[run.run_id] = datetime.now(UTC)
                    log = logs / f"{run.run_id}.log"
                    files = ("fidelity_reference",)  # a baseline's reference, which the others read
                    yield Job(run.run_id, RUN_TARGET, run.to_payload(), suite.timeout, log, files=files)

            by_id = {run.run_id: run for run in pending}
            for batch in batches:
                for job, outcome in executor.run_many(jobs(batch), on_event):
                    run = by_id[job.key]
                    record = run_record(suite, run, reg, outcome, started[job.key], probes, fingerprint)
                    reference = (outcome.result or {}).get("reference")
                    if run.builds_reference and run.fidelity_reference and reference is not None:
                        store.write_reference(Path(run.fidelity_reference).stem, reference)
                    rows = measurement_rows(run.run_id, outcome)
                    store.write_run(record, rows, sample_rows(run.run_id, outcome))  # only this process writes
                    if on_stored:
                        on_stored(record)
                    if outcome.error is not None:
                        result.failed[run.run_id] = outcome.error
                    elif record.status == STATUS_NOT_APPLICABLE:
                        result.not_applicable[run.run_id] = record.error
                    if on_done:
                        on_done(run, outcome)
    return result
