"""The Python API for notebooks and scripts: ``effbench.evaluate`` and ``effbench.load`` return ``Results``.

``Results`` is the one loader's ``effbench.store.load.Results`` (the typed records every command reads) plus
pandas DataFrames of its tables and the comparison table, leaderboard and comparison the command line prints,
as objects that show themselves as escaped HTML in Jupyter and as Markdown in a terminal.
"""

from __future__ import annotations

import dataclasses
import html
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from effbench.config.suite import UNSTABLE_CV, Suite, load_suite
from effbench.errors import EffbenchError
from effbench.publish.trackers import TrackerFailure
from effbench.records import MeasurementRow, Record, RunRecord, SampleRow
from effbench.store import load as loader

# The pandas dtype of each stored Arrow type: nullable where the store allows nulls, text as pandas strings.
# README, "Python API", lists this mapping; tests/test_python_api.py checks every column against it.
FRAME_DTYPES: dict[str, str] = {
    "string": "string",
    "double": "float64",
    "int64": "Int64",
    "bool": "boolean",
    "timestamp[s, tz=UTC]": "datetime64[s, UTC]",
    "list<item: string>": "object",
}
_ARROW_TO_PANDAS: dict[pa.DataType, Any] = {
    pa.string(): pd.StringDtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


def to_frame(table: pa.Table, kind: type[Record]) -> pd.DataFrame:
    """A stored table as a DataFrame whose column dtypes follow ``FRAME_DTYPES`` (an empty table keeps them too)."""
    frame = table.to_pandas(types_mapper=_ARROW_TO_PANDAS.get)
    for name, arrow in zip(kind.schema().names, kind.schema().types, strict=True):
        frame[name] = frame[name].astype(FRAME_DTYPES[str(arrow)])
    return frame


@dataclass(frozen=True)
class Table:
    """One titled table of text cells, as effbench prints it, with notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        """The table's cells (text, as printed) as a DataFrame."""
        return pd.DataFrame(self.rows, columns=pd.Index(self.headers))

    def to_markdown(self) -> str:
        """The table as Markdown, every title, header, cell and note shown as itself."""
        from effbench.present.report import markdown_table, md

        notes = "".join(f"\n- {md(note)}" for note in self.notes)
        return f"### {md(self.title)}\n\n{markdown_table(self.headers, self.rows)}{notes}\n"

    def to_html(self) -> str:
        """An HTML table in which every title, header, cell and note is escaped (stored names are user text)."""

        def row(tag: str, values: list[str]) -> str:
            return "<tr>" + "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in values) + "</tr>"

        body = "".join(row("td", r) for r in self.rows)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        return (
            f"<h4>{html.escape(self.title)}</h4><table><thead>{row('th', self.headers)}</thead><tbody>{body}</tbody>"
            f"</table>" + (f"<ul>{notes}</ul>" if notes else "")
        )


@dataclass(frozen=True)
class View:
    """What a command prints (report, leaderboard, comparison): Markdown as text, HTML in Jupyter, and the objects
    it was built from (``report.ComparisonTable``, ``leaderboard.Board``, ``compare.Comparison``) for their numbers."""

    markdown: str
    tables: list[Table]
    built: list[Any]

    def __str__(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        return "".join(t.to_html() for t in self.tables) or "<p>nothing to show</p>"

    def frames(self) -> list[pd.DataFrame]:
        """Each table's cells as a DataFrame."""
        return [t.frame() for t in self.tables]


@dataclass(frozen=True)
class Results(loader.Results):
    """Stored runs with their measurements and samples: DataFrames, ``report()``, ``leaderboard()``, ``compare()``.

    ``failed``, ``skipped``, ``not_applicable`` and ``tracker_failures`` say what ``evaluate`` did (empty after
    ``load``).
    """

    source: str = ""  # the store, dataset folder or Hub dataset they were read from
    unstable_cv: float = UNSTABLE_CV
    skipped: list[str] = field(default_factory=list)  # run ids already stored, not run again
    failed: dict[str, str] = field(default_factory=dict)  # run id -> why it failed
    not_applicable: dict[str, str] = field(default_factory=dict)  # run id -> why the technique could not act
    tracker_failures: list[TrackerFailure] = field(default_factory=list)  # runs stored but not exported

    @classmethod
    def of(cls, loaded: loader.Results, **extra: Any) -> Results:
        """The loader's results with the Python API's methods."""
        return cls(**{f.name: getattr(loaded, f.name) for f in dataclasses.fields(loader.Results)}, **extra)

    @property
    def runs_df(self) -> pd.DataFrame:
        """One row per run (``RunRecord`` columns; JSON text columns stay text), ordered by run id."""
        return to_frame(self.table(RunRecord), RunRecord)

    @property
    def measurements_df(self) -> pd.DataFrame:
        """One row per measured value (``MeasurementRow`` columns), each run's in the order it reported them."""
        return to_frame(self.table(MeasurementRow), MeasurementRow)

    @property
    def samples_df(self) -> pd.DataFrame:
        """One row per document and metric of each run's lm-eval tasks (``SampleRow`` columns)."""
        return to_frame(self.table(SampleRow), SampleRow)

    def report(self, unstable_cv: float | None = None) -> View:
        """The comparison table ``effbench evaluate`` prints: one per model, machine and placement, baseline first."""
        from effbench.plugins import registry
        from effbench.present import report
        from effbench.present.columns import registry_columns

        cv = self.unstable_cv if unstable_cv is None else unstable_cv
        built = report.build(self, None, cv, registry_columns(registry()))
        tables = []
        for comparison in built:
            parts = comparison.parts()
            for index, (section, headers, rows) in enumerate(parts):
                notes = comparison.notes if index == len(parts) - 1 else []
                tables.append(Table(f"{comparison.title} — {section}", headers, rows, notes))
        return View("\n".join(report.to_markdown(t) for t in built), tables, built)

    def leaderboard(self) -> View:
        """The leaderboard ``effbench leaderboard`` prints: one per machine, ranked by score, Pareto fronts named."""
        from effbench.plugins import registry
        from effbench.present import leaderboard
        from effbench.present.columns import registry_columns

        boards = leaderboard.boards(self, registry_columns(registry()))
        tables = [
            Table(
                f"{b.machine} ({b.fingerprint}; {b.scenario or 'no scenario'})",
                leaderboard.headers(b),
                leaderboard.rows(b),
                [leaderboard.scenario_note(b.scenario)],
            )
            for b in boards
        ]
        return View("\n".join(t.to_markdown() for t in tables), tables, boards)  # no plots: no links to them

    def compare(
        self, against: Results | str | Path, *, revision: str | None = None, endpoint: str | None = None
    ) -> View:
        """These runs beside others of the same model, technique and task (results, a folder or a Hub dataset)."""
        from effbench.plugins import registry
        from effbench.present import compare
        from effbench.present.columns import registry_columns

        published = against if isinstance(against, loader.Results) else load(against, revision=revision,
                                                                             endpoint=endpoint)  # fmt: skip
        built = compare.compare(self, published, registry_columns(registry()))
        tables = [Table(f"{c.title} ({c.scenario or 'no scenario'})", c.headers, c.rows) for c in built]
        return View(compare.to_markdown(built), tables, built)

    def _repr_html_(self) -> str:
        counts = {"already stored": self.skipped, "failed": self.failed, "not applicable": self.not_applicable}
        summary = f"{len(self.runs)} runs from {self.source}" + "".join(
            f"; {len(ids)} {what}" for what, ids in counts.items() if ids
        )
        problems = [f"run {run_id} failed: {error}" for run_id, error in self.failed.items()]
        problems += [str(failure) for failure in self.tracker_failures]
        failures = "".join(f"<li>{html.escape(text)}</li>" for text in problems)
        report = self.report()._repr_html_() if self.runs else ""
        return f"<p>{html.escape(summary)}</p>" + (f"<ul>{failures}</ul>" if failures else "") + report


def load(
    source: str | Path, *, revision: str | None = None, endpoint: str | None = None, token: str | None = None
) -> Results:
    """A results store, a dataset folder or a published Hub dataset (``ORG/NAME``) as ``Results``."""
    from effbench.cli.dataset import is_repo_id

    if Path(source).is_dir():
        return Results.of(loader.load(source), source=str(source))
    if isinstance(source, str) and is_repo_id(source):
        from effbench.publish import hub

        with tempfile.TemporaryDirectory(prefix="effbench-load-") as tmp:  # the rows are read into memory
            published = hub.fetch(source, Path(tmp), revision=revision, endpoint=endpoint, token=token)
        return Results.of(published, source=source)
    raise EffbenchError(f"{source}: neither a results store or dataset folder nor a Hub dataset id ORG/NAME")


def evaluate(
    suite: Suite | str | Path | None = None,
    *,
    force: bool = False,
    on_event: Callable[[str], None] | None = None,
    **overrides: Any,
) -> Results:
    """Run a suite (a path, a ``Suite``, or None for the default) like ``effbench evaluate``; returns its runs.

    ``overrides`` are suite fields (``models``, ``techniques``, ``tasks``, ``limit``, ``output``, ...);
    ``on_event`` is told each phase a run enters, as the command line's progress bar is.
    """
    from effbench.plugins import registry
    from effbench.publish.trackers import Exporter
    from effbench.run.sweep import run_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite, **overrides)
    elif overrides:
        raise EffbenchError(f"overrides ({', '.join(sorted(overrides))}) apply to a suite file, not to a Suite object")
    exporter = Exporter.for_suite(suite, registry(), warn=lambda failure: warnings.warn(str(failure), stacklevel=3))
    done = run_suite(suite, force=force, on_event=on_event, on_stored=exporter)
    stored = loader.load(suite.output, "store")
    ran = [stored.run(run_id) for run_id in done.run_ids if stored.has_run(run_id)]
    chosen = {run.run_id for run in ran}
    return Results(
        runs=ran,
        measurements=[m for m in stored.measurements if m.run_id in chosen],
        samples=[s for s in stored.samples if s.run_id in chosen],
        problems=stored.problems,
        source=str(suite.output),
        unstable_cv=suite.unstable_cv,
        skipped=done.skipped,
        failed=done.failed,
        not_applicable=done.not_applicable,
        tracker_failures=exporter.failures,
    )
