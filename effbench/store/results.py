"""The results store: Parquet ``runs`` and ``measurements`` tables, one file per run, written atomically.

A run's measurements are written first and its ``runs`` row last, so a run exists exactly
when its row does: a sweep killed at any point leaves no half-run behind, and a rerun
replaces a run's files under the same run id instead of adding a duplicate.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from effbench.records import SCHEMA_VERSION, MeasurementRow, Record, RunRecord


def parquet_files(folder: Path) -> list[Path]:
    """The committed Parquet files in ``folder`` (temporary files start with a dot and are never listed)."""
    return sorted(folder.glob("[!.]*.parquet")) if folder.is_dir() else []


def to_table(records: list[Record], kind: type[Record]) -> pa.Table:
    """Records of one kind as an Arrow table in their schema."""
    return pa.Table.from_pylist([r.as_row() for r in records], schema=kind.schema())


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

    def files(self, table: str) -> list[Path]:
        """The committed Parquet files of a table (``runs`` or ``measurements``)."""
        return parquet_files(self.root / table)

    def write_run(self, record: RunRecord, measurements: list[MeasurementRow]) -> None:
        """Store one finished run (ok or failed), replacing any earlier record of the same run id."""
        run_id = record.run_id
        rows: list[Record] = [replace(m, run_id=run_id) for m in measurements]
        for kind in (MeasurementRow, RunRecord):
            (self.root / kind.table).mkdir(parents=True, exist_ok=True)
        _write_atomic(to_table(rows, MeasurementRow), self.root / MeasurementRow.table / f"{run_id}.parquet")
        written = replace(record, schema_version=SCHEMA_VERSION)
        _write_atomic(to_table([written], RunRecord), self.root / RunRecord.table / f"{run_id}.parquet")

    def statuses(self) -> dict[str, str]:
        """Status (ok / failed) of every stored run, by run id."""
        statuses: dict[str, str] = {}
        for path in self.files(RunRecord.table):
            table = pq.read_table(path, columns=["run_id", "status"])
            statuses.update(zip(table.column("run_id").to_pylist(), table.column("status").to_pylist(), strict=True))
        return statuses
