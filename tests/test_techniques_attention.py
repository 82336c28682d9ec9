"""Attention and compilation techniques: same outputs where they must be, a real sliding window, compile time noted."""

import pytest
import torch

from effbench.reference.zoo import load
from tests.technique_helpers import applied, generation_kwargs, greedy, ids, prompts

WINDOW = 6


@pytest.fixture(scope="module")
def baseline():
    return load("zoo:micro-m")


def _band(length: int, window: int) -> torch.Tensor:
    """A 4D boolean mask: causal, and at most ``window`` positions back (the position itself included)."""
    i = torch.arange(length)
    return ((i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - window))[None, None]


def test_eager_and_sdpa_compute_the_same_logits(baseline):
    base, tokenizer = baseline
    model, _ = applied("attention", implementation="eager")
    assert model.config._attn_implementation == "eager"
    x = ids(tokenizer)
    with torch.no_grad():
        assert torch.allclose(model(x).logits, base(x).logits, atol=1e-4)


def test_sliding_window_attends_to_the_last_window_positions_only(baseline):
    base, tokenizer = baseline
    model, _ = applied("sliding-window", window=WINDOW)
    x = ids(tokenizer)
    with torch.no_grad():
        windowed = model(x).logits
        assert torch.allclose(windowed, base(x, attention_mask=_band(x.shape[1], WINDOW)).logits, atol=1e-5)
        assert torch.allclose(windowed[:, :WINDOW], base(x).logits[:, :WINDOW], atol=1e-5)
        assert not torch.allclose(windowed, base(x).logits, atol=1e-3)


def test_sliding_window_generation_keeps_a_bounded_cache_and_matches_the_banded_model(baseline):
    base, tokenizer = baseline
    model, _ = applied("sliding-window", window=WINDOW)
    prompt = prompts(3)[2]  # a recall prompt, longer than the window
    x = ids(tokenizer, prompt)
    with torch.inference_mode():
        out = model.generate(x, max_new_tokens=8, min_new_tokens=8, do_sample=False, return_dict_in_generate=True)
        sequence = x
        for _ in range(8):  # the same greedy decoding, recomputing everything under a banded mask
            logits = base(sequence, attention_mask=_band(sequence.shape[1], WINDOW)).logits[:, -1]
            logits[:, tokenizer.eos_token_id] = -torch.inf  # as min_new_tokens does
            sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out.sequences, sequence)
    assert all(layer.keys.shape[-2] == WINDOW - 1 for layer in out.past_key_values.layers)


@pytest.mark.parametrize("prompt", prompts(3))
def test_static_cache_keeps_greedy_outputs(prompt, baseline):
    base, tokenizer = baseline
    model, _ = applied("static-cache")
    kwargs = generation_kwargs("static-cache", model, tokenizer)
    assert kwargs == {"cache_implementation": "static"}
    assert greedy(model, tokenizer, prompt, **kwargs) == greedy(base, tokenizer, prompt)
    x = ids(tokenizer, prompt)
    with torch.inference_mode():
        out = model.generate(x, max_new_tokens=2, do_sample=False, return_dict_in_generate=True, **kwargs)
    assert type(out.past_key_values).__name__ == "StaticCache"


def test_compile_warms_up_in_apply(baseline):
    import torch._dynamo

    base, tokenizer = baseline
    torch._dynamo.utils.counters.clear()
    model, _ = applied("compile")
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    assert graphs > 0  # compiled during apply
    for prompt in prompts(2):  # the warmed-up generation path: same greedy output, no recompilation
        assert greedy(model, tokenizer, prompt) == greedy(base, tokenizer, prompt)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
