"""Pruning techniques on the real micro-m: sparsity patterns, really smaller tensors, fewer FLOPs."""

import pytest
import torch

from effbench.modeling import decoder_layers, linear_layers
from effbench.reference.zoo import load
from tests.technique_helpers import applied, flops, greedy, ids, module_flops


def _zero_fraction(weight: torch.Tensor) -> float:
    return float((weight == 0).float().mean())


def test_layerwise_magnitude_pruning_zeroes_the_fraction_in_every_layer():
    model, _ = applied("prune-magnitude", sparsity=0.9)
    for name, layer in linear_layers(model):
        assert _zero_fraction(layer.weight) == pytest.approx(0.9, abs=0.002), name
    original, _ = load("zoo:micro-m")
    assert torch.equal(model.get_output_embeddings().weight, original.get_output_embeddings().weight)


def test_global_magnitude_pruning_uses_one_threshold_across_layers():
    original, _ = load("zoo:micro-m")
    model, _ = applied("prune-magnitude", sparsity=0.5, scope="global")
    before = {name: layer.weight.detach() for name, layer in linear_layers(original)}
    after = {name: layer.weight.detach() for name, layer in linear_layers(model)}
    pruned = torch.cat([before[name][w == 0].abs() for name, w in after.items()])
    kept = torch.cat([w[w != 0].abs() for w in after.values()])
    assert pruned.numel() / (pruned.numel() + kept.numel()) == pytest.approx(0.5, abs=0.002)
    assert float(pruned.max()) <= float(kept.min())  # every pruned weight was smaller than every kept one
    fractions = [_zero_fraction(w) for w in after.values()]
    assert max(fractions) - min(fractions) > 0.01  # one threshold, not the same fraction in every layer


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4)])
def test_nm_pruning_leaves_exactly_n_of_every_m_weights(n, m):
    model, tokenizer = applied("prune-nm", n=n, m=m)
    for name, layer in linear_layers(model):
        groups = layer.weight.view(layer.weight.shape[0], -1, m)
        assert torch.equal((groups == 0).sum(dim=-1), torch.full(groups.shape[:2], m - n)), name
    assert model(ids(tokenizer)).logits.isfinite().all()


def _generates(model, tokenizer):
    """The pruned model still generates: 8 new tokens after the prompt, with a KV cache."""
    prompt = "copy abcde > "
    assert (
        len(greedy(model, tokenizer, prompt, max_new_tokens=8, min_new_tokens=8)) == len(ids(tokenizer, prompt)[0]) + 8
    )


def _sizes(model, suffixes):
    return sum(p.numel() for name, p in model.named_parameters() if any(s in name for s in suffixes))


@pytest.mark.parametrize(("heads", "neurons"), [(0.5, 0.0), (0.0, 0.25), (0.5, 0.5)])
def test_structured_pruning_shrinks_tensors_and_flops_by_the_fraction(heads, neurons):
    base, tokenizer = load("zoo:micro-m")
    model, _ = applied("prune-structured", heads=heads, neurons=neurons)
    x = ids(tokenizer)
    before, after = flops(base, x), flops(model, x)
    attn = ("q_proj", "o_proj")
    mlp = ("gate_proj", "up_proj", "down_proj")
    assert _sizes(model, attn) == pytest.approx((1 - heads) * _sizes(base, attn), rel=0.01)
    assert _sizes(model, mlp) == pytest.approx((1 - neurons) * _sizes(base, mlp), rel=0.01)
    for suffix, fraction in ((".q_proj", heads), (".o_proj", heads), (".mlp", neurons)):
        assert module_flops(after, suffix) == pytest.approx((1 - fraction) * module_flops(before, suffix), rel=0.01)
    assert after["Global"] < before["Global"]
    config = model.config
    assert config.num_attention_heads == round(4 * (1 - heads))
    assert config.num_key_value_heads == 2
    assert config.intermediate_size == decoder_layers(model)[0].mlp.gate_proj.out_features
    _generates(model, tokenizer)


def test_structured_pruning_keeps_the_strongest_heads_of_each_group():
    base, _ = load("zoo:micro-m")
    model, _ = applied("prune-structured", heads=0.5, neurons=0.0)
    dim = model.config.head_dim
    attn = base.model.layers[0].self_attn
    original = attn.q_proj.weight.view(4, dim, -1)
    # a head's strength: the norm of its q_proj rows times that of its o_proj columns
    strength = original.norm(dim=(1, 2)) * attn.o_proj.weight.view(attn.o_proj.weight.shape[0], 4, dim).norm(dim=(0, 2))
    assert strength[0] != strength[1] and strength[2] != strength[3]  # a real choice in both groups
    kept = model.model.layers[0].self_attn.q_proj.weight.view(2, dim, -1)
    for group in range(2):  # one query head kept per KV group, in group order: the stronger one
        strongest = 2 * group + int(strength[2 * group : 2 * group + 2].argmax())
        assert torch.equal(kept[group], original[strongest])


@pytest.mark.parametrize("layers", [1, 2, 3])
def test_depth_pruning_cuts_flops_by_the_dropped_fraction(layers):
    base, tokenizer = load("zoo:micro-m")
    model, _ = applied("prune-depth", layers=layers)
    x = ids(tokenizer)
    total = base.config.num_hidden_layers
    assert len(decoder_layers(model)) == model.config.num_hidden_layers == total - layers
    assert flops(model, x)["Global"] == pytest.approx((1 - layers / total) * flops(base, x)["Global"], rel=0.02)
    assert [block.self_attn.layer_idx for block in decoder_layers(model)] == list(range(total - layers))
    # the final layer is kept by default: its weights are the original last layer's
    assert torch.equal(decoder_layers(model)[-1].mlp.down_proj.weight, decoder_layers(base)[-1].mlp.down_proj.weight)
    _generates(model, tokenizer)  # with a KV cache indexed by the renumbered layers


def test_depth_pruning_from_a_chosen_start():
    base, _ = load("zoo:micro-m")
    model, _ = applied("prune-depth", layers=2, start=0)
    kept = [block.mlp.down_proj.weight for block in decoder_layers(model)]
    assert all(torch.equal(k, b.mlp.down_proj.weight) for k, b in zip(kept, decoder_layers(base)[2:], strict=True))
