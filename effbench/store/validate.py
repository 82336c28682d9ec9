"""Check stored files against the records: nothing read is trusted.

Every file is checked against its record's schema (types, missing and unexpected columns, the
schema major version) and every row against the record's invariants (required values, plain ids,
JSON columns, known statuses, resources and phases) before anything is used. Each problem names the
file and the reason: a dataset with any is rejected whole, never half-imported; a results store
skips its bad files (``ResultsStore.read``).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TypeVar, get_args, get_type_hints

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from effbench.api.vocabulary import PHASES, QUALITY, RESOURCES, STAGES
from effbench.errors import EffbenchError
from effbench.records import (
    PHASE_EVALUATE,
    SCHEMA_VERSION,
    STATUSES,
    MeasurementRow,
    Record,
    RunRecord,
    SampleRow,
    TaxonomyRow,
)
from effbench.store.rows import records

VERSION_KEY = b"effbench.schema_version"
SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # run ids and fingerprints become file names
SHOWN_PROBLEMS = 12
SHOWN_COLUMNS = 5
PARQUET_MAGIC = b"PAR1"  # the first (and last) four bytes of every Parquet file
KINDS = ("technique", "family")
MAJOR = re.compile(r"[0-9]{1,18}")  # a major version: plain digits, few enough for int()
MACHINE_PROBES = ("cpu", "memory", "os")  # the probes RunRecord.machine reads fields of


def _major(version: str | None) -> int | None:
    """The major version, or None: isdigit() accepts '²' and 5,000 digits, which int() refuses."""
    head = str(version).split(".", 1)[0]
    return int(head) if MAJOR.fullmatch(head) else None


SUPPORTED_MAJOR = _major(SCHEMA_VERSION)
UPGRADE = f"this effbench reads {SCHEMA_VERSION}: upgrade effbench"
JSON_NAMES = {dict: "object", list: "list"}

R = TypeVar("R", bound=Record)


def printable(text: str) -> str:
    """``text`` with unprintable characters escaped: a newline or a non-UTF-8 byte in a name never breaks a line."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


@dataclass(frozen=True)
class Problem:
    """What is wrong with one stored file, so a warning or an error can name the file and the reason."""

    path: str  # relative to the store or dataset folder, POSIX; shown escaped (see ``printable``)
    reason: str
    file: str | None = field(default=None, compare=False, repr=False)  # the real path, when ``path`` was escaped

    def __post_init__(self) -> None:
        """Keep every problem one printable line, whatever a file name or stored value holds; the real path stays."""
        if printable(self.path) != self.path:
            object.__setattr__(self, "file", self.file or self.path)
            object.__setattr__(self, "path", printable(self.path))
        object.__setattr__(self, "reason", printable(self.reason))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def first_of_file(found: list[Problem]) -> Problem:
    """A file's problems as one line (the first, and how many more), so each bad file is reported once."""
    more = f" (and {len(found) - 1} more problems)" if len(found) > 1 else ""
    return Problem(found[0].path, found[0].reason + more, found[0].file)


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Parquet stores second timestamps as milliseconds; any unit with the same time zone is accepted."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz == expected.tz
    return actual.equals(expected)


def _schema_problems(schema: pa.Schema, kind: type[Record], where: str) -> list[Problem]:
    expected = kind.schema()
    names, known = schema.names, set(expected.names)  # ``names`` makes a new list each time it is read
    if not set(names) & known:
        shown = ", ".join(names[:SHOWN_COLUMNS]) + (", ..." if len(names) > SHOWN_COLUMNS else "")
        return [Problem(where, f"not an effbench {kind.table} table (its columns: {shown or 'none'})")]
    problems = []
    version = (schema.metadata or {}).get(VERSION_KEY, b"").decode(errors="replace")
    if version and (_major(version) or 0) > SUPPORTED_MAJOR:
        problems.append(Problem(where, f"written with schema version {version}, {UPGRADE}"))
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:  # one name, two columns: which one a report reads is not known
        problems.append(Problem(where, f"column{'s' * (len(twice) > 1)} {_quoted(twice)} given more than once"))
        return problems
    types = {f.name: f.type for f in schema}
    missing = [f.name for f in expected if f.name not in types and f.name not in kind.later_columns()]
    if missing:
        problems.append(Problem(where, f"missing column{'s' * (len(missing) > 1)} {_quoted(missing)}"))
    problems += [
        Problem(where, f"column {f.name!r} has type {types[f.name]}, expected {f.type}")
        for f in expected
        if f.name in types and not _type_ok(types[f.name], f.type)
    ]
    unexpected = [n for n in names if n not in known]
    if unexpected:
        problems.append(Problem(where, f"unexpected column{'s' * (len(unexpected) > 1)} {_quoted(unexpected)}"))
    return problems


