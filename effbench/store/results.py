"""The results store: Parquet ``runs``, ``measurements`` and ``samples`` tables, one file per run, written atomically.

Beside them, ``references/`` holds the baseline runs' fidelity references (safetensors), one per model,
placement and machine, which later runs of the model are compared with.

A run's samples and measurements are written first and its ``runs`` row last, so a run exists exactly
when its row does: a sweep killed at any point leaves no half-run behind, and a rerun
replaces a run's files under the same run id instead of adding a duplicate. Reading skips
damaged files (truncated, empty, foreign) and reports each once, so one bad file never blocks
a report or a resume; ``quarantine`` moves them aside and ``clean_leftovers`` removes the
temporary files of interrupted writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effbench.errors import EffbenchError
from effbench.records import SCHEMA_VERSION, MeasurementRow, Record, RunRecord, SampleRow
from effbench.store.rows import Rows, records
from effbench.store.snapshot import Read, read_files, run_of
from effbench.store.validate import Problem, check_table, first_of_file, read_conformed
from effbench.version import __version__

TEMP_NAME = re.compile(r"\..+\.(parquet|safetensors)\.[0-9a-f]{32}\.tmp")  # _write_atomic's temporary files
LEFTOVER_AGE_S = 60.0  # an unlocked temporary file this old has no writer (see _abandoned)
QUARANTINE = "quarantine"
REFERENCES = "references"  # the baseline runs' fidelity references: <key>.safetensors

RUN_TABLES = (RunRecord, MeasurementRow, SampleRow)  # one file per run in each
PER_RUN = (MeasurementRow, SampleRow)  # a run's rows, read only with its runs row


def parquet_names(folder: Path) -> list[str]:
    """The names of the committed Parquet files in ``folder``, sorted (temporary files start with a dot and are never
    listed)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.name.endswith(".parquet") and not e.name.startswith("."))
    except OSError:  # no such folder (or not one to read): no file, as a glob finds none
        return []


def parquet_files(folder: Path) -> list[Path]:
    """The committed Parquet files in ``folder``, sorted by name."""
    return [folder / name for name in parquet_names(folder)]


def to_table(records: list[Record], kind: type[Record]) -> pa.Table:
    """Records of one kind as an Arrow table in their schema."""
    return pa.Table.from_pylist([r.as_row() for r in records], schema=kind.schema())


def write_parquet(table: pa.Table, where: Path | str) -> None:
    """Write a Parquet file; an empty table as a file without row groups, which ``datasets`` reads beside others
    (an empty row group makes its reader fail)."""
    if table.num_rows:
        pq.write_table(table, where)
    else:
        pq.ParquetWriter(where, table.schema).close()


def _write_atomic(table: pa.Table | bytes, path: Path) -> None:
    """Write to a temporary file beside ``path``, locked until it is renamed into place (see ``_abandoned``)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if isinstance(table, bytes):  # a file that is not a table (a fidelity reference)
            tmp.write_bytes(table)
        else:
            write_parquet(table, tmp)
        os.fsync(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(handle)  # releases the lock; the kernel does the same when the writer is killed


def _abandoned(path: Path, now: float) -> bool:
    """Whether a temporary file's writer is gone, so removing it can never break a write in progress."""
    # A writer locks its temporary file from creating it until renaming it, and the kernel drops the lock when the
    # writer dies (even by kill -9): a lock that can be taken means no one writes. The age covers create-then-lock.
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < LEFTOVER_AGE_S:
            return False
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # a live writer holds it
        return False
    finally:
        os.close(handle)
    return True


STORE_MANIFEST = ".effbench-store.json"  # says the folder is an effbench results store, written with its first run
# What a results store written before manifests holds, at its top level: recognised only if nothing else is there.
EARLIER_STORE = frozenset(
    {"runs", "measurements", "logs", QUARANTINE, ".effbench.lock", ".effbench-report.json", "report.md", "report.tex",
     "report.csv", "report-measurements.csv"}
)  # fmt: skip


