"""effbench: what an LLM efficiency technique really costs and saves, accuracy and resources in one run."""

from effbench.api.context import Measurement, Request, RunContext
from effbench.api.executor import Executor, Job, Outcome
from effbench.api.metric import Metric, Quantity, Window
from effbench.api.probe import Probe
from effbench.api.technique import Technique
from effbench.api.tracker import TrackedRun, Tracker
from effbench.errors import EffbenchError, NotApplicable
from effbench.hookspecs import hookimpl
from effbench.version import __version__

__all__ = [
    "EffbenchError",
    "Executor",
    "Job",
    "Measurement",
    "Metric",
    "NotApplicable",
    "Outcome",
    "Probe",
    "Quantity",
    "Request",
    "Results",
    "RunContext",
    "Technique",
    "TrackedRun",
    "Tracker",
    "Window",
    "__version__",
    "evaluate",
    "hookimpl",
    "load",
]


PYTHON_API = ("Results", "evaluate", "load")  # imported when first used: they bring pandas, plugins do not need it


def __getattr__(name: str) -> object:
    """``effbench.evaluate``, ``effbench.load`` and ``effbench.Results`` from ``effbench.python_api``, on first use."""
    if name in PYTHON_API:
        from effbench import python_api

        return getattr(python_api, name)
    raise AttributeError(f"module 'effbench' has no attribute {name!r}")
