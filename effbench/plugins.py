"""The plugin manager: builtins plus the ``effbench`` entry-point group, each loaded under a guard."""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import pluggy

from effbench import hookspecs
from effbench.api.executor import Executor, check_executor
from effbench.api.metric import Metric, check_metric
from effbench.api.probe import Probe, check_probe
from effbench.api.technique import Technique, check_technique
from effbench.api.tracker import Tracker, check_tracker
from effbench.errors import EffbenchError, error_text

ENTRY_POINT_GROUP = "effbench"
LOAD_ENV = "EFFBENCH_LOAD_PLUGINS"
DISABLE_ENV = "EFFBENCH_DISABLE"
IN_PROCESS = "in-process"  # the distribution recorded for plugin objects passed to build_registry(extra=...)
BUILTIN_MODULES = (
    "effbench.default_plugins.techniques.basic",
    "effbench.default_plugins.techniques.quantization",
    "effbench.default_plugins.techniques.pruning",
    "effbench.default_plugins.techniques.decoding",
    "effbench.default_plugins.techniques.attention",
    "effbench.default_plugins.techniques.finetuning",
    "effbench.default_plugins.techniques.training_system",
    "effbench.default_plugins.techniques.pretraining",
    "effbench.default_plugins.techniques.communication",
    "effbench.default_plugins.metrics.model",
    "effbench.default_plugins.metrics.fidelity",
    "effbench.default_plugins.metrics.load",
    "effbench.default_plugins.metrics.system",
    "effbench.default_plugins.metrics.contention",
    "effbench.default_plugins.metrics.energy",
    "effbench.default_plugins.metrics.cost",
    "effbench.default_plugins.metrics.training",
    "effbench.default_plugins.probes",
    "effbench.default_plugins.tasks",
    "effbench.default_plugins.executors",
)
# A builtin's plugin name (what EFFBENCH_DISABLE takes) is its module's last dotted component; a test keeps them unique.
BUILTIN_NAMES = {module.rpartition(".")[2]: module for module in BUILTIN_MODULES}


@dataclass(frozen=True)
class Origin:
    """Where a plugin came from: its plugin name and distribution."""

    plugin: str
    distribution: str
    version: str


@dataclass(frozen=True)
class LoadError:
    """A plugin (or one object it registered) that could not be loaded, and why."""

    origin: Origin
    error: str


@dataclass
class Registry:
    """Everything the loaded plugins registered, with its origin, plus what failed to load."""

    techniques: dict[str, Technique] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    probes: dict[str, Probe] = field(default_factory=dict)
    executors: dict[str, Executor] = field(default_factory=dict)
    trackers: dict[str, Tracker] = field(default_factory=dict)
    task_dirs: list[Path] = field(default_factory=list)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def technique(self, name: str) -> Technique:
        """The technique called ``name``, or an error listing the valid names."""
        return _lookup(self.techniques, name, "technique")

    def metric(self, name: str) -> Metric:
        """The metric called ``name``, or an error listing the valid names."""
        return _lookup(self.metrics, name, "metric")

    def executor(self, name: str) -> Executor:
        """The executor called ``name``, or an error listing the valid names."""
        return _lookup(self.executors, name, "executor")

    def tracker(self, name: str) -> Tracker:
        """The tracker called ``name``, or an error listing the valid names."""
        return _lookup(self.trackers, name, "tracker")


def _lookup(table: dict[str, Any], name: str, kind: str) -> Any:
    if name not in table:
        raise EffbenchError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(table))}")
    return table[name]


def _selected(entry_point_name: str, distribution: str) -> bool:
    """Honour EFFBENCH_LOAD_PLUGINS: unset loads all, a comma list loads those, empty loads none."""
    wanted = os.environ.get(LOAD_ENV)
    if wanted is None:
        return True
    names = {w.strip() for w in wanted.split(",") if w.strip()}
    return entry_point_name in names or distribution in names


