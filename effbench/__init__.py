"""effbench: what an LLM efficiency technique really costs and saves, accuracy and resources in one run."""

from importlib.metadata import PackageNotFoundError, version

from effbench.api.types import Measurement, Metric, Probe, RunContext, Technique
from effbench.errors import EffbenchError
from effbench.hookspecs import hookimpl

try:
    __version__ = version("effbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "EffbenchError",
    "Measurement",
    "Metric",
    "Probe",
    "RunContext",
    "Technique",
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
