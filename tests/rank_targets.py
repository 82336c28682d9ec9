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


def fsdp_step_on_families(families: list[str], parallel: Parallel) -> dict[str, dict[str, Any]]:
    """One FSDP2 training step of each family's tiny model on this rank, then its gather: what the test checks."""
    import torch
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor.debug import CommDebugMode

    from effbench import network
    from effbench.api.training import Communication
    from effbench.modeling import decoder_layers
    from effbench.reference import families as zoo_families
    from effbench.train.distributed import counting_collectives

    calls = []
    record = network.record

    def counted_call(**bytes_by_kind: int) -> None:
        calls.append(bytes_by_kind["collective"])
        record(**bytes_by_kind)

    network.record = counted_call
    outcomes = {}
    for family in families:
        model, _ = zoo_families.build(family)
        model.train()
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        calls.clear()
        with counting_collectives(), CommDebugMode() as comms:
            prepared = parallel.prepare(model, optimizer, Communication(shard_parameters=True))
            ids = torch.randint(3, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
            prepared.model(input_ids=ids, labels=ids).loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in prepared.model.parameters() if p.requires_grad], 1.0)
            prepared.optimizer.step()
            step_calls, step_comms = list(calls), sum(comms.get_comm_counts().values())
            units = sum(isinstance(m, FSDPModule) for m in model.modules())
            local = {name: p.to_local().numel() for name, p in model.named_parameters()}
            whole = prepared.trained()
        whole.eval()
        with torch.no_grad():
            logits = whole(input_ids=ids).logits
        outcomes[family] = {
            "units": units,
            "blocks": len(decoder_layers(whole)),
            "local": local,
            "bytes": sum(step_calls),
            "calls": len(step_calls),
            "collectives": step_comms,
            "gathered": {name: p.detach().clone() for name, p in whole.named_parameters()},
            "tied": tied,
            "still_tied": whole.get_output_embeddings().weight is whole.get_input_embeddings().weight,
            "plain": not any(isinstance(m, FSDPModule) for m in whole.modules()),
            "finite": bool(torch.isfinite(logits).all()),
        }
    network.record = record
    return outcomes
