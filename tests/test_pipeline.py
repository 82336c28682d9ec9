"""The run's seams: windows that hold their own state, the apply phase measured, stacks, executors."""

from __future__ import annotations

import hashlib
import json
import mmap
import sys
from pathlib import Path

import psutil
import pytest

from effbench import network
from effbench.api.context import Measurement, RunContext
from effbench.api.metric import Metric
from effbench.api.probe import Probe
from effbench.api.technique import Technique
from effbench.config.suite import load_suite
from effbench.default_plugins.executors import ForkserverExecutor, InlineExecutor
from effbench.default_plugins.metrics.system import NetworkBytes, PeakMemory
from effbench.errors import EffbenchError
from effbench.hookspecs import hookimpl
from effbench.measure.windows import Instruments
from effbench.records import MeasurementRow, RunRecord
from effbench.run.sweep import run_suite
from effbench.store.load import load
from effbench.testing import registered

TINY = {
    "tasks": ["micro_copy"],
    "limit": 3,
    "bootstrap_iters": 0,
    "scenarios": ["single-stream:repeats=2,min_requests=2,output_tokens=3,prompt_tokens=8,warmup=0"],
}
TINY_SCENARIO = "single-stream"


def _ctx() -> RunContext:
    return RunContext(model=None, tokenizer=None, technique="baseline", params={})


def _value(reported, metric: str) -> float:
    return next(m.value for m in reported if m.metric == metric)


def test_one_network_instrument_measures_two_overlapping_windows_independently():
    metric, ctx = NetworkBytes(), _ctx()
    outer = metric.open(ctx)
    network.record(sent=1000)
    inner = metric.open(ctx)
    network.record(sent=500, received=200)
    inner_reported = inner.close(ctx)
    network.record(sent=250)
    outer_reported = outer.close(ctx)
    assert _value(inner_reported, "network_sent_recorded") == pytest.approx(0.5)
    assert _value(inner_reported, "network_received_recorded") == pytest.approx(0.2)
    assert _value(outer_reported, "network_sent_recorded") == pytest.approx(1.75)


