"""Results at scale: the store's snapshot reads what the per-run files hold, and the columnar paths (records made
when used, outcomes as arrays, every run's bootstrap at once) give the report and leaderboard the one-at-a-time
paths give."""

import gc
import math
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from effbench import aside
from effbench.measure import decisions, paired
from effbench.present import leaderboard, report
from effbench.records import MeasurementRow, SampleRow
from effbench.store import comparisons, outcomes, snapshot
from effbench.store.load import Results, load
from effbench.store.results import ResultsStore, to_table
from effbench.store.rows import SHORT, Rows, python_values, run_spans
from tests.conftest import cli
from tests.store_helpers import COLUMNS, measurement, measurements, run_row, samples, two_machine_store


def _read(root) -> tuple:
    """Everything a read gives, as plain lists (records compare by value)."""
    runs, rows, outcomes, problems = ResultsStore(root).read()
    return runs, rows, outcomes, [str(p) for p in problems]


def _snapshot_files(root) -> list[str]:
    return sorted(p.name for p in snapshot.snapshot_folder(root).glob("*.arrow"))


def _listing(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def settled(monkeypatch) -> None:
    """Files written a moment ago count as settled (in use, files changed within the clock's tick are read again)."""
    monkeypatch.setattr(snapshot, "RACY_NS", -(10**18))


@pytest.fixture
def store(tmp_path, settled) -> ResultsStore:
    """Two machines' runs, one more with a damaged measurements file, and measurements of a run never stored."""
    root = tmp_path / "store"
    store = two_machine_store(root)
    store.write_run(run_row("bad", "dtype", {"dtype": "fp16"}), measurements(0.5, 9.0, 1.0, 1.0, 1.0, 1.0))
    (root / "measurements" / "bad.parquet").write_bytes(b"PAR1 truncated")
    pq.write_table(pq.read_table(root / "measurements" / "hwA-0.parquet"), root / "measurements" / "orphan.parquet")
    return store


def test_a_read_through_the_snapshot_gives_what_reading_every_file_gives(store, monkeypatch):
    before = _listing(store.root)
    first = _read(store.root)  # no snapshot yet: every file read, the snapshot written into effbench's cache
    assert _snapshot_files(store.root) == ["measurements.arrow", "runs.arrow", "samples.arrow"]
    opened = []
    read_one = ResultsStore._read_run_file
    monkeypatch.setattr(ResultsStore, "_read_run_file", lambda *a: opened.append(a[1].name) or read_one(*a))
    assert first == _read(store.root)  # through the snapshot: the same rows, order and problems
    assert opened == ["bad.parquet"]  # only the bad file is read again (and named again)
    assert _listing(store.root) == before  # reading never writes into the store
    runs, rows, outcomes, problems = first
    assert sorted(r.run_id for r in runs) == [f"hw{m}-{i}" for m in "AB" for i in range(4)]
    assert problems == ["measurements/bad.parquet: truncated Parquet file (its footer is missing)"]
    assert len(rows) == 8 * 7 and len(outcomes) == 8 * 150 and {m.run_id for m in rows} == {r.run_id for r in runs}


FORKED_READ = """
import pickle, sys
from effbench import aside
from effbench.store import snapshot
from effbench.store.results import ResultsStore

aside.LARGE = 0
snapshot.RACY_NS = -(10**18)
forks, start = [], aside._start
aside._start = lambda *a: forks.append(a[1]) or start(*a)
runs, rows, outcomes, problems = ResultsStore(sys.argv[1]).read()
with open(sys.argv[2], "wb") as out:
    pickle.dump((forks, (runs, rows, outcomes, [str(p) for p in problems])), out)
"""


def test_many_files_are_read_half_by_a_forked_process_with_the_same_rows_and_problems(store, tmp_path, monkeypatch):
    """A first read of many files: the second half of each table's by a forked process (in a fresh interpreter: no
    other thread runs), the same runs, rows and problems in the same order as read here, a bad file in either half;
    here, with another thread running, every file is read in the process (a fork copies no thread, nor its locks)."""
    (store.root / "samples" / "hwB-3.parquet").write_bytes(b"")  # the first half has bad.parquet
    monkeypatch.setattr(aside, "LARGE", 10**9)
    here = _read(store.root)
    assert here[3] == [
        "measurements/bad.parquet: truncated Parquet file (its footer is missing)",
        "samples/hwB-3.parquet: empty file",
    ]
    shutil.rmtree(snapshot.snapshot_folder(store.root))  # every file read again
    subprocess.run([sys.executable, "-c", FORKED_READ, str(store.root), str(tmp_path / "read")], check=True,
                   cwd=Path(__file__).parents[1])  # fmt: skip
    forks, forked = pickle.loads((tmp_path / "read").read_bytes())
    assert forks == ["reading the store's files"] * 3 and forked == here  # runs, measurements, samples

    shutil.rmtree(snapshot.snapshot_folder(store.root))
    monkeypatch.setattr(aside, "LARGE", 0)
    forks = []
    start = aside._start
    monkeypatch.setattr(aside, "_start", lambda *a: forks.append(a[1]) or start(*a))
    busy = threading.Event()
    thread = threading.Thread(target=busy.wait)
    thread.start()
    try:
        assert _read(store.root) == here and forks == []
    finally:
        busy.set()
        thread.join()


def test_an_unchanged_store_is_read_from_its_snapshot_alone_and_a_change_after_is_seen(tmp_path, settled, monkeypatch):
    """Every name and stat as the snapshot holds them: no file opened, the same rows; then a rewritten file is read."""
    store = two_machine_store(tmp_path / "store")
    expected = _read(store.root)
    opened = []
    read_one = ResultsStore._read_run_file
    monkeypatch.setattr(ResultsStore, "_read_run_file", lambda *a: opened.append(a[1].name) or read_one(*a))
    assert _read(store.root) == expected and opened == []
    store.write_run(run_row("hwB-2", "dtype", {"dtype": "bf16"}), [measurement("latency", 7.0, "ms", "computation")])
    _, rows, _, _ = _read(store.root)
    assert sorted(opened) == ["hwB-2.parquet"] * 3 and [m.value for m in rows if m.run_id == "hwB-2"] == [7.0]


@pytest.mark.parametrize("length", [0, 1, SHORT - 1, SHORT, 3 * SHORT])
def test_python_values_are_to_pylists_short_or_long(length):
    rng = np.random.default_rng(length)
    nulls = rng.random(length) < 0.3
    floats = rng.normal(size=length)
    floats[rng.random(length) < 0.1] = np.nan
    columns = [
        pa.array(rng.choice(["a", "b", "é", ""], length).tolist(), mask=nulls),
        pa.array(floats, mask=nulls),
        pa.array(rng.integers(-5, 5, length), mask=nulls),
        pa.array(rng.random(length) < 0.5, mask=nulls),
        pa.chunked_array([pa.array(floats[: length // 2]), pa.array(floats[length // 2 :])], pa.float64()),
    ]
    for column in columns:
        values, expected = python_values(column), column.to_pylist()
        assert [type(v) for v in values] == [type(v) for v in expected]
        assert [repr(v) for v in values] == [repr(v) for v in expected]  # NaN as NaN, None as None


def test_a_process_beside_yields_the_cpu_to_its_parent():
    niceness = aside._start(lambda: os.nice(0), "a test")()  # the forked process's own niceness
    assert niceness == min(os.nice(0) + aside.BESIDE_NICENESS, 19)


def test_a_file_rewritten_replaced_or_removed_since_is_read_again(store):
    _read(store.root)
    store.write_run(run_row("hwA-1", "dtype", {"dtype": "bf16"}), [measurement("latency", 42.0, "ms", "computation")])
    (store.root / "runs" / "hwB-3.parquet").unlink()
    (store.root / "samples" / "hwA-2.parquet").write_bytes(b"")
    for _ in range(2):  # building the new snapshot, then reading through it
        runs, rows, _, problems = _read(store.root)
        assert [m.value for m in rows if m.run_id == "hwA-1"] == [42.0]
        assert {r.run_id for r in runs} == {"hwA-0", "hwA-1", "hwA-3", "hwB-0", "hwB-1", "hwB-2"}
        assert problems[-1] == "samples/hwA-2.parquet: empty file"  # a bad file is named on every read


def test_a_snapshot_that_does_not_read_or_is_another_versions_is_rebuilt(store, monkeypatch):
    expected = _read(store.root)
    (snapshot.snapshot_folder(store.root) / "measurements.arrow").write_bytes(b"ARROW1")
    assert _read(store.root) == expected
    monkeypatch.setattr(snapshot, "__version__", "0.0.1")
    folder = snapshot.snapshot_folder(store.root)
    assert snapshot.load_snapshot(folder, MeasurementRow) is None
    assert _read(store.root) == expected
    assert snapshot.load_snapshot(folder, MeasurementRow) is not None  # rewritten by this version


def test_a_store_keeps_its_rows_in_tables_until_records_are_asked_for(store):
    results = load(store.root)
    assert isinstance(results.measurements, Rows) and results.measurements._all is None
    assert results.outcome("hwA-2", "micro_copy", "exact_match") is not None and results.samples._all is None
    assert results.measurements_of("hwA-2") == [m for m in results.measurements if m.run_id == "hwA-2"]
    assert results.samples == list(results.samples)


def test_where_each_runs_rows_lie_is_known_from_its_file_and_kept_right_when_a_run_is_dropped(tmp_path, settled):
    """The reader gives each table its runs' spans (a file holds one run's rows): the ones the rows say, also after a
    run's damaged samples file drops its measurements from the middle of the table."""
    store = two_machine_store(tmp_path / "store")
    (store.root / "samples" / "hwA-1.parquet").write_bytes(b"PAR1 truncated")
    for _ in range(2):  # every file read, then through the snapshot
        results = load(store.root)
        assert not results.has_run("hwA-1") and len(results.runs) == 7
        for rows in (results.measurements, results.samples):
            assert rows.spans() == run_spans(rows.table.column("run_id"))
            assert list(rows.spans()) == [run.run_id for run in results.runs]


def _from_records(results: Results) -> Results:
    """The same results as plain record lists: the paths of results built in memory (datasets, the Python API)."""
    return Results(
        list(results.runs), list(results.measurements), problems=results.problems, samples=list(results.samples)
    )


def _report_files(results: Results) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as folder:
        written = report.write(report.build(results, columns=COLUMNS), Path(folder))
        return {name: path.read_bytes() for name, path in written.items()}


def _board_files(results: Results) -> list[str]:
    boards = leaderboard.boards(results, COLUMNS)
    return [text for board in boards for text in (leaderboard.to_markdown(board), leaderboard.to_csv(board))]


def test_the_report_and_leaderboard_from_tables_are_the_ones_from_records(store):
    stored = load(store.root)
    assert _report_files(stored) == _report_files(_from_records(load(store.root)))
    assert _board_files(stored) == _board_files(_from_records(load(store.root)))


def _one_at_a_time(results: Results, run_id: str, base_id: str, task: str, metric: str) -> paired.Paired | None:
    """The paired comparison of one run, from its samples as records (the last outcome of a document kept)."""
    mine, theirs = ({s.doc_id: s for s in results.samples_of(r) if s.task == task and s.metric == metric}
                    for r in (run_id, base_id))  # fmt: skip
    if not mine or mine.keys() != theirs.keys():
        return None
    docs = sorted(mine)
    values = [np.array([rows[d].value for d in docs]) for rows in (mine, theirs)]
    weights = [np.array([float(rows[d].weight or 0) for d in docs]) for rows in (mine, theirs)]
    return paired.compare(values[0], values[1], metric, *weights)


@pytest.mark.parametrize(("task", "metric"), [("micro_copy", "exact_match"), ("micro_text", "word_perplexity")])
def test_every_run_compared_at_once_gets_the_figures_it_gets_alone(store, task, metric):
    results = load(store.root)
    runs = [results.run(f"hwA-{i}") for i in range(4)]
    primary = {task: next(m for m in results.measurements_of("hwA-0") if m.task == task and m.metric == metric)}
    together = report.paired_with_baseline(results, runs, runs[0], primary)
    assert together["hwA-0"] == {task: None}
    for run in runs[1:]:
        alone = _one_at_a_time(results, run.run_id, "hwA-0", task, metric)
        assert alone is not None and together[run.run_id][task] == alone


def test_outcomes_keep_the_first_filter_and_a_documents_last_row():
    rows = [SampleRow("r", "t", 1, "acc", "none", 0.0), SampleRow("r", "t", 0, "acc", "none", 1.0),
            SampleRow("r", "t", 0, "acc", "strict", 0.0), SampleRow("r", "t", 1, "acc", "none", 1.0)]  # fmt: skip
    found = Results(samples=rows).outcome("r", "t", "acc")
    assert found is not None and found.doc_ids.tolist() == [0, 1] and found.values.tolist() == [1.0, 1.0]
    assert Results(samples=rows).outcome("r", "t", "exact_match") is None


def _with_samples(rows: list[SampleRow], spans: bool) -> Results:
    """Results of these samples (each run's together): as records, or as a store's table with its runs' spans."""
    if not spans:
        return Results(samples=rows)
    table = to_table(rows, SampleRow)
    return Results(samples=Rows(SampleRow, table, run_spans(table.column("run_id"))))


@pytest.mark.parametrize("spans", [False, True])
def test_outcomes_gathered_for_many_runs_are_each_runs_alone(spans):
    """Runs as lm-eval logs them are views; a second filter, a document logged twice or out of order take the
    one-run path; a run without rows has none. Found by run id, or where the reader says each run's rows lie."""
    logged = {
        "plain": [(0, "none", 1.0), (1, "none", 0.0), (2, "none", 1.0)],
        "filters": [(0, "none", 1.0), (1, "strict", 0.0), (1, "none", 1.0)],
        "twice": [(0, "none", 0.0), (1, "none", 1.0), (0, "none", 1.0)],
        "unordered": [(2, "none", 0.0), (0, "none", 1.0), (1, "none", 1.0)],
        "one": [(5, "none", 1.0)],
    }
    rows = [SampleRow(run, "t", doc, "acc", kept, value, weight=doc + 1)
            for run, outcomes in logged.items() for doc, kept, value in outcomes]  # fmt: skip
    rows.append(SampleRow("other-task", "u", 0, "acc", "none", 1.0))
    order = ["twice", "none", "plain", "unordered", "filters", "other-task", "one"]
    together = _with_samples(rows, spans).outcomes(order, "t", "acc")
    for run, found in zip(order, together, strict=True):
        mine = logged.get(run, [])
        columns = [np.array(column) for column in zip(*[(d, v, d + 1.0, f) for d, f, v in mine], strict=True)]
        alone = paired.outcome(*columns) if mine else None
        assert (found is None) == (alone is None), run
        if alone is not None:
            assert all(np.array_equal(getattr(found, a), getattr(alone, a)) for a in ("doc_ids", "values", "weights"))
    base = together[order.index("plain")]  # pairs with itself and, once put in order, the unordered run
    at_once = _with_samples(rows, spans)._sample_index.aligned(order, "t", "acc", base)
    one_by_one = paired.align(together, base, "acc")
    assert at_once.count == one_by_one.count == len(order) and at_once.chosen == one_by_one.chosen == [2, 3]
    assert all(np.array_equal(getattr(at_once, a), getattr(one_by_one, a)) for a in ("doc_ids", "values", "weights"))


@pytest.mark.parametrize("spans", [False, True])
def test_length_ratios_of_many_runs_at_once_are_each_runs_alone(spans):
    """Against the rule computed from the records, run by run: mean generated tokens over the documents both
    answered (a document logged with several metrics or twice: its last count), rows without a count left out, a
    run with none."""
    rng = np.random.default_rng(11)
    rows = []
    for run in ("base", *(f"r{i}" for i in range(30))):
        for _ in range(int(rng.integers(0, 40))):
            task, doc = str(rng.choice(["copy", "add", "text"])), int(rng.integers(0, 12)) * 1000
            tokens = None if rng.random() < 0.2 else int(rng.integers(0, 9))
            rows.append(SampleRow(run, task, doc, str(rng.choice(["exact_match", "acc"])), "none", 1.0,
                                  prediction_tokens=tokens))  # fmt: skip
    results = _with_samples(rows, spans)
    runs = [f"r{i}" for i in range(30)] + ["nothing"]

    def generated(run: str) -> dict[tuple[str, int], int]:
        return {
            (s.task, s.doc_id): s.prediction_tokens for s in results.samples_of(run) if s.prediction_tokens is not None
        }

    def alone(run: str) -> float | None:
        mine, theirs = generated(run), generated("base")
        shared = mine.keys() & theirs.keys()
        base = sum(theirs[k] for k in shared)
        return sum(mine[k] for k in shared) / base if shared and base else None

    expected = [alone(r) for r in runs]
    assert results.length_ratios(runs, "base") == expected
    assert any(e is None for e in expected) and sum(e is not None for e in expected) > 20
    assert results.length_ratios(runs, "nothing") == [None] * len(runs)


def test_comparisons_computed_once_are_looked_up_by_what_they_compare(store, monkeypatch):
    """A second read computes no comparison and gives the same files; a run whose outcomes changed is computed
    afresh (its key is another), the others still looked up."""
    fresh = _report_files(_from_records(load(store.root)))  # records: no cache
    first = load(store.root)
    assert _report_files(first) == fresh
    del first
    gc.collect()  # let go: what it computed is kept
    kept = snapshot.snapshot_folder(store.root) / comparisons.FILE
    written = kept.stat().st_mtime_ns
    computed = []
    original = comparisons.compare_aligned
    monkeypatch.setattr(
        comparisons, "compare_aligned", lambda r, b, m: computed.append(len(r.chosen)) or original(r, b, m)
    )
    second = load(store.root)
    assert _report_files(second) == fresh and computed == []
    del second
    gc.collect()
    assert kept.stat().st_mtime_ns == written  # nothing computed: not rewritten
    path = store.root / "samples" / "hwA-2.parquet"
    table = pq.read_table(path)
    flipped = pa.compute.subtract(1.0, table.column("value"))  # every 0/1 outcome turned round
    pq.write_table(table.set_column(table.schema.get_field_index("value"), "value", flipped), path)
    expected = _report_files(_from_records(load(store.root)))
    computed.clear()
    assert _report_files(load(store.root)) == expected
    assert computed == [1, 1]  # the changed run only, in each task it is compared in


def test_a_comparisons_file_that_does_not_read_or_is_another_versions_is_ignored(store, monkeypatch):
    fresh = _report_files(_from_records(load(store.root)))
    results = load(store.root)
    _report_files(results)
    del results
    gc.collect()
    kept = snapshot.snapshot_folder(store.root) / comparisons.FILE
    assert comparisons._read(kept.parent)
    monkeypatch.setattr(comparisons, "__version__", "0.0.1")
    assert comparisons._read(kept.parent) == {}
    monkeypatch.undo()
    kept.write_bytes(b"ARROW1 damaged")
    assert comparisons._read(kept.parent) == {} and _report_files(load(store.root)) == fresh
    kept.unlink()
    kept.mkdir()  # cannot be written: the report is the same, without a cache
    results = load(store.root)
    assert _report_files(results) == fresh
    del results
    gc.collect()
    assert kept.is_dir() and not list(kept.parent.glob(f".{comparisons.FILE}.*"))  # no temporary file left


@pytest.mark.parametrize("large", [False, True])
def test_the_report_is_written_as_its_tables_are_built(store, tmp_path, monkeypatch, large):
    """Each table is written as it is built, its CSV lines on a thread; what the command shows is given the first
    tables and how many there are, in a forked process on a large store, before any file is in place. The files
    are those of the tables built at once; a failure on a thread, in what is shown or in building a table fails the
    write with its message, waits for the rest and replaces nothing."""
    if large:
        monkeypatch.setattr(aside, "LARGE", 0)
    results = load(store.root)
    every = report.build(results, columns=COLUMNS)
    at_once = {name: path.read_bytes() for name, path in report.write(every, tmp_path / "at-once").items()}
    threads, write_part = [], report._write_details_part

    def on_a_thread(*args):
        threads.append(threading.current_thread())
        write_part(*args)

    monkeypatch.setattr(report, "_write_details_part", on_a_thread)
    forks, start = [], aside._start
    monkeypatch.setattr(aside, "_start", lambda *a: forks.append(a[1]) or start(*a))
    seen = tmp_path / "seen"

    def show(first, total):  # what it was given, and whether a file was in place: in a file, as a fork's would be
        seen.write_text(f"{[t.title for t in first]} {total} {(tmp_path / 'out' / 'report.md').exists()}")

    lazily = report.Tables(results, None, report.UNSTABLE_CV, COLUMNS)
    written = report.write(lazily, tmp_path / "out", show, 1)
    assert {name: path.read_bytes() for name, path in written.items()} == at_once
    assert seen.read_text() == f"{[every[0].title]} {len(every)} False"
    assert len(threads) == len(every) and threading.main_thread() not in threads
    assert forks == (["showing the report's tables"] if large else [])

    def broken(*args):
        raise ValueError("no room")

    before = _listing(tmp_path / "out")
    for name in ("_write_csv_part", "to_latex", "_table"):
        with monkeypatch.context() as patched:
            patched.setattr(report, name, broken)
            with pytest.raises(ValueError, match="no room"):
                report.write(report.Tables(results, None, report.UNSTABLE_CV, COLUMNS), tmp_path / "out", show, 1)
        assert _listing(tmp_path / "out") == before
    with pytest.raises(RuntimeError if large else ValueError, match="no room"):
        report.write(every, tmp_path / "out", broken, 1)
    assert _listing(tmp_path / "out") == before


def test_the_terminal_shows_a_tables_first_rows_and_where_the_rest_are(tmp_path):
    store = ResultsStore(tmp_path)
    for i in range(53):
        technique = ("baseline", {}) if i == 0 else ("prune-magnitude", {"sparsity": i / 100})
        store.write_run(
            run_row(f"run-{i:02d}", *technique),
            [measurement("exact_match", 1 - i / 100, "", "quality", "micro_copy", stderr=0.01)],
            samples(1 - i / 100, 5.0, shift=i),
        )
    shown = cli("report", "--results", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert f"... and 3 more rows in {tmp_path / 'report.md'}" in " ".join(shown.stdout.split())
    assert (tmp_path / "report.md").read_text().count("prune-magnitude(sparsity=") == 2 * 52  # two sections
    boards = tmp_path / "boards"
    shown = cli("leaderboard", "--results", str(tmp_path), "--out", str(boards))
    assert shown.returncode == 0, shown.stderr
    (machine,) = [folder for folder in boards.iterdir() if folder.is_dir()]
    assert f"... and 3 more rows in {machine / 'leaderboard.md'}" in " ".join(shown.stdout.split())
    assert (machine / "leaderboard.md").read_text().count("prune-magnitude(sparsity=") == 52  # every row in the file


def test_counted_resamples_of_right_and_wrong_give_the_gathered_means_exactly():
    rng = np.random.default_rng(3)
    runs, baseline = (rng.random((7, 33)) < 0.6).astype(float), (rng.random(33) < 0.7).astype(float)
    mine, theirs = paired.bootstrap_figures(runs, baseline)
    chunks = paired._resamples(33, paired.BOOTSTRAP_ITERATIONS, paired.BOOTSTRAP_SEED)
    assert np.array_equal(mine, np.concatenate([runs[:, index].mean(axis=-1) for index, _ in chunks], axis=1))
    assert np.array_equal(theirs, np.concatenate([baseline[index].mean(axis=-1) for index, _ in chunks]))


def test_the_pareto_front_of_all_pairs_at_once_is_the_pairwise_one(monkeypatch):
    rng = np.random.default_rng(5)
    values = rng.integers(0, 6, size=(300, 2)).astype(float)  # coarse: many overlaps and ties
    spread = rng.integers(0, 3, size=(300, 2))
    points = [(decisions.Interval(c, c - sc, c + sc), decisions.Interval(s, s - ss, s + ss))
              for (c, s), (sc, ss) in zip(values, spread, strict=True)]  # fmt: skip
    points.append((decisions.Interval(math.inf, math.inf, math.inf), decisions.Interval(0.5, 0.5, 0.5)))
    pairwise = {i for i, p in enumerate(points) if not any(decisions.dominates(q, p) for q in points)}
    monkeypatch.setattr(decisions, "PAIRS_AT_ONCE", 1000)  # in blocks, as for thousands of runs
    assert decisions.pareto_front(points) == pairwise and 0 < len(pairwise) < len(points)


def test_only_the_stores_read_most_recently_keep_a_snapshot(tmp_path, monkeypatch, settled):
    monkeypatch.setattr(snapshot, "KEPT", 2)
    stores = [two_machine_store(tmp_path / name).root for name in ("a", "b", "c")]
    for root in stores:
        _read(root)
    assert [snapshot.snapshot_folder(root).is_dir() for root in stores] == [False, True, True]
    assert len(_read(stores[0])[0]) == 8  # read file by file again, and its snapshot back
    assert snapshot.snapshot_folder(stores[0]).is_dir() and not snapshot.snapshot_folder(stores[1]).is_dir()


def test_a_file_changed_within_the_clocks_tick_is_read_again_even_with_its_stat_unchanged(tmp_path):
    store = two_machine_store(tmp_path)
    _read(tmp_path)  # just written: read, kept in the snapshot, and read again next time
    path = tmp_path / "measurements" / "hwA-1.parquet"
    info = path.stat()
    with path.open("r+b") as file:  # the same size, its modification time put back
        file.seek(info.st_size - 5)
        file.write(b"X")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    (problem,) = ResultsStore(tmp_path).read()[3]
    assert problem.path == "measurements/hwA-1.parquet"
    assert store.statuses().keys() == {f"hw{m}-{i}" for m in "AB" for i in range(4)} - {"hwA-1"}


@pytest.mark.parametrize(
    ("kind", "damage"),
    [(MeasurementRow, d) for d in ({}, {"metric": ""}, {"metric": None}, {"resource": "time"}, {"phase": "warmup"},
                                   {"phase": ""}, {"value": None})]
    + [(SampleRow, d) for d in ({}, {"task": ""}, {"metric": None}, {"doc_id": None}, {"value": None})],
)  # fmt: skip
def test_rows_checked_column_by_column_are_sound_only_where_every_row_is(kind, damage):
    """A store's measurements and samples skip the row-by-row check only when the columns prove no row has a
    problem, and report the same problems as the row-by-row check otherwise."""
    from dataclasses import replace

    from effbench.store.results import to_table
    from effbench.store.validate import Problem, _columns_sound, check_rows, check_table

    made = measurements(0.8, 5.0, 100.0, 2.0, 300.0, 4.0) if kind is MeasurementRow else samples(0.8, 5.0, 0)
    rows = [replace(row, run_id="r") for row in made]
    rows[2] = replace(rows[2], **damage)
    table = to_table(rows, kind)
    by_rows: list[Problem] = []
    check_rows(table, kind, "f.parquet", by_rows)
    by_columns: list[Problem] = []
    check_table(table, kind, "f.parquet", by_columns)
    assert by_columns == by_rows  # the same problems, named the same way
    assert _columns_sound(table, kind) == (not damage)  # a sound table is not made into records
    assert bool(by_rows) == (damage not in ({}, {"phase": ""}))  # "" is a phase written before 1.2: evaluate


def test_commands_reading_a_whole_store_pause_the_cycle_collector_and_restore_it():
    import gc

    from effbench.cli import dataset, main
    from effbench.cli.store import bulk_reader

    seen = []

    @bulk_reader
    def command(args) -> int:
        seen.append(gc.isenabled())
        if args:
            raise RuntimeError("a failing command")
        return 0

    assert command(None) == 0 and gc.isenabled()
    with pytest.raises(RuntimeError):
        command(True)
    assert seen == [False, False] and gc.isenabled()  # restored after a failure too
    readers = (main.cmd_report, dataset.cmd_leaderboard, dataset.cmd_compare, dataset.cmd_dataset_build)
    assert all(reader.__wrapped__ and reader.__doc__ for reader in readers)  # wrapped, help text kept
    assert not hasattr(main.cmd_evaluate, "__wrapped__")  # a sweep keeps it: models and lm-eval hold cycles


def test_tables_index_the_samples_beside_and_give_each_with_no_thread_running(store, monkeypatch):
    """The samples are indexed on a thread while the kept comparisons are read, joined before the first table is
    given (``write`` may fork then); a failure there is raised where the outcomes are read, as without it."""
    results = load(store.root)
    threads, seen, reading = threading.active_count(), [], threading.Event()
    index, read = Results.index_samples, results.comparisons.read

    def indexing(self: Results) -> None:  # waits until the comparisons are being read: it runs beside them, or fails
        seen.append((threading.current_thread() is not threading.main_thread(), reading.wait(10)))
        index(self)

    monkeypatch.setattr(Results, "index_samples", indexing)
    monkeypatch.setattr(results.comparisons, "read", lambda: reading.set() or read())
    for _ in report.Tables(results, None, report.UNSTABLE_CV, COLUMNS):
        assert threading.active_count() == threads
    assert seen == [(True, True)] and "_sample_index" in vars(results)  # made beside the comparisons' reading
    monkeypatch.undo()

    broken = load(store.root)

    def bad_index(*args):
        raise ValueError("bad index")

    monkeypatch.setattr(outcomes.SampleIndex, "__init__", bad_index)
    with pytest.raises(ValueError, match="bad index"):
        report.build(broken, columns=COLUMNS)
