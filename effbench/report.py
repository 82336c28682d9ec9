"""The paper-style comparison table: techniques as rows, accuracy and resources relative to the baseline."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effbench.store import ResultsStore
from effbench.types import QUALITY

KEEP_FRACTION = 0.99  # MLPerf: an optimised system must keep >= 99 % of the reference accuracy


@dataclass(frozen=True)
class ResourceColumn:
    """A resource column: which stored metric, its header, and the scale applied for display."""

    metric: str
    header: str
    scale: float = 1.0
    digits: int = 1
    baseline_over_value: bool = False  # compression and speed-up: baseline's value / this value


RESOURCE_COLUMNS = (
    ResourceColumn("weight_bytes", "Size (MB)", digits=2),
    ResourceColumn("weight_bytes", "Compression ×", digits=2, baseline_over_value=True),
    ResourceColumn("parameters_nonzero", "Non-zero params (M)", 1e-6, 3),
    ResourceColumn("latency", "Latency (ms)"),
    ResourceColumn("throughput", "Throughput (tok/s)"),
    ResourceColumn("latency", "Speed-up ×", digits=2, baseline_over_value=True),
    ResourceColumn("peak_memory", "Peak RSS (MiB)", digits=0),
    ResourceColumn("energy_per_token", "Energy (mJ/token)", 1e3, 2),
    ResourceColumn("co2", "CO2 (mg)", 1e6, 3),
)


@dataclass
class Cell:
    """A value with optional uncertainty; ``text`` is how it is shown."""

    value: float | None = None
    stderr: float | None = None
    text: str = ""


@dataclass
class ComparisonTable:
    """One model's comparison on one machine, plus notes on how figures were obtained."""

    title: str
    headers: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)

    def parts(self) -> list[tuple[list[str], list[list[Cell]]]]:
        """The accuracy half and the resource half, each led by the technique column (narrow enough to read)."""
        split = next(i for i, h in enumerate(self.headers) if h.startswith(">=")) + 1
        halves = [range(0, split), [0, *range(split, len(self.headers))]]
        return [([self.headers[i] for i in cols], [[row[i] for i in cols] for row in self.rows]) for cols in halves]


def _fmt(value: float | None, digits: int, stderr: float | None = None, sign: bool = False) -> str:
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


def build(store: ResultsStore, run_ids: list[str] | None = None) -> list[ComparisonTable]:
    """One table per (model, hardware) among the selected runs, baseline first."""
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
    return [_table(model, hw, group, by_run) for (model, hw), group in groups.items()]


def _label(run: dict[str, Any]) -> str:
    params = json.loads(run["technique_params"] or "{}")
    if not params:
        return run["technique"]
    return f"{run['technique']}({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def _table(model: str, hardware: str, runs: list[dict], by_run: dict[str, list[dict]]) -> ComparisonTable:
    base_run = next((r for r in runs if r["technique"] == "baseline" and r["status"] == "ok"), None)
    base_rows = by_run.get(base_run["run_id"], []) if base_run else []
    # The primary metric of a task is the first one lm-eval reported for it (its metric_list order).
    primary: dict[str, dict] = {}
    for row in base_rows or [m for r in runs for m in by_run.get(r["run_id"], [])]:
        if row["resource"] == QUALITY and row["task"] not in primary:
            primary[row["task"]] = row
    base = {(m["task"], m["metric"]): m for m in base_rows}
    headers = ["Technique"]
    for task, row in primary.items():
        headers += [f"{task} {row['metric']}", f"Δ {task}"]
    headers += [f">= {KEEP_FRACTION:.0%} base", *(c.header for c in RESOURCE_COLUMNS), "Status"]
    rows = []
    methods: dict[str, str] = {}
    for run in runs:
        values = {(m["task"], m["metric"]): m for m in by_run.get(run["run_id"], [])}
        for m in values.values():
            if m["method"] and m["resource"] != QUALITY:
                methods.setdefault(m["metric"], m["method"])
        rows.append(_row(run, values, base, primary))
    by_method: dict[str, list[str]] = {}
    for metric, how in sorted(methods.items()):
        by_method.setdefault(how, []).append(metric)
    notes = [f"model {model}; hardware fingerprint {hardware}"]
    notes += [f"{', '.join(metrics)}: {how}" for how, metrics in by_method.items()]
    return ComparisonTable(title=f"{model} ({hardware})", headers=headers, rows=rows, notes=notes)


