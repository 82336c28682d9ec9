"""The records effbench stores and publishes: one dataclass per table, the single source of the schema.

The Arrow schemas, the columns a store or dataset must have, the dataset card's column
documentation and the readers all derive from these classes, so a column is declared once.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar, Self

import pyarrow as pa

SCHEMA_VERSION = "1.5"  # 1.1: measurements gained scenario and cv; 1.2: runs gained stack, measurements phase;
# 1.3: runs gained device and dtype; 1.4: the samples table; 1.5: measurements gained step (training's loss curve)


def column(
    arrow: pa.DataType,
    doc: str,
    default: Any = None,
    since: str = "1.0",
    *,
    required: bool = False,  # a valid row holds a value
    json_type: type | None = None,  # a JSON text column: what it must decode to (dict or list)
) -> Any:
    """A dataclass field that is also a table column, so its type, meaning, version and validity are declared once."""
    meta = {"arrow": arrow, "doc": doc, "since": since, "required": required, "json_type": json_type}
    if pa.types.is_list(arrow):  # each record its own list
        return field(default_factory=list, metadata=meta)
    return field(default=default, metadata=meta)


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10"`` as ``(1, 10)``, so versions compare as numbers."""
    return tuple(int(part) for part in version.split("."))


class Record:
    """A row of one table: its Arrow schema, its column docs and conversion from and to plain dicts."""

    table: ClassVar[str]
    summary: ClassVar[str]
    since: ClassVar[str] = "1.0"  # the version that added the table: stores and datasets written before lack it

    @classmethod
    def schema(cls) -> pa.Schema:
        """The table's Arrow schema, in field order."""
        return pa.schema([(f.name, f.metadata["arrow"]) for f in fields(cls)])  # type: ignore[arg-type]

    @classmethod
    def column_docs(cls) -> dict[str, str]:
        """What each column means (the dataset card prints these)."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def later_columns(cls, after: str = "1.0") -> tuple[str, ...]:
        """Columns added after version ``after``: files written by it lack them, and they read back as nulls."""
        return tuple(
            f.name
            for f in fields(cls)  # type: ignore[arg-type]
            if version_tuple(f.metadata["since"]) > version_tuple(after)
        )

    @classmethod
    def required_columns(cls) -> tuple[str, ...]:
        """Columns that must hold a value in every valid row."""
        return tuple(f.name for f in fields(cls) if f.metadata["required"])  # type: ignore[arg-type]

    @classmethod
    def json_columns(cls) -> dict[str, type]:
        """Text columns holding JSON, with the type (dict or list) they must decode to."""
        return {f.name: f.metadata["json_type"] for f in fields(cls) if f.metadata["json_type"]}  # type: ignore[arg-type]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Self:
        """A record from a stored row (columns this version does not know are ignored)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in row.items() if k in names})

    def as_row(self) -> dict[str, Any]:
        """The record as one table row."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class StackEntry:
    """One technique of a run's stack, with its validated parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``name(k=v, ...)`` as a suite writes it."""
        if not self.params:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


STACK_SEPARATOR = "+"


def stack_params(stack: list[StackEntry] | tuple[StackEntry, ...]) -> dict[str, Any]:
    """A stack's parameters as stored: one technique's own, or an object per technique name for a stack."""
    if len(stack) == 1:
        return stack[0].params
    return {entry.name: entry.params for entry in stack}


def stack_name(stack: list[StackEntry] | tuple[StackEntry, ...]) -> str:
    """A stack's techniques' names joined by ``+`` (a single technique's own name), as runs.technique stores it."""
    return STACK_SEPARATOR.join(entry.name for entry in stack)


def stack_label(stack: list[StackEntry]) -> str:
    """A stack as one label: its techniques' labels in order of application, joined by ``+``."""
    return f" {STACK_SEPARATOR} ".join(entry.label for entry in stack)


