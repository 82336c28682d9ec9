"""Paired comparisons a store's earlier reads computed, kept beside its snapshot and found by what they compare.

A paired comparison (``paired.compare_many``: Δ, its bootstrap interval, the ratio's, McNemar's p) is a pure
function of the two runs' outcomes: the same documents, values and weights always give the same figures (the
bootstrap's seed is fixed). So a comparison is looked up by a digest of exactly those arrays, the metric and the
bootstrap's settings: a run rerun, a store edited, any changed value gives another key and is computed afresh;
nothing is ever matched by run id or file date. The file is a cache like the snapshot (``snapshots/<store
key>/comparisons.arrow``): one of another effbench or format version, or one that does not read, is ignored;
writing it is best effort, when the results are let go (or at exit), and only when a comparison was computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
import weakref
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa

from effbench.measure.paired import (
    BOOTSTRAP_ITERATIONS,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    Aligned,
    Outcome,
    Paired,
    compare_aligned,
)
from effbench.version import __version__

FILE = "comparisons.arrow"
FORMAT = 1
METADATA_KEY = b"effbench.comparisons"
KEY_BYTES = 16
SCHEMA = pa.schema(
    [("key", pa.binary(KEY_BYTES)), ("n", pa.int64())]
    + [(f.name, pa.float64()) for f in fields(Paired) if f.name != "n"]
)


def _stamp() -> dict[str, object]:
    """What the figures also depend on: the code and the bootstrap's settings."""
    return {
        "format": FORMAT,
        "effbench_version": __version__,
        "bootstrap": [BOOTSTRAP_ITERATIONS, BOOTSTRAP_SEED, CONFIDENCE],
    }


def _hashed(digest: hashlib.blake2b, *arrays: np.ndarray) -> hashlib.blake2b:
    """The digest updated with arrays, their shapes and types included."""
    for array in arrays:
        digest.update(f"|{array.dtype.str}{array.shape}|".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest


def _keys(runs: Aligned, baseline: Outcome, metric: str) -> list[bytes]:
    """Each run's comparison key: the metric, the baseline's arrays, and the run's (its rows of the matrices)."""
    compared = _hashed(hashlib.blake2b(metric.encode(), digest_size=KEY_BYTES), *_arrays(baseline))
    stacked = (runs.doc_ids, runs.values, runs.weights)
    for array in stacked:  # every run's row of the same shape and type: said once
        compared.update(f"|{array.dtype.str}{array.shape[1:]}|".encode())
    rows = np.hstack([np.ascontiguousarray(array).view(np.uint8).reshape(len(runs.chosen), -1) for array in stacked])
    keys = []
    for row in rows:
        digest = compared.copy()
        digest.update(row.tobytes())
        keys.append(digest.digest())
    return keys


def _arrays(outcome: Outcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return outcome.doc_ids, outcome.values, outcome.weights


@dataclass
class _Kept:
    """What a cache knows and what a read used: apart from the cache itself, so saving it at the end holds no
    reference that keeps the results alive."""

    folder: Path | None
    known: dict[bytes, Paired] | None = None  # read when first needed
    used: set[bytes] = field(default_factory=set)
    computed: bool = False


def _read(folder: Path) -> dict[bytes, Paired]:
    """The comparisons kept for a store, or none (missing, unreadable, another version's)."""
    try:
        with pa.OSFile(str(folder / FILE)) as source:
            table = pa.ipc.open_file(source).read_all()
        stamp = json.loads((table.schema.metadata or {})[METADATA_KEY])
    except (OSError, pa.ArrowException, KeyError, ValueError):
        return {}
    if stamp != _stamp() or table.schema.remove_metadata() != SCHEMA:
        return {}
    columns = [table.column(name).to_pylist() for name in SCHEMA.names]
    return {key: Paired(*figures) for key, *figures in zip(*columns, strict=True)}


def _save(kept: _Kept) -> None:
    """Write the comparisons used by this read, and as many of the others kept before (a few reads of other
    selections), atomically; silently nothing where the cache cannot be written."""
    if kept.folder is None or not kept.computed or kept.known is None:
        return
    others = [key for key in kept.known if key not in kept.used][: len(kept.used)]
    keys = [*kept.used, *others]
    rows = [(key, *astuple(kept.known[key])) for key in keys]
    tmp = kept.folder / f".{FILE}.{uuid.uuid4().hex}.tmp"
    try:
        table = pa.Table.from_arrays([pa.array(list(column), t) for column, t in zip(zip(*rows, strict=True),
                                      SCHEMA.types, strict=True)], schema=SCHEMA)  # fmt: skip
        kept.folder.mkdir(parents=True, exist_ok=True)
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(_stamp())})
        with pa.ipc.new_file(str(tmp), table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, kept.folder / FILE)
    except Exception:  # a cache: a full disk, a read-only home or anything else never stops a command
        with contextlib.suppress(Exception):
            tmp.unlink(missing_ok=True)
    kept.computed = False


class Comparisons:
    """Paired comparisons with a baseline, computed once per pair of outcomes and kept in ``folder`` (a store's
    snapshot folder; None keeps them for this read only)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._kept = _Kept(folder)
        weakref.finalize(self, _save, self._kept)

    def read(self) -> None:
        """Read the comparisons kept before, if not yet read (when first compared, or earlier, beside other work)."""
        if self._kept.known is None:
            self._kept.known = _read(self._kept.folder) if self._kept.folder else {}

    def compare(self, runs: Aligned, baseline: Outcome | None, metric: str) -> list[Paired | None]:
        """``paired.compare_aligned``, the comparisons computed before looked up: the same figures (a run's are
        those it gets alone, whichever runs are computed beside it)."""
        out: list[Paired | None] = [None] * runs.count
        if not runs.chosen or baseline is None:
            return out
        kept = self._kept
        self.read()
        keys = _keys(runs, baseline, metric)
        missing = [row for row, key in enumerate(keys) if key not in kept.known]  # type: ignore[operator]
        if missing:
            computed = compare_aligned(runs.rows(missing), baseline, metric)
            for row in missing:
                if computed[runs.chosen[row]] is not None:
                    kept.known[keys[row]] = computed[runs.chosen[row]]  # type: ignore[index]
            kept.computed = True
        for i, key in zip(runs.chosen, keys, strict=True):
            out[i] = kept.known[key]  # type: ignore[index]
            kept.used.add(key)
        return out
