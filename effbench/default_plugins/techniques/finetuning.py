"""Full fine-tuning: every weight trained, the fine-tuning baseline parameter-efficient methods save on."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from effbench.api.technique import Technique
from effbench.hookspecs import hookimpl


class FinetuneFull(Technique):
    """Train every parameter of the model on the suite's training data and budget."""

    name = "finetune-full"
    stage = "finetuning"
    phase = "train"
    resources = ("computation", "memory", "energy", "money")
    description = "Full fine-tuning (AdamW on every weight): the fine-tuning baseline PEFT methods are compared with."
    references = ("https://arxiv.org/abs/1801.06146",)

    def apply(self, model: Any, tokenizer: Any, *, lr: Annotated[float, Field(gt=0, le=1)] = 1e-3) -> Any:
        return model.requires_grad_(True)

    def training_options(self, model: Any, tokenizer: Any, *, lr: float) -> dict[str, Any]:
        return {"learning_rate": lr}


@hookimpl
def register_techniques(register):
    register(FinetuneFull())
