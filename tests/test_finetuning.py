"""Training runs: the train phase measured by the same windows as inference, the micro_sub skill, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tests.training_helpers as helpers
from effbench.api.context import RunContext
from effbench.api.training import TrainingOptions, TrainingRun
from effbench.config.suite import load_suite
from effbench.default_plugins.executors import InlineExecutor
from effbench.default_plugins.metrics import training as training_metric
from effbench.errors import EffbenchError
from effbench.measure import accuracy
from effbench.measure.windows import Instruments
from effbench.plugins import registry
from effbench.reference import zoo
from effbench.reference.skills import subtraction
from effbench.reference.tasks import TASKS_DIR
from effbench.run.sweep import check_parameters, run_suite
from effbench.store.load import load
from effbench.train import data, loop


def test_the_same_seed_gives_the_same_loss_curve_and_another_seed_another():
    curves = []
    for seed in (0, 0, 1):
        model, tokenizer = zoo.load("zoo:micro-m")
        _, run = helpers.trained(model, tokenizer, ("finetune-full", {}), steps=3, seed=seed)
        curves.append(run.losses)
    assert curves[0] == curves[1] and len(curves[0]) == 3
    assert curves[2] != curves[0]  # the seed orders the data


def test_full_finetuning_teaches_micro_m_the_new_skill():
    """micro-m never saw ``sub``: near zero before, clearly learned after a short full fine-tuning."""
    task_dirs = tuple(str(d) for d in registry().task_dirs)

    def exact_match(model, tokenizer):
        figures, _ = accuracy.evaluate(
            model, tokenizer, ["micro_sub"], task_dirs=task_dirs, limit=60, batch_size=64, bootstrap_iters=0
        )
        return figures["micro_sub"]["exact_match,none"]

    model, tokenizer = zoo.load("zoo:micro-m")
    before = exact_match(model, tokenizer)
    model, run = helpers.trained(model, tokenizer, ("finetune-full", {}), steps=150, batch_size=32)
    after = exact_match(model, tokenizer)
    assert before <= 0.05
    assert after >= 0.5
    assert sum(run.losses[-10:]) < sum(run.losses[:10]) / 2
    assert run.trainable_parameters == run.total_parameters == sum(p.numel() for p in model.parameters())


def test_the_skill_task_is_the_generator_output_and_never_trained_on():
    rows = [json.loads(line) for line in (TASKS_DIR / "data" / subtraction.DATA_FILE).read_text().splitlines()]
    assert rows == [dict(sorted(r.items())) for r in subtraction.task_documents()] and len(rows) == 500
    held_out = {r["prompt"] for r in rows}
    seen = list(subtraction.training_examples(3000))
    assert not held_out & {e["prompt"] for e in seen}
    assert all(e["completion"].endswith("\n") and len(e["completion"]) == 3 for e in seen)
    a, b = (int(x[::-1]) for x in seen[0]["prompt"].removeprefix("sub ").removesuffix("=").split("-"))
    assert int(seen[0]["completion"].strip()[::-1]) == a - b >= 0


def test_a_prompt_is_not_scored_and_every_example_ends_with_eos():
    _, tokenizer = zoo.load("zoo:micro-m")
    ids, labels = loop.encode(tokenizer, {"prompt": "sub 35-12=", "completion": "23\n"}, max_length=64)
    assert labels[:10] == [loop.IGNORED] * 10 and labels[10:] == ids[10:]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.decode(ids[10:-1]) == "23\n"
    ids, labels = loop.encode(tokenizer, {"text": "the dog runs ."}, max_length=5)
    assert ids == labels and len(ids) == 5  # cut to max_length


def test_users_train_on_their_own_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"text": "copy abc > abc"}\n\n{"prompt": "copy xy > ", "completion": "xy"}\n')
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text("techniques: [finetune-full]\ntraining: {data: mine.jsonl, tokens: 12}\n")
    suite = load_suite(suite_file)
    check_parameters(suite, registry())
    assert suite.training.data == str(path.resolve()) and suite.training.steps is None
    model, tokenizer = zoo.load("zoo:micro-m")
    _, run = helpers.trained(model, tokenizer, ("finetune-full", {}), **suite.training.model_dump())
    assert run.tokens >= 12 and run.steps == 1  # 8 examples of the file's two, cycled, pass 12 target tokens
    taken = list(zip(range(4), data.examples(str(path), seed=0), strict=False))
    assert sorted(json.dumps(e, sort_keys=True) for _, e in taken[:2]) == sorted(
        json.dumps(json.loads(line), sort_keys=True) for line in path.read_text().split("\n") if line
    )


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"steps": 0}, "training.steps: Input should be greater than 0"),
        ({"tokens": -5}, "training.tokens: Input should be greater than 0"),
        ({"steps": 5, "tokens": 100}, "give the budget as steps or as tokens, not both"),
        ({"data": "missing.jsonl"}, "missing.jsonl' does not exist; give bundled data (micro_sub, micro_induction, mi"),
        ({"data": "{bad}"}, "line 2: not JSON (Expecting property name enclosed in double quotes)"),
        ({"data": "[1]"}, "line 2: expected a JSON object"),
        ({"data": '{"prompt": "a"}'}, 'line 2: expected {"text": ...} or {"prompt": ..., "completion": ...}, got'),
        ({"data": '{"text": 3}'}, "line 2: 'text' must be a string, got int"),
        ({"data": '{"text": ""}'}, "line 2: the text (or completion) to train on is empty"),
        ({"data": "micro_mul"}, "unknown training data 'micro_mul'; give bundled data (micro_sub, micro_induction, "),
    ],
)
def test_bad_training_input_is_one_line_before_any_work(tmp_path, training, message):
    if "data" in training and training["data"][0] in "{[":
        (tmp_path / "train.jsonl").write_text('{"text": "fine"}\n' + training["data"] + "\n")
        training = {"data": "train.jsonl"}
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(json.dumps({"techniques": ["finetune-full"], "training": training}))
    with pytest.raises(EffbenchError) as err:
        check_parameters(load_suite(suite_file), registry())  # what a sweep checks first
    lines = str(err.value).splitlines()  # budgets: the suite file's name, then the problem; data: the problem
    assert lines[-1].strip().startswith("training") and message in lines[-1] and len(lines) <= 2


def test_the_training_file_is_only_read_when_a_technique_trains(tmp_path):
    suite = load_suite(None, techniques=["dynamic-int8"], training={"data": str(tmp_path / "absent.jsonl")})
    assert check_parameters(suite, registry())


def test_a_stack_cannot_come_back_to_a_phase_it_left():
    suite = load_suite(None, techniques=["finetune-full + dynamic-int8 + prune-magnitude"])
    assert check_parameters(suite, registry())  # train, then apply: fine
    suite = load_suite(None, techniques=["prune-magnitude + finetune-full + dynamic-int8"])
    with pytest.raises(EffbenchError, match="'dynamic-int8' acts in the apply phase, which an earlier technique"):
        check_parameters(suite, registry())


def test_two_techniques_cannot_both_set_a_training_option():
    assert TrainingOptions.merged([("a", {"learning_rate": 0.1}), ("b", {})]).learning_rate == 0.1
    with pytest.raises(EffbenchError, match="techniques 'a' and 'b' both set training option 'learning_rate'"):
        TrainingOptions.merged([("a", {"learning_rate": 0.1}), ("b", {"learning_rate": 0.2})])
    with pytest.raises(EffbenchError, match="'a' sets unknown training option 'momentum'; options: learning_rate"):
        TrainingOptions.merged([("a", {"momentum": 0.9})])


class FakeClock:
    """A perf_counter that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_training_figures_come_from_the_train_window_like_inference_figures(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(training_metric.time, "perf_counter", clock)
    reg = registry()
    instruments = Instruments(list(reg.metrics.values()))
    train_window = {m.name for m in instruments.for_phase("train")}
    assert {"train_time", "peak_memory", "energy"} <= train_window  # the instruments of every repeat, too
    assert {"peak_memory", "energy"} <= {m.name for m in instruments.by_scope["repeat"]}
    ctx = RunContext(model=None, tokenizer=None, technique="finetune-full", params={}, phase="train")
    ctx.settings = {"price": {"basis": "test", "usd_per_hour": 36.0, "usd_per_kwh": None}}
    opened = instruments.open([reg.metrics["train_time"]], ctx)
    clock.now += 8.0
    ctx.training = TrainingRun(
        losses=[2.0, 1.0, 0.5, 0.4], step_ends=[2.0, 4.0, 6.0, 7.5], tokens=400, computed_tokens=800, flops=1.6e10,
        trainable_parameters=25, total_parameters=100, checkpoint_bytes=2_000_000, target_loss=0.6,
        no_peak_reason="no peak FLOP/s is known for device 'cpu'",
    )  # fmt: skip
    reported = {(m.metric, m.step): m for m in instruments.close(opened, ctx)}
    value = {key[0]: m.value for key, m in reported.items() if key[1] is None}
    assert value["train_time"] == 8.0 and value["train_step_time"] == 2.0 and value["train_tokens_per_s"] == 50.0
    assert value["train_flops_per_s"] == 2.0  # 1.6e10 FLOPs in 8 s, in GFLOP/s
    assert value["trainable_params_pct"] == 25.0 and value["checkpoint_size"] == 2.0
    assert value["steps_to_target_loss"] == 3 and value["final_train_loss"] == pytest.approx(0.975)
    assert value["train_time_to_target_loss"] == 6.0  # the end of the third step
    assert value["train_cost"] == pytest.approx(36.0 * 8 / 3600)
    assert [reported[("train_loss", s)].value for s in range(4)] == [2.0, 1.0, 0.5, 0.4]
    assert {m.phase for m in reported.values()} == {"train"}
    assert "train_mfu" not in value and ctx.warnings == ["train_mfu not reported: no peak FLOP/s is known for "
                                                        "device 'cpu'"]  # fmt: skip
    ctx.phase = "evaluate"
    assert instruments.open([reg.metrics["train_time"]], ctx) == []  # a repeat window has nothing to train


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """micro-m fine-tuned for three steps then quantized, beside the baseline, run in this process."""
    output = tmp_path_factory.mktemp("trained")
    training = {"steps": 3, "batch_size": 4, "target_loss": 0.01}
    tasks = ("micro_sub", "micro_copy")
    suite = helpers.training_suite(["finetune-full + dynamic-int8"], training, output, model="zoo:micro-m", tasks=tasks)
    result = run_suite(suite, executor=InlineExecutor())
    assert result.failed == {}
    return load(output)


def test_a_training_stack_trains_then_quantizes_then_evaluates_like_inference(trained_store: Path):
    runs = {run.technique: run for run in trained_store.runs}
    run = runs["finetune-full+dynamic-int8"]
    assert run.stage == "finetuning+inference" and run.status == "ok"
    assert list(json.loads(run.phase_seconds)) == ["load", "train", "apply", "accuracy", "measure"]
    assert json.loads(run.settings)["training"]["steps"] == 3 and "training" not in json.loads(
        runs["baseline"].settings
    )
    rows = trained_store.measurements_of(run.run_id)
    train = {m.metric: m for m in rows if m.in_phase == "train" and m.step is None}
    assert {"train_time", "train_step_time", "peak_memory", "energy", "train_flops_per_s"} <= set(train)
    assert train["trainable_params_pct"].value == 100.0
    assert train["checkpoint_size"].value == pytest.approx(4.7, abs=0.1)  # every float32 weight of micro-m
    curve = sorted((m for m in rows if m.metric == "train_loss"), key=lambda m: m.step)
    assert [m.step for m in curve] == [0, 1, 2]  # three steps are too few for the loss to fall for sure
    assert train["final_train_loss"].value == pytest.approx(sum(m.value for m in curve) / 3)  # all steps: < 10
    assert "steps_to_target_loss" not in train  # never reached 0.01 in three steps: null, and the warning says why
    assert any("never reached 0.01 in 3 steps" in w for w in run.warnings)
    evaluated = {(m.task, m.metric) for m in rows if m.in_phase == "evaluate"}
    assert {("micro_sub", "exact_match"), ("micro_copy", "exact_match"), ("", "latency")} <= evaluated
    assert any(m.metric == "apply_time" and m.value > 0 for m in rows)  # dynamic-int8 applied to the trained model
    baseline_rows = trained_store.measurements_of(runs["baseline"].run_id)
    assert not any(m.in_phase == "train" or m.step is not None for m in baseline_rows)


def test_the_report_shows_the_train_phase_in_its_section_and_the_loss_curve_in_the_details(trained_store):
    from effbench.present import report

    [table] = report.build(trained_store)
    titles = [title for title, _ in table.sections]
    assert "Train (one-off)" in titles
    assert "train: Train (s)" in table.headers and "train: Final loss" in table.headers
    assert not any("train_loss" in header for header in table.headers)  # one value per step: not a table cell
    curve = [d for d in table.details if d["metric"] == "train_loss"]
    assert sorted(d["step"] for d in curve) == [0, 1, 2] and {d["phase"] for d in curve} == {"train"}
