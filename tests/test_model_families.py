"""Every technique on every common model family: it acts (and the effect is checked), or it is refused in one line.

Tiny random-weight models of each family are built here from transformers configs (no download). A
technique that reports ok must have changed what it claims to change; one that cannot act must raise
``NotApplicable`` with a one-line reason; nothing else may escape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from effbench.config.suite import parse_short
from effbench.errors import NotApplicable
from effbench.modeling import decoder_layers, linear_layers, parameter_counts, weight_bytes
from effbench.plugins import registry
from effbench.reference import families
from effbench.reference.zoo import load
from effbench.store.load import load as load_store
from tests.conftest import QUICK_SCENARIO, cli
from tests.technique_helpers import SENTENCE, ids
from tests.training_helpers import trained

TRIALS = [(spec["name"], spec["params"]) for spec in map(parse_short, families.TRIALS)]
# What each family cannot do, and why: a change here is a change of what effbench supports.
REFUSED = {
    ("gemma2", "attention"): "runs eager attention already",  # Gemma 2 has no SDPA: eager is all it runs
    ("gemma2", "sliding-window"): "does not support an attention implementation through",
    ("gemma2", "kv-cache-quant"): "needs full-attention layers only",
    ("gemma3", "kv-cache-quant"): "needs full-attention layers only",
    ("gpt2", "prune-structured"): "fused layer",
    ("gpt_neox", "prune-structured"): "fused layer",
    ("phi3", "prune-structured"): "fused layer",
}
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, str]:
    """Each family's tiny model saved as a user's model directory (safetensors and tokenizer)."""
    root = tmp_path_factory.mktemp("families")
    return {family: str(families.save(family, root / family)) for family in families.FAMILIES}


def _generate(model: Any, tokenizer: Any, **kwargs: Any) -> Any:
    """A short greedy generation of one fixed sentence, returning what ``generate`` returns."""
    x = ids(tokenizer, SENTENCE)
    with torch.inference_mode():
        return model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
            do_sample=False, **kwargs,
        )  # fmt: skip


def _sequence(output: Any) -> list[int]:
    return (output.sequences if hasattr(output, "sequences") else output)[0].tolist()


def _window_hides_the_first_token(model: Any, tokenizer: Any, window: int) -> None:
    """Beyond every layer's reach (layers × (window - 1) positions), the first token no longer changes the logits."""
    length = len(decoder_layers(model)) * (window - 1) + 4
    x = torch.randint(3, len(tokenizer), (1, length), generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[0, 0] = 3 if x[0, 0] != 3 else 4
    with torch.no_grad():
        assert torch.allclose(model(x).logits[0, -1], model(changed).logits[0, -1], atol=1e-5)
        assert not torch.allclose(model(x).logits[0, 1], model(changed).logits[0, 1], atol=1e-5)


def _cache_class(name: str) -> Callable[..., None]:
    def check(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
        output = _generate(model, tokenizer, return_dict_in_generate=True, **kwargs)
        assert type(output.past_key_values).__name__ == name

    return check


def _lossless(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    """Decoding techniques verify every token with the model itself: greedy output equals plain greedy output."""
    assert _sequence(_generate(model, tokenizer, **kwargs)) == _sequence(_generate(model, tokenizer))


def _fewer_nonzero(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    assert parameter_counts(model)[1] < parameter_counts(base)[1] * 0.7


def _fewer_parameters(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    assert parameter_counts(model)[0] < parameter_counts(base)[0]


def _fewer_layers(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    assert len(decoder_layers(model)) == len(decoder_layers(base)) - 1 == model.config.num_hidden_layers


def _fewer_bytes(ratio: float) -> Callable[..., None]:
    def check(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
        assert weight_bytes(model) < weight_bytes(base) * ratio

    return check


def _eager(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    assert model.config._attn_implementation == "eager"
    x = ids(tokenizer, SENTENCE)
    with torch.no_grad():
        assert torch.allclose(model(x).logits, base(x).logits, atol=1e-4)


def _compiled(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    assert model._compiled_call_impl is not None


def _windowed(model: Any, tokenizer: Any, kwargs: dict, base: Any) -> None:
    _window_hides_the_first_token(model, tokenizer, window=4)
    output = _generate(model, tokenizer, return_dict_in_generate=True)
    assert all(layer.keys.shape[-2] <= 3 for layer in output.past_key_values.layers)  # the cache stops growing


EFFECTS: dict[str, Callable[..., None]] = {
    "attention": _eager,
    "compile": _compiled,
    "dtype": _fewer_bytes(0.51),
    "dynamic-int8": _fewer_bytes(0.6),
    "example-drop-last-layers": _fewer_layers,
    "kv-cache-quant": _cache_class("QuantizedCache"),
    "prompt-lookup": _lossless,
    "prune-depth": _fewer_layers,
    "prune-magnitude": _fewer_nonzero,
    "prune-nm": _fewer_nonzero,
    "prune-structured": _fewer_parameters,
    "sliding-window": _windowed,
    "speculative": _lossless,
    "static-cache": _cache_class("StaticCache"),
    "torchao-int4-weight": _fewer_bytes(0.6),
    "torchao-int8-dynamic": _fewer_bytes(0.6),
    "torchao-int8-weight": _fewer_bytes(0.6),
}


def _training_names() -> set[str]:
    """Techniques that train on one process (those exchanging gradients between ranks: tests/test_distributed.py)."""
    return {
        n for n, technique in registry().techniques.items() if technique.phase == "train" and technique.min_ranks == 1
    }


def test_every_registered_builtin_and_first_party_technique_is_tried():
    applied = {name for name, technique in registry().techniques.items() if technique.phase == "apply"} - {"baseline"}
    assert {name for name, _ in TRIALS} == applied == set(EFFECTS)
    assert _training_names() == {
        *("finetune-full", "distill", "lora", "dora", "ia3", "qlora"),
        *("gradient-checkpointing", "autocast-bf16", "optimizer", "pretrain-scratch", "packing"),
    }  # each tried below


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_every_training_technique_changes_the_familys_weights_or_is_refused_in_one_line(family, model_dirs):
    """Two small steps of each training technique (merged back where it trains adapters) on every family."""
    reg = registry()
    outcomes = {}
    for name in sorted(_training_names()):
        model, tokenizer = load(model_dirs[family])
        base = {n: p.detach().clone() for n, p in model.named_parameters()}
        technique = reg.technique(name)
        params = {"teacher": model_dirs[family]} if name == "distill" else {}  # the family's tokenizer: itself
        try:
            technique.preflight(model.config, **technique.validate(params))
            model, run = trained(model, tokenizer, (name, params), steps=2, batch_size=4, max_length=32)
        except (NotApplicable, ValueError) as refusal:  # lacking the default target modules: a one-line refusal
            assert str(refusal) and "\n" not in str(refusal), (name, refusal)
            outcomes[name] = str(refusal)
            continue
        assert len(run.losses) == 2 and all(math.isfinite(loss) for loss in run.losses), name
        changed = [n for n, p in model.named_parameters() if n in base and not torch.equal(p.detach().float(), base[n])]
        assert changed, f"{name} left every weight of {family} as it was"
        outcomes[name] = "ok"
    core = ("finetune-full", "distill", "gradient-checkpointing", "autocast-bf16", "optimizer", "pretrain-scratch")
    assert all(outcomes[name] == "ok" for name in (*core, "packing")), outcomes  # each trains any family
    assert any(outcome == "ok" for name, outcome in outcomes.items() if name != "finetune-full") or family in (
        "gpt2",
        "gpt_neox",
        "phi3",
    ), outcomes  # fused attention (c_attn, query_key_value, qkv_proj) lacks the default q_proj / v_proj


@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_every_technique_acts_on_the_family_or_is_refused_in_one_line(family, model_dirs):
    reg = registry()
    outcomes = {}
    for name, params in TRIALS:
        technique = reg.technique(name)
        params = technique.validate(params)
        model, tokenizer = load(model_dirs[family])
        base, _ = load(model_dirs[family])
        try:
            technique.preflight(model.config, **params)
            model = technique.apply(model, tokenizer, **params).eval()
        except NotApplicable as refusal:
            reason = str(refusal)
            assert reason and "\n" not in reason, (name, reason)
            outcomes[name] = reason
            continue
        kwargs = technique.generation_kwargs(model, tokenizer, **params)
        assert len(_sequence(_generate(model, tokenizer, **kwargs))) == ids(tokenizer).shape[1] + NEW_TOKENS
        EFFECTS[name](model, tokenizer, kwargs, base)
        outcomes.setdefault(name, "ok")
    refused = {name: reason for name, reason in outcomes.items() if reason != "ok"}
    expected = {name: text for (fam, name), text in REFUSED.items() if fam == family}
    assert set(refused) == set(expected), refused
    for name, text in expected.items():
        assert text in refused[name]


@pytest.mark.parametrize("family", ["llama", "gemma3", "opt", "gpt2", "gpt_neox", "phi3"])
def test_structured_pruning_equals_zeroing_the_removed_heads_and_neurons(family, model_dirs):
    """Removing a head or neuron from the tensors computes exactly what zeroing its output-projection columns does."""
    heads = 0.0 if (family, "prune-structured") in REFUSED else 0.5
    base, tokenizer = load(model_dirs[family])
    pruned, _ = load(model_dirs[family])
    technique = registry().technique("prune-structured")
    pruned = technique.apply(pruned, tokenizer, **technique.validate({"heads": heads, "neurons": 0.25})).eval()
    originals = dict(linear_layers(base))
    shrunk = 0
    for name, layer in linear_layers(pruned):
        original = originals[name]
        if layer.in_features < original.in_features:  # an output projection: zero the columns it no longer reads
            kept = [int((column == original.weight.T).all(dim=1).nonzero()[0]) for column in layer.weight.T]
            with torch.no_grad():
                original.weight[:, sorted(set(range(original.in_features)) - set(kept))] = 0
            shrunk += 1
    assert shrunk == len(decoder_layers(base)) * (2 if heads else 1)
    x = ids(tokenizer)
    with torch.no_grad():
        assert torch.allclose(pruned(x).logits, base(x).logits, atol=1e-5)


def _figures(store: Path) -> dict[tuple[str, str, str], float]:
    """(model directory name, technique, metric) → the stored run-scope figure."""
    results = load_store(store)
    runs = {r.run_id: r for r in results.runs}
    return {
        (Path(runs[m.run_id].model).name, runs[m.run_id].technique, m.metric): m.value
        for m in results.measurements
        if not m.scenario and m.phase == "evaluate"
    }


def test_evaluate_on_a_tiny_gpt2_completes_and_every_technique_shows_its_effect_in_the_stored_figures(
    model_dirs, tmp_path
):
    """GPT-2's Conv1D layers once made quantization and pruning silent no-ops reported "ok"."""
    out = tmp_path / "results"
    quick = ["--model", model_dirs["gpt2"], "--output", str(out), "--limit", "4", "--scenario", QUICK_SCENARIO]
    result = cli("evaluate", *quick)  # the default techniques and tasks
    assert result.returncode == 0, result.stderr
    assert sorted(r.technique for r in load_store(out).runs) == ["baseline", "dynamic-int8", "prune-magnitude"]
    others = [t for t in families.TRIALS if parse_short(t)["name"] in families.STORED_EFFECTS]
    result = cli("evaluate", *quick, *(arg for t in others for arg in ("--technique", t)))
    assert result.returncode == 0, result.stderr
    runs = load_store(out).runs
    status = {r.label: r.status for r in runs}
    assert status.pop("prune-structured(heads=0.5, neurons=0.25)") == "not-applicable"  # GPT-2's fused QKV
    assert set(status.values()) == {"ok"}, [(r.label, r.error) for r in runs if r.status != "ok"]
    figure = _figures(out)
    checked = set()
    for run in runs:
        if run.status == "ok" and run.technique != "baseline":
            metric, ratio = families.STORED_EFFECTS[run.technique]
            assert figure["gpt2", run.technique, metric] < ratio * figure["gpt2", "baseline", metric], run.label
            checked.add(run.technique)
    assert checked == set(families.STORED_EFFECTS)


def test_a_technique_that_cannot_act_on_one_model_is_a_row_and_the_sweep_goes_on(model_dirs, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        f"models: [{model_dirs['gpt2']}, {model_dirs['gemma2']}]\n"
        "techniques: [prune-structured, kv-cache-quant, prune-nm + prune-structured]\n"
        f"tasks: [micro_copy]\nlimit: 2\nscenarios: ['{QUICK_SCENARIO}']\noutput: {tmp_path / 'results'}\n"
    )
    result = cli("evaluate", str(suite))
    assert result.returncode == 0, result.stderr
    status = {(Path(r.model).name, r.technique): (r.status, r.error) for r in load_store(tmp_path / "results").runs}
    assert status.pop(("gpt2", "prune-structured"))[0] == "not-applicable"  # found out in apply: fused QKV
    stacked = status.pop(("gpt2", "prune-nm+prune-structured"))
    assert stacked[0] == "not-applicable" and stacked[1].startswith("prune-structured: GPT2LMHeadModel computes")
    reason = status.pop(("gemma2", "kv-cache-quant"))  # found out in preflight, without a worker
    assert reason[0] == "not-applicable" and "full-attention layers only" in reason[1]
    assert all(s == "ok" for s, _ in status.values()), status
    assert "not applicable: GPT2LMHeadModel computes" in result.stdout
    again = cli("evaluate", str(suite))
    assert "8 runs (8 already stored" in again.stdout  # a not-applicable run is a final answer: not run again
