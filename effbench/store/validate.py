"""Check stored files against the records: nothing read is trusted.

Every file is checked against its record's schema (types, missing and unexpected columns, the
schema major version) and every row against the record's invariants (required values, plain ids,
JSON columns, known statuses, resources and phases) before anything is used, so bad input is
rejected whole, naming the file and the reason, and never half-imported.
"""

from __future__ import annotations

import json
import re
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
STATUSES = ("ok", "failed")
KINDS = ("technique", "family")


def _major(version: str | None) -> int | None:
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


SUPPORTED_MAJOR = _major(SCHEMA_VERSION)
UPGRADE = f"this effbench reads {SCHEMA_VERSION}: upgrade effbench"
JSON_NAMES = {dict: "object", list: "list"}

R = TypeVar("R", bound=Record)


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Parquet stores second timestamps as milliseconds; any unit with the same time zone is accepted."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz == expected.tz
    return actual.equals(expected)


def _schema_problems(schema: pa.Schema, kind: type[Record], where: str) -> list[str]:
    expected = kind.schema()
    problems = []
    version = (schema.metadata or {}).get(VERSION_KEY)
    if version is not None and (_major(version.decode()) or 0) > SUPPORTED_MAJOR:
        problems.append(f"{where}: written with schema version {version.decode()}, {UPGRADE}")
    for f in expected:
        if f.name not in schema.names:
            if f.name not in kind.later_columns():
                problems.append(f"{where}: missing column {f.name!r}")
        elif not _type_ok(schema.field(f.name).type, f.type):
            problems.append(f"{where}: column {f.name!r} has type {schema.field(f.name).type}, expected {f.type}")
    problems += [f"{where}: unexpected column {n!r}" for n in schema.names if n not in expected.names]
    return problems


def read_records(path: Path, kind: type[R], root: Path, problems: list[str]) -> list[R]:
    """The records of one Parquet file (nulls for columns added since it was written), or none if it is bad."""
    where = path.relative_to(root).as_posix()
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        problems.append(f"{where}: not a readable Parquet file ({err})")
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
    except (pa.ArrowException, ValueError) as err:
        problems.append(f"{where}: values do not fit the schema ({err})")
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
    except ValueError:
        return True


def row_problems(record: Record, where: str) -> list[str]:
    """What is wrong with one row: empty required values first, then the record's own invariants."""
    empty = [c for c in record.required_columns() if getattr(record, c) in (None, "")]
    if empty:
        return [f"{where}: a {record.table} row has no {c}" for c in empty]
    problems = [
        f"{where}: {c} is not a JSON {JSON_NAMES[expected]}"
        for c, expected in record.json_columns().items()
        if _bad_json(record, c, expected)
    ]
    if isinstance(record, RunRecord):
        problems += _run_problems(record, where)
    elif isinstance(record, MeasurementRow):
        problems += _measurement_problems(record, where)
    elif isinstance(record, TaxonomyRow):
        problems += _taxonomy_problems(record, where)
    return problems


def _run_problems(run: RunRecord, where: str) -> list[str]:
    problems = []
    if not SAFE_ID.fullmatch(run.run_id):
        problems.append(f"{where}: run_id {run.run_id!r} is not 1-64 letters, digits, '-' or '_'")
    if not SAFE_ID.fullmatch(run.hardware_fingerprint):
        problems.append(f"{where}: hardware_fingerprint {run.hardware_fingerprint!r} is not a plain id")
    major = _major(run.schema_version)
    if major is None or major > SUPPORTED_MAJOR:
        problems.append(f"{where}: run {run.run_id} has schema version {run.schema_version}, {UPGRADE}")
    if run.status not in STATUSES:
        problems.append(f"{where}: run {run.run_id} has status {run.status!r}, expected 'ok' or 'failed'")
    return problems


def _measurement_problems(row: MeasurementRow, where: str) -> list[str]:
    problems = []
    if row.resource not in (*RESOURCES, QUALITY):
        problems.append(
            f"{where}: measurement {row.metric!r} has unknown resource {row.resource!r}; "
            f"valid: {', '.join((*RESOURCES, QUALITY))}"
        )
    if row.in_phase not in (PHASE_EVALUATE, *PHASES):
        problems.append(
            f"{where}: measurement {row.metric!r} has unknown phase {row.phase!r}; "
            f"valid: {', '.join((PHASE_EVALUATE, *PHASES))}"
        )
    return problems


def _taxonomy_problems(row: TaxonomyRow, where: str) -> list[str]:
    problems = []
    if row.kind not in KINDS:
        problems.append(f"{where}: {row.name!r} has kind {row.kind!r}, expected 'technique' or 'family'")
    if row.stage not in STAGES:
        problems.append(f"{where}: {row.name!r} has unknown stage {row.stage!r}; valid: {', '.join(STAGES)}")
    if not set(row.resources or ()) <= set(RESOURCES):
        problems.append(f"{where}: {row.name!r} has unknown resources {row.resources}; valid: {', '.join(RESOURCES)}")
    return problems


def raise_if(problems: list[str], what: str) -> None:
    """Reject the whole input when anything is wrong, listing the first problems."""
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise EffbenchError(
            f"{what} is invalid; nothing was changed:\n  " + "\n  ".join(problems[:SHOWN_PROBLEMS]) + more
        )
