"""Synthetic results stores for the dataset, Hub and leaderboard tests: real store files, made-up figures."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from effbench.api.metric import Metric, Quantity
from effbench.plugins import Registry
from effbench.present.columns import registry_columns
from effbench.records import MeasurementRow, RunRecord, SampleRow, version_tuple
from effbench.store.results import ResultsStore

MACHINES = {
    "hwA": {"cpu": {"model": "Test CPU A", "logical_cores": 2}, "memory": {"total_gib": 24}, "os": {"system": "Linux"}},
    "hwB": {
        "cpu": {"model": "Test CPU B", "logical_cores": 64},
        "memory": {"total_gib": 512},
        "os": {"system": "Linux"},
    },
}

# technique, params, micro_copy exact_match, micro_text word_perplexity, latency ms, J/token, peak MiB, weight MB
TECHNIQUES = (
    ("baseline", {}, 0.90, 5.0, 100.0, 0.0020, 600.0, 4.8),
    ("dtype", {"dtype": "bf16"}, 0.88, 5.1, 60.0, 0.0012, 560.0, 2.4),
    ("prune-magnitude", {"sparsity": 0.5}, 0.70, 6.0, 100.0, 0.0020, 600.0, 4.8),
    ("prune-magnitude", {"sparsity": 0.9}, 0.20, 40.0, 95.0, 0.0019, 590.0, 4.8),
)


def run_row(run_id: str, technique: str, params: dict, hardware: str = "hwA", **extra) -> RunRecord:
    """A run record as the sweep writes it."""
    fields = {
        "run_id": run_id,
        "suite": "synthetic",
        "model": "zoo:micro-m",
        "model_fingerprint": "m1",
        "technique": technique,
        "technique_params": json.dumps(params, sort_keys=True),
        "stage": "inference",
        "resources": ["memory", "computation"],
        "tasks": ["micro_copy", "micro_text"],
        "settings": json.dumps({"limit": 5}),
        "hardware_fingerprint": hardware,
        "hardware": json.dumps(MACHINES.get(hardware, {})),
        "effbench_version": "0.1.0",
        "started_at": datetime(2026, 1, 1, 11, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 1, 12, tzinfo=UTC),
        "duration_s": 3600.0,
        "phase_seconds": json.dumps({"load": 1.0}),
        "stack": json.dumps([{"name": technique, "params": params}]),
    }
    return RunRecord(**{**fields, **extra})


def measurement(
    metric: str, value: float, unit: str, resource: str, task: str = "", higher_is_better: bool | None = None, **extra
) -> MeasurementRow:
    """A measurement (run_id is filled in by the store); quality is higher-is-better unless told."""
    better = resource == "quality" if higher_is_better is None else higher_is_better
    fields = {"metric": metric, "value": value, "unit": unit, "resource": resource, "task": task, "method": "synthetic"}
    return MeasurementRow(**{**fields, "higher_is_better": better, **extra})


def measurements(
    acc: float, ppl: float, latency: float, joules: float, peak: float, weight: float
) -> list[MeasurementRow]:
    """A run's measurements in the order the runner reports them (quality first, exact_match before others)."""
    return [
        measurement("exact_match", acc, "", "quality", "micro_copy", stderr=0.02, n=5),
        measurement("word_perplexity", ppl, "", "quality", "micro_text", higher_is_better=False),
        measurement("bits_per_byte", 1.5, "", "quality", "micro_text", higher_is_better=False),
        measurement("latency", latency, "ms", "computation", stderr=1.0, n=12),
        measurement("energy_per_token", joules, "J/token", "energy", method="CPU estimated (cpu_load)"),
        measurement("peak_memory", peak, "MiB", "memory"),
        measurement("weight_bytes", weight, "MB", "memory"),
    ]


DOCS = 50  # documents per task of the synthetic runs


def samples(acc: float, ppl: float, shift: int) -> list[SampleRow]:
    """Per-document outcomes that aggregate to ``acc`` and ``ppl``: document i is right when (i + shift) mod 50 is
    below acc × 50, so runs with different shifts flip documents both ways; 10 words and 40 bytes per text."""
    right = round(acc * DOCS)
    rows = [SampleRow(task="micro_copy", doc_id=i, metric="exact_match", value=float((i + shift) % DOCS < right),
                      prediction_tokens=6) for i in range(DOCS)]  # fmt: skip
    for i in range(DOCS):
        text = {"task": "micro_text", "doc_id": i}
        rows.append(SampleRow(**text, metric="word_perplexity", value=-10 * math.log(ppl), weight=10))
        rows.append(SampleRow(**text, metric="bits_per_byte", value=-60 * math.log(2), weight=40))
    return rows


