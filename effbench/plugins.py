"""The plugin manager: builtins plus the ``effbench`` entry-point group, each loaded under a guard."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pluggy

from effbench import hookspecs
from effbench.api.types import Metric, Probe, Technique, check_metric, check_probe, check_technique
from effbench.errors import EffbenchError

ENTRY_POINT_GROUP = "effbench"
LOAD_ENV = "EFFBENCH_LOAD_PLUGINS"
BUILTIN_MODULES = (
    "effbench.default_plugins.techniques.basic",
    "effbench.default_plugins.techniques.quantization",
    "effbench.default_plugins.techniques.pruning",
    "effbench.default_plugins.techniques.decoding",
    "effbench.default_plugins.techniques.attention",
    "effbench.default_plugins.metrics.model",
    "effbench.default_plugins.metrics.load",
    "effbench.default_plugins.metrics.system",
    "effbench.default_plugins.metrics.energy",
    "effbench.default_plugins.metrics.cost",
    "effbench.default_plugins.probes",
    "effbench.default_plugins.tasks",
)


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
    task_dirs: list[Path] = field(default_factory=list)
    origins: dict[tuple[str, str], Origin] = field(default_factory=dict)
    errors: list[LoadError] = field(default_factory=list)

    def technique(self, name: str) -> Technique:
        """The technique called ``name``, or an error listing the valid names."""
        return _lookup(self.techniques, name, "technique")

    def metric(self, name: str) -> Metric:
        """The metric called ``name``, or an error listing the valid names."""
        return _lookup(self.metrics, name, "metric")


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


def _error_text(err: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(err), err)).strip()


def _load_plugins(pm: pluggy.PluginManager, errors: list[LoadError]) -> dict[str, Origin]:
    """Register builtins, then every selected entry point; a broken one is recorded, not fatal."""
    from effbench import __version__

    origins: dict[str, Origin] = {}
    for module_name in BUILTIN_MODULES:
        pm.register(importlib.import_module(module_name), name=module_name)
        origins[module_name] = Origin(module_name, "effbench", __version__)
    for dist in importlib.metadata.distributions():
        dist_name = dist.metadata["Name"]
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or pm.has_plugin(ep.name) or not _selected(ep.name, dist_name):
                continue
            origin = Origin(ep.name, dist_name, dist.version)
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as err:  # any import-time failure of third-party code
                errors.append(LoadError(origin, _error_text(err)))
                continue
            origins[ep.name] = origin
    return origins


@cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager with hookspecs added (plugins load in ``registry``)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _collect(
    registry: Registry,
    hook_name: str,
    origins: dict[str, Origin],
    accept: Callable[[Any, Origin], None],
) -> None:
    """Call one registration hook plugin by plugin, so an error is pinned on the plugin that made it."""
    pm = plugin_manager()
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
            registry.errors.append(LoadError(origin, f"{hook_name} failed: {_error_text(err)}"))


def _add_named(table: dict[str, Any], kind: str, registry: Registry, obj: Any, origin: Origin) -> None:
    if obj.name in table:
        first = registry.origins[(kind, obj.name)]
        raise ValueError(f"{kind} {obj.name!r} is already registered by {first.plugin} ({first.distribution})")
    table[obj.name] = obj
    registry.origins[(kind, obj.name)] = origin


@cache
def registry() -> Registry:
    """Load every plugin once per process and collect what they register."""
    reg = Registry()
    origins = _load_plugins(plugin_manager(), reg.errors)

    def technique(obj: Technique, origin: Origin) -> None:
        check_technique(obj)
        _add_named(reg.techniques, "technique", reg, obj, origin)

    def metric(obj: Metric, origin: Origin) -> None:
        check_metric(obj)
        _add_named(reg.metrics, "metric", reg, obj, origin)

    def probe(obj: Probe, origin: Origin) -> None:
        check_probe(obj)
        _add_named(reg.probes, "probe", reg, obj, origin)

    def task_dir(path: str | Path, origin: Origin) -> None:
        if not Path(path).is_dir():
            raise ValueError(f"task directory {path} does not exist")
        reg.task_dirs.append(Path(path))

    _collect(reg, "register_techniques", origins, technique)
    _collect(reg, "register_metrics", origins, metric)
    _collect(reg, "register_probes", origins, probe)
    _collect(reg, "register_tasks", origins, task_dir)
    return reg
