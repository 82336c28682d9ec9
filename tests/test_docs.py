"""Every hook is documented in docs/plugins.md and has a test that implements it; the builtin names are documented."""

import inspect
import re
from pathlib import Path

import pytest

from effbench import hookspecs
from effbench.plugins import BUILTIN_NAMES

DOCS = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
TESTS = [path for path in Path(__file__).parent.rglob("*.py") if path != Path(__file__)]
HOOKS = sorted(
    name
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, f"{hookspecs.PROJECT}_spec")
)


def test_the_hooks_are_found():
    assert {"register_techniques", "register_executors"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook):
    assert re.search(rf"^### {hook}\(", DOCS, flags=re.M), f"docs/plugins.md needs a '### {hook}(register)' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_tested(hook):
    implements = re.compile(rf"\bdef {hook}\(")
    assert any(implements.search(path.read_text()) for path in TESTS), f"no test under tests/ implements {hook}"


def test_documented_hooks_exist():
    assert set(re.findall(r"^### (\w+)\(", DOCS, flags=re.M)) <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(BUILTIN_NAMES))
def test_builtin_plugin_name_is_documented(name):
    assert f"| `{name}` |" in DOCS, f"docs/plugins.md 'Switching plugins off' needs a row for {name}"
