"""The optimizers a training run can use, and the bytes of state each keeps: what a low-memory optimizer saves."""

from __future__ import annotations

from typing import Any

DEFAULT = "adamw"  # the loop's own optimizer: the reference the others are compared with
OPTIMIZERS = (DEFAULT, "adafactor")  # adafactor: factored second moments, no first moment
ALTERNATIVES = tuple(name for name in OPTIMIZERS if name != DEFAULT)  # what the ``optimizer`` technique can choose


def build(name: str, parameters: list[Any], lr: float) -> Any:
    """The optimizer ``name`` over ``parameters``; the loop sets each group's ``lr`` at every step."""
    import torch

    if name == DEFAULT:
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        # the loop's schedule, not Adafactor's own relative step size: the rate is comparable with AdamW's
        return Adafactor(parameters, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise ValueError(f"unknown optimizer {name!r}; optimizers: {', '.join(OPTIMIZERS)}")


def state_bytes(optimizer: Any) -> int:
    """Bytes of the tensors the optimizer keeps per parameter (moments, step counts): its memory beyond the weights.

    A sharded tensor (FSDP's DTensor) counts this rank's shard, the memory it takes here; ZeRO's optimizer keeps
    its shard's state in the local optimizer it wraps.
    """
    import torch
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.distributed.tensor import DTensor

    kept = optimizer.optim if isinstance(optimizer, ZeroRedundancyOptimizer) else optimizer
    return sum(
        (value.to_local() if isinstance(value, DTensor) else value).numel() * value.element_size()
        for state in kept.state.values()
        for value in state.values()
        if isinstance(value, torch.Tensor)
    )
