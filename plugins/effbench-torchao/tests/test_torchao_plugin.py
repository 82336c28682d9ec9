"""The torchao plugin loads through its entry point and really stores int8/int4 weights on micro-m."""

import effbench_torchao
import pytest
import torch

from effbench import EffbenchError
from effbench.config.suite import load_suite
from effbench.modeling import linear_layers, tensor_bytes, weight_bytes
from effbench.plugins import registry
from effbench.run.sweep import plan
from effbench.testing import registered
from tests.technique_helpers import applied

TECHNIQUES = ("torchao-int8-weight", "torchao-int4-weight", "torchao-int8-dynamic")


def _quantized(name, **params):
    """The original micro-m beside the one quantized by the plugin's technique ``name``."""
    base, _ = applied("baseline")
    model, tokenizer = applied(name, **params)
    return base, model, tokenizer


def test_entry_point_registers_every_technique():
    reg = registry()
    for name in TECHNIQUES:
        origin = reg.origins[("technique", reg.technique(name).name)]
        assert (origin.plugin, origin.distribution) == ("torchao", "effbench-torchao")
        assert reg.technique(name).stage == "inference"


def test_registers_in_process_without_errors():
    with registered(effbench_torchao) as reg:
        assert not reg.errors
        mine = {name for (_, name), origin in reg.origins.items() if origin.plugin == "effbench_torchao"}
        assert mine == set(TECHNIQUES)


@pytest.mark.parametrize(
    ("name", "params", "bound", "inner"),
    [
        ("torchao-int8-weight", {}, 0.3, "Int8Tensor"),
        ("torchao-int8-dynamic", {}, 0.3, "Int8Tensor"),
        ("torchao-int4-weight", {"group_size": 32}, 0.2, "Int4OpaqueTensor"),
    ],
)
def test_quantized_layers_hold_at_most_the_bound_of_fp32_bytes(name, params, bound, inner):
    base, model, tokenizer = _quantized(name, **params)
    originals = dict(linear_layers(base))
    for layer_name, layer in linear_layers(model):
        assert type(layer.weight).__name__ == inner, layer_name
        assert tensor_bytes(layer.weight) <= bound * originals[layer_name].weight.numel() * 4, layer_name
    assert weight_bytes(model) < weight_bytes(base)
    assert torch.equal(model.get_output_embeddings().weight, base.get_output_embeddings().weight)
    x = tokenizer("recall a=1 b=2 ? a=", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        quantized, exact = model(x).logits, base(x).logits
        out = model.generate(x, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert float((quantized - exact).norm() / exact.norm()) < 0.1  # same function up to quantization error
    assert out.shape[1] == x.shape[1] + 4


def test_int4_group_size_must_divide_the_layer_widths_before_any_run():
    suite = load_suite(techniques=["torchao-int4-weight:group_size=64"])
    with pytest.raises(EffbenchError, match=r"parameter 'group_size'.*got 64.*valid values for this model: 32"):
        plan(suite, registry(), "fp")


def test_int4_group_size_is_one_of_the_kernel_sizes():
    with pytest.raises(EffbenchError, match=r"parameter 'group_size': Input should be 32, 64 or 128"):
        registry().technique("torchao-int4-weight").validate({"group_size": 16})