def _row(run: dict, values: dict, base: dict, primary: dict[str, dict]) -> list[Cell]:
    cells = [Cell(text=_label(run))]
    keeps: list[bool | None] = []
    for task, prow in primary.items():
        m = values.get((task, prow["metric"]))
        b = base.get((task, prow["metric"]))
        value = m["value"] if m else None
        stderr = m["stderr"] if m else None
        cells.append(Cell(value, stderr, _fmt(value, 3, stderr)))
        delta = value - b["value"] if m and b else None
        cells.append(Cell(delta, None, _fmt(delta, 3, sign=True)))
        keeps.append(_keeps(value, b["value"] if b else None, prow["higher_is_better"]))
    gate = None if not keeps or None in keeps else all(keeps)
    cells.append(Cell(None if gate is None else float(gate), text={True: "yes", False: "no", None: "–"}[gate]))

    for column in RESOURCE_COLUMNS:
        m = values.get(("", column.metric))
        b = base.get(("", column.metric))
        if column.baseline_over_value:
            value = _ratio(b["value"] if b else None, m["value"] if m else None)
            cells.append(Cell(value, None, _fmt(value, column.digits)))
            continue
        value = m["value"] * column.scale if m else None
        stderr = m["stderr"] * column.scale if m and m["stderr"] is not None else None
        cells.append(Cell(value, stderr, _fmt(value, column.digits, stderr)))
    status = run["status"] if run["status"] == "ok" else f"failed: {run['error']}"
    cells.append(Cell(text=status))
    return cells


def to_markdown(table: ComparisonTable) -> str:
    """A GitHub-flavoured Markdown table with its notes."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    lines = [f"### {table.title}"]
    for headers, rows in table.parts():
        lines += ["", line(headers), "|" + "---|" * len(headers)]
        lines += [line([c.text for c in row]) for row in rows]
    lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def to_latex(table: ComparisonTable) -> str:
    """A booktabs LaTeX table, ready to paste into a paper."""

    def tex(s: str) -> str:
        for a, b in (
            ("\\", r"\textbackslash{}"),
            ("_", r"\_"),
            ("%", r"\%"),
            ("&", r"\&"),
            ("#", r"\#"),
            ("±", r"$\pm$"),
            ("Δ", r"$\Delta$"),
            (">=", r"$\geq$"),
            ("×", r"$\times$"),
            ("–", "--"),
        ):
            s = s.replace(a, b)
        return s

    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * (len(table.headers) - 1) + "}",
        r"\toprule",
    ]
    lines.append(" & ".join(tex(h) for h in table.headers) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(tex(c.text) for c in row) + r" \\" for row in table.rows]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{tex(table.title)}. {tex('; '.join(table.notes[1:]))}}}",
        r"\end{table}",
    ]
    return "\n".join(lines) + "\n"


def to_csv(tables: list[ComparisonTable]) -> str:
    """Raw numbers (value and stderr in separate columns) for further analysis."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for table in tables:
        header = ["table"]
        for h in table.headers:
            header += [h, f"{h} stderr"] if h != "Technique" and h != "Status" else [h]
        writer.writerow(header)
        for row in table.rows:
            out = [table.title]
            for h, cell in zip(table.headers, row, strict=True):
                if h in ("Technique", "Status"):
                    out.append(cell.text)
                else:
                    out += [
                        "" if cell.value is None else repr(cell.value),
                        "" if cell.stderr is None else repr(cell.stderr),
                    ]
            writer.writerow(out)
    return buffer.getvalue()


def write(tables: list[ComparisonTable], folder: Path) -> dict[str, Path]:
    """Write report.md, report.tex and report.csv into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": folder / "report.md", "latex": folder / "report.tex", "csv": folder / "report.csv"}
    paths["markdown"].write_text("\n".join(to_markdown(t) for t in tables))
    paths["latex"].write_text("\n".join(to_latex(t) for t in tables))
    paths["csv"].write_text(to_csv(tables))
    return paths
