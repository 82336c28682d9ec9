"""A results store's snapshot: each table's valid per-run rows in one Arrow file, so reading 10 k runs opens a
few files (and those written since) rather than 30 k.

The per-run files stay the store, and a read never writes into it. The snapshot is a cache in effbench's cache
folder (``snapshots/<store key>/<table>.arrow``, Arrow's IPC format uncompressed and memory-mapped when read, as
``datasets`` keeps its cache: the rows are used where the page cache holds them, with no copy or decompression and
no fresh memory to zero; LZ4 in format 2, Parquet in format 1): the rows of every valid file in file order, and in its
metadata each file's name, size, modification time and inode as they were before it was read. A file whose stat
differs (rewritten, replaced, new) is read and checked by itself (many, half by a forked process), one that is gone
is dropped; a bad file is never in it (it is read, and reported, every time). A snapshot of another effbench or
schema version, or one that does not read, is ignored and rebuilt; the stores read most recently keep theirs.
Writing it is best effort: where the cache cannot be written, the store is read file by file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

from effbench import aside
from effbench.measure.accuracy import cache_folder
from effbench.records import SCHEMA_VERSION, Record
from effbench.store.validate import Problem
from effbench.version import __version__

SNAPSHOTS = "snapshots"
KEPT = 16  # stores whose snapshots are kept: the ones read most recently
METADATA_KEY = b"effbench.snapshot"
FORMAT = 3
SUFFIX = ".arrow"
ABANDONED_S = 600.0  # a temporary snapshot file this old was left by a killed reader

Stat = tuple[int, int, int, int]  # size, modification and change times (ns), inode
UNSEEN: Stat = (-1, -1, -1, -1)  # matches no file: read again next time
# A file changed this recently may change again within the file system clock's tick, its stat unchanged (git's "racy"
# files): its rows are used, but it is read again next time.
RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Snapshot:
    """A table's snapshot: its rows, and per file name the stat it was read at and where its rows lie."""

    table: pa.Table
    files: list[tuple[str, Stat, int, int]]  # (name, stat, first row, rows), in file order


def _stats(folder: Path, names: list[str]) -> list[Stat | None]:
    """Each file's stat (None for one that is gone), a system call each and no path object."""
    stats: list[Stat | None] = []
    prefix = os.path.join(folder, "")
    for name in names:
        try:
            info = os.stat(prefix + name)
        except OSError:
            stats.append(None)
            continue
        stats.append((info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino))
    return stats


def _stamp() -> dict[str, object]:
    return {"format": FORMAT, "effbench_version": __version__, "schema_version": SCHEMA_VERSION}


def snapshot_folder(root: Path) -> Path | None:
    """Where a store's snapshot is kept: a folder per store (its resolved path and its folder's identity)."""
    try:
        info, resolved = root.stat(), root.resolve()
    except (OSError, RuntimeError):
        return None
    identity = f"{resolved}\0{info.st_dev}\0{info.st_ino}".encode(errors="surrogateescape")
    return cache_folder() / SNAPSHOTS / hashlib.sha256(identity).hexdigest()[:32]


def load_snapshot(folder: Path, kind: type[Record]) -> Snapshot | None:
    """The table's snapshot, or None when there is none usable (missing, unreadable, another version's)."""
    path = folder / f"{kind.table}{SUFFIX}"
    try:
        with pa.memory_map(str(path)) as source:  # the table's buffers stay mapped: replaced files, never rewritten
            table = pa.ipc.open_file(source).read_all()
        meta = json.loads((table.schema.metadata or {})[METADATA_KEY])
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("stamp") != _stamp():
        return None
    table = table.replace_schema_metadata(None)
    if table.schema != kind.schema():
        return None
    try:
        files = [(name, tuple(stat), start, rows) for name, stat, start, rows in meta["files"]]
    except (KeyError, TypeError, ValueError):
        return None
    return Snapshot(table, files)  # type: ignore[arg-type]


