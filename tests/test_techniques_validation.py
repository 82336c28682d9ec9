"""Impossible parameters fail while the sweep is planned, before any run, naming the parameter and its range."""

import pytest

from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.reference.zoo import load
from effbench.run.sweep import plan


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        ("prune-magnitude:sparsity=1.5", r"parameter 'sparsity': Input should be less than 1 \(got 1.5\)"),
        ("prune-magnitude:scope=row", r"parameter 'scope': Input should be 'layer' or 'global'"),
        ("prune-nm:n=4,m=4", r"parameter 'n': weights kept per group must be between 1 and m - 1 = 3 \(got 4\)"),
        ("prune-nm:n=5,m=4", r"parameter 'n': .* between 1 and m - 1 = 3 \(got 5\)"),
        ("prune-nm:n=2,m=3", r"parameter 'm': must divide .*hidden_size=160.*got 3; valid values for this model: 2, 4"),
        ("prune-depth:layers=4", r"parameter 'layers': must be between 1 and 3 \(the model has 4\); got 4"),
        ("prune-depth:layers=9", r"parameter 'layers': must be between 1 and 3"),
        ("prune-depth:layers=2,start=3", r"parameter 'start': must be between 0 and 2 to drop 2 of 4 layers; got 3"),
        ("prune-structured:heads=0.2", r"parameter 'heads': 0.2 of the 2 query heads per KV group .* 0 or about 0.5"),
        ("prune-structured:heads=0.9", r"parameter 'heads': 0.9 of the 2 query heads per KV group rounds to 2"),
        ("prune-structured:neurons=0.9999", r"parameter 'neurons': .* rounds to all of them; valid range: 0 <="),
        ("prune-structured:neurons=1", r"parameter 'neurons': Input should be less than 1"),
        ("sliding-window:window=1", r"parameter 'window': Input should be greater than or equal to 2"),
        ("speculative:draft_tokens=0", r"parameter 'draft_tokens': Input should be greater than or equal to 1"),
        ("prompt-lookup:ngram=0", r"parameter 'ngram': Input should be greater than or equal to 1"),
        ("attention:implementation=flash", r"parameter 'implementation': Input should be 'eager' or 'sdpa'"),
    ],
)
def test_impossible_parameters_fail_before_any_run(technique, message):
    suite = load_suite(techniques=[technique])
    with pytest.raises(EffbenchError, match=message) as info:
        plan(suite, registry(), "fp")
    assert technique.split(":")[0] in str(info.value)


def test_apply_checks_the_same_rules_when_called_directly():
    model, tokenizer = load("zoo:micro-m")
    with pytest.raises(ValueError, match=r"parameter 'layers': must be between 1 and 3"):
        registry().technique("prune-depth").apply(model, tokenizer, layers=4)
    with pytest.raises(ValueError, match=r"parameter 'n'"):
        registry().technique("prune-nm").apply(model, tokenizer, n=4, m=4)
    assert len(model.get_decoder().layers) == 4  # nothing was changed


def test_valid_parameters_plan_without_error():
    techniques = ["prune-nm", "prune-depth:layers=3", "prune-structured:heads=0.5,neurons=0.5", "speculative"]
    suite = load_suite(techniques=techniques)
    runs = plan(suite, registry(), "fp", known_tasks=set(suite.tasks))
    assert len(runs) == len(techniques) + 1  # and the baseline
