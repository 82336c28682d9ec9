"""Check stored files against the records: nothing read is trusted.

Every file is checked against its record's schema (types, missing and unexpected columns, the
schema major version) and every row against the record's invariants (required values, plain ids,
JSON columns, known statuses, resources and phases) before anything is used. Each problem names the
file and the reason: a dataset with any is rejected whole, never half-imported; a results store
skips its bad files (``ResultsStore.read``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from effbench.api.vocabulary import PHASES, QUALITY, RESOURCES, STAGES
from effbench.errors import EffbenchError
from effbench.records import PHASE_EVALUATE, SCHEMA_VERSION, MeasurementRow, Record, RunRecord, TaxonomyRow

VERSION_KEY = b"effbench.schema_version"
SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # run ids and fingerprints become file names
SHOWN_PROBLEMS = 12
SHOWN_COLUMNS = 5
PARQUET_MAGIC = b"PAR1"  # the first (and last) four bytes of every Parquet file
STATUSES = ("ok", "failed")
KINDS = ("technique", "family")


def _major(version: str | None) -> int | None:
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


SUPPORTED_MAJOR = _major(SCHEMA_VERSION)
UPGRADE = f"this effbench reads {SCHEMA_VERSION}: upgrade effbench"
JSON_NAMES = {dict: "object", list: "list"}

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class Problem:
    """What is wrong with one stored file, so a warning or an error can name the file and the reason."""

    path: str  # relative to the store or dataset folder, POSIX
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def first_of_file(found: list[Problem]) -> Problem:
    """A file's problems as one line (the first, and how many more), so each bad file is reported once."""
    more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
    return Problem(found[0].path, found[0].reason + more)


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Parquet stores second timestamps as milliseconds; any unit with the same time zone is accepted."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz == expected.tz
    return actual.equals(expected)


def _schema_problems(schema: pa.Schema, kind: type[Record], where: str) -> list[Problem]:
    expected = kind.schema()
    if not set(schema.names) & set(expected.names):
        shown = ", ".join(schema.names[:SHOWN_COLUMNS]) + (", ..." if len(schema.names) > SHOWN_COLUMNS else "")
        return [Problem(where, f"not an effbench {kind.table} table (its columns: {shown or 'none'})")]
    problems = []
    version = (schema.metadata or {}).get(VERSION_KEY, b"").decode(errors="replace")
    if version and (_major(version) or 0) > SUPPORTED_MAJOR:
        problems.append(Problem(where, f"written with schema version {version}, {UPGRADE}"))
    missing = [f.name for f in expected if f.name not in schema.names and f.name not in kind.later_columns()]
    if missing:
        problems.append(Problem(where, f"missing column{'s' * (len(missing) > 1)} {_quoted(missing)}"))
    problems += [
        Problem(where, f"column {f.name!r} has type {schema.field(f.name).type}, expected {f.type}")
        for f in expected
        if f.name in schema.names and not _type_ok(schema.field(f.name).type, f.type)
    ]
    unexpected = [n for n in schema.names if n not in expected.names]
    if unexpected:
        problems.append(Problem(where, f"unexpected column{'s' * (len(unexpected) > 1)} {_quoted(unexpected)}"))
    return problems


