"""suites/inference.yaml covers every first-party inference technique, the README documents each technique (training
ones too), and each completes a run."""

import re
from pathlib import Path

import yaml

from effbench.config.suite import load_suite
from effbench.plugins import registry
from effbench.run.sweep import check_parameters
from effbench.store.load import load
from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "inference.yaml"
FIRST_PARTY = {"effbench", "effbench-torchao", "effbench-peft"}


def _first_party_techniques():
    reg = registry()
    return {
        name: t for name, t in reg.techniques.items() if reg.origins[("technique", name)].distribution in FIRST_PARTY
    }


def test_the_inference_suite_lists_every_first_party_technique():
    suite = load_suite(SUITE)
    acting_once = {name for name, t in _first_party_techniques().items() if t.phase == "apply"}  # not training ones
    assert {step.name for t in suite.techniques for step in t.steps} == acting_once
    assert suite.models == ["zoo:micro-m"] and suite.tasks == ["micro_world"]
    steps = [step for t in suite.techniques for step in t.steps]
    assert {"sparsity": 0.9} in [step.params for step in steps if step.name == "prune-magnitude"]


def test_the_readme_table_gives_every_techniques_stage_and_resources():
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\| `([a-z0-9-]+)` \| (\w+) \| ([a-z, ]+) \|", line)
        if match:
            rows[match[1]] = (match[2], tuple(match[3].split(", ")))
    for name, technique in _first_party_techniques().items():
        assert rows.get(name) == (technique.stage, technique.resources), name


def test_every_technique_completes_its_accuracy_run_on_micro_m(tmp_path):
    spec = yaml.safe_load(SUITE.read_text())
    spec.update(
        tasks=["micro_copy", "micro_agree"],  # a generate_until task (through generation_kwargs) and a scored one
        limit=4,
        scenarios=[{"min_requests": 2, "prompt_tokens": 16, "output_tokens": 8, "warmup": 1, "repeats": 1}],
        output=str(tmp_path / "results"),
    )
    quick = tmp_path / "quick.yaml"
    quick.write_text(yaml.safe_dump(spec))
    result = cli("evaluate", str(quick), "--executor", "inline")  # in this process: what a worker would run
    results = load(tmp_path / "results")
    runs = results.runs
    failed = {r.technique + r.technique_params: r.error for r in runs if r.status != "ok"}
    assert result.returncode == 0 and not failed, (failed, result.stderr[-3000:])
    assert len(runs) == len(spec["techniques"])
    scored = {(m.run_id, m.task) for m in results.measurements if m.metric in ("exact_match", "acc")}
    assert scored == {(r.run_id, task) for r in runs for task in ("micro_copy", "micro_agree")}
    warnings = {r.technique + r.technique_params: r.warnings for r in runs if len(r.warnings)}
    assert not warnings, warnings  # every builtin metric measured every technique


def test_the_training_suites_are_valid_and_cover_every_first_party_finetuning_method():
    listed = set()
    for name in ("finetuning", "distillation"):
        suite = load_suite(ROOT / "suites" / f"{name}.yaml")
        check_parameters(suite, registry())  # techniques, parameters, stacks and training data: what a sweep checks
        listed |= {step.name for t in suite.techniques for step in t.steps}
    assert {name for name, t in _first_party_techniques().items() if t.stage == "finetuning"} <= listed
