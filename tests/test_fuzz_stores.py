"""Fuzzed results stores and pulled datasets end in results or one clear EffbenchError, never another exception.

Each example starts from a valid store (or dataset folder) and damages it the way disks, interrupted writes, other
tools and hostile Hub repos do: random bytes, truncation, flipped bytes, foreign or mistyped Parquet tables, odd
values, deleted, duplicated and stray files, odd file names, symbolic links, a named pipe. Then the readers and the
commands run in this process: a store's bad files are skipped and named once, a dataset is taken whole or refused,
and a refused pull or build changes nothing. Derandomized and without a database: every run tries the same inputs.
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from effbench.api.vocabulary import PHASES, QUALITY, RESOURCES, STAGES
from effbench.errors import EffbenchError
from effbench.present import leaderboard
from effbench.records import PHASE_EVALUATE, MeasurementRow, Record, RunRecord, SampleRow, TaxonomyRow
from effbench.store.load import Results, load
from effbench.store.ownership import MANIFEST
from effbench.store.results import ResultsStore
from effbench.store.validate import SAFE_ID, VERSION_KEY
from tests.conftest import cli
from tests.hub_server import GITATTRIBUTES, HubServer, Repo
from tests.store_helpers import synthetic_store, two_machine_store
from tests.test_fuzz import fuzz
from tests.test_hub import TOKEN, hub_server  # noqa: F401 - the local Hub fixture

KINDS: dict[str, type[Record]] = {kind.table: kind for kind in (RunRecord, MeasurementRow, SampleRow, TaxonomyRow)}
STORE_TABLES = (RunRecord.table, MeasurementRow.table, SampleRow.table)
AN_HOUR = 3600.0


def fuzz_stores(examples: int) -> settings:
    """The suite fuzzer's settings, also allowing function-scoped fixtures and large drawn data (whole stores)."""
    return fuzz(examples, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large)


# --- values -------------------------------------------------------------------------------------------------------

ODD_TEXT = [
    "", " ", "ok", "failed", "baseline", "hwA-0", "hwB", "[bold]", "[/x]", "a\nb", "\r", "../x.parquet", "x" * 100_000,
    "\u202e", "\x00", "\x1b[31m", "²", "٣", "9" * 5000, "1.2", "2.0", "².0", "evaluate", "apply", "quality", "memory",
    "\ufeff", "😀", "$x$", "{}", "nan", "zoo:micro-m", "micro_copy", "|", "`", "\\", "<b>", "&amp;",
]  # fmt: skip
texts = st.sampled_from(ODD_TEXT) | st.text(st.characters(codec="utf-8"), max_size=16)
JSON_TEXTS = [
    "{}", "[]", "[1]", "[{}]", '[{"name": 1}]', '[{"name": "x", "params": 1}]', '[{"name": "x", "params": []}]',
    '[{"name": "baseline", "params": {}}, {"name": ["x"]}]', '{"cpu": 1}', '{"cpu": [1]}', '{"cpu": {"model": 1}}',
    '{"cpu": {"model": "\\udcff", "logical_cores": []}}', '{"gpu": {"name": ["x"]}}', '{"os": "Linux"}',
    '{"memory": {"total_gib": "x"}}', '{"limit": "x"}', '{"scenarios": 1}', '{"load": "x"}', '{"a": NaN}', "null",
    "1e999", "NaN", "[" * 3000 + "]" * 3000, '"\\udcff"', '{"\\udcff": "\\ud800"}', "{", "",
]  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts | st.just("\udcff"),  # JSON can hold a lone half
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
probes = st.fixed_dictionaries(
    {}, optional={key: json_values for key in ("model", "logical_cores", "total_gib", "system", "machine", "name")}
)
# The shapes the commands read JSON columns as, with any value in any place.
JSON_SHAPES: dict[str, st.SearchStrategy[Any]] = {
    "stack": st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["baseline", "dtype"]) | json_values},
            optional={"params": st.dictionaries(texts, json_values, max_size=2) | json_values},
        )
        | json_values,
        max_size=3,
    ),
    "hardware": st.dictionaries(st.sampled_from(["cpu", "memory", "os", "gpu"]) | texts, probes | json_values),
}


def json_texts(column: str) -> st.SearchStrategy[str]:
    """JSON text for a column: odd documents, or the column's shape with odd values."""
    return st.sampled_from(JSON_TEXTS) | JSON_SHAPES.get(column, json_values).map(json.dumps)


any_int64 = st.integers(-(2**63), 2**63 - 1)
seconds = st.integers(-(10**11), 10**11) | any_int64 | st.integers(1_700_000_000, 1_800_000_000)

