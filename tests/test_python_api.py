"""The Python API as people use it: a plain script without a main guard, ``python -c``, a Jupyter kernel; the
DataFrames' documented dtypes; escaped HTML; ``load`` of a store, a dataset folder and a Hub dataset."""

import os
import re
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pandas as pd
import pytest

import effbench
from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.publish import hub
from effbench.records import MeasurementRow, RunRecord, SampleRow
from effbench.run.forkserver import WorkerPool
from tests.conftest import QUICK_SCENARIO
from tests.store_helpers import measurements, run_row, samples, synthetic_store
from tests.test_hub import REPO, TOKEN, hub_server  # noqa: F401 - the local Hub fixture

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "python-api.ipynb"
SWEEP = f"""
import effbench

results = effbench.evaluate(
    models=["zoo:micro-s"], techniques=["baseline"], tasks=["micro_copy"], limit=4,
    scenarios=["{QUICK_SCENARIO}"], output="results",
)
print("TYPE", type(results).__name__, "STATUS", results.runs_df.status.tolist(), "FAILED", results.failed)
"""


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get(
                              "PYTHONPATH")]))})  # fmt: skip


@pytest.mark.parametrize("how", [["sweep.py"], ["-m", "sweep"], ["-c", SWEEP]])
def test_evaluate_without_a_main_guard_stores_ok_runs(tmp_path, how):
    """The forkserver's workers must not run the caller's script or module again (it would call evaluate again)."""
    (tmp_path / "sweep.py").write_text(SWEEP)
    done = _python(how, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "TYPE Results STATUS ['ok'] FAILED {}" in done.stdout
    stored = effbench.load(tmp_path / "results")
    assert [(r.status, r.error) for r in stored.runs] == [("ok", None)]
    assert {m.metric for m in stored.measurements} >= {"exact_match", "latency"}


def reports_progress(payload: dict, emit) -> dict:
    """A worker target that announces a phase, as every run does, then finishes."""
    emit("loading model")
    return {"done": payload["n"] + 1}


def test_a_worker_s_progress_without_a_listener_is_not_an_error():
    outcome = WorkerPool(preload=[]).run("tests.test_python_api:reports_progress", {"n": 1}, timeout=120)
    assert (outcome.result, outcome.error) == ({"done": 2}, None)


def test_the_example_notebook_runs_top_to_bottom_in_a_jupyter_kernel(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert "<table>" in html[0] and "prune-magnitude(scope=layer, sparsity=0.5)" in html[0]  # the results cell
    stored = effbench.load(tmp_path / "effbench-results")
    assert sorted(r.technique for r in stored.runs) == ["baseline", "prune-magnitude"]
    assert {r.status for r in stored.runs} == {"ok"}
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "| baseline |" in printed  # the Markdown report


def _documented_dtypes() -> dict[str, str]:
    """README's 'Python API' table: stored Arrow type -> pandas dtype."""
    readme = (ROOT / "README.md").read_text()
    return dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", readme, flags=re.M))


@pytest.mark.parametrize("kind", [RunRecord, MeasurementRow, SampleRow])
def test_dataframes_have_the_documented_dtypes_even_when_empty(tmp_path, kind):
    documented = _documented_dtypes()
    results = effbench.load(synthetic_store(tmp_path / "store").root)
    empty = effbench.Results()
    attribute = f"{kind.table}_df"
    for frame in (getattr(results, attribute), getattr(empty, attribute)):
        assert list(frame.columns) == kind.schema().names
        for name, arrow in zip(kind.schema().names, kind.schema().types, strict=True):
            assert str(frame[name].dtype) == documented[str(arrow)], (name, arrow)
    frame = getattr(results, attribute)
    assert len(frame) == len(results.table(kind))
    if kind is MeasurementRow:  # figures survive as numbers: nulls are NaN / <NA>, not None objects
        latency = frame[(frame.metric == "latency") & (frame.run_id == "hwA-0")]
        assert latency.value.tolist() == [100.0] and latency.n.tolist() == [12]
        assert frame.stderr.isna().any() and frame.n.isna().any()


def test_report_leaderboard_and_compare_escape_stored_text_in_html(tmp_path):
    store = synthetic_store(tmp_path / "store")
    evil = "<img src=x onerror=alert(1)>"
    store.write_run(
        run_row("evil", "prune-magnitude", {"sparsity": 0.3}, model=evil, suite=evil),
        measurements(0.5, 7.0, 90.0, 0.002, 600.0, 4.8),
        samples(0.5, 7.0, shift=1),
    )
    store.write_run(run_row("evil-fail", evil, {}, status="failed", error=evil), [], [])
    results = effbench.load(store.root)
    for html in (results._repr_html_(), results.leaderboard()._repr_html_(), results.compare(results)._repr_html_()):
        assert "<img" not in html and "<table>" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in results._repr_html_()  # the failed run's technique and error
    report = results.report()
    assert "| baseline |" in str(report) and report.frames()[0].columns[0] == "Technique"
    board = str(results.leaderboard())
    assert "\\<img src=x onerror=alert(1)>" in board and "pareto" not in board  # escaped Markdown, no plot links
    assert report.built[0].title.startswith("zoo:micro-m")


def test_load_opens_a_store_a_dataset_folder_and_a_hub_dataset_alike(tmp_path, hub_server):  # noqa: F811
    store = synthetic_store(tmp_path / "store")
    from_store = effbench.load(store.root)
    hub.build(store.root, tmp_path / "dataset")
    from_folder = effbench.load(tmp_path / "dataset")
    hub.publish(store.root, REPO, endpoint=hub_server.url, token=TOKEN)
    from_hub = effbench.load(REPO, endpoint=hub_server.url, token=TOKEN)
    assert from_hub.source == REPO and from_folder.taxonomy and from_hub.taxonomy
    for other in (from_folder, from_hub):
        pd.testing.assert_frame_equal(other.runs_df, from_store.runs_df)
        pd.testing.assert_frame_equal(other.measurements_df, from_store.measurements_df)
        pd.testing.assert_frame_equal(other.samples_df, from_store.samples_df)
    assert [c.title for c in from_store.compare(REPO, endpoint=hub_server.url).built] == [
        c.title for c in from_store.compare(from_hub).built
    ]


def test_bad_input_is_one_line_before_any_work(tmp_path):
    with pytest.raises(EffbenchError, match=r"^.*nowhere: neither a results store or dataset folder nor a Hub"):
        effbench.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EffbenchError, match="no results in"):
        effbench.load(tmp_path / "empty")
    with pytest.raises(EffbenchError, match="modles"):
        effbench.evaluate(modles=["zoo:micro-s"], output=str(tmp_path / "out"))
    with pytest.raises(EffbenchError, match=r"^unknown tracker 'nope'"):
        effbench.evaluate(trackers=["nope"], output=str(tmp_path / "out"))
    with pytest.raises(EffbenchError, match="apply to a suite file"):
        effbench.evaluate(load_suite(None), limit=3)
    assert not (tmp_path / "out").exists()
