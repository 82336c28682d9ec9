"""Knowledge distillation: the KD loss against an independent computation, alpha = 0 is the plain loop, the teacher's
cost is the train phase's, a distill run stores its teacher, and bad teachers or stacks are refused before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import special, stats

import tests.training_helpers as helpers
from effbench.api.training import Distillation
from effbench.config.suite import Suite, load_suite
from effbench.default_plugins.executors import InlineExecutor
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.reference import microworld, zoo
from effbench.run.sweep import check_parameters, plan, run_suite
from effbench.store.load import load
from effbench.train import distill, loop
from effbench.train.data import examples
from tests.technique_helpers import other_tokenizer_model

TRAINING = {"data": microworld.INDUCTION, "steps": 3, "batch_size": 4}


def test_the_kd_term_is_the_mean_softened_kl_over_the_scored_positions_times_t_squared():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, 4, 5)) * 3, rng.normal(size=(2, 4, 5)) * 3
    labels = np.array([[-100, -100, 2, 4], [-100, 1, 3, -100]])  # position i is scored when label i + 1 is a token
    t = 2.5
    expected = np.mean(
        [
            stats.entropy(
                special.softmax(teacher[b, i] / t), special.softmax(student[b, i] / t)
            )  # KL(teacher ‖ student)
            for b in range(2)
            for i in range(3)
            if labels[b, i + 1] >= 0
        ]
    )
    got = distill.kd_term(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), t)
    assert got.item() == pytest.approx(t**2 * expected, rel=1e-5)


def _batch(tokenizer):
    rows = list(zip(range(4), examples(microworld.INDUCTION, seed=0), strict=False))
    return loop.collate(tokenizer, [row for _, row in rows], max_length=64, device="cpu")


def test_the_step_loss_mixes_the_kd_term_and_the_cross_entropy_by_alpha():
    model, tokenizer = zoo.load("zoo:micro-s")
    batch = _batch(tokenizer)
    with torch.no_grad():
        cross_entropy = model(**batch).loss
        # a teacher that is the student itself: the KL is zero, so only (1 - alpha) of the cross-entropy is left
        assert distill.step_loss(model, batch, Distillation(model, 2.0, 1.0)).item() == pytest.approx(0, abs=1e-6)
        half = distill.step_loss(model, batch, Distillation(model, 2.0, 0.5))
        assert half.item() == pytest.approx(0.5 * cross_entropy.item(), rel=1e-6)
        teacher, _ = zoo.load("zoo:micro-m")
        assert distill.step_loss(model, batch, Distillation(teacher, 2.0, 1.0)).item() > 0.01


def test_alpha_zero_trains_exactly_as_full_finetuning():
    runs = []
    for stack in (("finetune-full", {"lr": 0.002}), ("distill", {"alpha": 0.0, "lr": 0.002})):
        model, tokenizer = zoo.load("zoo:micro-s")
        trained, run = helpers.trained(model, tokenizer, stack, **TRAINING)
        runs.append((run, torch.cat([p.detach().flatten() for p in trained.parameters()])))
    (plain, weights), (kd, kd_weights) = runs
    assert kd.losses == plain.losses and len(plain.losses) == 3
    assert torch.equal(kd_weights, weights)
    assert kd.trainable_parameters == plain.trainable_parameters == kd.total_parameters  # the teacher is not counted
    assert kd.flops > plain.flops  # the teacher's forward passes are the training run's computation


def test_distillation_keeps_the_student_closer_to_the_teacher_than_training_alone():
    """On other lines of the same data, the KL to the teacher falls with distillation, rises with the labels alone."""
    teacher, tokenizer = zoo.load("zoo:micro-m")
    held = loop.collate(
        tokenizer, [row for _, row in zip(range(32), examples(microworld.INDUCTION, seed=9), strict=False)], 96, "cpu"
    )

    def divergence(student):
        with torch.no_grad():
            return distill.kd_term(student(**held).logits, teacher(**held).logits, held["labels"], 1.0).item()

    after = {}
    for stack in (("finetune-full", {"lr": 3e-4}), ("distill", {"alpha": 1.0, "temperature": 1.0, "lr": 3e-4})):
        student, _ = zoo.load("zoo:micro-s")
        before = divergence(student)
        student, _ = helpers.trained(student, tokenizer, stack, **{**TRAINING, "steps": 20, "batch_size": 8})
        after[stack[0]] = divergence(student)
    assert after["distill"] < before < after["finetune-full"]  # about 0.30 < 0.32 < 0.51 here


def _distill_suite(teacher: str, output: Path) -> Suite:
    """micro-s distilled from ``teacher`` for three small steps, evaluated on three documents."""
    return helpers.training_suite([f"distill:teacher={teacher},temperature=3,alpha=0.7"], TRAINING, output)


def test_a_distill_run_stores_its_train_figures_and_its_teacher(tmp_path):
    suite = _distill_suite("zoo:micro-m", tmp_path)
    assert run_suite(suite, executor=InlineExecutor()).failed == {}
    results = load(tmp_path)
    [run] = [r for r in results.runs if r.technique == "distill"]
    assert run.status == "ok" and run.stage == "finetuning"
    assert json.loads(run.technique_params) == {"teacher": "zoo:micro-m", "temperature": 3.0, "alpha": 0.7,
                                                "lr": 0.001}  # fmt: skip
    train = {m.metric for m in results.measurements_of(run.run_id) if m.in_phase == "train"}
    assert {"train_time", "train_flops_per_s", "final_train_loss", "train_loss", "energy", "peak_memory"} <= train
    other_teacher = _distill_suite("zoo:micro-s", tmp_path)  # the same run but for its teacher
    ids = {p.run_id for s in (suite, other_teacher) for p in plan(s, registry(), "fp") if p.stack[0].name == "distill"}
    assert len(ids) == 2  # the teacher is part of the run's identity


def test_bad_teachers_are_one_line_before_any_work(tmp_path):
    swapped = other_tokenizer_model(tmp_path)
    wider = tmp_path / "micro-m-wider"
    shutil.copytree(zoo.resolve("zoo:micro-m"), wider)
    config = json.loads((wider / "config.json").read_text())
    (wider / "config.json").write_text(json.dumps({**config, "vocab_size": 64}))
    for teacher, message in (
        (swapped, r"parameter 'teacher': .* has another tokenizer than the evaluated model"),
        ("zoo:micro-xl", r"parameter 'teacher': no usable tokenizer for 'zoo:micro-xl': unknown zoo model"),
        (wider, r"parameter 'teacher': '.*micro-m-wider' scores 64 tokens, the student 46 \(vocab_size\)"),
    ):
        suite = load_suite(None, models=["zoo:micro-s"], techniques=[f"distill:teacher={teacher}"])
        with pytest.raises(EffbenchError, match=message) as err:
            plan(suite, registry(), "fp")
        assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("technique", "message"),
    [
        ("distill:temperature=0", "parameter 'temperature': Input should be greater than 0"),
        ("distill:alpha=1.5", "parameter 'alpha': Input should be less than or equal to 1"),
        ("distill + finetune-full", "techniques 'distill' and 'finetune-full' are both training methods"),
        ("finetune-full + distill + dynamic-int8", "techniques 'finetune-full' and 'distill' are both training"),
        ("pretrain-scratch + finetune-full", "techniques 'pretrain-scratch' and 'finetune-full' are both training"),
    ],
)
def test_bad_parameters_and_a_second_training_method_are_refused(technique, message):
    with pytest.raises(EffbenchError, match=message):
        check_parameters(load_suite(None, techniques=[technique]), registry())


def test_the_induction_data_is_copy_and_recall_lines_never_held_out():
    _, held_out = microworld.task_documents()
    lines = [row["text"] for _, row in zip(range(400), examples(microworld.INDUCTION, seed=0), strict=False)]
    assert {line.split()[0] for line in lines} == {"copy", "recall"}
    assert not set(lines) & held_out.docs
    assert lines != [row["text"] for _, row in zip(range(400), examples(microworld.INDUCTION, seed=1), strict=False)]
