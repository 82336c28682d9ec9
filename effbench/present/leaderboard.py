"""Leaderboards: per hardware fingerprint, every successful run ranked by accuracy beside its resource figures
(Markdown and CSV), and Pareto frontiers of accuracy against latency, energy per token and peak memory (PNG).

The Markdown table shows the declared headline quantities, the CSV every quantity measured; only
evaluate-phase figures count (a technique's one-off apply cost is not what a deployed model costs).
Every conclusion respects the figures' 95 % intervals: runs that cannot be told apart share a rank, a run
is dominated only by one better beyond the intervals, and the plots draw the intervals as error bars.
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property, partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effbench import aside
from effbench.api.metric import Quantity
from effbench.measure import decisions
from effbench.measure.decisions import GATES, Interval, Point
from effbench.present.columns import Column, candidates, fmt_each, stored_column
from effbench.present.report import (
    GATE_NOTE,
    SEPARATE_COLUMNS_NOTE,
    interval,
    markdown_table,
    md,
    md_code,
    phases_of,
    primary_quality,
    run_gates,
    under_load,
)
from effbench.records import PHASE_EVALUATE, MeasurementRow, RunRecord
from effbench.store.load import Results
from effbench.store.ownership import Output, check_folder, replace_folder, target_folder
from effbench.store.rows import records, run_spans, text_codes
from effbench.version import __version__

# file suffix -> the quantities it plots, the first one measured on the machine wins (counters before estimates)
FRONTIERS = {
    "latency": ("latency",),
    "energy": ("energy_direct_per_token", "energy_per_token"),
    "memory": ("peak_memory",),
}
TITLE = "# effbench leaderboards"
PNG_COMPRESSION = 3  # zlib level: smaller than its default (6) on these plots, and a third faster
LABELLED_POINTS = 40  # a plot with more points labels only the Pareto-optimal ones
PER_MACHINE = ("leaderboard.md", "leaderboard.csv", "pareto-*.png")
LEADERBOARDS = Output(
    "leaderboards",
    "effbench leaderboards",
    patterns=("README.md", *(f"*/{name}" for name in PER_MACHINE)),
    starts={"README.md": f"{TITLE}\n\nRendered by `effbench leaderboard`".encode()},  # how earlier versions began it
)


Verdicts = dict[str, dict[str, str | None]]  # run id -> MLPerf gate -> pass/fail/inconclusive vs baseline


class Gates(Mapping[str, str | None]):
    """A run's MLPerf gates, computed with its model and placement's other runs' when first read: ``write`` reads them
    while the plots are drawn beside, so building the boards does not wait for the paired comparisons."""

    def __init__(self, verdicts: Callable[[], Verdicts], run_id: str) -> None:
        self._verdicts = verdicts  # cached: computed once for the whole group
        self._run_id = run_id

    def _mine(self) -> dict[str, str | None]:
        return self._verdicts()[self._run_id]

    def __getitem__(self, name: str) -> str | None:
        return self._mine()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())

    def __repr__(self) -> str:
        return repr(self._mine())


def _column_key(column: Column) -> tuple[str, bool, float]:
    """What a column's figures depend on (a column's hash would hash its whole quantity)."""
    return column.name, column.ratio, column.quantity.scale


class Figures:
    """Every entry's resource figures on one machine as the measurement table's columns, computed a quantity at a time
    for every entry: the ranking, the fronts, the tables and the CSV read hundreds of thousands of them, too many for
    a record each (``Resources`` makes records only when they are read)."""

    def __init__(self, rows: pa.Table, run_ids: list[str]) -> None:
        self.rows = rows  # the entries' resource measurements (``resource_rows``), run after run
        self.run_ids = run_ids  # the entries', in the arrays' order
        self.spans = run_spans(rows.column("run_id"))
        self._codes, names = text_codes(rows.column("metric"))  # numbered as first seen
        self._names = [name for name in names if name is not None]  # a metric is never null
        self.code = {name: code for code, name in enumerate(self._names)}
        entry_of = {run_id: i for i, run_id in enumerate(run_ids)}
        self._entries = np.repeat(
            np.array([entry_of[run_id] for run_id in self.spans], np.int64),
            [stop - start for start, stop in self.spans.values()],
        )  # each row's entry
        keys = self._entries * len(self._names) + self._codes
        _, first = np.unique(keys[::-1], return_index=True)
        last = len(keys) - 1 - first  # each entry's last row of a quantity: the one a dict of its rows keeps
        self._at = np.full((len(run_ids), len(self._names)), -1, np.int64)  # entry, quantity -> row, -1: none
        self._at[self._entries[last], self._codes[last]] = last
        value, stderr, low, high = (rows.column(name) for name in ("value", "stderr", "ci_low", "ci_high"))
        self._value, self._stderr, self._low, self._high = (
            pc.fill_null(c, math.nan).to_numpy() for c in (value, stderr, low, high)
        )  # a missing stderr or bound: NaN
        self._bounded = pc.and_(low.is_valid(), high.is_valid()).to_numpy()  # both bounds stored (NaN ones too)
        self._intervals: dict[tuple[str, bool, float], list[Interval | None]] = {}

    def _shown(self, column: Column) -> tuple[np.ndarray, list[float], list[float], list[float]]:
        """The entries with a figure of the column's quantity, and its value and interval bounds in the column's unit
        (``Interval.of`` of the stored figure, for all of them at once)."""
        code = self.code.get(column.name)
        rows = self._at[:, code] if code is not None else np.full(len(self.run_ids), -1)
        held = np.flatnonzero(rows >= 0)
        at = rows[held]
        value = self._value[at]
        low, high = Interval.bounds_of(value, self._stderr[at], self._low[at], self._high[at], self._bounded[at])
        shown = (column.shown(v) for v in (value, low, high))
        return held, *(v.tolist() for v in shown)  # type: ignore[union-attr,return-value]

    def intervals(self, column: Column) -> list[Interval | None]:
        """Each entry's figure in the column's unit with its 95 % interval (``Entry.interval``), None without one."""
        key = _column_key(column)
        if key not in self._intervals:  # asked for by the ranking, the fronts, the tables and the page
            held, value, low, high = self._shown(column)
            out: list[Interval | None] = [None] * len(self.run_ids)
            for i, v, lo, hi in zip(held.tolist(), value, low, high, strict=True):
                out[i] = Interval(v, lo, hi)
            self._intervals[key] = out
        return self._intervals[key]

    def bounds(self, column: Column, entries: list[int]) -> tuple[list[float | None], ...]:
        """``_bounds`` of these entries' figures (indices into the arrays) as three CSV columns: value, low, high."""
        held, value, low, high = self._shown(column)
        where = np.full(len(self.run_ids), -1, np.int64)
        where[held] = np.arange(len(held))
        out: tuple[list[float | None], ...] = ([None] * len(entries), [None] * len(entries), [None] * len(entries))
        for j, k in enumerate(where[entries].tolist()):
            if k < 0:
                continue
            out[0][j] = value[k]
            if low[k] != high[k]:  # an exact figure has no bounds in the CSV
                out[1][j], out[2][j] = low[k], high[k]
        return out

    def measured(self, columns: list[Column]) -> list[Column]:
        """``measured_columns`` of the entries; a record made only of the row an undeclared quantity's column reads."""
        declared = {c.name for c in columns}
        _, first = np.unique(self._codes, return_index=True)  # each quantity's first row
        undeclared = []
        for code, name in enumerate(self._names):  # as first seen, as ``candidates`` sees them
            if name not in declared:
                row = int(self._at[self._entries[first[code]], code])  # the first entry's, as its dict keeps it
                undeclared.append(stored_column(records(self.rows.slice(row, 1), MeasurementRow)[0]))
        return [c for c in [*columns, *undeclared] if not c.ratio and c.name in self.code]

    @cached_property
    def _records(self) -> list[MeasurementRow]:
        return records(self.rows, MeasurementRow)

    def resources(self, index: int) -> dict[str, MeasurementRow]:
        """An entry's resource measurements as ``entry`` gives them (quantity -> its last row)."""
        start, stop = self.spans.get(self.run_ids[index], (0, 0))
        return {m.metric: m for m in self._records[start:stop]}


