"""effbench: what an LLM efficiency technique really costs and saves, accuracy and resources in one run."""

from effbench.api.context import Measurement, Request, RunContext
from effbench.api.executor import Executor, Job, Outcome
from effbench.api.metric import Metric, Quantity, Window
from effbench.api.probe import Probe
from effbench.api.technique import Technique
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
    "RunContext",
    "Technique",
    "Window",
    "__version__",
    "evaluate",
    "hookimpl",
]


def evaluate(suite=None, *, force: bool = False, **overrides):
    """Run a suite (a path, a Suite, or None for the default) like ``effbench evaluate``; returns the SweepResult."""
    from effbench.config.suite import Suite, load_suite
    from effbench.run.sweep import run_suite

    if not isinstance(suite, Suite):
        suite = load_suite(suite, **overrides)
    return run_suite(suite, force=force)
