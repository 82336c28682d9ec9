"""The open dataset: merge results by run id, and write the ``runs``, ``measurements``, ``samples`` and ``taxonomy``
tables.

A dataset is a folder (and a Hub dataset repo): ``README.md`` (the card), one Parquet file per hardware
fingerprint under ``runs/``, ``measurements/`` and ``samples/``, ``taxonomy/taxonomy.parquet`` and, in a local
folder, the manifest that lets a later build replace it (``effbench.store.ownership``). It is read, like a results
store, by ``effbench.store.load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from effbench.records import RESULT_RECORDS, SCHEMA_VERSION, RunRecord, TaxonomyRow
from effbench.store.load import Results, load
from effbench.store.lock import StoreLock
from effbench.store.ownership import Output, replace_folder
from effbench.store.results import ResultsStore, write_parquet
from effbench.store.validate import VERSION_KEY

TAXONOMY_FILE = f"{TaxonomyRow.table}/taxonomy.parquet"
DATASET = Output(
    "dataset",
    "effbench dataset",
    patterns=("README.md", *(f"{kind.table}/hw-*.parquet" for kind in RESULT_RECORDS), TAXONOMY_FILE),
    starts={"README.md": b"---\n", TAXONOMY_FILE: b"PAR1"},  # the card's YAML; Parquet
)


@dataclass
class MergeReport:
    """What a merge did, run ids per outcome."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # already there, or a newer/ok record there wins
    taxonomy_changed: bool = False

    @property
    def changed(self) -> bool:
        """Whether the merged dataset differs from the one merged into."""
        return bool(self.added or self.updated or self.taxonomy_changed)


def _preferred(new: RunRecord, old: RunRecord) -> bool:
    """A successful run beats a failed one; otherwise the more recent record of the same run wins."""
    return (new.status == "ok", new.finished_at) > (old.status == "ok", old.finished_at)


def _same(a: object, b: object) -> bool:
    """Equal records; NaN equals NaN here (repr compares them as text)."""
    return repr(a) == repr(b)


def merge(base: Results, incoming: Results) -> tuple[Results, MergeReport]:
    """``base`` with ``incoming`` added, keyed by run id: never a duplicate run, never a lost one."""
    chosen = {run.run_id: (run, base.measurements_of(run.run_id), base.samples_of(run.run_id)) for run in base.runs}
    report = MergeReport()
    for run in sorted(incoming.runs, key=lambda r: r.run_id):
        rows = (incoming.measurements_of(run.run_id), incoming.samples_of(run.run_id))
        old = chosen.get(run.run_id)
        if old is None:
            report.added.append(run.run_id)
        elif _same((run, *rows), old) or not _preferred(run, old[0]):
            report.kept.append(run.run_id)
            continue
        else:
            report.updated.append(run.run_id)
        chosen[run.run_id] = (run, *rows)
    entries = {(t.kind, t.name): t for t in base.taxonomy}
    before = dict(entries)
    entries.update({(t.kind, t.name): t for t in incoming.taxonomy})
    report.taxonomy_changed = not _same(sorted(entries.items()), sorted(before.items()))
    ordered = [chosen[run_id] for run_id in sorted(chosen)]
    merged = Results(
        [run for run, _, _ in ordered],
        [m for _, rows, _ in ordered for m in rows],
        list(entries.values()),
        samples=[s for _, _, samples in ordered for s in samples],
    )
    return merged, report


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(table.replace_schema_metadata({VERSION_KEY: SCHEMA_VERSION.encode()}), path)


def write_dataset(results: Results, out: Path, card: str) -> list[Path]:
    """Write the dataset folder, swapped in for ``out`` if that is new, empty or a dataset; returns the files."""

    def write(folder: Path) -> None:
        for fingerprint, runs in results.hardware().items():
            for kind in RESULT_RECORDS:
                _write_parquet(results.table(kind, runs), folder / kind.table / f"hw-{fingerprint}.parquet")
        _write_parquet(results.table(TaxonomyRow), folder / TAXONOMY_FILE)
        (folder / "README.md").write_text(card, encoding="utf-8")

    return replace_folder(out, DATASET, write)


def import_into_store(results: Results, root: Path) -> MergeReport:
    """Add validated results' runs to a results store, run by run, keeping the better record of each run."""
    with StoreLock(root):  # a sweep writing the same store at the same time is refused
        incoming = Results(results.runs, results.measurements, samples=results.samples)  # no taxonomy
        merged, report = merge(load(root, "store"), incoming)
        store = ResultsStore(root)
        for run_id in (*report.added, *report.updated):
            store.write_run(merged.run(run_id), merged.measurements_of(run_id), merged.samples_of(run_id))
    return report