class Resources(Mapping[str, MeasurementRow]):
    """A board entry's resource measurements, made records of when first read (every entry's of its machine at once):
    the boards read the figures' arrays (``Figures``), only a page or a caller reads the records."""

    def __init__(self, figures: Figures, index: int) -> None:
        self.figures = figures
        self.index = index  # the entry's in the figures' arrays

    @cached_property
    def _rows(self) -> dict[str, MeasurementRow]:
        return self.figures.resources(self.index)

    def __getitem__(self, name: str) -> MeasurementRow:
        return self._rows[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return repr(self._rows)


@dataclass
class Entry:
    """One successful run on a leaderboard: its primary task metrics, resource figures and accuracy score."""

    run: RunRecord
    quality: dict[str, MeasurementRow]  # task -> the primary metric's measurement
    resources: Mapping[str, MeasurementRow]  # quantity -> evaluate-phase run-level measurement
    score: Interval | None = None  # mean of the scored tasks' figures, ± their combined standard error
    gates: Mapping[str, str | None] = field(default_factory=dict)  # MLPerf gate -> pass/fail/inconclusive vs baseline
    _intervals: dict[tuple[str, bool, float], Interval | None] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def label(self) -> str:
        """Model and technique stack with parameters."""
        return f"{self.run.model} · {self.run.label}"

    def value(self, column: Column) -> float | None:
        """A resource figure in the column's unit."""
        figure = self.interval(column)
        return None if figure is None else figure.value

    def interval(self, column: Column) -> Interval | None:
        """A resource figure and its 95 % interval in the column's unit (low = high when none is known)."""
        if isinstance(self.resources, Resources):  # a board's entry: every entry's figure at once
            return self.resources.figures.intervals(column)[self.resources.index]
        key = _column_key(column)
        if key in self._intervals:  # asked for by the tables
            return self._intervals[key]
        row = self.resources.get(column.name)
        figure = None if row is None else interval(row)
        shown = None if figure is None else (column.shown(v) for v in (figure.value, figure.low, figure.high))
        self._intervals[key] = None if shown is None else Interval(*shown)  # type: ignore[arg-type]
        return self._intervals[key]


def shared_scenario(measured: pa.Table) -> str | None:
    """The load scenario most runs of a measurement table (``Results.measurement_table``) measured (the first seen on
    a tie): a table shows one scenario."""
    table = under_load(measured.select(["run_id", "phase", "scenario"]))  # the columns read: not a copy of all
    if not table.num_rows:
        return None
    scenarios, names = text_codes(table.column("scenario"))  # numbered as first seen
    run_codes, _ = text_codes(table.column("run_id"))
    measured = np.unique(run_codes.astype(np.int64) * len(names) + scenarios) % len(names)  # once per run
    return names[int(np.bincount(measured, minlength=len(names)).argmax())]  # the first of the most


def _evaluated(table: pa.Table, scenario: str | None) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Which rows of a measurement table are evaluate-phase task metrics, and which evaluate-phase model-level figures
    or ``scenario``'s (a null task is neither)."""
    _, evaluated = phases_of(table)
    task = table.column("task")
    shown = pc.is_in(pc.fill_null(table.column("scenario"), ""), pa.array(["", scenario or ""]))
    return pc.and_(evaluated, pc.not_equal(task, "")), pc.and_(evaluated, pc.and_(pc.equal(task, ""), shown))


def evaluated_rows(table: pa.Table, scenario: str | None) -> dict[str, list[MeasurementRow]]:
    """Each run's evaluate-phase task metrics, model-level figures and ``scenario``'s in a measurement table, in stored
    order: the rows entries and gates read, made records of without making one of every measurement (half of them
    are not read)."""
    return _by_run(table.filter(pc.or_(*_evaluated(table, scenario))))


def _by_run(kept: pa.Table) -> dict[str, list[MeasurementRow]]:
    """Each run's rows of a measurement table as records, in stored order."""
    rows = records(kept, MeasurementRow)
    return {run_id: rows[start:stop] for run_id, (start, stop) in run_spans(kept.column("run_id")).items()}


def task_rows(table: pa.Table) -> dict[str, list[MeasurementRow]]:
    """Each run's evaluate-phase task metrics in a measurement table, in stored order: what an entry's quality and
    its gates read (a few per run, made records of)."""
    return _by_run(table.filter(_evaluated(table, None)[0]))


def resource_rows(table: pa.Table, scenario: str | None) -> pa.Table:
    """The evaluate-phase model-level figures and ``scenario``'s in a measurement table: an entry's resources."""
    return table.filter(_evaluated(table, scenario)[1])


def entry(run: RunRecord, rows: list[MeasurementRow], scenario: str | None) -> Entry:
    """A run's leaderboard entry (score left unset) from its measurements (at least those ``evaluated_rows`` keeps):
    model-level figures and those of ``scenario`` only."""
    rows = [m for m in rows if m.in_phase == PHASE_EVALUATE]
    resources = {m.metric: m for m in rows if m.task == "" and m.in_scenario in ("", scenario or "")}
    return Entry(run, primary_quality(rows), resources)


def measured_columns(entries: list[Entry], columns: list[Column]) -> list[Column]:
    """The resource columns (no ratios) with a value in at least one entry, declared ones first."""
    rows = [m for e in entries for m in e.resources.values()]
    return [c for c in candidates(columns, rows) if not c.ratio and any(e.value(c) is not None for e in entries)]


def headline(columns: list[Column]) -> list[Column]:
    """The few columns narrow tables show (leaderboard Markdown, compare)."""
    return [c for c in columns if c.quantity.headline]


def score(entry: Entry, scored: list[tuple[str, str]]) -> Interval | None:
    """The mean of the scored tasks' figures with a 95 % interval from their standard errors (exact without any)."""
    if not scored:
        return None
    rows = [entry.quality[t] for t, _ in scored]
    mean = sum(r.value for r in rows) / len(rows)
    stderr = math.sqrt(sum((r.stderr or 0.0) ** 2 for r in rows)) / len(rows)
    return Interval.of(mean, stderr)


def scored_tasks(entries: list[Entry]) -> list[tuple[str, str]]:
    """(task, metric) pairs every entry has as a higher-is-better primary metric: the ones a mean can combine."""
    if not entries:
        return []
    first = entries[0].quality
    return [
        (task, row.metric)
        for task, row in sorted(first.items())
        if all(
            (q := e.quality.get(task)) is not None and q.metric == row.metric and q.higher_is_better for e in entries
        )
    ]


@dataclass
class Board:
    """The leaderboard of one machine."""

    fingerprint: str
    machine: str
    entries: list[Entry]
    tasks: list[str]  # every task shown, in column order
    scored: list[tuple[str, str]]  # (task, metric) pairs the score averages
    scenario: str | None  # the load scenario of the per-scenario figures
    columns: list[Column]  # every resource column measured on this machine
    frontiers: dict[str, Column]  # frontier name -> the quantity it plots
    points: dict[str, tuple[list[int], list[Point]]]  # frontier name -> entry indices, their (cost, score)
    fronts: dict[str, set[int]]  # frontier name -> indices into entries
    ranks: list[int]  # per entry; entries that cannot be told apart share one
    figures: Figures  # the entries' resource figures as arrays

    @cached_property
    def _in_figures(self) -> list[int]:
        """Each entry's index in ``figures`` (its resources are ``Resources``: ``boards`` made them)."""
        return [e.resources.index for e in self.entries]  # type: ignore[attr-defined]

    def frontier_names(self, index: int) -> str:
        """Which frontiers an entry is on, with the members it is tied with, e.g. 'latency (tie: #1), memory'."""
        names = []
        for name, members in self.fronts.items():
            if index not in members:
                continue
            _, points = self.points[name]
            at = self._positions[name]
            mine = points[at[index]]
            ties = [f"#{i + 1}" for i in sorted(members) if i != index and decisions.tied(mine, points[at[i]])]
            names.append(f"{name} (tie: {', '.join(ties)})" if ties else name)
        return ", ".join(names)

    @cached_property
    def _positions(self) -> dict[str, dict[int, int]]:
        """Per frontier, where each plotted entry's point is in ``points``."""
        return {name: {i: at for at, i in enumerate(kept)} for name, (kept, _) in self.points.items()}

    def rank_text(self, index: int) -> str:
        """The rank, with '=' when shared (a tie: the intervals do not tell the entries apart)."""
        rank = self.ranks[index]
        return f"{rank}=" if self._sharing[rank] > 1 else str(rank)

    @cached_property
    def _sharing(self) -> Counter[int]:
        """How many entries hold each rank."""
        return Counter(self.ranks)


def _frontier(names: tuple[str, ...], measured: list[Column], columns: list[Column]) -> Column:
    """The first of ``names`` measured here; else its declared column (or a bare one) so the plot can say so."""
    by_name = {c.name: c for c in measured}
    found = next((by_name[n] for n in names if n in by_name), None)
    declared = next((c for c in columns if c.name == names[-1] and not c.ratio), None)
    return found or declared or Column(Quantity(names[-1], "", "", False))


def _points(entries: list[Entry], column: Column) -> tuple[list[int], list[Point]]:
    kept = [i for i, e in enumerate(entries) if e.score is not None and e.interval(column) is not None]
    return kept, [(entries[i].interval(column), entries[i].score) for i in kept]  # type: ignore[misc]


def _baselines(runs: list[RunRecord]) -> dict[tuple[str, str], RunRecord]:
    """Each model and placement's successful baseline run on a machine: what its gates compare with."""
    return {(r.model, r.placement): r for r in runs if r.technique == "baseline"}


def boards(results: Results, columns: list[Column]) -> list[Board]:
    """One leaderboard per hardware fingerprint, entries ranked by score (then latency); ``columns`` as declared."""
    indexing = threading.Thread(target=results.index_samples, name="effbench: samples index")
    indexing.start()
    try:
        return _boards(results, columns)
    finally:
        indexing.join()  # no thread runs when ``write`` forks


def _boards(results: Results, columns: list[Column]) -> list[Board]:
    """``boards``, built while the samples are indexed beside."""
    out = []
    for fingerprint, runs in results.hardware().items():
        ok = [r for r in runs if r.status == "ok"]
        if not ok:
            continue
        measured = results.measurement_table([r.run_id for r in ok])
        scenario = shared_scenario(measured)
        rows_of = task_rows(measured)
        figures = Figures(resource_rows(measured, scenario), [r.run_id for r in ok])
        entries = [
            Entry(r, primary_quality(rows_of.get(r.run_id, [])), Resources(figures, i)) for i, r in enumerate(ok)
        ]  # as ``entry`` makes them, the resources' records made when read
        scored = scored_tasks(entries)
        baselines = _baselines(ok)
        for e in entries:
            e.score = score(e, scored)
        placed: dict[tuple[str, str], list[Entry]] = {}
        for e in entries:  # each model and placement's runs against their baseline at once, when first read
            placed.setdefault((e.run.model, e.run.placement), []).append(e)
        for key, group in placed.items():
            verdicts = cache(partial(run_gates, results, rows_of, [e.run for e in group], baselines.get(key)))
            for e in group:
                e.gates = Gates(verdicts, e.run.run_id)
        measured = figures.measured(columns)
        frontiers = {name: _frontier(names, measured, columns) for name, names in FRONTIERS.items()}
        latency = frontiers["latency"]
        entries.sort(
            key=lambda e: (e.score is None, -(e.score.value if e.score else 0.0), e.value(latency) or math.inf, e.label)
        )
        missing = Interval(math.inf, math.inf, math.inf)  # no score or latency: below every measured one
        ranks = decisions.tie_ranks(
            [(_negated(e.score) if e.score else missing, e.interval(latency) or missing) for e in entries]
        )
        points = {name: _points(entries, column) for name, column in frontiers.items()}
        fronts = {name: {kept[i] for i in decisions.pareto_front(xy)} for name, (kept, xy) in points.items()}
        tasks = sorted({t for e in entries for t in e.quality})
        out.append(
            Board(
                fingerprint, runs[0].machine, entries, tasks, scored, scenario, measured, frontiers, points, fronts,
                ranks, figures,
            )
        )  # fmt: skip
    return out


def _negated(figure: Interval) -> Interval:
    """A higher-is-better figure as a lower-is-better key."""
    return Interval(-figure.value, -figure.high, -figure.low)


def headers(board: Board) -> list[str]:
    """Column headers of a machine's leaderboard table (its headline resource columns)."""
    metric_of = {t: next(e.quality[t].metric for e in board.entries if t in e.quality) for t in board.tasks}
    return [
        "Rank",
        "Model · technique",
        *(f"{t} {metric_of[t]}" for t in board.tasks),
        "Score",
        *(f"{name} gate" for name in GATES),
        *(c.header for c in headline(board.columns)),
        "Pareto-optimal for",
        "Run",
    ]


def rows(board: Board, count: int | None = None) -> list[list[str]]:
    """The board's first ``count`` rows as text (every row by default), made a column at a time."""
    shown = board.entries[:count]
    columns = [[board.rank_text(i) for i in range(len(shown))], [e.label for e in shown]]
    for task in board.tasks:
        quality = [e.quality.get(task) for e in shown]
        columns.append(fmt_each([q and q.value for q in quality], 3, [q and q.stderr for q in quality]))
    columns.append(_scores_text([e.score for e in shown]))
    columns += [[e.gates.get(name) or "–" for e in shown] for name in GATES]
    columns += [_intervals_text([e.interval(c) for e in shown], c.format_each) for c in headline(board.columns)]
    columns.append([board.frontier_names(i) or "–" for i in range(len(shown))])
    columns.append([e.run.run_id for e in shown])
    return [list(row) for row in zip(*columns, strict=True)]


def _intervals_text(figures: list[Interval | None], formatted: Callable[..., list[str]]) -> list[str]:
    """Figures with half their 95 % interval (none where exact), "–" where missing: ``formatted`` of the lot."""
    values = [None if f is None else f.value for f in figures]
    return formatted(values, spreads=[None if f is None or f.exact else (f.high - f.low) / 2 for f in figures])


def _scores_text(scores: list[Interval | None]) -> list[str]:
    """Scores with half their 95 % interval."""
    return _intervals_text(scores, partial(fmt_each, digits=3))


RANK_NOTE = (
    "Figures ± half their 95 % interval (the score's from its tasks' standard errors). Runs are ranked by score, "
    "then latency, and share a rank (`2=`) unless an interval tells them apart; a run is Pareto-optimal unless "
    "another is better beyond the intervals on one axis and not worse beyond them on the other, and optimal runs "
    "whose intervals overlap on both axes are ties (`tie: #k`)."
)


def scenario_note(scenario: str | None) -> str:
    """Which load scenario the per-scenario figures (latency, throughput, memory, energy...) come from."""
    if scenario is None:
        return "No run measured a load scenario."
    return f"Figures measured under load are from the {md_code(scenario)} scenario (runs without it: –)."


def to_markdown(board: Board) -> str:
    """The machine's leaderboard, with what the score means and the Pareto plots."""
    score = md(", ".join(f"{t} {m}" for t, m in board.scored) or "no task every run shares (no score)")
    lines = [
        f"## {md(board.machine)}",
        "",
        f"Hardware fingerprint {md_code(board.fingerprint)}; {len(board.entries)} successful runs. "
        f"Score: mean of {score}. {scenario_note(board.scenario)} "
        "Resource figures are comparable only on this machine; "
        f"{SEPARATE_COLUMNS_NOTE}, and leaderboard.csv holds every quantity measured.",
        "",
        f"{RANK_NOTE} {GATE_NOTE}.",
        "",
        markdown_table(headers(board), rows(board)),
    ]
    lines += [f"![accuracy vs {name}](pareto-{name}.png)" for name in FRONTIERS]
    return "\n".join(lines) + "\n"


def to_csv(board: Board) -> str:
    """Raw numbers per entry: value and stderr in separate columns, resource figures in the headers' units."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(
        [
            "hardware_fingerprint",
            "machine",
            "rank",
            "model",
            "technique",
            "technique_params",
            "run_id",
            "scenario",
            *(h for t in board.tasks for h in (f"{t} value", f"{t} stderr", f"{t} metric")),
            "score",
            "score ci_low",
            "score ci_high",
            *(f"{name} gate" for name in GATES),
            *(h for c in board.columns for h in (c.header, f"{c.header} ci_low", f"{c.header} ci_high")),
            "pareto",
        ]
    )
    shown = [bounds for c in board.columns for bounds in board.figures.bounds(c, board._in_figures)]
    figures = list(zip(*shown, strict=True)) if shown else [()] * len(board.entries)  # per entry
    for i, e in enumerate(board.entries):
        quality = [e.quality.get(t) for t in board.tasks]
        writer.writerow(
            [
                board.fingerprint,
                board.machine,
                board.rank_text(i),
                e.run.model,
                e.run.technique,
                e.run.technique_params,
                e.run.run_id,
                board.scenario,
                *(v for q in quality for v in ((q.value, q.stderr, q.metric) if q else (None, None, None))),
                *_bounds(e.score),
                *(e.gates.get(name) for name in GATES),
                *figures[i],
                board.frontier_names(i),
            ]
        )
    return buffer.getvalue()


def _bounds(figure: Interval | None) -> tuple[float | None, float | None, float | None]:
    """A figure and its interval's bounds for the CSV (empty bounds where the figure is taken as exact)."""
    if figure is None:
        return None, None, None
    return (figure.value, None, None) if figure.exact else (figure.value, figure.low, figure.high)


@dataclass(frozen=True)
class Plot:
    """One Pareto plot as it is drawn: made of a board here, drawn where matplotlib is ready (it pickles)."""

    path: Path
    cost: np.ndarray  # (value, low, high) × points: the resource, 95 % interval
    score: np.ndarray  # (value, low, high) × points
    optimal: np.ndarray  # per point, on the Pareto front
    labels: dict[int, str]  # point -> its label, for the points labelled, in order
    crowded: bool  # labels and error bars for the Pareto-optimal points only
    x_label: str
    y_label: str
    title: str
    empty: str  # what the plot says when no run has both figures


def plots(board: Board, folder: Path) -> list[Plot]:
    """The board's Pareto plots, one per frontier, into its machine's folder under ``folder``."""
    return [_plot(board, name, folder / board.fingerprint / f"pareto-{name}.png") for name in FRONTIERS]


def _plot(board: Board, name: str, path: Path) -> Plot:
    """Accuracy score against one resource with 95 % error bars, the Pareto-optimal runs in red."""
    column = board.frontiers[name]
    kept, points = board.points[name]
    front = board.fronts[name]
    crowded = len(points) > LABELLED_POINTS  # thousands of labels and error bars hide each other
    one_model = len({e.run.model for e in board.entries}) == 1
    labels = {
        at: board.entries[i].run.label if one_model else board.entries[i].label
        for at, i in enumerate(kept)
        if not crowded or i in front
    }
    score = ", ".join(f"{t} {m}" for t, m in board.scored) or "no shared task"
    better = "higher" if column.quantity.higher_is_better else "lower"
    model = f"{board.entries[0].run.model} · " if one_model else ""
    crowd = " (labels and error bars: Pareto-optimal runs)" * crowded
    return Plot(
        path=path,
        cost=np.array([(c.value, c.low, c.high) for c, _ in points], dtype=float).reshape(-1, 3).T,
        score=np.array([(s.value, s.low, s.high) for _, s in points], dtype=float).reshape(-1, 3).T,
        optimal=np.array([i in front for i in kept], dtype=bool),
        labels=labels,
        crowded=crowded,
        x_label=f"{column.header}  ({better} is better; {board.scenario or 'no scenario'})",
        y_label=textwrap.fill(f"score: mean of {score} (higher is better)", 60),
        title=f"{model}accuracy vs {name} — {board.machine}\nhardware {board.fingerprint}{crowd}",
        empty=f"no run has both a score and {column.name}",
    )


def _import_matplotlib() -> None:
    """What a process drawing plots imports first (most of the first plot's time)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401 (what savefig draws PNGs with)
    from matplotlib.figure import Figure  # noqa: F401


def draw(plot: Plot) -> None:
    """The plot as a PNG at its path: a ``Figure`` of its own, never pyplot's state (a caller's figures and backend
    stay as they are)."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    # a '$' in a model or machine name is text, not math; glyphs unhinted: a fifth of the plots' time, as legible
    with rc_context({"text.parse_math": False, "text.hinting": "no_hinting"}):
        fig = Figure(figsize=(8, 5.5), dpi=110)
        ax = fig.subplots()
        xs = plot.cost[0]
        middle = (xs.min() + xs.max()) / 2 if xs.size else 0.0
        for on, color, legend in ((True, "tab:red", "Pareto-optimal"), (False, "tab:gray", "dominated")):
            chosen = plot.optimal == on
            cost, score = plot.cost[:, chosen], plot.score[:, chosen]
            if chosen.any() and plot.crowded and not on:  # a cloud of points: its intervals are in leaderboard.csv
                ax.plot(cost[0], score[0], "o", markersize=5, color=color, markeredgecolor="black",
                        markeredgewidth=0.3, alpha=0.6, zorder=2, label=legend)  # fmt: skip
            elif chosen.any():
                ax.errorbar(
                    cost[0], score[0], xerr=[cost[0] - cost[1], cost[2] - cost[0]],
                    yerr=[score[0] - score[1], score[2] - score[0]],
                    fmt="o", markersize=8, color=color, markeredgecolor="black", markeredgewidth=0.5,
                    ecolor=color, elinewidth=1, capsize=3, zorder=3, label=f"{legend} (95 % intervals)",
                )  # fmt: skip
        for at, text in plot.labels.items():
            right = xs[at] <= middle  # labels point inwards so they stay inside the figure
            ax.annotate(text, (xs[at], plot.score[0, at]), textcoords="offset points", xytext=(6 if right else -6, 6),
                        ha="left" if right else "right", fontsize=8)  # fmt: skip
        if xs.size:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, plot.empty, ha="center", transform=ax.transAxes)
        ax.set_xlabel(plot.x_label)
        ax.set_ylabel(plot.y_label, fontsize=9)
        ax.set_title(plot.title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        fig.tight_layout()
        fig.savefig(plot.path, pil_kwargs={"compress_level": PNG_COMPRESSION})


def plotter(runs: int) -> aside.Prepared[list[Plot]]:
    """What draws a leaderboard's plots: for a store of ``runs`` runs, a process forked now that imports matplotlib
    while the boards are made (``aside.Prepared``)."""
    return aside.Prepared(_import_matplotlib, _draw_all, "drawing the leaderboard plots", runs * len(FRONTIERS))


def _draw_all(every: list[Plot]) -> None:
    for plot in every:
        draw(plot)


def check_writable(out: Path) -> None:
    """Refuse, before any work, an output folder that is not effbench's leaderboards (or new, or empty)."""
    check_folder(target_folder(out), LEADERBOARDS)


def _settle_gates(built: list[Board]) -> None:
    """Compute every entry's gates (``Gates``) here, once: a table made in a forked process would compute them there
    again, and every table reads them."""
    for board in built:
        for e in board.entries:
            len(e.gates)


def _write_csvs(built: list[Board], folder: Path) -> None:
    """Every board's leaderboard.csv, into its machine's folder."""
    for board in built:
        (folder / board.fingerprint / "leaderboard.csv").write_text(to_csv(board), encoding="utf-8")


def write(
    results: Results,
    built: list[Board],
    out: Path,
    page: str | None = None,
    meanwhile: Callable[[], None] | None = None,
    drawing: aside.Prepared[list[Plot]] | None = None,
) -> list[Path]:
    """Write the README.md index, per machine leaderboard.md/.csv and Pareto PNGs, and the interactive page when
    given (``html_page.page``), as one folder; returns them. ``meanwhile`` (what a command shows: its terminal
    tables) runs while the plots are drawn (by ``drawing``, made before the boards, else ``plotter`` now), before
    the files are in place."""
    suites = ", ".join(sorted({r.suite or "?" for r in results.runs}))
    lines = [
        TITLE,
        "",
        f"Rendered by `effbench leaderboard` (effbench {__version__}) from {len(results.runs)} runs "
        f"of suite(s) {md(suites)}. "
        "One leaderboard per machine (hardware fingerprint): resource figures of different machines differ.",
        "",
    ]
    if page is not None:
        lines += ["Every machine on one interactive page: [leaderboard.html](leaderboard.html).", ""]
    for board in built:
        best = board.entries[0]
        lines.append(
            f"- [{md(board.machine)}]({board.fingerprint}/leaderboard.md) ({md_code(board.fingerprint)}): "
            f"{len(board.entries)} runs; top score {_scores_text([best.score])[0]} by {md(best.label)}"
        )

    def render(folder: Path) -> None:
        for board in built:
            (folder / board.fingerprint).mkdir()

        def markdown() -> None:
            for board in built:
                (folder / board.fingerprint / "leaderboard.md").write_text(to_markdown(board), encoding="utf-8")
            if meanwhile is not None:
                meanwhile()

        def tables() -> None:  # while the plots are drawn: the gates, then the CSVs beside the Markdown
            _settle_gates(built)
            rows = sum(len(board.entries) for board in built)
            aside.side_by_side(lambda: _write_csvs(built, folder), markdown, "writing the leaderboard CSVs", rows)

        every = [plot for board in built for plot in plots(board, folder)]
        (plotter(len(results.runs)) if drawing is None else drawing).alongside(every, tables)
        (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        if page is not None:
            (folder / "leaderboard.html").write_text(page, encoding="utf-8")

    return replace_folder(out, LEADERBOARDS, render)
