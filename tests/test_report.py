"""The comparison table's arithmetic: deltas, the 99 % gate, compression and speed-up, failed rows."""

import csv
import io
import math

import numpy as np
import pytest

from effbench.measure import decisions
from effbench.measure.decisions import Interval
from effbench.measure.paired import Paired
from effbench.present import report
from effbench.records import PHASE_EVALUATE, MeasurementRow
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.conftest import run_cli
from tests.store_helpers import COLUMNS, as_written_by, measurement, run_row


def _run(run_id, technique, params=None, **extra):
    return run_row(run_id, technique, params or {}, "hw", **extra)


def _m(metric, value, task="", stderr=None, resource="memory", hib=False, method="", scenario="", **extra):
    return measurement(metric, value, "", resource, task, hib, stderr=stderr, method=method, scenario=scenario, **extra)


def _measurements(acc, ppl, size, latency):
    return [
        _m("acc", acc, "task_a", 0.02, "quality", True),
        _m("acc_norm", acc, "task_a", 0.02, "quality", True),
        _m("word_perplexity", ppl, "task_b", None, "quality", False),
        _m("weight_bytes", size),
        _m("latency", latency, stderr=1.0, resource="computation", method="wall clock", scenario="single-stream"),
    ]


def _store(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_run(_run("a", "baseline"), _measurements(0.80, 5.0, 4.0, 100.0))
    store.write_run(_run("b", "dtype", {"dtype": "bf16"}), _measurements(0.795, 5.04, 2.0, 50.0))
    store.write_run(_run("c", "prune-magnitude", {"sparsity": 0.9}), _measurements(0.70, 5.0, 4.0, 100.0))
    store.write_run(_run("d", "broken", status="failed", error="RuntimeError: boom"), [])
    return store


def _build(store: ResultsStore, run_ids=None, **kwargs) -> list[report.ComparisonTable]:
    return report.build(load(store.root), run_ids, columns=COLUMNS, **kwargs)


def test_deltas_gate_compression_and_speedup(tmp_path):
    (table,) = _build(_store(tmp_path), ["a", "b", "c", "d"])
    col = {h: i for i, h in enumerate(table.headers)}
    assert table.headers[1:3] == ["task_a acc", "Δ task_a"]  # the first metric lm-eval reported is primary
    base, bf16, pruned, broken = table.rows
    assert bf16[col["Technique"]].text == "dtype(dtype=bf16)"
    assert bf16[col["Δ task_a"]].value == pytest.approx(-0.005)
    # task_b's perplexity has no interval (no stderr, no documents): no gate can be decided, unless another task fails
    assert [bf16[col[f"{g} gate"]].text for g in ("99%", "99.9%")] == ["–", "–"]
    assert [pruned[col[f"{g} gate"]].text for g in ("99%", "99.9%")] == ["fail", "fail"]  # 0.875 ± 0.03 of 0.80
    assert base[col["99% gate"]].text == "–"
    assert bf16[col["Compression ×"]].value == 2.0 and bf16[col["single-stream: Speed-up ×"]].value == 2.0
    assert base[col["Compression ×"]].value == 1.0
    assert bf16[col["task_a acc"]].text == "0.795 ± 0.020"
    assert broken[col["Status"]].text == "failed: RuntimeError: boom"
    assert broken[col["task_a acc"]].text == "–"
    assert "latency: wall clock" in table.notes


def _gated(acc, ppl, ppl_stderr=0.01):
    return [_m("acc", acc, "task_a", 0.0, "quality", True), _m("word_perplexity", ppl, "task_b", ppl_stderr, "quality")]


@pytest.mark.parametrize(
    ("ppl", "stderr", "gates"),
    [
        (5.2, 0.01, ["fail", "fail"]),  # keeps 5.0 / 5.2 = 0.96 of the baseline, well below 0.99
        (5.0, 0.0, ["pass", "pass"]),  # exactly the baseline's
        (5.03, 0.001, ["pass", "fail"]),  # kept 0.9940 [0.9935, 0.9946]: above 0.99, below 0.999
        (5.02, 0.01, ["pass", "inconclusive"]),  # kept 0.9960 [0.9905, 1.0016]: above 0.99, straddles 0.999
        (5.06, 0.01, ["inconclusive", "fail"]),  # kept 0.9881 [0.9827, 0.9936]: straddles 0.99, below 0.999
        (5.05, 0.03, ["inconclusive", "inconclusive"]),  # kept 0.9901 [0.9740, 1.0068] straddles both
    ],
)
def test_gates_are_lower_is_better_for_perplexity_and_three_valued(tmp_path, ppl, stderr, gates):
    store = ResultsStore(tmp_path)
    store.write_run(_run("a", "baseline"), _gated(0.8, 5.0, stderr))
    store.write_run(_run("b", "x"), _gated(0.8, ppl, stderr))
    (table,) = _build(store, ["a", "b"])
    assert [table.rows[1][table.headers.index(f"{g} gate")].text for g in ("99%", "99.9%")] == gates
    assert any("MLPerf" in note for note in table.notes)


def test_runs_without_a_baseline_show_each_tasks_first_metric_and_no_change(tmp_path):
    (table,) = _build(_store(tmp_path), ["b", "c"])
    assert table.headers[:5] == ["Technique", "task_a acc", "Δ task_a", "task_b word_perplexity", "Δ task_b"]
    assert [[cell.text for cell in row[1:7]] for row in table.rows] == [
        ["0.795 ± 0.020", "–", "5.040", "–", "–", "–"],
        ["0.700 ± 0.020", "–", "5.000", "–", "–", "–"],
    ]


def test_the_baseline_has_no_gate_against_itself(tmp_path):
    """Every task with an interval: the baseline's row still shows no gate (it keeps all of itself), as on boards."""
    store = ResultsStore(tmp_path)
    store.write_run(_run("a", "baseline"), _gated(0.8, 5.0))
    store.write_run(_run("b", "x"), _gated(0.8, 5.2))
    (table,) = _build(store, ["a", "b"])
    gates = [[row[table.headers.index(f"{g} gate")].text for g in ("99%", "99.9%")] for row in table.rows]
    assert gates == [["–", "–"], ["fail", "fail"]]


def _kept_share_alone(m, b, pair, higher_is_better) -> tuple | None:
    """The rule for one run, with the scalar intervals: the paired bootstrap's ratio bounds, else both figures'."""
    if m is None or b is None or b.value <= 0:
        return None
    if pair is not None and pair.ratio_low is not None and pair.ratio_high is not None:
        change = Interval(m.value / b.value, pair.ratio_low, pair.ratio_high)
    elif not (report._uncertain(m) and report._uncertain(b)):
        return None
    else:
        change = _delta_ratio(report.interval(m), report.interval(b))
    if change is None or (not higher_is_better and change.value <= 0):
        return None
    if higher_is_better:
        return (change.value, change.low, change.high)
    return (1 / change.value, 1 / change.high, 1 / change.low if change.low > 0 else math.inf)  # bounds swapped


@pytest.mark.parametrize("higher_is_better", [True, False])
def test_kept_shares_of_every_run_at_once_are_each_runs_alone(higher_is_better):
    """Missing figures, none or NaN standard errors, stored bounds, negative figures, paired ratio bounds or none,
    and baselines without an interval or not positive: the same shares, bit for bit."""
    rng = np.random.default_rng(5)

    def figure(value: float) -> MeasurementRow | None:
        if rng.random() < 0.1:
            return None
        kind = rng.integers(0, 4)
        stderr = [None, float(rng.uniform(0, 0.05)), math.nan, None][kind]
        bounds = (value - float(rng.uniform(0, 0.1)), value + float(rng.uniform(0, 0.1))) if kind == 3 else (None,) * 2
        return _m("acc", value, "t", stderr, "quality", higher_is_better, ci_low=bounds[0], ci_high=bounds[1])

    def pair() -> Paired | None:
        if rng.random() < 0.5:
            return None
        low = None if rng.random() < 0.2 else float(rng.uniform(0.5, 1.0))
        return Paired(50, 0.0, -0.1, 0.1, low, float(rng.uniform(1.0, 1.5)))

    base = _m("acc", 0.8, "t", 0.02, "quality", higher_is_better)
    nobody = report.kept_shares(report.KeyFigures.of_rows([]), base, [], higher_is_better)
    assert [len(a) for a in nobody] == [0] * 4  # a baseline alone: no run to compare
    for base_value in (0.8, 0.0, -0.2):
        for _ in range(20):
            base = figure(base_value)
            found = [figure(float(rng.choice([rng.uniform(-0.1, 1.0), 0.0]))) for _ in range(40)]
            pairs = [pair() for _ in found]
            defined, *shares = report.kept_shares(report.KeyFigures.of_rows(found), base, pairs, higher_is_better)
            at_once = [tuple(float(s[i]) for s in shares) if defined[i] else None for i in range(len(found))]
            alone = [_kept_share_alone(m, base, p, higher_is_better) for m, p in zip(found, pairs, strict=True)]
            assert repr(at_once) == repr(alone)


def test_every_format_is_written(tmp_path):
    tables = _build(_store(tmp_path / "store"))
    paths = report.write(tables, tmp_path / "out")
    markdown = paths["report.md"].read_text()
    assert "| dtype(dtype=bf16) | 0.795 ± 0.020 | -0.005 |" in markdown
    latex = paths["report.tex"].read_text()
    assert r"\toprule" in latex and r"0.795 $\pm$ 0.020" in latex and r"task\_a" in latex
    rows = list(csv.reader(io.StringIO(paths["report.csv"].read_text())))
    header = rows[0]
    bf16 = next(r for r in rows if r[1] == "dtype(dtype=bf16)")
    assert float(bf16[header.index("task_a acc")]) == 0.795
    assert float(bf16[header.index("task_a acc stderr")]) == 0.02
    assert rows[1][1] == "baseline"  # without a run order, the baseline leads
    every = list(csv.DictReader(io.StringIO(paths["report-measurements.csv"].read_text())))
    assert len(every) == 5 * 3  # every measurement of the three successful runs, shown in a column or not
    norm = next(r for r in every if r["technique"] == "dtype(dtype=bf16)" and r["metric"] == "acc_norm")
    assert (norm["task"], float(norm["value"]), float(norm["stderr"])) == ("task_a", 0.795, 0.02)
    assert next(r for r in every if r["metric"] == "latency")["method"] == "wall clock"


def test_sections_uncertainty_and_unstable_flag(tmp_path):
    store = ResultsStore(tmp_path)
    steady = {"ci_low": 9.0, "ci_high": 11.0, "cv": 0.02}
    shaky = {"ci_low": 5.0, "ci_high": 15.0, "cv": 0.30}
    for run_id, technique, extra in (("a", "baseline", steady), ("b", "x", shaky)):
        rows = [_m("acc", 0.8, "t", 0.01, "quality", True)]
        rows += [_m("latency", 10.0, stderr=0.5, resource="computation", scenario=s, **extra) for s in ("one", "two")]
        store.write_run(_run(run_id, technique), rows)
    (table,) = _build(store, ["a", "b"], unstable_cv=0.10)
    assert [title for title, _, _ in table.parts()] == ["accuracy", "one", "two"]  # nothing model-level: no section
    latency = table.headers.index("two: Latency (ms)")
    assert table.rows[0][latency].text == "10.0 ± 1.0"  # half the 95 % interval, not the stderr
    assert table.rows[1][latency].text == "10.0 ± 5.0 †"
    speedup = table.headers.index("two: Speed-up ×")
    assert table.rows[1][speedup].text == "1.00 † n.s."  # against an unstable figure, a ratio is unstable too
    assert any(note.startswith("† unstable") and "10%" in note for note in table.notes)
    (lenient,) = _build(store, ["a", "b"], unstable_cv=0.5)
    assert "†" not in lenient.rows[1][latency].text
    assert r"$^\dagger$" in report.to_latex(table)
    rows = list(csv.reader(io.StringIO(report.to_csv([table]))))
    assert float(rows[2][rows[0].index("two: Latency (ms) cv")]) == 0.30


@pytest.mark.parametrize("threshold", ["0", "-0.1", "ten"])
def test_report_refuses_a_threshold_that_is_not_positive(threshold, tmp_path):
    result = run_cli("report", "--results", str(tmp_path), "--unstable-cv", threshold)
    assert result.returncode == 2 and f"--unstable-cv: must be a number above 0, got {threshold}" in result.stderr


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_a_store_of_an_earlier_schema_still_reports(tmp_path, version):
    store = _store(tmp_path)
    as_written_by(store, version)
    (table,) = _build(store, ["a", "b", "c", "d"])
    col = {h: i for i, h in enumerate(table.headers)}
    assert [row[0].text for row in table.rows][:3] == ["baseline", "dtype(dtype=bf16)", "prune-magnitude(sparsity=0.9)"]
    assert table.rows[1][col["Compression ×"]].value == 2.0 and table.rows[2][col["99% gate"]].text == "fail"
    latency = "single-stream: Latency (ms)" if version == "1.1" else "Latency (ms)"  # 1.0 had no scenarios
    assert [row[col[latency]].text for row in table.rows] == ["100.0 ± 1.0", "50.0 ± 1.0", "100.0 ± 1.0", "–"]
    cli = run_cli("report", "--results", str(tmp_path))
    assert cli.returncode == 0, cli.stderr
    assert "dtype(dtype=bf16)" in cli.stdout and (tmp_path / "report.md").is_file()


def _cell_at_a_time(m, column, unstable_cv, printed):
    """A figure's cell from its record, as the report made each before its cells were computed a column at a time."""
    if m is None:
        return report.Cell(text="–")
    low, high, stderr = column.shown(m.ci_low), column.shown(m.ci_high), column.shown(m.stderr)
    spread = (high - low) / 2 if low is not None and high is not None else stderr
    flagged = (m.cv or 0) > unstable_cv
    value = column.shown(m.value)
    text = column.format(value, spread) + f" {report.UNSTABLE_MARK}" * flagged if printed else ""
    return report.Cell(value, stderr, text, low, high, m.cv, flagged)


@pytest.mark.parametrize("printed", [True, False])
def test_resource_cells_a_column_at_a_time_equal_a_cell_at_a_time(printed):
    """RunFigures' cells equal the per-record arithmetic on figures with None, NaN, inf, -0.0 and tiny values, runs
    without the figure, a figure stored twice (the last counts), and rows that are no cell (a task's, a step's)."""
    from effbench.api.metric import Quantity
    from effbench.present.columns import Column
    from effbench.store.results import to_table

    rng = np.random.default_rng(7)
    odd = [None, math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-9, -3e-7, 123.456, 0.004]

    def number():
        return odd[rng.integers(len(odd))] if rng.random() < 0.4 else float(rng.normal(0, 10) ** 3)

    column = Column(Quantity("latency", "ms", "computation", False, scale=1e3, digits=1))
    section = report.Section("server", scenario="server")
    runs, counts = [], []
    for run in range(300):
        rows = []
        for _ in range(rng.integers(0, 4)):  # none, one or more of the figure
            extra = {"stderr": number(), "ci_low": number(), "ci_high": number(), "cv": number()}
            value = odd[rng.integers(1, len(odd))] if rng.random() < 0.3 else float(rng.normal(5, 5))
            rows.append(_m("latency", value, scenario="server", run_id=f"r{run}", **extra))
        rows.insert(rng.integers(len(rows) + 1), _m("latency", 1.0, scenario="server", run_id=f"r{run}", step=3))
        rows.insert(rng.integers(len(rows) + 1), _m("latency", 2.0, "task_a", scenario="server", run_id=f"r{run}"))
        rows.append(_m("latency", 3.0, scenario="offline", run_id=f"r{run}"))
        runs.append(rows)
        counts.append(len(rows))
    values = [{report._key(m): m for m in rows if m.step is None} for rows in runs]
    figures = report.RunFigures.of(to_table([m for rows in runs for m in rows], MeasurementRow), counts)
    made = report._resource_cells(section, column, {}, None, figures, 0.1, printed)
    cells = [made.cell(i) for i in range(len(values))]
    key = (PHASE_EVALUATE, "server", "", "latency")
    expected = [_cell_at_a_time(v.get(key), column, 0.1, printed) for v in values]
    assert list(map(repr, cells)) == list(map(repr, expected))  # repr: NaN equals NaN, -0.0 differs from 0.0
    assert figures.metrics(PHASE_EVALUATE, "server") == {"latency"}
    ratio = Column(Quantity("latency", "ms", "computation", False, ratio_header="Speed-up ×"), ratio=True)
    for base_index in [i for i, v in enumerate(values) if key in v][:3]:  # its last row a step's or not
        base = {report._key(m): m for m in runs[base_index]}  # as the table keys the baseline's records: steps too
        made = report._resource_cells(section, ratio, base, base_index, figures, 0.1, printed)
        expected = [_ratio_at_a_time(v.get(key), base.get(key), ratio, 0.1, printed) for v in values]
        assert list(map(repr, (made.cell(i) for i in range(len(values))))) == list(map(repr, expected))


def _delta_ratio(numerator: Interval, denominator: Interval) -> Interval | None:
    """numerator ÷ denominator with a delta-method 95 % interval, one figure at a time."""
    if numerator.value < 0 or denominator.value <= 0:
        return None
    value = numerator.value / denominator.value
    spreads = [(i.high - i.low) / (2 * decisions.Z95) for i in (numerator, denominator)]
    se = math.hypot(spreads[0] / denominator.value, value * spreads[1] / denominator.value)
    return Interval(value, max(0.0, value - decisions.Z95 * se), value + decisions.Z95 * se)


def _ratio_at_a_time(m, b, column, unstable_cv, printed):
    """A ratio cell from the records, as the report made each before it read the runs' figures as columns."""
    if m is None or b is None or not b.value or not m.value:
        return report.Cell(text="–")
    value = b.value / m.value
    flagged = report._unstable(m, unstable_cv) or report._unstable(b, unstable_cv)
    change = _delta_ratio(report.interval(b), report.interval(m))
    quiet = m is not b and change is not None and change.low <= 1.0 <= change.high
    marks = f" {report.UNSTABLE_MARK}" * flagged + f" {report.NOT_SIGNIFICANT_MARK}" * quiet
    text = column.format(value) + marks if printed else ""
    low, high = (change.low, change.high) if change else (None, None)
    return report.Cell(value, None, text, low, high, unstable=flagged)


def test_sections_metrics_and_notes_a_column_at_a_time_equal_a_pass_over_the_records():
    """RunFigures.first_rows gives each section the candidate columns a pass over its records gives, and the notes
    read the table's phases and methods as the records say them: null and empty phases, tasks and methods, training
    steps, undeclared metrics first seen in any order."""
    from effbench.store.results import to_table

    rng = np.random.default_rng(3)
    phases, scenarios = [None, "", PHASE_EVALUATE, "generate", "apply", "train"], [None, "", "server", "offline"]
    runs, counts = [], []
    for run in range(40):
        rows = []
        for _ in range(rng.integers(0, 30)):
            extra = {
                "phase": phases[rng.integers(len(phases))],
                "scenario": scenarios[rng.integers(len(scenarios))],
                "method": [None, "", "a", "b"][rng.integers(4)],
                "step": None if rng.random() < 0.7 else int(rng.integers(3)),
                "resource": ["memory", "energy"][rng.integers(2)],
            }
            task = [None, "", "task_a"][rng.integers(3)]
            rows.append(_m(f"m{rng.integers(8)}", 1.0, task, run_id=f"r{run}", **extra))
        runs.append(rows)
        counts.append(len(rows))
    every = [m for rows in runs for m in rows]
    measured = to_table(every, MeasurementRow)
    figures = report.RunFigures.of(measured, counts)
    scenarios, sections = report._sections(figures)
    under_load = [m.in_scenario for m in every if m.in_phase == PHASE_EVALUATE and m.in_scenario]
    assert scenarios == list(dict.fromkeys(under_load))  # as first measured
    one_off = list(dict.fromkeys(m.in_phase for m in every if m.in_phase not in (PHASE_EVALUATE, "generate")))
    assert [section.phase for section in sections if section.one_off] == one_off
    for section in sections:
        phase, scenario = section.key
        held = [m for m in every if m.task == "" and m.in_phase == phase]
        held = [m for m in held if phase != PHASE_EVALUATE or m.in_scenario == scenario]
        assert section.columns([], [every[i] for i in figures.first_rows(section)]) == section.columns([], held)
    methods: dict[str, str] = {}
    for m in every:
        if m.method and not m.task:
            methods.setdefault(m.metric, m.method)
    by_method: dict[str, list[str]] = {}
    for metric, how in sorted(methods.items()):
        by_method.setdefault(how, []).append(metric)
    notes = report._notes("here", measured, figures, False, 0.1)
    assert notes[3:] == [
        *([report.GENERATION_NOTE] if any(m.in_phase == "generate" for m in every) else []),
        *(n for n in notes if "(one-off)" in n),
        *(f"{', '.join(metrics)}: {how}" for how, metrics in by_method.items()),
    ]
    assert [n.split(" ")[0] for n in notes if "(one-off)" in n] == sorted(
        {m.in_phase for m in every} - {PHASE_EVALUATE, "generate"}
    )


def test_a_baseline_without_task_metrics_still_decides_the_accuracy_columns(tmp_path):
    """The accuracy columns are the baseline's tasks whenever it measured anything, even figures the table reads
    as columns only (no record of them is made): none here, though another run has some."""
    store = ResultsStore(tmp_path)
    store.write_run(_run("a", "baseline"), [_m("weight_bytes", 4.0), _m("peak_memory", 3.0)])
    store.write_run(_run("b", "dtype", {"dtype": "bf16"}), _measurements(0.795, 5.04, 2.0, 50.0))
    (table,) = _build(store, ["a", "b"])
    assert not [h for h in table.headers if h.startswith("task_")] and "Compression ×" in table.headers
    store.write_run(_run("a", "baseline"), [])  # no measurement at all: the other runs' tasks
    (table,) = _build(store, ["a", "b"])
    assert table.headers[1:3] == ["task_a acc", "Δ task_a"]


@pytest.mark.parametrize("ratio", [False, True])
@pytest.mark.parametrize("digits", [0, 1, 3])
def test_a_column_formatted_at_once_equals_each_value_formatted_alone(ratio, digits):
    """Column.format_each gives ``format``'s text for NaN, infinities, signed zeros, small values that keep two
    significant digits, and spreads that are missing, zero or NaN."""
    from effbench.api.metric import Quantity
    from effbench.present.columns import Column, fmt, fmt_each

    column = Column(Quantity("latency", "ms", "computation", False, digits=digits), ratio=ratio)
    values = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e-20, -3e-7, 0.004, 0.04, 0.4999, 0.5, 12.345, -7.5, 1e300]
    spreads = [None, 0.0, math.nan, 1.5, 1e-9]
    pairs = [(v, s) for v in values for s in spreads]
    shown = column.format_each([v for v, _ in pairs], [s for _, s in pairs])
    assert shown == [column.format(v, s) for v, s in pairs]
    for sign in (False, True):  # fmt_each, what it builds on (the accuracy and Δ columns use it directly)
        each = fmt_each([v for v, _ in pairs], digits, [s for _, s in pairs], sign)
        assert each == [fmt(v, digits, s, sign) for v, s in pairs]
        assert fmt_each([*values, None], digits, sign=sign) == [fmt(v, digits, sign=sign) for v in [*values, None]]
