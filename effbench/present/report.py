"""The paper-style comparison table: techniques as rows, accuracy and resources relative to the baseline.

Resource columns come from the metrics' declared quantities (``effbench.present.columns``); every
section compares evaluate-phase figures only, and a one-off phase (the technique's own apply cost)
gets a section of its own.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from effbench import aside
from effbench.api.vocabulary import GENERATE, QUALITY
from effbench.config.suite import UNSTABLE_CV
from effbench.measure import decisions
from effbench.measure.decisions import GATES, Interval
from effbench.measure.paired import Paired
from effbench.plugins import registry
from effbench.present import breakeven
from effbench.present.columns import Column, candidates, fmt, fmt_each, registry_columns
from effbench.records import PHASE_EVALUATE, STATUS_OK, MeasurementRow, RunRecord
from effbench.store.load import Results
from effbench.store.ownership import Output, check_files, replaced_files
from effbench.store.rows import records, text_codes

UNSTABLE_MARK = "†"
GENERATION_SECTION = "lm-eval generation"
GENERATION_NOTE = (
    f"{GENERATION_SECTION}: measured around lm-eval's generative requests (every generate_until task's answers); "
    "energy per correct answer divides it by the answers its task's metric scored right"
)
NOT_SIGNIFICANT_MARK = decisions.NOT_SIGNIFICANT
LENGTH_HEADER = "Output length ×"
GATE_NOTE = (
    "99% / 99.9% gate (MLPerf's accuracy targets): pass when the 95 % interval of the share of the baseline's "
    "figure the technique keeps (technique ÷ baseline; baseline ÷ technique where lower is better; a paired "
    "bootstrap over the documents, else from both standard errors) lies at or above the target on every task, "
    "fail when it lies below on some task, inconclusive otherwise; – where a figure has no interval. "
    f"{LENGTH_HEADER}: mean generated tokens ÷ the baseline's over the same documents; outside ±10 % "
    "(MLPerf's output-length rule) the run fails both gates"
)
NOT_SIGNIFICANT_NOTE = (
    f"{NOT_SIGNIFICANT_MARK}: the ratio's 95 % interval (from both figures' intervals, delta method) includes 1, "
    "so the change is not significant"
)
BUSY_SHARE = 10.0  # % of the machine's CPU other processes may take while a run is measured before it is flagged
BUSY_METRIC = "background_cpu"
EPOCH = datetime.min.replace(tzinfo=UTC)
PAIRED_SECTION = "accuracy vs baseline, document by document"
PAIRED_NOTE = (
    "Δ [95 % CI]: technique − baseline with a paired bootstrap interval over the documents both runs scored "
    "(documents resampled jointly, 2000 iterations, fixed seed); p: McNemar's exact test (two-sided binomial "
    "test on the documents only one of the two got right); right→wrong / wrong→right: those documents as "
    "fractions of all (flips); – where a run stored no per-document outcomes (before schema 1.4) or the "
    "documents differ"
)
SEPARATE_COLUMNS_NOTE = (
    "a column is shown only where some run measured it; the same quantity from different instruments "
    "(e.g. energy per token from hardware counters and from codecarbon) has a column per instrument"
)


@dataclass(slots=True)  # a store of 10 k runs has 1.6 M cells: made faster, and smaller
class Cell:
    """A value with optional uncertainty; ``text`` is how it is shown."""

    value: float | None = None
    stderr: float | None = None
    text: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    cv: float | None = None
    unstable: bool = False


CELL_FIGURES = ("value", "stderr", "ci_low", "ci_high", "cv")  # a cell's numbers, as report.csv writes them


@dataclass(frozen=True)
class CellColumn:
    """One column's cells as a column: each one's text, its figures as float64 arrays (null where it has none) and
    whether it is flagged; a table of 10 k runs has 1.6 M cells, too many for an object each."""

    text: list[str]
    figures: dict[str, pa.Array]  # CELL_FIGURES
    unstable: np.ndarray

    @classmethod
    def of(
        cls, text: list[str], unstable: Sequence[bool] | None = None, **figures: Sequence[float | None]
    ) -> CellColumn:
        """A column from its texts and the lists of figures it has (``CELL_FIGURES``; None where a cell has none)."""
        made = {name: pa.array(figures.get(name, [None] * len(text)), pa.float64()) for name in CELL_FIGURES}
        return cls(text, made, np.array(unstable if unstable is not None else [False] * len(text), bool))

    def cell(self, index: int) -> Cell:
        """One of its cells."""
        value, stderr, low, high, cv = (self.figures[name][index].as_py() for name in CELL_FIGURES)
        return Cell(value, stderr, self.text[index], low, high, cv, bool(self.unstable[index]))


DETAIL_FIELDS = tuple(MeasurementRow.schema().names)  # report-measurements.csv: every measurement, every column
DETAIL_NAMES = ("technique", *DETAIL_FIELDS, "unstable")


def detail_table(labels: list[str], measurements: pa.Table, counts: list[int], unstable_cv: float) -> pa.Table:
    """Every measurement of a table's runs in long form (``DETAIL_NAMES``), built column by column: a store of
    10 k runs has a million, written to report-measurements.csv without a Python object per row."""
    technique = pa.DictionaryArray.from_arrays(np.repeat(np.arange(len(labels)), counts), labels)
    columns = {"technique": technique.cast(pa.string())}
    for name in DETAIL_FIELDS:
        columns[name] = measurements.column(name)
    columns["phase"] = pc.fill_null(columns["phase"], PHASE_EVALUATE)  # rows written before 1.2: evaluate
    columns["unstable"] = pc.fill_null(pc.greater(measurements.column("cv"), unstable_cv), False)
    return pa.table({name: columns[name] for name in DETAIL_NAMES})


class Details(Sequence[dict[str, Any]]):
    """Every measurement of a table's runs in long form (``detail_table``), made when first read (a report's by its
    writer's thread, beside the next table's build), one dict per measurement made when read."""

    def __init__(self, make: Callable[[], pa.Table] | None = None) -> None:
        self._make = make
        self._table: pa.Table | None = None

    @property
    def table(self) -> pa.Table:
        """The measurements as one Arrow table (``DETAIL_NAMES``)."""
        if self._table is None:
            self._table = self._make() if self._make else detail_table([], MeasurementRow.schema().empty_table(), [], 0)
        return self._table

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.table.to_pylist())

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return list(self)[index]


@dataclass
class ComparisonTable:
    """One model's comparison on one machine, in sections (accuracy, model, one per scenario, one-off phases)."""

    title: str
    headers: list[str]  # every column, long-form-only ones included, scenario-prefixed
    columns: list[CellColumn]  # each header's cells, one per run
    notes: list[str] = field(default_factory=list)
    sections: list[tuple[str, list[int]]] = field(default_factory=list)  # printed: title, column indexes
    details: Details = field(default_factory=Details)  # every measurement of the rows' runs, long form
    short_headers: list[str] = field(default_factory=list)  # each column's header within its section

    @property
    def runs(self) -> int:
        """How many rows (runs) it has."""
        return len(self.columns[0].text) if self.columns else 0

    @property
    def rows(self) -> list[list[Cell]]:
        """Its cells row by row, made when asked (a run's row: its cells in header order)."""
        return [[column.cell(i) for column in self.columns] for i in range(self.runs)]

    def parts(self) -> list[tuple[str, list[str], list[list[str]]]]:
        """Each printed section led by the technique column (narrow enough to read), with its short headers and the
        texts of its cells, row by row."""
        return [
            (
                title,
                [self.short_headers[i] for i in cols],
                [list(row) for row in zip(*(self.columns[i].text for i in cols), strict=True)],
            )
            for title, cols in self.sections
        ]


