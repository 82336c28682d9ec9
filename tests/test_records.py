"""The records are the schema: stores, datasets, validation and the card's column docs all derive from them."""

import json
from dataclasses import fields
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from effbench.records import (
    DATASET_RECORDS,
    SCHEMA_VERSION,
    MeasurementRow,
    RunRecord,
    SampleRow,
    StackEntry,
    TaxonomyRow,
)
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.store_helpers import as_written_by, measurement, rewrite, run_row, synthetic_store

RECORDS = (*DATASET_RECORDS, SampleRow)


@pytest.mark.parametrize("kind", RECORDS)
def test_the_schema_is_the_records_fields_in_order_each_documented(kind):
    assert kind.schema().names == [f.name for f in fields(kind)]
    docs = kind.column_docs()
    assert list(docs) == kind.schema().names and all(len(doc) > 10 for doc in docs.values())
    assert set(kind.required_columns()) <= set(docs) and set(kind.json_columns()) <= set(docs)


def test_columns_keep_their_published_order_and_later_ones_come_last():
    """Published files have this column order: a column is only ever appended, in a new minor version."""
    assert RunRecord.schema().names == [
        "run_id", "schema_version", "suite", "model", "model_revision", "model_fingerprint", "technique",
        "technique_params", "stage", "resources", "tasks", "settings", "status", "error", "warnings",
        "hardware_fingerprint", "hardware", "versions", "effbench_version", "started_at", "finished_at", "duration_s",
        "phase_seconds", "stack", "device", "dtype",
    ]  # fmt: skip
    assert MeasurementRow.schema().names == [
        "run_id", "task", "metric", "value", "unit", "resource", "higher_is_better", "stderr", "ci_low", "ci_high",
        "n", "method", "scenario", "cv", "phase", "step",
    ]  # fmt: skip
    for kind in RECORDS:
        later = kind.later_columns()
        assert tuple(kind.schema().names[len(kind.schema().names) - len(later) :]) == later


def test_later_columns_are_the_ones_each_minor_version_added():
    assert MeasurementRow.later_columns() == ("scenario", "cv", "phase", "step")
    assert MeasurementRow.later_columns(after="1.1") == ("phase", "step")
    assert MeasurementRow.later_columns(after="1.4") == ("step",)
    assert RunRecord.later_columns() == ("stack", "device", "dtype") == RunRecord.later_columns(after="1.1")
    assert RunRecord.later_columns(after="1.2") == ("device", "dtype")
    assert RunRecord.later_columns(after=SCHEMA_VERSION) == () == TaxonomyRow.later_columns()
    assert SampleRow.since == "1.4" and SampleRow.later_columns() == ()  # 1.4 added the whole table
    assert RunRecord.since == MeasurementRow.since == "1.0"
    assert SCHEMA_VERSION == "1.5"


def test_a_run_record_round_trips_through_the_store(tmp_path):
    stack = [StackEntry("prune-magnitude", {"sparsity": 0.5}), StackEntry("dynamic-int8")]
    record = run_row(
        "r1",
        "prune-magnitude+dynamic-int8",
        {},
        stack=json.dumps([{"name": e.name, "params": e.params} for e in stack]),
        warnings=["slow"],
        error=None,
        finished_at=datetime(2026, 3, 1, 8, 30, 15, tzinfo=UTC),
        device="cuda:0",
        dtype="bfloat16",
    )
    rows = [measurement("latency", 12.5, "ms", "computation", scenario="single-stream", cv=0.01, n=30)]
    rows.append(measurement("apply_time", 3.0, "s", "computation", phase="apply"))
    store = ResultsStore(tmp_path)
    store.write_run(record, rows)
    loaded = load(tmp_path)
    assert loaded.runs == [record]
    assert loaded.measurements_of("r1") == [MeasurementRow(**{**m.as_row(), "run_id": "r1"}) for m in rows]
    assert loaded.run("r1").stack_entries() == stack
    assert loaded.run("r1").label == "prune-magnitude(sparsity=0.5) + dynamic-int8"
    assert loaded.run("r1").placement == "device cuda:0, dtype bfloat16"
    assert [m.in_phase for m in loaded.measurements] == ["evaluate", "apply"]
    assert pq.read_table(store.files("runs")[0]).schema.names == RunRecord.schema().names
    assert store.statuses() == {"r1": "ok"}


def test_the_stored_schema_version_is_the_writers(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_run(run_row("r1", "baseline", {}, schema_version="0.9"), [])
    assert load(tmp_path).run("r1").schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3", "1.4"])
def test_rows_of_an_earlier_version_read_with_their_meaning(tmp_path, version):
    store = synthetic_store(tmp_path)
    assert load(tmp_path).samples_of("hwA-2")
    as_written_by(store, version)
    loaded = load(tmp_path)
    run = loaded.run("hwA-2")
    assert {m.step for m in loaded.measurements} == {None}  # 1.5's training step reads back empty
    if version == "1.4":
        assert loaded.samples_of("hwA-2")  # its samples and everything else are today's
        return
    assert loaded.samples == [] and loaded.samples_of("hwA-2") == []  # before 1.4: no per-document outcomes
    if version == "1.3":
        return  # its runs and measurements are today's
    assert (run.device, run.dtype, run.placement) == (None, None, "")  # 1.3's columns read back empty
    if version == "1.2":
        assert run.stack_entries() == [StackEntry("prune-magnitude", {"sparsity": 0.5})] and run.stack
        assert {m.phase for m in loaded.measurements} == {"evaluate"}  # 1.2 wrote the phase
        return
    assert run.stack is None and run.stack_entries() == [StackEntry("prune-magnitude", {"sparsity": 0.5})]
    assert {m.in_phase for m in loaded.measurements} == {"evaluate"} and {m.phase for m in loaded.measurements} == {
        None
    }
    assert {m.in_scenario for m in loaded.measurements} == {""}


def _set(column, value):
    """A mutation putting ``value`` into every row of ``column``."""
    return lambda t: t.set_column(t.schema.get_field_index(column), column, pa.array([value] * len(t), pa.string()))


def test_validation_follows_the_records(tmp_path):
    store = synthetic_store(tmp_path)
    rewrite(store.files("runs")[0], _set("stack", '{"name": "baseline"}'))
    rewrite(store.files("measurements")[1], _set("phase", "warm-up"))
    problems = [str(p) for p in load(tmp_path).problems]  # a store's bad files are skipped, each named once
    assert problems[0] == "runs/hwA-0.parquet: stack is not a JSON list"
    assert problems[1].startswith("measurements/hwA-1.parquet: measurement 'exact_match' has unknown phase 'warm-up'; ")
    assert problems[1].endswith("valid: evaluate, apply, train, generate (and 6 more problems)") and len(problems) == 2
