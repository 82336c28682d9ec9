"""Training-system techniques: how a run trains, not what it trains (checkpointing, mixed precision, optimizer).

Each sets one ``TrainingOptions`` field for the loop and stacks with the technique that chooses the
trained parameters (``finetune-full``, ``lora``, ``pretrain-scratch``, ...); alone, the loop trains
every weight of the model as loaded, at the default learning rate of ``finetune-full``.
"""

from __future__ import annotations

from typing import Any, Literal

from effbench.api.technique import Technique
from effbench.errors import NotApplicable
from effbench.hookspecs import hookimpl
from effbench.train.optim import ALTERNATIVES


class GradientCheckpointing(Technique):
    """Keep only each block's input in the forward pass and recompute the rest in backward."""

    name = "gradient-checkpointing"
    stage = "system"
    phase = "train"
    resources = ("memory",)
    description = (
        "Gradient checkpointing: each block's activations recomputed in backward instead of kept "
        "(non-reentrant torch checkpoints): less training memory for more compute."
    )
    references = ("https://arxiv.org/abs/1604.06174",)

    def apply(self, model: Any, tokenizer: Any) -> Any:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise NotApplicable(f"{type(model).__name__} does not support gradient checkpointing")
        return model

    def training_options(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"gradient_checkpointing": True}


class AutocastBf16(Technique):
    """Mixed precision: float32 weights and optimizer, bfloat16 matmuls in the forward pass."""

    name = "autocast-bf16"
    stage = "system"
    phase = "train"
    resources = ("computation", "memory", "energy")
    description = (
        "bf16 mixed precision: forward and loss under torch.autocast(bfloat16), weights, gradients and "
        "optimizer state kept in float32."
    )
    references = ("https://arxiv.org/abs/1710.03740",)

    def apply(self, model: Any, tokenizer: Any) -> Any:
        import torch

        floating = [p for p in model.parameters() if p.is_floating_point()]
        if all(p.dtype in (torch.bfloat16, torch.float16) for p in floating):
            raise NotApplicable(f"the model's weights are {floating[0].dtype} already: autocast would lower nothing")
        return model

    def training_options(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"autocast_dtype": "bfloat16"}


class Optimizer(Technique):
    """Another optimizer than AdamW: Adafactor keeps factored second moments and no first moment."""

    name = "optimizer"
    stage = "system"
    phase = "train"
    resources = ("memory",)
    description = (
        "The training optimizer: adafactor (transformers' Adafactor: row and column second-moment factors, "
        "no momentum) in place of AdamW's two full moments; its state size is the run's optimizer_state_size."
    )
    references = ("https://arxiv.org/abs/1804.04235",)

    def apply(self, model: Any, tokenizer: Any, *, name: Literal[ALTERNATIVES] = "adafactor") -> Any:
        return model

    def training_options(self, model: Any, tokenizer: Any, *, name: str) -> dict[str, Any]:
        return {"optimizer": name}


@hookimpl
def register_techniques(register):
    for technique in (GradientCheckpointing(), AutocastBf16(), Optimizer()):
        register(technique)
