"""Your runs beside published runs of the same model, technique and task: same-hardware rows first, runs from
other machines labelled as such (their resource figures are not comparable with yours)."""

from __future__ import annotations

from dataclasses import dataclass

from effbench.present.leaderboard import COLUMNS, Entry, entry, scenario_note, shared_scenario
from effbench.present.report import fmt, markdown_table, status_text, technique_label
from effbench.store.dataset import Dataset, hardware_label

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


def _key(run: dict) -> tuple[str, str, str]:
    return (run["model"], run["technique"], run["technique_params"])


def _row(e: Entry, source: str, metric_of: dict[str, str]) -> list[str]:
    """A run's row; a task scored with another metric than the header's shows a dash."""
    quality = [q if (q := e.quality.get(t)) and q["metric"] == metric else None for t, metric in metric_of.items()]
    return [
        source,
        f"{e.run['hardware_fingerprint']} ({hardware_label(e.run['hardware'])})",
        *(fmt(q["value"], 3, q["stderr"]) if q else "–" for q in quality),
        *(fmt(e.value(c), c.digits) for c in COLUMNS),
        status_text(e.run),
        e.run["run_id"],
    ]


def compare(mine: Dataset, published: Dataset) -> list[Comparison]:
    """One comparison per model × technique (with parameters) among your runs."""
    groups: dict[tuple, list[str]] = {}
    for run_id in sorted(mine.runs, key=lambda r: (mine.runs[r]["technique"] != "baseline", _key(mine.runs[r]))):
        groups.setdefault(_key(mine.runs[run_id]), []).append(run_id)
    others: dict[tuple, list[str]] = {}
    for run_id, run in sorted(published.runs.items()):
        if run_id not in mine.runs:
            others.setdefault(_key(run), []).append(run_id)
    out = []
    for key, run_ids in groups.items():
        scenario = shared_scenario(mine, run_ids)
        yours = [entry(mine, r, scenario) for r in run_ids]
        tasks = sorted({t for e in yours for t in e.quality})
        machines = {e.run["hardware_fingerprint"] for e in yours}
        theirs = [entry(published, r, scenario) for r in others.get(key, [])]
        theirs = [e for e in theirs if not tasks or set(tasks) & set(e.quality)]
        theirs.sort(key=lambda e: (e.run["hardware_fingerprint"] not in machines, e.run["hardware_fingerprint"]))
        sources = [YOURS] * len(yours) + [SAME if e.run["hardware_fingerprint"] in machines else OTHER for e in theirs]
        metric_of = {t: next(e.quality[t]["metric"] for e in yours if t in e.quality) for t in tasks}
        headers = ["Source", "Hardware", *(f"{t} {metric_of[t]}" for t in tasks), *(c.header for c in COLUMNS)]
        rows = [_row(e, s, metric_of) for e, s in zip(yours + theirs, sources, strict=True)]
        title = f"{key[0]} · {technique_label(yours[0].run)}"
        out.append(Comparison(title, [*headers, "Status", "Run"], rows, sources, scenario))
    return out


def to_markdown(comparisons: list[Comparison]) -> str:
    """Every comparison as a Markdown table under its title."""
    parts = []
    for c in comparisons:
        published = len(c.rows) - c.sources.count(YOURS)
        note = "" if published else "\nNo published run of this model, technique and task.\n"
        parts.append(f"### {c.title}\n\n{scenario_note(c.scenario)}\n\n{markdown_table(c.headers, c.rows)}{note}")
    return "\n".join(parts)
