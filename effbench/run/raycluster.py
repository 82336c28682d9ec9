"""Sweeps on a Ray cluster: each run a Ray task with its own CPUs or GPUs; outcomes stream back to the sweep to store.

Ray is an optional dependency (``pip install 'effbench[ray]'``) and imported only once the ``ray`` executor is chosen.
Every task runs in a fresh worker process (``max_calls=1``, as a forked worker does locally), so one run's patched
modules, caches and device memory never reach the next. Workers import effbench and the plugins themselves: every
node needs them installed (README, "Running sweeps on a Ray cluster"), or a ``runtime_env`` that installs them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from effbench.api.executor import EventSink, Executor, Job, Outcome, check_option_names
from effbench.errors import EffbenchError, error_text
from effbench.measure.device import device_type
from effbench.run.targets import call_target

RAY_MISSING = "the ray executor needs Ray, which is not installed: pip install 'effbench[ray]'"
POLL_SECONDS = 0.2
DEFAULT_CONNECT_SECONDS = 10.0
GPU_DEVICES = ("cuda",)  # device types Ray schedules as its GPU resource


def require_ray() -> None:
    """Refuse the ray executor in one line when Ray is not installed (checked before any work)."""
    try:
        import ray  # noqa: F401 - only whether it imports
    except ImportError:
        raise EffbenchError(RAY_MISSING) from None


@dataclass(frozen=True)
class RaySettings:
    """The ray executor's options (suite ``executor_options``, ``--address``, ``--executor-option KEY=VALUE``)."""

    address: str | None = None  # HOST:PORT of a head (ray start --head) or auto; None: a local Ray in this process
    cpus_per_run: float = 1.0
    gpus_per_run: int = 1
    connect_timeout: float = DEFAULT_CONNECT_SECONDS
    runtime_env: dict[str, Any] | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> RaySettings:
        """Typed settings from the user's options, or a one-line error naming the bad one."""
        settings = cls(**options)
        address, cpus, gpus, seconds = (
            settings.address,
            settings.cpus_per_run,
            settings.gpus_per_run,
            settings.connect_timeout,
        )
        checks = (
            ("address", address is None or (isinstance(address, str) and bool(address.strip())), "HOST:PORT or auto"),
            ("cpus_per_run", _number(cpus) and cpus > 0, "a number of CPUs above 0"),
            ("gpus_per_run", _number(gpus) and gpus >= 1 and int(gpus) == gpus,
             "a whole number of GPUs, 1 or more (a shared GPU would mix the runs' energy)"),
            ("connect_timeout", _number(seconds) and seconds > 0, "seconds above 0"),
            ("runtime_env", settings.runtime_env is None or isinstance(settings.runtime_env, dict),
             "a mapping, as ray.init(runtime_env=...) takes"),
        )  # fmt: skip
        for option, ok, expected in checks:
            if not ok:
                value = getattr(settings, option)
                raise EffbenchError(f"ray executor option {option}={value!r} is invalid; expected {expected}")
        return settings

    def resources(self, device: str | None) -> dict[str, float]:
        """What one run on ``device`` reserves: whole GPUs on a GPU (so its energy is its own), CPUs always."""
        needs = {"CPU": float(self.cpus_per_run)}
        if device and device_type(device) in GPU_DEVICES:
            needs["GPU"] = float(self.gpus_per_run)
        return needs


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_reachable(address: str, seconds: float) -> None:
    """Refuse a head that does not answer as one within ``seconds`` (``ray.init`` itself retries for 20 s or more)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise EffbenchError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as err:
        raise EffbenchError(
            f"cannot reach the Ray cluster at {address} within {seconds:g} s ({err.strerror or err}); start its head "
            "with `ray start --head --port=PORT` or correct --address"
        ) from None
    ask_the_head(address, seconds)


def ask_the_head(address: str, seconds: float) -> None:
    """Refuse an address where no Ray head answers within ``seconds``: a hung head, or another server on that port.

    Ray's own client of the head is asked in a thread (it releases the GIL), so its internal retries, which
    take longer than any deadline it is given, cannot hold the sweep.
    """
    import ray.exceptions
    from ray._raylet import InnerGcsClient

    answer: dict[str, Exception | None] = {}

    def ask() -> None:
        try:
            InnerGcsClient.standalone(address, None, int(seconds * 1000))
            answer["error"] = None
        except ray.exceptions.RayError as err:
            answer["error"] = err

    asking = threading.Thread(target=ask, name="effbench-ray-head", daemon=True)
    with output_to(Path(os.devnull)):  # its retries log to stderr, over the one-line error
        asking.start()
        asking.join(seconds)
    if "error" not in answer:
        raise EffbenchError(
            f"{address} accepts connections but no Ray head answered within {seconds:g} s; give the address and port "
            "that `ray start --head` printed"
        )
    if isinstance(answer["error"], ray.exceptions.AuthenticationError):  # Ray's way: the client must opt in
        raise EffbenchError(
            f"the Ray head at {address} requires token authentication: set RAY_AUTH_MODE=token here, with the "
            "cluster's token in ~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN"
        )
    if answer["error"] is not None:
        raise EffbenchError(
            f"{address} answers, but not as a Ray cluster's head ({str(answer['error']).splitlines()[0]}); give the "
            "address and port that `ray start --head` printed"
        )


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors, so libraries' too) to ``log`` for the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    handle = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(handle, 1)
        os.dup2(handle, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in zip((1, 2), saved, strict=True):
            os.dup2(original, fd)
            os.close(original)
        os.close(handle)


def run_in_worker(target: str, payload: dict[str, Any], files: dict[str, bytes]) -> tuple[str, Any, str, float]:
    """In a Ray worker: run the job with the parent's files copied here; return (kind, value, its log, start time)."""
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="effbench-run-") as folder:
        for key, data in files.items():  # the parent's store is not on this machine
            copy = Path(folder) / Path(payload[key]).name
            copy.write_bytes(data)
            payload = {**payload, key: str(copy)}
        device = payload.get("device")
        if isinstance(device, str) and device_type(device) in GPU_DEVICES:
            payload = {**payload, "device": "cuda:0"}  # Ray made the GPUs it granted the only visible ones
        log = Path(folder) / "run.log"
        with output_to(log):
            try:
                kind, value = "result", call_target(target, payload, lambda text: None)
            except BaseException as err:  # everything must come back as a failed outcome
                traceback.print_exc()
                kind, value = "error", error_text(err)
        return kind, value, log.read_text(errors="replace"), started


