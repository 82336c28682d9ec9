"""Plugin hooks registered in-process (errors, names, origins, parameters), real entry points, env switches."""

import ast
import json
import sys
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field

import effbench
from effbench import EffbenchError, Executor, Job, Metric, Outcome, Probe, Technique, hookimpl
from effbench.api.executor import check_option_names
from effbench.config.suite import load_suite
from effbench.plugins import BUILTIN_MODULES, BUILTIN_NAMES, IN_PROCESS, Origin, build_registry, registry
from effbench.run.sweep import hardware_fingerprint, plan
from effbench.testing import registered
from tests.conftest import make_plugin_dist, run_cli

PLUGINS_DIR = Path(__file__).parents[1] / "plugins"
HOOKS = "register_executors, register_metrics, register_probes, register_tasks, register_techniques"


class Noop(Technique):
    name = "good-noop"
    stage = "system"
    resources = ("computation",)

    def apply(self, model: Any, tokenizer: Any, *, level: Annotated[int, Field(ge=0)] = 1) -> Any:
        return model


class Tokens(Metric):
    name = "good-tokens"
    unit = "tokens"
    resource = "computation"
    higher_is_better = False

    def stop(self, run: Any) -> float:
        return run.output_tokens


class Room(Probe):
    name = "good-room"
    fingerprint_keys = ("room",)

    def collect(self) -> dict[str, Any]:
        return {"room": "lab"}


class Echo(Executor):
    name = "echo"
    description = "Returns the job's payload as its result."

    def run(self, job: Job, on_event: Any = None) -> Outcome:
        return Outcome(result=job.payload)


class GoodPlugin:
    @hookimpl
    def register_techniques(self, register):
        register(Noop())


class EveryHook:
    """One object of every kind, so each hook's objects are seen to land with the plugin's origin."""

    def __init__(self, task_dir: Path) -> None:
        self.task_dir = task_dir

    @hookimpl
    def register_techniques(self, register):
        register(Noop())

    @hookimpl
    def register_metrics(self, register):
        register(Tokens())

    @hookimpl
    def register_probes(self, register):
        register(Room())

    @hookimpl
    def register_executors(self, register):
        register(Echo())

    @hookimpl
    def register_tasks(self, register):
        register(self.task_dir)


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

MISSPELT_HOOK = """
from effbench import hookimpl

@hookimpl
def register_technique(register):
    pass
"""


def test_in_process_plugins_register_every_kind_with_their_origin(tmp_path):
    before = registry()
    with registered(EveryHook(tmp_path)) as reg:
        assert registry() is reg
        origin = Origin("EveryHook", IN_PROCESS, "")
        for kind, name in (("technique", "good-noop"), ("metric", "good-tokens"), ("probe", "good-room")):
            assert reg.origins[(kind, name)] == origin
        assert reg.origins[("executor", "echo")] == origin
        assert reg.task_dirs[-1] == tmp_path
        assert "baseline" in reg.techniques and "example-drop-last-layers" not in reg.techniques  # no entry points
        assert not reg.errors
    assert registry() is before


def test_effbench_registry_fixture_puts_a_registry_in_place_for_the_test(effbench_registry):
    reg = effbench_registry(good=GoodPlugin())
    assert registry() is reg
    assert reg.origins[("technique", "good-noop")].plugin == "good"


def test_executor_is_found_by_name_and_runs_jobs():
    class ExecutorPlugin:
        @hookimpl
        def register_executors(self, register):
            register(Echo())

    with registered(ExecutorPlugin()) as reg:
        echo = reg.executor("echo")
        job = Job(key="run-1", target="m:f", payload={"a": 1}, timeout=1.0)
        assert echo.run(job).result == {"a": 1}
        assert [(j.key, o.result) for j, o in echo.run_many([job])] == [("run-1", {"a": 1})]
        with pytest.raises(EffbenchError, match=r"unknown executor 'nope'; valid executors: .*echo"):
            reg.executor("nope")


class Greeter(Executor):
    """A third party's executor with options of its own (as a Slurm one would take a partition)."""

    name = "greeter"
    description = "Returns the payload with the greeting it was configured with."
    options: ClassVar[dict[str, str]] = {"greeting": "what every result starts with"}

    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting

    def configure(self, options):
        check_option_names(self, options)
        return Greeter(**options)

    def run(self, job: Job, on_event: Any = None) -> Outcome:
        return Outcome(result={"greeting": self.greeting, **job.payload})


def test_executor_options_reach_a_plugin_executor_and_unknown_ones_are_refused():
    class ExecutorPlugin:
        @hookimpl
        def register_executors(self, register):
            register(Greeter())
            register(Echo())

    with registered(ExecutorPlugin()) as reg:
        registered_one = reg.executor("greeter")
        configured = registered_one.configure({"greeting": "hi"})
        job = Job(key="run-1", target="m:f", payload={"a": 1}, timeout=1.0)
        assert configured.run(job).result == {"greeting": "hi", "a": 1}
        assert registered_one.configure({}).run(job).result == {"greeting": "hello", "a": 1}  # itself unchanged
        with pytest.raises(EffbenchError, match=r"^executor 'greeter' has no option 'partition'; valid: greeting$"):
            registered_one.configure({"partition": "gpu"})
        with pytest.raises(EffbenchError, match=r"^executor 'echo' has no option 'greeting'; it takes none$"):
            reg.executor("echo").configure({"greeting": "hi"})


