"""The ray executor on a real Ray cluster this module starts on 127.0.0.1 (2 CPUs) and stops.

A 6-run sweep killed with -9 and rerun stores every run once, with the run ids and measurement names of a
local sweep; runs that raise, die or hang come back as failed outcomes; resources are requested per run;
bad input (an unreachable head, an unknown executor or option, Ray missing) is one line before any work.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from effbench.api.executor import Job
from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.store.load import load
from effbench.store.results import ResultsStore
from tests.conftest import QUICK_SCENARIO, cli

ROOT = Path(__file__).parents[1]
CLUSTER_CPUS = 2
TECHNIQUES = (  # with the baseline: 6 runs
    "prune-magnitude:sparsity=0.1",
    "prune-magnitude:sparsity=0.3",
    "prune-magnitude:sparsity=0.5",
    "dtype:dtype=bf16",
    "prune-nm",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sweep_args(out: Path) -> list[str]:
    args = ["evaluate", "--output", str(out), "--model", "zoo:micro-s", "--task", "micro_copy", "--limit", "8"]
    args += ["--scenario", QUICK_SCENARIO]
    for technique in TECHNIQUES:
        args += ["--technique", technique]
    return args


@dataclass(frozen=True)
class Cluster:
    """A Ray cluster a test started: where its head listens, and the process that runs it."""

    address: str
    head: subprocess.Popen

    def tasks(self) -> list[str]:
        """The effbench tasks its workers are running (Ray titles a worker's process after its task)."""
        workers = psutil.Process(self.head.pid).children(recursive=True)
        names = []
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                names += [part for part in worker.cmdline() if part.startswith("ray::effbench:")]
        return names


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.fixture(scope="module")
def ray_token(tmp_path_factory):
    """Ray's token authentication (its default for local clusters) with a token of this module's, not ~/.ray's."""
    token = tmp_path_factory.mktemp("ray-token") / "auth_token"
    token.write_text(secrets.token_hex(32))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_MODE", "token")  # the head, the sweeps and their workers
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(token))  # instead of ~/.ray/auth_token
        yield token


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, ray_token):
    """A 2-CPU Ray head on 127.0.0.1 (its files under the test's tmp dir), stopped with its processes at the end.

    It requires the module's token, as a head started where a Ray token exists does.
    """
    temp = tmp_path_factory.mktemp("ray")
    port = _free_port()
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}"]
    command += [
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={CLUSTER_CPUS}",
        "--num-gpus=0",
        "--include-dashboard=false",
    ]
    command += ["--dashboard-agent-listen-port=0", f"--temp-dir={temp}", "--disable-usage-stats"]
    # the workers import effbench and these tests' targets from this checkout, as the sweep does
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(temp / "head.log", "w") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (temp / "head.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not come up"
                time.sleep(0.2)
        yield Cluster(f"127.0.0.1:{port}", head)
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the processes it started
        try:
            head.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)  # anything of its session still there


@pytest.fixture(scope="module")
def resumed_sweep(cluster, tmp_path_factory):
    """A 6-run sweep on the cluster whose driver is killed with -9 after two runs, then rerun to the end."""
    out = tmp_path_factory.mktemp("ray-sweep") / "results"
    args = [*_sweep_args(out), "--executor", "ray", "--address", cluster.address]
    with open(out.parent / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "effbench.cli", *args], stdout=log, stderr=log)
    deadline = time.monotonic() + 420
    while len(ResultsStore(out).statuses()) < 2 and driver.poll() is None:
        assert time.monotonic() < deadline, "the sweep stored nothing in time"
        time.sleep(0.2)
    assert _wait_for(cluster.tasks, 30), "runs were in progress on the cluster"
    driver.kill()  # the driver only: its tasks live in the cluster's workers
    driver.wait()
    assert _wait_for(lambda: not cluster.tasks(), 60), "Ray ends the tasks of a driver that is gone"
    stored_before = {run.run_id: run for run in load(out).runs}
    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    return out, stored_before, rerun


def _measurement_names(out: Path) -> dict[str, set[tuple[str, str, str, str]]]:
    results = load(out)
    names: dict[str, set[tuple[str, str, str, str]]] = {run.run_id: set() for run in results.runs}
    for m in results.measurements:
        names[m.run_id].add((m.task, m.metric, m.phase, m.scenario))
    return names


