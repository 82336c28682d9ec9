"""Users' own lm-eval tasks (--include-path, suite task_dirs): lm-eval's task definitions run on local data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lm_eval
import pytest
import yaml

from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.run.sweep import plan
from effbench.store.load import load
from tests.conftest import QUICK_SCENARIO, cli

LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"
ARC = [
    {"id": f"q{i}", "question": q, "choices": {"text": choices, "label": ["A", "B", "C"]}, "answerKey": key}
    for i, (q, choices, key) in enumerate(
        [
            ("Which is a color?", ["red", "dog", "run"], "A"),
            ("Which animal barks?", ["cat", "dog", "fish"], "B"),
            ("What falls from clouds?", ["stone", "bread", "rain"], "C"),
        ]
    )
]
WIKI = [
    {"page": " = Valkyria = \n The game began development in 2010 , carrying over a large portion of the work . \n"},
    {"page": " = Tower = \n The tower is tall and old . It stands on a hill above the town . \n"},
    {"page": " = River = \n The river runs to the sea . \n"},
]
GSM = [{"question": f"What is {a} plus 1?", "answer": f"{a} + 1 = {a + 1}\n#### {a + 1}"} for a in range(6)]  # 5 shots


def user_task(
    folder: Path, name: str, included: str, rows: list[dict], splits: tuple[str, ...], **extra: object
) -> None:
    """A task YAML that includes lm-eval's own file and only points it at local JSON lines (every split: one file)."""
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = {
        "include": str(LM_EVAL_TASKS / included),
        "task": name,
        "tag": [],  # not a member of the included task's tags (ai2_arc, math_word_problems)
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {split: str(data) for split in splits}},
        **extra,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One task of each lm-eval output type, shared by the module so lm-eval's task index is listed once."""
    folder = tmp_path_factory.mktemp("my-tasks")
    user_task(folder, "my_arc", "arc/arc_easy.yaml", ARC, ("train", "validation", "test"))
    user_task(folder, "my_wikitext", "wikitext/wikitext.yaml", WIKI, ("train", "validation", "test"))
    # gsm8k keeps lm-eval's own generation settings (256 new tokens after a 5-shot prompt): micro-s reads 512 tokens
    user_task(folder, "my_gsm8k", "gsm8k/gsm8k.yaml", GSM, ("train", "test"))
    return folder


def test_lm_evals_own_tasks_of_every_output_type_run_on_local_data(task_folder, tmp_path):
    out = tmp_path / "results"
    tasks = [arg for name in ("my_arc", "my_wikitext", "my_gsm8k") for arg in ("--task", name)]
    result = cli(
        "evaluate", "--include-path", str(task_folder), *tasks, "--model", "zoo:micro-s", "--technique", "baseline",
        "--limit", "2", "--scenario", QUICK_SCENARIO, "--executor", "inline", "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = {(m.task, m.metric): m for m in load(out).measurements if m.resource == "quality" and m.task}
    expected = {
        "my_arc": {"acc", "acc_norm"},  # multiple_choice
        "my_wikitext": {"word_perplexity", "byte_perplexity", "bits_per_byte"},  # loglikelihood_rolling, !function
        "my_gsm8k": {"exact_match"},  # generate_until, both of gsm8k's filters
    }
    assert {task: {metric for t, metric in found if t == task} for task in expected} == expected
    assert all(m.n == 2 for m in found.values())  # --limit 2 of the 3 local documents
    assert 0 <= found["my_arc", "acc"].value <= 1 and found["my_wikitext", "byte_perplexity"].value > 1
    methods = {m.method for m in load(out).measurements if m.task == "my_gsm8k"}
    assert methods == {"lm-eval (strict-match filter)", "lm-eval (flexible-extract filter)"}


def test_an_unknown_task_lists_the_users_tasks(task_folder, tmp_path):
    args = ("evaluate", "--include-path", str(task_folder), "--task", "my_ark", "--technique", "baseline")
    result = cli(*args, "--executor", "inline", "--output", str(tmp_path / "results"))
    assert result.returncode == 2
    assert "unknown task 'my_ark' (did you mean my_arc" in result.stderr
    assert "my_gsm8k" in result.stderr and "Traceback" not in result.stderr


def test_a_missing_folder_is_named_before_any_work(tmp_path):
    missing, a_file = tmp_path / "nowhere", tmp_path / "tasks.yaml"
    a_file.write_text("task: x\n")
    result = cli("evaluate", "--include-path", str(missing), "--include-path", str(a_file), "--output", str(tmp_path))
    assert result.returncode == 2
    assert f"task_dirs.0: {missing} is not an existing folder" in result.stderr
    assert f"task_dirs.1: {a_file} is not an existing folder" in result.stderr
    assert not list(tmp_path.glob("logs"))  # no worker was started


def test_suite_folders_are_relative_to_the_suite_file_and_the_flag_adds_to_them(tmp_path, monkeypatch):
    (tmp_path / "suites" / "tasks").mkdir(parents=True)
    (tmp_path / "more").mkdir()
    suite_file = tmp_path / "suites" / "mine.yaml"
    suite_file.write_text("task_dirs: [tasks]\n")
    monkeypatch.chdir(tmp_path)
    suite = load_suite(suite_file.relative_to(tmp_path), task_dirs=["more", "suites/tasks"])
    assert suite.task_dirs == [tmp_path / "suites" / "tasks", tmp_path / "more"]  # absolute, each once
    suite_file.write_text("task_dirs: [elsewhere, 3]\n")
    with pytest.raises(EffbenchError) as info:
        load_suite(suite_file)
    assert str(info.value).splitlines()[1:] == [
        f"  task_dirs.0: {suite_file.parent / 'elsewhere'} is not an existing folder; "
        "expected a folder of lm-eval task YAML files",
        "  task_dirs.1: expected a folder of lm-eval task YAML files, got 3",
    ]


def test_a_task_is_its_name_not_its_folder(task_folder, tmp_path):
    """Resuming from a moved copy of the folder finds the stored runs: the folder is not part of a run's id."""
    moved = shutil.copytree(task_folder, tmp_path / "moved")
    runs = {
        folder: plan(load_suite(tasks=["my_arc"], task_dirs=[str(folder)]), registry(), "fp", {"my_arc"})
        for folder in (task_folder, moved)
    }
    assert [run.run_id for run in runs[task_folder]] == [run.run_id for run in runs[moved]]
    assert runs[moved][0].task_dirs[-1] == str(moved.resolve())  # while the worker's lm-eval reads the folder given