class NoStage(Technique):
    name = "no-stage"
    stage = "lunch"
    resources = ("computation",)


class NoResource(Metric):
    name = "no-resource"
    unit = "s"
    resource = "time"
    higher_is_better = False


class Nameless(Executor):
    """An executor without a name: nothing could select it."""


class Malformed:
    @hookimpl
    def register_techniques(self, register):
        register(NoStage())
        register(Noop())

    @hookimpl
    def register_metrics(self, register):
        register(NoResource())

    @hookimpl
    def register_probes(self, register):
        register(object())

    @hookimpl
    def register_executors(self, register):
        register(Nameless())

    @hookimpl
    def register_tasks(self, register):
        register("/no/such/task/dir")


def test_malformed_objects_are_load_errors_of_their_plugin_and_the_rest_loads():
    with registered(Malformed()) as reg:
        errors = [e.error for e in reg.errors if e.origin == Origin("Malformed", IN_PROCESS, "")]
        assert len(errors) == len(reg.errors) == 5
        for message in (
            "technique 'no-stage': stage must be one of",
            "metric 'no-resource': resource must be one of",
            "is not an effbench.Probe with a name",
            "is not an effbench.Executor with a name",
            "task directory /no/such/task/dir does not exist",
        ):
            assert any(message in e for e in errors), message
        assert [name for name, origin in reg.origins.items() if origin.plugin == "Malformed"] == [
            ("technique", "good-noop")
        ]


def test_duplicate_name_names_the_plugin_that_registered_it_first():
    class Baseline(Noop):
        name = "baseline"

    class Clash:
        @hookimpl
        def register_techniques(self, register):
            register(Baseline())

    with registered(Clash()) as reg:
        [error] = reg.errors
        assert error.origin.plugin == "Clash"
        assert error.error == "technique 'baseline' is already registered by basic (effbench)"
        assert reg.origins[("technique", "baseline")].plugin == "basic"


def test_a_failing_hook_is_pinned_on_its_plugin_and_the_others_load():
    class Boom:
        @hookimpl
        def register_techniques(self, register):
            raise RuntimeError("no GPU here")

    with registered(Boom(), GoodPlugin()) as reg:
        [error] = reg.errors
        assert (error.origin.plugin, error.error) == ("Boom", "register_techniques failed: RuntimeError: no GPU here")
        assert "good-noop" in reg.techniques


def test_misspelt_hook_is_a_load_error_naming_it_and_its_plugin_is_unloaded():
    class Typo:
        @hookimpl
        def register_technique(self, register):
            register(Noop())

        @hookimpl
        def register_metrics(self, register):
            register(Tokens())

    with registered(Typo(), GoodPlugin()) as reg:
        [error] = reg.errors
        assert error.origin == Origin("Typo", IN_PROCESS, "")
        assert error.error == (
            f"unknown hook 'register_technique' (did you mean 'register_techniques'?); valid hooks: {HOOKS}"
        )
        assert "good-tokens" not in reg.metrics  # the broken plugin's valid hook is not called either
        assert reg.origins[("technique", "good-noop")].plugin == "GoodPlugin"


def test_misspelt_hook_argument_is_a_load_error():
    class WrongArgument:
        @hookimpl
        def register_techniques(self, reg):
            reg(Noop())

    with registered(WrongArgument()) as reg:
        [error] = reg.errors
        assert error.origin.plugin == "WrongArgument"
        assert "{'reg'} are declared in the hookimpl but can not be found in the hookspec" in error.error
        assert "good-noop" not in reg.techniques


def test_in_process_technique_parameters_are_validated_by_plan():
    with registered(GoodPlugin()):
        suite = load_suite(techniques=["good-noop:level=-1"])
        with pytest.raises(EffbenchError, match=r"technique 'good-noop': parameter 'level': Input should be greater"):
            plan(suite, registry(), "fp")


def test_two_plugins_with_one_name_must_be_named_apart():
    with pytest.raises(ValueError, match="two plugins are named 'GoodPlugin'"), registered(GoodPlugin(), GoodPlugin()):
        pass
    with registered(first=GoodPlugin(), second=Malformed()) as reg:
        assert reg.origins[("technique", "good-noop")].plugin == "first"


def test_disabled_builtins_and_plugins_are_not_loaded(monkeypatch):
    monkeypatch.setenv("EFFBENCH_DISABLE", " energy,probes , GoodPlugin")
    with registered(GoodPlugin()) as reg:
        assert not {"energy", "energy_direct"} & set(reg.metrics)
        assert not reg.probes
        assert "latency" in reg.metrics and "baseline" in reg.techniques
        assert "good-noop" not in reg.techniques
        assert not reg.errors