def test_kill_minus_9_of_the_driver_then_rerun_stores_every_run_exactly_once(resumed_sweep):
    out, stored_before, rerun = resumed_sweep
    assert 2 <= len(stored_before) < 1 + len(TECHNIQUES), "the driver was killed before the sweep ended"
    assert f"{len(stored_before)} already stored, 0 failed" in rerun.stdout
    results = load(out)
    assert len(results.runs) == 1 + len(TECHNIQUES)
    assert len({run.run_id for run in results.runs}) == len(results.runs)
    assert {run.status for run in results.runs} == {"ok"}
    for run in results.runs:
        if run.run_id in stored_before:  # finished before the kill: not run again
            assert run.started_at == stored_before[run.run_id].started_at
        keys = Counter((m.task, m.metric, m.phase, m.scenario) for m in results.measurements_of(run.run_id))
        assert keys and max(keys.values()) == 1  # no measurement twice
    assert not results.problems


def test_ray_sweep_has_the_run_ids_and_measurement_names_of_a_local_sweep(resumed_sweep, tmp_path):
    on_ray, _, _ = resumed_sweep
    local = tmp_path / "local"
    result = cli(*_sweep_args(local), "--executor", "inline")
    assert result.returncode == 0, result.stderr
    ray_names, local_names = _measurement_names(on_ray), _measurement_names(local)
    assert set(ray_names) == set(local_names)
    assert ray_names == local_names
    fidelity = {name for names in ray_names.values() for (_, name, _, _) in names} & {"kl_divergence"}
    assert fidelity, "the runs on Ray read their baseline's fidelity reference, shipped from the parent's store"


def _executor(address: str, **options):
    return registry().executor("ray").configure({"address": address, **options})


def test_failures_come_back_as_outcomes_and_outputs_as_logs(cluster, tmp_path):
    reference = tmp_path / "store" / "reference.txt"
    reference.parent.mkdir()
    reference.write_text("the baseline's reference")
    jobs = [
        Job("raises", "tests.ray_targets:raises", {}, timeout=120, log_path=tmp_path / "raises.log"),
        Job("dies", "tests.ray_targets:dies", {}, timeout=120),
        Job("hangs", "tests.ray_targets:hangs", {}, timeout=25),
        Job("reports", "tests.ray_targets:report", {"name": "one"}, timeout=120, log_path=tmp_path / "reports.log"),
        Job("reads", "tests.ray_targets:read_file", {"reference": str(reference)}, timeout=120, files=("reference",)),
    ]
    executor = _executor(cluster.address)
    executor.start(tmp_path)
    try:
        finished = list(executor.run_many(jobs))
    finally:
        executor.close()
    order = [job.key for job, _ in finished]
    outcomes = {job.key: outcome for job, outcome in finished}
    assert sorted(order) == sorted(job.key for job in jobs)
    assert order[-1] == "hangs"  # streamed as they finish: the others did not wait for the hung one
    assert outcomes["raises"].error == "RuntimeError: this run is broken on purpose"
    assert "Traceback" in (tmp_path / "raises.log").read_text()
    assert outcomes["dies"].error.startswith("Ray worker died (WorkerCrashedError")
    assert outcomes["hangs"].error == "timed out after 25 s"
    assert outcomes["reports"].error is None
    assert outcomes["reports"].result["resources"] == {"CPU": 1.0}  # one CPU per run by default
    assert outcomes["reports"].result["pid"] != os.getpid()
    assert "ran one" in (tmp_path / "reports.log").read_text()
    shipped = outcomes["reads"].result
    assert shipped["content"] == "the baseline's reference"
    assert shipped["path"] != str(reference)  # a copy on the worker, not the parent's file


def test_resources_per_run_are_requested_and_what_no_node_offers_is_refused(cluster, tmp_path):
    executor = _executor(cluster.address, cpus_per_run=2)
    try:
        outcome = executor.run(Job("two", "tests.ray_targets:report", {"name": "two"}, timeout=120))
        assert outcome.result["resources"] == {"CPU": 2.0}
        assert outcome.result["threads"] == "2"  # torch's threads, as OMP_NUM_THREADS says
        gpu_run = Job("gpu", "tests.ray_targets:report", {"name": "gpu", "device": "cuda"}, timeout=120)
        with pytest.raises(EffbenchError, match=r"no node of the Ray cluster offers what a run needs \(CPU 2, GPU 1\)"):
            executor.run(gpu_run)
    finally:
        executor.close()


