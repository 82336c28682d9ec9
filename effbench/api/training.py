"""What a training-stage technique can set of the training loop, and the finished training run metrics read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from effbench.errors import EffbenchError


@dataclass(frozen=True)
class Distillation:
    """Logit knowledge distillation: the teacher whose softened next-token distributions the student learns too."""

    teacher: Any  # the teacher model, loaded like the student (same device and dtype), in eval mode, never trained
    temperature: float = 2.0  # both distributions are softened by it; the KD term is scaled by its square
    alpha: float = 0.5  # the KD term's weight; the usual cross-entropy gets 1 - alpha


@dataclass(frozen=True)
class Communication:
    """How the ranks of a distributed training exchange gradients and optimizer state (a system-stage technique's)."""

    # a DistributedDataParallel communication hook (state, bucket) -> Future; None: plain all-reduce
    hook: Callable[[Any, Any], Any] | None = None
    state: Callable[[], Any] | None = None  # builds the hook's state once the process group exists (PowerSGD)
    shard_optimizer: bool = False  # ZeRO stage 1: each rank keeps and updates one shard of the optimizer state
    # the hook issues collectives from its futures' callbacks (PowerSGD): on gloo, which matches collectives by
    # the order each rank issues them, each bucket's exchange then finishes before the next bucket's begins
    serial: bool = False
    # FSDP2 (``fully_shard``) instead of DDP: parameters, gradients and optimizer state sharded over the ranks, each
    # decoder block's parameters gathered for its forward and backward; ``hook`` and ``shard_optimizer`` then unused
    shard_parameters: bool = False
    reshard_after_forward: bool = True  # FSDP: free a block's gathered parameters after its forward, gather again


@dataclass(frozen=True)
class TrainingOptions:
    """The loop's settings a technique's ``training_options`` may return (each set by one technique of a stack)."""

    learning_rate: float = 1e-3  # the optimizer's peak rate, constant after a 10 % linear warm-up
    optimizer: str = "adamw"  # one of effbench.train.optim.OPTIMIZERS
    gradient_checkpointing: bool = False  # recompute the blocks' activations in backward instead of keeping them
    autocast_dtype: str | None = None  # "bfloat16": forward and loss under torch.autocast (mixed precision)
    packing: bool = False  # examples concatenated into full max_length rows (no padding) instead of one per row
    distillation: Distillation | None = None  # a teacher to learn from besides the labels (the ``distill`` technique)
    communication: Communication | None = None  # distributed runs: the gradient exchange (default: all-reduce)

    @classmethod
    def merged(cls, chosen: list[tuple[str, dict[str, Any]]]) -> TrainingOptions:
        """The options a stack's techniques chose, as (technique name, options); unknown keys and clashes are errors."""
        known = [f.name for f in fields(cls)]
        merged: dict[str, Any] = {}
        setter: dict[str, str] = {}
        for technique, options in chosen:
            for key in options:
                if key not in known:
                    raise EffbenchError(
                        f"technique {technique!r} sets unknown training option {key!r}; options: {', '.join(known)}"
                    )
                if key in merged:
                    raise EffbenchError(
                        f"techniques {setter[key]!r} and {technique!r} both set training option {key!r}"
                    )
                merged[key], setter[key] = options[key], technique
        return cls(**merged)


@dataclass
class TrainingRun:
    """One bounded training run as it happened: what the training metrics report."""

    losses: list[float] = field(default_factory=list)  # the loss of every optimizer step, in order
    step_ends: list[float] = field(default_factory=list)  # seconds from the loop's start to each step's end
    tokens: int = 0  # target tokens trained on (labels that count in the loss; padding and prompts excluded)
    computed_tokens: int = 0  # positions the model computed (padding included): what FLOPs and MFU count
    flops: float | None = None  # FLOPs of the whole run (forward and backward), from a counted first step
    trainable_parameters: int = 0
    total_parameters: int = 0
    checkpoint_bytes: int = 0  # the trained parameters saved as safetensors: an adapter, or the whole model
    optimizer_state_bytes: int = 0  # the optimizer's state tensors once trained (moments, step counts)
    target_loss: float | None = None  # the suite's target; steps_to_target counts steps until the loss reached it
    peak_flops_per_s: float | None = None  # the device's peak for the run's dtype, when known
    no_peak_reason: str = ""  # why the peak (and so MFU) is unknown

    @property
    def steps(self) -> int:
        """Optimizer steps taken."""
        return len(self.losses)

    @property
    def steps_to_target(self) -> int | None:
        """Steps until the loss first reached the target loss (None: never, or no target)."""
        if self.target_loss is None:
            return None
        return next((i + 1 for i, loss in enumerate(self.losses) if loss <= self.target_loss), None)

    @property
    def time_to_target(self) -> float | None:
        """Seconds from the loop's start to the end of the step whose loss first reached the target (None: never)."""
        reached = self.steps_to_target
        return None if reached is None else self.step_ends[reached - 1]
