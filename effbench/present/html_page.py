"""The interactive leaderboard page: every machine's successful runs in one self-contained HTML file.

A Pareto chart of the accuracy score against a resource chosen on the page (latency, TTFT, TPOT, energy per
token, $ per million tokens, peak memory, size: whichever were measured), with 95 % error bars both ways and the
frontier of the points shown; filters by model, machine, stage, technique and gate result; provenance on hover;
a sortable table and a CSV download of what is shown. Vega-Lite draws the chart: its JavaScript (Vega, Vega-Lite,
Vega-Embed, from ``vl-convert-python``) is inlined, so the page works offline and loads nothing from anywhere
(its Content-Security-Policy forbids it). Every text from the results reaches the page as JSON data and the
browser as DOM text, never as markup.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

from effbench.errors import EffbenchError
from effbench.measure.decisions import Interval
from effbench.present.columns import Column
from effbench.present.leaderboard import Board
from effbench.store.load import Results, is_dataset
from effbench.version import __version__

# x-axis choice -> the quantities it plots, the first one measured on a machine wins (counters before estimates)
AXES: dict[str, tuple[str, ...]] = {
    "latency": ("latency",),
    "ttft": ("ttft",),
    "tpot": ("tpot",),
    "energy": ("energy_direct_per_token", "energy_per_token"),
    "cost": ("cost_per_mtok",),
    "memory": ("peak_memory",),
    "size": ("weight_bytes",),
}
AXIS = "latency"  # the page's first x-axis unless told
CSP = "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
LIBRARIES = ("lm_eval", "transformers", "torch")  # versions shown on hover beside effbench's


@dataclass(frozen=True)
class AxisFigure:
    """A run's figure on one x-axis: which quantity it is on that run's machine, its header and value."""

    quantity: str
    header: str
    digits: int  # decimals shown
    figure: Interval  # low = high when nothing is known of its uncertainty


@dataclass
class PageRow:
    """One successful run as the page shows it: a point, a table row and its provenance."""

    run_id: str
    machine: str
    fingerprint: str
    rank: int  # on its machine's leaderboard, shared by runs the intervals cannot tell apart
    rank_text: str  # the rank as the Markdown board shows it ('2=' when shared)
    model: str
    technique: str  # the stack with parameters, e.g. ``prune-magnitude(sparsity=0.5) + dynamic-int8``
    techniques: list[str]  # the technique names, what the technique filter offers
    stage: str
    score: Interval | None
    score_of: str  # what the score averages on this machine
    scenario: str
    axes: dict[str, AxisFigure]
    gates: dict[str, str]  # gate level -> pass, fail or inconclusive (empty for a baseline)
    versions: dict[str, str]  # effbench and the libraries that shape a result
    placement: str  # device and dtype ("" before 1.3)
    revision: str = ""  # the dataset revision the run was read from, when it was


def axis_columns(board: Board) -> dict[str, Column]:
    """Each x-axis measured on this machine, with the quantity it plots here."""
    measured = {c.name: c for c in board.columns}
    found = {axis: next((measured[n] for n in names if n in measured), None) for axis, names in AXES.items()}
    return {axis: column for axis, column in found.items() if column is not None}


def page_rows(board: Board, revision: str = "") -> list[PageRow]:
    """The page's rows of one machine's leaderboard: the one place its figures, intervals and gates are read."""
    columns = axis_columns(board)
    score_of = ", ".join(f"{t} {m}" for t, m in board.scored) or "no task every run on this machine shares"
    rows = []
    for index, e in enumerate(board.entries):
        axes = {
            axis: AxisFigure(c.name, c.header, c.quantity.digits, figure)
            for axis, c in columns.items()
            if (figure := e.interval(c)) is not None
        }
        versions = json.loads(e.run.versions or "{}")
        rows.append(
            PageRow(
                run_id=e.run.run_id,
                machine=board.machine,
                fingerprint=board.fingerprint,
                rank=board.ranks[index],
                rank_text=board.rank_text(index),
                model=e.run.model,
                technique=e.run.label,
                techniques=[s.name for s in e.run.stack_entries()],
                stage=e.run.stage,
                score=e.score,
                score_of=score_of,
                scenario=board.scenario or "",
                axes=axes,
                gates={gate: verdict for gate, verdict in e.gates.items() if verdict},  # none for a baseline
                versions={
                    "effbench": e.run.effbench_version,
                    **{lib: str(versions[lib]) for lib in LIBRARIES if versions.get(lib)},
                },
                revision=revision,
                placement=e.run.placement,
            )
        )
    return rows


def dataset_revision(root: Path) -> str:
    """The Hub commit a dataset folder was downloaded at (``hf download --local-dir``), "" when not downloaded so.

    huggingface_hub records it per file and forgets it once the file changes, so an edited dataset claims none.
    """
    if not is_dataset(root):
        return ""
    from huggingface_hub._local_folder import read_download_metadata

    commits = {
        meta.commit_hash if meta else ""
        for path in sorted((root / "runs").glob("*.parquet"))
        for meta in [read_download_metadata(root, path.relative_to(root).as_posix())]
    }
    return commits.pop() if len(commits) == 1 else ""


def check_axis(axis: str) -> None:
    """Refuse an axis the page does not know."""
    if axis not in AXES:
        raise EffbenchError(f"unknown axis {axis!r}; valid axes: {', '.join(AXES)}")


def check(rows: list[PageRow], results: Results, axis: str) -> None:
    """Refuse an unknown axis, a page with no point to draw or an axis nothing measured, before anything is written."""
    check_axis(axis)
    if not rows:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(Counter(r.status for r in results.runs).items()))
        raise EffbenchError(f"no successful run to put on the page ({statuses}): nothing to plot")
    measured = [a for a in AXES if any(a in r.axes for r in rows)]
    if axis not in measured:
        valid = ", ".join(measured) or "none"
        raise EffbenchError(f"no successful run measured the {axis} axis; measured axes: {valid}")


@cache
def chart_library() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (about 0.9 MB), from the installed vl-convert-python."""
    import vl_convert

    return vl_convert.javascript_bundle()


def _json_script(data: object) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end it or start markup."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render(rows: list[PageRow], axis: str, source: str) -> str:
    """The whole page: styles, the chart library, the data and the page's script."""
    import vl_convert

    data = {
        "rows": [asdict(r) for r in rows],
        "axes": list(AXES),
        "axis": axis,
        "source": source,
        "effbench": __version__,
        "vega": vl_convert.get_vega_version(),
    }
    parts = {
        "csp": html.escape(CSP),
        "title": html.escape(f"effbench leaderboard — {source}"),
        "library": chart_library(),
        "data": _json_script(data),
        "script": files("effbench.present").joinpath("html_page.js").read_text(encoding="utf-8"),
    }
    template = files("effbench.present").joinpath("html_page.html").read_text(encoding="utf-8")
    return PLACEHOLDER.sub(lambda m: parts[m.group(1)], template)  # one pass: inserted text is never searched


def page(results: Results, boards: list[Board], source: Path, axis: str = AXIS) -> str:
    """The page of these leaderboards (all machines), checked first; ``source`` is the store or dataset read."""
    revision = dataset_revision(source)
    rows = [row for board in boards for row in page_rows(board, revision)]
    check(rows, results, axis)
    return render(rows, axis, source.name or str(source))
