"""torchao quantization techniques for effbench: int8/int4 weight-only and int8 dynamic activation.

torchao is imported inside the methods only: importing it costs seconds, and ``effbench plugins``
or a run of another technique should not pay for it. ``imports`` names it, so a run of these techniques
imports it before its windows open: the seconds are not counted as the technique's apply time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from effbench import EffbenchError, NotApplicable, Technique, hookimpl
from effbench.modeling import check_divides, linear_layers

INT4_GROUP_SIZES = (32, 64, 128)


def quantize_blocks(model: Any, config: Any) -> Any:
    """Apply a torchao config to the transformer blocks' linear layers (not embeddings, not the LM head)."""
    from torchao.quantization import quantize_

    targets = {name for name, _ in linear_layers(model)}
    if not targets:
        raise NotApplicable(f"{type(model).__name__}'s decoder blocks hold no linear layer to quantize")
    quantize_(model, config, filter_fn=lambda module, fqn: fqn in targets)
    quantized = sum(hasattr(m.weight, "__tensor_flatten__") for name, m in model.named_modules() if name in targets)
    if quantized < len(targets):
        raise EffbenchError(f"torchao quantized {quantized} of the {len(targets)} linear layers")
    return model


class TorchaoTechnique(Technique):
    """A torchao quantization technique: subclasses build the torchao config."""

    stage = "inference"
    resources: ClassVar[tuple[str, ...]] = ("memory", "computation")
    imports = ("torchao.quantization",)

    def config(self, **params: Any) -> Any:
        """The torchao ``AOBaseConfig`` to apply."""
        raise NotImplementedError

    def apply(self, model: Any, tokenizer: Any) -> Any:
        return quantize_blocks(model, self.config())


class Int8Weight(TorchaoTechnique):
    """int8 weights with one scale per output row; activations stay in floating point."""

    name = "torchao-int8-weight"
    resources = ("memory",)
    description = "torchao int8 weight-only quantization of the blocks' linear layers (per-row scales)."
    references = ("https://github.com/pytorch/ao",)

    def config(self) -> Any:
        from torchao.quantization import Int8WeightOnlyConfig

        return Int8WeightOnlyConfig(set_inductor_config=False)


class Int4Weight(TorchaoTechnique):
    """int4 weights, two per byte, with a scale and zero point per group of input weights (CPU kernel)."""

    name = "torchao-int4-weight"
    description = "torchao int4 weight-only quantization (groupwise, CPU tinygemm kernel) of the blocks' linear layers."
    references = ("https://github.com/pytorch/ao", "https://arxiv.org/abs/2210.17323")
    devices = ("cpu",)  # the prototype int4 config packs for the CPU kernel
    imports = ("torchao.quantization", "torchao.prototype.quantization.int4.inference_workflow")

    def preflight(self, config: Any, *, group_size: int) -> None:
        check_divides("group_size", group_size, config, INT4_GROUP_SIZES)

    def config(self, *, group_size: int) -> Any:
        from torchao.prototype.quantization.int4.inference_workflow import PrototypeInt4WeightOnlyConfig

        return PrototypeInt4WeightOnlyConfig(group_size=group_size, set_inductor_config=False)

    def apply(self, model: Any, tokenizer: Any, *, group_size: Literal[32, 64, 128] = 32) -> Any:
        self.preflight(model.config, group_size=group_size)
        if model.device.type != "cpu":
            raise ValueError(f"torchao-int4-weight uses torchao's CPU int4 kernel; the model is on {model.device}")
        return quantize_blocks(model, self.config(group_size=group_size))


class Int8Dynamic(TorchaoTechnique):
    """int8 weights and int8 activations quantized per token at run time: integer matrix multiplies."""

    name = "torchao-int8-dynamic"
    resources = ("memory", "computation")
    description = "torchao int8 dynamic-activation, int8-weight quantization of the blocks' linear layers."
    references = ("https://github.com/pytorch/ao", "https://arxiv.org/abs/2208.07339")

    def config(self) -> Any:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig

        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)


@hookimpl
def register_techniques(register: Callable[[Technique], None]) -> None:
    """effbench's hook: offer the three torchao techniques."""
    for technique in (Int8Weight(), Int4Weight(), Int8Dynamic()):
        register(technique)
