"""Builtin techniques: the baseline, reduced-precision weights and unstructured magnitude pruning."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from effbench.hookspecs import hookimpl
from effbench.types import Technique


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

        return model.to({"bf16": torch.bfloat16, "fp16": torch.float16}[dtype])


def linear_layers(model: Any) -> list[tuple[str, Any]]:
    """The transformer blocks' linear layers (embeddings and the LM head are left alone)."""
    import torch

    head = model.get_output_embeddings()
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]


class PruneMagnitude(Technique):
    """Zero the smallest-magnitude weights of every linear layer (unstructured sparsity)."""

    name = "prune-magnitude"
    stage = "inference"
    resources = ("memory", "computation")
    description = "Unstructured magnitude pruning of linear layers, layer by layer."
    references = ("https://arxiv.org/abs/1506.02626",)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        sparsity: Annotated[float, Field(ge=0.0, lt=1.0, description="fraction of weights set to zero")] = 0.5,
    ) -> Any:
        import torch

        with torch.no_grad():
            for _, layer in linear_layers(model):
                weight = layer.weight
                k = int(sparsity * weight.numel())
                if k:
                    threshold = weight.abs().flatten().kthvalue(k).values
                    weight.masked_fill_(weight.abs() <= threshold, 0.0)
        return model


@hookimpl
def register_techniques(register):
    for technique in (Baseline(), Dtype(), PruneMagnitude()):
        register(technique)
