"""The dataset card: YAML header (configs, license, tags, size) and a body documenting every column, metric and
machine, rendered from the template in ``effbench/dataset_cards/`` with ``huggingface_hub.DatasetCard``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from effbench.api.types import QUALITY
from effbench.plugins import Registry
from effbench.store.dataset import SCHEMAS, Dataset, hardware_label
from effbench.store.results import SCHEMA_VERSION

TEMPLATE = Path(__file__).parent / "dataset_cards" / "results.md"
PRETTY_NAME = "effbench results: accuracy and resource use of LLM efficiency techniques"
LICENSE = "cc-by-4.0"

SUMMARIES = {
    "runs": "One row per run: a model with one technique applied, evaluated on a machine.",
    "measurements": "One row per measured value of a run: task accuracy metrics and resource metrics.",
    "taxonomy": "The resource–technique map: every technique effbench can run and every technique family of the "
    "survey, with the stage it acts in and the resources it saves.",
}

COLUMN_DOCS = {
    "runs": {
        "run_id": "Stable id: a hash of model, technique and parameters, tasks, settings and hardware fingerprint.",
        "schema_version": "Schema version the row was written with (major.minor).",
        "suite": "Name of the suite the run belonged to.",
        "model": "Model id: `zoo:NAME` (effbench's bundled reference models), a Hub id or a local path.",
        "model_revision": "Hub revision of the model, when one was given.",
        "model_fingerprint": "Hash of the loaded weights and config, so two runs can be checked to use the same model.",
        "technique": "Name of the technique applied (`baseline` is the unmodified model).",
        "technique_params": "The technique's parameters (JSON object).",
        "stage": "Lifecycle stage the technique acts in (architecture, pretraining, finetuning, inference, system).",
        "resources": "Resources the technique declares it saves (computation, memory, energy, money, network).",
        "tasks": "lm-eval tasks or groups evaluated.",
        "settings": (
            "Run settings (JSON object): document limit, batch size, bootstrap iterations, load scenarios, "
            "country, idle seconds, and the prices used (device, $/hour, $/kWh)."
        ),
        "status": "`ok`, or `failed` with the error in `error`.",
        "error": "Why the run failed (the exception, a crash, a timeout); empty when ok.",
        "warnings": "Warnings raised during the run.",
        "hardware_fingerprint": "Id of the machine: a hash of the probes' identifying fields (CPU, memory, GPU, OS).",
        "hardware": "Everything the hardware probes recorded (JSON object per probe).",
        "versions": "Versions of the libraries that shape a result (JSON object).",
        "effbench_version": "effbench version that made the run.",
        "started_at": "When the run started (UTC).",
        "finished_at": "When the run finished (UTC).",
        "duration_s": "Wall-clock seconds of the whole run.",
        "phase_seconds": "Seconds per phase: load, apply, accuracy, measure (JSON object).",
    },
    "measurements": {
        "run_id": "The run this value belongs to.",
        "task": "lm-eval task of a quality metric; empty for run-level resource metrics.",
        "metric": "Metric name (see Metrics below).",
        "value": "The measured value, in `unit`.",
        "unit": "Unit of `value`, `stderr`, `ci_low` and `ci_high`.",
        "resource": "computation, memory, energy, money, network, or quality.",
        "higher_is_better": "Direction of improvement.",
        "stderr": "Standard error of `value`, when known.",
        "ci_low": "Lower bound of the 95 % confidence interval, when known.",
        "ci_high": "Upper bound of the 95 % confidence interval, when known.",
        "n": "Number of samples behind the value (documents, requests or repeats).",
        "method": "How the value was obtained: instrument, and whether energy was measured or estimated.",
        "scenario": "Load scenario of the value (e.g. `single-stream`, `server(rate=4/s)`); empty for run-level ones.",
        "cv": "Coefficient of variation across the scenario's repeats; above the threshold the value is unstable.",
    },
    "taxonomy": {
        "name": "Technique name (as used in `runs.technique`) or name of a survey technique family.",
        "kind": "`technique` (registered plugin effbench can run) or `family` (the survey's map).",
        "stage": "Lifecycle stage it acts in.",
        "resources": "Resources it targets.",
        "description": "What it does, in one sentence.",
        "references": "Papers describing it.",
        "category": "Section of the survey (and of its companion list Awesome-Resource-Efficient-LLM-Papers).",
        "source": "The distribution and version that registered the technique, or the survey for a family.",
    },
}


SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T")  # fmt: skip


def _size_category(n: int) -> str:
    """The Hub's size bucket for ``n`` rows."""
    for power, label in enumerate(SIZE_CATEGORIES, start=3):
        if n < 10**power:
            return label
    return "n>1T"


