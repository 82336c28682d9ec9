"""One rank of a distributed training: its share of every batch, the model under DDP or FSDP, the bytes it exchanges.

The launcher (``effbench.run.launch``) starts the ranks and their process group; here a rank wraps the
model in ``DistributedDataParallel`` with the stack's communication hook (sharding the optimizer state for
ZeRO), or shards its parameters with FSDP2's ``fully_shard``, and counts the bytes of every tensor it hands
to a ``torch.distributed`` collective or a DTensor's functional one, at the call, into ``effbench.network``:
what a compression hook really sends, PowerSGD's own all-reduces and FSDP's gradient-norm all-reduce included.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from effbench import network
from effbench.api.training import Communication
from effbench.errors import EffbenchError
from effbench.measure.device import device_type

# the modules whose collectives a rank calls, each collective with where its outgoing tensor is: (position, keyword);
# a collective missing from the installed torch is skipped. The functional ones are DTensor's (FSDP2's gradient
# norm); only those that call no other of them, so a call is counted once.
COLLECTIVES = {
    "torch.distributed": {
        "all_reduce": (0, "tensor"),
        "broadcast": (0, "tensor"),
        "reduce": (0, "tensor"),
        "all_gather": (1, "tensor"),
        "all_gather_into_tensor": (1, "input_tensor"),
        "all_gather_single": (1, "input_tensor"),
        "reduce_scatter_tensor": (1, "input"),
        "reduce_scatter_single": (1, "input"),
    },
    "torch.distributed._functional_collectives": {
        "all_reduce": (0, "self"),
        "broadcast": (0, "self"),
        "all_gather_single": (0, "self"),
        "reduce_scatter_single": (0, "self"),
        "all_to_all_single": (0, "self"),
    },
}


# set inside ``uncounted``: a one-off exchange that is not the training's (gathering the trained model whole)
_uncounted = contextvars.ContextVar("uncounted", default=False)


def payload_bytes(where: tuple[int, str], args: tuple, kwargs: dict[str, Any]) -> int:
    """Bytes of the tensor a rank hands to a collective (a receiver of a broadcast hands its buffer)."""
    position, keyword = where
    tensor = kwargs[keyword] if keyword in kwargs else args[position]
    return tensor.numel() * tensor.element_size()


@contextlib.contextmanager
def counting_collectives() -> Iterator[None]:
    """While inside, every call of a collective records its tensor's bytes; restored after.

    Hooks, optimizers and FSDP call them as ``dist.all_reduce(...)`` (module attributes), also from the
    callbacks of futures (PowerSGD), so replacing the attributes sees every call made meanwhile.
    ``torch.distributed``'s own collectives calling each other go through their module's globals, not these.
    """
    originals = [
        (module, name, getattr(module, name), where)
        for module_name, collectives in COLLECTIVES.items()
        for module in [importlib.import_module(module_name)]
        for name, where in collectives.items()
        if hasattr(module, name)
    ]

    def counted(original: Any, where: tuple[int, str]) -> Any:
        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not _uncounted.get():
                network.record(collective=payload_bytes(where, args, kwargs))
            return original(*args, **kwargs)

        return call

    for module, name, original, where in originals:
        setattr(module, name, counted(original, where))
    try:
        yield
    finally:
        for module, name, original, _ in originals:
            setattr(module, name, original)


@contextlib.contextmanager
def uncounted() -> Iterator[None]:
    """Collectives called inside (in this thread) are not counted as the training's communication."""
    token = _uncounted.set(True)
    try:
        yield
    finally:
        _uncounted.reset(token)


def one_bucket_at_a_time(hook: Any) -> Any:
    """The hook, each bucket's exchange finished before it returns: every rank issues the collectives in one order."""

    def serial(state, bucket):  # type: ignore[no-untyped-def]  # DDP refuses a bucket annotated other than GradBucket
        future = hook(state, bucket)
        future.wait()
        return future

    return serial


def same_settings(optimizer: Any) -> dict[str, Any]:
    """The optimizer's settings its class accepts again: to build the same optimizer over other parameters."""
    accepted = inspect.signature(type(optimizer)).parameters
    return {key: value for key, value in optimizer.defaults.items() if key in accepted}


