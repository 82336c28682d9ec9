"""The results store: Parquet ``runs`` and ``measurements`` tables, one file per run, written atomically.

A run's measurements are written first and its ``runs`` row last, so a run exists exactly
when its row does: a sweep killed at any point leaves no half-run behind, and a rerun
replaces a run's files under the same run id instead of adding a duplicate.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = "1.1"  # 1.1: measurements gained scenario and cv

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("schema_version", pa.string()),
        ("suite", pa.string()),
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("model_fingerprint", pa.string()),
        ("technique", pa.string()),
        ("technique_params", pa.string()),  # JSON object
        ("stage", pa.string()),
        ("resources", pa.list_(pa.string())),
        ("tasks", pa.list_(pa.string())),
        ("settings", pa.string()),  # JSON object: limit, batch size, scenarios, country, idle, price
        ("status", pa.string()),  # ok | failed
        ("error", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("hardware_fingerprint", pa.string()),
        ("hardware", pa.string()),  # JSON object: every probe's data
        ("versions", pa.string()),  # JSON object: library versions
        ("effbench_version", pa.string()),
        ("started_at", pa.timestamp("s", tz="UTC")),
        ("finished_at", pa.timestamp("s", tz="UTC")),
        ("duration_s", pa.float64()),
        ("phase_seconds", pa.string()),  # JSON object: load, apply, accuracy, measure
    ]
)

MEASUREMENTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("task", pa.string()),  # "" for run-level measurements
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("unit", pa.string()),
        ("resource", pa.string()),
        ("higher_is_better", pa.bool_()),
        ("stderr", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
        ("n", pa.int64()),
        ("method", pa.string()),
        ("scenario", pa.string()),  # "" for run-level measurements (accuracy, size), else the scenario's label
        ("cv", pa.float64()),  # coefficient of variation across repeats
    ]
)

TABLES = {"runs": RUNS_SCHEMA, "measurements": MEASUREMENTS_SCHEMA}
# Columns added by a minor version: files written before it lack them, and they read back as nulls.
LATER_COLUMNS = {"measurements": ("scenario", "cv")}


def parquet_files(folder: Path) -> list[Path]:
    """The committed Parquet files in ``folder`` (temporary files start with a dot and are never listed)."""
    return sorted(folder.glob("[!.]*.parquet")) if folder.is_dir() else []


def _write_atomic(table: pa.Table, path: Path) -> None:
    """Write to a temporary file beside ``path`` and rename it into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ResultsStore:
    """A directory holding ``runs/<run_id>.parquet`` and ``measurements/<run_id>.parquet``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _dir(self, table: str) -> Path:
        return self.root / table

    def write_run(self, run: dict[str, Any], measurements: list[dict[str, Any]]) -> None:
        """Store one finished run (ok or failed), replacing any earlier record of the same run id."""
        run_id = run["run_id"]
        for name in TABLES:
            self._dir(name).mkdir(parents=True, exist_ok=True)
        rows = [{**m, "run_id": run_id} for m in measurements]
        _write_atomic(
            pa.Table.from_pylist(rows, schema=MEASUREMENTS_SCHEMA), self._dir("measurements") / f"{run_id}.parquet"
        )
        _write_atomic(
            pa.Table.from_pylist([{**run, "schema_version": SCHEMA_VERSION}], schema=RUNS_SCHEMA),
            self._dir("runs") / f"{run_id}.parquet",
        )

    def files(self, table: str) -> list[Path]:
        """The committed Parquet files of a table."""
        return parquet_files(self._dir(table))

    def read(self, table: str) -> pa.Table:
        """The whole table; measurements of runs without a ``runs`` row are left out."""
        schema = TABLES[table]
        files = self.files(table)
        if table == "measurements":
            committed = {p.stem for p in self.files("runs")}
            files = [p for p in files if p.stem in committed]
        if not files:
            return schema.empty_table()
        return pa.concat_tables([pq.read_table(p, schema=schema) for p in files])

    def statuses(self) -> dict[str, str]:
        """Status (ok / failed) of every stored run, by run id."""
        runs = self.read("runs")
        return dict(zip(runs.column("run_id").to_pylist(), runs.column("status").to_pylist(), strict=True))
