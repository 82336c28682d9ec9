"""Leaderboards: one per machine, ranked by a score that only mixes comparable metrics, Pareto frontiers, files."""

import csv
import io
import itertools
import math
import random
import threading
from dataclasses import replace

import pytest
from PIL import Image

from effbench import aside
from effbench.api.metric import Quantity
from effbench.errors import EffbenchError
from effbench.measure.decisions import Interval, pareto_front, tie_ranks
from effbench.present import compare, leaderboard
from effbench.present.columns import Column, candidates
from effbench.present.report import run_gates
from effbench.records import MeasurementRow
from effbench.store.load import Results, load
from effbench.store.results import ResultsStore, to_table
from tests.conftest import run_cli
from tests.store_helpers import COLUMNS, TECHNIQUES, measurement, run_row, two_machine_store


def _dominated(p, q):
    """Whether q dominates p: no more cost, no less accuracy, better in one."""
    return q[0] <= p[0] and q[1] >= p[1] and q != p


@pytest.mark.parametrize("seed", range(5))
def test_pareto_front_is_exactly_the_non_dominated_points(seed):
    rng = random.Random(seed)
    points = [(rng.choice([1.0, 2.0, 3.0, 4.0]), rng.choice([0.1, 0.5, 0.9])) for _ in range(12)]
    front = pareto_front([(Interval.of(c), Interval.of(a)) for c, a in points])  # exact figures: classic dominance
    assert front == {i for i, p in enumerate(points) if not any(_dominated(p, q) for q in points)}
    assert front  # a finite set always has a non-dominated point


def test_pareto_front_by_hand():
    points = [(10.0, 0.9), (5.0, 0.8), (5.0, 0.7), (20.0, 0.9), (1.0, 0.1), (5.0, 0.8)]
    exact = [(Interval.of(c), Interval.of(a)) for c, a in points]
    assert pareto_front(exact) == {0, 1, 4, 5}  # ties with each other are both kept


@pytest.fixture
def two_machines(tmp_path):
    return load(two_machine_store(tmp_path / "store").root)


def test_one_board_per_machine_ranked_by_a_comparable_score(two_machines):
    boards = {b.fingerprint: b for b in leaderboard.boards(two_machines, COLUMNS)}
    assert set(boards) == {"hwA", "hwB"}
    board = boards["hwA"]
    assert board.scored == [("micro_copy", "exact_match")]  # perplexity (lower is better) is never averaged in
    accuracy = sorted((t[2] for t in TECHNIQUES), reverse=True)
    assert [e.score.value for e in board.entries] == accuracy
    assert board.entries[0].score.high - board.entries[0].score.low == pytest.approx(2 * 1.96 * 0.02, rel=1e-3)
    assert board.tasks == ["micro_copy", "micro_text"]
    assert {name: c.name for name, c in board.frontiers.items()} == {
        "latency": "latency",
        "energy": "energy_per_token",  # no counters on this machine: codecarbon's figure
        "memory": "peak_memory",
    }
    # The baseline's 0.02 lead over bf16 is inside the scores' intervals (± 0.039) while bf16 is cheaper beyond
    # them on every axis: bf16 alone is optimal, though the baseline still ranks first on the score's point value.
    labels = {name: {board.entries[i].run.label for i in front} for name, front in board.fronts.items()}
    assert labels == {name: {"dtype(dtype=bf16)"} for name in leaderboard.FRONTIERS}
    assert [board.rank_text(i) for i in range(4)] == ["1", "2", "3", "4"]  # latency tells the first two apart


def _run_with(run_id, technique, accuracy, latency, stderr):
    rows = [
        measurement("exact_match", accuracy, "", "quality", "micro_copy", stderr=0.01),
        measurement("latency", latency, "ms", "computation", stderr=stderr),
    ]
    return run_row(run_id, technique, {}), rows