class ResultsStore:
    """A directory of one Parquet file per run in each table: ``runs/``, ``measurements/``, ``samples/``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def is_store(self) -> bool:
        """Whether effbench may move or remove files here: its manifest, or the exact layout of an earlier store."""
        if (self.root / STORE_MANIFEST).is_file():
            return True
        if not (self.root / RunRecord.table).is_dir() or self.root.is_symlink():
            return False
        return all(entry.name in EARLIER_STORE for entry in self.root.iterdir())

    def _claim(self) -> None:
        """Mark the folder as an effbench results store (once), so later commands know what they may touch."""
        manifest = self.root / STORE_MANIFEST
        if not manifest.exists():
            holds = [*(f"{kind.table}/" for kind in RUN_TABLES), f"{REFERENCES}/", "logs/", f"{QUARANTINE}/"]
            holds.append("report files")
            data = {"effbench_manifest": 1, "kind": "results-store", "effbench_version": __version__, "holds": holds}
            tmp = manifest.with_name(f".{manifest.name}.{uuid.uuid4().hex}.tmp")
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            os.replace(tmp, manifest)

    def files(self, table: str) -> list[Path]:
        """The committed Parquet files of a table (``runs``, ``measurements`` or ``samples``)."""
        return parquet_files(self.root / table)

    def write_run(
        self, record: RunRecord, measurements: list[MeasurementRow], samples: list[SampleRow] | None = None
    ) -> None:
        """Store one finished run (ok or failed), replacing any earlier record of the same run id."""
        run_id = record.run_id
        per_run: dict[type[Record], list[Record]] = {
            SampleRow: [replace(s, run_id=run_id) for s in samples or []],
            MeasurementRow: [replace(m, run_id=run_id) for m in measurements],
        }
        for kind in RUN_TABLES:
            (self.root / kind.table).mkdir(parents=True, exist_ok=True)
        self._claim()
        for kind, rows in per_run.items():  # the runs row last: a run exists only with all its rows
            _write_atomic(to_table(rows, kind), self.root / kind.table / f"{run_id}.parquet")
        written = replace(record, schema_version=SCHEMA_VERSION)
        _write_atomic(to_table([written], RunRecord), self.root / RunRecord.table / f"{run_id}.parquet")

    def reference_path(self, key: str) -> Path:
        """Where the fidelity reference stored under ``key`` lives (it may not exist)."""
        return self.root / REFERENCES / f"{key}.safetensors"

    def write_reference(self, key: str, data: bytes) -> None:
        """Store a baseline run's fidelity reference (a safetensors file's bytes), replacing an earlier one."""
        (self.root / REFERENCES).mkdir(parents=True, exist_ok=True)
        self._claim()
        _write_atomic(data, self.reference_path(key))

    def _read_run_file(self, path: Path, kind: type[Record]) -> pa.Table | Problem:
        """The rows of one run's file, or its one problem when it is bad or holds another run's rows."""
        found: list[Problem] = []
        where = path.relative_to(self.root).as_posix()
        table = read_conformed(path, kind, self.root, found)
        if table is not None:
            check_table(table, kind, where, found)
        run_ids = [] if table is None else pc.unique(table.column("run_id")).to_pylist()
        others = sorted(set(run_ids) - {path.stem, None})
        rows = 0 if table is None else table.num_rows
        if not found and others:
            found.append(Problem(where, f"holds rows of run {others[0]}, expected run {path.stem}"))
        elif not found and kind is RunRecord and rows != 1:
            found.append(Problem(where, f"holds {rows} runs rows, expected one"))
        if found:
            return first_of_file(found)
        return table

    def _read_table(self, kind: type[Record], runs: set[str] | None, problems: list[Problem]) -> Read:
        """A table's valid files (of ``runs`` only, when given), through the store's snapshot (``snapshot.py``)."""
        folder = self.root / kind.table
        names = [name for name in parquet_names(folder) if runs is None or run_of(name) in runs]
        read = read_files(self.root, kind, folder, names, lambda path: self._read_run_file(path, kind))
        problems += read.problems
        return read

    def read_tables(self) -> tuple[list[RunRecord], Rows[MeasurementRow], Rows[SampleRow], list[Problem]]:
        """The valid runs with their measurements and samples (records made when used), and one problem per bad file,
        skipped with its run. Each run's rows are contiguous, runs in file order.

        A run without a samples file (failed, or written before 1.4) has no samples.
        """
        problems: list[Problem] = []
        read = self._read_table(RunRecord, None, problems)
        runs = dict(zip(read.spans, records(read.table, RunRecord), strict=True))
        per_run: dict[type[Record], Read] = {}
        for kind in PER_RUN:  # without a runs row, they are an interrupted run's: ignored, unread
            per_run[kind] = self._read_table(kind, set(runs), problems)
            for run_id in per_run[kind].bad:  # skipped with its run
                del runs[run_id]
        kept = {kind: Rows(kind, *_of_runs(read, set(runs))) for kind, read in per_run.items()}
        return list(runs.values()), kept[MeasurementRow], kept[SampleRow], problems  # type: ignore[return-value]

    def read(self) -> tuple[list[RunRecord], list[MeasurementRow], list[SampleRow], list[Problem]]:
        """``read_tables`` with every record made."""
        runs, measurements, samples, problems = self.read_tables()
        return runs, measurements.all(), samples.all(), problems

    def statuses(self) -> dict[str, str]:
        """Status (ok / failed) of every valid stored run by run id; a damaged run is not stored: a resume reruns it."""
        return {run.run_id: run.status for run in self.read_tables()[0]}

    def leftovers(self) -> list[Path]:
        """Temporary files of interrupted writes: only names ``_write_atomic`` gives, only once their writer is gone."""
        if not self.is_store():  # a folder effbench did not make a store: nothing in it is effbench's to remove
            return []
        now = time.time()
        folders = [self.root / folder for folder in (*(kind.table for kind in RUN_TABLES), REFERENCES)]
        return [
            path
            for folder in folders
            if folder.is_dir()
            for path in sorted(folder.iterdir())
            if TEMP_NAME.fullmatch(path.name) and _abandoned(path, now)
        ]

    def clean_leftovers(self) -> list[Path]:
        """Remove the leftovers of interrupted writes so they do not pile up; returns the files removed."""
        removed = []
        for path in self.leftovers():
            try:
                path.unlink()
            except OSError:  # removed meanwhile, or not ours to remove: it stays harmless, never listed as a run
                continue
            removed.append(path)
        return removed

    def quarantine(self, problems: list[Problem]) -> list[Path]:
        """Move bad files to ``quarantine/<UTC time>/`` (never deleted) so the store reads clean; returns the paths."""
        if not self.is_store():
            raise EffbenchError(
                f"{self.root} is not an effbench results store (no {STORE_MANIFEST}, and it holds other files): "
                "nothing was moved"
            )
        self._claim()  # an earlier version's store, recognised by its layout, is adopted
        tables = tuple(kind.table for kind in RUN_TABLES)
        moving: dict[Path, None] = {}  # ordered, without duplicates
        for problem in problems:
            relative = Path(problem.file or problem.path)  # the real name, when the shown one was escaped
            if len(relative.parts) != 2 or relative.parts[0] not in tables:
                continue
            if relative.parts[0] != RunRecord.table:  # its run row first: rerun, not kept without its rows
                moving[Path(RunRecord.table, relative.name)] = None
            moving[relative] = None
        present = [relative for relative in moving if os.path.lexists(self.root / relative)]  # a broken link too
        if not present:
            return []
        folder = self.root / QUARANTINE / datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        folder.mkdir(parents=True)  # a new folder: an earlier quarantine's files are never overwritten
        moved = []
        for relative in present:
            if not os.path.lexists(self.root / relative):  # moved with an earlier one (linked table folders)
                continue
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.root / relative, folder / relative)
            moved.append(folder / relative)
        return moved


def _of_runs(read: Read, runs: set[str]) -> tuple[pa.Table, dict[str, tuple[int, int]]]:
    """The rows of these runs only, in file order (a run skipped for another table's bad file loses its rows too), and
    where each run's rows lie among them (its file holds its rows only)."""
    if all(stem in runs for stem in read.spans):
        return read.table, read.spans
    kept = {stem: span for stem, span in read.spans.items() if stem in runs}
    spans, start = {}, 0
    for stem, (first, stop) in kept.items():
        spans[stem] = (start, start + stop - first)
        start += stop - first
    keep = [np.arange(first, stop) for first, stop in kept.values()]
    return (read.table.take(np.concatenate(keep)) if keep else read.table.slice(0, 0)), spans
