"""The dataset card: YAML header (configs, license, tags, size) and a body documenting every column, metric and
machine, rendered from the template in ``effbench/dataset_cards/`` with ``huggingface_hub.DatasetCard``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from effbench.api.metric import Quantity
from effbench.api.vocabulary import QUALITY
from effbench.plugins import Registry
from effbench.present.columns import declared_quantities
from effbench.present.report import md, md_code
from effbench.records import DATASET_RECORDS, SCHEMA_VERSION, STATUS_FAILED, STATUS_NOT_APPLICABLE, STATUS_OK
from effbench.store.load import Results

TEMPLATE = Path(__file__).parent / "dataset_cards" / "results.md"
PRETTY_NAME = "effbench results: accuracy and resource use of LLM efficiency techniques"
LICENSE = "cc-by-4.0"

SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T")  # fmt: skip


def _size_category(n: int) -> str:
    """The Hub's size bucket for ``n`` rows."""
    for power, label in enumerate(SIZE_CATEGORIES, start=3):
        if n < 10**power:
            return label
    return "n>1T"


def _configs_doc() -> list[dict[str, Any]]:
    """Every config with its columns' types and meanings, straight from the records."""
    configs = []
    for kind in DATASET_RECORDS:
        docs = kind.column_docs()
        columns = [{"name": f.name, "type": str(f.type), "doc": docs[f.name]} for f in kind.schema()]
        configs.append({"name": kind.table, "summary": kind.summary, "columns": columns})
    return configs


def _code(text: str) -> str:
    """Text for the template's `...` spans in table cells: refenced if it holds backticks, pipes escaped."""
    return md_code(text)[1:-1].replace("|", "\\|")


def _metric_doc(metric: str, resource: str, declared: dict[str, tuple[Quantity, str]]) -> str:
    """What a stored quantity is: its declared description, lm-eval's for a task metric, else a generic line."""
    quantity, _ = declared.get(metric, (None, ""))
    if quantity is not None and quantity.description:
        return quantity.description
    if resource == QUALITY:
        return "Task metric reported by lm-eval."
    return "Reported by a metric not installed where this card was made: see its unit, resource and method."


def _metrics_doc(results: Results, reg: Registry) -> list[dict[str, str]]:
    """One entry per quantity present, with the phases and methods seen and the declaring metric's description."""
    declared = declared_quantities(reg)
    found: dict[tuple[str, str, str, bool | None], tuple[set[str], set[str]]] = {}
    for m in results.measurements:
        methods, phases = found.setdefault((m.metric, m.unit or "", m.resource, m.higher_is_better), (set(), set()))
        methods.add(m.method or "")
        phases.add(m.in_phase)
    out = []
    for (metric, unit, resource, higher), (methods, phases) in sorted(
        found.items(), key=lambda kv: (kv[0][2], kv[0][0])
    ):
        out.append(
            {
                "metric": _code(metric),
                "unit": md(unit) or "–",
                "resource": resource,
                "better": {True: "higher", False: "lower", None: "–"}[higher],
                "phases": ", ".join(sorted(phases)),
                "methods": md("; ".join(sorted(m for m in methods if m))) or "–",
                "doc": md(_metric_doc(metric, resource, declared)),
            }
        )
    return out


def _hardware_doc(results: Results) -> list[dict[str, Any]]:
    out = []
    for fingerprint, runs in results.hardware().items():
        rows = [m for run in runs for m in results.measurements_of(run.run_id)]
        energy = {m.method for m in rows if m.resource == "energy" and m.method}
        out.append(
            {
                "fingerprint": _code(fingerprint),
                "label": md(runs[0].machine),
                "runs": len(runs),
                "energy": md("; ".join(sorted(energy))) or "not measured",
            }
        )
    return out


def render(results: Results, reg: Registry, location: str) -> str:
    """The README.md of a dataset; ``location`` is where readers load it from (a repo id or a folder)."""
    configs = [  # a config without rows (samples of runs before 1.4) is not loadable: not listed
        {"config_name": kind.table, "data_files": [{"split": "train", "path": f"{kind.table}/*.parquet"}]}
        for kind in DATASET_RECORDS
        if results.table(kind).num_rows
    ]
    runs = results.runs
    measured = len(results.measurements)
    techniques = {entry.name for run in runs for entry in run.stack_entries()}
    card_data = DatasetCardData(
        license=LICENSE,
        pretty_name=PRETTY_NAME,
        task_categories=["text-generation"],
        tags=sorted({"effbench", "efficiency", "benchmark", "llm"} | techniques),
        size_categories=[_size_category(measured)],
        configs=configs,
    )
    counts = {
        "runs": len(runs),
        "ok": sum(r.status == STATUS_OK for r in runs),
        "failed": sum(r.status == STATUS_FAILED for r in runs),
        "not_applicable": sum(r.status == STATUS_NOT_APPLICABLE for r in runs),
        "models": len({r.model for r in runs}),
        "techniques": len({r.label for r in runs}),
        "measurements": measured,
        "samples": len(results.samples),
        "taxonomy": len(results.taxonomy),
    }
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        pretty_name=PRETTY_NAME,
        location=json.dumps(location, ensure_ascii=False)[1:-1],  # in the card's Python and BibTeX strings
        counts=counts,
        schema_version=SCHEMA_VERSION,
        configs_doc=_configs_doc(),
        metrics=_metrics_doc(results, reg),
        hardware=_hardware_doc(results),
    )
    return str(card)
