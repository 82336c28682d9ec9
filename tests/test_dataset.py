"""The dataset: build from a store, load with `datasets`, the card, the taxonomy, merging and validation."""

import shutil
from datetime import UTC, datetime

import datasets
import pyarrow as pa
import pytest
import yaml
from huggingface_hub import DatasetCard

from effbench.api.vocabulary import RESOURCES, STAGES
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.publish import hub
from effbench.publish.card import _metrics_doc, _size_category
from effbench.publish.taxonomy import FAMILIES, SECTIONS, taxonomy_rows
from effbench.records import DATASET_RECORDS, SCHEMA_VERSION, MeasurementRow, RunRecord
from effbench.store.dataset import import_into_store, merge, write_dataset
from effbench.store.load import Results, load
from effbench.store.results import ResultsStore
from effbench.store.validate import VERSION_KEY
from tests.store_helpers import (
    as_written_by,
    measurement,
    measurements,
    rewrite,
    run_row,
    synthetic_store,
    two_machine_store,
    values_as_text,
)


def read_dataset(root):
    return load(root, "dataset")


@pytest.fixture
def built(tmp_path):
    """A synthetic store of two machines and the dataset folder built from it."""
    store = two_machine_store(tmp_path / "store")
    out = tmp_path / "dataset"
    hub.build(store.root, out)
    return store, out


def test_build_writes_one_shard_per_machine_and_keeps_every_row(built):
    store, out = built
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["hw-hwA.parquet", "hw-hwB.parquet"]
    built, stored = read_dataset(out), load(store.root)
    assert sorted(built.runs, key=lambda r: r.run_id) == stored.runs
    for run in stored.runs:  # every value, in the order the run reported it
        assert built.measurements_of(run.run_id) == stored.measurements_of(run.run_id)
        assert built.samples_of(run.run_id) == stored.samples_of(run.run_id)
        assert len(stored.samples_of(run.run_id)) == 150
    assert {(t.kind, t.name) for t in built.taxonomy} >= {("technique", n) for n in registry().techniques}


@pytest.mark.parametrize("config", ["runs", "measurements", "samples", "taxonomy"])
def test_load_dataset_reads_every_config(built, config, tmp_path):
    _, out = built
    loaded = datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / "cache"))
    expected = read_dataset(out).table(next(kind for kind in DATASET_RECORDS if kind.table == config))
    assert loaded.num_rows == expected.num_rows > 0
    assert loaded.to_list() == expected.to_pylist()


def test_card_header_and_body_document_everything(built):
    _, out = built
    card = DatasetCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert {c["config_name"]: c["data_files"][0]["path"] for c in meta["configs"]} == {
        "runs": "runs/*.parquet",
        "measurements": "measurements/*.parquet",
        "samples": "samples/*.parquet",
        "taxonomy": "taxonomy/*.parquet",
    }
    assert meta["license"] == "cc-by-4.0" and meta["task_categories"] and meta["pretty_name"]
    assert meta["size_categories"] == ["n<1K"] and {"effbench", "prune-magnitude"} <= set(meta["tags"])
    body = card.text
    for kind in DATASET_RECORDS:
        for f in kind.schema():
            assert f"| `{f.name}` | {f.type} | {kind.column_docs()[f.name]} |" in body
    for metric, unit, resource in (("latency", "ms", "computation"), ("energy_per_token", "J/token", "energy")):
        assert f"| `{metric}` | {unit} | {resource} | lower | evaluate | " in body
    assert "| `hwB` | Test CPU B (64 cores), 512 GiB, Linux | 4 | CPU estimated (cpu_load) |" in body
    assert "@article{bai2024beyond" in body and "**8 runs** (8 ok, 0 failed, 0 not applicable)" in body
    assert "1200 per-document outcomes" in body


def test_size_category_follows_the_hubs_buckets():
    sizes = (999, 1000, 5 * 10**6, 2 * 10**10, 10**12 - 1, 2 * 10**12)
    expected = ["n<1K", "1K<n<10K", "1M<n<10M", "10B<n<100B", "100B<n<1T", "n>1T"]
    assert [_size_category(n) for n in sizes] == expected