def _read_table(path: Path, where: str, problems: list[Problem]) -> pa.Table | None:
    """The file's table, or None with why it is not one: unreadable, empty, not Parquet, truncated or corrupt."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(PARQUET_MAGIC))
            f.seek(max(os.fstat(f.fileno()).st_size - len(PARQUET_MAGIC), 0))
            tail = f.read(len(PARQUET_MAGIC))
    except OSError as err:
        problems.append(Problem(where, f"unreadable ({err.strerror or err})"))
        return None
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        reason = "not a Parquet file" if head != PARQUET_MAGIC else "truncated Parquet file (its footer is missing)"
        problems.append(Problem(where, "empty file" if not head else reason))
        return None
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        detail = str(err).splitlines()[0].rsplit("': ", 1)[-1]  # arrow's message names the path: drop it
        problems.append(Problem(where, f"corrupt Parquet file ({detail})"))
        return None


def read_records(path: Path, kind: type[R], root: Path, problems: list[Problem]) -> list[R]:
    """The records of one Parquet file (nulls for columns added since it was written), or none if it is bad."""
    where = path.relative_to(root).as_posix()
    table = _read_table(path, where, problems)
    if table is None:
        return []
    found = _schema_problems(table.schema, kind, where)
    if found:
        problems += found
        return []
    schema = kind.schema()
    for f in schema:
        if f.name not in table.schema.names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    try:
        rows = table.select(schema.names).cast(schema).to_pylist()
    except (pa.ArrowException, ValueError, OverflowError) as err:
        problems.append(Problem(where, f"values do not fit the schema ({err})"))
        return []
    records = [kind.from_row(row) for row in rows]
    problems += [p for record in records for p in row_problems(record, where)]
    return records


def _bad_json(record: Record, name: str, expected: type) -> bool:
    text = getattr(record, name)
    if text is None:
        return False
    try:
        return not isinstance(json.loads(text), expected)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to be ours
        return True


def row_problems(record: Record, where: str) -> list[Problem]:
    """What is wrong with one row: empty required values first, then the record's own invariants."""
    empty = [c for c in record.required_columns() if getattr(record, c) in (None, "")]
    if empty:
        return [Problem(where, f"a {record.table} row has no {c}") for c in empty]
    reasons = [
        f"{c} is not a JSON {JSON_NAMES[expected]}"
        for c, expected in record.json_columns().items()
        if _bad_json(record, c, expected)
    ]
    if isinstance(record, RunRecord):
        reasons += _run_problems(record)
    elif isinstance(record, MeasurementRow):
        reasons += _measurement_problems(record)
    elif isinstance(record, TaxonomyRow):
        reasons += _taxonomy_problems(record)
    return [Problem(where, reason) for reason in reasons]


def _run_problems(run: RunRecord) -> list[str]:
    problems = []
    if not SAFE_ID.fullmatch(run.run_id):
        problems.append(f"run_id {run.run_id!r} is not 1-64 letters, digits, '-' or '_'")
    if not SAFE_ID.fullmatch(run.hardware_fingerprint):
        problems.append(f"hardware_fingerprint {run.hardware_fingerprint!r} is not a plain id")
    major = _major(run.schema_version)
    if major is None or major > SUPPORTED_MAJOR:
        problems.append(f"run {run.run_id} has schema version {run.schema_version}, {UPGRADE}")
    if run.status not in STATUSES:
        problems.append(f"run {run.run_id} has status {run.status!r}, expected 'ok' or 'failed'")
    return problems


def _measurement_problems(row: MeasurementRow) -> list[str]:
    problems = []
    if row.resource not in (*RESOURCES, QUALITY):
        problems.append(
            f"measurement {row.metric!r} has unknown resource {row.resource!r}; "
            f"valid: {', '.join((*RESOURCES, QUALITY))}"
        )
    if row.in_phase not in (PHASE_EVALUATE, *PHASES):
        problems.append(
            f"measurement {row.metric!r} has unknown phase {row.phase!r}; valid: {', '.join((PHASE_EVALUATE, *PHASES))}"
        )
    return problems


def _taxonomy_problems(row: TaxonomyRow) -> list[str]:
    problems = []
    if row.kind not in KINDS:
        problems.append(f"{row.name!r} has kind {row.kind!r}, expected 'technique' or 'family'")
    if row.stage not in STAGES:
        problems.append(f"{row.name!r} has unknown stage {row.stage!r}; valid: {', '.join(STAGES)}")
    if not set(row.resources or ()) <= set(RESOURCES):
        problems.append(f"{row.name!r} has unknown resources {row.resources}; valid: {', '.join(RESOURCES)}")
    return problems


def raise_if(problems: list[Problem], what: str) -> None:
    """Reject the whole input when anything is wrong, listing the first problems."""
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        shown = "\n  ".join(str(p) for p in problems[:SHOWN_PROBLEMS])
        raise EffbenchError(f"{what} is invalid; nothing was changed:\n  {shown}{more}")