def _read_table(path: Path, where: str, problems: list[Problem]) -> pa.Table | None:
    """The file's table, or None with why it is not one: unreadable, empty, not Parquet, truncated or corrupt."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a named pipe must not block forever
    except OSError as err:
        problems.append(Problem(where, f"unreadable ({err.strerror or err})"))
        return None
    try:
        return _read_open_table(handle, where, problems)
    finally:
        os.close(handle)


def _read_open_table(handle: int, where: str, problems: list[Problem]) -> pa.Table | None:
    """Read through the open handle: a pipe or device is refused unread, and arrow never sees a non-UTF-8 name."""
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            problems.append(Problem(where, "not a regular file (a pipe, socket or device)"))
            return None
        head = os.pread(handle, len(PARQUET_MAGIC), 0)  # a folder: "Is a directory"
        tail = os.pread(handle, len(PARQUET_MAGIC), max(info.st_size - len(PARQUET_MAGIC), 0))
    except OSError as err:
        problems.append(Problem(where, f"unreadable ({err.strerror or err})"))
        return None
    if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
        reason = "not a Parquet file" if head != PARQUET_MAGIC else "truncated Parquet file (its footer is missing)"
        problems.append(Problem(where, "empty file" if not head else reason))
        return None
    try:
        with io.FileIO(handle, closefd=False) as file:
            return pq.ParquetFile(file).read()  # the same table as ``pq.read_table``, in half its time
    except (pa.ArrowException, OSError) as err:
        detail = str(err).splitlines()[0].rsplit("': ", 1)[-1]  # arrow's message names the source: drop it
        problems.append(Problem(where, f"corrupt Parquet file ({detail})"))
        return None


def read_conformed(path: Path, kind: type[Record], root: Path, problems: list[Problem]) -> pa.Table | None:
    """One Parquet file's table in the record's schema (nulls for columns added since it was written), or None with
    its problems when it is not one; its rows are checked by ``check_rows``."""
    where = path.relative_to(root).as_posix()
    table = _read_table(path, where, problems)
    if table is None:
        return None
    found = _schema_problems(table.schema, kind, where)
    if found:
        problems += found
        return None
    schema = kind.schema()
    for f in schema:
        if f.name not in table.schema.names:
            table = table.append_column(f, pa.nulls(len(table), f.type))
    try:
        table = table.select(schema.names).cast(schema)
    except (pa.ArrowException, ValueError, OverflowError) as err:
        problems.append(Problem(where, f"values do not fit the schema ({err})"))
        return None
    for name, column in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_string(column.type):  # a cast checked the others' values; only text is left unchecked
            continue
        try:
            column.validate(full=True)  # a flipped byte in text fails here, not when a report reads the value
        except pa.ArrowInvalid as err:
            reason = "holds text that is not UTF-8" if "UTF8" in str(err) else f"is damaged ({err})"
            problems.append(Problem(where, f"column '{name}' {reason}"))
            return None
    return table


def check_rows(table: pa.Table, kind: type[R], where: str, problems: list[Problem]) -> list[R]:
    """The records of a conformed table, with every row's problems added."""
    rows = records(table, kind)
    problems += [p for record in rows for p in row_problems(record, where)]
    return rows


def check_table(table: pa.Table, kind: type[Record], where: str, problems: list[Problem]) -> None:
    """``check_rows`` without making records where the columns show every row is sound: a store's million
    measurements and samples are checked column by column; a table with a bad row is checked row by row, to name it."""
    if not _columns_sound(table, kind):
        check_rows(table, kind, where, problems)


