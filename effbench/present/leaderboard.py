"""Leaderboards: per hardware fingerprint, every successful run ranked by accuracy beside its resource figures
(Markdown and CSV), and Pareto frontiers of accuracy against latency, energy per token and peak memory (PNG).

The Markdown table shows the declared headline quantities, the CSV every quantity measured; only
evaluate-phase figures count (a technique's one-off apply cost is not what a deployed model costs).
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from effbench.api.metric import Quantity
from effbench.present.columns import Column, candidates, fmt
from effbench.present.report import SEPARATE_COLUMNS_NOTE, markdown_table, md, md_code, primary_quality
from effbench.records import PHASE_EVALUATE, MeasurementRow, RunRecord
from effbench.store.load import Results
from effbench.store.ownership import Output, replace_folder
from effbench.version import __version__

# file suffix -> the quantities it plots, the first one measured on the machine wins (counters before estimates)
FRONTIERS = {
    "latency": ("latency",),
    "energy": ("energy_direct_per_token", "energy_per_token"),
    "memory": ("peak_memory",),
}
TITLE = "# effbench leaderboards"
PER_MACHINE = ("leaderboard.md", "leaderboard.csv", "pareto-*.png")
LEADERBOARDS = Output(
    "leaderboards",
    "effbench leaderboards",
    patterns=("README.md", *(f"*/{name}" for name in PER_MACHINE)),
    starts={"README.md": f"{TITLE}\n\nRendered by `effbench leaderboard`".encode()},  # how earlier versions began it
)


@dataclass
class Entry:
    """One successful run on a leaderboard: its primary task metrics, resource figures and accuracy score."""

    run: RunRecord
    quality: dict[str, MeasurementRow]  # task -> the primary metric's measurement
    resources: dict[str, MeasurementRow]  # quantity -> evaluate-phase run-level measurement
    score: float | None = None

    @property
    def label(self) -> str:
        """Model and technique stack with parameters."""
        return f"{self.run.model} · {self.run.label}"

    def value(self, column: Column) -> float | None:
        """A resource figure in the column's unit."""
        row = self.resources.get(column.name)
        return column.shown(row.value) if row else None


def shared_scenario(results: Results, runs: list[RunRecord]) -> str | None:
    """The load scenario most of these runs measured (the first seen on a tie): a table shows one scenario."""
    counts: Counter[str] = Counter()
    for run in runs:
        rows = results.measurements_of(run.run_id)
        counts.update(
            list(dict.fromkeys(m.in_scenario for m in rows if m.in_scenario and m.in_phase == PHASE_EVALUATE))
        )
    return max(counts, key=counts.__getitem__) if counts else None


def entry(results: Results, run: RunRecord, scenario: str | None) -> Entry:
    """A run's leaderboard entry (score left unset): model-level figures and those of ``scenario`` only."""
    rows = [m for m in results.measurements_of(run.run_id) if m.in_phase == PHASE_EVALUATE]
    resources = {m.metric: m for m in rows if m.task == "" and m.in_scenario in ("", scenario or "")}
    return Entry(run, primary_quality(rows), resources)


def measured_columns(entries: list[Entry], columns: list[Column]) -> list[Column]:
    """The resource columns (no ratios) with a value in at least one entry, declared ones first."""
    rows = [m for e in entries for m in e.resources.values()]
    return [c for c in candidates(columns, rows) if not c.ratio and any(e.value(c) is not None for e in entries)]


def headline(columns: list[Column]) -> list[Column]:
    """The few columns narrow tables show (leaderboard Markdown, compare)."""
    return [c for c in columns if c.quantity.headline]


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


def pareto_front(points: list[tuple[float, float]]) -> set[int]:
    """Indices of (cost, accuracy) points no other point dominates (no more cost, no less accuracy, one strictly)."""
    front = set()
    for i, (cost, acc) in enumerate(points):
        if not any(c <= cost and a >= acc and (c < cost or a > acc) for c, a in points):
            front.add(i)
    return front


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
    points: dict[str, tuple[list[int], list[tuple[float, float]]]]  # frontier name -> entry indices, (cost, score)
    fronts: dict[str, set[int]]  # frontier name -> indices into entries

    def frontier_names(self, index: int) -> str:
        """Which frontiers an entry is on, e.g. 'latency, memory'."""
        return ", ".join(name for name, members in self.fronts.items() if index in members)


def _frontier(names: tuple[str, ...], measured: list[Column], columns: list[Column]) -> Column:
    """The first of ``names`` measured here; else its declared column (or a bare one) so the plot can say so."""
    by_name = {c.name: c for c in measured}
    found = next((by_name[n] for n in names if n in by_name), None)
    declared = next((c for c in columns if c.name == names[-1] and not c.ratio), None)
    return found or declared or Column(Quantity(names[-1], "", "", False))


def _points(entries: list[Entry], column: Column) -> tuple[list[int], list[tuple[float, float]]]:
    kept = [i for i, e in enumerate(entries) if e.score is not None and e.value(column) is not None]
    return kept, [(entries[i].value(column), entries[i].score) for i in kept]


def boards(results: Results, columns: list[Column]) -> list[Board]:
    """One leaderboard per hardware fingerprint, entries ranked by score (then latency); ``columns`` as declared."""
    out = []
    for fingerprint, runs in results.hardware().items():
        ok = [r for r in runs if r.status == "ok"]
        if not ok:
            continue
        scenario = shared_scenario(results, ok)
        entries = [entry(results, r, scenario) for r in ok]
        scored = scored_tasks(entries)
        for e in entries:
            e.score = sum(e.quality[t].value for t, _ in scored) / len(scored) if scored else None
        measured = measured_columns(entries, columns)
        frontiers = {name: _frontier(names, measured, columns) for name, names in FRONTIERS.items()}
        latency = frontiers["latency"]
        entries.sort(key=lambda e: (e.score is None, -(e.score or 0.0), e.value(latency) or math.inf, e.label))
        points = {name: _points(entries, column) for name, column in frontiers.items()}
        fronts = {name: {kept[i] for i in pareto_front(xy)} for name, (kept, xy) in points.items()}
        tasks = sorted({t for e in entries for t in e.quality})
        out.append(
            Board(fingerprint, runs[0].machine, entries, tasks, scored, scenario, measured, frontiers, points, fronts)
        )
    return out