def sharded(optimizer: Any) -> Any:
    """The same optimizer class and settings as ZeRO stage 1: each rank keeps the state of its shard only."""
    from torch.distributed.optim import ZeroRedundancyOptimizer

    params = [p for group in optimizer.param_groups for p in group["params"]]
    return ZeroRedundancyOptimizer(params, optimizer_class=type(optimizer), **same_settings(optimizer))


def check_updates_shards(optimizer: Any) -> None:
    """Refuse, before sharding, an optimizer that cannot update FSDP's DTensor shards (torch.optim's ones can)."""
    kind = type(optimizer)
    if not kind.__module__.startswith("torch.optim"):
        raise EffbenchError(
            f"fsdp shards the parameters as DTensors, which {kind.__module__}.{kind.__name__} cannot update; "
            "train with a torch.optim optimizer (AdamW, the loop's default) under fsdp"
        )


def meta_copy(model: Any) -> Any:
    """The model's structure, its parameters on the meta device (no memory), its buffers and the rest copied."""
    import torch

    memo = {
        id(p): torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    return copy.deepcopy(model, memo)


def gathered(sharded_model: Any, skeleton: Any) -> Any:
    """The trained model whole again: every rank gathers each sharded parameter into ``skeleton`` (a meta copy).

    Parameters tied in the model (an embedding and its output layer) are one parameter of the copy too. The
    gather is a one-off after training (as DDP's first broadcast of rank 0's weights), not counted as its bytes.
    """
    import torch

    with uncounted():
        whole = {name: p.full_tensor().detach() for name, p in sharded_model.named_parameters()}
    replaced = {
        id(p): torch.nn.Parameter(whole[name], requires_grad=p.requires_grad) for name, p in skeleton.named_parameters()
    }
    for module in skeleton.modules():
        for key, p in list(module.named_parameters(recurse=False, remove_duplicate=False)):
            module.register_parameter(key, replaced[id(p)])
    buffers = dict(skeleton.named_buffers())
    for name, buffer in sharded_model.named_buffers():
        buffers[name].copy_(buffer)
    return skeleton


def fully_sharded(model: Any, device: str, world: int, reshard_after_forward: bool) -> Any:
    """The model under FSDP2 in place: each decoder block a unit (gathered alone), the rest of the model one more.

    The blocks are the modules of the classes the model declares unsplittable (transformers'
    ``_no_split_modules``, which accelerate's FSDP wrapping also uses); a model declaring none is one unit.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type(device), (world,))
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for block in [module for module in model.modules() if type(module).__name__ in blocks]:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)


@dataclass(frozen=True)
class Prepared:
    """A rank's model and optimizer for the loop, and how to get the trained model back whole once the loop ends."""

    model: Any
    optimizer: Any
    trained: Callable[[], Any]


@dataclass(frozen=True)
class Parallel:
    """This process's place in a distributed training: its rank among ``world`` ranks and its device."""

    rank: int
    world: int
    device: str

    def shard(self, rows: list[Any]) -> list[Any]:
        """This rank's share of a global batch: every ``world``-th example from its rank on."""
        return rows[self.rank :: self.world]

    def prepare(self, model: Any, optimizer: Any, communication: Communication | None) -> Prepared:
        """The model under DDP with the communication hook (plain all-reduce by default), or sharded by FSDP2.

        Under DDP, buffers are not broadcast every step (``broadcast_buffers=False``): a decoder's buffers
        (rotary frequencies) are constants, and every byte exchanged is then one a collective was handed.
        Under FSDP the optimizer is built again over the sharded parameters, with the same class and settings.
        """
        import torch
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        from torch.nn.parallel import DistributedDataParallel

        chosen = communication or Communication()
        if chosen.shard_parameters:
            check_updates_shards(optimizer)
            skeleton = meta_copy(model)
            fully_sharded(model, self.device, self.world, chosen.reshard_after_forward)
            shards = [p for p in model.parameters() if p.requires_grad]
            rebuilt = type(optimizer)(shards, **same_settings(optimizer))
            return Prepared(model, rebuilt, lambda: gathered(model, skeleton))
        device_ids = [torch.device(self.device).index] if device_type(self.device) == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)
        hook = chosen.hook or default_hooks.allreduce_hook
        if chosen.serial and device_type(self.device) != "cuda":  # NCCL orders them by stream
            hook = one_bucket_at_a_time(hook)
        wrapped.register_comm_hook(chosen.state() if chosen.state else None, hook)
        return Prepared(wrapped, sharded(optimizer) if chosen.shard_optimizer else optimizer, lambda: model)
