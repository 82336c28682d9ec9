"""Pre-training recipes: a model trained from scratch under the suite's budget, and sequence packing."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from effbench.api.technique import Technique
from effbench.errors import NotApplicable
from effbench.hookspecs import hookimpl


class PretrainScratch(Technique):
    """Discard the loaded weights: a fresh model of the same config, initialised from the suite's training seed."""

    name = "pretrain-scratch"
    stage = "pretraining"
    phase = "train"
    resources = ("computation", "energy", "money")
    description = (
        "Pre-training from scratch: the model re-initialised from its config (seeded by training.seed), "
        "every weight trained within the budget; compare recipes by time and energy to the target loss."
    )
    references = ("https://arxiv.org/abs/1910.01500",)  # MLPerf Training: time to a target quality

    def apply(self, model: Any, tokenizer: Any, *, lr: Annotated[float, Field(gt=0, le=1)] = 3e-3) -> Any:
        from transformers import AutoModelForCausalLM

        fresh = AutoModelForCausalLM.from_config(
            model.config, dtype=model.dtype, attn_implementation=model.config._attn_implementation
        )
        fresh.generation_config = model.generation_config
        return fresh.to(model.device).requires_grad_(True)

    def training_options(self, model: Any, tokenizer: Any, *, lr: float) -> dict[str, Any]:
        return {"learning_rate": lr}


class Packing(Technique):
    """Fill every row: examples back to back, each closed by <eos>, so no position is padding."""

    name = "packing"
    stage = "pretraining"
    phase = "train"
    resources = ("computation", "energy")
    description = (
        "Sequence packing: training examples concatenated (each closed by <eos>) into full max_length rows, "
        "so no computed position is padding; batch_size counts rows."
    )
    references = ("https://arxiv.org/abs/2107.02027",)

    def apply(self, model: Any, tokenizer: Any) -> Any:
        if tokenizer.eos_token_id is None:
            raise NotApplicable("the tokenizer has no end-of-sequence token to separate packed examples")
        return model

    def training_options(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"packing": True}


@hookimpl
def register_techniques(register):
    for technique in (PretrainScratch(), Packing()):
        register(technique)