class DeclaredMetric(Metric):
    """A metric that only declares quantities: what tables need from a metric, without measuring anything."""

    def __init__(self, scope: str, *quantities: Quantity) -> None:
        first = quantities[0]
        self.name, self.unit, self.resource, self.higher_is_better = first.name, first.unit, first.resource, False
        self.scope, self.quantities = scope, quantities


def quantity(name: str, unit: str, resource: str = "computation", **display) -> Quantity:
    """A lower-is-better quantity with a description, shown as ``display`` says."""
    return Quantity(name, unit, resource, False, f"{name}: a test quantity", **display)


def registry_of(*metrics: Metric) -> Registry:
    """A registry holding only these metrics (no plugin machinery)."""
    return Registry(metrics={m.name: m for m in metrics})


# The builtin metrics' declarations as the tests need them, constructed here rather than read from the plugins.
BUILTIN_LIKE = (
    DeclaredMetric("run", quantity("weight_bytes", "MB", "memory", header="Size (MB)", ratio_header="Compression ×",
                                   headline=True)),
    DeclaredMetric("scenario", quantity("latency", "ms", header="Latency (ms)", digits=1, ratio_header="Speed-up ×",
                                        headline=True),
                   quantity("latency_p50", "ms", header="p50 (ms)", digits=1, detail=True)),
    DeclaredMetric("repeat", quantity("peak_memory", "MiB", "memory", header="Peak RSS (MiB)", digits=0,
                                      headline=True)),
    DeclaredMetric("repeat", quantity("energy_direct", "kWh", "energy", detail=True),
                   quantity("energy_direct_per_token", "J/token", "energy", header="Energy, counters (mJ/token)",
                            scale=1e3, headline=True)),
    DeclaredMetric("repeat", quantity("energy", "kWh", "energy", detail=True),
                   quantity("energy_per_token", "J/token", "energy", header="Energy (mJ/token)", scale=1e3,
                            headline=True)),
)  # fmt: skip
COLUMNS = registry_columns(registry_of(*BUILTIN_LIKE))


def rewrite(path: Path, mutate: Callable[[pa.Table], pa.Table]) -> None:
    """Replace a Parquet file by a mutated copy of its table (to make bad input on purpose)."""
    pq.write_table(mutate(pq.read_table(path)), path)


def values_as_text(table: pa.Table) -> pa.Table:
    """A measurements table whose ``value`` column holds strings: the wrong type."""
    return table.set_column(
        table.schema.get_field_index("value"), "value", pa.array(map(str, table["value"].to_pylist()))
    )


def model_not_utf8(table: pa.Table) -> pa.Table:
    """A runs table whose ``model`` text ends in half a UTF-8 character, as one flipped byte leaves it."""
    broken = pa.array([b"micro-s\xed"] * len(table), pa.binary()).view(pa.string())
    return table.set_column(table.schema.get_field_index("model"), "model", broken)


def as_written_by(store: ResultsStore, version: str) -> None:
    """Rewrite a store's files as an earlier schema version wrote them: without the columns and tables added since."""
    for kind in (RunRecord, MeasurementRow, SampleRow):
        if version_tuple(kind.since) > version_tuple(version):
            shutil.rmtree(store.root / kind.table, ignore_errors=True)
            continue
        later = list(kind.later_columns(after=version))
        for path in store.files(kind.table):
            rewrite(path, lambda t, later=later: t.drop_columns(later))
    for path in store.files(RunRecord.table):
        rewrite(path, lambda t: t.set_column(1, "schema_version", pa.array([version] * len(t))))


def two_machine_store(root: Path) -> ResultsStore:
    """The four techniques on machine hwA, and on hwB with a quarter of the resource figures."""
    synthetic_store(root, "hwA")
    return synthetic_store(root, "hwB", scale=0.25)


def synthetic_store(root: Path, hardware: str = "hwA", prefix: str = "", scale: float = 1.0) -> ResultsStore:
    """A store with the four TECHNIQUES on one machine; ``scale`` multiplies the resource figures."""
    store = ResultsStore(root)
    for i, (technique, params, acc, ppl, latency, joules, peak, weight) in enumerate(TECHNIQUES):
        store.write_run(
            run_row(f"{prefix}{hardware}-{i}", technique, params, hardware),
            measurements(acc, ppl, latency * scale, joules * scale, peak * scale, weight),
            samples(acc, ppl, shift=3 * i),
        )
    return store