ARROW: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "string": (pa.string(), texts),
    "large_string": (pa.large_string(), texts),
    "binary": (pa.binary(), st.binary(max_size=16)),
    "int64": (pa.int64(), any_int64),
    "int8": (pa.int8(), st.integers(-128, 127)),
    "float64": (pa.float64(), st.floats()),
    "float32": (pa.float32(), st.floats(width=32)),
    "bool": (pa.bool_(), st.booleans()),
    "timestamp[s, UTC]": (pa.timestamp("s", tz="UTC"), seconds),
    "timestamp[ns, UTC]": (pa.timestamp("ns", tz="UTC"), any_int64),
    "timestamp[ms, +01:00]": (pa.timestamp("ms", tz="+01:00"), seconds),
    "timestamp[us]": (pa.timestamp("us"), seconds),
    "date32": (pa.date32(), st.dates()),
    "list<string>": (pa.list_(pa.string()), st.lists(st.none() | texts, max_size=3)),
    "list<int64>": (pa.list_(pa.int64()), st.lists(st.none() | any_int64, max_size=3)),
    "null": (pa.null(), st.none()),
    "struct": (pa.struct([("name", pa.string())]), st.fixed_dictionaries({"name": st.none() | texts})),
    "dictionary": (pa.dictionary(pa.int32(), pa.string()), texts),
}
# Values that pass validation, so examples reach the commands' own code with odd but valid rows.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "schema_version": st.sampled_from(["1.0", "1.1", "1.2", "1.9", "1.99", "2.0", "²", "9" * 5000, "x", "1"]),
    "status": st.sampled_from(["ok", "failed"]),
    "resource": st.sampled_from([*RESOURCES, QUALITY]),
    "phase": st.sampled_from([PHASE_EVALUATE, *PHASES]),
    "stage": st.sampled_from(STAGES),
    "kind": st.sampled_from(["technique", "family"]),
    "hardware_fingerprint": st.sampled_from(["hwA", "hwB", "x", "A" * 64]),
    "metric": st.sampled_from(["latency", "exact_match", "weight_bytes", "peak_memory", "energy_per_token"]),
    "task": st.sampled_from(["", "micro_copy", "micro_text"]),
    "unit": st.sampled_from(["", "ms", "MB", "MiB", "J/token", "kWh"]),
    "scenario": st.sampled_from(["", "single-stream", "server(rate=4/s)"]),
    "technique": st.sampled_from(["baseline", "dtype", "prune-magnitude", "a + b", "+"]),
    "resources": st.lists(st.sampled_from(RESOURCES), max_size=3),
    "tasks": st.lists(st.sampled_from(["micro_copy", "micro_text", ""]), max_size=3),
}


def arrow_type_name(arrow: pa.DataType) -> str:
    """The ARROW entry of a record column's type."""
    return next(name for name, (known, _) in ARROW.items() if known.equals(arrow))


def column_values(data: st.DataObject, field: pa.Field | None, rows: int) -> pa.Array:
    """Values for ``rows`` rows: of the column's own type (often plausible, with nulls) or of any other type."""
    choices = ["own type", "plausible", "json", "other type"] if field is not None else ["other type"]
    how = data.draw(st.sampled_from(choices), label="values")
    if how == "other type" or field is None:
        arrow, values = ARROW[data.draw(st.sampled_from(sorted(ARROW)), label="type")]
    else:
        arrow, values = ARROW[arrow_type_name(field.type)]
        if how == "plausible" and field.name in PLAUSIBLE:
            values = PLAUSIBLE[field.name]
        elif how == "json" and pa.types.is_string(arrow):
            values = json_texts(field.name)
    drawn = data.draw(st.lists(st.none() | values, min_size=rows, max_size=rows), label="column")
    return pa.array(drawn, type=arrow)


# --- damage -------------------------------------------------------------------------------------------------------


def write_table(table: pa.Table, path: Path) -> None:
    """Write a table as Parquet, or random bytes where pyarrow cannot write it (still a damaged file)."""
    try:
        pq.write_table(table, path)
    except (pa.ArrowException, ValueError, TypeError):
        event("pyarrow could not write the table")
        path.write_bytes(b"PAR1 not written PAR1")


def read_table(path: Path) -> pa.Table | None:
    """A file's table, or None when it is no (longer a) readable Parquet file."""
    try:
        return pq.read_table(io.BytesIO(path.read_bytes())) if path.is_file() and not path.is_symlink() else None
    except (pa.ArrowException, OSError):
        return None


