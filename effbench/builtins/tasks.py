"""Registers the bundled offline micro-world tasks with lm-eval."""

from effbench.hookspecs import hookimpl
from effbench.tasks import TASKS_DIR


@hookimpl
def register_tasks(register):
    register(TASKS_DIR)
