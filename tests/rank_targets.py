"""Targets for the launcher's tests: each runs on every rank of a real gloo process group and does one thing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from effbench.train.distributed import Parallel

TORCHRUN_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def sum_ranks(job: Any, parallel: Parallel) -> dict[str, Any]:
    """All-reduce each rank's number: the ranks really form one group, with torchrun's environment."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([float(parallel.rank + 1)], device=parallel.device)
    dist.all_reduce(value)
    return {"rank": parallel.rank, "sum": value.item(), "env": {k: os.environ[k] for k in TORCHRUN_ENV}, "job": job}


def fail_on_rank_one(job: tuple[str, str], parallel: Parallel) -> None:
    """Rank 1 raises or is killed; rank 0 waits for it in a collective that never completes (without the launcher)."""
    import torch.distributed as dist

    folder, how = job
    Path(folder, f"pid-{parallel.rank}").write_text(str(os.getpid()))
    if parallel.rank == 1:
        if how == "raise":
            raise RuntimeError("rank one is broken on purpose")
        os.kill(os.getpid(), signal.SIGKILL)
    while not Path(folder, "pid-1").exists():
        time.sleep(0.05)
    dist.barrier()  # rank 1 never arrives
    time.sleep(600)