@dataclass
class RunRecord(Record):
    """One run: a model with a technique (or a stack of them) applied, evaluated on one machine."""

    table: ClassVar[str] = "runs"
    summary: ClassVar[str] = "One row per run: a model with one technique applied, evaluated on a machine."

    run_id: str = column(
        pa.string(),
        "Stable id: a hash of model, technique stack and parameters, tasks, settings and hardware.",
        required=True,
    )
    schema_version: str = column(
        pa.string(), "Schema version the row was written with (major.minor).", SCHEMA_VERSION, required=True
    )
    suite: str = column(pa.string(), "Name of the suite the run belonged to.", "")
    model: str = column(
        pa.string(), "Model id: `zoo:NAME` (effbench's bundled reference models), a Hub id or a path.", required=True
    )
    model_revision: str | None = column(pa.string(), "Hub revision of the model, when one was given.")
    model_fingerprint: str | None = column(
        pa.string(),
        "Identity of the loaded weights, so two runs can be checked to use the same model: `st-sampled:` (local "
        "safetensors: names, sizes, headers, sampled bytes), `commit:` (Hub), or in stores written by earlier "
        "versions `sha256:` (every byte hashed).",
    )
    technique: str = column(
        pa.string(),
        "Technique applied (`baseline` is the unmodified model); a stack's names joined by `+`.",
        required=True,
    )
    technique_params: str = column(
        pa.string(),
        "The technique's parameters (JSON object); for a stack, an object per technique name.",
        "{}",
        json_type=dict,
    )
    stage: str = column(
        pa.string(),
        "Lifecycle stage the technique acts in (architecture, pretraining, finetuning, inference, system); "
        "a stack's stages joined by `+`.",
        "",
        required=True,
    )
    resources: list[str] = column(
        pa.list_(pa.string()), "Resources the technique declares it saves: computation, memory, energy, money, network."
    )
    tasks: list[str] = column(pa.list_(pa.string()), "lm-eval tasks or groups evaluated.")
    settings: str = column(
        pa.string(),
        "Run settings (JSON object): document limit, batch size, bootstrap iterations, load scenarios, "
        "country, idle seconds, the prices used (device, $/hour, $/kWh), and device_map and "
        "attn_implementation when given.",
        "{}",
        json_type=dict,
    )
    status: str = column(
        pa.string(),
        "`ok`; `failed` with the error in `error`; or `not-applicable` (the technique has nothing to act on in this "
        "model's architecture) with the reason in `error`.",
        "ok",
        required=True,
    )
    error: str | None = column(
        pa.string(), "Why the run failed (the exception, a crash, a timeout) or is not applicable; empty when ok."
    )
    warnings: list[str] = column(pa.list_(pa.string()), "Warnings raised during the run.")
    hardware_fingerprint: str = column(
        pa.string(),
        "Id of the machine: a hash of the probes' identifying fields (CPU, memory, GPU, OS).",
        "",
        required=True,
    )
    hardware: str = column(
        pa.string(), "Everything the hardware probes recorded (JSON object per probe).", "{}", json_type=dict
    )
    versions: str = column(
        pa.string(), "Versions of the libraries that shape a result (JSON object).", "{}", json_type=dict
    )
    effbench_version: str = column(pa.string(), "effbench version that made the run.", "")
    started_at: datetime | None = column(pa.timestamp("s", tz="UTC"), "When the run started (UTC).")
    finished_at: datetime | None = column(pa.timestamp("s", tz="UTC"), "When the run finished (UTC).", required=True)
    duration_s: float | None = column(pa.float64(), "Wall-clock seconds of the whole run.")
    phase_seconds: str = column(
        pa.string(), "Seconds per phase: load, apply, accuracy, measure (JSON object).", "{}", json_type=dict
    )
    stack: str | None = column(
        pa.string(),
        "The techniques applied in order, each with its parameters (JSON list of {name, params}); "
        "null in rows written before 1.2, where it is the one technique of `technique`.",
        since="1.2",
        json_type=list,
    )
    device: str | None = column(
        pa.string(),
        "Device the model ran on (`cpu`, `cuda:0`, `mps`; the first device of a `device_map`); "
        "null in rows written before 1.3 (which ran on cpu).",
        since="1.3",
    )
    dtype: str | None = column(
        pa.string(),
        "Floating-point type the weights were loaded in (`float32`, `bfloat16`, `float16`), before any technique; "
        "null in rows written before 1.3 (the checkpoint's own).",
        since="1.3",
    )

    def stack_entries(self) -> list[StackEntry]:
        """The techniques applied in order (rows written before 1.2 hold one, in ``technique``)."""
        return _stack_entries(self.stack, self.technique, self.technique_params)

    @property
    def label(self) -> str:
        """The run's technique stack as a suite writes it, e.g. ``prune-magnitude(sparsity=0.5) + dynamic-int8``."""
        return _label(self.stack, self.technique, self.technique_params)

    @property
    def placement(self) -> str:
        """Where and in what precision the model ran, e.g. ``device cuda:0, dtype bfloat16`` ("" before 1.3)."""
        parts = [f"{name} {value}" for name, value in (("device", self.device), ("dtype", self.dtype)) if value]
        return ", ".join(parts)

    @property
    def machine(self) -> str:
        """A short description of the run's machine, e.g. 'AMD EPYC (2 cores), 24 GiB, Linux x86_64'."""
        data = json.loads(self.hardware or "{}")
        cpu, memory, system = (data.get(k) or {} for k in ("cpu", "memory", "os"))
        parts = []
        if cpu.get("model"):
            parts.append(f"{cpu['model']} ({cpu.get('logical_cores', '?')} cores)")
        if memory.get("total_gib"):
            parts.append(f"{memory['total_gib']} GiB")
        if system.get("system"):
            parts.append(f"{system['system']} {system.get('machine', '')}".strip())
        for name, probe in sorted(data.items()):
            if name not in ("cpu", "memory", "os", "versions") and isinstance(probe, dict):
                label = probe.get("name") or probe.get("model")
                if label:
                    parts.append(str(label))
        return ", ".join(parts) or "unknown hardware"


