"""The house's shape: rooms depend one way (records <- measure <- run <- present <- cli), no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "effbench"

# Lowest first: a room may import its own layer's rooms and any lower layer's, never a higher one.
LAYERS = (
    ("errors", "version", "api", "records", "hookspecs", "network"),  # the vocabulary every room shares
    ("config",),  # suites, scenarios, prices, countries
    ("reference",),  # the offline micro world: corpus, tasks, reference models
    ("measure",),  # accuracy, load scenarios, statistics, energy counters, windows
    ("train",),  # training data and the bounded training loop of a run's train phase
    ("store", "aside"),  # the results store and its one loader; work done beside, in a forked process
    ("plugins", "modeling"),  # the plugin host; public helpers for technique authors
    ("run",),  # plans, the pipeline of a run, the sweep, the forkserver
    ("default_plugins",),  # first-party techniques, metrics, probes, tasks, executors
    ("present",),  # comparison tables, leaderboards, compare
    ("publish",),  # the open dataset's card, taxonomy, the Hub
    ("cli",),  # the command line
    ("effbench", "testing", "python_api"),  # the facade, the Python API (evaluate, load, Results), test helpers
)
LAYER_OF = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "micro_world" in path.parts:  # lm-eval task loader, imported by lm-eval by file
            continue
        dotted = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[dotted.removesuffix(".__init__")] = path
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return "effbench" if len(parts) == 1 else parts[1]


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every effbench module ``path`` imports, at module level or inside functions."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module in modules and node.level == 0:
            for alias in node.names:  # a submodule by name, else a name defined in the module itself
                submodule = f"{node.module}.{alias.name}"
                out.add(submodule if submodule in modules else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_every_room_has_a_layer():
    assert {_room(m) for m in _graph()} <= set(LAYER_OF)


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a room in a higher layer than the importer's."""
    return [
        f"{module} -> {target}"
        for module, imported in graph.items()
        for target in imported
        if LAYER_OF[_room(target)] > LAYER_OF[_room(module)]
    ]


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Paths by which a module imports itself back, one found per module that has one."""
    cycles = []
    for start in graph:
        stack, seen = [(start, (start,))], set()
        while stack:
            node, path = stack.pop()
            for target in graph.get(node, ()):
                if target == start:
                    cycles.append(" -> ".join((*path, start)))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, (*path, target)))
    return cycles


def test_rooms_depend_only_on_their_own_or_lower_layers():
    upward = _upward(_graph())
    assert not upward, upward


def test_no_module_imports_itself_back():
    cycles = _cycles(_graph())
    assert not cycles, cycles[:5]


def test_the_checks_catch_an_upward_import_and_a_cycle():
    """The same functions on made-up graphs: a record importing the CLI, and two modules importing each other."""
    assert _upward({"effbench.records": {"effbench.cli.main"}, "effbench.cli.main": {"effbench.records"}}) == [
        "effbench.records -> effbench.cli.main"
    ]
    assert _cycles({"effbench.run.a": {"effbench.run.b"}, "effbench.run.b": {"effbench.run.a"}, "effbench.x": set()})
    assert not _cycles({"effbench.run.a": {"effbench.run.b"}, "effbench.run.b": set()})