@pytest.mark.parametrize(
    ("stderr", "ranks", "front"), [(0.5, ["1=", "1="], "latency (tie: #2)"), (0.01, ["1", "2"], "")]
)
def test_runs_whose_intervals_overlap_are_not_ranked_apart(tmp_path, stderr, ranks, front):
    """The committed default-suite case: 50 % pruning 75.8 ms vs the baseline's 75.9 ms, the same accuracy."""
    store = ResultsStore(tmp_path / "store")
    store.write_run(*_run_with("a", "prune-magnitude", 0.9, 75.8, stderr))
    store.write_run(*_run_with("b", "baseline", 0.9, 75.9, stderr))
    (board,) = leaderboard.boards(load(store.root), COLUMNS)
    assert [e.run.technique for e in board.entries] == ["prune-magnitude", "baseline"]
    assert [board.rank_text(i) for i in range(2)] == ranks
    assert board.fronts["latency"] == ({0, 1} if front else {0})  # apart, the faster one dominates
    if front:
        assert board.frontier_names(0) == front and "| 1= |" in leaderboard.to_markdown(board)


def test_files_hold_the_same_numbers_and_plots_are_images(two_machines, tmp_path):
    out = tmp_path / "leaderboards"
    files = leaderboard.write(two_machines, leaderboard.boards(two_machines, COLUMNS), out)
    names = {f.relative_to(out).as_posix() for f in files}
    per_machine = ["leaderboard.md", "leaderboard.csv", *(f"pareto-{n}.png" for n in leaderboard.FRONTIERS)]
    assert names == {"README.md"} | {f"{hw}/{f}" for hw, f in itertools.product(["hwA", "hwB"], per_machine)}

    rows = list(csv.DictReader(io.StringIO((out / "hwB" / "leaderboard.csv").read_text())))
    bf16 = next(r for r in rows if r["technique_params"] == '{"dtype": "bf16"}')
    assert float(bf16["Latency (ms)"]) == 60.0 * 0.25 and float(bf16["Energy (mJ/token)"]) == pytest.approx(0.3)
    assert float(bf16["micro_copy value"]) == 0.88 and bf16["micro_copy metric"] == "exact_match"
    assert bf16["pareto"] == "latency, energy, memory" and [r["rank"] for r in rows] == ["1", "2", "3", "4"]

    markdown = (out / "hwA" / "leaderboard.md").read_text()
    assert "| 2 | zoo:micro-m · dtype(dtype=bf16) | 0.880 ± 0.020 | 5.100 | 0.880 ± 0.039 | fail | fail |" in markdown
    assert "![accuracy vs energy](pareto-energy.png)" in markdown
    for png in (p for p in files if p.suffix == ".png"):
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 600 and image.height > 400
            assert len(set(image.convert("L").getdata())) > 10  # something was drawn


def test_plots_drawn_beside_the_tables_are_the_ones_drawn_in_turn(two_machines, tmp_path, monkeypatch):
    """Many points: the plots are drawn in a forked process while the tables are written; the same files result, and
    a plot that fails there fails the command with its error and replaces nothing."""
    boards = leaderboard.boards(two_machines, COLUMNS)
    in_turn = leaderboard.write(two_machines, boards, tmp_path / "in-turn")
    monkeypatch.setattr(aside, "LARGE", 0)
    forks, start = [], aside._start
    monkeypatch.setattr(aside, "_start", lambda *a: forks.append(a[1]) or start(*a))
    shown = []  # what the command shows meanwhile, before the files are in place
    beside = leaderboard.write(two_machines, boards, tmp_path / "beside", None, lambda: shown.append(1))
    assert forks == ["drawing the leaderboard plots", "writing the leaderboard CSVs"] and shown == [1]
    names = [[p.relative_to(folder) for p in files] for folder, files in ((tmp_path / "in-turn", in_turn),
                                                                          (tmp_path / "beside", beside))]  # fmt: skip
    assert names[0] == names[1]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(in_turn, beside, strict=True))

    def broken(plot: leaderboard.Plot) -> None:
        raise ValueError(f"no room for {plot.path.stem}")

    monkeypatch.setattr(leaderboard, "draw", broken)
    before = {p: p.read_bytes() for p in beside}
    failed = "drawing the leaderboard plots failed: ValueError: no room for pareto-latency"
    with pytest.raises(RuntimeError, match=failed):
        leaderboard.write(two_machines, boards, tmp_path / "beside")
    assert {p: p.read_bytes() for p in beside} == before


