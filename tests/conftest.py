"""Shared fixtures: nothing reaches the network, and helpers to run the real CLI and fake plugins."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["EFFBENCH_CACHE"] = tempfile.mkdtemp(prefix="effbench-cache-")  # the task index of this test session

# after the environment above, so nothing it imports reaches the network
from effbench.testing import effbench_registry  # noqa: F401 - the fixture for in-process plugins

# A measured workload small enough for tests about something else than the load (runs take seconds, not tens)
QUICK_SCENARIO = "single-stream:repeats=1,min_requests=2,output_tokens=4,prompt_tokens=8,warmup=0"


def cli(*args: str) -> subprocess.CompletedProcess:
    """Run the ``effbench`` command line in this process (same parsing, errors and output as the installed one)."""
    from effbench.cli.main import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: --version, usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return subprocess.CompletedProcess(["effbench", *args], code, stdout.getvalue(), stderr.getvalue())


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path | None = None):
    """Run the installed ``effbench`` command line in a subprocess: for what only a process shows (kill, env, crash)."""
    return subprocess.run(
        [sys.executable, "-m", "effbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def make_plugin_dist(root: Path, dist: str, entry_name: str, module: str, source: str) -> Path:
    """Create an importable distribution (dist-info with an ``effbench`` entry point) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[effbench]\n{entry_name} = {module}\n")
    return root


@pytest.fixture
def plugin_path(tmp_path):
    """A directory to put fake plugin distributions in; returns an env with it on PYTHONPATH."""
    root = tmp_path / "site"
    root.mkdir()
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return root, env