def _touched(mib: int) -> mmap.mmap:
    """``mib`` MiB of fresh anonymous pages, every one written: RSS grows by that much, whatever the heap holds free
    (a ``bytes`` object may reuse freed heap memory that is resident already)."""
    block = mmap.mmap(-1, mib * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    return block


def test_peak_memory_of_a_window_is_not_hidden_by_a_window_opened_inside_it():
    metric, ctx = PeakMemory(), _ctx()
    start = psutil.Process().memory_info().rss / 2**20
    outer = metric.open(ctx)
    _touched(300).close()
    inner = metric.open(ctx)  # resets the kernel's high-water mark: the outer peak must survive it
    _touched(20).close()
    inner_reported, outer_reported = inner.close(ctx), outer.close(ctx)
    inner_peak, outer_peak = _value(inner_reported, "peak_memory"), _value(outer_reported, "peak_memory")
    assert outer_peak >= start + 290
    assert inner_peak < outer_peak - 200
    assert _value(outer_reported, "peak_memory_increase") == pytest.approx(outer_peak - start, abs=15)
    assert 19 <= _value(inner_reported, "peak_memory_increase") < 60  # its own 20 MiB, not the outer 300


def test_the_rise_leaves_out_what_the_process_held_before_the_window():
    metric, ctx = PeakMemory(), _ctx()
    held = _touched(200)  # held before and through the window: part of its peak, not of its rise
    window = metric.open(ctx)
    _touched(40).close()
    reported = window.close(ctx)
    held.close()
    assert _value(reported, "peak_memory") >= 240 and 39 <= _value(reported, "peak_memory_increase") < 80


class OldStyleMetric(Metric):
    """A metric written against the start/stop API, keeping its state on self."""

    name = "old_style_calls"
    unit = "count"
    resource = "computation"
    higher_is_better = False

    def start(self, run):
        self.started = True

    def stop(self, run):
        return 7.0 if self.started else None


def test_a_start_stop_metric_still_works_through_windows_and_gets_the_phase():
    instruments = Instruments([OldStyleMetric()])
    ctx = _ctx()
    ctx.phase = "apply"
    assert instruments.open(instruments.for_phase("apply"), ctx) == []  # not opted into the apply phase
    opened = instruments.open(instruments.by_scope["repeat"], ctx)
    [reported] = instruments.close(opened, ctx)
    assert (reported.metric, reported.value, reported.phase) == ("old_style_calls", 7.0, "apply")
    assert instruments.warnings == []


def test_a_metric_reporting_an_undeclared_quantity_is_warned_about():
    class Sloppy(OldStyleMetric):
        name = "sloppy"

        def stop(self, run):
            return [self.measurement(1.0), Measurement("surprise", 2.0, "", "memory", False)]

    instruments = Instruments([Sloppy()])
    instruments.close(instruments.open([*instruments.by_scope["repeat"]], _ctx()), _ctx())
    assert any("'surprise'" in w for w in instruments.warnings)


def test_stack_syntax_and_its_refusals():
    suite = load_suite(None, techniques=["prune-magnitude:sparsity=0.5+dynamic-int8", {"stack": ["prune-nm", "dtype"]}])
    assert [t.label for t in suite.techniques] == [
        "baseline",
        "prune-magnitude(sparsity=0.5) + dynamic-int8",
        "prune-nm + dtype",
    ]
    with pytest.raises(EffbenchError, match="'baseline' is the unmodified model"):
        load_suite(None, techniques=["baseline+dynamic-int8"])
    with pytest.raises(EffbenchError, match="appears twice"):
        load_suite(None, techniques=["dtype+dtype:dtype=fp16"])


@pytest.fixture(scope="module")
def inline_store(tmp_path_factory):
    """The baseline and a prune-then-quantize stack, run in this process."""
    output = tmp_path_factory.mktemp("inline")
    suite = load_suite(None, techniques=["prune-magnitude:sparsity=0.5+dynamic-int8"], output=str(output), **TINY)
    result = run_suite(suite, executor=InlineExecutor())
    assert result.failed == {}
    return output


def _rows(store: Path) -> tuple[dict[str, RunRecord], dict[str, list[MeasurementRow]]]:
    results = load(store)
    runs = {run.technique: run for run in results.runs}
    return runs, {name: results.measurements_of(run.run_id) for name, run in runs.items()}


def test_the_apply_phase_has_time_peak_memory_and_energy_rows(inline_store):
    store = inline_store
    _, rows = _rows(store)
    for technique, measured in rows.items():
        apply_rows = {m.metric: m for m in measured if m.phase == "apply"}
        assert {"apply_time", "peak_memory", "energy", "co2", "background_cpu"} <= set(apply_rows), technique
        assert 0 <= apply_rows["background_cpu"].value <= 100
        assert apply_rows["peak_memory"].value > 0 and apply_rows["apply_time"].value >= 0
        assert not {"latency", "throughput"} & set(apply_rows)  # load figures belong to the evaluate phase


def test_a_stack_applies_every_technique_and_is_labelled_as_one(inline_store):
    store = inline_store
    runs, rows = _rows(store)
    stacked = runs["prune-magnitude+dynamic-int8"]
    assert stacked.label == "prune-magnitude(scope=layer, sparsity=0.5) + dynamic-int8"
    assert [e.name for e in stacked.stack_entries()] == ["prune-magnitude", "dynamic-int8"]
    assert json.loads(stacked.technique_params) == {
        "prune-magnitude": {"scope": "layer", "sparsity": 0.5},
        "dynamic-int8": {},
    }

    def figure(technique: str, metric: str) -> float:
        return next(m.value for m in rows[technique] if m.metric == metric and m.phase == "evaluate")

    # pruning acted (half the weights zero) and quantization acted (int8 weights: about a quarter of the bytes)
    ratio_nonzero = figure("prune-magnitude+dynamic-int8", "parameters_nonzero") / figure(
        "baseline", "parameters_nonzero"
    )
    ratio_bytes = figure("prune-magnitude+dynamic-int8", "weight_bytes") / figure("baseline", "weight_bytes")
    assert 0.45 < ratio_nonzero < 0.6
    assert ratio_bytes < 0.4


def test_a_single_technique_keeps_the_run_id_it_had_before_stacks(inline_store):
    """Stores written before stacks resume: the identity of a one-technique run is unchanged."""
    store = inline_store
    runs, _ = _rows(store)
    baseline = runs["baseline"]
    identity = {
        "model": "zoo:micro-m",
        "revision": None,
        "technique": "baseline",
        "params": {},
        "tasks": ["micro_copy"],
        "settings": json.loads(baseline.settings),
        "hardware": baseline.hardware_fingerprint,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert baseline.run_id == digest


def test_inline_and_forkserver_executors_give_the_same_measurement_names(inline_store, tmp_path):
    inline = inline_store
    suite = load_suite(None, techniques=["prune-magnitude:sparsity=0.5+dynamic-int8"], output=str(tmp_path), **TINY)
    executor = ForkserverExecutor()
    result = run_suite(suite, executor=executor)
    assert result.failed == {}

    def names(store: Path) -> set[tuple[str, str, str, str]]:
        results = load(store)
        return {(results.run(m.run_id).technique, m.metric, m.phase, m.scenario) for m in results.measurements}

    assert names(tmp_path) == names(inline)


TASK_YAML = """
task: plugin_parity
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list:
  - metric: acc
"""


class CountingMetric(Metric):
    """Written against the start/stop API of effbench 0.1: state on self, a number from stop."""

    name = "old_plugin_generate_calls"
    unit = "count"
    resource = "computation"
    higher_is_better = False

    def start(self, run):
        self.before = len(run.requests)

    def stop(self, run):
        return float(len(run.requests) - self.before)


class RoomProbe(Probe):
    name = "room"

    def collect(self):
        return {"room": "lab 3"}


class OldPlugin:
    """A technique, a start/stop metric, a probe and a task folder, as a plugin of effbench 0.1 registers them."""

    def __init__(self, task_dir: Path) -> None:
        self.task_dir = task_dir

    @hookimpl
    def register_techniques(self, register):
        from effbench_example import DropLastLayers

        register(DropLastLayers())

    @hookimpl
    def register_metrics(self, register):
        register(CountingMetric())

    @hookimpl
    def register_probes(self, register):
        register(RoomProbe())

    @hookimpl
    def register_tasks(self, register):
        register(self.task_dir)


def test_a_plugin_written_for_the_old_api_loads_and_runs_unchanged(tmp_path):
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "parity.jsonl"
    docs = [{"question": f"is {n} even ?", "choices": ["yes", "no"], "answer": n % 2} for n in range(6)]
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tasks / "parity.yaml").write_text(TASK_YAML.format(data=data))
    out = tmp_path / "results"
    with registered(OldPlugin(tasks), load_entry_points=False) as reg:
        assert reg.errors == []
        suite = load_suite(
            None,
            techniques=["example-drop-last-layers:layers=1"],
            output=str(out),
            **{**TINY, "tasks": ["plugin_parity"]},
        )
        assert run_suite(suite, executor=InlineExecutor()).failed == {}
    results = load(out)
    for run in results.runs:
        rows = {(m.metric, m.scenario, m.task) for m in results.measurements_of(run.run_id)}
        assert ("old_plugin_generate_calls", TINY_SCENARIO, "") in rows  # the old metric measured every repeat
        assert ("acc", "", "plugin_parity") in rows  # the plugin's task was evaluated
        assert json.loads(run.hardware)["room"] == {"room": "lab 3"}  # the plugin's probe is stored
    per_run = {r.technique: r for r in results.runs}
    calls = [m for m in results.measurements_of(per_run["baseline"].run_id) if m.metric == "old_plugin_generate_calls"]
    assert calls[0].value == 2.0 and calls[0].n == 2  # two requests per repeat, two repeats combined


LIBRARY = "effbench_test_declared_library"  # a module nothing else imports


class DeclaresItsLibrary(Technique):
    """Imports a library inside ``apply``, and declares it."""

    name = "declares-library"
    stage = "inference"
    resources = ("memory",)
    imports = (LIBRARY,)

    def apply(self, model, tokenizer):
        __import__(LIBRARY)
        return model


class SeesTheModules(Metric):
    """Notes, as each apply window opens, whether the library is loaded already."""

    name = "library_loaded_at_open"
    unit = "count"
    resource = "memory"
    higher_is_better = False
    phases = ("apply",)

    def __init__(self, seen: list[bool]) -> None:
        self.seen = seen

    def start(self, run):
        if run.phase == "apply":  # not the evaluate repeats it also measures
            self.seen.append(LIBRARY in sys.modules)

    def stop(self, run):
        return None


class LibraryPlugin:
    def __init__(self, seen: list[bool]) -> None:
        self.seen = seen

    @hookimpl
    def register_techniques(self, register):
        register(DeclaresItsLibrary())

    @hookimpl
    def register_metrics(self, register):
        register(SeesTheModules(self.seen))


def test_a_techniques_declared_library_is_imported_before_its_apply_window_opens(tmp_path, monkeypatch):
    (tmp_path / f"{LIBRARY}.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        seen: list[bool] = []
        with registered(LibraryPlugin(seen)):
            suite = load_suite(None, techniques=["declares-library"], output=str(tmp_path / "out"), **TINY)
            assert run_suite(suite, executor=InlineExecutor()).failed == {}
        assert seen == [False, True]  # the baseline's window: not loaded; the technique's: loaded
    finally:
        sys.modules.pop(LIBRARY, None)
