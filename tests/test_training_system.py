"""Training-system techniques and pre-training recipes: each acts on the model, the optimizer or the batches it claims.

Gradient checkpointing keeps fewer bytes for backward with the same gradients; bf16 autocast runs the
forward in bfloat16 and still lowers the loss; Adafactor keeps less optimizer state than AdamW;
``pretrain-scratch`` starts from new weights; packing fills every row; time and energy to the target loss.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

import tests.training_helpers as helpers
from effbench.api.context import Measurement, RunContext
from effbench.api.training import TrainingOptions, TrainingRun
from effbench.config.suite import load_suite
from effbench.default_plugins.executors import InlineExecutor
from effbench.errors import EffbenchError, NotApplicable
from effbench.measure.windows import Instruments
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.run.pipeline import to_target_loss
from effbench.run.sweep import check_parameters, run_suite
from effbench.store.load import load
from effbench.train import data, loop

PRETRAIN = {"data": data.PRETRAINING_TEXT, "batch_size": 8, "max_length": 64}


@contextmanager
def saved_bytes(weights: Any) -> Iterator[dict[int, int]]:
    """Distinct storages autograd saves for backward while inside (data pointer → bytes), the weights' excepted.

    Those are the activations a training step keeps alive until its backward pass.
    """
    saved: dict[int, int] = {}
    kept = {p.untyped_storage().data_ptr() for p in weights.parameters()}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield saved


def _one_step(stack: list[tuple[str, dict[str, Any]]]) -> tuple[int, TrainingRun]:
    """Bytes saved for backward over one training step of micro-m trained by ``stack``, and the run."""
    model, tokenizer = zoo.load("zoo:micro-m")
    with saved_bytes(model) as saved:
        _, run = helpers.trained(model, tokenizer, *stack, steps=1, **PRETRAIN)
    return sum(saved.values()), run


def test_gradient_checkpointing_keeps_fewer_bytes_for_backward():
    full, plain = _one_step([("finetune-full", {})])
    checkpointed, run = _one_step([("finetune-full", {}), ("gradient-checkpointing", {})])
    assert checkpointed < 0.5 * full  # only each block's input is kept; the rest is recomputed in backward
    assert run.losses == pytest.approx(plain.losses, abs=1e-6)  # the same forward pass


def test_gradient_checkpointing_gives_the_same_gradients():
    grads = []
    for enabled in (False, True):
        model, tokenizer = zoo.load("zoo:micro-m")
        batch = next(loop.batches(tokenizer, {**PRETRAIN, "seed": 0}, packing=True, device="cpu"))
        model.train()
        with loop.checkpointing(model, enabled):
            assert model.is_activation_checkpointing == enabled
            loop.forward_backward(model, batch, TrainingOptions(), "cpu")
        assert not model.is_activation_checkpointing  # switched off again once trained
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads, strict=True))
    assert any(g.abs().sum() > 0 for g in grads[0])


def test_gradient_checkpointing_stacks_with_lora_the_same_loss_curve():
    """PEFT freezes the embeddings; non-reentrant checkpoints still carry the gradients to the adapters."""
    curves = []
    for stack in ([("lora", {})], [("lora", {}), ("gradient-checkpointing", {})]):
        model, tokenizer = zoo.load("zoo:micro-m")
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        model, run = helpers.trained(model, tokenizer, *stack, steps=3)
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())  # adapters merged in
        curves.append(run.losses)
    assert curves[1] == pytest.approx(curves[0], abs=1e-5)


def _logits_dtypes(stack: list[tuple[str, dict[str, Any]]], steps: int) -> tuple[set[torch.dtype], TrainingRun, Any]:
    """The dtypes of the logits micro-m computed while ``stack`` trained it, the run and the trained model."""
    model, tokenizer = zoo.load("zoo:micro-m")
    seen: set[torch.dtype] = set()
    model.get_output_embeddings().register_forward_hook(lambda _module, _inputs, out: seen.add(out.dtype))
    model, run = helpers.trained(model, tokenizer, *stack, steps=steps, batch_size=16)
    return seen, run, model


def test_autocast_bf16_runs_the_forward_in_bfloat16_and_still_lowers_the_loss():
    fp32, reference, _ = _logits_dtypes([("finetune-full", {})], steps=8)
    bf16, mixed, model = _logits_dtypes([("finetune-full", {}), ("autocast-bf16", {})], steps=8)
    assert fp32 == {torch.float32} and bf16 == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # weights and optimizer stay float32
    assert mixed.losses[0] != reference.losses[0] and mixed.losses[0] == pytest.approx(reference.losses[0], abs=0.05)
    assert sum(mixed.losses[-3:]) / 3 < mixed.losses[0] - 0.3


def test_autocast_is_not_applicable_to_16_bit_weights():
    model, tokenizer = zoo.load("zoo:micro-s", dtype=torch.bfloat16)
    with pytest.raises(NotApplicable, match=r"weights are torch.bfloat16 already: autocast would lower nothing$"):
        helpers.trained(model, tokenizer, ("autocast-bf16", {}), steps=1)


def test_adafactor_keeps_less_optimizer_state_than_adamw_and_updates_the_weights():
    runs = {}
    stacks = {"adamw": ("finetune-full", {}), "adafactor": ("optimizer", {"name": "adafactor"})}
    for name, technique in stacks.items():
        model, tokenizer = zoo.load("zoo:micro-s")
        before = [p.detach().clone() for p in model.parameters()]
        model, runs[name] = helpers.trained(model, tokenizer, technique, steps=3)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)), name
    parameters = list(model.parameters())
    values = sum(p.numel() for p in parameters)
    assert runs["adamw"].optimizer_state_bytes == 2 * 4 * values + 4 * len(parameters)  # two moments, a step each
    assert runs["adafactor"].optimizer_state_bytes < runs["adamw"].optimizer_state_bytes / 3


def test_pretraining_from_scratch_starts_from_new_weights_and_reaches_a_loose_target():
    model, tokenizer = zoo.load("zoo:micro-s")
    loaded = {n: p.detach().clone() for n, p in model.named_parameters()}
    trained, run = helpers.trained(model, tokenizer, ("pretrain-scratch", {}), steps=25, target_loss=3.0, **PRETRAIN)
    assert run.losses[0] == pytest.approx(math.log(len(tokenizer)), abs=0.2)  # new weights predict ~uniformly
    assert all(not torch.equal(p.detach(), loaded[n]) for n, p in trained.named_parameters())
    assert run.trainable_parameters == sum(p.numel() for p in loaded.values())
    reached = run.steps_to_target
    assert reached is not None and 1 < reached <= 25
    assert run.time_to_target == run.step_ends[reached - 1] > 0
    assert all(a < b for a, b in itertools.pairwise(run.step_ends)) and len(run.step_ends) == run.steps
    model, tokenizer = zoo.load("zoo:micro-s")
    _, again = helpers.trained(model, tokenizer, ("pretrain-scratch", {}), steps=1, **PRETRAIN)
    assert again.losses[0] == run.losses[0]  # the training seed makes the same initial weights


def test_packing_fills_every_row_with_examples_closed_by_eos():
    _, tokenizer = zoo.load("zoo:micro-s")
    examples = data.examples(data.PRETRAINING_TEXT, seed=0)
    rows = list(itertools.islice(loop.packed_rows(tokenizer, examples, 64), 5))
    encoded = [loop.encode(tokenizer, e, 64)[0] for e in itertools.islice(data.examples(data.PRETRAINING_TEXT, 0), 40)]
    joined = [token for ids, _ in rows for token in ids]
    assert all(len(ids) == len(labels) == 64 for ids, labels in rows)
    assert joined == [token for ids in encoded for token in ids][: len(joined)]
    assert joined.count(tokenizer.eos_token_id) >= 5  # several examples per row, each closed by <eos>
    settings = {**PRETRAIN, "seed": 0}
    packed = next(loop.batches(tokenizer, settings, packing=True, device="cpu"))
    padded = next(loop.batches(tokenizer, settings, packing=False, device="cpu"))
    assert packed["input_ids"].shape == (8, 64) and bool(packed["attention_mask"].all())
    assert int((packed["labels"] != loop.IGNORED).sum()) == 8 * 64  # text examples: every position is scored
    assert not bool(padded["attention_mask"].all())  # one example per row: the shorter ones padded


def test_packing_is_not_applicable_without_an_end_of_sequence_token():
    model, tokenizer = zoo.load("zoo:micro-s")
    tokenizer.eos_token = None
    with pytest.raises(NotApplicable, match=r"no end-of-sequence token to separate packed examples$"):
        helpers.trained(model, tokenizer, ("packing", {}), steps=1)


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        ("optimizer:name=sgd", "technique 'optimizer': parameter 'name': Input should be 'adafactor'"),
        ("optimizer:name=adamw", "technique 'optimizer': parameter 'name': Input should be 'adafactor'"),  # a no-op
        ("pretrain-scratch:lr=0", "technique 'pretrain-scratch': parameter 'lr': Input should be greater than 0"),
        ("gradient-checkpointing:every=2", "technique 'gradient-checkpointing': unknown parameter 'every'"),
        ("packing:rows=2", "technique 'packing': unknown parameter 'rows'. Parameters: none"),
    ],
)
def test_bad_parameters_are_one_line_before_any_work(technique, message):
    with pytest.raises(EffbenchError) as err:
        check_parameters(load_suite(None, techniques=[technique]), registry())
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_train_window_reports_the_time_to_target_and_the_optimizer_state():
    instruments = Instruments([registry().metrics["train_time"]])
    ctx = RunContext(model=None, tokenizer=None, technique="pretrain-scratch", params={}, phase="train")
    opened = instruments.open(instruments.for_phase("train"), ctx)
    ctx.training = TrainingRun(
        losses=[3.8, 3.1, 2.9, 2.95], step_ends=[0.5, 0.9, 1.4, 1.8], tokens=40, computed_tokens=40,
        trainable_parameters=10, total_parameters=10, optimizer_state_bytes=3_000_000, target_loss=3.0,
    )  # fmt: skip
    value = {m.metric: m.value for m in instruments.close(opened, ctx) if m.step is None}
    assert value["steps_to_target_loss"] == 3 and value["train_time_to_target_loss"] == 1.4
    assert value["optimizer_state_size"] == 3.0


def test_energy_to_target_is_the_train_windows_energy_times_the_share_of_time_to_target():
    run = TrainingRun(losses=[3.0, 2.0, 1.0], step_ends=[1.0, 2.0, 3.0], target_loss=2.0)
    energy = Measurement("energy", 0.004, "kWh", "energy", False, method="codecarbon", phase="train")
    loss = Measurement("train_loss", 2.0, "nats/token", "quality", False, step=1)
    declared = Instruments(list(registry().metrics.values())).declared
    [derived] = to_target_loss([energy, loss], run, seconds=5.0, declared=declared)
    assert derived.metric == "energy_to_target_loss" and derived.value == pytest.approx(0.004 * 2.0 / 5.0)
    assert derived.phase == "train" and "× 0.400, the share of the train phase's 5.0 s" in derived.method
    assert to_target_loss([energy], TrainingRun(losses=[3.0], step_ends=[1.0], target_loss=2.0), 5.0, declared) == []


@pytest.fixture(scope="module")
def pretrained_store(tmp_path_factory):
    """micro-s pre-trained from scratch on packed micro-world rows for a few steps, run in this process."""
    output = tmp_path_factory.mktemp("pretrained")
    training = {**PRETRAIN, "steps": 12, "target_loss": 3.3}
    suite = helpers.training_suite(["pretrain-scratch + packing"], training, output, limit=2)
    result = run_suite(suite, executor=InlineExecutor())
    assert result.failed == {}
    return load(output)


def test_a_pretraining_run_stores_steps_time_and_energy_to_the_target_loss(pretrained_store):
    [run] = [r for r in pretrained_store.runs if r.technique == "pretrain-scratch+packing"]
    assert run.stage == "pretraining" and run.status == "ok"
    train = {m.metric: m for m in pretrained_store.measurements_of(run.run_id) if m.in_phase == "train"}
    assert 1 <= train["steps_to_target_loss"].value <= 12
    assert 0 < train["train_time_to_target_loss"].value <= train["train_time"].value
    assert 0 < train["energy_to_target_loss"].value <= train["energy"].value
    assert train["optimizer_state_size"].value > 0