def save_snapshot(folder: Path, kind: type[Record], table: pa.Table, files: list[tuple[str, Stat, int, int]]) -> None:
    """Write the table's snapshot atomically (a reader sees the old one or the new one), and drop the snapshots of
    the stores read least recently; silently nothing where the cache cannot be written."""
    meta = {"stamp": _stamp(), "files": [[name, list(stat), start, rows] for name, stat, start, rows in files]}
    path = folder / f"{kind.table}{SUFFIX}"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f".{path.name}.*.tmp"):  # a killed reader's; a live one's is younger
            if time.time() - old.stat().st_mtime > ABANDONED_S:
                old.unlink(missing_ok=True)
        stamped = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta)})
        with pa.ipc.new_file(str(tmp), stamped.schema) as writer:
            writer.write_table(stamped)
        os.replace(tmp, path)
        (folder / f"{kind.table}.parquet").unlink(missing_ok=True)  # format 1's, of an earlier effbench
        others = sorted(folder.parent.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in others[KEPT:]:
            shutil.rmtree(stale, ignore_errors=True)
    except Exception:  # a cache: a full disk, a read-only home or anything else never stops a read
        with contextlib.suppress(Exception):
            tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Read:
    """The valid rows of a table's files, in file order, where each file's rows lie, and the bad files."""

    table: pa.Table
    spans: dict[str, tuple[int, int]]  # file stem -> (start, stop)
    bad: set[str]  # stems of the files read_one refused
    problems: list[Problem]  # why, in file order


ReadOne = Callable[[Path], "pa.Table | Problem"]  # a file's rows, or why it is bad


def read_files(root: Path, kind: type[Record], folder: Path, names: list[str], read_one: ReadOne) -> Read:
    """The rows of the files ``names`` in ``folder`` (one table's of the store ``root``, sorted): from its snapshot
    where a file is unchanged since, else through ``read_one`` (a bad file's problem, its file left out); the
    snapshot is rewritten when that changed. When no file changed (their names and stats as the snapshot holds them),
    the snapshot is used as it is, without a look at each file's entry."""
    cache = snapshot_folder(root) if names else None
    snapshot = load_snapshot(cache, kind) if cache else None
    if cache and snapshot:
        with contextlib.suppress(OSError):
            os.utime(cache)  # read recently: kept
    stats = _stats(folder, names)  # before reading: a file replaced meanwhile is read again next time
    known = snapshot.files if snapshot else []
    if snapshot is not None and [n for n, *_ in known] == names and [stat for _, stat, *_ in known] == stats:
        return Read(snapshot.table, _spans(known), set(), [])
    entries = {name: (stat, start, rows) for name, stat, start, rows in known}
    was = {name: stat for name, (stat, _, _) in entries.items()}  # each file's stat when the snapshot read it
    unchanged = {name for name, stat in zip(names, stats, strict=True) if stat is not None and was.get(name) == stat}
    changed = [name for name in names if name not in unchanged]
    read = dict(zip(changed, _read_each(folder, changed, read_one), strict=True))
    parts: list[pa.Table] = [snapshot.table] if snapshot else []
    offset = snapshot.table.num_rows if snapshot else 0
    located: list[tuple[str, Stat, int, int]] = []  # (name, stat, first row in the parts, rows)
    bad, problems = set(), []
    for name, stat in zip(names, stats, strict=True):
        if name in unchanged:
            located.append((name, *entries[name]))
            continue
        table = read[name]
        if isinstance(table, Problem):
            bad.add(run_of(name))
            problems.append(table)
            continue
        parts.append(table)
        trusted = stat is not None and time.time_ns() - max(stat[1], stat[2]) > RACY_NS
        located.append((name, stat if trusted else UNSEEN, offset, table.num_rows))
        offset += table.num_rows
    combined = pa.concat_tables(parts) if parts else kind.schema().empty_table()
    if located != known:
        order = [np.arange(start, start + rows) for _, _, start, rows in located]
        combined = combined.take(np.concatenate(order)) if order else kind.schema().empty_table()
        placed, start = [], 0
        for name, stat, _, rows in located:
            placed.append((name, stat, start, rows))
            start += rows
        located = placed
        if cache:
            save_snapshot(cache, kind, combined, located)
    return Read(combined, _spans(located), bad, problems)


def _read_each(folder: Path, names: list[str], read_one: ReadOne) -> list[pa.Table | Problem]:
    """``read_one`` of each file, in order: many (a store read for the first time) half here and half by a forked
    process on the other core (``aside.in_halves``: the checks are Python's, a thread would wait for this one)."""
    halves = aside.in_halves(partial(_packed, folder, read_one=read_one), names, "reading the store's files")
    return [read for table, counts in halves for read in _unpacked(table, counts)]


def _packed(folder: Path, names: Sequence[str], read_one: ReadOne) -> tuple[pa.Table | None, list[int | Problem]]:
    """The files' rows as one table (one object to send back from a process), and each file's rows or problem."""
    read = [read_one(folder / name) for name in names]
    tables = [table for table in read if not isinstance(table, Problem)]
    counts = [table if isinstance(table, Problem) else table.num_rows for table in read]
    return (pa.concat_tables(tables).combine_chunks() if tables else None), counts


def _unpacked(table: pa.Table | None, counts: list[int | Problem]) -> Iterator[pa.Table | Problem]:
    """Each file's rows (a slice of ``table``) or problem, as ``_packed`` packed them."""
    start = 0
    for count in counts:
        if isinstance(count, Problem):
            yield count
            continue
        yield table.slice(start, count)  # type: ignore[union-attr]
        start += count


def run_of(name: str) -> str:
    """A file's run id: its name without the suffix."""
    return name.rsplit(".", 1)[0]


def _spans(files: list[tuple[str, Stat, int, int]]) -> dict[str, tuple[int, int]]:
    return {run_of(name): (start, start + rows) for name, _, start, rows in files}
