"""A busy machine is seen and said: the background CPU share of a window, and the report's note naming busy runs."""

import os
import signal
import subprocess
import sys
import time

import pytest

from effbench.api.context import RUN_ROOT_PID, RunContext
from effbench.default_plugins.metrics.contention import BackgroundCpu, own_cpu_seconds
from effbench.present import report
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.store_helpers import COLUMNS, measurement, run_row

BURN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


def _window_share(seconds: float) -> float:
    run = RunContext(model=None, tokenizer=None, technique="baseline", params={})
    window = BackgroundCpu().open(run)
    time.sleep(seconds)
    return window.close(run)


@pytest.fixture
def stranger():
    """A process burning one core that is not the test's descendant (its parent exits): someone else's job."""
    launcher = subprocess.run(
        ["sh", "-c", f'{sys.executable} -c "{BURN}" >/dev/null 2>&1 & echo $!'], capture_output=True, text=True
    )
    pid = int(launcher.stdout.strip())
    time.sleep(0.5)  # started and burning
    yield pid
    os.kill(pid, signal.SIGKILL)


def test_another_process_burning_a_core_is_counted_as_background(stranger):
    import psutil

    assert stranger not in {p.pid for p in psutil.Process().children(recursive=True)}
    share = _window_share(2.0)
    assert share > 100 / psutil.cpu_count() * 0.6  # one core of the machine's, less scheduling slack


def test_the_share_is_the_machines_busy_time_less_the_runs_own_over_every_cores_time(monkeypatch):
    from effbench.default_plugins.metrics import contention

    readings = iter([  # machine busy s, own s, clock s: open, then close; twice
        (100.0, 10.0, 50.0), (103.0, 11.0, 52.0),
        (100.1, 10.2, 50.0), (100.3, 10.4, 50.003),  # (0.2 − 0.2) s is 1.8e-15 s in floats: below a counter tick
    ])  # fmt: skip
    current = {}

    def advance():
        current["machine"], current["own"], current["clock"] = next(readings)

    monkeypatch.setattr(contention, "machine_busy_seconds", lambda: current["machine"])
    monkeypatch.setattr(contention, "own_cpu_seconds", lambda: current["own"])
    monkeypatch.setattr(contention.time, "perf_counter", lambda: current["clock"])
    monkeypatch.setattr(contention.psutil, "cpu_count", lambda: 2)
    run = RunContext(model=None, tokenizer=None, technique="baseline", params={})
    advance()
    window = BackgroundCpu().open(run)
    advance()
    assert window.close(run) == pytest.approx(50.0)  # (3 − 1) CPU-s of others ÷ (2 s × 2 cores)
    advance()
    window = BackgroundCpu().open(run)
    advance()
    assert window.close(run) == 0.0  # not 9e-13 %: the counters count whole ticks (1/100 s), the rest is rounding


def test_the_runs_own_cpu_time_includes_its_children():
    import resource

    def reaped() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    before, children_before = own_cpu_seconds(), reaped()
    child = subprocess.Popen([sys.executable, "-c", BURN.replace("30", "1.5")])
    child.wait()
    child_cpu = reaped() - children_before  # what the child got of the CPU (less on a busy machine)
    assert child_cpu > 0.1
    assert own_cpu_seconds() - before >= child_cpu * 0.99  # a reaped child's CPU time is the run's own


MEASURE = """
import time
from effbench.api.context import RUN_ROOT_PID, RunContext
from effbench.default_plugins.metrics.contention import BackgroundCpu
run = RunContext(model=None, tokenizer=None, technique="baseline", params={})
window = BackgroundCpu().open(run)
time.sleep(3)
print(window.close(run))
"""


def test_a_distributed_runs_other_ranks_are_its_own_work_not_background():
    """A rank sees its sibling ranks' CPU as the run's own when it knows the run's process (``EFFBENCH_RUN_PID``)."""
    import psutil

    sibling = subprocess.Popen([sys.executable, "-c", BURN])  # another rank of the run: the test process's child
    try:
        time.sleep(0.5)
        burnt = sum(psutil.Process(sibling.pid).cpu_times()[:2])
        began = time.monotonic()
        env = {key: value for key, value in os.environ.items() if key != RUN_ROOT_PID}
        alone = subprocess.Popen([sys.executable, "-c", MEASURE], stdout=subprocess.PIPE, text=True, env=env)
        ranked = subprocess.Popen([sys.executable, "-c", MEASURE], stdout=subprocess.PIPE, text=True,
                                  env={**env, RUN_ROOT_PID: str(os.getpid())})  # fmt: skip
        seen_alone, seen_as_rank = float(alone.communicate()[0]), float(ranked.communicate()[0])
        burnt = sum(psutil.Process(sibling.pid).cpu_times()[:2]) - burnt
        sibling_share = burnt / ((time.monotonic() - began) * psutil.cpu_count()) * 100
    finally:
        sibling.kill()
        sibling.wait()
    # the same 3 s window, less the sibling's CPU (what it got depends on how busy the machine is)
    assert seen_alone - seen_as_rank > sibling_share / 2 > 5


def _busy_store(tmp_path) -> ResultsStore:
    store = ResultsStore(tmp_path)
    for run_id, technique, share in (("a", "baseline", 2.0), ("b", "dtype", 37.4), ("c", "compile", 9.9)):
        rows = [
            measurement("acc", 0.8, "", "quality", "task_a", stderr=0.02),
            measurement("background_cpu", share, "%", "computation", scenario="single-stream"),
        ]
        warnings = {"b": ["no MFU on cpu"], "c": ["no fidelity reference built: boom"] * 2 + ["no MFU on cpu"]}
        warnings = warnings.get(run_id, [])
        store.write_run(run_row(run_id, technique, {}, "hw", warnings=warnings), rows)
    return store


def test_the_report_names_runs_measured_on_a_busy_machine_and_every_run_warning_once(tmp_path):
    (table,) = report.build(load(_busy_store(tmp_path).root), columns=COLUMNS)
    busy = [note for note in table.notes if note.startswith("busy machine")]
    assert len(busy) == 1
    assert "dtype (37 %)" in busy[0]
    assert "baseline" not in busy[0] and "compile" not in busy[0]  # at or below 10 %: not flagged
    warned = [note for note in table.notes if note.startswith("warning, ")]
    assert warned == [  # each warning once, though raised twice, naming every run that raised it
        "warning, dtype, compile: no MFU on cpu",
        "warning, compile: no fidelity reference built: boom",
    ]
