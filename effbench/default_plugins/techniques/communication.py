"""How the ranks of a distributed training exchange gradients: DDP communication hooks, ZeRO and FSDP sharding.

Each one stacks with a training technique (``finetune-full + ddp-fp16``) in a suite whose
``training.ranks`` is 2 or more; the bytes every rank hands to collectives are counted at each call
(``train_bytes_communicated``), so what a compression hook saves or sharding costs is measured, not assumed.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import Field

from effbench.api.technique import Technique
from effbench.api.training import Communication
from effbench.hookspecs import hookimpl

POWERSGD_START_STEP = 2  # the earliest step torch allows with error feedback: compression starts within any budget
POWERSGD_MIN_COMPRESSION = 2  # torch's default: a matrix is compressed when that shrinks it at least twofold


class _Exchange(Technique):
    """A system-stage technique of the train phase: it chooses the ranks' communication, and trains nothing itself."""

    stage = "system"
    phase = "train"
    resources = ("network", "computation")
    min_ranks = 2

    def communication(self, **params: Any) -> Communication:
        """The gradient exchange the ranks use."""
        raise NotImplementedError

    def training_options(self, model: Any, tokenizer: Any, **params: Any) -> dict[str, Any]:
        return {"communication": self.communication(**params)}


class _DefaultHook(_Exchange):
    """One of torch's default DDP communication hooks, by name, optionally with the optimizer state sharded."""

    hook: ClassVar[str]  # a function of torch.distributed.algorithms.ddp_comm_hooks.default_hooks
    shard_optimizer: ClassVar[bool] = False

    def communication(self) -> Communication:
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        return Communication(hook=getattr(default_hooks, self.hook), shard_optimizer=self.shard_optimizer)


class AllReduce(_DefaultHook):
    """Plain all-reduce of the float32 gradient buckets: the baseline of gradient communication."""

    name = "ddp-allreduce"
    hook = "allreduce_hook"
    description = "DistributedDataParallel's plain all-reduce of every gradient bucket: the communication baseline."
    references = ("https://arxiv.org/abs/2006.15704",)


class Fp16Compression(_DefaultHook):
    """Gradients cast to float16 for the all-reduce: half the bytes, back to float32 after."""

    name = "ddp-fp16"
    hook = "fp16_compress_hook"
    description = "Gradient buckets all-reduced in float16 (torch's fp16_compress_hook): half the bytes of all-reduce."
    references = ("https://pytorch.org/docs/stable/ddp_comm_hooks.html",)


class Bf16Compression(_DefaultHook):
    """Gradients cast to bfloat16 for the all-reduce: half the bytes, float32's range."""

    name = "ddp-bf16"
    hook = "bf16_compress_hook"
    devices = ("cuda",)  # torch's hook needs NCCL >= 2.10 (or XCCL): gloo has no bfloat16 all-reduce
    description = "Gradient buckets all-reduced in bfloat16 (torch's bf16_compress_hook): half the bytes, fp32 range."
    references = ("https://pytorch.org/docs/stable/ddp_comm_hooks.html",)


class PowerSGD(_Exchange):
    """Low-rank gradient compression: each large gradient matrix sent as two rank-r factors P and Q."""

    name = "ddp-powersgd"
    description = (
        f"PowerSGD (torch's powerSGD_hook): each gradient matrix compressed to rank-r factors P and Q from step "
        f"{POWERSGD_START_STEP}, with error feedback and warm start; vectors and matrices it would not shrink "
        f"{POWERSGD_MIN_COMPRESSION}-fold are all-reduced whole."
    )
    references = ("https://arxiv.org/abs/1905.13727",)

    def apply(self, model: Any, tokenizer: Any, *, rank: Annotated[int, Field(ge=1)] = 1) -> Any:
        return model

    def communication(self, rank: int) -> Communication:
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

        def state() -> Any:
            return powerSGD_hook.PowerSGDState(
                process_group=None,
                matrix_approximation_rank=rank,
                start_powerSGD_iter=POWERSGD_START_STEP,
                min_compression_rate=POWERSGD_MIN_COMPRESSION,
                random_seed=0,
            )

        return Communication(hook=powerSGD_hook.powerSGD_hook, state=state, serial=True)


class ZeroSharding(_DefaultHook):
    """ZeRO stage 1: each rank keeps and updates the optimizer state of its shard, then broadcasts its parameters."""

    name = "ddp-zero"
    hook = "allreduce_hook"
    shard_optimizer = True
    resources = ("memory", "network")
    description = (
        "ZeRO stage 1 (torch's ZeroRedundancyOptimizer) over DDP's all-reduce: each rank keeps 1/N of the optimizer "
        "state and broadcasts the parameters it updated."
    )
    references = ("https://arxiv.org/abs/1910.02054",)


class FullSharding(_Exchange):
    """FSDP2: parameters, gradients and optimizer state sharded over the ranks, each block gathered when it computes."""

    name = "fsdp"
    resources = ("memory", "network")
    description = (
        "FSDP2 (torch's fully_shard), ZeRO stage 3: each rank keeps 1/N of every parameter, gradient and optimizer "
        "state; each decoder block's parameters are all-gathered for its forward (again for its backward unless "
        "reshard=false) and its gradients reduce-scattered."
    )
    references = ("https://arxiv.org/abs/2304.11277", "https://arxiv.org/abs/1910.02054")

    def apply(self, model: Any, tokenizer: Any, *, reshard: bool = True) -> Any:
        return model

    def communication(self, reshard: bool) -> Communication:
        return Communication(shard_parameters=True, reshard_after_forward=reshard)


@hookimpl
def register_techniques(register):
    for technique in (AllReduce(), Fp16Compression(), Bf16Compression(), PowerSGD(), ZeroSharding(), FullSharding()):
        register(technique)
