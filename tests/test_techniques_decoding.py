"""Decoding techniques are lossless under greedy decoding, and refuse a draft with another tokenizer."""

import pytest

from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.run.sweep import plan
from tests.technique_helpers import applied, generation_kwargs, greedy, other_tokenizer_model, prompts

# 24 tokens forced past the end of the answer: many draft/verify rounds, with rejections
FORCED = {"max_new_tokens": 24, "min_new_tokens": 24}


@pytest.fixture(scope="module")
def baseline_outputs():
    model, tokenizer = zoo.load("zoo:micro-m")
    return {prompt: greedy(model, tokenizer, prompt, **FORCED) for prompt in prompts(4)}


@pytest.mark.parametrize(
    ("technique", "params"),
    [
        ("speculative", {}),
        ("speculative", {"draft_tokens": 2, "schedule": "heuristic"}),
        ("prompt-lookup", {}),
        ("prompt-lookup", {"tokens": 3, "ngram": 1}),
    ],
)
def test_greedy_outputs_equal_the_baselines(technique, params, baseline_outputs):
    model, tokenizer = applied(technique, **params)
    kwargs = generation_kwargs(technique, model, tokenizer, **params)
    assert set(kwargs) & {"assistant_model", "prompt_lookup_num_tokens"}
    forwards = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    try:
        for prompt, expected in baseline_outputs.items():
            assert greedy(model, tokenizer, prompt, **FORCED, **kwargs) == expected, prompt
    finally:
        hook.remove()
    # plain greedy decoding runs the model once per token: fewer passes means proposals were accepted
    assert len(forwards) < FORCED["max_new_tokens"] * len(baseline_outputs)


def test_speculative_uses_the_draft_model():
    model, tokenizer = applied("speculative", draft_tokens=3)
    assistant = generation_kwargs("speculative", model, tokenizer, draft_tokens=3)["assistant_model"]
    assert assistant.config.hidden_size < model.config.hidden_size
    assert assistant.generation_config.num_assistant_tokens == 3


def test_a_draft_with_another_tokenizer_fails_before_any_run(tmp_path):
    draft = other_tokenizer_model(tmp_path)
    suite = load_suite(techniques=[f"speculative:draft={draft}"])
    with pytest.raises(EffbenchError, match=r"parameter 'draft': .* has another tokenizer than the evaluated model"):
        plan(suite, registry(), "fp")


def test_a_draft_that_does_not_exist_fails_before_any_run():
    suite = load_suite(techniques=["speculative:draft=zoo:no-such-model"])
    with pytest.raises(EffbenchError, match=r"parameter 'draft': no usable tokenizer for 'zoo:no-such-model'"):
        plan(suite, registry(), "fp")
