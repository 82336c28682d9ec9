"""The paper-style comparison table: techniques as rows, accuracy and resources relative to the baseline."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effbench.api.types import QUALITY
from effbench.config.suite import TechniqueSpec
from effbench.measure.statistics import UNSTABLE_CV
from effbench.store.results import ResultsStore

KEEP_FRACTION = 0.99  # MLPerf: an optimised system must keep >= 99 % of the reference accuracy


UNSTABLE_MARK = "†"


@dataclass(frozen=True)
class ResourceColumn:
    """A resource column: which stored metric (first present wins), its header, and the display scale."""

    metrics: tuple[str, ...]
    header: str
    scale: float = 1.0
    digits: int = 1
    baseline_over_value: bool = False  # compression and speed-up: baseline's value / this value


def _col(metric: str | tuple[str, ...], header: str, scale: float = 1.0, digits: int = 1, ratio: bool = False):
    return ResourceColumn((metric,) if isinstance(metric, str) else metric, header, scale, digits, ratio)


MODEL_COLUMNS = (
    _col("weight_bytes", "Size (MB)", digits=2),
    _col("weight_bytes", "Compression ×", digits=2, ratio=True),
    _col("disk_bytes", "On disk (MB)", digits=2),
    _col("parameters_nonzero", "Non-zero params (M)", 1e-6, 3),
    _col("flops_prefill", "MFLOP/prefill tok", 1e3, 2),
    _col("flops_decode", "MFLOP/decode tok", 1e3, 2),
    _col("apply_time", "Apply (s)", digits=2),
    _col("cost_run", "Run cost ($)", digits=5),
)
LOAD_COLUMNS = (
    _col("latency", "Latency (ms)"),
    _col("latency_p99", "p99 (ms)"),
    _col("ttft", "TTFT (ms)", digits=2),
    _col("tpot", "TPOT (ms)", digits=2),
    _col("throughput", "Tokens/s"),
    _col("request_rate", "Requests/s", digits=2),
    _col("latency", "Speed-up ×", digits=2, ratio=True),
    _col("peak_memory", "Peak RSS (MiB)", digits=0),
    _col(("energy_direct_per_token", "energy_per_token"), "Energy (mJ/token)", 1e3, 2),
    _col("co2", "CO2 (mg)", 1e6, 3),
    _col("cost_per_mtok", "$/M tokens", digits=3),
    _col("network_sent", "Net sent (kB)", digits=1),
)


@dataclass
class Cell:
    """A value with optional uncertainty; ``text`` is how it is shown."""

    value: float | None = None
    stderr: float | None = None
    text: str = ""
    ci_low: float | None = None
    ci_high: float | None = None
    cv: float | None = None
    unstable: bool = False


@dataclass
class ComparisonTable:
    """One model's comparison on one machine, in sections (accuracy, model, one per scenario), with notes."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)
    sections: list[tuple[str, list[int]]] = field(default_factory=list)  # title, column indexes
    details: list[dict[str, Any]] = field(default_factory=list)  # every measurement of the rows' runs, long form

    def parts(self) -> list[tuple[str, list[str], list[list[Cell]]]]:
        """Each section led by the technique column (narrow enough to read), with its short headers."""
        return [
            (title, [self.headers[i].split(": ", 1)[-1] for i in cols], [[row[i] for i in cols] for row in self.rows])
            for title, cols in self.sections
        ]


def fmt(value: float | None, digits: int, stderr: float | None = None, sign: bool = False) -> str:
    """A number with its uncertainty, or a dash when it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if stderr is not None:
        text += f" ± {stderr:.{digits}f}"
    return text


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def _keeps(value: float | None, base: float | None, higher_is_better: bool) -> bool | None:
    if value is None or base is None:
        return None
    return value >= KEEP_FRACTION * base if higher_is_better else value <= base / KEEP_FRACTION


def build(
    store: ResultsStore, run_ids: list[str] | None = None, unstable_cv: float = UNSTABLE_CV
) -> list[ComparisonTable]:
    """One table per (model, hardware) among the selected runs, baseline first; CV above ``unstable_cv`` is flagged."""
    runs = store.read("runs").to_pylist()
    if run_ids is None:
        runs.sort(key=lambda r: (r["technique"] != "baseline", r["started_at"]))
    else:
        order = {rid: i for i, rid in enumerate(run_ids)}
        runs = sorted((r for r in runs if r["run_id"] in order), key=lambda r: order[r["run_id"]])
    by_run: dict[str, list[dict]] = {}
    for row in store.read("measurements").to_pylist():
        by_run.setdefault(row["run_id"], []).append(row)
    groups: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["model"], run["hardware_fingerprint"]), []).append(run)
    return [_table(model, hw, group, by_run, unstable_cv) for (model, hw), group in groups.items()]


def technique_label(run: dict[str, Any]) -> str:
    """A stored run's technique as the suite writes it: ``name(k=v, ...)``."""
    return TechniqueSpec(name=run["technique"], params=json.loads(run["technique_params"] or "{}")).label