@dataclass(frozen=True)
class Section:
    """Where a section's figures come from: a phase of the run and, when evaluating, a load scenario."""

    title: str
    phase: str = PHASE_EVALUATE
    scenario: str = ""

    @property
    def one_off(self) -> bool:
        """A phase measured once per run (applying the technique), not the evaluated model."""
        return self.phase not in (PHASE_EVALUATE, GENERATE)

    @property
    def prefix(self) -> str:
        """What a long-form header is prefixed with, so headers of different sections differ."""
        if self.phase != PHASE_EVALUATE:
            return f"{self.phase}: "
        return f"{self.scenario}: " if self.scenario else ""

    @property
    def key(self) -> tuple[str, str]:
        """The run-level rows it holds (``RunFigures.first_rows``): of its phase and, when evaluating, its scenario."""
        return (self.phase, self.scenario if self.phase == PHASE_EVALUATE else "")

    def columns(self, columns: list[Column], rows: list[MeasurementRow]) -> list[Column]:
        """Candidates, this section's scope first (rows written before 1.1 put load figures in the model's)."""
        shown = candidates(columns, rows)
        if self.one_off:
            return [c for c in shown if not c.ratio]  # no baseline ratio for a one-off cost
        return sorted(shown, key=lambda c: c.per_scenario != bool(self.scenario))


def interval(m: MeasurementRow) -> Interval:
    """A stored figure with its 95 % interval (from its bounds, else its standard error; else exact)."""
    return Interval.of(m.value, m.stderr, m.ci_low, m.ci_high)


KeptShares = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # each run's: whether it has one, value, bounds


def kept_shares(
    found: KeyFigures, b: MeasurementRow | None, pairs: list[Paired | None], higher_is_better: bool
) -> KeptShares:
    """The share of the baseline's figure each run keeps, with its interval, every run at once: from the paired
    bootstrap's ratio bounds where there are some, else from both figures' intervals (delta method); none where a
    figure is missing or says nothing of its uncertainty, or the baseline's is not positive."""
    none = np.full(len(pairs), np.nan)
    if b is None or b.value <= 0:
        return np.zeros(len(pairs), bool), none, none, none
    null = found.null
    bounded = ~null["ci_low"] & ~null["ci_high"]
    value, low, high = found.intervals()
    base = interval(b)
    positive, share, delta_low, delta_high = decisions.ratios((value, low, high), (b.value, base.low, base.high))
    from_pair = np.array([p is not None and p.ratio_low is not None and p.ratio_high is not None for p in pairs], bool)
    pair_low, pair_high = ([getattr(p, name) if ok else np.nan for p, ok in zip(pairs, from_pair, strict=True)]
                           for name in ("ratio_low", "ratio_high"))  # fmt: skip
    both_uncertain = (~null["stderr"] | bounded) & _uncertain(b)
    from_intervals = ~from_pair & both_uncertain & positive
    kept_low = np.where(from_pair, pair_low, delta_low)
    kept_high = np.where(from_pair, pair_high, delta_high)
    defined = found.present & (from_pair | from_intervals)
    if higher_is_better:
        return defined, share, kept_low, kept_high
    defined &= ~(share <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # Interval.inverse: 1 / the figure, bounds swapped
        return defined, 1 / share, 1 / kept_high, np.where(kept_low > 0, 1 / kept_low, math.inf)


def _uncertain(m: MeasurementRow) -> bool:
    """Whether a figure says how uncertain it is (a standard error or an interval, possibly of zero width)."""
    return m.stderr is not None or (m.ci_low is not None and m.ci_high is not None)


def quality_gates(shares: list[KeptShares], lengths: list[float | None]) -> dict[str, list[str | None]]:
    """Each MLPerf gate of every run over its tasks (``shares``, one per task), failed outright by an output length
    outside ±10 % of the baseline's."""
    too_long = np.array([decisions.output_length_ok(length) is False for length in lengths], bool)
    gates = {}
    for name, threshold in GATES.items():
        verdicts = [decisions.gate(defined, low, high, threshold) for defined, _, low, high in shares]
        combined = decisions.combine(np.array(verdicts, object).reshape(len(shares), len(lengths)))
        combined[too_long] = decisions.FAIL
        gates[name] = combined.tolist()
    return gates


def run_gates(
    results: Results, rows_of: Mapping[str, list[MeasurementRow]], runs: list[RunRecord], base_run: RunRecord | None
) -> dict[str, dict[str, str | None]]:
    """Each run's MLPerf gates against its baseline on the baseline's primary metrics (unknown for the baseline);
    ``rows_of`` holds each run's measurements, or at least its evaluate-phase task metrics (the ones read)."""
    gates: dict[str, dict[str, str | None]] = {run.run_id: dict.fromkeys(GATES) for run in runs}
    if base_run is None:
        return gates
    others = [run for run in runs if run.run_id != base_run.run_id]
    base = {_key(m): m for m in rows_of.get(base_run.run_id, [])}
    primary = primary_quality(list(base.values()))
    paired = paired_with_baseline(results, others, base_run, primary)
    lengths = results.length_ratios([run.run_id for run in others], base_run.run_id)
    mine = [{_key(m): m for m in rows_of.get(run.run_id, []) if m.task} for run in others]  # the keys read: task ones
    shares = []
    for task, row in primary.items():
        key = (PHASE_EVALUATE, "", task, row.metric)
        pairs = [paired[run.run_id][task] for run in others]
        found = KeyFigures.of_rows([rows.get(key) for rows in mine])
        shares.append(kept_shares(found, base.get(key), pairs, row.higher_is_better))
    verdicts = quality_gates(shares, lengths)
    for i, run in enumerate(others):
        gates[run.run_id] = {name: verdicts[name][i] for name in GATES}
    return gates


def paired_with_baseline(
    results: Results, runs: list[RunRecord], base_run: RunRecord | None, primary: dict[str, MeasurementRow]
) -> dict[str, dict[str, Paired | None]]:
    """Each run's paired comparison with the baseline per primary task (None for the baseline itself and where the
    documents differ), every run of a task compared at once."""
    paired: dict[str, dict[str, Paired | None]] = {run.run_id: {} for run in runs}
    others = [run for run in runs if base_run is None or run.run_id != base_run.run_id]
    for task, row in primary.items():
        ids = [run.run_id for run in others]
        compared = results.paired(ids, base_run.run_id, task, row.metric) if base_run else [None] * len(others)
        for run, result in zip(others, compared, strict=True):
            paired[run.run_id][task] = result
        if base_run is not None and base_run.run_id in paired:
            paired[base_run.run_id][task] = None
    return paired


class Tables(Sized, Iterable["ComparisonTable"]):
    """The comparison tables of a selection of runs, one per model, machine, device and dtype, baseline first: each
    built as it is reached (written while the next is built), how many and of how many runs known before."""

    def __init__(
        self, results: Results, run_ids: list[str] | None, unstable_cv: float, columns: list[Column] | None
    ) -> None:
        if run_ids is None:
            runs = sorted(results.runs, key=lambda r: (r.technique != "baseline", r.started_at or EPOCH))
        else:
            runs = [results.run(r) for r in run_ids if results.has_run(r)]
        groups: dict[tuple[str, str, str], list[RunRecord]] = {}
        for run in runs:  # each device and dtype is compared with its own baseline
            groups.setdefault((run.model, run.hardware_fingerprint, run.placement), []).append(run)
        self.groups = [(model, hardware, group) for (model, hardware, _), group in groups.items()]
        self.runs = len(runs)
        self.results, self.unstable_cv = results, unstable_cv
        self.columns = registry_columns(registry()) if columns is None else columns  # tests pass their own

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self) -> Iterator[ComparisonTable]:
        indexing = threading.Thread(target=self.results.index_samples, name="effbench: samples index")
        indexing.start()  # a second of Arrow and numpy on 10 k runs, beside the kept comparisons' reading (Python)
        try:
            self.results.comparisons.read()
        finally:
            indexing.join()  # no thread runs when a table is given (``write`` may fork); a failure is raised below
        for model, hardware, group in self.groups:
            yield _table(model, hardware, group, self.results, self.columns, self.unstable_cv)