def random_table(data: st.DataObject, kind: type[Record]) -> pa.Table:
    """A table of random columns: the kind's names, odd names and duplicates, any types, nulls, 0-3 rows."""
    odd_names = st.sampled_from(["../x.parquet", "", "a\nb", "x" * 1000, "__index_level_0__", "é", "[bold]", "run_id"])
    names = data.draw(st.lists(st.sampled_from(kind.schema().names) | odd_names | texts, max_size=6), label="columns")
    rows = data.draw(st.integers(0, 3), label="rows")
    fields = {f.name: f for f in kind.schema()}
    return pa.Table.from_arrays([column_values(data, fields.get(name), rows) for name in names], names=names)


def set_column(data: st.DataObject, table: pa.Table, kind: type[Record]) -> pa.Table:
    """The table with one column (the kind's, the file's or a new one) replaced by drawn values."""
    names = sorted({*kind.schema().names, *table.schema.names})
    name = data.draw(st.sampled_from(names) | texts, label="column")
    fields = {f.name: f for f in kind.schema()}
    return with_column(table, name, column_values(data, fields.get(name), len(table)))


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """The table with column ``name`` replaced by ``values``, or added."""
    if name in table.schema.names:
        return table.set_column(table.schema.get_field_index(name), name, values)
    return table.append_column(name, values)


def odd_but_valid(data: st.DataObject, table: pa.Table, kind: type[Record]) -> pa.Table:
    """One of the kind's columns (run ids kept) with values of its type, often valid: what the commands must show."""
    columns = [f for f in kind.schema() if f.name != "run_id"]
    shown = [f for f in columns if f.name in kind.json_columns()]  # JSON the commands take apart: half the time
    field = data.draw(st.sampled_from(columns) | st.sampled_from(shown or columns), label="column")
    if field.name in kind.json_columns():
        values = json_texts(field.name)
    else:
        values = PLAUSIBLE.get(field.name, ARROW[arrow_type_name(field.type)][1])
    if field.name not in kind.required_columns():
        values = st.none() | values
    drawn = data.draw(st.lists(values, min_size=len(table), max_size=len(table)), label="values")
    return with_column(table, field.name, pa.array(drawn, type=field.type))


FILE_DAMAGE = [
    "random bytes", "parquet-framed bytes", "truncate", "flip bytes", "empty", "delete", "random table",
    "set a column", "set a column", "odd but valid", "odd but valid", "odd but valid", "odd but valid", "set run_id",
    "drop columns", "no rows", "schema metadata",
    "directory", "symlink loop", "dangling symlink", "symlink outside", "named pipe",
]  # fmt: skip


def damage_file(data: st.DataObject, path: Path, kind: type[Record]) -> None:
    """Damage one file (or create a damaged one) in one of the ways FILE_DAMAGE names."""
    how = data.draw(st.sampled_from(FILE_DAMAGE), label=f"damage to {path.parent.name}/{path.name}")
    event(how)
    regular = path.is_file() and not path.is_symlink()
    content, table = (path.read_bytes(), read_table(path)) if regular else (b"", None)
    if not regular:  # never write through a link, into a pipe or onto a folder
        remove(path)
    if (table is None or not table.num_columns) and how in ("set a column", "odd but valid", "set run_id",
                                                            "drop columns", "no rows", "schema metadata"):  # fmt: skip
        how = "random table"
    if how in ("directory", "symlink loop", "dangling symlink", "symlink outside", "named pipe", "delete"):
        remove(path)
    match how:
        case "random bytes":
            path.write_bytes(data.draw(st.binary(max_size=300), label="bytes"))
        case "parquet-framed bytes":  # passes the magic check: the reader itself must refuse it
            path.write_bytes(b"PAR1" + data.draw(st.binary(max_size=300), label="bytes") + b"PAR1")
        case "truncate":
            path.write_bytes(content[: data.draw(st.integers(0, len(content)), label="keep")])
        case "flip bytes" if content:
            flipped = bytearray(content)
            for at, mask in data.draw(st.lists(st.tuples(st.integers(0, len(content) - 1), st.integers(1, 255)),
                                               min_size=1, max_size=8), label="flips"):  # fmt: skip
                flipped[at] ^= mask
            path.write_bytes(bytes(flipped))
        case "empty" | "flip bytes":
            path.write_bytes(b"")
        case "random table":
            write_table(random_table(data, kind), path)
        case "set a column":
            write_table(set_column(data, table, kind), path)
        case "odd but valid":
            write_table(odd_but_valid(data, table, kind), path)
        case "set run_id":
            value = data.draw(st.sampled_from(["hwA-0", "hwA-1", "hwB-0", path.stem, "../x"]) | texts, label="run_id")
            rows = pa.array([value] * len(table), pa.string())
            at = table.schema.get_field_index("run_id")
            write_table(table.set_column(at, "run_id", rows) if at >= 0 else table.append_column("run_id", rows), path)
        case "drop columns":
            dropped = data.draw(st.lists(st.sampled_from(table.schema.names), unique=True), label="dropped")
            write_table(table.drop_columns(dropped), path)
        case "no rows":
            write_table(table.slice(0, 0), path)
        case "schema metadata":
            key = data.draw(st.sampled_from([VERSION_KEY, b"pandas"]), label="key")
            value = data.draw(
                st.sampled_from([b"2.0", b"1.9", b"\xff\xfe", "²".encode(), b"9" * 5000, b"{", b""]) | st.binary(),
                label="metadata",
            )
            write_table(table.replace_schema_metadata({key: value}), path)
        case "directory":
            path.mkdir()
            if data.draw(st.booleans(), label="holds a file"):
                (path / "inside.parquet").write_bytes(b"PAR1")
        case "symlink loop":
            path.symlink_to(path.name)
        case "dangling symlink":
            path.symlink_to(path.parent / "nowhere" / "x.parquet")
        case "symlink outside":
            path.symlink_to(data.draw(st.sampled_from(["/", "/dev/zero", "/dev/null", "/proc/self/status"])))
        case "named pipe":  # opening it for reading would wait for a writer forever
            os.mkfifo(path)
        case "delete":
            pass


