"""The open dataset: read and validate results, merge them by run id, and write the ``runs``, ``measurements``
and ``taxonomy`` tables.

A dataset is a folder (and a Hub dataset repo): ``README.md`` (the card), one Parquet file per hardware
fingerprint under ``runs/`` and ``measurements/``, and ``taxonomy/taxonomy.parquet``. Nothing read is
trusted: every file is checked against the fixed, versioned schema and every row against the invariants
before anything is used, so bad input is rejected whole and never half-imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from effbench.api.types import QUALITY, RESOURCES, STAGES
from effbench.errors import EffbenchError
from effbench.publish.taxonomy import TAXONOMY_SCHEMA
from effbench.store.results import LATER_COLUMNS, SCHEMA_VERSION, TABLES, ResultsStore, parquet_files

SCHEMAS = {**TABLES, "taxonomy": TAXONOMY_SCHEMA}
VERSION_KEY = b"effbench.schema_version"
SAFE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")  # run ids and fingerprints become file names
JSON_COLUMNS = ("technique_params", "settings", "hardware", "versions", "phase_seconds")
REQUIRED = {
    "runs": (
        "run_id",
        "schema_version",
        "model",
        "technique",
        "stage",
        "status",
        "hardware_fingerprint",
        "finished_at",
    ),
    "measurements": ("run_id", "metric", "value", "resource"),
    "taxonomy": ("name", "kind", "stage"),
}
SHOWN_PROBLEMS = 12


def _major(version: str) -> int | None:
    head = str(version).split(".", 1)[0]
    return int(head) if head.isdigit() else None


SUPPORTED_MAJOR = _major(SCHEMA_VERSION)


@dataclass
class Dataset:
    """Runs and their measurements keyed by run id, plus the taxonomy rows."""

    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    measurements: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    taxonomy: list[dict[str, Any]] = field(default_factory=list)

    def table(self, name: str, run_ids: list[str] | None = None) -> pa.Table:
        """One table in the fixed schema (of ``run_ids`` only, if given), in a stable order.

        A run's measurements keep their reported order.
        """
        ids = sorted(self.runs if run_ids is None else run_ids)
        if name == "runs":
            rows = [self.runs[r] for r in ids]
        elif name == "measurements":
            rows = [m for r in ids for m in self.measurements.get(r, [])]
        else:
            rows = sorted(self.taxonomy, key=_taxonomy_order)
        return pa.Table.from_pylist(rows, schema=SCHEMAS[name])

    def hardware(self) -> dict[str, list[str]]:
        """Run ids by hardware fingerprint."""
        groups: dict[str, list[str]] = {}
        for run_id in sorted(self.runs):
            groups.setdefault(self.runs[run_id]["hardware_fingerprint"], []).append(run_id)
        return groups


def _taxonomy_order(row: dict[str, Any]) -> tuple:
    stage = STAGES.index(row["stage"]) if row["stage"] in STAGES else len(STAGES)
    return (row["kind"], stage, row["name"])


@dataclass
class MergeReport:
    """What a merge did, run ids per outcome."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already there, or a newer/ok record there wins
    taxonomy_changed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the merged dataset differs from the one merged into."""
        return bool(self.added or self.updated or self.taxonomy_changed)


# --- validation --------------------------------------------------------------------------------------------


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Parquet stores second timestamps as milliseconds; any unit with the same time zone is accepted."""
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz == expected.tz
    return actual.equals(expected)


def _schema_problems(schema: pa.Schema, name: str, where: str) -> list[str]:
    expected = SCHEMAS[name]
    problems = []
    version = (schema.metadata or {}).get(VERSION_KEY)
    if version is not None and (_major(version.decode()) or 0) > SUPPORTED_MAJOR:
        problems.append(
            f"{where}: written with schema version {version.decode()}, this effbench reads {SCHEMA_VERSION}: "
            "upgrade effbench"
        )
    for f in expected:
        if f.name not in schema.names:
            if f.name not in LATER_COLUMNS.get(name, ()):
                problems.append(f"{where}: missing column {f.name!r}")
        elif not _type_ok(schema.field(f.name).type, f.type):
            problems.append(f"{where}: column {f.name!r} has type {schema.field(f.name).type}, expected {f.type}")
    problems += [f"{where}: unexpected column {n!r}" for n in schema.names if n not in expected.names]
    return problems


def _read_table(path: Path, name: str, root: Path, problems: list[str]) -> pa.Table | None:
    """One Parquet file in the fixed schema, or None with the reasons added to ``problems``."""
    where = path.relative_to(root).as_posix()
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        problems.append(f"{where}: not a readable Parquet file ({err})")
        return None
    found = _schema_problems(table.schema, name, where)
    if found:
        problems += found
        return None
    for f in SCHEMAS[name]:
        if f.name not in table.schema.names:  # written by an earlier minor version
            table = table.append_column(f, pa.nulls(len(table), f.type))
    try:
        return table.select(SCHEMAS[name].names).cast(SCHEMAS[name])
    except (pa.ArrowException, ValueError) as err:
        problems.append(f"{where}: values do not fit the schema ({err})")
        return None