def test_the_command_forks_the_plots_process_before_the_boards_and_gives_it_their_plots(two_machines, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    """A large store: matplotlib is imported in a process forked before the boards are made; the plots drawn there
    are the ones drawn in turn."""
    from tests.conftest import cli

    monkeypatch.setattr(aside, "LARGE", 0)
    steps, start, make = [], aside._start, leaderboard.boards
    monkeypatch.setattr(aside, "_start", lambda *a: steps.append(a[1]) or start(*a))
    monkeypatch.setattr(leaderboard, "boards", lambda *a: steps.append("boards") or make(*a))
    assert cli("leaderboard", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "lb")).returncode == 0
    drawn = [step for step in steps if step != "reading the store's files"]  # files written a moment ago: read again
    assert drawn == ["drawing the leaderboard plots", "boards", "writing the leaderboard CSVs"]
    monkeypatch.setattr(aside, "LARGE", 10**9)
    in_turn = leaderboard.write(two_machines, make(two_machines, COLUMNS), tmp_path / "in-turn")
    for path in (p for p in in_turn if p.suffix == ".png"):
        assert (tmp_path / "lb" / path.relative_to(tmp_path / "in-turn")).read_bytes() == path.read_bytes()


def test_drawing_leaves_the_callers_matplotlib_as_it_was(two_machines, tmp_path):
    """The plots are figures of their own: a notebook's open figures and its backend stay."""
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("svg")  # a backend of the caller's, not the plots' Agg
    mine = plt.figure()
    try:
        files = leaderboard.write(two_machines, leaderboard.boards(two_machines, COLUMNS), tmp_path / "lb")
        assert plt.fignum_exists(mine.number) and matplotlib.get_backend() == "svg"
        assert all(Image.open(p).format == "PNG" for p in files if p.suffix == ".png")
    finally:
        plt.close(mine)
        matplotlib.use("Agg")


def test_a_prepared_process_does_its_work_or_ends_when_given_none(tmp_path, monkeypatch):
    monkeypatch.setattr(aside, "LARGE", 0)
    done = tmp_path / "done"
    with aside.Prepared(lambda: None, done.write_text, "writing a test file", 1) as prepared:
        prepared.alongside("given", lambda: None)
    assert done.read_text() == "given"
    with aside.Prepared(lambda: None, done.write_text, "writing a test file", 1) as never:
        pass  # this process failed first: the prepared one is told and waited for
    assert never.send.closed and done.read_text() == "given"

    def missing() -> None:
        raise ImportError("no module named plots")

    shown = []
    failed = "a failed: ImportError: no module named plots"
    with pytest.raises(RuntimeError, match=failed), aside.Prepared(missing, done.write_text, "a", 1) as broken:
        broken.alongside("again", lambda: shown.append(1))
    assert shown == [1] and done.read_text() == "given"  # what runs here ran; its preparing's error is raised
    assert not [p for p in aside.multiprocessing.active_children() if p.name.startswith("Fork")]


def test_leaderboard_command_reads_a_store_and_keeps_foreign_folders(two_machines, tmp_path):
    result = run_cli("leaderboard", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "lb"))
    assert result.returncode == 0, result.stderr
    assert "11 files written" in result.stdout and (tmp_path / "lb" / "README.md").read_text().startswith("# effbench")
    rerun = run_cli("leaderboard", "--results", str(tmp_path / "store"), "--out", str(tmp_path / "lb"))
    assert rerun.returncode == 0, rerun.stderr  # its own output is replaced

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep")
    with pytest.raises(EffbenchError, match="holds no effbench leaderboards"):
        leaderboard.write(two_machines, [], tmp_path / "mine")
    refused = run_cli("leaderboard", "--results", str(tmp_path / "nowhere"), "--out", str(tmp_path / "mine"))
    assert refused.returncode == 2 and "holds no effbench leaderboards" in refused.stderr  # before reading a store
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["thesis.tex"]


