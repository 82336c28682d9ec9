"""Plugin discovery through real entry points, guarded loading, the env filter, validation, docs."""

import inspect
import json
import re
from pathlib import Path

import pytest

from effbench import hookspecs
from effbench.config.suite import load_suite
from effbench.errors import EffbenchError
from effbench.plugins import registry
from effbench.run.sweep import hardware_fingerprint, plan
from tests.conftest import make_plugin_dist, run_cli

DOCS = Path(__file__).parents[1] / "docs" / "plugins.md"

GOOD = """
from effbench import Technique, hookimpl

class Noop(Technique):
    name = "good-noop"
    stage = "system"
    resources = ("computation",)

@hookimpl
def register_techniques(register):
    register(Noop())
"""

BROKEN_IMPORT = """
import a_module_that_does_not_exist
"""

MALFORMED = """
from effbench import Technique, hookimpl

class NoStage(Technique):
    name = "no-stage"
    stage = "lunch"
    resources = ("computation",)

@hookimpl
def register_techniques(register):
    register(NoStage())
"""


def _plugins_json(env):
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_broken_plugins_are_reported_while_the_others_load(plugin_path):
    root, env = plugin_path
    make_plugin_dist(root, "good-dist", "good", "good_plugin", GOOD)
    make_plugin_dist(root, "broken-dist", "broken", "broken_plugin", BROKEN_IMPORT)
    make_plugin_dist(root, "malformed-dist", "malformed", "malformed_plugin", MALFORMED)
    data = _plugins_json(env)
    names = {p["name"]: p for p in data["plugins"]}
    assert names["good-noop"]["distribution"] == "good-dist"
    assert "baseline" in names and "example-drop-last-layers" in names
    errors = {e["plugin"]: e for e in data["errors"]}
    assert errors["broken"]["distribution"] == "broken-dist"
    assert "a_module_that_does_not_exist" in errors["broken"]["error"]
    assert "stage must be one of" in errors["malformed"]["error"]
    assert "no-stage" not in names


def test_load_plugins_env_selects_entry_points(plugin_path):
    root, env = plugin_path
    make_plugin_dist(root, "good-dist", "good", "good_plugin", GOOD)
    only_good = {p["name"] for p in _plugins_json({**env, "EFFBENCH_LOAD_PLUGINS": "good"})["plugins"]}
    assert "good-noop" in only_good and "example-drop-last-layers" not in only_good
    assert "baseline" in only_good  # builtins always load
    none = {p["name"] for p in _plugins_json({**env, "EFFBENCH_LOAD_PLUGINS": ""})["plugins"]}
    assert "good-noop" not in none and "example-drop-last-layers" not in none


def test_plugins_command_shows_kind_stage_resources_and_origin():
    result = run_cli("plugins")
    assert result.returncode == 0
    for text in ("technique", "prune-magnitude", "inference", "metric", "energy", "probe", "effbench-example"):
        assert text in result.stdout


def test_every_hook_is_documented_in_its_own_section():
    hooks = {name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("register_")}
    documented = set(re.findall(r"^### (\w+)\(register\)$", DOCS.read_text(), flags=re.M))
    assert hooks == documented
    assert len(hooks) == 4


def test_every_hook_is_implemented_by_a_builtin():
    reg = registry()
    assert reg.techniques and reg.metrics and reg.probes and reg.task_dirs


def test_unknown_technique_lists_valid_names():
    suite = load_suite(techniques=["no-such-technique"])
    with pytest.raises(EffbenchError, match=r"unknown technique 'no-such-technique'; valid techniques: ") as info:
        plan(suite, registry(), "fp")
    for name in ("baseline", "dtype", "prune-magnitude", "example-drop-last-layers"):
        assert name in str(info.value)


def test_bad_parameter_names_the_technique_and_its_parameters():
    for params, message in (
        ("sparsity=1.5", r"parameter 'sparsity': Input should be less than 1 \(got 1.5\)"),
        ("sparsty=0.1", r"unknown parameter 'sparsty'"),
        ("sparsity=lots", r"parameter 'sparsity': Input should be a valid number"),
    ):
        suite = load_suite(techniques=[f"prune-magnitude:{params}"])
        with pytest.raises(EffbenchError, match=message) as info:
            plan(suite, registry(), "fp")
        assert "technique 'prune-magnitude'" in str(info.value)
        assert "Parameters: sparsity: float (>= 0.0, < 1.0) = 0.5" in str(info.value)


def test_unknown_task_lists_the_bundled_tasks():
    suite = load_suite(tasks=["micro_cpy"])
    with pytest.raises(EffbenchError, match=r"unknown task 'micro_cpy' \(did you mean micro_copy") as info:
        plan(suite, registry(), "fp")
    assert "micro_world" in str(info.value)


def test_suite_errors_name_the_field(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("models: [zoo:micro-m]\nscenarios:\n  - min_requests: 0\nlimt: 5\n")
    with pytest.raises(EffbenchError) as info:
        load_suite(path)
    text = str(info.value)
    assert "scenarios.0.min_requests: Input should be greater than or equal to 1" in text
    assert "limt: unknown field" in text


def test_baseline_is_always_part_of_a_suite():
    suite = load_suite(techniques=["dtype:dtype=fp16"])
    assert [t.name for t in suite.techniques] == ["baseline", "dtype"]


def test_run_ids_are_stable_and_depend_on_hardware():
    reg = registry()
    suite = load_suite()
    first = [r.run_id for r in plan(suite, reg, "machine-a")]
    assert first == [r.run_id for r in plan(suite, reg, "machine-a")]
    assert set(first).isdisjoint(r.run_id for r in plan(suite, reg, "machine-b"))
    assert len(set(first)) == len(first)


def test_hardware_fingerprint_ignores_momentary_values():
    reg = registry()
    probes = {"memory": {"total_gib": 24, "available_gib": 20.5}, "cpu": {"model": "x", "logical_cores": 2}}
    later = {"memory": {"total_gib": 24, "available_gib": 3.1}, "cpu": {"model": "x", "logical_cores": 2}}
    other = {"memory": {"total_gib": 48, "available_gib": 3.1}, "cpu": {"model": "x", "logical_cores": 2}}
    assert hardware_fingerprint(reg, probes) == hardware_fingerprint(reg, later)
    assert hardware_fingerprint(reg, probes) != hardware_fingerprint(reg, other)
