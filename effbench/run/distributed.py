"""A run's train phase on several ranks: each rank trains and measures its own window, the launcher combines them.

The run's worker sends every rank the model as the apply phase left it; each rank lets the stack's
training techniques shape it, trains its share of every batch under DDP or FSDP with the stack's communication
technique, and measures the train phase with the same instruments as any window (its bytes handed to
collectives counted at each call). The windows are combined quantity by quantity by their declared rules
(energy and bytes summed, peak memory and wall clock the highest rank's, the loss curve averaged), and
rank 0's trained model goes on to be evaluated like any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from effbench.api.context import Measurement, RunContext
from effbench.api.technique import import_libraries
from effbench.errors import EffbenchError
from effbench.measure.device import CPU, available_devices, device_type
from effbench.measure.windows import Instruments
from effbench.plugins import Registry, registry
from effbench.records import StackEntry
from effbench.run.launch import run_ranks
from effbench.train.distributed import Parallel, counting_collectives


def check_ranks_needed(stack: tuple[StackEntry, ...], reg: Registry, ranks: int) -> None:
    """Refuse a technique that exchanges data between ranks with fewer ranks than it needs, or with nothing to train."""
    techniques = [reg.technique(entry.name) for entry in stack]
    for technique in techniques:
        if technique.min_ranks > ranks:
            raise EffbenchError(
                f"technique {technique.name!r} needs training.ranks >= {technique.min_ranks} (it exchanges "
                f"gradients between ranks), but the suite trains on {ranks}"
            )
    exchanging = [t.name for t in techniques if t.min_ranks > 1]
    if len(exchanging) > 1:
        raise EffbenchError(f"techniques {exchanging[0]!r} and {exchanging[1]!r} both choose how ranks exchange "
                            "gradients: stack one of them")  # fmt: skip
    if exchanging and all(t.min_ranks > 1 for t in techniques if t.phase == "train"):
        raise EffbenchError(
            f"technique {exchanging[0]!r} chooses how ranks exchange gradients and trains nothing itself: stack it "
            f"with a training technique, e.g. finetune-full + {exchanging[0]}"
        )


def check_rank_count(ranks: int, device: str) -> None:
    """Refuse more training ranks than the device offers: cpu cores for gloo, GPUs for NCCL (one rank each)."""
    kind = device_type(device)
    if kind not in (CPU, "cuda"):
        raise EffbenchError(f"distributed training (training.ranks {ranks}) runs on cpu or cuda, not {device!r}")
    offered = (os.cpu_count() or 1) if kind == CPU else len(available_devices())
    if ranks > offered:
        what = "cpu cores" if kind == CPU else "GPUs"
        raise EffbenchError(f"training.ranks is {ranks}, but this machine has {offered} {what}; ranks: 1 to {offered}")


@dataclass(frozen=True)
class TrainJob:
    """What every rank needs to train: the model and stack as the worker has them, and how to train them."""

    train: Callable[..., tuple[Any, Any]]  # the pipeline's train_stack(steps, model, tokenizer, ...)
    steps: list[Any]  # the stack's train-phase steps (technique, params)
    model: Any
    tokenizer: Any
    training: dict[str, Any]  # the suite's training settings
    dtype: str
    alone: bool
    technique: str
    params: dict[str, Any]
    settings: dict[str, Any]  # the run context's settings (country, prices, idle seconds) the instruments read


@dataclass
class RankOutcome:
    """One rank's train phase: what its window measured, its training run, and (rank 0) the trained model."""

    measurements: list[Measurement]
    training: Any
    warnings: list[str]
    model: Any = None


def train_rank(job: TrainJob, parallel: Parallel) -> RankOutcome:
    """In a rank: train the job's model on this rank's share, inside a window of every train-phase instrument."""
    import_libraries([step.technique for step in job.steps])  # the rank's own process: before its window
    instruments = Instruments(list(registry().metrics.values()))
    model = job.model.to(parallel.device)
    ctx = RunContext(model=model, tokenizer=job.tokenizer, technique=job.technique, params=job.params,
                     settings=job.settings, phase="train", device=parallel.device)  # fmt: skip
    opened = instruments.open(instruments.for_phase("train"), ctx)
    with counting_collectives():
        placement = (parallel.device, job.dtype)
        model, ctx.training = job.train(job.steps, model, job.tokenizer, job.training, placement, job.alone, parallel)
    measured = instruments.close(opened, ctx)
    return RankOutcome(measured, ctx.training, [*instruments.warnings, *ctx.warnings],
                       model if parallel.rank == 0 else None)  # fmt: skip


def train_on_ranks(
    job: TrainJob, ranks: int, device: str, instruments: Instruments, ctx: RunContext
) -> tuple[Any, list[Measurement]]:
    """Train on ``ranks`` ranks; rank 0's trained model and the ranks' windows combined (their warnings kept once)."""
    outcomes = run_ranks(ranks, device, train_rank, job)
    ctx.training = outcomes[0].training
    ctx.warnings += list(dict.fromkeys(w for outcome in outcomes for w in outcome.warnings))
    return outcomes[0].model, instruments.combine_ranks([outcome.measurements for outcome in outcomes])
