"""An example technique plugin: drops the last transformer layers (depth pruning in its simplest form)."""

from typing import Annotated, Any

from pydantic import Field

from effbench import Technique, hookimpl


class DropLastLayers(Technique):
    """Keep only the first layers of a decoder: fewer parameters and FLOPs per token."""

    name = "example-drop-last-layers"
    stage = "inference"
    resources = ("computation", "memory")
    description = "Remove the last `layers` decoder layers (example plugin)."

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        layers: Annotated[int, Field(ge=0, description="decoder layers removed from the top")] = 1,
    ) -> Any:
        decoder = model.get_decoder()
        if layers >= len(decoder.layers):
            raise ValueError(f"layers={layers}: the model has only {len(decoder.layers)} decoder layers")
        decoder.layers = decoder.layers[: len(decoder.layers) - layers]
        model.config.num_hidden_layers = len(decoder.layers)
        return model


@hookimpl
def register_techniques(register):
    register(DropLastLayers())
