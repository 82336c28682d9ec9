"""Tables take their columns from declared quantities: a plugin's quantity reaches every output, and only
evaluate-phase figures are compared (a technique's one-off apply cost gets its own section)."""

import csv
import io

import pytest

from effbench.present import compare, leaderboard, report
from effbench.present.columns import registry_columns
from effbench.publish.card import render
from effbench.store.load import Results, load
from effbench.store.results import ResultsStore
from tests.store_helpers import BUILTIN_LIKE, COLUMNS, DeclaredMetric, measurement, quantity, registry_of, run_row

TOKENS_PER_JOULE = quantity("tokens_per_joule", "token/J", "energy", header="Tokens per joule", digits=1, headline=True)
PLUGIN = DeclaredMetric("repeat", TOKENS_PER_JOULE)
SCENARIO = "single-stream"


def _rows(acc: float, latency: float, peak: float, **extra: float) -> list:
    """A run's measurements: a task score, then load figures of one scenario (``extra``: more quantities, J/token)."""
    rows = [
        measurement("exact_match", acc, "", "quality", "micro_copy"),
        measurement("latency", latency, "ms", "computation", scenario=SCENARIO),
        measurement("peak_memory", peak, "MiB", "memory", scenario=SCENARIO),
    ]
    units = {"tokens_per_joule": "token/J", "energy_per_token": "J/token", "energy_direct_per_token": "J/token"}
    return rows + [measurement(n, v, units.get(n, "widgets"), "energy", scenario=SCENARIO) for n, v in extra.items()]


def _apply_rows(seconds: float, peak: float) -> list:
    """What the apply phase reports: the technique's own time and memory, measured once."""
    return [
        measurement("apply_time", seconds, "s", "computation", phase="apply"),
        measurement("peak_memory", peak, "MiB", "memory", phase="apply"),
    ]


@pytest.fixture
def store(tmp_path) -> ResultsStore:
    """A baseline and a bf16 run on one machine, with the plugin quantity and an apply phase on bf16."""
    store = ResultsStore(tmp_path / "store")
    store.write_run(run_row("a", "baseline", {}), _rows(0.9, 100.0, 600.0, tokens_per_joule=400.0))
    store.write_run(
        run_row("b", "dtype", {"dtype": "bf16"}),
        _rows(0.88, 50.0, 560.0, tokens_per_joule=800.0) + _apply_rows(2.5, 99999.0),
    )
    return store


def _columns() -> list:
    return registry_columns(registry_of(*BUILTIN_LIKE, PLUGIN))


def _part(table: report.ComparisonTable, title: str) -> tuple[list[str], list[list[str]]]:
    """A printed section's headers and cell texts, as the terminal shows them."""
    _, headers, rows = next(part for part in table.parts() if part[0] == title)
    return headers, rows


def test_a_plugin_quantity_reaches_the_printed_table_and_report_md(store, tmp_path):
    (table,) = report.build(load(store.root), ["a", "b"], columns=_columns())
    headers, rows = _part(table, SCENARIO)
    assert "Tokens per joule" in headers
    assert [row[headers.index("Tokens per joule")] for row in rows] == ["400.0", "800.0"]
    markdown = report.write([table], tmp_path / "out")["report.md"].read_text()
    assert "| Technique | Latency (ms) | Speed-up × | Peak RSS (MiB) | Tokens per joule |" in markdown
    without = report.build(load(store.root), ["a", "b"], columns=COLUMNS)[0]  # not installed here: generic column
    assert "tokens_per_joule (token/J)" in _part(without, SCENARIO)[0]


def test_apply_phase_rows_never_replace_evaluate_figures(store):
    (table,) = report.build(load(store.root), ["a", "b"], columns=_columns())
    headers, rows = _part(table, SCENARIO)
    assert [row[headers.index("Peak RSS (MiB)")] for row in rows] == ["600", "560"]  # not 99999
    headers, rows = _part(table, "Apply (one-off)")
    assert headers == ["Technique", "Peak RSS (MiB)", "apply_time (s)"]
    assert rows == [["baseline", "–", "–"], ["dtype(dtype=bf16)", "99999", "2.50"]]
    assert any(note.startswith("apply (one-off): the technique's own cost") for note in table.notes)
    assert "apply: Peak RSS (MiB)" in table.headers  # the long-form header says which phase

    results = load(store.root)
    (board,) = leaderboard.boards(results, _columns())
    peak = next(c for c in board.columns if c.name == "peak_memory")
    assert {e.run.run_id: e.value(peak) for e in board.entries} == {"a": 600.0, "b": 560.0}
    (comparison,) = [c for c in compare.compare(results, Results(), _columns()) if c.title.endswith("bf16)")]
    assert comparison.rows[0][comparison.headers.index("Peak RSS (MiB)")] == "560"


