"""The peft plugin loads through its entry point, and each method trains few weights, really changed, then merged."""

import effbench_peft
import pytest
import torch

from effbench import EffbenchError
from effbench.config.suite import load_suite
from effbench.default_plugins.executors import InlineExecutor
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.run.sweep import check_parameters, preflight, run_suite
from effbench.store.load import load
from effbench.testing import registered
from tests.training_helpers import trained, training_suite

TECHNIQUES = ("lora", "dora", "qlora", "ia3")


def test_entry_point_registers_every_technique_as_a_training_one():
    reg = registry()
    for name in TECHNIQUES:
        origin = reg.origins[("technique", name)]
        assert (origin.plugin, origin.distribution) == ("peft", "effbench-peft")
        assert (reg.technique(name).stage, reg.technique(name).phase) == ("finetuning", "train")


def test_registers_in_process_without_errors():
    with registered(effbench_peft) as reg:
        assert not reg.errors
        assert {name for (_, name), o in reg.origins.items() if o.plugin == "effbench_peft"} == set(TECHNIQUES)


def _adapted(name, params):
    """micro-m trained with ``name`` for a few steps: the base weights, the adapter before merging, the merged model."""
    model, tokenizer = zoo.load("zoo:micro-m")
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    technique = registry().technique(name)
    merged = []
    original = technique.after_training

    def keep_adapter(model, tokenizer, **params):  # look at the trained adapter before it is merged away
        merged.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        return original(model, tokenizer, **params)

    technique.after_training = keep_adapter
    try:
        model, run = trained(model, tokenizer, (name, params), steps=16, batch_size=16)  # LoRA's loss spikes first
    finally:
        del technique.after_training
    return base, merged[0], model, run


@pytest.mark.parametrize(
    ("name", "params", "adapted", "untouched", "at_most_pct"),
    [
        ("lora", {}, "q_proj", "k_proj", 2.0),
        ("dora", {"target_modules": ["q_proj", "v_proj", "o_proj"]}, "o_proj", "up_proj", 3.0),
        ("ia3", {}, "down_proj", "q_proj", 0.25),
    ],
)
def test_each_method_trains_a_small_share_and_the_merged_model_carries_it(
    name, params, adapted, untouched, at_most_pct
):
    base, adapter, model, run = _adapted(name, params)
    assert 0 < 100 * run.trainable_parameters / run.total_parameters <= at_most_pct
    assert run.trainable_parameters == sum(p.numel() for p in adapter.values())
    assert sum(run.losses[-3:]) < sum(run.losses[:3])  # the loss fell
    if name != "ia3":  # LoRA's B starts at zero: trained, it is not
        assert all(p.abs().sum() > 0 for n, p in adapter.items() if "lora_B" in n)
    else:  # IA3's vectors start at one
        assert any(not torch.equal(p, torch.ones_like(p)) for p in adapter.values())
    assert run.checkpoint_bytes < 0.05 * sum(p.numel() * 4 for p in base.values())  # an adapter, not a model
    after = dict(model.named_parameters())
    assert set(after) == set(base)  # merged: a plain model again, no adapter left
    changed = {n.split(".")[-2] for n in base if not torch.equal(base[n], after[n].detach())}
    assert adapted in changed and untouched not in changed


