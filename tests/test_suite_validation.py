"""Each suite that once escaped validation (a traceback, a hang, a silent default, a duplicate) is one clear error."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import NoReturn
from unittest import mock

import pytest

from effbench.config.suite import Suite, load_suite
from effbench.config.yaml_reader import MAX_DEPTH, MAX_SUITE_BYTES
from effbench.errors import EffbenchError
from tests.conftest import cli

# 400 bytes that PyYAML expands to 9**7 strings in technique parameters: 72-105 s, then MemoryError, before the fix.
ALIAS_BOMB = """techniques:
  - name: dtype
    params:
      a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: [*f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def suite_error(tmp_path: Path, content: str | bytes) -> str:
    """The error of a suite file holding ``content``, checked to be one line per problem."""
    path = tmp_path / "suite.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(EffbenchError) as info:
        load_suite(path)
    return checked(str(info.value))


def override_error(**overrides: object) -> str:
    """The error of the default suite with ``overrides`` (as the command line gives them)."""
    with pytest.raises(EffbenchError) as info:
        load_suite(**overrides)
    return checked(str(info.value))


class Planned(Exception):
    """Raised where the sweep would start: the command line passed validation."""

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite.name)
        self.suite = suite


def evaluate_until_planned(*args: str) -> subprocess.CompletedProcess | Suite:
    """``effbench evaluate ARGS`` in this process: its exit and output, or the Suite it would run (never running it)."""

    def stop(suite: Suite, **_: object) -> NoReturn:
        raise Planned(suite)

    with mock.patch("effbench.run.sweep.run_suite", stop):
        try:
            return cli("evaluate", *args)
        except Planned as planned:
            return planned.suite


def checked(message: str) -> str:
    """A message is a headline, then one indented ``field: problem`` line per problem: nothing PyYAML-shaped."""
    headline, *problems = message.split("\n")
    assert headline.strip() and "Traceback" not in message
    assert all(line.startswith("  ") and ": " in line for line in problems), message
    return message


def test_a_file_that_is_not_utf8_is_named_with_the_bad_byte(tmp_path):
    message = suite_error(tmp_path, b"name: caf\xe9\n")
    assert message.endswith("suite.yaml: not UTF-8 text (byte 0xe9 at offset 9): save it as UTF-8")


