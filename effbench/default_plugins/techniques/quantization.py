"""Builtin quantization with core dependencies only: torch-native dynamic int8 and an fp8 KV cache.

torchao's weight-only int8/int4 and int8 dynamic-activation techniques ship separately, in the
first-party distribution ``plugins/effbench-torchao``.
"""

from __future__ import annotations

from typing import Any

from effbench.api.technique import Technique
from effbench.default_plugins.techniques.attention import check_cache
from effbench.errors import EffbenchError, NotApplicable
from effbench.hookspecs import hookimpl
from effbench.modeling import linear_layers


class DynamicInt8(Technique):
    """int8 weights with activations quantized on the fly, using torch's own CPU kernels (fbgemm/x86)."""

    name = "dynamic-int8"
    stage = "inference"
    resources = ("memory", "computation")
    description = "torch-native dynamic int8 quantization of the blocks' linear layers (CPU kernels)."
    references = ("https://arxiv.org/abs/1712.05877",)
    devices = ("cpu",)  # torch's dynamic quantized Linear has fbgemm/qnnpack kernels only

    def apply(self, model: Any, tokenizer: Any) -> Any:
        import torch
        from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear
        from torch.ao.quantization import quantize_dynamic

        targets = {name for name, layer in linear_layers(model) if layer.weight.dtype == torch.float32}
        if not targets:
            raise NotApplicable(
                "no float32 linear layer in the decoder blocks (torch's dynamic int8 takes float32 ones)"
            )
        model = quantize_dynamic(model, qconfig_spec=targets, dtype=torch.qint8, inplace=True)
        quantized = sum(isinstance(m, QuantizedLinear) for m in model.modules())
        if quantized < len(targets):
            raise EffbenchError(f"dynamic int8 quantized {quantized} of the {len(targets)} linear layers")
        return model


class KVCacheQuant(Technique):
    """Store generation's key/value cache in fp8 (a quarter of fp32's bytes), dequantized on use."""

    name = "kv-cache-quant"
    stage = "inference"
    resources = ("memory",)
    description = (
        "transformers' QuantizedCache with its fp8 backend (per-tensor scale) for every generation; "
        "the quanto and HQQ backends need packages that are not effbench dependencies."
    )
    references = ("https://arxiv.org/abs/2402.02750",)

    def preflight(self, config: Any) -> None:
        sliding = sorted(set(getattr(config, "layer_types", None) or ()) - {"full_attention"})
        if sliding:
            raise NotApplicable(
                f"transformers' QuantizedCache needs full-attention layers only; this model has {sliding}"
            )

    def apply(self, model: Any, tokenizer: Any) -> Any:
        self.preflight(model.config)
        check_cache(self, model, tokenizer, "QuantizedCache")
        return model

    def generation_kwargs(self, model: Any, tokenizer: Any) -> dict[str, Any]:
        return {"cache_implementation": "quantized", "cache_config": {"backend": "fp8"}}


@hookimpl
def register_techniques(register):
    for technique in (DynamicInt8(), KVCacheQuant()):
        register(technique)