def _columns_sound(table: pa.Table, kind: type[Record]) -> bool:
    """Whether no row of the table can have a ``row_problems`` problem (False when unsure: rows are checked then)."""
    if _json_columns(kind) or kind not in (MeasurementRow, SampleRow):  # run rows: one a file, checked as records
        return False
    for name in {*_required(kind), *_never_null(kind)}:
        column = table.column(name)
        if column.null_count or (name in _required(kind) and pa.types.is_string(column.type) and _has(column, "")):
            return False
    if kind is MeasurementRow:
        phases = pc.fill_null(table.column("phase"), PHASE_EVALUATE)
        return _all_in(table.column("resource"), (*RESOURCES, QUALITY)) and _all_in(phases, (PHASE_EVALUATE, *PHASES))
    return True


def _has(column: pa.ChunkedArray, value: str) -> bool:
    return bool(pc.any(pc.equal(column, value)).as_py())


def _all_in(column: pa.ChunkedArray, valid: tuple[str, ...]) -> bool:
    return bool(pc.all(pc.is_in(column, value_set=pa.array(valid))).as_py() in (True, None))


def read_records(path: Path, kind: type[R], root: Path, problems: list[Problem]) -> list[R]:
    """The records of one Parquet file (nulls for columns added since it was written), or none if it is bad."""
    table = read_conformed(path, kind, root, problems)
    return [] if table is None else check_rows(table, kind, path.relative_to(root).as_posix(), problems)


def _bad_json(record: Record, name: str, expected: type) -> bool:
    text = getattr(record, name)
    if text is None:
        return False
    try:
        value = json.loads(text)
        json.dumps(value, ensure_ascii=False).encode()  # a lone surrogate (\udcff) cannot be written as UTF-8
    except (ValueError, RecursionError):  # not JSON, nested too deep to be ours, or not text
        return True
    return not isinstance(value, expected)


@cache
def _required(kind: type[Record]) -> tuple[str, ...]:
    """``required_columns``, worked out once per record type (every row of a million is checked)."""
    return kind.required_columns()


@cache
def _json_columns(kind: type[Record]) -> dict[str, type]:
    """``json_columns``, worked out once per record type."""
    return kind.json_columns()


@cache
def _never_null(kind: type[Record]) -> tuple[str, ...]:
    """Columns whose record type has no None: the commands sort, join and count them, so a stored null is bad."""
    hints = get_type_hints(kind)
    return tuple(f.name for f in fields(kind) if type(None) not in get_args(hints[f.name]))


def row_problems(record: Record, where: str) -> list[Problem]:
    """What is wrong with one row: empty required values first, then the record's own invariants."""
    empty = [c for c in _required(type(record)) if getattr(record, c) in (None, "")]
    empty += [c for c in _never_null(type(record)) if getattr(record, c) is None and c not in empty]
    if empty:
        return [Problem(where, f"a {record.table} row has no {c}") for c in empty]
    reasons = [
        f"{c} is not a JSON {JSON_NAMES[expected]}"
        for c, expected in _json_columns(type(record)).items()
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
    stack = json.loads(run.stack) if run.stack and not _bad_json(run, "stack", list) else []
    if not all(_stack_entry(entry) for entry in stack):  # read entry by entry: names joined, parameters sorted
        problems.append("stack is not a JSON list of objects with a name (text) and params (an object)")
    hardware = json.loads(run.hardware) if run.hardware and not _bad_json(run, "hardware", dict) else {}
    problems += [f"hardware probe {k!r} is not a JSON object" for k in MACHINE_PROBES if _not_object(hardware.get(k))]
    return problems


def _stack_entry(entry: object) -> bool:
    """Whether one stack entry is what ``RunRecord.stack_entries`` reads."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("name"), str)
        and bool(entry["name"])
        and isinstance(entry.get("params", {}), dict)
    )


def _not_object(value: object) -> bool:
    """A probe's value that ``RunRecord.machine`` cannot read fields of (it skips an empty one)."""
    return bool(value) and not isinstance(value, dict)


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