def _json_object(text: str | None) -> bool:
    if text is None:
        return True
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _run_problems(run: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}: {c} is empty" for c in REQUIRED["runs"] if run[c] in (None, "")]
    if problems:
        return problems
    if not SAFE_ID.fullmatch(run["run_id"]):
        problems.append(f"{where}: run_id {run['run_id']!r} is not 1-64 letters, digits, '-' or '_'")
    if not SAFE_ID.fullmatch(run["hardware_fingerprint"]):
        problems.append(f"{where}: hardware_fingerprint {run['hardware_fingerprint']!r} is not a plain id")
    major = _major(run["schema_version"])
    if major is None or major > SUPPORTED_MAJOR:
        problems.append(
            f"{where}: run {run['run_id']} has schema version {run['schema_version']}, this effbench reads "
            f"{SCHEMA_VERSION}: upgrade effbench"
        )
    if run["status"] not in ("ok", "failed"):
        problems.append(f"{where}: run {run['run_id']} has status {run['status']!r}, expected 'ok' or 'failed'")
    problems += [
        f"{where}: run {run['run_id']}: {c} is not a JSON object" for c in JSON_COLUMNS if not _json_object(run[c])
    ]
    return problems


def _measurement_problems(row: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}: a measurement has no {c}" for c in REQUIRED["measurements"] if row[c] in (None, "")]
    if not problems and row["resource"] not in (*RESOURCES, QUALITY):
        problems.append(f"{where}: measurement {row['metric']!r} has unknown resource {row['resource']!r}")
    return problems


def _taxonomy_problems(row: dict[str, Any], where: str) -> list[str]:
    problems = [f"{where}: a taxonomy row has no {c}" for c in REQUIRED["taxonomy"] if row[c] in (None, "")]
    if problems:
        return problems
    if row["kind"] not in ("technique", "family"):
        problems.append(f"{where}: {row['name']!r} has kind {row['kind']!r}, expected 'technique' or 'family'")
    if row["stage"] not in STAGES:
        problems.append(f"{where}: {row['name']!r} has unknown stage {row['stage']!r}")
    if not set(row["resources"] or ()) <= set(RESOURCES):
        problems.append(f"{where}: {row['name']!r} has unknown resources {row['resources']}")
    return problems


def _raise_if(problems: list[str], what: str) -> None:
    if problems:
        more = f"\n  ... and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
        raise EffbenchError(
            f"{what} is invalid; nothing was changed:\n  " + "\n  ".join(problems[:SHOWN_PROBLEMS]) + more
        )


def read_store(root: Path) -> Dataset:
    """A results store's committed runs, validated (an empty Dataset when the store has none)."""
    store = ResultsStore(root)
    problems: list[str] = []
    ds = Dataset()
    for path in store.files("runs"):
        table = _read_table(path, "runs", root, problems)
        if table is None:
            continue
        rows = table.to_pylist()
        if len(rows) != 1 or rows[0]["run_id"] != path.stem:
            problems.append(f"{path.relative_to(root)}: expected the one row of run {path.stem}, found {len(rows)}")
            continue
        problems += _run_problems(rows[0], str(path.relative_to(root)))
        ds.runs[path.stem] = rows[0]
    for path in store.files("measurements"):
        if path.stem not in ds.runs:
            continue  # an interrupted run: the store itself ignores it
        table = _read_table(path, "measurements", root, problems)
        if table is None:
            continue
        rows = table.to_pylist()
        where = str(path.relative_to(root))
        problems += [p for row in rows for p in _measurement_problems(row, where)]
        if any(row["run_id"] != path.stem for row in rows):
            problems.append(f"{where}: holds measurements of another run")
        ds.measurements[path.stem] = rows
    _raise_if(problems, f"the results store {root}")
    return ds


