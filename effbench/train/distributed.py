"""One rank of a distributed training: its share of every batch, the model under DDP, the bytes it exchanges.

The launcher (``effbench.run.launch``) starts the ranks and their process group; here a rank wraps the
model in ``DistributedDataParallel`` with the stack's communication hook, shards the optimizer state for
ZeRO, and counts the bytes of every tensor it hands to a ``torch.distributed`` collective, at the call,
into ``effbench.network`` — what a compression hook really sends, PowerSGD's own all-reduces included.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from effbench import network
from effbench.api.training import Communication
from effbench.measure.device import device_type

# torch.distributed collectives, each with where its outgoing tensor is: (position, keyword)
COLLECTIVES = {
    "all_reduce": (0, "tensor"),
    "broadcast": (0, "tensor"),
    "reduce": (0, "tensor"),
    "all_gather": (1, "tensor"),
    "all_gather_into_tensor": (1, "input_tensor"),
    "reduce_scatter_tensor": (1, "input"),
}


def payload_bytes(name: str, args: tuple, kwargs: dict[str, Any]) -> int:
    """Bytes of the tensor a rank hands to collective ``name`` (a receiver of a broadcast hands its buffer)."""
    position, keyword = COLLECTIVES[name]
    tensor = kwargs[keyword] if keyword in kwargs else args[position]
    return tensor.numel() * tensor.element_size()


@contextlib.contextmanager
def counting_collectives() -> Iterator[None]:
    """While inside, every call of a ``torch.distributed`` collective records its tensor's bytes; restored after.

    Hooks and optimizers call them as ``dist.all_reduce(...)`` (module attributes), also from the
    callbacks of futures (PowerSGD), so replacing the attributes sees every call made meanwhile.
    """
    import torch.distributed as dist

    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def counted(name: str, original: Any) -> Any:
        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            network.record(collective=payload_bytes(name, args, kwargs))
            return original(*args, **kwargs)

        return call

    for name, original in originals.items():
        setattr(dist, name, counted(name, original))
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def one_bucket_at_a_time(hook: Any) -> Any:
    """The hook, each bucket's exchange finished before it returns: every rank issues the collectives in one order."""

    def serial(state, bucket):  # type: ignore[no-untyped-def]  # DDP refuses a bucket annotated other than GradBucket
        future = hook(state, bucket)
        future.wait()
        return future

    return serial


def sharded(optimizer: Any) -> Any:
    """The same optimizer class and settings as ZeRO stage 1: each rank keeps the state of its shard only."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    accepted = inspect.signature(type(optimizer)).parameters
    settings = {key: value for key, value in optimizer.defaults.items() if key in accepted}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return ZeroRedundancyOptimizer(params, optimizer_class=type(optimizer), **settings)


@dataclass(frozen=True)
class Parallel:
    """This process's place in a distributed training: its rank among ``world`` ranks and its device."""

    rank: int
    world: int
    device: str

    def shard(self, rows: list[Any]) -> list[Any]:
        """This rank's share of a global batch: every ``world``-th example from its rank on."""
        return rows[self.rank :: self.world]

    def prepare(self, model: Any, optimizer: Any, communication: Communication | None) -> tuple[Any, Any]:
        """The model under DDP with the communication hook (plain all-reduce by default), and the optimizer.

        Buffers are not broadcast every step (``broadcast_buffers=False``): a decoder's buffers (rotary
        frequencies) are constants, and every byte exchanged is then one a collective was handed.
        """
        import torch
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        from torch.nn.parallel import DistributedDataParallel

        chosen = communication or Communication()
        device_ids = [torch.device(self.device).index] if device_type(self.device) == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        hook = chosen.hook or default_hooks.allreduce_hook
        if chosen.serial and device_type(self.device) != "cuda":  # NCCL orders them by stream
            hook = one_bucket_at_a_time(hook)
        wrapped.register_comm_hook(chosen.state() if chosen.state else None, hook)
        return wrapped, sharded(optimizer) if chosen.shard_optimizer else optimizer
