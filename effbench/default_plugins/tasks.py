"""Registers the bundled offline micro-world tasks with lm-eval."""

from effbench.hookspecs import hookimpl
from effbench.reference.tasks import TASKS_DIR


@hookimpl
def register_tasks(register):
    register(TASKS_DIR)