def remove(path: Path) -> None:
    """Remove whatever ``path`` is (file, link, pipe or folder) without following a link."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


ODD_NAMES = [
    "x", "[bold]x", "a\nb", "é", " ", "-", "hwA-9", "hwA-0.parquet", "x" * 200, "\udcff", "run id", "\x1b[31m", "😀",
]  # fmt: skip


def new_name(data: st.DataObject) -> str:
    """A name for a file added to a table folder: plain, odd, too long for an id, or not UTF-8."""
    return data.draw(st.sampled_from(ODD_NAMES) | st.from_regex(r"[A-Za-z0-9_-]{1,70}", fullmatch=True), label="name")


def files_in(folder: Path) -> list[Path]:
    """The entries of a table folder (links and pipes included), in a stable order."""
    return sorted(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else []


def leftover_name(stem: str) -> str:
    """A temporary file's name as the store's atomic writer gives it."""
    return f".{stem}.parquet.{uuid.uuid4().hex}.tmp"


STRAYS = ["notes.txt", "hidden", "leftover", "fresh temporary", "x.parquet folder", "README", "upper case"]


def add_stray(data: st.DataObject, folder: Path) -> None:
    """A file effbench never reads as a table: another format, a hidden or temporary file, a folder."""
    how = data.draw(st.sampled_from(STRAYS), label=f"stray in {folder.name}")
    event(f"stray: {how}")
    folder.mkdir(parents=True, exist_ok=True)
    match how:
        case "notes.txt":
            (folder / "notes.txt").write_text("my notes\n")
        case "hidden":
            (folder / ".hwA-0.parquet").write_bytes(b"PAR1")
        case "leftover" | "fresh temporary":  # an interrupted write's file: old ones are cleaned, fresh ones kept
            path = folder / leftover_name(data.draw(st.sampled_from(["hwA-0", "hwA-9", "x"]), label="of"))
            path.write_bytes(b"PAR1 half-written")
            if how == "leftover":
                os.utime(path, (path.stat().st_mtime - AN_HOUR,) * 2)
        case "x.parquet folder":
            (folder / "x.parquet").mkdir(exist_ok=True)
        case "README":
            (folder / "README.md").write_text("# mine\n")
        case "upper case":
            (folder / "hwA-7.PARQUET").write_bytes(b"PAR1")


def damage_folder(data: st.DataObject, root: Path, tables: tuple[str, ...]) -> None:
    """Replace a whole table folder: missing, a file, or a link to another table's folder."""
    name = data.draw(st.sampled_from(tables), label="table folder")
    how = data.draw(st.sampled_from(["missing", "a file", "link to another table"]), label=f"{name}/ becomes")
    event(f"table folder: {how}")
    remove(root / name)
    if how == "a file":
        (root / name).write_bytes(b"PAR1")
    elif how == "link to another table":
        (root / name).symlink_to(next(t for t in tables if t != name))


