"""The register_trackers hook: each stored run is exported once, right after it is written; a tracker that fails
is reported and the run stays stored; a bad tracker is refused before any run."""

import pytest

from effbench import Technique, TrackedRun, Tracker, hookimpl
from effbench.errors import EffbenchError
from effbench.store.load import load
from tests.conftest import QUICK_SCENARIO, cli


class Recording(Tracker):
    """Keeps what it is sent, and whether the run was already stored when it was."""

    name = "recording"

    def __init__(self) -> None:
        self.received: list[tuple[TrackedRun, dict, bool]] = []

    def validate(self, params):
        if set(params) - {"label"}:
            raise ValueError(f"unknown parameter {sorted(set(params) - {'label'})[0]!r}; valid: label")
        return {"label": "default", **params}

    def log_run(self, tracked, **params):
        stored = load(tracked.store, "store").has_run(tracked.run.run_id)
        self.received.append((tracked, params, stored))


class Unreachable(Tracker):
    name = "unreachable"

    def log_run(self, tracked, **params):
        raise ConnectionError("tracking server refused the connection")


class Broken(Technique):
    name = "broken-on-purpose"
    stage = "inference"
    resources = ("computation",)

    def apply(self, model, tokenizer):
        raise RuntimeError("this technique is broken on purpose")


class TrackerPlugin:
    def __init__(self) -> None:
        self.recording = Recording()

    @hookimpl
    def register_trackers(self, register):
        register(self.recording)
        register(Unreachable())

    @hookimpl
    def register_techniques(self, register):
        register(Broken())


def test_every_stored_run_is_exported_once_and_a_failing_tracker_loses_nothing(effbench_registry, tmp_path):
    plugin = TrackerPlugin()
    effbench_registry(trackers=plugin)
    out = tmp_path / "out"
    result = cli(
        "evaluate", "--model", "zoo:micro-s", "--technique", "baseline", "--technique", "prune-magnitude:sparsity=0.5",
        "--technique", "broken-on-purpose", "--task", "micro_copy", "--limit", "4", "--scenario", QUICK_SCENARIO,
        "--executor", "inline", "--output", str(out), "--tracker", "recording:label=lab", "--tracker", "unreachable",
    )  # fmt: skip
    assert result.returncode == 1  # the broken technique's run, not the tracker
    stored = load(out)
    assert sorted(r.status for r in stored.runs) == ["failed", "ok", "ok"]  # the tracker's failure failed no run
    assert len(plugin.recording.received) == 3
    assert {t.run.run_id for t, _, _ in plugin.recording.received} == {r.run_id for r in stored.runs}
    for tracked, params, was_stored in plugin.recording.received:
        assert was_stored and params == {"label": "lab"}
        assert tracked.run == stored.run(tracked.run.run_id)
        assert tracked.measurements == stored.measurements_of(tracked.run.run_id)
        if tracked.run.status == "ok":
            assert "| baseline |" in tracked.report and tracked.run.technique in tracked.report
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: tracker")]
    assert sorted(warnings) == sorted(
        f"warning: tracker 'unreachable' could not export run {r.run_id} (it stays stored): ConnectionError: "
        "tracking server refused the connection"
        for r in stored.runs
    )


def test_an_unknown_tracker_or_parameter_stops_the_sweep_before_any_run(effbench_registry, tmp_path):
    effbench_registry(trackers=TrackerPlugin())
    out = tmp_path / "out"
    for flag, message in (
        ("nope", "error: unknown tracker 'nope'; valid trackers: recording, unreachable"),
        ("recording:colour=red", "error: tracker 'recording': unknown parameter 'colour'; valid: label"),
        ("unreachable:x=1", "error: tracker 'unreachable': unknown parameter 'x': tracker 'unreachable' takes none"),
    ):
        result = cli("evaluate", "--output", str(out), "--tracker", flag, "--task", "micro_copy")
        assert result.returncode == 2 and result.stderr.strip() == message
    result = cli("evaluate", "--output", str(out), "--tracker", "recording", "--tracker", "recording")
    assert result.returncode == 2 and "list each tracker once" in result.stderr
    assert not out.exists()


def test_a_tracker_that_is_not_a_tracker_is_a_load_error(effbench_registry):
    class Wrong:
        @hookimpl
        def register_trackers(self, register):
            register(object())

    reg = effbench_registry(wrong=Wrong())
    result = cli("evaluate", "--tracker", "mlflow")
    assert result.returncode == 2 and "unknown tracker 'mlflow': no tracker is installed" in result.stderr
    assert not reg.trackers and "is not an effbench.Tracker with a name" in reg.errors[0].error
    with pytest.raises(EffbenchError, match=r"unknown tracker .mlflow.; valid trackers: $"):
        reg.tracker("mlflow")
