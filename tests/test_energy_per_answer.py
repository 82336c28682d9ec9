"""Energy per correct answer: lm-eval's generative requests measured as a window, ÷ the answers scored right."""

import pytest

from effbench.api.context import Measurement
from effbench.api.vocabulary import GENERATE
from effbench.measure.accuracy import correct_answers
from effbench.present import report
from effbench.records import PHASE_EVALUATE
from effbench.run.pipeline import per_correct_answer
from effbench.store.load import load
from tests.conftest import QUICK_SCENARIO, cli


def _row(task, doc, metric, value, tokens, filter="none"):
    return {
        "task": task,
        "doc_id": doc,
        "metric": metric,
        "filter": filter,
        "value": value,
        "prediction_tokens": tokens,
    }


def test_correct_answers_count_generative_tasks_on_their_first_metric_and_filter():
    samples = [
        *(_row("gen", i, "exact_match", float(i < 3), 5, "strict") for i in range(5)),
        *(_row("gen", i, "exact_match", 1.0, 5, "flexible") for i in range(5)),  # a second filter: not counted
        *(_row("choice", i, "acc", 1.0, None) for i in range(5)),  # log-likelihood task: no answer generated
        *(_row("score", i, "rouge", 0.5, 9) for i in range(5)),  # not right-or-wrong: no correct answers
    ]
    assert correct_answers(samples) == 3


def test_per_correct_answer_divides_the_windows_energy_by_the_right_answers():
    generation = [
        Measurement("energy", 1e-6, "kWh", "energy", False, phase=GENERATE),
        Measurement("energy_per_request", 0.36, "J/request", "energy", False, method="estimated", phase=GENERATE),
    ]
    declared = {"energy_per_correct_answer"}
    (figure,) = per_correct_answer(generation, answers=10, correct=4, declared=declared)
    assert (figure.metric, figure.unit, figure.phase, figure.n) == (
        "energy_per_correct_answer",
        "J/correct answer",
        PHASE_EVALUATE,
        4,
    )
    assert figure.value == pytest.approx(0.36 * 10 / 4) and "÷ 4 correct answers of 10" in figure.method
    assert per_correct_answer(generation, answers=10, correct=0, declared=declared) == []  # nothing right: no figure
    assert per_correct_answer(generation, answers=10, correct=4, declared=set()) == []  # nobody declares it


def test_a_run_measures_lm_evals_generation_and_its_energy_per_correct_answer(tmp_path):
    out = tmp_path / "results"
    args = ("--model", "zoo:micro-s", "--task", "micro_copy", "--limit", "8", "--scenario", QUICK_SCENARIO)
    techniques = ("--technique", "baseline", "--technique", "prune-magnitude:sparsity=0.5")
    result = cli("evaluate", "--output", str(out), *args, *techniques, "--executor", "inline")
    assert result.returncode == 0, result.stderr
    results = load(out)
    for run in results.runs:
        rows = {(m.phase, m.metric): m for m in results.measurements_of(run.run_id)}
        per_request = rows[(GENERATE, "energy_per_request")]
        correct = sum(s.value for s in results.samples_of(run.run_id))
        tokens = sum(s.prediction_tokens for s in results.samples_of(run.run_id))
        assert rows[(GENERATE, "energy")].value > 0
        assert rows[(GENERATE, "energy_per_token")].value == pytest.approx(per_request.value * 8 / tokens)
        if correct:
            figure = rows[(PHASE_EVALUATE, "energy_per_correct_answer")]
            assert figure.value == pytest.approx(per_request.value * 8 / correct) and figure.n == correct
        else:
            assert (PHASE_EVALUATE, "energy_per_correct_answer") not in rows
    markdown = (out / "report.md").read_text()
    assert f"**{report.GENERATION_SECTION}**" in markdown  # the section's title, not only its note
    assert "Energy (J/correct answer)" in markdown
