"""Your runs beside published runs of the same model, technique and task: same-hardware rows first, runs from
other machines labelled as such (their resource figures are not comparable with yours)."""

from __future__ import annotations

from dataclasses import dataclass

from effbench.present.columns import Column, fmt
from effbench.present.leaderboard import (
    Entry,
    entry,
    evaluated_rows,
    headline,
    measured_columns,
    scenario_note,
    shared_scenario,
)
from effbench.present.report import markdown_table, md, status_text
from effbench.records import RunRecord
from effbench.store.load import Results

YOURS = "yours"
SAME = "published · same hardware"
OTHER = "published · OTHER hardware"


@dataclass
class Comparison:
    """One model × technique: a row per run, yours first."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    sources: list[str]  # YOURS, SAME or OTHER per row
    scenario: str | None  # the load scenario of the resource figures


def _key(run: RunRecord) -> tuple[str, str]:
    """Model and technique stack with parameters: what makes two runs comparable across machines and versions."""
    return (run.model, run.label)


def _row(e: Entry, source: str, metric_of: dict[str, str], columns: list[Column]) -> list[str]:
    """A run's row; a task scored with another metric than the header's shows a dash."""
    quality = [q if (q := e.quality.get(t)) and q.metric == metric else None for t, metric in metric_of.items()]
    return [
        source,
        f"{e.run.hardware_fingerprint} ({e.run.machine})",
        *(fmt(q.value, 3, q.stderr) if q else "–" for q in quality),
        *(c.format(e.value(c)) for c in columns),
        status_text(e.run),
        e.run.run_id,
    ]


def compare(mine: Results, published: Results, columns: list[Column]) -> list[Comparison]:
    """One comparison per model × technique (with parameters) among your runs; ``columns`` as declared."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for run in sorted(mine.runs, key=lambda r: (r.technique != "baseline", _key(r))):
        groups.setdefault(_key(run), []).append(run)
    others: dict[tuple[str, str], list[RunRecord]] = {}
    for run in sorted(published.runs, key=lambda r: r.run_id):
        if not mine.has_run(run.run_id):
            others.setdefault(_key(run), []).append(run)
    out = []
    for key, runs in groups.items():
        measured = mine.measurement_table([r.run_id for r in runs])
        scenario = shared_scenario(measured)
        rows_of = evaluated_rows(measured, scenario)
        yours = [entry(r, rows_of.get(r.run_id, []), scenario) for r in runs]
        tasks = sorted({t for e in yours for t in e.quality})
        machines = {e.run.hardware_fingerprint for e in yours}
        published_rows = evaluated_rows(published.measurement_table([r.run_id for r in others.get(key, [])]), scenario)
        theirs = [entry(r, published_rows.get(r.run_id, []), scenario) for r in others.get(key, [])]
        theirs = [e for e in theirs if not tasks or set(tasks) & set(e.quality)]
        theirs.sort(key=lambda e: (e.run.hardware_fingerprint not in machines, e.run.hardware_fingerprint))
        sources = [YOURS] * len(yours) + [SAME if e.run.hardware_fingerprint in machines else OTHER for e in theirs]
        metric_of = {t: next(e.quality[t].metric for e in yours if t in e.quality) for t in tasks}
        shown = headline(measured_columns(yours + theirs, columns))
        headers = ["Source", "Hardware", *(f"{t} {metric_of[t]}" for t in tasks), *(c.header for c in shown)]
        rows = [_row(e, s, metric_of, shown) for e, s in zip(yours + theirs, sources, strict=True)]
        title = f"{key[0]} · {key[1]}"
        out.append(Comparison(title, [*headers, "Status", "Run"], rows, sources, scenario))
    return out


def to_markdown(comparisons: list[Comparison]) -> str:
    """Every comparison as a Markdown table under its title."""
    parts = []
    for c in comparisons:
        published = len(c.rows) - c.sources.count(YOURS)
        note = "" if published else "\nNo published run of this model, technique and task.\n"
        parts.append(f"### {md(c.title)}\n\n{scenario_note(c.scenario)}\n\n{markdown_table(c.headers, c.rows)}{note}")
    return "\n".join(parts)