PHASE_EVALUATE = "evaluate"  # accuracy, model properties and load scenarios: what tables compare


def _stack_entries(stack: str | None, technique: str, technique_params: str | None) -> list[StackEntry]:
    """A run's techniques from its stored columns: ``stack``, else (before 1.2) ``technique`` and its parameters."""
    if stack:
        return [StackEntry(e["name"], e.get("params", {})) for e in json.loads(stack)]
    return [StackEntry(technique, json.loads(technique_params or "{}"))]


@functools.lru_cache(maxsize=4096)
def _label(stack: str | None, technique: str, technique_params: str | None) -> str:
    """A run's label, made once per distinct stack: a report labels each of a million measurements with it."""
    return stack_label(_stack_entries(stack, technique, technique_params))


@dataclass
class MeasurementRow(Record):
    """One measured value of a run, with everything needed to read and trust it."""

    table: ClassVar[str] = "measurements"
    summary: ClassVar[str] = "One row per measured value of a run: task accuracy metrics and resource metrics."

    run_id: str = column(pa.string(), "The run this value belongs to.", "", required=True)
    task: str = column(pa.string(), "lm-eval task of a quality metric; empty for run-level resource metrics.", "")
    metric: str = column(pa.string(), "Quantity name (see Metrics below).", "", required=True)
    value: float = column(pa.float64(), "The measured value, in `unit`.", 0.0, required=True)
    unit: str = column(pa.string(), "Unit of `value`, `stderr`, `ci_low` and `ci_high`.", "")
    resource: str = column(pa.string(), "computation, memory, energy, money, network, or quality.", "", required=True)
    higher_is_better: bool = column(pa.bool_(), "Direction of improvement.", False)
    stderr: float | None = column(pa.float64(), "Standard error of `value`, when known.")
    ci_low: float | None = column(pa.float64(), "Lower bound of the 95 % confidence interval, when known.")
    ci_high: float | None = column(pa.float64(), "Upper bound of the 95 % confidence interval, when known.")
    n: int | None = column(pa.int64(), "Number of samples behind the value (documents, requests or repeats).")
    method: str = column(
        pa.string(), "How the value was obtained: instrument, and whether energy was measured or estimated.", ""
    )
    scenario: str | None = column(
        pa.string(),
        "Load scenario of the value (e.g. `single-stream`, `server(rate=4/s)`); empty for run-level ones.",
        "",
        since="1.1",
    )
    cv: float | None = column(
        pa.float64(),
        "Coefficient of variation across the scenario's repeats; above the threshold the value is unstable.",
        since="1.1",
    )
    phase: str | None = column(
        pa.string(),
        "Phase of the run the value was measured in: `evaluate` (accuracy, the model, load scenarios) or a "
        "one-off phase: `apply` (the technique's own time, memory and energy) or `train` (the training run's); "
        "null in rows written before 1.2, which are all `evaluate`.",
        PHASE_EVALUATE,
        since="1.2",
    )

    step: int | None = column(
        pa.int64(),
        "Training step (from 0) of a value measured at every step, such as `train_loss` (the loss curve); "
        "null for every other value and in rows written before 1.5.",
        since="1.5",
    )

    @property
    def in_phase(self) -> str:
        """The phase, with rows written before 1.2 counted as ``evaluate``."""
        return self.phase or PHASE_EVALUATE

    @property
    def in_scenario(self) -> str:
        """The load scenario, ``""`` for run-level values and rows written before 1.1."""
        return self.scenario or ""


# lm-eval metrics aggregated over the corpus from each document's (log-likelihood, words or bytes): a document's
# value is its log-likelihood and its weight the count, so the task's figure is recomputed from the sums.
WEIGHTED_METRICS = frozenset({"word_perplexity", "byte_perplexity", "bits_per_byte"})