def test_unknown_disabled_name_is_an_error_listing_the_valid_names(monkeypatch):
    monkeypatch.setenv("EFFBENCH_DISABLE", "energy,bogus")
    with pytest.raises(EffbenchError, match=r"^EFFBENCH_DISABLE: unknown plugin 'bogus'; valid names: ") as info:
        build_registry(load_entry_points=False)
    for name in ("basic", "energy", "probes", "tasks"):
        assert name in str(info.value).split("valid names: ")[1].split(", ")


def test_builtins_have_unique_short_names_and_load_without_errors():
    assert len(BUILTIN_NAMES) == len(BUILTIN_MODULES)
    assert BUILTIN_NAMES["energy"] == "effbench.default_plugins.metrics.energy"
    assert BUILTIN_NAMES["probes"] == "effbench.default_plugins.probes"
    assert build_registry(load_entry_points=False).errors == []


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path for fake distributions; the modules imported from it are forgotten afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]


def test_entry_points_load_in_process_and_the_env_selects_and_disables_them(site, monkeypatch):
    make_plugin_dist(site, "good-dist", "good", "good_plugin", GOOD)
    make_plugin_dist(site, "clash-dist", "energy", "clash_plugin", GOOD.replace("good-noop", "clash-noop"))
    reg = build_registry()
    assert reg.origins[("technique", "good-noop")] == Origin("good", "good-dist", "0.1")
    assert "example-drop-last-layers" in reg.techniques
    [clash] = reg.errors
    assert (clash.origin, clash.error) == (
        Origin("energy", "clash-dist", "0.1"),
        "plugin name 'energy' is already used by effbench",
    )
    monkeypatch.setenv("EFFBENCH_LOAD_PLUGINS", "good")
    only_good = build_registry().techniques
    assert "good-noop" in only_good and "example-drop-last-layers" not in only_good
    assert "baseline" in only_good  # builtins always load
    monkeypatch.setenv("EFFBENCH_LOAD_PLUGINS", "")
    none = build_registry().techniques
    assert "good-noop" not in none and "example-drop-last-layers" not in none
    monkeypatch.delenv("EFFBENCH_LOAD_PLUGINS")
    monkeypatch.setenv("EFFBENCH_DISABLE", "good")
    reg = build_registry()
    assert "good-noop" not in reg.techniques and "example-drop-last-layers" in reg.techniques


def _plugins_json(env):
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_broken_plugins_are_reported_while_the_others_load(plugin_path):
    root, env = plugin_path
    make_plugin_dist(root, "good-dist", "good", "good_plugin", GOOD)
    make_plugin_dist(root, "broken-dist", "broken", "broken_plugin", BROKEN_IMPORT)
    make_plugin_dist(root, "typo-dist", "typo", "typo_plugin", MISSPELT_HOOK)
    data = _plugins_json(env)
    names = {p["name"]: p for p in data["plugins"]}
    assert names["good-noop"]["distribution"] == "good-dist"
    assert "baseline" in names and "example-drop-last-layers" in names
    errors = {e["plugin"]: e for e in data["errors"]}
    assert errors["broken"]["distribution"] == "broken-dist"
    assert "a_module_that_does_not_exist" in errors["broken"]["error"]
    assert errors["typo"]["distribution"] == "typo-dist"
    assert errors["typo"]["error"].startswith("unknown hook 'register_technique' (did you mean 'register_techniques'?)")
    shown = run_cli("plugins", env=env)
    assert "error loading plugin typo (typo-dist): unknown hook 'register_technique'" in " ".join(shown.stderr.split())


def test_plugins_command_shows_kind_stage_resources_and_origin():
    result = run_cli("plugins")
    assert result.returncode == 0
    for text in ("technique", "prune-magnitude", "inference", "metric", "energy", "probe", "effbench-example"):
        assert text in result.stdout


def test_every_hook_is_implemented_by_a_builtin():
    reg = registry()
    assert reg.techniques and reg.metrics and reg.probes and reg.executors and reg.task_dirs


def _effbench_imports(source: str) -> set[str]:
    """Every effbench module or top-level name a source file imports, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "effbench":
            found |= {f"effbench.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "effbench" or name.startswith("effbench.")}


def test_first_party_plugins_import_only_the_public_api():
    public = {"effbench", "effbench.modeling", *(f"effbench.{name}" for name in effbench.__all__)}
    sources = [
        path
        for path in PLUGINS_DIR.rglob("*.py")
        if not {"tests", "build"} & set(path.relative_to(PLUGINS_DIR).parts) and ".egg-info" not in str(path)
    ]
    assert {p.parent.name for p in sources} >= {"effbench_torchao", "effbench_example"}
    for path in sources:
        private = _effbench_imports(path.read_text()) - public
        assert not private, (
            f"{path.relative_to(PLUGINS_DIR)} imports {sorted(private)}: use effbench or effbench.modeling"
        )


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
        assert "Parameters: sparsity: float (> 0.0, < 1.0) = 0.5" in str(info.value)


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