def read_dataset(root: Path) -> Dataset:
    """A dataset folder (built here or downloaded), validated as a whole."""
    if not (root / "runs").is_dir():
        raise EffbenchError(f"{root} is not an effbench dataset: it has no runs/ folder")
    problems: list[str] = []
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {name: [] for name in SCHEMAS}
    for name in SCHEMAS:
        files = parquet_files(root / name)
        if name == "taxonomy" and not files:
            problems.append("taxonomy/: no Parquet file")
        for path in files:
            table = _read_table(path, name, root, problems)
            where = path.relative_to(root).as_posix()
            rows[name] += [(where, row) for row in (table.to_pylist() if table is not None else [])]
    ds = Dataset()
    for where, run in rows["runs"]:
        problems += _run_problems(run, where)
        if run["run_id"] in ds.runs:
            problems.append(f"{where}: run {run['run_id']} appears twice")
        ds.runs[run["run_id"]] = run
    for where, row in rows["measurements"]:
        problems += _measurement_problems(row, where)
        if row["run_id"] not in ds.runs:
            problems.append(f"{where}: run {row['run_id']} has measurements but no runs row")
        ds.measurements.setdefault(row["run_id"], []).append(row)
    for where, row in rows["taxonomy"]:
        problems += _taxonomy_problems(row, where)
        ds.taxonomy.append(row)
    if len({(r["kind"], r["name"]) for r in ds.taxonomy}) != len(ds.taxonomy):
        problems.append("taxonomy: an entry appears twice")
    _raise_if(problems, f"the dataset in {root}")
    return ds


# --- merging -----------------------------------------------------------------------------------------------


def _preferred(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """A successful run beats a failed one; otherwise the more recent record of the same run wins."""
    return (new["status"] == "ok", new["finished_at"]) > (old["status"] == "ok", old["finished_at"])


def _same(a: Any, b: Any) -> bool:
    """Equal records; NaN equals NaN here (repr compares them as text)."""
    return repr(a) == repr(b)


def merge(base: Dataset, incoming: Dataset) -> tuple[Dataset, MergeReport]:
    """``base`` with ``incoming`` added, keyed by run id: never a duplicate run, never a lost one."""
    merged = Dataset(dict(base.runs), dict(base.measurements))
    report = MergeReport()
    for run_id, run in sorted(incoming.runs.items()):
        rows = incoming.measurements.get(run_id, [])
        old = base.runs.get(run_id)
        if old is None:
            report.added.append(run_id)
        elif _same((run, rows), (old, base.measurements.get(run_id, []))) or not _preferred(run, old):
            report.kept.append(run_id)
            continue
        else:
            report.updated.append(run_id)
        merged.runs[run_id] = run
        merged.measurements[run_id] = rows
    entries = {(r["kind"], r["name"]): r for r in base.taxonomy}
    before = dict(entries)
    entries.update({(r["kind"], r["name"]): r for r in incoming.taxonomy})
    merged.taxonomy = list(entries.values())
    report.taxonomy_changed = not _same(sorted(entries.items()), sorted(before.items()))
    return merged, report


# --- writing -----------------------------------------------------------------------------------------------


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: SCHEMA_VERSION.encode()}), path)


def write_dataset(ds: Dataset, out: Path, card: str) -> list[Path]:
    """Write the dataset folder atomically (built beside ``out``, then swapped in); returns the files."""
    check_replaceable(out, (out / "taxonomy").is_dir(), "effbench dataset")  # a results store has runs/ too
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    for fingerprint, run_ids in ds.hardware().items():
        for name in TABLES:
            _write_parquet(ds.table(name, run_ids), tmp / name / f"hw-{fingerprint}.parquet")
    _write_parquet(ds.table("taxonomy"), tmp / "taxonomy" / "taxonomy.parquet")
    (tmp / "README.md").write_text(card, encoding="utf-8")
    swap_in(tmp, out)
    return sorted(p for p in out.rglob("*") if p.is_file())


def check_replaceable(out: Path, ours: bool, what: str) -> None:
    """Refuse to replace a folder holding something other than earlier output of ours."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not ours)):
        raise EffbenchError(f"{out} is not empty and holds no {what}: choose a new folder")


def swap_in(tmp: Path, out: Path) -> None:
    """Replace ``out`` with the fully written ``tmp`` so a reader never sees half of the new output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out)


def import_into_store(ds: Dataset, root: Path) -> MergeReport:
    """Add a validated dataset's runs to a results store, run by run, keeping the better record of each run."""
    merged, report = merge(read_store(root), Dataset(ds.runs, ds.measurements))  # a store holds no taxonomy
    store = ResultsStore(root)
    for run_id in (*report.added, *report.updated):
        store.write_run(merged.runs[run_id], merged.measurements.get(run_id, []))
    return report


def read_any(root: Path) -> Dataset:
    """A dataset folder (it has taxonomy/) or else a results store, validated."""
    if not root.is_dir():
        raise EffbenchError(f"{root} does not exist or is not a folder")
    ds = read_dataset(root) if (root / "taxonomy").is_dir() else read_store(root)
    if not ds.runs:
        raise EffbenchError(f"no results in {root}")
    return ds


# --- reading records ---------------------------------------------------------------------------------------


def hardware_label(hardware_json: str | None) -> str:
    """A short description of a run's machine from its probe data, e.g. 'AMD EPYC (2 cores), 24 GiB, Linux x86_64'."""
    data = json.loads(hardware_json or "{}")
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
