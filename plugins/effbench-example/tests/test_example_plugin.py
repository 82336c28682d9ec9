"""The example plugin is discovered through its installed entry point and really changes the model."""

from effbench.plugins import registry
from effbench.reference.zoo import load


def test_entry_point_registers_the_technique():
    reg = registry()
    technique = reg.technique("example-drop-last-layers")
    origin = reg.origins[("technique", technique.name)]
    assert (origin.plugin, origin.distribution) == ("example", "effbench-example")


def test_technique_drops_layers():
    model, tokenizer = load("zoo:micro-m")
    before = len(model.get_decoder().layers)
    technique = registry().technique("example-drop-last-layers")
    model = technique.apply(model, tokenizer, **technique.validate({"layers": 1}))
    assert len(model.get_decoder().layers) == before - 1
    out = model(**tokenizer("copy abc > ", return_tensors="pt"))
    assert out.logits.shape[-1] == len(tokenizer)