@dataclass
class SampleRow(Record):
    """One document's outcome in one task of a run: what paired statistics and flips are computed from."""

    table: ClassVar[str] = "samples"
    summary: ClassVar[str] = "One row per document and metric of a run's lm-eval tasks: the per-sample outcomes."
    since: ClassVar[str] = "1.4"

    run_id: str = column(pa.string(), "The run this outcome belongs to.", "", required=True)
    task: str = column(pa.string(), "lm-eval task.", "", required=True)
    doc_id: int = column(pa.int64(), "Index of the document in the task's evaluation split (lm-eval's doc_id).", 0)
    metric: str = column(
        pa.string(), "lm-eval metric of the outcome (acc, exact_match, word_perplexity, ...).", "", required=True
    )
    filter: str = column(
        pa.string(), "lm-eval filter the metric was computed after (`none`, `strict-match`, ...).", "none"
    )
    value: float = column(
        pa.float64(),
        "The document's value of `metric` as lm-eval scores it (1/0 for acc and exact_match); for word_perplexity, "
        "byte_perplexity and bits_per_byte, which lm-eval aggregates over the corpus, the document's log-likelihood.",
        0.0,
    )
    weight: int | None = column(
        pa.int64(),
        "For word_perplexity, byte_perplexity and bits_per_byte: the document's count of words or bytes, so the "
        "task's figure is recomputed from the sums over documents; null for metrics averaged over documents.",
    )
    prediction_tokens: int | None = column(
        pa.int64(),
        "Length in tokens (the model's tokenizer) of the model's generated answer, before lm-eval's filters; "
        "null for tasks scored by log-likelihood.",
    )


@dataclass
class TaxonomyRow(Record):
    """A technique effbench can run, or a technique family of the survey's map: where it acts, what it saves."""

    table: ClassVar[str] = "taxonomy"
    summary: ClassVar[str] = (
        "The resource–technique map: every technique effbench can run and every technique family of the "
        "survey, with the stage it acts in and the resources it saves."
    )

    name: str = column(
        pa.string(),
        "Technique name (as used in `runs.technique`) or name of a survey technique family.",
        "",
        required=True,
    )
    kind: str = column(
        pa.string(),
        "`technique` (registered plugin effbench can run) or `family` (the survey's map).",
        "",
        required=True,
    )
    stage: str = column(pa.string(), "Lifecycle stage it acts in.", "", required=True)
    resources: list[str] = column(pa.list_(pa.string()), "Resources it targets.")
    description: str = column(pa.string(), "What it does, in one sentence.", "")
    references: list[str] = column(pa.list_(pa.string()), "Papers describing it.")
    category: str = column(
        pa.string(), "Section of the survey (and of its companion list Awesome-Resource-Efficient-LLM-Papers).", ""
    )
    source: str = column(
        pa.string(), "The distribution and version that registered the technique, or the survey for a family.", ""
    )


RESULT_RECORDS: tuple[type[Record], ...] = (RunRecord, MeasurementRow, SampleRow)  # a results store's tables
DATASET_RECORDS: tuple[type[Record], ...] = (*RESULT_RECORDS, TaxonomyRow)  # the open dataset's configs


STATUS_OK, STATUS_FAILED, STATUS_NOT_APPLICABLE = "ok", "failed", "not-applicable"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_NOT_APPLICABLE)
FINAL_STATUSES = (STATUS_OK, STATUS_NOT_APPLICABLE)  # a resumed sweep does not run these again


@dataclass(frozen=True)
class RunPlan:
    """What a worker needs to execute one run: plain data, so any executor (fork, in-process, cluster) can ship it."""

    run_id: str
    model: str
    revision: str | None
    stack: tuple[StackEntry, ...]
    tasks: tuple[str, ...]
    task_dirs: tuple[str, ...]
    trust_remote_code: bool
    settings: dict[str, Any]  # limit, batch_size, bootstrap_iters, scenarios, country, idle_seconds, price, ...
    device: str  # resolved: cpu, cuda:N or mps
    dtype: str  # resolved: float32, bfloat16 or float16
    not_applicable: str | None = None  # why a technique's preflight refused this model: stored, not run
    fidelity_reference: str | None = None  # the baseline's fidelity reference file in the store (absolute path)
    builds_reference: bool = False  # a baseline run: builds that reference, which the sweep then stores

    def to_payload(self) -> dict[str, Any]:
        """The plan as JSON-compatible data."""
        return {**asdict(self), "stack": [asdict(e) for e in self.stack]}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RunPlan:
        """The plan a payload describes."""
        stack = tuple(StackEntry(e["name"], e.get("params", {})) for e in payload["stack"])
        listed = {"tasks": tuple(payload["tasks"]), "task_dirs": tuple(payload["task_dirs"])}
        return cls(**{**payload, **listed, "stack": stack})

    @property
    def label(self) -> str:
        """The stack as a suite writes it."""
        return stack_label(list(self.stack))