def headers(board: Board) -> list[str]:
    """Column headers of a machine's leaderboard table (its headline resource columns)."""
    metric_of = {t: next(e.quality[t].metric for e in board.entries if t in e.quality) for t in board.tasks}
    return [
        "Rank",
        "Model · technique",
        *(f"{t} {metric_of[t]}" for t in board.tasks),
        "Score",
        *(c.header for c in headline(board.columns)),
        "Pareto-optimal for",
        "Run",
    ]


def cells(board: Board, index: int) -> list[str]:
    """One leaderboard row as text."""
    e = board.entries[index]
    quality = [e.quality.get(t) for t in board.tasks]
    return [
        str(index + 1),
        e.label,
        *(fmt(q.value, 3, q.stderr) if q else "–" for q in quality),
        fmt(e.score, 3),
        *(c.format(e.value(c)) for c in headline(board.columns)),
        board.frontier_names(index) or "–",
        e.run.run_id,
    ]


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
        markdown_table(headers(board), [cells(board, i) for i in range(len(board.entries))]),
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
            *(c.header for c in board.columns),
            "pareto",
        ]
    )
    for i, e in enumerate(board.entries):
        quality = [e.quality.get(t) for t in board.tasks]
        writer.writerow(
            [
                board.fingerprint,
                board.machine,
                i + 1,
                e.run.model,
                e.run.technique,
                e.run.technique_params,
                e.run.run_id,
                board.scenario,
                *(v for q in quality for v in ((q.value, q.stderr, q.metric) if q else (None, None, None))),
                e.score,
                *(e.value(c) for c in board.columns),
                board.frontier_names(i),
            ]
        )
    return buffer.getvalue()


def plot(board: Board, name: str, path: Path) -> None:
    """Accuracy score against one resource, the Pareto frontier drawn as a staircase through its members."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"text.parse_math": False}):  # a '$' in a model or machine name is text, not math
        column = board.frontiers[name]
        kept, points = board.points[name]
        fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
        front = board.fronts[name]
        middle = (min(x for x, _ in points) + max(x for x, _ in points)) / 2 if points else 0.0
        for on, color, legend in ((True, "tab:red", "Pareto-optimal"), (False, "tab:gray", "dominated")):
            chosen = [p for i, p in zip(kept, points, strict=True) if (i in front) == on]
            if chosen:
                ax.scatter(*zip(*chosen, strict=True), s=70, color=color, edgecolor="black", linewidth=0.5, zorder=3,
                           label=legend)  # fmt: skip
        one_model = len({e.run.model for e in board.entries}) == 1
        for i, (x, y) in zip(kept, points, strict=True):
            right = x <= middle  # labels point inwards so they stay inside the figure
            text = board.entries[i].run.label if one_model else board.entries[i].label
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(6 if right else -6, 6),
                        ha="left" if right else "right", fontsize=8)  # fmt: skip
        steps = sorted(p for i, p in zip(kept, points, strict=True) if i in front)
        if len(steps) > 1:
            ax.step(
                [x for x, _ in steps], [y for _, y in steps], where="post", color="tab:red", label="Pareto frontier"
            )
        if points:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, f"no run has both a score and {column.name}", ha="center", transform=ax.transAxes)
        score = ", ".join(f"{t} {m}" for t, m in board.scored) or "no shared task"
        better = "higher" if column.quantity.higher_is_better else "lower"
        ax.set_xlabel(f"{column.header}  ({better} is better; {board.scenario or 'no scenario'})")
        ax.set_ylabel(textwrap.fill(f"score: mean of {score} (higher is better)", 60), fontsize=9)
        model = f"{board.entries[0].run.model} · " if one_model else ""
        ax.set_title(f"{model}accuracy vs {name} — {board.machine}\nhardware {board.fingerprint}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(0.15)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


def write(results: Results, built: list[Board], out: Path) -> list[Path]:
    """Write the README.md index and per machine leaderboard.md/.csv and Pareto PNGs as one folder; returns them."""
    suites = ", ".join(sorted({r.suite or "?" for r in results.runs}))
    lines = [
        TITLE,
        "",
        f"Rendered by `effbench leaderboard` (effbench {__version__}) from {len(results.runs)} runs "
        f"of suite(s) {md(suites)}. "
        "One leaderboard per machine (hardware fingerprint): resource figures of different machines differ.",
        "",
    ]
    for board in built:
        best = board.entries[0]
        lines.append(
            f"- [{md(board.machine)}]({board.fingerprint}/leaderboard.md) ({md_code(board.fingerprint)}): "
            f"{len(board.entries)} runs; top score {fmt(best.score, 3)} by {md(best.label)}"
        )

    def render(folder: Path) -> None:
        for board in built:
            (folder / board.fingerprint).mkdir()
            (folder / board.fingerprint / "leaderboard.md").write_text(to_markdown(board), encoding="utf-8")
            (folder / board.fingerprint / "leaderboard.csv").write_text(to_csv(board), encoding="utf-8")
            for name in FRONTIERS:
                plot(board, name, folder / board.fingerprint / f"pareto-{name}.png")
        (folder / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    return replace_folder(out, LEADERBOARDS, render)