@pytest.mark.parametrize("how", ["file", "flag"])
def test_a_short_form_value_that_is_not_yaml_names_the_parameter(tmp_path, how):
    technique = "prune-magnitude:sparsity=[1"
    if how == "file":
        message = suite_error(tmp_path, f"techniques: ['{technique}']\n")
    else:
        message = override_error(techniques=[technique])
    assert message.endswith(
        "\n  techniques.0.steps.0: 'prune-magnitude:sparsity=[1': the value of 'sparsity' is not valid YAML: "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    message = suite_error(tmp_path, "name: " + "[" * 5000 + "]" * 5000)
    assert f"not valid YAML: nested more than {MAX_DEPTH} levels deep (line 1, column" in message
    load_suite(**{"techniques": [f"dtype:x={'[' * (MAX_DEPTH - 1)}{']' * (MAX_DEPTH - 1)}"]})  # the limit is allowed


@pytest.mark.parametrize("value", ["!!int x", "!!bool maybe", "!!python/object:os.system x", "! x"])
def test_tagged_values_are_refused(tmp_path, value):
    assert "not valid YAML: YAML tags (" in suite_error(tmp_path, f"name: {value}\n")


@pytest.mark.parametrize("value", ["0b_", "-0x_", "1" * 5000])
def test_numbers_python_cannot_convert_are_yaml_errors(tmp_path, value):
    assert "is not a valid number (line 1, column 8)" in suite_error(tmp_path, f"limit: {value}\n")


def test_a_date_like_revision_is_text_not_a_crash(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("revision: 2024-13-45\n")
    assert load_suite(path).revision == "2024-13-45"


def test_a_directory_or_a_path_through_a_file_is_refused(tmp_path):
    with pytest.raises(EffbenchError, match=r"^suite file .* is a directory: give a suite YAML file$"):
        load_suite(tmp_path)
    (tmp_path / "file").write_text("name: x\n")
    with pytest.raises(EffbenchError, match=r"^cannot read suite file .*file/suite.yaml: Not a directory$"):
        load_suite(tmp_path / "file" / "suite.yaml")
    with pytest.raises(EffbenchError, match=r"^suite file .*missing.yaml does not exist$"):
        load_suite(tmp_path / "missing.yaml")


def test_a_huge_file_is_refused_unread(tmp_path):
    message = suite_error(tmp_path, b"#" * (MAX_SUITE_BYTES + 1))
    assert message.endswith(f"larger than {MAX_SUITE_BYTES:,} bytes: a suite is a short YAML file")


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    assert len(ALIAS_BOMB) <= 400
    started = time.perf_counter()
    message = suite_error(tmp_path, ALIAS_BOMB)
    assert time.perf_counter() - started < 1.0
    assert "not valid YAML: YAML anchors and aliases (&name, *name) are not supported" in message
    assert "anchors and aliases" in override_error(techniques=["dtype:dtype=*a"])


def test_an_empty_model_is_an_error_not_the_default_model(tmp_path):
    expected = "models.0: empty; expected zoo:NAME, a Hub id or a local directory"
    assert expected in suite_error(tmp_path, 'models: [""]\n')
    assert expected in override_error(models=[" "])


def test_an_empty_model_flag_is_an_error_not_the_default_model(tmp_path):
    run = evaluate_until_planned("--model", "", "--output", str(tmp_path))
    assert not isinstance(run, Suite), f"--model '' would run {run.models}"
    assert run.returncode == 2
    assert "models.0: empty; expected zoo:NAME" in run.stderr


def test_an_empty_output_flag_is_an_error_not_the_working_folder(tmp_path):
    run = evaluate_until_planned("--output", "")
    assert not isinstance(run, Suite), f"--output '' would write to {run.output.resolve()}"
    assert run.returncode == 2
    assert "output: empty; expected a results directory" in run.stderr


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"techniques": [""]}, "techniques.0.steps.0.name: empty; expected a technique name"),
        ({"techniques": [":sparsity=0.5"]}, "techniques.0.steps.0.name: empty; expected a technique name"),
        ({"techniques": [{"stack": []}]}, "techniques.0: an empty stack; expected NAME[:k=v,...]"),
        ({"tasks": [""]}, "tasks.0: empty; expected an lm-eval task or group name"),
        ({"executor": ""}, "executor: empty; expected forkserver, inline, ray or a plugin's executor"),
        ({"prices": {"hardware_usd_per_hour": {"": 1.0}}}, "prices.hardware_usd_per_hour: empty device name"),
    ],
)
def test_empty_names_are_errors(overrides, expected):
    assert f"\n  {expected}" in override_error(**overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"models": ["zoo:micro-m", "m", "zoo:micro-m"]}, "models: items 0 and 2 are both model 'zoo:micro-m'"),
        ({"tasks": ["micro_copy", "micro_copy"]}, "tasks: items 0 and 1 are both task 'micro_copy'"),
        ({"techniques": ["dtype", "dtype:"]}, "techniques: items 0 and 1 are both technique 'dtype'"),
        ({"techniques": ["baseline", "baseline"]}, "techniques: items 0 and 1 are both technique 'baseline'"),
        (
            {"techniques": ["prune-nm:n=2 + dtype", {"stack": ["prune-nm:n=2", "dtype"]}]},
            "techniques: items 0 and 1 are both technique 'prune-nm(n=2) + dtype'",
        ),
        (
            {"scenarios": ["server:rate=2", {"kind": "server", "rate": 2.0, "repeats": 5}]},
            "scenarios: items 0 and 1 are both scenario 'server(rate=2/s)'",
        ),
    ],
)
def test_duplicates_are_errors_naming_them_not_run_twice(overrides, expected):
    assert f"\n  {expected}: list each " in override_error(**overrides)


def test_the_baseline_is_still_added_once():
    assert [t.name for t in load_suite(techniques=["dtype"]).techniques] == ["baseline", "dtype"]
    assert [t.name for t in load_suite(techniques=["dtype", "baseline"]).techniques] == ["dtype", "baseline"]
    kept = load_suite(techniques=["dtype:dtype=fp16", "dtype:dtype=bf16"])  # one technique, other parameters
    assert [t.label for t in kept.techniques] == ["baseline", "dtype(dtype=fp16)", "dtype(dtype=bf16)"]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1: x\n", "  1: Keys should be strings"),
        ("models: [null]\n", "  models.0: Input should be a valid string"),
        ("name: [a]\n", "  name: Input should be a valid string"),
        ("techniques: [5]\n", "  techniques.0: expected a technique: NAME[:k=v,...]"),
        ("techniques: [{foo: 1}]\n", "  techniques.0: expected a technique: NAME[:k=v,...]"),
        ("techniques: [{stack: [dtype], params: {}}]\n", "  techniques.0: unknown field 'params' beside 'stack'"),
        ("timeout: .nan\n", "  timeout: Input should be a finite number"),
        ('"a\\nb": 1\n', "  'a\\nb': unknown field; valid fields: name, models, revision, techniques"),
        ("scenarios: [{kind: server, rat: 1}]\n", "  scenarios.0.rat: unknown field; valid fields: kind, prompt_"),
        ("name: \x01\n", "not valid YAML: unacceptable character #x0001: special characters are not allowed"),
        ("[a]\n", "suite.yaml: a suite is a mapping of fields, got list"),
    ],
)
def test_wrong_types_and_keys_are_named(tmp_path, content, expected):
    assert expected in suite_error(tmp_path, content)


def test_a_valid_suite_still_loads(tmp_path):
    path = tmp_path / "suite.yaml"
    path.write_text("# only a comment\n")
    assert isinstance(load_suite(path), Suite)
    suite = load_suite(Path(__file__).resolve().parents[1] / "suites" / "inference.yaml")
    assert suite.techniques[0].name == "baseline" and len(suite.scenarios) == 3