def test_card_describes_each_quantity_as_its_metric_declares_it():
    names = ("energy_direct_per_token", "energy_per_token", "co2", "request_rate", "network_received", "flops_decode")
    declared = {q.name: q for metric in registry().metrics.values() for q in metric.declared()}
    present = [n for n in names if n in declared]  # the builtin declarations: every one of these, once they land
    rows = [measurement(n, 1.0, declared[n].unit, declared[n].resource, method="m") for n in present]
    docs = {d["metric"]: d["doc"] for d in _metrics_doc(Results([], rows), registry())}
    assert {n: docs[n] for n in present} == {n: declared[n].description for n in present}
    assert all(docs[n] and docs[n] != "–" for n in present)


def test_taxonomy_covers_the_survey_map_and_every_plugin():
    assert {f.stage for f in FAMILIES} == set(STAGES)
    assert set().union(*(f.resources for f in FAMILIES)) == set(RESOURCES)
    for family in FAMILIES:
        assert family.category.startswith(SECTIONS[family.stage])
        assert family.references and all(r.startswith("https://arxiv.org/abs/") for r in family.references)
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))
    reg = registry()
    techniques = {r.name: r for r in taxonomy_rows(reg) if r.kind == "technique"}
    assert set(techniques) == set(reg.techniques)
    sources = {name: row.source.split()[0] for name, row in techniques.items()}
    assert sources["baseline"] == "effbench" and sources["torchao-int4-weight"] == "effbench-torchao"
    assert sources["example-drop-last-layers"] == "effbench-example"  # third-party plugins are in the map too


def test_merge_is_keyed_by_run_id():
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)

    def ds(*runs):
        return Results(list(runs), [MeasurementRow(run_id=r.run_id, metric=r.status) for r in runs])

    base = ds(run_row("a", "baseline", {}, finished_at=early), run_row("b", "dtype", {}, finished_at=early))
    same, report = merge(base, base)
    assert same.runs == base.runs and not report.changed and report.kept == ["a", "b"]

    failed_rerun = run_row("a", "baseline", {}, finished_at=late, status="failed", error="boom")
    newer = run_row("b", "dtype", {}, finished_at=late)
    merged, report = merge(base, ds(failed_rerun, newer, run_row("c", "x", {})))
    assert (report.added, report.updated, report.kept) == (["c"], ["b"], ["a"])
    assert merged.run("a").status == "ok" and merged.run("b").finished_at == late
    assert len(merged.runs) == 3

    fixed, report = merge(ds(failed_rerun), ds(run_row("a", "baseline", {}, finished_at=early)))
    assert report.updated == ["a"] and fixed.run("a").status == "ok"  # ok beats failed, even if older


def _set(column, value):
    """A mutation putting ``value`` into every row of ``column``."""
    return lambda t: t.set_column(t.schema.get_field_index(column), column, pa.array([value] * len(t)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set("duration_s", "1"), "column 'duration_s' has type string, expected double"),
        (lambda t: t.drop_columns(["hardware"]), "missing column 'hardware'"),
        (lambda t: t.append_column("extra", pa.array([1] * len(t))), "unexpected column 'extra'"),
        (lambda t: t.replace_schema_metadata({VERSION_KEY: b"2.0"}), "schema version 2.0"),
        (_set("schema_version", "2.1"), f"schema version 2.1, this effbench reads {SCHEMA_VERSION}: upgrade"),
        (_set("run_id", "../../evil"), "is not 1-64 letters"),
        (_set("status", "done"), "has status 'done'"),
        (_set("hardware", "{oops"), "hardware is not a JSON object"),
    ],
)
def test_bad_dataset_files_are_rejected_with_the_reason(built, mutate, message):
    _, out = built
    rewrite(out / "runs" / "hw-hwB.parquet", mutate)
    with pytest.raises(EffbenchError, match="is invalid; nothing was changed") as err:
        read_dataset(out)
    assert "runs/hw-hwB.parquet: " in str(err.value) and message in str(err.value)


def test_measurements_of_unknown_runs_are_rejected(built):
    _, out = built
    (out / "runs" / "hw-hwB.parquet").unlink()
    with pytest.raises(EffbenchError, match="has measurements but no runs row"):
        read_dataset(out)


