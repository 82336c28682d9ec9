"""The hooks effbench calls on plugins; tests/test_docs.py checks each is documented in docs/plugins.md and tested."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from effbench.api.executor import Executor
    from effbench.api.metric import Metric
    from effbench.api.probe import Probe
    from effbench.api.technique import Technique
    from effbench.api.tracker import Tracker

PROJECT = "effbench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_techniques(register: Callable[[Technique], None]) -> None:
    """Register techniques: call ``register(technique)`` once per Technique instance."""


@hookspec
def register_metrics(register: Callable[[Metric], None]) -> None:
    """Register metrics: call ``register(metric)`` once per Metric instance."""


@hookspec
def register_probes(register: Callable[[Probe], None]) -> None:
    """Register hardware probes: call ``register(probe)`` once per Probe instance."""


@hookspec
def register_tasks(register: Callable[[str | Path], None]) -> None:
    """Register extra lm-eval task directories: call ``register(path)`` once per directory."""


@hookspec
def register_executors(register: Callable[[Executor], None]) -> None:
    """Register executors (where a run executes): call ``register(executor)`` once per Executor instance."""


@hookspec
def register_trackers(register: Callable[[Tracker], None]) -> None:
    """Register trackers (where stored runs are exported): call ``register(tracker)`` once per Tracker instance."""