def damage(data: st.DataObject, root: Path, tables: tuple[str, ...]) -> set[str] | None:
    """One to four damages of the tables below ``root``; the table files touched, or None when any may be."""
    touched: set[str] = set()
    for _ in range(data.draw(st.integers(1, 4), label="damages")):
        folder = root / data.draw(st.sampled_from(tables), label="table")
        kind = KINDS[folder.name]
        existing = files_in(folder)
        what = data.draw(
            st.sampled_from(["a file", "a file", "a file", "a new file", "a copy", "a stray", "a table folder"]),
            label="damage",
        )
        if what == "a table folder":
            damage_folder(data, root, tables)
            return None
        if what == "a stray":
            add_stray(data, folder)
            continue
        if what == "a file" and existing:
            target = data.draw(st.sampled_from(existing), label="file")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{new_name(data)}.parquet"
        touched.add(target.relative_to(root).as_posix())
        if what == "a copy" and existing:  # another run's rows (or a whole shard) under this name: a duplicate
            source = data.draw(st.sampled_from(existing), label="copy of")
            if source != target:
                remove(target)
                if source.is_file():
                    shutil.copyfile(source, target)
                else:
                    target.mkdir()
            continue
        damage_file(data, target, kind)
    return touched


def snapshot(root: Path) -> dict[str, Any]:
    """Everything below ``root`` (without following links): files' bytes, links' targets, other entries' types."""
    found: dict[str, Any] = {}
    for folder, dirs, names in os.walk(root):
        for name in [*dirs, *names]:
            path = Path(folder, name)
            mode = path.lstat().st_mode
            rel = path.relative_to(root).as_posix()
            if stat.S_ISLNK(mode):
                found[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(mode):
                found[rel] = path.read_bytes()
            else:
                found[rel] = stat.S_IFMT(mode)
    return found


# --- what must hold -----------------------------------------------------------------------------------------------


def one_line(message: str) -> str:
    """An error is one line of text (a file name or value holding a newline must not break it)."""
    assert message.strip() and "\n" not in message.rstrip("\n") and "Traceback" not in message, message
    return message


def listed(message: str) -> str:
    """A rejected dataset: a one-line headline, then one indented ``path: reason`` line per problem."""
    headline, *problems = message.rstrip("\n").split("\n")
    assert headline.strip() and "Traceback" not in message, message
    assert all(line.startswith("  ") and (": " in line or line.startswith("  ... and ")) for line in problems), message
    return message


def exit_line(run: Any, codes: tuple[int, ...]) -> None:
    """A command ends with one of ``codes``, no traceback, and exit status 2 is one line starting ``error: ``."""
    assert run.returncode in codes and "Traceback" not in run.stderr + run.stdout, (run.returncode, run.stderr)
    if run.returncode == 2:
        assert run.stderr.startswith("error: "), run.stderr
        one_line(run.stderr)


def sound_store(root: Path, touched: set[str] | None, pristine: set[str]) -> Results:
    """The store reads as its valid runs and one one-line problem per bad file; untouched runs are all there."""
    results = load(root, "store")
    ids = [run.run_id for run in results.runs]
    assert len(ids) == len(set(ids)) and all(SAFE_ID.fullmatch(i) and run.status in ("ok", "failed")
                                             for i, run in zip(ids, results.runs, strict=True))  # fmt: skip
    assert all((root / "runs" / f"{i}.parquet").exists() for i in ids)
    assert {m.run_id for m in results.measurements} <= set(ids)
    paths = [problem.path for problem in results.problems]
    assert len(paths) == len(set(paths)), paths  # each bad file once
    for problem in results.problems:
        one_line(str(problem))
        assert Path(problem.path).parts[0] in STORE_TABLES and len(Path(problem.path).parts) == 2, problem
    if touched is not None:  # one bad file never takes another run with it
        kept = {i for i in pristine if not touched & {f"{t}/{i}.parquet" for t in STORE_TABLES}}
        assert kept <= set(ids), (kept, ids, results.problems)
    return results


# --- results stores -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the examples' stores and datasets live (one folder per example, removed after it)."""
    return tmp_path_factory.mktemp("fuzz-stores")


@pytest.fixture(scope="module")
def pristine_store(scratch: Path) -> Path:
    """The valid store every example copies: four runs on one machine."""
    return synthetic_store(scratch / "pristine-store").root


@contextmanager
def example_folder(scratch: Path) -> Iterator[Path]:
    """A fresh folder for one example, removed with whatever the example left in it."""
    folder = Path(tempfile.mkdtemp(dir=scratch))
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def damaged_store(data: st.DataObject, pristine: Path, folder: Path) -> tuple[Path, set[str] | None]:
    """A copy of the pristine store, damaged; and the table files touched (None: any)."""
    root = folder / "store"
    shutil.copytree(pristine, root, symlinks=True)
    return root, damage(data, root, STORE_TABLES)


def no_plot(plot: leaderboard.Plot) -> None:
    """A stand-in for the Pareto plot (matplotlib takes 0.1 s a figure): the plots are fuzzed in their own test."""
    plot.path.write_bytes(b"")


@fuzz_stores(170)
@given(data=st.data())
def test_damaged_stores_read_their_valid_runs_and_every_command_ends_cleanly(scratch, pristine_store, data):
    pristine = {p.stem for p in (pristine_store / "runs").iterdir()}
    with example_folder(scratch) as folder:
        root, touched = damaged_store(data, pristine_store, folder)
        stored = sound_store(root, touched, pristine)
        event(f"{len(stored.runs)} valid runs, {len(stored.problems)} bad files")
        assert ResultsStore(root).statuses() == {run.run_id: run.status for run in stored.runs}
        try:
            assert load(root).runs == stored.runs and stored.runs
        except EffbenchError as err:  # only when no run is valid
            assert not stored.runs and (not stored.problems or stored.problems[0].path in str(err))
            one_line(str(err))

        warned = len(stored.problems) + bool(stored.problems)  # a line per bad file, then how to quarantine them
        with mock.patch("effbench.present.leaderboard.draw", no_plot):
            for command in (["report"], ["leaderboard", "--out", str(folder / "boards")]):
                run = cli(*command, "--results", str(root))
                exit_line(run, (0 if stored.runs else 2,))
                if run.returncode == 0:
                    lines = run.stderr.rstrip("\n").split("\n") if run.stderr else []
                    assert len(lines) == warned, run.stderr

        leftovers = ResultsStore(root).leftovers()
        check = cli("store", "check", "--results", str(root))
        exit_line(check, (1 if stored.problems or leftovers else 0,))
        listing = 1 + len(stored.problems) + len(leftovers) + bool(stored.problems or leftovers)  # and the hint
        assert len(check.stdout.rstrip("\n").split("\n")) == listing, check.stdout
        if check.returncode and data.draw(st.booleans(), label="quarantine"):
            moved = cli("store", "check", "--results", str(root), "--quarantine")
            exit_line(moved, (1,))
            again = cli("store", "check", "--results", str(root))
            exit_line(again, (0,))  # the bad files moved aside, the leftovers gone: the store reads clean
            assert ResultsStore(root).statuses() == {run.run_id: run.status for run in stored.runs}


@fuzz_stores(90)
@given(data=st.data())
def test_odd_but_valid_rows_are_shown_built_and_compared(scratch, pristine_store, data):
    pristine = {p.stem for p in (pristine_store / "runs").iterdir()}
    with example_folder(scratch) as folder:
        root = folder / "store"
        shutil.copytree(pristine_store, root)
        for _ in range(data.draw(st.integers(1, 4), label="changes")):
            path = data.draw(st.sampled_from(sorted((root / data.draw(st.sampled_from(STORE_TABLES))).iterdir())))
            kind = KINDS[path.parent.name]
            write_table(odd_but_valid(data, pq.read_table(path), kind), path)
        stored = sound_store(root, None, pristine)
        event(f"{len(stored.runs)} valid runs")
        commands = {
            "report": [],
            "leaderboard": ["--out", str(folder / "boards")],
            "dataset build": ["--out", str(folder / "dataset")],
            "compare": ["--against", str(pristine_store)],
        }
        with mock.patch("effbench.present.leaderboard.draw", no_plot):
            for command, args in commands.items():
                run = cli(*command.split(), "--results", str(root), *args)
                exit_line(run, (0 if stored.runs else 2,))
        if stored.runs:  # what a build writes reads back whole, run for run
            assert {run.run_id for run in load(folder / "dataset", "dataset").runs} == {r.run_id for r in stored.runs}


@fuzz_stores(20)
@given(data=st.data())
def test_leaderboard_plots_of_damaged_stores(scratch, pristine_store, data):
    with example_folder(scratch) as folder:
        root, _ = damaged_store(data, pristine_store, folder)
        stored = load(root, "store")
        run = cli("leaderboard", "--results", str(root), "--out", str(folder / "boards"))
        exit_line(run, (0 if stored.runs else 2,))
        if run.returncode == 0:
            assert len(list((folder / "boards").rglob("pareto-*.png"))) == 3 * len(load(root).hardware())


# --- datasets -----------------------------------------------------------------------------------------------------

DATASET_TABLES = (RunRecord.table, MeasurementRow.table, TaxonomyRow.table)
MANIFESTS = [
    b"", b"{", b"[]", b"null", b'{"kind": "dataset"}', b'{"kind": "dataset", "files": "README.md"}',
    b'{"kind": "dataset", "files": ["../x"]}', b'{"kind": "dataset", "files": ["/etc/passwd"]}',
    b'{"kind": "dataset", "files": [1]}', b'{"kind": 1, "files": []}', b'{"kind": "leaderboards", "files": []}',
    b'{"kind": "dataset", "files": ["README.md"]}', b'{"kind": "dataset", "files": ["runs", "notes.txt"]}',
    b"\xff\xfe",
]  # fmt: skip


def damage_dataset_extras(data: st.DataObject, root: Path) -> None:
    """Damage the card or the manifest: random text or bytes, another manifest, gone, a folder or a link."""
    name = data.draw(st.sampled_from(["README.md", MANIFEST]), label="file")
    how = data.draw(st.sampled_from(["text", "bytes", "manifest", "delete", "folder", "link"]), label=f"{name} is")
    event(f"{name}: {how}")
    path = root / name
    remove(path)
    match how:
        case "text":
            path.write_text(data.draw(texts, label="text"), encoding="utf-8")
        case "bytes":
            path.write_bytes(data.draw(st.binary(max_size=200), label="bytes"))
        case "manifest":
            manifest = json.dumps({"kind": "dataset", "files": data.draw(st.lists(texts, max_size=4), label="files")})
            path.write_bytes(data.draw(st.sampled_from(MANIFESTS) | st.just(manifest.encode()), label="manifest"))
        case "folder":
            path.mkdir()
        case "link":
            path.symlink_to(data.draw(st.sampled_from(["/etc/hostname", "nowhere", name]), label="to"))
        case "delete":
            pass


@pytest.fixture(scope="module")
def pristine_dataset(scratch: Path) -> tuple[Path, Path]:
    """A store of two machines and the dataset folder built from it (`effbench dataset build`, in this process)."""
    store = two_machine_store(scratch / "dataset-source").root
    out = scratch / "pristine-dataset"
    built = cli("dataset", "build", "--results", str(store), "--out", str(out))
    assert built.returncode == 0, built.stderr
    return store, out


def damaged_dataset(data: st.DataObject, pristine: Path, folder: Path) -> Path:
    """A copy of the pristine dataset with its tables, card or manifest damaged."""
    root = folder / "dataset"
    shutil.copytree(pristine, root, symlinks=True)
    if data.draw(st.booleans(), label="damage the tables"):
        damage(data, root, DATASET_TABLES)
    else:
        damage_dataset_extras(data, root)
    if data.draw(st.booleans(), label="damage the card or manifest too"):
        damage_dataset_extras(data, root)
    return root


def load_dataset(root: Path) -> Results | None:
    """The dataset whole (runs unique, every measurement's run there), or None when refused with a clean error."""
    try:
        results = load(root, "dataset")
    except EffbenchError as err:
        event("dataset refused")
        listed(str(err))
        return None
    event("dataset loaded")
    ids = [run.run_id for run in results.runs]
    assert len(ids) == len(set(ids)) and {m.run_id for m in results.measurements} <= set(ids)
    assert all(SAFE_ID.fullmatch(run_id) for run_id in ids)
    return results


@fuzz_stores(120)
@given(data=st.data())
def test_damaged_datasets_load_whole_or_not_at_all_and_a_refused_build_changes_nothing(scratch, pristine_dataset, data):
    store, pristine = pristine_dataset
    with example_folder(scratch) as folder:
        root = damaged_dataset(data, pristine, folder)
        load_dataset(root)
        before = snapshot(root)
        build = cli("dataset", "build", "--results", str(store), "--out", str(root))
        exit_line(build, (0, 2))
        if build.returncode:
            assert snapshot(root) == before  # a folder effbench cannot show it wrote is never changed
        else:
            assert {run.run_id for run in load(root, "dataset").runs} == {run.run_id for run in load(store).runs}


def test_a_stray_name_with_a_newline_is_refused_on_one_line(scratch, pristine_dataset):
    store, pristine = pristine_dataset
    with example_folder(scratch) as folder:
        shutil.copytree(pristine, folder / "dataset")
        (folder / "dataset" / "runs" / "a\nb.parquet").write_bytes(b"PAR1")
        build = cli("dataset", "build", "--results", str(store), "--out", str(folder / "dataset"))
        exit_line(build, (2,))


# --- pulled datasets ----------------------------------------------------------------------------------------------

HOSTILE_PATHS = [
    "runs/../evil.parquet", "../evil.parquet", "runs/./hw-x.parquet", "runs//hw-x.parquet", "runs/a\nb.parquet",
    "runs/%2e%2e/x.parquet", "runs/" + "x" * 300 + ".parquet", "measurements/ .parquet", "taxonomy/\\..\\x.parquet",
    "runs/.cache/huggingface/x.parquet", "runs/x.parquet/y.parquet", "README.md/x", "/etc/passwd",
]  # fmt: skip
repo_numbers = itertools.count()


def utf8(name: str) -> bool:
    """Whether a name is UTF-8 text, as every name in a Hub repo is (a non-UTF-8 byte reads as a lone surrogate)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def served_files(root: Path) -> dict[str, bytes]:
    """The regular files below ``root`` by relative path, as a Hub repo can hold them (no link, pipe, odd bytes)."""
    files = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            if stat.S_ISREG(path.lstat().st_mode) and utf8(path.as_posix()):
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def servable(root: Path) -> bool:
    """Whether the Hub holds the tables as they are here: only regular files, no link, pipe or empty folder."""
    for folder, dirs, names in os.walk(root):
        if Path(folder) != root and not dirs and not names:
            return False
        if not all(stat.S_ISREG(Path(folder, n).lstat().st_mode) and utf8(n) for n in names) or any(
            Path(folder, d).is_symlink() for d in dirs
        ):
            return False
    return True


def serve(server: HubServer, files: dict[str, bytes]) -> str:
    """Put ``files`` on the local Hub as one commit of a new public dataset repo; returns its id."""
    repo_id = f"effbench-org/fuzz-{next(repo_numbers)}"
    repo = Repo(repo_id, "dataset", private=False)
    repo.add_commit("initial commit", "", {".gitattributes": GITATTRIBUTES, **files})
    with server.state.lock:
        server.state.repos[("dataset", repo_id)] = repo
    return repo_id


@pytest.fixture(scope="module")
def pristine_target(scratch: Path) -> Path:
    """The results store pulls go into: the same run ids as the dataset's second machine, other figures."""
    return synthetic_store(scratch / "pristine-target", "hwB").root


@fuzz_stores(35)
@given(data=st.data())
def test_pulling_a_damaged_dataset_imports_it_whole_or_changes_nothing(
    hub_server,  # noqa: F811 - the fixture
    monkeypatch,
    scratch,
    pristine_dataset,
    pristine_target,
    data,
):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # never a token saved on this machine
    # The client's download bar is drawn on stderr before any error (a terminal overwrites it): not under test here.
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", True)
    _, pristine = pristine_dataset
    with example_folder(scratch) as folder:
        root = damaged_dataset(data, pristine, folder)
        files = served_files(root)
        some = st.lists(st.sampled_from(HOSTILE_PATHS), min_size=1, max_size=2, unique=True)
        hostile = data.draw(some if data.draw(st.integers(0, 3)) == 0 else st.just([]), label="hostile paths")
        event("hostile paths" if hostile else "no hostile path")
        contents = st.sampled_from(sorted(files.values()) or [b"PAR1"])
        files.update({path: data.draw(contents, label=path) for path in hostile})
        repo = serve(hub_server, files)
        target = folder / "target"
        shutil.copytree(pristine_target, target)
        before = snapshot(target)
        run = cli("dataset", "pull", repo, "--out", str(target), "--endpoint", hub_server.url)
        assert run.returncode in (0, 2) and "Traceback" not in run.stderr, run.stderr
        if run.returncode:
            event("pull refused")
            assert run.stderr.startswith("error: "), run.stderr
            listed(run.stderr)
            assert snapshot(target) == before  # nothing imported, not even a lock file
        else:
            event("pull imported")
            pulled = sound_store(target, set(), set())
            assert not pulled.problems and {p.stem for p in (pristine_target / "runs").iterdir()} <= {
                run.run_id for run in pulled.runs
            }
        if not hostile and servable(root):  # the repo holds the folder as it is: the pull reads as the folder does
            local = load_dataset(root)
            assert (run.returncode == 0) == (local is not None), run.stderr
            if local is not None:
                assert {r.run_id for r in local.runs} <= {r.run_id for r in load(target, "store").runs}
