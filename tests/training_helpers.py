"""Helpers shared by the training tests (core and plugins): train a loaded model as a run's train phase does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from effbench.api.training import TrainingRun
from effbench.config.suite import Suite, Training, load_suite
from effbench.plugins import registry
from effbench.records import StackEntry
from effbench.run.pipeline import resolve_stack, train_stack
from tests.conftest import QUICK_SCENARIO

# A budget of seconds: a few small steps on the bundled skill
QUICK_TRAINING = {"steps": 4, "batch_size": 8}


def trained(model: Any, tokenizer: Any, *stack: tuple[str, dict[str, Any]], **training: Any) -> tuple[Any, TrainingRun]:
    """Train ``model`` with the training techniques ``stack`` (name, params) on the suite's ``training`` settings."""
    reg = registry()
    entries = tuple(StackEntry(name, reg.technique(name).validate(params)) for name, params in stack)
    settings = Training.model_validate({**QUICK_TRAINING, **training}).model_dump()
    return train_stack(resolve_stack(entries, reg), model, tokenizer, settings, ("cpu", "float32"))


def training_suite(
    techniques: list[str],
    training: dict[str, Any],
    output: Path,
    *,
    model: str = "zoo:micro-s",
    tasks: Sequence[str] = ("micro_copy",),
    limit: int = 3,
) -> Suite:
    """A suite training ``model`` with each stack in ``techniques``, then scoring ``limit`` documents per task
    under the quick load scenario: a run's whole life in seconds."""
    return load_suite(
        None,
        models=[model],
        techniques=techniques,
        tasks=list(tasks),
        limit=limit,
        bootstrap_iters=0,
        scenarios=[QUICK_SCENARIO],
        training=training,
        output=str(output),
    )
