"""The one reader of stored results: a results store or a dataset folder becomes validated, typed ``Results``.

A results store holds ``runs/<run_id>.parquet``, ``measurements/<run_id>.parquet`` and (from 1.4)
``samples/<run_id>.parquet``; a dataset folder holds one shard per machine under ``runs/``, ``measurements/``
and (from 1.4) ``samples/`` plus ``taxonomy/``. Both
read through the records, so files written by earlier minor versions read back with their later
columns null, and every report, leaderboard, comparison, build, publish and pull sees the same rows.
A store is the user's own work: its bad files are skipped and listed in ``Results.problems``. A
dataset comes from elsewhere: one bad file rejects it whole.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from effbench.api.vocabulary import STAGES
from effbench.errors import EffbenchError
from effbench.measure.paired import Outcome, Paired
from effbench.records import MeasurementRow, Record, RunRecord, SampleRow, TaxonomyRow
from effbench.store.comparisons import Comparisons
from effbench.store.outcomes import SampleIndex
from effbench.store.results import ResultsStore, parquet_files, to_table
from effbench.store.rows import Rows, ranges, records
from effbench.store.snapshot import snapshot_folder as kept_in
from effbench.store.validate import Problem, raise_if, read_records

R = TypeVar("R", MeasurementRow, SampleRow)  # a table whose rows belong to one run each
LAYOUTS = ("any", "store", "dataset")


@dataclass(frozen=True)
class Results:
    """Runs, their measurements (each run's in the order it reported) and samples, a dataset's taxonomy, a store's
    bad files."""

    runs: list[RunRecord] = field(default_factory=list)
    measurements: Sequence[MeasurementRow] = field(default_factory=list)  # a store's: made when first used
    taxonomy: list[TaxonomyRow] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # one per bad store file, its path relative to the store
    samples: Sequence[SampleRow] = field(default_factory=list)  # per-document outcomes (none in results before 1.4)
    comparisons: Comparisons = field(default_factory=Comparisons, compare=False, repr=False)  # a store's are kept

    @cached_property
    def _runs_by_id(self) -> dict[str, RunRecord]:
        return {run.run_id: run for run in self.runs}

    @cached_property
    def _measurements_by_run(self) -> dict[str, list[MeasurementRow]]:
        return _by_run(self.measurements)

    @cached_property
    def _samples_by_run(self) -> dict[str, list[SampleRow]]:
        return _by_run(self.samples)

    @cached_property
    def _sample_index(self) -> SampleIndex:
        samples = self.samples
        if isinstance(samples, Rows):  # a store's: each run's rows together, where its file's were
            return SampleIndex(samples.table, samples.spans())
        return SampleIndex(to_table(list(samples), SampleRow))

    def run(self, run_id: str) -> RunRecord:
        """The run with this id."""
        if run_id not in self._runs_by_id:
            raise EffbenchError(f"no run {run_id!r} in these results")
        return self._runs_by_id[run_id]

    def has_run(self, run_id: str) -> bool:
        """Whether a run with this id is present."""
        return run_id in self._runs_by_id

    def measurements_of(self, run_id: str) -> list[MeasurementRow]:
        """A run's measurements, in the order it reported them."""
        return self._measurements_by_run.get(run_id, [])

    def measurement_table(self, run_ids: list[str], columns: Sequence[str] | None = None) -> pa.Table:
        """The measurements of these runs as one Arrow table (of these ``columns`` only, if given), run after run, each
        in the order it reported them."""
        rows = self.measurements
        if not isinstance(rows, Rows):
            table = to_table([m for run_id in run_ids for m in self.measurements_of(run_id)], MeasurementRow)
            return table.select(list(columns)) if columns is not None else table
        stored = rows.table.select(list(columns)) if columns is not None else rows.table  # only those copied
        return stored.take(self._measurement_positions(run_ids))  # one chunk

    def measurement_records(self, run_ids: list[str], at: np.ndarray) -> list[MeasurementRow]:
        """The records of the rows at these positions of ``measurement_table(run_ids)``, made from every column."""
        rows = self.measurements
        if not isinstance(rows, Rows):
            every = [m for run_id in run_ids for m in self.measurements_of(run_id)]
            return [every[i] for i in at.tolist()]
        return records(rows.table.take(self._measurement_positions(run_ids)[at]), MeasurementRow)

    def _measurement_positions(self, run_ids: list[str]) -> np.ndarray:
        """Where these runs' measurements lie in the store's table, run after run."""
        spans = self.measurements.spans()  # type: ignore[attr-defined]
        bounds = np.array([spans[r] for r in run_ids if r in spans], np.int64).reshape(-1, 2)
        return ranges(bounds[:, 0], bounds[:, 1])

    def measurement_counts(self, run_ids: list[str]) -> list[int]:
        """How many measurements each run has (its rows of ``measurement_table``), without making their records."""
        rows = self.measurements
        if not isinstance(rows, Rows):
            return [len(self.measurements_of(run_id)) for run_id in run_ids]
        spans = rows.spans()
        return [stop - start for start, stop in (spans.get(run_id, (0, 0)) for run_id in run_ids)]

    def samples_of(self, run_id: str) -> list[SampleRow]:
        """A run's per-document outcomes, in the order lm-eval logged them (none for runs written before 1.4)."""
        return self._samples_by_run.get(run_id, [])

    def outcome(self, run_id: str, task: str, metric: str) -> Outcome | None:
        """A run's value per document in one task and metric, as arrays (None when it stored none)."""
        return self.outcomes([run_id], task, metric)[0]

    def index_samples(self) -> None:
        """Index the per-document outcomes now, where a comparison with a baseline will read them: a second of Arrow
        and numpy on 10 k runs, which lets go of the GIL, for a thread beside work that reads no outcome yet. A
        failure is left to be raised where the outcomes are read."""
        if any(run.status == "ok" and run.technique == "baseline" for run in self.runs):
            with contextlib.suppress(Exception):
                self._sample_index  # noqa: B018 (a cached property: made here)

    def outcomes(self, run_ids: list[str], task: str, metric: str) -> list[Outcome | None]:
        """``outcome`` of several runs, gathered at once."""
        return self._sample_index.outcomes(run_ids, task, metric)

    def paired(self, run_ids: list[str], base_run_id: str, task: str, metric: str) -> list[Paired | None]:
        """Each run's paired comparison with the baseline run in one task and metric (None where the documents
        differ), computed once per pair of outcomes (``comparisons.py``)."""
        base = self.outcome(base_run_id, task, metric)
        return self.comparisons.compare(self._sample_index.aligned(run_ids, task, metric, base), base, metric)

    def length_ratios(self, run_ids: list[str], base_run_id: str) -> list[float | None]:
        """Each run's mean generated tokens ÷ the baseline run's, over the generative documents both answered."""
        return self._sample_index.length_ratios(run_ids, base_run_id)

    def hardware(self) -> dict[str, list[RunRecord]]:
        """Runs by hardware fingerprint, each machine's ordered by run id."""
        groups: dict[str, list[RunRecord]] = {}
        for run in sorted(self.runs, key=lambda r: r.run_id):
            groups.setdefault(run.hardware_fingerprint, []).append(run)
        return groups

    def table(self, kind: type[Record], runs: list[RunRecord] | None = None) -> pa.Table:
        """One table in its record's schema, of ``runs`` only if given, in a stable order (runs by id)."""
        chosen = sorted(self.runs if runs is None else runs, key=lambda r: r.run_id)
        if kind is RunRecord:
            rows: list[Record] = list(chosen)
        elif kind is MeasurementRow:
            rows = [m for run in chosen for m in self.measurements_of(run.run_id)]
        elif kind is SampleRow:
            rows = [s for run in chosen for s in self.samples_of(run.run_id)]
        else:
            rows = sorted(self.taxonomy, key=_taxonomy_order)
        return to_table(rows, kind)


def _taxonomy_order(row: TaxonomyRow) -> tuple[str, int, str]:
    stage = STAGES.index(row.stage) if row.stage in STAGES else len(STAGES)
    return (row.kind, stage, row.name)


def _load_store(root: Path) -> Results:
    """A results store's valid committed runs, and its bad files (skipped, each with its run)."""
    runs, measurements, samples, problems = ResultsStore(root).read_tables()
    return Results(runs, measurements, problems=problems, samples=samples, comparisons=Comparisons(kept_in(root)))


def is_dataset(root: Path) -> bool:
    """A dataset folder has taxonomy/, a results store does not."""
    return (root / TaxonomyRow.table).is_dir()


def no_results(root: Path, problems: list[Problem], hint: str = "") -> EffbenchError:
    """The error for a folder without a valid run: when its files are damaged, how many and the first one."""
    if problems:
        first = f"{problems[0]}" + (f"; {len(problems) - 1} more" if len(problems) > 1 else "")
        hint = f"every run has a damaged file ({first}); `effbench store check --results {root}` lists them"
    return EffbenchError(f"no results in {root}" + (f": {hint}" if hint else ""))


def _load_dataset(root: Path) -> Results:
    """A dataset folder (built here or downloaded), validated as a whole."""
    if not (root / RunRecord.table).is_dir():
        raise EffbenchError(f"{root} is not an effbench dataset: it has no runs/ folder")
    problems: list[Problem] = []
    read = {}
    for kind in (RunRecord, MeasurementRow, SampleRow, TaxonomyRow):  # a dataset before 1.4 has no samples/
        files = parquet_files(root / kind.table)
        if kind is TaxonomyRow and not files:
            problems.append(Problem("taxonomy/", "no Parquet file"))
        read[kind] = [row for path in files for row in read_records(path, kind, root, problems)]
    results = Results(read[RunRecord], read[MeasurementRow], read[TaxonomyRow], samples=read[SampleRow])
    ids = Counter(run.run_id for run in results.runs if run.run_id)  # a null id is already a problem; None sorts not
    problems += [Problem("runs", f"run {r} appears twice") for r, n in sorted(ids.items()) if n > 1]
    for kind, rows in ((MeasurementRow, results.measurements), (SampleRow, results.samples)):
        orphans = sorted({row.run_id for row in rows if row.run_id} - set(ids))
        problems += [Problem(kind.table, f"run {r} has {kind.table} but no runs row") for r in orphans]
    if len({(t.kind, t.name) for t in results.taxonomy}) != len(results.taxonomy):
        problems.append(Problem("taxonomy", "an entry appears twice"))
    raise_if(problems, f"the dataset in {root}")
    return results


def load(root: Path | str, layout: str = "any") -> Results:
    """Validated results of a store (its bad files skipped) or a dataset folder: the one reader of every output."""
    root = Path(root)
    if layout == "store":  # empty when the store does not exist yet (a pull's target)
        return _load_store(root)
    if layout == "dataset":
        return _load_dataset(root)
    if layout != "any":
        raise EffbenchError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    if not root.is_dir():  # "any": what is shown must hold results
        raise EffbenchError(f"{root} does not exist or is not a folder")
    results = _load_dataset(root) if is_dataset(root) else _load_store(root)
    if not results.runs:
        raise no_results(root, results.problems)
    return results


def _by_run(rows: Sequence[R]) -> dict[str, list[R]]:
    """A run's rows of one table, looked up by run id without scanning the table each time."""
    if isinstance(rows, Rows):  # the store's: each run's rows are contiguous
        every = rows.all()
        return {run_id: every[start:stop] for run_id, (start, stop) in rows.spans().items()}
    grouped: dict[str, list[R]] = {}
    for row in rows:
        grouped.setdefault(row.run_id, []).append(row)
    return grouped