def test_load_figures_of_one_scenario_only(tmp_path):
    """Runs measured under different scenarios are ranked on the one most of them share, never mixed."""
    store = ResultsStore(tmp_path / "store")
    quality = measurement("exact_match", 0.9, "", "quality", "micro_copy")
    server, single = "server(rate=5/s)", "single-stream"
    one_off = measurement("apply_time", 1.0, "s", "computation", scenario="offline(batch=8)", phase="apply")
    store.write_run(
        run_row("a", "baseline", {}),
        [
            quality,
            measurement("latency", 500.0, "ms", "computation", scenario=server),
            measurement("throughput", 5.0, "tokens/s", "computation", scenario=server),  # a run counts once
            measurement("latency", 100.0, "ms", "computation", scenario=single),
            one_off,  # not a figure of the evaluated model: never counted
        ],
    )
    store.write_run(
        run_row("b", "dtype", {}),
        [quality, measurement("latency", 80.0, "ms", "computation", scenario=single), one_off],
    )
    store.write_run(run_row("c", "dtype", {"dtype": "fp16"}), [quality, one_off])
    results = load(store.root)
    (board,) = leaderboard.boards(results, COLUMNS)
    latency = board.frontiers["latency"]
    assert board.scenario == single
    assert {e.run.run_id: e.value(latency) for e in board.entries} == {"a": 100.0, "b": 80.0, "c": None}
    assert f"from the `{single}` scenario" in leaderboard.to_markdown(board)

    mine = Results([results.run("a")], results.measurements_of("a"))
    (comparison,) = compare.compare(mine, results, COLUMNS)  # nothing published beside run a: its first scenario
    assert comparison.scenario == server and comparison.rows[0][comparison.headers.index("Latency (ms)")] == "500.0"


def test_compare_shows_a_dash_where_a_published_run_scored_another_metric(tmp_path):
    mine, theirs = ResultsStore(tmp_path / "mine"), ResultsStore(tmp_path / "theirs")
    mine.write_run(run_row("a", "baseline", {}), [measurement("exact_match", 0.9, "", "quality", "micro_copy")])
    theirs.write_run(run_row("b", "baseline", {}), [measurement("acc", 0.4, "", "quality", "micro_copy")])
    (comparison,) = compare.compare(load(mine.root), load(theirs.root), COLUMNS)
    column = comparison.headers.index("micro_copy exact_match")
    assert [row[column] for row in comparison.rows] == ["0.900", "–"]  # not 0.4 under the exact_match header


def test_columns_follow_the_declarations_headline_in_markdown_every_one_in_csv(two_machines):
    board = next(b for b in leaderboard.boards(two_machines, COLUMNS) if b.fingerprint == "hwA")
    assert [c.header for c in board.columns] == ["Size (MB)", "Latency (ms)", "Peak RSS (MiB)", "Energy (mJ/token)"]
    assert "Compression ×" not in leaderboard.headers(board)  # a ratio needs a baseline: not on a leaderboard
    undeclared = [c for c in COLUMNS if c.name != "peak_memory"]
    board = next(b for b in leaderboard.boards(two_machines, undeclared) if b.fingerprint == "hwA")
    assert "peak_memory (MiB)" in next(csv.reader(io.StringIO(leaderboard.to_csv(board))))  # generic: CSV only
    assert "peak_memory (MiB)" not in leaderboard.headers(board)
    assert board.frontiers["memory"].header == "peak_memory (MiB)"  # the plot's axis label


def test_an_empty_set_of_published_runs_compares_yours_alone(two_machines):
    comparisons = compare.compare(two_machines, Results(), COLUMNS)
    assert all(set(c.sources) == {"yours"} for c in comparisons)
    assert "No published run" in compare.to_markdown(comparisons)