def task_error(err: Exception) -> str:
    """A Ray failure as a failed row's one line: the task's own exception, or how its worker or node died."""
    import ray.exceptions

    if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:  # e.g. effbench not importable there
        return f"Ray task failed: {error_text(err.cause).splitlines()[-1]}"
    first_line = next((line for line in str(err).splitlines() if line.strip()), "")
    return f"Ray worker died ({type(err).__name__}{': ' + first_line if first_line else ''})"


@dataclass
class Submitted:
    """A job handed to Ray: what it is, when it was submitted, and when it must have finished."""

    job: Job
    submitted_at: float  # wall clock, comparable with the worker's start time
    deadline: float  # monotonic


class RayExecutor(Executor):
    """Each run a Ray task reserving its own CPUs (or whole GPUs); several at once, as many as the cluster holds.

    Only as many runs are submitted as the cluster's nodes can run at once, so a run's timeout counts from
    when it starts, not from a queue. A run that raises, a worker or node that dies and a run past its
    timeout (its task cancelled with force) all come back as failed outcomes.
    """

    name = "ray"
    description = "each run a Ray task on a cluster (--address): runs in parallel, this process stores them"
    options: ClassVar[dict[str, str]] = {
        "address": "the head, HOST:PORT as `ray start --head` prints, or auto; unset: a local Ray in this process",
        "cpus_per_run": "CPUs each run reserves (default 1)",
        "gpus_per_run": "whole GPUs each run on a GPU device reserves (default 1)",
        "connect_timeout": f"seconds the head has to answer (default {DEFAULT_CONNECT_SECONDS:g})",
        "runtime_env": "Ray runtime_env of the workers (pip, env_vars, working_dir, py_modules), as ray.init takes it",
    }

    def __init__(self, settings: RaySettings | None = None) -> None:
        self.settings = settings or RaySettings()
        self.connected = False
        self.running: dict[Any, Submitted] = {}  # ObjectRef → its job
        self.task: Any = None  # the remote function, made once per connection

    def configure(self, options: Mapping[str, Any]) -> RayExecutor:
        check_option_names(self, options)
        require_ray()
        return RayExecutor(RaySettings.parse(options))

    def start(self, logs: Path) -> None:
        self.connect()

    def connect(self) -> None:
        """Connect to the cluster (or start a local Ray): an unreachable head is an error before any work."""
        if self.connected:
            return
        require_ray()
        import logging

        import ray

        address = self.settings.address
        if address and address != "auto":
            check_reachable(address, self.settings.connect_timeout)
        try:
            ray.init(
                address=address or "local",  # never a cluster some earlier `ray start` left on this machine
                runtime_env=self.settings.runtime_env,
                log_to_driver=False,  # each run's output goes to its log file, not over the progress bar
                logging_level=logging.WARNING,
                include_dashboard=False if address is None else None,
            )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
            raise EffbenchError(f"cannot connect to the Ray cluster at {address or 'a local Ray'}: {err}") from None
        self.connected = True
        self.task = ray.remote(max_calls=1, max_retries=0)(run_in_worker)

    def run(self, job: Job, on_event: EventSink | None = None) -> Outcome:
        return next(iter(self.run_many([job], on_event)))[1]

    def run_many(self, jobs: Iterable[Job], on_event: EventSink | None = None) -> Iterator[tuple[Job, Outcome]]:
        """Keep the cluster full: take a job when one like the last fits, yield each outcome as its task ends."""
        import ray

        self.connect()
        queue = iter(jobs)
        waiting: Job | None = None  # taken from the sweep, not yet submitted
        last: Job | None = None
        exhausted = False
        try:
            while True:
                while waiting is not None or not exhausted:
                    if waiting is None:
                        if last is not None and len(self.running) >= self.capacity(last):
                            break  # taking a job marks its run started: only when it can start
                        waiting = next(queue, None)
                        exhausted = waiting is None
                    if waiting is None or len(self.running) >= self.capacity(waiting):
                        break
                    self.submit(waiting)
                    last, waiting = waiting, None
                if not self.running:
                    return
                if on_event:
                    on_event(f"{len(self.running)} running on the Ray cluster")
                done, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    submitted = self.running.pop(ref)
                    yield submitted.job, self.collect(ref, submitted)
                for ref, submitted in list(self.running.items()):
                    if time.monotonic() > submitted.deadline:
                        ray.cancel(ref, force=True)
                        del self.running[ref]
                        yield submitted.job, Outcome(error=f"timed out after {submitted.job.timeout:g} s")
        finally:
            self.cancel_running()

    def capacity(self, job: Job) -> int:
        """How many runs like ``job`` the cluster's live nodes hold at once; none at all is an error."""
        import ray

        needs = self.settings.resources(job.payload.get("device"))
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        fits = sum(min(int(offered.get(name, 0) // amount) for name, amount in needs.items()) for offered in nodes)
        if fits == 0 and not self.running:
            offered = "; ".join(_amounts({k: v for k, v in n.items() if k in needs}) for n in nodes)
            raise EffbenchError(
                f"no node of the Ray cluster offers what a run needs ({_amounts(needs)}); its nodes offer: "
                f"{offered or 'nothing'}; lower cpus_per_run or gpus_per_run, or add nodes"
            )
        return fits

    def submit(self, job: Job) -> None:
        """Hand one job to Ray with its resources and the parent's files it reads."""
        files = {key: Path(job.payload[key]).read_bytes() for key in job.files if _local_file(job.payload.get(key))}
        needs = self.settings.resources(job.payload.get("device"))
        ref = self.task.options(num_cpus=needs["CPU"], num_gpus=needs.get("GPU", 0), name=f"effbench:{job.key}").remote(
            job.target, job.payload, files
        )
        self.running[ref] = Submitted(job, time.time(), time.monotonic() + job.timeout)

    def collect(self, ref: Any, submitted: Submitted) -> Outcome:
        """The finished task's outcome, its output appended to the run's log."""
        import ray
        import ray.exceptions

        try:
            kind, value, log, started = ray.get(ref)
        except ray.exceptions.RayError as err:
            return Outcome(error=task_error(err))
        if submitted.job.log_path:
            with open(submitted.job.log_path, "a") as handle:
                handle.write(log)
        ready = max(0.0, started - submitted.submitted_at)
        return (
            Outcome(result=value, ready_after_s=ready)
            if kind == "result"
            else Outcome(error=value, ready_after_s=ready)
        )

    def cancel_running(self) -> None:
        """Stop every task still running (an interrupted sweep stores none of them)."""
        if self.running:
            import ray

            for ref in self.running:
                ray.cancel(ref, force=True)
            self.running.clear()

    def close(self) -> None:
        if self.connected:
            import ray

            self.cancel_running()
            ray.shutdown()
            self.connected = False


def _amounts(resources: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {amount:g}" for name, amount in resources.items()) or "none"


def _local_file(path: Any) -> bool:
    return isinstance(path, str) and Path(path).is_file()