def build(
    results: Results,
    run_ids: list[str] | None = None,
    unstable_cv: float = UNSTABLE_CV,
    columns: list[Column] | None = None,
) -> list[ComparisonTable]:
    """Every table of ``Tables``, built. A figure whose CV across repeats is above ``unstable_cv`` is flagged; columns
    are the registered metrics' declared quantities unless given."""
    return list(Tables(results, run_ids, unstable_cv, columns))


def primary_quality(rows: list[MeasurementRow]) -> dict[str, MeasurementRow]:
    """Per task, the first quality metric lm-eval reported (its metric_list order): the one a table shows."""
    primary: dict[str, MeasurementRow] = {}
    for row in rows:
        if row.resource == QUALITY and row.task and row.in_phase == PHASE_EVALUATE and row.task not in primary:
            primary[row.task] = row
    return primary


def status_text(run: RunRecord) -> str:
    """``ok``, ``failed: <error>`` or ``not applicable: <reason>``."""
    return run.status if run.status == STATUS_OK else f"{run.status.replace('-', ' ')}: {run.error}"


def _run_notes(runs: list[RunRecord], figures: RunFigures) -> list[str]:
    """Runs measured while other work kept the machine busy, and every warning a run raised, by technique."""
    most = np.full(len(runs), -math.inf)  # each run's largest share, in every window and scenario (NaN: not measured)
    for phase, scenario, task, metric in figures.keys:
        if metric == BUSY_METRIC and task == "":
            shares = figures.of_key(phase, scenario, metric).numbers["value"]  # a run without one: NaN
            most = np.where(shares > most, shares, most)
    busy = [f"{runs[i].label} ({most[i]:.0f} %)" for i in np.flatnonzero(most > BUSY_SHARE).tolist()]
    notes = []
    if busy:
        notes.append(
            f"busy machine: other processes took more than {BUSY_SHARE:.0f} % of the CPU while these runs were "
            f"measured (the most in any window): {', '.join(busy)}; their times, throughputs and energies include "
            "waiting for the CPU, so compare them with care"
        )
    raised: dict[str, list[str]] = {}  # a warning -> the runs raising it: a note each, not one per run
    for run in runs:
        for warning in dict.fromkeys(run.warnings or []):
            raised.setdefault(warning, []).append(run.label)
    return notes + [f"warning, {', '.join(labels)}: {warning}" for warning, labels in raised.items()]


def _key(m: MeasurementRow) -> tuple[str, str, str, str]:
    return (m.in_phase, m.in_scenario, m.task, m.metric)


FIGURE_FIELDS = ("value", "stderr", "ci_low", "ci_high", "cv")
TABLE_FIELDS = ("phase", "scenario", "task", "metric", "step", "method", *FIGURE_FIELDS)  # what a table's build reads
PHASE, SCENARIO, TASK, METRIC = range(4)  # the parts of a figure's key (``RunFigures.parts``)