@pytest.mark.parametrize("seed", range(4))
def test_the_figures_computed_at_once_are_each_entrys_interval(seed):
    """A board's figures, computed a quantity at a time from the table's columns, are ``Entry.interval``'s from the
    records, and the CSV's bounds ``_bounds``'s: stored bounds (missing, NaN, either side of the value), standard
    errors (missing, NaN, infinite), signed zeros, a scaled unit, no figure, a quantity measured twice (the last
    counts), entries in another order than their rows."""
    rng = random.Random(seed)
    odd = [None, math.nan, math.inf, -math.inf, -0.0, 0.0, 1.5, -2.25]

    def figure() -> float | None:
        return rng.choice([*odd, rng.uniform(-5, 5), rng.uniform(-5, 5)])

    runs, rows = [], []
    for i in range(300):
        runs.append(run_row(f"r{i}", "baseline", {}))
        for _ in range(rng.choice([0, 1, 1, 2, 3]) if i % 7 else 0):
            value = rng.choice([0.0, -0.0, 1.5, math.nan, rng.uniform(-5, 5), rng.uniform(-5, 5)])
            metric = rng.choice(["latency", "latency", "peak_memory"])
            row = measurement(metric, value, "ms", "computation", stderr=figure(), ci_low=figure(), ci_high=figure())
            rows.append(replace(row, run_id=f"r{i}"))
    figures = leaderboard.Figures(to_table(rows, MeasurementRow), [r.run_id for r in runs])
    board = [leaderboard.Entry(r, {}, leaderboard.Resources(figures, i)) for i, r in enumerate(runs)]
    by_records = [leaderboard.entry(r, [m for m in rows if m.run_id == r.run_id], None) for r in runs]
    assert repr([dict(e.resources) for e in board]) == repr([e.resources for e in by_records])  # made when read
    order = rng.sample(range(len(runs)), len(runs))
    for scale in (1.0, 1e-3, 7.3):
        column = Column(Quantity("latency", "ms", "computation", False, scale=scale))
        assert repr([board[i].interval(column) for i in order]) == repr([by_records[i].interval(column) for i in order])
        by_entry = [leaderboard._bounds(by_records[i].interval(column)) for i in order]
        at_once = list(zip(*figures.bounds(column, order), strict=True))
        assert repr(at_once) == repr(by_entry)  # NaN and -0.0 told apart


