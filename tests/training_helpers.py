"""Helpers shared by the training tests (core and plugins): train a loaded model as a run's train phase does."""

from __future__ import annotations

from typing import Any

from effbench.api.training import TrainingRun
from effbench.config.suite import Training
from effbench.plugins import registry
from effbench.records import StackEntry
from effbench.run.pipeline import resolve_stack, train_stack

# A budget of seconds: a few small steps on the bundled skill
QUICK_TRAINING = {"steps": 4, "batch_size": 8}


def trained(model: Any, tokenizer: Any, *stack: tuple[str, dict[str, Any]], **training: Any) -> tuple[Any, TrainingRun]:
    """Train ``model`` with the training techniques ``stack`` (name, params) on the suite's ``training`` settings."""
    reg = registry()
    entries = tuple(StackEntry(name, reg.technique(name).validate(params)) for name, params in stack)
    settings = Training.model_validate({**QUICK_TRAINING, **training}).model_dump()
    return train_stack(resolve_stack(entries, reg), model, tokenizer, settings, ("cpu", "float32"))