def primary_quality(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task, the first quality metric lm-eval reported (its metric_list order): the one a table shows."""
    primary: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["resource"] == QUALITY and row["task"] not in primary:
            primary[row["task"]] = row
    return primary


def status_text(run: dict[str, Any]) -> str:
    """``ok``, or ``failed: <error>``."""
    return run["status"] if run["status"] == "ok" else f"failed: {run['error']}"


def _key(m: dict) -> tuple[str, str, str]:
    return (m.get("scenario") or "", m["task"], m["metric"])


def _table(
    model: str, hardware: str, runs: list[dict], by_run: dict[str, list[dict]], unstable_cv: float
) -> ComparisonTable:
    base_run = next((r for r in runs if r["technique"] == "baseline" and r["status"] == "ok"), None)
    base_rows = by_run.get(base_run["run_id"], []) if base_run else []
    every_row = [m for r in runs for m in by_run.get(r["run_id"], [])]
    primary = primary_quality(base_rows or every_row)
    scenarios = list(dict.fromkeys(m["scenario"] for m in every_row if m.get("scenario")))
    base = {_key(m): m for m in base_rows}
    headers = ["Technique"]
    for task, row in primary.items():
        headers += [f"{task} {row['metric']}", f"Δ {task}"]
    headers += [f">= {KEEP_FRACTION:.0%} base", "Status"]
    sections = [("accuracy", list(range(len(headers))))]
    column_plan: list[tuple[str, ResourceColumn]] = []
    for scenario, columns, title in [("", MODEL_COLUMNS, "model"), *((s, LOAD_COLUMNS, s) for s in scenarios)]:
        first = len(headers)
        headers += [f"{scenario}: {c.header}" if scenario else c.header for c in columns]
        column_plan += [(scenario, c) for c in columns]
        sections.append((title, [0, *range(first, len(headers))]))
    rows, methods, unstable = [], {}, False
    for run in runs:
        values = {_key(m): m for m in by_run.get(run["run_id"], [])}
        for m in values.values():
            if m["method"] and m["resource"] != QUALITY:
                methods.setdefault(m["metric"], m["method"])
        row = _accuracy_cells(run, values, base, primary)
        for scenario, column in column_plan:
            cell = _resource_cell(scenario, column, values, base, unstable_cv)
            unstable = unstable or cell.unstable
            row.append(cell)
        rows.append(row)
    by_method: dict[str, list[str]] = {}
    for metric, how in sorted(methods.items()):
        by_method.setdefault(how, []).append(metric)
    notes = [
        f"model {model}; hardware fingerprint {hardware}",
        "accuracy ± lm-eval's standard error; resources ± half the 95 % confidence interval "
        "(bootstrap over requests for latencies, Student t over repeats otherwise); bounds in report.csv",
    ]
    if unstable:
        notes.append(
            f"{UNSTABLE_MARK} unstable: its repeats vary by more than {unstable_cv:.0%} (coefficient of variation)"
        )
    notes += [f"{', '.join(metrics)}: {how}" for how, metrics in by_method.items()]
    details = [
        {
            "technique": technique_label(run),
            **{k: m.get(k) for k in DETAIL_FIELDS},
            "unstable": _unstable(m, unstable_cv),
        }
        for run in runs
        for m in by_run.get(run["run_id"], [])
    ]
    return ComparisonTable(f"{model} ({hardware})", headers, rows, notes, sections, details)


def _accuracy_cells(run: dict, values: dict, base: dict, primary: dict[str, dict]) -> list[Cell]:
    cells = [Cell(text=technique_label(run))]
    keeps: list[bool | None] = []
    for task, prow in primary.items():
        m = values.get(("", task, prow["metric"]))
        b = base.get(("", task, prow["metric"]))
        value = m["value"] if m else None
        stderr = m["stderr"] if m else None
        cells.append(Cell(value, stderr, fmt(value, 3, stderr)))
        delta = value - b["value"] if m and b else None
        cells.append(Cell(delta, None, fmt(delta, 3, sign=True)))
        keeps.append(_keeps(value, b["value"] if b else None, prow["higher_is_better"]))
    gate = None if not keeps or None in keeps else all(keeps)
    cells.append(Cell(None if gate is None else float(gate), text={True: "yes", False: "no", None: "–"}[gate]))
    cells.append(Cell(text=status_text(run)))
    return cells


def _unstable(m: dict | None, threshold: float) -> bool:
    return m is not None and (m.get("cv") or 0) > threshold


def _resource_cell(scenario: str, column: ResourceColumn, values: dict, base: dict, unstable_cv: float) -> Cell:
    """A resource figure: value ± half its 95 % interval (or its stderr), flagged when its repeats disagree."""
    m = next((values[k] for name in column.metrics if (k := (scenario, "", name)) in values), None)
    b = next((base[k] for name in column.metrics if (k := (scenario, "", name)) in base), None)
    mark = f" {UNSTABLE_MARK}"
    if column.baseline_over_value:  # a ratio is as unstable as either of its sides
        value = _ratio(b["value"] if b else None, m["value"] if m else None)
        flagged = value is not None and (_unstable(m, unstable_cv) or _unstable(b, unstable_cv))
        return Cell(value, None, fmt(value, column.digits) + mark * flagged, unstable=flagged)
    if m is None:
        return Cell(text="–")

    def scaled(x: float | None) -> float | None:
        return None if x is None else x * column.scale

    low, high, stderr = scaled(m["ci_low"]), scaled(m["ci_high"]), scaled(m["stderr"])
    spread = (high - low) / 2 if low is not None and high is not None else stderr
    flagged = _unstable(m, unstable_cv)
    text = fmt(scaled(m["value"]), column.digits, spread) + mark * flagged
    return Cell(scaled(m["value"]), stderr, text, low, high, m.get("cv"), flagged)


def markdown_table(titles: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    return "\n".join([line(titles), "|" + "---|" * len(titles), *(line(r) for r in rows)]) + "\n"


def to_markdown(table: ComparisonTable) -> str:
    """GitHub-flavoured Markdown: one table per section, then the notes."""
    lines = [f"### {table.title}"]
    for title, headers, rows in table.parts():
        lines += ["", f"**{title}**", "", markdown_table(headers, [[c.text for c in row] for row in rows]).rstrip("\n")]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _tex(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("$", r"\$"),
        ("±", r"$\pm$"),
        ("Δ", r"$\Delta$"),
        (">=", r"$\geq$"),
        ("×", r"$\times$"),
        ("–", "--"),
        (UNSTABLE_MARK, r"$^\dagger$"),
    ):
        s = s.replace(a, b)
    return s


def to_latex(table: ComparisonTable) -> str:
    """booktabs LaTeX tables (one per section), ready to paste into a paper."""
    out = []
    for title, headers, rows in table.parts():
        lines = [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
            r"\toprule",
            " & ".join(_tex(h) for h in headers) + r" \\",
            r"\midrule",
            *(" & ".join(_tex(c.text) for c in row) + r" \\" for row in rows),
            r"\bottomrule",
            r"\end{tabular}",
            rf"\caption{{{_tex(table.title)}: {_tex(title)}. {_tex('; '.join(table.notes[1:]))}}}",
            r"\end{table}",
        ]
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


TEXT_COLUMNS = ("Technique", "Status")
DETAIL_FIELDS = ("run_id", "scenario", "task", "metric", "value", "unit", "resource", "higher_is_better", "stderr",
                 "ci_low", "ci_high", "n", "cv", "method")  # fmt: skip
CELL_FIELDS = ("stderr", "ci_low", "ci_high", "cv")


def to_csv(tables: list[ComparisonTable]) -> str:
    """Raw numbers (value, stderr, 95 % bounds, CV in separate columns) for further analysis."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for table in tables:
        header = ["table"]
        for h in table.headers:
            header += [h] if h in TEXT_COLUMNS else [h, *(f"{h} {f}" for f in CELL_FIELDS)]
        writer.writerow(header)
        for row in table.rows:
            out = [table.title]
            for h, cell in zip(table.headers, row, strict=True):
                if h in TEXT_COLUMNS:
                    out.append(cell.text)
                    continue
                for value in (cell.value, *(getattr(cell, f) for f in CELL_FIELDS)):
                    out.append("" if value is None else repr(value))
            writer.writerow(out)
    return buffer.getvalue()


def details_csv(tables: list[ComparisonTable]) -> str:
    """Every measurement behind the tables, one per line, including those no column shows (percentiles, kWh...)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["table", "technique", *DETAIL_FIELDS, "unstable"])
    writer.writeheader()
    for table in tables:
        writer.writerows({"table": table.title, **row} for row in table.details)
    return buffer.getvalue()


def write(tables: list[ComparisonTable], folder: Path) -> dict[str, Path]:
    """Write report.md, report.tex, report.csv (the tables) and report-measurements.csv (every figure)."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "report.md": "\n".join(to_markdown(t) for t in tables),
        "report.tex": "\n".join(to_latex(t) for t in tables),
        "report.csv": to_csv(tables),
        "report-measurements.csv": details_csv(tables),
    }
    for name, text in contents.items():
        (folder / name).write_text(text)
    return {name: folder / name for name in contents}