@pytest.mark.parametrize("seed", range(3))
def test_entries_and_gates_from_the_rows_read_are_the_ones_from_every_measurement(tmp_path, seed):
    """``evaluated_rows`` makes records of the rows entries and gates read only: both are the ones every measurement
    gives, whatever the phases, scenarios, repeated metrics and null tasks or scenarios."""
    rng = random.Random(seed)
    store = two_machine_store(tmp_path / "store")
    for i in range(6):
        rows = [
            measurement(
                rng.choice(["latency", "peak_memory", "exact_match", "acc"]),
                rng.uniform(0, 2),
                "ms",
                rng.choice(["computation", "quality"]),
                rng.choice(["", "", "micro_copy", "micro_text"]),
                stderr=rng.choice([None, 0.1]),
                scenario=rng.choice([None, "", "single-stream", "server"]),
                phase=rng.choice([None, "", "evaluate", "apply"]),
            )
            for _ in range(40)
        ]
        technique, params = ("baseline", {}) if i == 0 else ("dtype", {"dtype": f"t{i}"})
        store.write_run(run_row(f"hwC-{i}", technique, params, "hwC"), rows)
    results = load(store.root)
    for runs in results.hardware().values():
        for scenario in (None, "single-stream", "server"):
            read = leaderboard.evaluated_rows(results.measurement_table([run.run_id for run in runs]), scenario)
            every = {run.run_id: results.measurements_of(run.run_id) for run in runs}
            for run in runs:
                assert leaderboard.entry(run, read.get(run.run_id, []), scenario) == leaderboard.entry(
                    run, every[run.run_id], scenario
                )
            base = next(r for r in runs if r.technique == "baseline")
            assert run_gates(results, read, runs, base) == run_gates(results, every, runs, base)
            tasks = leaderboard.task_rows(results.measurement_table([run.run_id for run in runs]))
            assert run_gates(results, tasks, runs, base) == run_gates(results, every, runs, base)


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract")  # inf ± inf: a branch bounds_of drops
@pytest.mark.parametrize("seed", range(3))
def test_boards_read_from_columns_are_the_ones_from_every_record(tmp_path, seed):
    """``boards`` reads the resource figures as arrays and makes records of the task metrics only: its entries,
    columns, ranks, fronts, gates and tables are the ones made from every measurement's record, whatever the
    figures (missing, NaN, infinite, tied), repeated or undeclared quantities, phases and scenarios."""
    rng = random.Random(seed)
    store = two_machine_store(tmp_path / "store")
    odd = [None, None, math.nan, math.inf, 0.0, 0.5, 0.5]
    for i in range(8):
        rows = [
            measurement(
                rng.choice(["latency", "latency", "peak_memory", "energy_per_token", "custom_thing", "exact_match"]),
                rng.choice([0.0, -0.0, 1.0, 1.0, math.nan, math.inf, rng.uniform(0, 2)]),
                rng.choice(["ms", "", "widgets"]),
                rng.choice(["computation", "memory", "quality"]),
                rng.choice(["", "", "", "micro_copy"]),
                higher_is_better=rng.choice([None, True, False]),
                stderr=rng.choice(odd),
                ci_low=rng.choice(odd),
                ci_high=rng.choice(odd),
                scenario=rng.choice([None, "", "single-stream", "server"]),
                phase=rng.choice([None, "", "evaluate", "apply"]),
            )
            for _ in range(30)
        ]
        technique, params = ("baseline", {}) if i == 0 else ("dtype", {"dtype": f"t{i}"})
        store.write_run(run_row(f"hwC-{i}", technique, params, "hwC"), rows)
    results = load(store.root)
    threads = threading.active_count()
    built = leaderboard.boards(results, COLUMNS)
    assert threading.active_count() == threads  # the samples' indexing beside is over: write() may fork
    for board in built:
        by_records = {
            r.run_id: leaderboard.entry(r, results.measurements_of(r.run_id), board.scenario)
            for r in (e.run for e in board.entries)
        }
        entries = [by_records[e.run.run_id] for e in board.entries]
        ok = [by_records[r.run_id] for r in results.hardware()[board.fingerprint] if r.status == "ok"]
        assert board.columns == leaderboard.measured_columns(ok, COLUMNS)  # as first seen, before ranking
        for e, mine in zip(board.entries, entries, strict=True):
            assert repr((e.quality, dict(e.resources))) == repr((mine.quality, mine.resources))  # NaN: repr
            for column in candidates(COLUMNS, mine.resources.values()):
                assert repr((e.interval(column), e.value(column))) == repr((mine.interval(column), mine.value(column)))
        latency, missing = board.frontiers["latency"], Interval(math.inf, math.inf, math.inf)
        for e in ok:
            e.score = leaderboard.score(e, board.scored)
        ok.sort(key=lambda e: (e.score is None, -(e.score.value if e.score else 0.0), e.value(latency) or math.inf,
                               e.label))  # fmt: skip
        assert [e.run.run_id for e in ok] == [e.run.run_id for e in board.entries]  # NaN keys and all
        negated = [Interval(-e.score.value, -e.score.high, -e.score.low) if e.score else missing for e in ok]
        assert board.ranks == tie_ranks([(s, e.interval(latency) or missing) for s, e in zip(negated, ok, strict=True)])
        for name, column in board.frontiers.items():
            assert repr(board.points[name]) == repr(leaderboard._points(ok, column))
        csv_rows = list(csv.reader(io.StringIO(leaderboard.to_csv(board))))
        figures = [[leaderboard._bounds(e.interval(c)) for c in board.columns] for e in ok]
        header = csv_rows[0].index(board.columns[0].header) if board.columns else 0
        for row, mine in zip(csv_rows[1:], figures, strict=True):
            shown = ["" if v is None else repr(v) for bounds in mine for v in bounds]
            assert row[header : header + len(shown)] == shown