@dataclass(frozen=True)
class KeyFigures:
    """Each run's figure of one key as arrays: ``FIGURE_FIELDS``, NaN where null, and where each is null (a run
    without the figure: every one)."""

    numbers: dict[str, np.ndarray]
    null: dict[str, np.ndarray]

    @classmethod
    def of_rows(cls, rows: list[MeasurementRow | None]) -> KeyFigures:
        """The figures of each run's row of the key (None where it has none)."""
        figures = {name: [getattr(m, name) if m is not None else None for m in rows] for name in FIGURE_FIELDS}
        null = {name: np.array([v is None for v in values], bool) for name, values in figures.items()}
        return cls({name: np.array(values, float) for name, values in figures.items()}, null)  # None: NaN

    @property
    def present(self) -> np.ndarray:
        """Which runs have the figure (a stored value is never null)."""
        return ~self.null["value"]

    def listed(self, name: str) -> list[float | None]:
        """One of its figures as Python numbers, None where null."""
        return _listed(self.numbers[name], self.null[name])

    def intervals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each figure with its 95 % interval (``Interval.of``'s): value, low and high bounds."""
        value, stderr, ci_low, ci_high = (self.numbers[name] for name in FIGURE_FIELDS[:4])
        bounded = ~(self.null["ci_low"] | self.null["ci_high"])  # both stored (NaN ones too)
        with np.errstate(invalid="ignore"):  # an infinite figure ± its spread: a bound bounds_of leaves out
            return (value, *Interval.bounds_of(value, stderr, ci_low, ci_high, bounded))


@dataclass(frozen=True)
class RunFigures:
    """Each run's rows as columns, found a key at a time: a column's cells are computed with numpy, not with a dict
    look-up and a record per run (1 M cells on 10 k runs), and a section's metrics without a pass over every
    record."""

    runs: int
    run: np.ndarray  # each row's run (its index among the table's runs)
    run_level: np.ndarray  # whether it is a run-level row (no task): a resource's, not a task's
    parts: list[tuple[np.ndarray, list[str | None]]]  # each row's phase, scenario, task, metric (``text_codes``)
    by_key: np.ndarray  # the cells' rows, by key (their codes in ``keys``), each key's in stored order
    key_codes: np.ndarray  # their keys' codes, ascending
    keys: dict[tuple[str, str, str | None, str], int]  # (phase, scenario, task, metric) of some cell -> its code
    numbers: dict[str, np.ndarray]  # FIGURE_FIELDS, NaN where null, then a missing figure's NaN
    null: dict[str, np.ndarray]  # where each of ``numbers`` is null (a missing figure's: True)

    @classmethod
    def of(cls, measured: pa.Table, counts: list[int]) -> RunFigures:
        """The figures among a table's measurements: its runs' rows one run after the other, ``counts`` each."""
        phase, _ = phases_of(measured)
        run = np.repeat(np.arange(len(counts)), counts)
        cell = measured.column("step").is_null().to_numpy(zero_copy_only=False)  # a training step's is no cell
        run_level = pc.fill_null(pc.equal(measured.column("task"), ""), False).to_numpy(zero_copy_only=False)
        scenario = pc.fill_null(measured.column("scenario"), "")
        parts = [text_codes(column) for column in (phase, scenario, measured.column("task"), measured.column("metric"))]
        code = np.zeros(measured.num_rows, np.int64)
        for codes, distinct in parts:
            code = code * len(distinct) + codes
        found, first = np.unique(code[cell], return_index=True)
        key_parts = [[distinct[i] for i in codes[cell][first].tolist()] for codes, distinct in parts]
        keys = dict(zip(zip(*key_parts, strict=True), found.tolist(), strict=True))
        cells = np.flatnonzero(cell)
        by_key = cells[np.argsort(code[cells], kind="stable")]
        numbers, null = {}, {}
        for name in FIGURE_FIELDS:
            column = measured.column(name)
            numbers[name] = np.append(pc.fill_null(column, math.nan).to_numpy(), math.nan)
            null[name] = np.append(column.is_null().to_numpy(zero_copy_only=False), True)
        return cls(len(counts), run, run_level, parts, by_key, code[by_key], keys, numbers, null)  # type: ignore[arg-type]

    def has(self, part: int, value: str) -> np.ndarray:
        """Which rows hold this value of one of their key's parts (``PHASE``, ``SCENARIO``, ``TASK``, ``METRIC``)."""
        codes, distinct = self.parts[part]
        return codes == _code(distinct, value)

    def in_phase(self, phase: str) -> np.ndarray:
        """Which rows are of this phase (``MeasurementRow.in_phase``)."""
        return self.has(PHASE, phase)

    def first_seen(self, part: int, rows: np.ndarray) -> list[str]:
        """The distinct values of one of the key's parts among these rows (a mask), as first seen, without nulls."""
        codes, distinct = self.parts[part]
        found, first = np.unique(codes[rows], return_index=True)
        return [v for v in (distinct[code] for code in found[np.argsort(first)].tolist()) if v is not None]

    def metrics(self, phase: str, scenario: str) -> set[str]:
        """The metrics some run has a run-level cell of in this phase and scenario."""
        return {metric for p, s, task, metric in self.keys if p == phase and s == scenario and task == ""}

    def at(self, phase: str, scenario: str, metric: str, task: str = "") -> np.ndarray:
        """Each run's cell of this key (run-level unless a task is given) as its index in ``numbers`` (the last it
        stored; a missing one's: -1)."""
        found = np.full(self.runs, -1)
        code = self.keys.get((phase, scenario, task, metric))
        if code is None:
            return found
        rows = self.by_key[np.searchsorted(self.key_codes, code) : np.searchsorted(self.key_codes, code, "right")]
        run = self.run[rows]
        last = np.append(run[1:] != run[:-1], True)  # a run's figures are contiguous, in stored order
        found[run[last]] = rows[last]
        return found

    def of_key(self, phase: str, scenario: str, metric: str, task: str = "") -> KeyFigures:
        """Each run's figures of this key (``at``) as arrays."""
        found = self.at(phase, scenario, metric, task)
        return KeyFigures(
            {name: self.numbers[name][found] for name in FIGURE_FIELDS},
            {name: self.null[name][found] for name in FIGURE_FIELDS},
        )

    def intervals(self, phase: str, scenario: str, metric: str) -> breakeven.Intervals:
        """Each run's cell of this key with its 95 % interval as arrays: break-even's figures, a column at a time."""
        found = self.of_key(phase, scenario, metric)
        return breakeven.Intervals(*found.intervals(), found.present)

    def first_rows(self, section: Section) -> np.ndarray:
        """Where each metric of the section's rows (``Section.key``, training steps too) first appears among the
        table's measurements, in that order: the rows ``candidates`` reads (a metric's first)."""
        phase, scenario = section.key
        held = self.run_level & self.in_phase(phase)
        if phase == PHASE_EVALUATE:
            held &= self.has(SCENARIO, scenario)
        rows = np.flatnonzero(held)
        _, first = np.unique(self.parts[METRIC][0][rows], return_index=True)
        return rows[np.sort(first)]


def _code(distinct: list[str | None], value: str) -> int:
    """A value's code among ``text_codes``' distinct values; -1, no row's, when none has it."""
    return distinct.index(value) if value in distinct else -1


def _listed(values: np.ndarray, null: np.ndarray) -> list[float | None]:
    """Numbers as Python floats, None where null."""
    out = values.astype(object)
    out[null] = None
    return out.tolist()


def phases_of(measured: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Each row's phase as ``MeasurementRow.in_phase`` reads it, and whether it is the evaluated model's."""
    stored = pc.fill_null(measured.column("phase"), "")
    phase = pc.if_else(pc.equal(stored, ""), PHASE_EVALUATE, stored)
    return phase, pc.equal(phase, PHASE_EVALUATE)


def under_load(measured: pa.Table) -> pa.Table:
    """The rows of a measurement table that the evaluated model measured under a load scenario."""
    _, evaluated = phases_of(measured)
    return measured.filter(pc.and_(evaluated, pc.not_equal(pc.fill_null(measured.column("scenario"), ""), "")))


def _sections(figures: RunFigures) -> tuple[list[str], list[Section]]:
    """The load scenarios of the evaluated models, as first measured, and the sections: the model's, one per load
    scenario, lm-eval's generation, then one per one-off phase, as first measured."""
    evaluated = figures.in_phase(PHASE_EVALUATE)
    scenarios = figures.first_seen(SCENARIO, evaluated & ~figures.has(SCENARIO, ""))
    phases = figures.first_seen(PHASE, ~evaluated)
    return scenarios, [
        Section("model"),
        *(Section(s, scenario=s) for s in scenarios),
        *(Section(GENERATION_SECTION, p) for p in phases if p == GENERATE),
        *(Section(f"{p.capitalize()} (one-off)", p) for p in phases if p != GENERATE),
    ]


def _notes(where: str, measured: pa.Table, figures: RunFigures, unstable: bool, unstable_cv: float) -> list[str]:
    """The table's notes: where it was measured, how figures are shown, its phases, each metric's method."""
    notes = [
        where,
        "accuracy ± lm-eval's standard error (perplexity-type metrics, which have none: ± half a bootstrap 95 % "
        "interval over the documents); resources ± half the 95 % confidence interval "
        "(bootstrap over requests for latencies, Student t over repeats otherwise); bounds in report.csv",
        SEPARATE_COLUMNS_NOTE,
    ]
    if unstable:
        notes.append(
            f"{UNSTABLE_MARK} unstable: its repeats vary by more than {unstable_cv:.0%} (coefficient of variation)"
        )
    measured_phases = set(figures.first_seen(PHASE, np.ones(len(figures.run), bool)))
    phases = sorted(measured_phases - {PHASE_EVALUATE, GENERATE})
    if GENERATE in measured_phases:
        notes.append(GENERATION_NOTE)
    notes += [
        f"{phase} (one-off): the technique's own cost, measured once around its {phase} phase; "
        "every other section holds evaluate-phase figures only"
        for phase in phases
    ]
    with_method = pc.invert(pc.fill_null(pc.equal(measured.column("method"), ""), True))  # a null one: none
    run_level = pc.fill_null(pc.equal(measured.column("task"), ""), True)  # a null task: none
    described = np.flatnonzero(pc.and_(with_method, run_level).to_numpy(zero_copy_only=False))
    codes, names = figures.parts[METRIC]
    _, first = np.unique(codes[described], return_index=True)  # a metric's first method counts
    rows = described[first]
    first_methods = measured.column("method").take(rows).to_pylist()
    methods = dict(zip([names[code] for code in codes[rows].tolist()], first_methods, strict=True))
    by_method: dict[str, list[str]] = {}
    for metric, how in sorted(methods.items()):
        by_method.setdefault(how, []).append(metric)
    return notes + [f"{', '.join(metrics)}: {how}" for how, metrics in by_method.items()]


def _task_quality_rows(measured: pa.Table) -> list[MeasurementRow]:
    """The tasks' quality rows among a table's measurements, as records: where no baseline says which metric each
    task shows, ``primary_quality`` reads them."""
    task = pc.fill_null(pc.not_equal(measured.column("task"), ""), False)
    quality = pc.fill_null(pc.equal(measured.column("resource"), QUALITY), False)
    return records(measured.filter(pc.and_(task, quality)), MeasurementRow)


def _table(
    model: str, hardware: str, runs: list[RunRecord], results: Results, columns: list[Column], unstable_cv: float
) -> ComparisonTable:
    ids = [run.run_id for run in runs]
    measured = results.measurement_table(ids, TABLE_FIELDS)  # the columns read: all only in the details
    counts = results.measurement_counts(ids)
    base_run = next((r for r in runs if r.technique == "baseline" and r.status == "ok"), None)
    base_index = runs.index(base_run) if base_run else None
    base_rows: list[MeasurementRow] = []
    if base_index is not None:  # every measurement of the baseline, as records
        base_rows = records(results.measurement_table([ids[base_index]]), MeasurementRow)
    primary = primary_quality(base_rows or _task_quality_rows(results.measurement_table(ids)))  # else any run's
    base = {_key(m): m for m in base_rows}
    figures = RunFigures.of(measured, counts)  # every run's figures as columns: no record per run
    headers = ["Technique"]
    for task, row in primary.items():
        headers += [f"{task} {row.metric}", f"Δ {task}"]
    lengths: dict[str, float | None] = dict.fromkeys(run.run_id for run in runs)  # the baseline's own: none
    if base_run is not None:
        others = [run.run_id for run in runs if run is not base_run]
        lengths.update(zip(others, results.length_ratios(others, base_run.run_id), strict=True))
    with_length = any(length is not None for length in lengths.values())
    headers += [f"{name} gate" for name in GATES] + [LENGTH_HEADER] * with_length + ["Status"]
    paired = paired_with_baseline(results, runs, base_run, primary)
    sections = [("accuracy", list(range(len(headers))))]
    paired_tasks = [task for task in primary if any(paired[run.run_id][task] for run in runs)]  # else no column
    paired_columns = [f"{name} {task}" for task in paired_tasks for name in ("p", "right→wrong", "wrong→right")]
    if paired_columns:
        sections.append((PAIRED_SECTION, [0, *range(len(headers), len(headers) + len(paired_columns))]))
    headers += paired_columns
    short_headers = list(headers)
    run_lengths = [lengths[run.run_id] for run in runs]
    cell_columns = _accuracy_columns(runs, figures, base, primary, paired, run_lengths, base_index)
    for task in paired_tasks:
        cell_columns += _paired_columns([paired[run.run_id][task] for run in runs])
    unstable = False
    scenarios, sections_measured = _sections(figures)
    for section in sections_measured:
        printed = []
        held = results.measurement_records(ids, figures.first_rows(section))
        cell_metrics = figures.metrics(section.phase, section.scenario)
        for column in section.columns(columns, held):
            if column.name not in cell_metrics:
                continue  # no run measured it (the cells would all be empty)
            printed_column = section.one_off or not column.quantity.detail  # else in the CSV only: no text
            cells = _resource_cells(section, column, base, base_index, figures, unstable_cv, printed_column)
            if cells.figures["value"].null_count == len(runs):
                continue  # no run measured it
            unstable = unstable or bool(cells.unstable.any())
            if printed_column:
                printed.append(len(headers))
            headers.append(section.prefix + column.header)
            short_headers.append(column.header)
            cell_columns.append(cells)
        if printed:
            sections.append((section.title, [0, *printed]))
    repaid = breakeven.columns(figures.intervals, base_index, scenarios)
    for header, estimates in repaid:
        headers.append(f"break-even: {header}")
        short_headers.append(header)
        cell_columns.append(_break_even_cells(estimates))
    if repaid:
        sections.append((breakeven.SECTION, [0, *range(len(headers) - len(repaid), len(headers))]))
    labels = [run.label for run in runs]
    details = Details(lambda: detail_table(labels, results.measurement_table(ids), counts, unstable_cv))
    placement = runs[0].placement
    notes = _notes(
        "; ".join(filter(None, [f"model {model}", f"hardware fingerprint {hardware}", placement])),
        measured,
        figures,
        unstable,
        unstable_cv,
    )
    notes += _run_notes(runs, figures)
    notes.insert(2, GATE_NOTE)
    if paired_columns:
        notes.insert(3, PAIRED_NOTE)
    quiet = itertools.repeat(f" {NOT_SIGNIFICANT_MARK}")
    if any(any(map(str.endswith, column.text, quiet)) for column in cell_columns):  # map: no Python call per text
        notes.append(NOT_SIGNIFICANT_NOTE)
    if repaid:
        notes.append(breakeven.NOTE)
    title = f"{model} ({hardware})" + (f" on {placement}" if placement else "")
    return ComparisonTable(title, headers, cell_columns, notes, sections, details, short_headers)


def _break_even_cells(estimates: breakeven.Estimates) -> CellColumn:
    """A break-even column's cells: the requests and their bounds where the cost is repaid, else only a text."""
    unrepaid = ~estimates.repaid
    figures = {name: pa.nulls(len(estimates.text), pa.float64()) for name in CELL_FIGURES}
    for name, numbers in (("value", estimates.value), ("ci_low", estimates.low), ("ci_high", estimates.high)):
        figures[name] = pa.array(numbers, mask=unrepaid)
    return CellColumn(estimates.text, figures, np.zeros(len(estimates.text), bool))


def _accuracy_columns(
    runs: list[RunRecord],
    figures: RunFigures,
    base: dict,
    primary: dict[str, MeasurementRow],
    paired: dict[str, dict[str, Paired | None]],
    lengths: list[float | None],
    base_index: int | None,
) -> list[CellColumn]:
    """The accuracy section's columns: the technique; per task its figure and Δ vs the baseline; the MLPerf gates;
    the output length (where some run has one); the status."""
    columns = [CellColumn.of([run.label for run in runs])]
    shares = []
    for task, prow in primary.items():
        b = base.get((PHASE_EVALUATE, "", task, prow.metric))
        found = figures.of_key(PHASE_EVALUATE, "", prow.metric, task)
        pairs = [paired[run.run_id][task] for run in runs]
        numbers, null = found.numbers, found.null
        bounded = ~null["ci_low"] & ~null["ci_high"]
        spread = np.where(null["stderr"], (numbers["ci_high"] - numbers["ci_low"]) / 2, numbers["stderr"])
        texts = fmt_each(found.listed("value"), 3, _listed(spread, null["stderr"] & ~bounded))
        cells = {name: pa.array(numbers[name], mask=null[name]) for name in CELL_FIGURES[:4]}
        cells["cv"] = pa.nulls(len(runs), pa.float64())
        columns.append(CellColumn(texts, cells, np.zeros(len(runs), bool)))
        deltas = _listed(numbers["value"] - (b.value if b else math.nan), null["value"] | (b is None))
        columns.append(_delta_column(deltas, pairs))
        defined, *share = kept_shares(found, b, pairs, prow.higher_is_better)
        if base_index is not None:
            defined[base_index] = False  # the baseline keeps all of itself: no gate
        shares.append((defined, *share))
    gates = quality_gates(shares, lengths)
    columns += [CellColumn.of([verdict or "–" for verdict in gates[name]]) for name in GATES]
    if any(length is not None for length in lengths):
        columns.append(CellColumn.of([fmt(length, 2) for length in lengths], value=lengths))
    return [*columns, CellColumn.of([status_text(run) for run in runs])]


def _delta_column(deltas: list[float | None], paired: list[Paired | None]) -> CellColumn:
    """Δ vs the baseline, with its paired bootstrap interval where both runs stored their documents' outcomes."""
    bounded = [pair if delta is not None else None for delta, pair in zip(deltas, paired, strict=True)]
    low = [pair.ci_low if pair is not None else None for pair in bounded]
    high = [pair.ci_high if pair is not None else None for pair in bounded]
    signed = [fmt_each(figures, 3, sign=True) for figures in (deltas, low, high)]
    shown = zip(*signed, bounded, strict=True)
    texts = [delta if pair is None else f"{delta} [{lo}, {hi}]" for delta, lo, hi, pair in shown]
    return CellColumn.of(texts, value=deltas, ci_low=low, ci_high=high)


def _p_text(p: float | None) -> str:
    return "–" if p is None else "< 0.001" if p < 0.001 else f"{p:.3f}"


def _paired_columns(paired: list[Paired | None]) -> list[CellColumn]:
    """McNemar's p and the two kinds of flips (as percentages of the documents); dashes where not computed."""
    p = [pair.p_value if pair is not None else None for pair in paired]
    columns = [CellColumn.of(list(map(_p_text, p)), value=p)]
    for name in ("right_to_wrong", "wrong_to_right"):
        flips = [getattr(pair, name) if pair is not None else None for pair in paired]
        columns.append(CellColumn.of(["–" if f is None else f"{100 * f:.1f} %" for f in flips], value=flips))
    return columns


def _unstable(m: MeasurementRow | None, threshold: float) -> bool:
    return m is not None and (m.cv or 0) > threshold


def _resource_cells(
    section: Section,
    column: Column,
    base: dict,
    base_index: int | None,
    figures: RunFigures,
    unstable_cv: float,
    printed: bool,
) -> CellColumn:
    """Each run's resource figure: value ± half its 95 % interval (or its stderr), flagged when its repeats disagree;
    a ratio to the baseline's, flagged when either side is and marked when its interval includes 1. The text of a
    column no table prints (``printed`` False) is left empty: only its numbers are written. The runs' figures come
    from ``figures`` (a column at a time), the baseline's (the run at ``base_index``) from its records, ``base``."""
    key = (section.phase, section.scenario, "", column.name)
    b = base.get(key)
    mark, quiet_mark, missing = f" {UNSTABLE_MARK}", f" {NOT_SIGNIFICANT_MARK}", "–"
    found = figures.of_key(section.phase, section.scenario, column.name)
    if column.ratio:  # a ratio is as unstable as either of its sides
        runs = len(found.present)
        if b is None:
            return CellColumn.of([missing] * runs)
        base = interval(b)
        exact, value, low, high = decisions.ratios((b.value, base.low, base.high), found.intervals())
        mine = found.numbers["value"]
        shown = found.present & (b.value != 0) & (mine != 0)  # a ratio of a missing or zero figure: none
        exact &= shown
        own_cv = np.where(found.null["cv"], 0.0, found.numbers["cv"])  # a missing CV counts as 0, a NaN one never
        flagged = shown & ((own_cv > unstable_cv) | _unstable(b, unstable_cv))
        quiet = exact & ~decisions.significant(low, high)
        if b.step is None and base_index is not None:
            quiet[base_index] = False  # the baseline's own cell: b itself
        at = np.flatnonzero(shown)
        shown_texts = column.format_each(value[at].tolist(), [None] * len(at)) if printed else [""] * len(at)
        if printed and (flagged[at].any() or quiet[at].any()):
            marks = zip(shown_texts, flagged[at].tolist(), quiet[at].tolist(), strict=True)
            shown_texts = [text + mark * unstable + quiet_mark * not_significant for text, unstable, not_significant
                           in marks]  # fmt: skip
        texts = _placed(shown_texts, at, runs, missing)
        cells = {name: pa.nulls(runs, pa.float64()) for name in CELL_FIGURES}
        cells |= {"value": pa.array(value, mask=~shown), "ci_low": pa.array(low, mask=~exact)}
        cells["ci_high"] = pa.array(high, mask=~exact)
        return CellColumn(texts, cells, flagged)
    numbers, null = found.numbers, found.null
    scale = column.quantity.scale  # Column.shown: the header's unit
    value, stderr, low, high = (numbers[name] * scale for name in ("value", "stderr", "ci_low", "ci_high"))
    bounded = ~(null["ci_low"] | null["ci_high"])
    spread = np.where(bounded, (high - low) / 2, stderr)
    flagged = np.where(null["cv"], 0.0, numbers["cv"]) > unstable_cv  # a missing CV counts as 0, a NaN one never
    present = found.present
    at = np.flatnonzero(present)
    if printed:
        halves = _listed(spread[at], ~bounded[at] & null["stderr"][at])
        shown = column.format_each(value[at].tolist(), halves)
        if flagged[at].any():
            marked = zip(shown, flagged[at].tolist(), strict=True)
            shown = [text + mark if unstable else text for text, unstable in marked]
    else:
        shown = [""] * len(at)
    texts = _placed(shown, at, len(present), missing)
    cells = {
        "value": pa.array(value, mask=~present),
        "stderr": pa.array(stderr, mask=null["stderr"]),
        "ci_low": pa.array(low, mask=null["ci_low"]),
        "ci_high": pa.array(high, mask=null["ci_high"]),
        "cv": pa.array(numbers["cv"], mask=null["cv"]),
    }
    return CellColumn(texts, cells, flagged & present)


def _placed(texts: list[str], at: np.ndarray, count: int, missing: str) -> list[str]:
    """``count`` texts: ``texts`` at the positions ``at`` (increasing), ``missing`` elsewhere."""
    if len(at) == count:
        return texts
    out = np.full(count, missing, dtype=object)
    out[at] = texts
    return out.tolist()


MARKDOWN_SWAPS = {c: "\\" + c for c in "\\`*[]<|"}  # code, emphasis, links, HTML tags, cells; the backslash first
MARKDOWN_SPECIAL = str.maketrans(MARKDOWN_SWAPS)
JOIN = "\x00"  # what a column's texts are joined by to be escaped at once (a text holding it is escaped alone)
OTHER_WHITESPACE = re.compile(r"[^\S ]")  # tabs, line breaks...: a scan for one class, faster than alternatives


def md(text: object) -> str:
    """Text that Markdown shows as itself: stored names and errors must not become code, links, HTML or cells."""
    return " ".join(str(text).split()).translate(MARKDOWN_SPECIAL)


def _each_at_once(
    texts: list[str], escape: Callable[[str], str], slow: Callable[[str], bool], swaps: dict[str, str]
) -> list[str]:
    """``escape`` of each text, made on them all at once where it only swaps characters (``slow`` false for them
    joined): each character of ``swaps`` present replaced in turn, which ``slow`` ensures is the same as all at once
    (none is in what another becomes). A column of 10 k runs' numbers takes a few scans, not a call per text."""
    joined = JOIN.join(texts)
    if not slow(joined):
        escaped_all = joined
        for character in [c for c in swaps if c in joined]:  # those in the texts, not those a swap brought
            escaped_all = escaped_all.replace(character, swaps[character])
        escaped = escaped_all.split(JOIN)
        if len(escaped) == len(texts):  # else some text held JOIN
            return escaped
    return [escape(text) for text in texts]


def _spaced(joined: str) -> bool:
    """Whether some text of these holds a run of spaces or whitespace other than a space (both escapes change it)."""
    return bool(OTHER_WHITESPACE.search(joined)) or "  " in joined


def _respaced(joined: str) -> bool:
    """Whether ``md`` changes the spacing of some text of these: ``_spaced``, or a space at an end."""
    ends = (JOIN + " ", " " + JOIN)
    return _spaced(joined) or any(end in joined for end in ends) or joined.startswith(" ") or joined.endswith(" ")


def md_column(texts: list[str]) -> list[str]:
    """``md`` of each text."""
    return _each_at_once(texts, md, _respaced, MARKDOWN_SWAPS)


def md_code(text: object) -> str:
    """A code span showing ``text`` as is: fenced by more backticks than any run of them inside it."""
    text = " ".join(str(text).split())
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _markdown_lines(titles: list[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table of escaped texts."""
    lines = ["| " + " | ".join(map(md, titles)) + " |", "|" + "---|" * len(titles)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)]) + "\n"


def markdown_table(titles: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table, every header and cell shown as itself (``md``)."""
    columns = [md_column(list(column)) for column in zip(*rows, strict=True)]
    return _markdown_lines(titles, zip(*columns, strict=True))


def _escaped_parts(
    table: ComparisonTable, escape: Callable[[list[str]], list[str]]
) -> Iterator[tuple[str, list[str], Iterator[tuple[str, ...]]]]:
    """``ComparisonTable.parts`` with each column's texts escaped, a column at a time (once, in every section)."""
    escaped: dict[int, list[str]] = {}
    for title, cols in table.sections:
        for i in cols:
            if i not in escaped:
                escaped[i] = escape(table.columns[i].text)
        yield title, [table.short_headers[i] for i in cols], zip(*(escaped[i] for i in cols), strict=True)


def to_markdown(table: ComparisonTable) -> str:
    """GitHub-flavoured Markdown: one table per section, then the notes."""
    lines = [f"### {md(table.title)}"]
    for title, headers, rows in _escaped_parts(table, md_column):
        lines += ["", f"**{md(title)}**", "", _markdown_lines(headers, rows).rstrip()]
    lines += [""] + [f"- {md(note)}" for note in table.notes]
    return "\n".join(lines) + "\n"


TEX = {
    **{c: "\\" + c for c in "{}$&#%_"},
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
    ">=": r"$\geq$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "→": r"$\to$",
    "×": r"$\times$",
    "–": "--",
    UNSTABLE_MARK: r"$^\dagger$",
}
TEX_SPECIAL = re.compile("|".join(map(re.escape, sorted(TEX, key=len, reverse=True))) + r"|\s+")


TEX_SWAPS = {key: text for key, text in TEX.items() if len(key) == 1}
TEX_CHARACTERS = str.maketrans(TEX_SWAPS)
# what translating character by character cannot do: a longer key, a run of whitespace, whitespace other than a space
TEX_SLOW = re.compile("|".join([*(re.escape(key) for key in TEX if len(key) > 1), r"\s\s", r"[^\S ]"]))


def _tex(s: str) -> str:
    """Text LaTeX typesets as itself, in one pass (so no replacement is escaped again); line breaks become spaces.
    Text without a longer key (``>=``) and with single spaces only (a number's cell) is translated character by
    character: the same."""
    if TEX_SLOW.search(s):
        return TEX_SPECIAL.sub(lambda m: TEX.get(m.group(), " "), s)
    return s.translate(TEX_CHARACTERS)


TEX_BROUGHT = "\\{}$^"  # what swaps bring: texts holding them are escaped one by one, so swaps never compound
TEX_LONGER = [key for key in TEX if len(key) > 1]


def _not_swaps(joined: str) -> bool:
    """Whether ``_tex`` of some text of these does more than swap characters, or swaps one another brings."""
    return _spaced(joined) or any(key in joined for key in TEX_LONGER) or any(c in joined for c in TEX_BROUGHT)


def tex_column(texts: list[str]) -> list[str]:
    """``_tex`` of each text."""
    return _each_at_once(texts, _tex, _not_swaps, TEX_SWAPS)


def to_latex(table: ComparisonTable) -> str:
    """booktabs LaTeX tables (one per section), ready to paste into a paper."""
    out = []
    named, notes = _tex(table.title), _tex("; ".join(table.notes[1:]))  # the notes: long, escaped once
    for title, headers, rows in _escaped_parts(table, tex_column):
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
            r"\toprule",
            " & ".join(map(_tex, headers)) + r" \\",
            r"\midrule",
            *(" & ".join(row) + r" \\" for row in rows),
            r"\bottomrule",
            r"\end{tabular}",
            rf"\caption{{{named}: {_tex(title)}. {notes}}}",
            r"\end{table}",
        ]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


TEXT_COLUMNS = ("Technique", "Status")


def to_csv(tables: list[ComparisonTable]) -> str:
    """Raw numbers (value, stderr, 95 % bounds, CV in separate columns) for further analysis, each table under its
    own header line; written by Arrow's CSV writer, numbers in their shortest exact form."""
    sink = pa.BufferOutputStream()
    for table in tables:
        _write_csv_part(table, sink)
    return sink.getvalue().to_pybytes().decode()


def _write_csv_part(table: ComparisonTable, sink: pa.NativeFile) -> None:
    """One table of report.csv: its header line, then a line per run."""
    names, columns = ["table"], [pa.array([table.title] * table.runs, pa.string())]
    for name, cells in zip(table.headers, table.columns, strict=True):
        if name in TEXT_COLUMNS:
            names.append(name)
            columns.append(pa.array(cells.text, pa.string()))
            continue
        for figure in CELL_FIGURES:
            names.append(name if figure == "value" else f"{name} {figure}")
            columns.append(cells.figures[figure])
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow(names)  # quoted only where a name needs it
    sink.write(header.getvalue().encode())
    if table.runs:
        rows = pa.Table.from_arrays(columns, names=[str(i) for i in range(len(columns))])
        pa_csv.write_csv(rows, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))


DETAILS_HEADER = (",".join(["table", *DETAIL_NAMES]) + "\n").encode()  # unquoted, as Python's csv writes them


def _write_details_part(table: ComparisonTable, sink: pa.NativeFile) -> None:
    """One table's lines of report-measurements.csv."""
    if not len(table.details):
        return  # Arrow garbles an empty table's lines
    rows = table.details.table
    columns = {
        "table": pa.DictionaryArray.from_arrays(np.zeros(rows.num_rows, np.int32), [table.title]).cast(pa.string())
    }
    for name in DETAIL_NAMES:
        column = rows.column(name)
        if pa.types.is_boolean(column.type):  # as Python writes them
            column = pc.if_else(column, "True", "False")
        columns[name] = column
    pa_csv.write_csv(pa.table(columns), sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))


def _write_parts(
    table: ComparisonTable, details: pa.NativeFile, summary: pa.NativeFile, texts: dict[TextIO, str], before: str
) -> None:
    """A table's part of each file: its CSV lines, then its texts (after ``before``, the separator)."""
    _write_details_part(table, details)
    _write_csv_part(table, summary)
    for file, text in texts.items():
        file.write(before + text)


REPORT = Output(
    "report",
    "effbench report",
    starts={
        "report.md": b"### ",
        "report.tex": rb"\begin{table}",
        "report.csv": b"table,",
        "report-measurements.csv": b"table,technique,",
    },  # how earlier versions' report files began: adopted without a manifest only when all four are there
    manifest=".effbench-report.json",  # the results store is not effbench's alone: only these files are
)


REPORT_FILES = ("report.md", "report.tex", "report.csv", "report-measurements.csv")


def check_writable(folder: Path) -> None:
    """Refuse, before a sweep starts, a results folder whose report files effbench did not write."""
    check_files(folder, REPORT, REPORT_FILES)


def write(
    tables: Tables | Sequence[ComparisonTable],
    folder: Path,
    meanwhile: Callable[[list[ComparisonTable], int], None] | None = None,
    shown: int = 0,
) -> dict[str, Path]:
    """Write report.md, .tex, .csv and report-measurements.csv atomically, never over a file effbench did not write.

    Each table is written as soon as it is built (``Tables`` builds them as they are reached), on a thread: its CSV
    lines by Arrow's writer, its Markdown and LaTeX made here (the writes let go of the GIL). ``meanwhile`` (what a
    command shows: its terminal tables) is given the first ``shown`` tables and how many there are; on a large store
    it runs in a forked process as soon as they are built, beside the rest; in any case before a file is in place.
    """
    runs = tables.runs if isinstance(tables, Tables) else sum(table.runs for table in tables)
    with (
        replaced_files(folder, REPORT, REPORT_FILES) as staged,  # refused before any work: check_writable's check
        pa.OSFile(str(staged / "report-measurements.csv"), "wb") as details,
        pa.OSFile(str(staged / "report.csv"), "wb") as summary,
        (staged / "report.md").open("w", encoding="utf-8") as markdown,
        (staged / "report.tex").open("w", encoding="utf-8") as latex,
        ThreadPoolExecutor(1) as writer,  # one thread: each file's tables in order
    ):
        details.write(DETAILS_HEADER)
        remaining = iter(tables)
        first = list(itertools.islice(remaining, shown)) if meanwhile is not None else []

        def every_table() -> None:  # the first ones' lines too: nothing ran on a thread when the process forked
            written = []
            for index, table in enumerate(itertools.chain(first, remaining)):
                texts = {markdown: to_markdown(table), latex: to_latex(table)}
                written.append(writer.submit(_write_parts, table, details, summary, texts, "\n" * (index > 0)))
            for done in written:
                done.result()

        if meanwhile is None:
            every_table()
        else:
            total = len(tables)
            aside.side_by_side(lambda: meanwhile(first, total), every_table, "showing the report's tables", runs)
    return {name: folder / name for name in REPORT_FILES}