def test_lora_initialises_its_adapter_from_the_seed():
    curves = []
    for _ in range(2):
        model, tokenizer = zoo.load("zoo:micro-m")
        curves.append(trained(model, tokenizer, ("lora", {}), steps=3)[1].losses)
    assert curves[0] == curves[1]


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        ("lora:r=100", "technique 'lora' cannot run on zoo:micro-m: rank r=100 is above the width 80 of layer "),
        ("dora:target_modules=w_fancy", "target modules 'w_fancy' are not linear layers of llama; its linear "
                                        "layers: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj"),
        ("ia3:feedforward_modules=up_proj", "feedforward_modules must be among target_modules; "),
        ("lora:r=0", "technique 'lora': parameter 'r': Input should be greater than or equal to 1"),
    ],
)  # fmt: skip
def test_impossible_parameters_are_refused_before_any_run(technique, message):
    suite = load_suite(None, techniques=[technique])
    with pytest.raises(EffbenchError) as err:
        preflight(suite, registry(), check_parameters(suite, registry()))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_lora_then_int8_merges_the_adapter_before_quantizing(tmp_path):
    training = {"steps": 2, "batch_size": 4}
    suite = training_suite(["lora + dynamic-int8"], training, tmp_path, model="zoo:micro-m", tasks=("micro_sub",))
    assert run_suite(suite, executor=InlineExecutor()).failed == {}
    results = load(tmp_path)
    [run] = [r for r in results.runs if r.technique == "lora+dynamic-int8"]
    rows = {(m.phase, m.metric): m.value for m in results.measurements_of(run.run_id) if m.step is None}
    assert run.status == "ok" and rows[("train", "trainable_params_pct")] <= 2
    assert rows[("evaluate", "weight_bytes")] < 0.5 * 4.7  # int8 blocks: the merged model was quantized
    assert (
        rows[("evaluate", "parameters")] == rows[("train", "train_total_params")] - rows[("train", "trainable_params")]
    )


def test_qlora_trains_adapters_over_a_4bit_base_on_cpu_and_merges_into_it():
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    from effbench.modeling import weight_bytes

    base, adapter, model, run = _adapted("qlora", {})
    assert 100 * run.trainable_parameters / run.total_parameters <= 2
    assert run.total_parameters == sum(p.numel() for p in base.values()) + run.trainable_parameters  # unpacked count
    assert sum(run.losses[-3:]) < sum(run.losses[:3])
    assert all(p.abs().sum() > 0 for n, p in adapter.items() if "lora_B" in n)
    blocks = [m for n, m in model.named_modules() if n.startswith("model.layers.") and n.endswith("_proj")]
    assert blocks and all(isinstance(m, bnb.nn.Linear4bit) for m in blocks)  # merged, still 4-bit
    assert weight_bytes(model) < 0.35 * sum(p.numel() * 4 for p in base.values())
    fresh, _ = zoo.load("zoo:micro-m")
    effbench_peft.quantize_4bit(fresh, "nf4")  # the same base, quantized, never trained

    def dequantized(m, name):
        layer = m.get_submodule(name)
        return dequantize_4bit(layer.weight.data, layer.weight.quant_state)

    assert not torch.allclose(dequantized(model, "model.layers.0.self_attn.q_proj"),
                              dequantized(fresh, "model.layers.0.self_attn.q_proj"))  # fmt: skip
    assert torch.equal(dequantized(model, "model.layers.0.self_attn.k_proj"),
                       dequantized(fresh, "model.layers.0.self_attn.k_proj"))  # fmt: skip


def test_lora_takes_less_training_memory_than_full_finetuning_on_micro_m(tmp_path):
    """Each run in its own worker process: peft is imported before the train window (``imports``), so the window's
    RSS rise is the training's own — without AdamW state and gradients for every weight, LoRA's is lower."""
    training = {"steps": 3, "batch_size": 16}
    suite = training_suite(["finetune-full", "lora"], training, tmp_path, model="zoo:micro-m", tasks=("micro_sub",))
    assert run_suite(suite).failed == {}
    results = load(tmp_path)
    train = ("train", "peak_memory_increase")
    rise = {
        run.technique: next(m.value for m in results.measurements_of(run.run_id) if (m.phase, m.metric) == train)
        for run in results.runs
        if run.technique != "baseline"
    }
    saved = 4.7e6 * 3 / 2**20  # MiB: the float32 gradients and AdamW's two moments of micro-m's weights
    assert rise["lora"] < rise["finetune-full"] - saved / 2, rise  # at least half of it shows (10.9 of 13.4 here)