def test_without_an_address_a_ray_of_its_own_runs_the_jobs_in_their_runtime_env(ray_token, tmp_path):
    env = {"env_vars": {"PYTHONPATH": str(ROOT), "EFFBENCH_TEST_MARK": "from runtime_env"}}
    executor = registry().executor("ray").configure({"runtime_env": env})
    try:
        outcome = executor.run(Job("local", "tests.ray_targets:report", {"name": "local"}, timeout=120))
    finally:
        executor.close()
    assert outcome.error is None, outcome.error
    assert outcome.result["mark"] == "from runtime_env"


def test_closing_the_executor_stops_the_runs_in_progress(cluster, tmp_path):
    """What an interrupted sweep does (Ctrl-C, SIGTERM): its runs on the cluster are stopped, none is stored."""
    executor = _executor(cluster.address)
    pid_file = tmp_path / "pid"
    executor.start(tmp_path)
    try:
        executor.submit(Job("hangs", "tests.ray_targets:hangs", {"pid_file": str(pid_file)}, timeout=600))
        assert _wait_for(pid_file.exists, 120), "the run started"
        assert cluster.tasks() == ["ray::effbench:hangs"]
    finally:
        executor.close()
    assert _wait_for(lambda: not psutil.pid_exists(int(pid_file.read_text())), 30)
    assert not cluster.tasks()


def test_a_head_that_requires_a_token_is_one_line_saying_how_to_give_it(cluster, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAY_AUTH_MODE"}  # the token, but not its use
    command = [sys.executable, "-m", "effbench.cli", *_sweep_args(tmp_path / "results")]
    result = subprocess.run([*command, "--executor", "ray", "--address", cluster.address], capture_output=True,
                            text=True, env=env, timeout=120)  # fmt: skip
    said = _one_line_error(result)
    assert f"the Ray head at {cluster.address} requires token authentication: set RAY_AUTH_MODE=token" in said


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_unreachable_head_is_one_line_within_the_connect_timeout(tmp_path):
    out = tmp_path / "results"
    port = _free_port()  # nothing listens there
    said = _one_line_error(cli(*_sweep_args(out), "--executor", "ray", "--address", f"127.0.0.1:{port}"))
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port} within 10 s" in said
    with socket.socket() as silent:  # accepts connections and says nothing: a head that hangs, or not a head at all
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        said = _one_line_error(
            cli(*_sweep_args(out), "--executor", "ray", "--address", address, "--executor-option", "connect_timeout=2")
        )
        assert time.monotonic() - started < 10  # Ray alone would retry for 20 s or more
    assert f"{address} accepts connections but no Ray head answered within 2 s" in said
    assert not (out / "runs").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--executor", "nope"], "unknown executor 'nope'; valid executors: forkserver, inline, ray"),
        (["--executor", "ray", "--executor-option", "cpus=2"], "executor 'ray' has no option 'cpus'; valid: address"),
        (["--address", "127.0.0.1:6379"], "executor 'forkserver' has no option 'address'; it takes none"),
        (["--executor", "ray", "--executor-option", "gpus_per_run=0.5"], "option gpus_per_run=0.5 is invalid"),
        (["--executor", "ray", "--address", "127.0.0.1"], "Ray address '127.0.0.1' is not HOST:PORT"),
    ],
)
def test_bad_executor_input_is_one_line_before_any_work(tmp_path, extra, expected):
    out = tmp_path / "results"
    assert expected in _one_line_error(cli(*_sweep_args(out), *extra))
    assert not (out / "runs").exists()


def test_ray_missing_is_one_line_saying_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None  # as where Ray is not installed\n"
        "from effbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-c", code, *_sweep_args(out), "--executor", "ray"], capture_output=True, text=True
    )
    said = _one_line_error(result)
    assert "the ray executor needs Ray, which is not installed: pip install 'effbench[ray]'" in said


def test_executor_options_come_from_the_suite_and_the_command_line(tmp_path):
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("executor: ray\nexecutor_options: {address: '10.0.0.1:6379', cpus_per_run: 2}\n")
    assert load_suite(suite_file).executor_options == {"address": "10.0.0.1:6379", "cpus_per_run": 2}
    merged = load_suite(suite_file, executor_options={"address": "127.0.0.1:7000"})
    assert merged.executor_options == {"address": "127.0.0.1:7000", "cpus_per_run": 2}
    assert load_suite(suite_file, executor="inline").executor_options == {}  # the suite's were for ray
