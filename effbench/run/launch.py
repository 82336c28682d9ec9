"""The ranks of a distributed training, started by effbench itself on this machine, as torchrun starts them.

Each rank is a fresh Python process (``python -m effbench.run.launch FOLDER``) with torchrun's environment
(RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR=127.0.0.1, MASTER_PORT a free port), a gloo (cpu) or NCCL (cuda)
process group, and the kernel's promise to kill it when the process that started it ends (a run past its
timeout, a killed sweep). The job goes to the ranks, and each rank's result back, as files in a temporary
folder; the ranks' output goes to the run's log. The first rank that fails stops the others: its error is
the run's, and no rank is left running.
"""

from __future__ import annotations

import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from effbench.api.context import RUN_ROOT_PID
from effbench.errors import EffbenchError, error_text
from effbench.measure.device import device_type
from effbench.run.forkserver import die_with_parent
from effbench.train.distributed import Parallel

ADDRESS = "127.0.0.1"
GROUP_TIMEOUT_S = 300  # a collective waiting this long for a peer fails rather than hangs (the run's timeout is first)
POLL_S = 0.1
JOB, RESULT, ERROR = "job.pickle", "result-{}.pickle", "error-{}.txt"


def free_port() -> int:
    """A TCP port nothing listens on now, for rank 0's rendezvous (torchrun --standalone does the same)."""
    with socket.socket() as probe:
        probe.bind((ADDRESS, 0))
        return probe.getsockname()[1]


def rank_device(device: str, rank: int) -> str:
    """Where rank ``rank`` computes: one GPU each (cuda:RANK), or the cpu every rank shares."""
    return f"cuda:{rank}" if device_type(device) == "cuda" else device


def _write(path: Path, data: bytes) -> None:
    """Write whole, then rename: a reader never sees half a result."""
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _rank_main(folder: Path) -> None:
    """In a rank: join the process group, run the job's target on this rank, leave its result or error."""
    die_with_parent()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    try:
        import torch
        import torch.distributed as dist

        target, job, device = pickle.loads((folder / JOB).read_bytes())
        device = rank_device(device, rank)
        if device_type(device) == "cuda":
            torch.cuda.set_device(device)
        else:  # the ranks share the cores: one rank's threads would otherwise slow the others
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
        backend = "nccl" if device_type(device) == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=GROUP_TIMEOUT_S))
        value = target(job, Parallel(rank, world, device))
        dist.destroy_process_group()
        _write(folder / RESULT.format(rank), pickle.dumps(value))
    except BaseException as err:  # every failure must reach the launcher as this rank's error ...
        _write(folder / ERROR.format(rank), error_text(err).encode())  # ... before its exit fails the peers
        traceback.print_exc()
        sys.exit(1)


def _failure(folder: Path, rank: int, code: int) -> str:
    """What a rank that ended without a result says: its error, or how it died."""
    error = folder / ERROR.format(rank)
    if error.exists():
        return error.read_text()
    if code < 0:
        return f"died ({signal.Signals(-code).name})"
    return f"exited with code {code} without a result"


def _failed_at(folder: Path, rank: int) -> int:
    """When a rank wrote its error (0: it died without one, so first): the first failure caused the others'."""
    error = folder / ERROR.format(rank)
    return error.stat().st_mtime_ns if error.exists() else 0


def _stop(ranks: list[subprocess.Popen]) -> None:
    """Kill every rank still running and reap it: none is left behind."""
    for process in ranks:
        if process.poll() is None:
            process.kill()
    for process in ranks:
        process.wait()


def run_ranks(world: int, device: str, target: Callable[[Any, Parallel], Any], job: Any) -> list[Any]:
    """Run ``target(job, parallel)`` on ``world`` new ranks; their return values in rank order.

    ``target`` must be importable (a module's function) and ``job`` picklable. A rank that raises or
    dies ends the others at once; the error names the rank.
    """
    with tempfile.TemporaryDirectory(prefix="effbench-ranks-") as name:
        folder = Path(name)
        _write(folder / JOB, pickle.dumps((target, job, device)))
        port = str(free_port())
        env = {**os.environ, "WORLD_SIZE": str(world), "MASTER_ADDR": ADDRESS, "MASTER_PORT": port}
        env[RUN_ROOT_PID] = os.environ.get(RUN_ROOT_PID, str(os.getpid()))  # the ranks' CPU is the run's own
        command = [sys.executable, "-m", "effbench.run.launch", str(folder)]
        ranks = [
            subprocess.Popen(command, env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}) for rank in range(world)
        ]
        try:
            while True:
                codes = [process.poll() for process in ranks]
                failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
                if failed:
                    rank, code = min(failed, key=lambda failure: _failed_at(folder, failure[0]))
                    raise EffbenchError(f"rank {rank} of {world} failed: {_failure(folder, rank, code)}")
                if all(code == 0 for code in codes):
                    return [pickle.loads((folder / RESULT.format(rank)).read_bytes()) for rank in range(world)]
                time.sleep(POLL_S)
        finally:
            _stop(ranks)


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