def test_an_apply_phase_peak_never_replaces_a_run_level_one(tmp_path):
    """Rows without a scenario (run-level ones, files before 1.1) sit where apply rows do: still kept apart."""
    store = ResultsStore(tmp_path)
    rows = [
        measurement("exact_match", 0.9, "", "quality", "micro_copy"),
        measurement("peak_memory", 600.0, "MiB", "memory"),
    ]
    store.write_run(run_row("a", "baseline", {}), rows + _apply_rows(1.0, 99999.0))
    (table,) = report.build(load(store.root), columns=COLUMNS)
    assert _part(table, "model") == (["Technique", "Peak RSS (MiB)"], [["baseline", "600"]])
    assert _part(table, "Apply (one-off)")[1] == [["baseline", "99999", "1.00"]]
    (board,) = leaderboard.boards(load(store.root), COLUMNS)
    assert board.entries[0].value(board.frontiers["memory"]) == 600.0


def test_no_apply_section_without_apply_rows(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_run(run_row("a", "baseline", {}), _rows(0.9, 100.0, 600.0))
    (table,) = report.build(load(store.root), columns=COLUMNS)
    assert [title for title, _, _ in table.parts()] == ["accuracy", SCENARIO]
    assert not any("one-off" in note for note in table.notes)


def test_a_plugin_quantity_reaches_the_leaderboard_csv_and_headline_markdown(store, tmp_path):
    results = load(store.root)
    built = leaderboard.boards(results, _columns())
    leaderboard.write(results, built, tmp_path / "boards")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "boards" / "hwA" / "leaderboard.csv").read_text())))
    assert [float(r["Tokens per joule"]) for r in rows] == [400.0, 800.0]
    assert "Tokens per joule" in (tmp_path / "boards" / "hwA" / "leaderboard.md").read_text()  # declared headline
    (comparison,) = [c for c in compare.compare(results, Results(), _columns()) if c.title.endswith("baseline")]
    assert "Tokens per joule" in comparison.headers


def test_a_plugin_quantity_is_described_on_the_dataset_card(store):
    card = render(load(store.root), registry_of(*BUILTIN_LIKE, PLUGIN), "org/name")
    assert "| `tokens_per_joule` | token/J | energy | lower | evaluate | synthetic | tokens_per_joule: a test" in card
    assert "| `peak_memory` | MiB | memory | lower | apply, evaluate | synthetic |" in card
    generic = render(load(store.root), registry_of(*BUILTIN_LIKE), "org/name")
    assert (
        "| `tokens_per_joule` | token/J | energy | lower | evaluate | synthetic | Reported by a metric not" in generic
    )


def test_each_energy_instrument_has_its_column_shown_only_where_measured(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_run(run_row("a", "baseline", {}), _rows(0.9, 100.0, 600.0, energy_per_token=0.002))
    store.write_run(run_row("b", "x", {}), _rows(0.9, 100.0, 600.0, energy_per_token=0.003))
    (table,) = report.build(load(store.root), columns=COLUMNS)
    headers, rows = _part(table, SCENARIO)
    assert "Energy (mJ/token)" in headers and "Energy, counters (mJ/token)" not in headers
    assert [row[headers.index("Energy (mJ/token)")] for row in rows] == ["2.00", "3.00"]
    assert report.SEPARATE_COLUMNS_NOTE in table.notes

    store.write_run(run_row("c", "y", {}), _rows(0.9, 100.0, 600.0, energy_direct_per_token=0.001))
    (table,) = report.build(load(store.root), columns=COLUMNS)
    headers, rows = _part(table, SCENARIO)
    counters, estimate = headers.index("Energy, counters (mJ/token)"), headers.index("Energy (mJ/token)")
    assert [(row[counters], row[estimate]) for row in rows] == [("–", "2.00"), ("–", "3.00"), ("1.00", "–")]


def test_detail_quantities_are_in_the_csv_but_not_the_printed_tables(tmp_path):
    store = ResultsStore(tmp_path)
    rows = [*_rows(0.9, 100.0, 600.0), measurement("latency_p50", 90.0, "ms", "computation", scenario=SCENARIO)]
    store.write_run(run_row("a", "baseline", {}), rows)
    (table,) = report.build(load(store.root), columns=COLUMNS)
    assert "p50 (ms)" not in _part(table, SCENARIO)[0]
    header, values = list(csv.reader(io.StringIO(report.to_csv([table]))))
    assert float(values[header.index(f"{SCENARIO}: p50 (ms)")]) == 90.0


def test_a_small_value_keeps_two_significant_digits(tmp_path):
    store = ResultsStore(tmp_path)
    rows = [measurement("exact_match", 0.9, "", "quality", "micro_copy")]
    rows += [measurement("energy", 1.234e-5, "kWh", "energy", phase="apply")]
    store.write_run(run_row("a", "baseline", {}), rows)
    (table,) = report.build(load(store.root), columns=COLUMNS)
    headers, cells = _part(table, "Apply (one-off)")
    assert cells[0][headers.index("energy (kWh)")] == "0.000012"  # not 0.00