def _configs_doc() -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "summary": SUMMARIES[name],
            "columns": [{"name": f.name, "type": str(f.type), "doc": COLUMN_DOCS[name][f.name]} for f in schema],
        }
        for name, schema in SCHEMAS.items()
    ]


def _metrics_doc(ds: Dataset, reg: Registry) -> list[dict[str, str]]:
    """One entry per metric present, with every method seen for it and the registered metric's description."""
    found: dict[tuple, set[str]] = {}
    for rows in ds.measurements.values():
        for m in rows:
            key = (m["metric"], m["unit"] or "", m["resource"], m["higher_is_better"])
            found.setdefault(key, set()).add(m["method"] or "")
    out = []
    for (metric, unit, resource, higher), methods in sorted(found.items(), key=lambda kv: (kv[0][2], kv[0][0])):
        # the instrument that emits it: the longest registered name it starts with (energy_direct_*, not energy)
        names = [name for name, obj in reg.metrics.items() if metric.startswith(name) and obj.resource == resource]
        parent = reg.metrics[max(names, key=len)] if names else None
        doc = parent.description if parent else ("task metric reported by lm-eval" if resource == QUALITY else "–")
        out.append(
            {
                "metric": metric,
                "unit": unit or "–",
                "resource": resource,
                "better": {True: "higher", False: "lower", None: "–"}[higher],
                "methods": "; ".join(sorted(m for m in methods if m)) or "–",
                "doc": doc,
            }
        )
    return out


def _hardware_doc(ds: Dataset) -> list[dict[str, Any]]:
    out = []
    for fingerprint, run_ids in ds.hardware().items():
        rows = [m for r in run_ids for m in ds.measurements.get(r, [])]
        energy = {m["method"] for m in rows if m["resource"] == "energy" and m["method"]}
        out.append(
            {
                "fingerprint": fingerprint,
                "label": hardware_label(ds.runs[run_ids[0]]["hardware"]),
                "runs": len(run_ids),
                "energy": "; ".join(sorted(energy)) or "not measured",
            }
        )
    return out


def render(ds: Dataset, reg: Registry, location: str) -> str:
    """The README.md of a dataset; ``location`` is where readers load it from (a repo id or a folder)."""
    configs = [
        {"config_name": name, "data_files": [{"split": "train", "path": f"{name}/*.parquet"}]} for name in SCHEMAS
    ]
    runs = list(ds.runs.values())
    measured = sum(len(rows) for rows in ds.measurements.values())
    tags = sorted({"effbench", "efficiency", "benchmark", "llm"} | {r["technique"] for r in runs})
    card_data = DatasetCardData(
        license=LICENSE,
        pretty_name=PRETTY_NAME,
        task_categories=["text-generation"],
        tags=tags,
        size_categories=[_size_category(measured)],
        configs=configs,
    )
    counts = {
        "runs": len(runs),
        "ok": sum(r["status"] == "ok" for r in runs),
        "failed": sum(r["status"] != "ok" for r in runs),
        "models": len({r["model"] for r in runs}),
        "techniques": len({(r["technique"], r["technique_params"]) for r in runs}),
        "measurements": measured,
        "taxonomy": len(ds.taxonomy),
    }
    card = DatasetCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        pretty_name=PRETTY_NAME,
        location=location,
        counts=counts,
        schema_version=SCHEMA_VERSION,
        configs_doc=_configs_doc(),
        metrics=_metrics_doc(ds, reg),
        hardware=_hardware_doc(ds),
    )
    return str(card)