def test_a_bad_store_file_names_the_file_and_the_store_is_left_alone(tmp_path):
    store = synthetic_store(tmp_path / "store")
    victim = store.files("measurements")[0]
    rewrite(victim, values_as_text)
    before = victim.read_bytes()
    stored = load(store.root)  # a store's bad file is skipped with its run, not fatal (tests/test_damaged_store.py)
    [problem] = stored.problems
    assert str(problem) == f"measurements/{victim.name}: column 'value' has type string, expected double"
    assert len(stored.runs) == 3 and victim.read_bytes() == before


def test_import_adds_only_new_or_better_runs(built, tmp_path):
    _, out = built
    target = ResultsStore(tmp_path / "mine")
    newer = run_row("hwA-0", "baseline", {}, finished_at=datetime(2027, 1, 1, tzinfo=UTC))
    target.write_run(newer, measurements(0.5, 5, 1, 1, 1, 1))
    report = import_into_store(read_dataset(out), target.root)
    assert report.kept == ["hwA-0"] and len(report.added) == 7 and not report.updated
    assert len(load(target.root).runs) == 8
    assert load(target.root).measurements_of("hwA-0")[0].value == 0.5  # the local record was newer: it stays
    again = import_into_store(read_dataset(out), target.root)
    assert not again.changed and len(load(target.root).runs) == 8


def test_write_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(EffbenchError, match="holds no effbench dataset"):
        write_dataset(Results(), out, "card")
    assert (out / "notes.txt").read_text() == "keep me" and len(list(tmp_path.iterdir())) == 1


def test_building_into_a_results_store_is_refused_and_loses_nothing(tmp_path):
    store = synthetic_store(tmp_path / "store")
    (store.root / "logs").mkdir()
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*"))
    for target in (store.root, synthetic_store(tmp_path / "other").root):  # a store has runs/ like a dataset
        with pytest.raises(EffbenchError, match="holds no effbench dataset"):
            hub.build(store.root, target)
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*")) == before


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3"])
def test_a_store_from_an_earlier_schema_builds_with_the_later_columns_empty(tmp_path, version):
    """1.1 added measurements.scenario and .cv, 1.2 runs.stack and measurements.phase, 1.3 runs.device and .dtype:
    older stores still build, and those columns read back as nulls (a run's stack is then its one technique, a
    row's phase evaluate); 1.4 added the samples table: they have none."""
    store = synthetic_store(tmp_path / "store")
    as_written_by(store, version)
    hub.build(store.root, tmp_path / "dataset")
    built = read_dataset(tmp_path / "dataset")
    assert built.samples == []
    card = DatasetCard.load(tmp_path / "dataset" / "README.md").data.to_dict()
    assert [c["config_name"] for c in card["configs"]] == ["runs", "measurements", "taxonomy"]  # no samples to load
    shutil.rmtree(tmp_path / "dataset" / "samples")  # as an earlier version built it
    assert read_dataset(tmp_path / "dataset") == built
    for kind, rows in ((MeasurementRow, built.measurements), (RunRecord, built.runs)):
        later = kind.later_columns(after=version)
        assert rows and all(getattr(row, c) is None for row in rows for c in later)
    assert all(m.in_phase == "evaluate" for m in built.measurements)
    assert len(built.measurements) == len(load(store.root).measurements) == 4 * 7
    assert {r.schema_version for r in built.runs} == {version} and {r.placement for r in built.runs} == {""}
    assert "prune-magnitude(sparsity=0.9)" in {r.label for r in built.runs}


def test_rebuilding_replaces_what_the_last_build_wrote_and_nothing_else(built, tmp_path):
    _, out = built
    one_machine = synthetic_store(tmp_path / "one")
    hub.build(one_machine.root, out)  # hwB's shards were the last build's: they go
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["hw-hwA.parquet"]
    assert yaml.safe_load((out / "README.md").read_text().split("---")[1])["configs"]
    (out / "runs" / "hw-mine.parquet").write_bytes(b"a shard effbench did not write")
    with pytest.raises(EffbenchError, match=r"holds runs/hw-mine\.parquet, which effbench did not write"):
        hub.build(one_machine.root, out)
    assert (out / "runs" / "hw-mine.parquet").read_bytes() == b"a shard effbench did not write"
