"""Builtin techniques: the baseline every run is compared with, and reduced-precision weights."""

from __future__ import annotations

from typing import Any, Literal

from effbench.api.technique import Technique
from effbench.errors import NotApplicable
from effbench.hookspecs import hookimpl


class Baseline(Technique):
    """The unmodified model every other technique is compared with."""

    name = "baseline"
    stage = "inference"
    resources = ("computation", "memory", "energy", "money")
    description = "The model as loaded: the reference for every relative figure."


class Dtype(Technique):
    """Cast weights and activations to a 16-bit floating-point type."""

    name = "dtype"
    stage = "inference"
    resources = ("memory", "computation", "energy")
    description = "Half-precision inference (bf16 or fp16): half the weight bytes of fp32."
    references = ("https://arxiv.org/abs/1710.03740",)

    def apply(self, model: Any, tokenizer: Any, *, dtype: Literal["bf16", "fp16"] = "bf16") -> Any:
        import torch

        target = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        floating = [p for p in model.parameters() if p.is_floating_point()]
        if all(p.dtype == target for p in floating):
            raise NotApplicable(f"the model's weights are {target} already")
        return model.to(target)


@hookimpl
def register_techniques(register):
    for technique in (Baseline(), Dtype()):
        register(technique)
