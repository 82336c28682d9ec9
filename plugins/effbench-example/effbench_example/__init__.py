"""An example technique plugin: drops the last transformer layers (depth pruning in its simplest form)."""

from typing import Annotated, Any

from pydantic import Field

from effbench import Technique, hookimpl
from effbench.modeling import decoder_layers, replace_decoder_layers


class DropLastLayers(Technique):
    """Keep only the first layers of a decoder: fewer parameters and FLOPs per token."""

    name = "example-drop-last-layers"
    stage = "inference"
    resources = ("computation", "memory")
    description = "Remove the last `layers` decoder layers (example plugin)."

    def preflight(self, config: Any, *, layers: int) -> None:
        if layers >= config.num_hidden_layers:
            raise ValueError(f"layers={layers}: the model has only {config.num_hidden_layers} decoder layers")

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        layers: Annotated[int, Field(ge=1, description="decoder layers removed from the top")] = 1,
    ) -> Any:
        total = len(decoder_layers(model))  # GPT-2's transformer.h, Llama's model.layers, …
        self.preflight(model.config, layers=layers)
        replace_decoder_layers(model, list(range(total - layers)))
        return model


@hookimpl
def register_techniques(register):
    register(DropLastLayers())