def _disabled(valid: set[str]) -> set[str]:
    """Honour EFFBENCH_DISABLE: plugin names (builtin short names, entry points) not to load; a typo is an error."""
    names = {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    if unknown := sorted(names - valid):
        raise EffbenchError(
            f"{DISABLE_ENV}: unknown plugin {', '.join(map(repr, unknown))}; valid names: {', '.join(sorted(valid))}"
        )
    return names


def _entry_points() -> list[tuple[importlib.metadata.EntryPoint, Origin]]:
    """Every ``effbench`` entry point with its origin; a distribution found twice on the path counts once."""
    found: dict[tuple[str, str], tuple[importlib.metadata.EntryPoint, Origin]] = {}
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found.setdefault(
                    (dist.metadata["Name"], ep.name), (ep, Origin(ep.name, dist.metadata["Name"], dist.version))
                )
    return list(found.values())


def _register(
    pm: pluggy.PluginManager,
    origin: Origin,
    load: Callable[[], object],
    origins: dict[str, Origin],
    errors: list[LoadError],
) -> None:
    """Register one plugin unless disabled; a failure to import or validate it, or a taken name, is recorded."""
    if pm.is_blocked(origin.plugin):
        return
    if origin.plugin in origins:
        taken = origins[origin.plugin]
        errors.append(LoadError(origin, f"plugin name {origin.plugin!r} is already used by {taken.distribution}"))
        return
    try:
        pm.register(load(), name=origin.plugin)
    except Exception as err:  # any import-time or validation failure of plugin code
        errors.append(LoadError(origin, error_text(err)))
        return
    origins[origin.plugin] = origin


def _drop_unknown_hooks(pm: pluggy.PluginManager, origins: dict[str, Origin], errors: list[LoadError]) -> None:
    """A hookimpl no hookspec names (a misspelt hook) would be ignored: record it and unregister its plugin."""
    valid = sorted(name for name, caller in vars(pm.hook).items() if caller.has_spec())
    while True:
        try:
            pm.check_pending()  # raises for the first plugin with an unknown hook; repeat until none is left
        except pluggy.PluginValidationError as err:
            unknown = sorted(c.name for c in pm.get_hookcallers(err.plugin) or () if not c.has_spec())
            hints = [f"{name!r}{_did_you_mean(name, valid)}" for name in unknown]
            origin = origins.pop(pm.get_name(err.plugin))
            errors.append(LoadError(origin, f"unknown hook {', '.join(hints)}; valid hooks: {', '.join(valid)}"))
            pm.unregister(err.plugin)
        else:
            return


def _did_you_mean(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _collect(
    pm: pluggy.PluginManager,
    registry: Registry,
    hook_name: str,
    origins: dict[str, Origin],
    accept: Callable[[Any, Origin], None],
) -> None:
    """Call one registration hook plugin by plugin, so an error is pinned on the plugin that made it."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        origin = origins[impl.plugin_name]

        def register(obj: Any, origin: Origin = origin) -> None:
            try:
                accept(obj, origin)
            except (TypeError, ValueError, EffbenchError) as err:
                registry.errors.append(LoadError(origin, str(err)))

        try:
            impl.function(register=register)
        except Exception as err:  # third-party hook code
            registry.errors.append(LoadError(origin, f"{hook_name} failed: {error_text(err)}"))


def _add_named(table: dict[str, Any], kind: str, registry: Registry, obj: Any, origin: Origin) -> None:
    if obj.name in table:
        first = registry.origins[(kind, obj.name)]
        raise ValueError(f"{kind} {obj.name!r} is already registered by {first.plugin} ({first.distribution})")
    table[obj.name] = obj
    registry.origins[(kind, obj.name)] = origin


def build_registry(extra: Mapping[str, object] | None = None, *, load_entry_points: bool = True) -> Registry:
    """A fresh registry of the builtins, ``extra`` plugin objects (by name) and entry points; ``registry()`` caches one.

    Tests pass their plugins as ``extra`` (see ``effbench.testing``) instead of installing a distribution.
    """
    from effbench.version import __version__

    extra = dict(extra or {})
    entry_points = _entry_points()
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in _disabled({*BUILTIN_NAMES, *extra, *(origin.plugin for _, origin in entry_points)}):
        pm.set_blocked(name)

    reg = Registry()
    origins: dict[str, Origin] = {}
    for name, module in BUILTIN_NAMES.items():
        _register(
            pm, Origin(name, "effbench", __version__), partial(importlib.import_module, module), origins, reg.errors
        )
    for name, plugin in extra.items():
        _register(pm, Origin(name, IN_PROCESS, ""), lambda plugin=plugin: plugin, origins, reg.errors)
    if load_entry_points:
        for ep, origin in entry_points:
            if _selected(ep.name, origin.distribution):
                _register(pm, origin, ep.load, origins, reg.errors)
    _drop_unknown_hooks(pm, origins, reg.errors)

    def technique(obj: Technique, origin: Origin) -> None:
        check_technique(obj)
        _add_named(reg.techniques, "technique", reg, obj, origin)

    def metric(obj: Metric, origin: Origin) -> None:
        check_metric(obj)
        _add_named(reg.metrics, "metric", reg, obj, origin)

    def probe(obj: Probe, origin: Origin) -> None:
        check_probe(obj)
        _add_named(reg.probes, "probe", reg, obj, origin)

    def executor(obj: Executor, origin: Origin) -> None:
        check_executor(obj)
        _add_named(reg.executors, "executor", reg, obj, origin)

    def tracker(obj: Tracker, origin: Origin) -> None:
        check_tracker(obj)
        _add_named(reg.trackers, "tracker", reg, obj, origin)

    def task_dir(path: str | Path, origin: Origin) -> None:
        if not Path(path).is_dir():
            raise ValueError(f"task directory {path} does not exist")
        reg.task_dirs.append(Path(path))

    _collect(pm, reg, "register_techniques", origins, technique)
    _collect(pm, reg, "register_metrics", origins, metric)
    _collect(pm, reg, "register_probes", origins, probe)
    _collect(pm, reg, "register_executors", origins, executor)
    _collect(pm, reg, "register_trackers", origins, tracker)
    _collect(pm, reg, "register_tasks", origins, task_dir)
    return reg


_pinned: list[Registry] = []  # registries put in place by use_registry, innermost last


@cache
def _loaded() -> Registry:
    """Every plugin, loaded once per process."""
    return build_registry()


def registry() -> Registry:
    """The process-wide registry: every plugin loaded once, or the one a test put in place with ``use_registry``."""
    return _pinned[-1] if _pinned else _loaded()


@contextmanager
def use_registry(reg: Registry) -> Iterator[Registry]:
    """Make ``registry()`` return ``reg`` inside the block and the previous one after it (tests: effbench.testing)."""
    _pinned.append(reg)
    try:
        yield reg
    finally:
        _pinned.pop()
