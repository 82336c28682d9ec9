"""Fuzzed suites, short forms and command lines end in a Suite or one clear EffbenchError, never another exception.

Every example is validated only: command lines stop where the sweep would start (``evaluate_until_planned``).
Derandomized and without a database, so every run of the suite tries the same inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from effbench.config.suite import Scenario, Suite, load_suite
from effbench.config.yaml_reader import MAX_DEPTH
from effbench.errors import EffbenchError
from tests.test_suite_validation import checked, evaluate_until_planned

ROOT = Path(__file__).resolve().parents[1]


def fuzz(examples: int, *also_allowed: HealthCheck) -> settings:
    """Reproducible settings: the same examples on every run and machine, however slow the machine is."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, *also_allowed],
    )


VALID_SUITE = """name: pruning-sweep
models: [zoo:micro-m]
techniques:
  - baseline
  - prune-magnitude:sparsity=0.5
  - name: dtype
    params: {dtype: fp16}
  - prune-nm + dynamic-int8
  - stack: [prune-depth:layers=1, dtype:dtype=bf16]
tasks: [micro_world]
limit: null
batch_size: 64
timeout: 900
output: effbench-results
scenarios:
  - kind: single-stream
    prompt_tokens: 32
    repeats: 3
  - {kind: server, rate: 4}
  - {kind: offline, batch_size: 8}
country: USA
prices:
  usd_per_kwh: 0.13
  hardware_usd_per_hour: {cpu-core: 0.048, A100: 1.5}
unstable_cv: 0.10
trust_remote_code: false
executor: forkserver
"""
VALID_SUITES = [VALID_SUITE, (ROOT / "suites" / "inference.yaml").read_text()]
# What breaks YAML or a validator: syntax, anchors, tags, numbers Python cannot convert, odd characters, nesting.
TOKENS = [
    *"[]{}:-,'\"#|>?!&*%@`\t\n",
    ": ",
    "- ",
    "\n  ",
    "&a ",
    "*a",
    "!!int ",
    "!!python/object:os.system ",
    "! ",
    "<<: ",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "0b_",
    "-0x_",
    "1e400",
    ".nan",
    ".inf",
    "~",
    "null",
    "2024-13-45",
    "=",
    "+",
    "\x00",
    "\x85",
    "\u2028",
    "\ufeff",
    "\udcff",
    '""',
    "[" * 40,
    "9" * 5000,
]
TECHNIQUE_NAMES = ["baseline", "dtype", "dynamic-int8", "prune-magnitude", "prune-nm", "speculative", "compile"]
PARAM_KEYS = ["sparsity", "dtype", "n", "m", "draft", "layers", "scope", "window"]
SCENARIO_KINDS = ["single-stream", "fixed-batch", "server", "offline"]

texts = st.text(max_size=12)
names = st.sampled_from(["", " ", "x y", "no-such"]) | texts
scalars = st.none() | st.booleans() | st.integers() | st.floats() | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts | st.integers(), inner, max_size=4),
    max_leaves=12,
)
raw_values = st.sampled_from(["0.5", "1", "fp16", "zoo:micro-s", "global", "[1", "{a", "'x", "[1, 2]", *TOKENS]) | texts
params = st.lists(st.builds("{}={}".format, st.sampled_from(PARAM_KEYS) | texts, raw_values) | texts, max_size=3)


def short_form(name: str, items: list[str]) -> str:
    """``name:k=v,...`` as written on a command line."""
    return f"{name}:{','.join(items)}" if items else name


techniques = st.builds(short_form, st.sampled_from(TECHNIQUE_NAMES) | names, params)
stacks = st.lists(techniques, min_size=1, max_size=3).map(" + ".join) | texts
long_techniques = st.fixed_dictionaries(
    {"name": st.sampled_from(TECHNIQUE_NAMES) | names | values},
    optional={"params": values | st.dictionaries(st.sampled_from(PARAM_KEYS), values, max_size=3), "extra": values},
)
technique_entries = stacks | long_techniques | st.fixed_dictionaries({"stack": st.lists(techniques | values)}) | values
scenario_keys = st.sampled_from([*Scenario.model_fields, "rat"]) | texts
scenario_values = st.integers(-2, 20).map(str) | st.sampled_from(["0.5", ".nan", "1e400"]) | raw_values
scenario_shorts = st.builds(
    short_form,
    st.sampled_from(SCENARIO_KINDS) | names,
    st.lists(st.builds("{}={}".format, scenario_keys, scenario_values) | texts, max_size=3),
)
scenario_entries = (
    scenario_shorts
    | st.dictionaries(scenario_keys, st.integers(-2, 20) | st.sampled_from(SCENARIO_KINDS) | values, max_size=4)
    | values
)
# Field values that often pass, so validation goes past the first error into the models' own checks.
plausible: dict[str, st.SearchStrategy[Any]] = {
    "name": names,
    "models": st.lists(st.sampled_from(["zoo:micro-m", "zoo:micro-s", ""]) | names, max_size=3),
    "revision": st.none() | names,
    "techniques": st.lists(technique_entries, max_size=4),
    "tasks": st.lists(st.sampled_from(["micro_world", "micro_copy"]) | names, max_size=3),
    "limit": st.none() | st.integers(-1, 500),
    "timeout": st.floats(),
    "output": names,
    "scenarios": st.lists(scenario_entries, max_size=3),
    "country": st.sampled_from(["USA", "fra", "XYZ", "France", ""]) | texts,
    "prices": st.fixed_dictionaries(
        {}, optional={"usd_per_kwh": st.floats(), "hardware_usd_per_hour": st.dictionaries(texts, st.floats())}
    )
    | values,
    "executor": st.sampled_from(["forkserver", "inline", ""]) | texts,
    "device": st.sampled_from(["auto", "cpu", "cuda:0", "cuda:", "tpu"]) | texts,
    "dtype": st.sampled_from(["auto", "bfloat16", "float8"]) | texts,
}
suite_fields = st.sampled_from(list(Suite.model_fields)) | texts
suite_documents = st.dictionaries(suite_fields, values, max_size=5) | st.fixed_dictionaries(
    {}, optional={field: strategy | values for field, strategy in plausible.items()}
)


def sound(suite: Suite) -> None:
    """What a validated suite promises: nothing blank, nothing listed twice, the baseline, finite settings."""
    for items in (suite.models, suite.tasks, [t.label for t in suite.techniques], [s.label for s in suite.scenarios]):
        assert len(set(items)) == len(items) and all(item.strip() for item in items), items
    assert "baseline" in [t.name for t in suite.techniques]
    assert all(step.name.strip() for t in suite.techniques for step in t.steps)
    assert suite.name.strip() and suite.executor.strip() and str(suite.output).strip()
    assert 0 < suite.timeout < float("inf") and 0 < suite.unstable_cv < float("inf")


def validates(path: Path | None = None, **overrides: Any) -> None:
    """The property: ``load_suite`` gives a sound Suite, or an EffbenchError: a headline and one line per problem."""
    try:
        suite = load_suite(path, **overrides)
    except EffbenchError as err:
        event("EffbenchError")
        checked(str(err))
    else:
        event("Suite")
        sound(suite)


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file every example overwrites (hypothesis runs a test's examples one after another)."""
    return tmp_path_factory.mktemp("fuzz") / "suite.yaml"


def load_file(path: Path, content: bytes) -> None:
    """A suite file holding ``content`` loads, or is refused with a clean EffbenchError."""
    path.write_bytes(content)
    validates(path)


def utf8(text: str) -> bytes:
    """Text as a file holds it; a lone surrogate becomes its bytes, which are not valid UTF-8 (like any bad bytes)."""
    return text.encode("utf-8", "surrogatepass")


@fuzz(400)
@given(text=st.text(max_size=200) | st.lists(st.sampled_from(TOKENS) | texts, max_size=30).map("".join))
def test_random_text_as_a_suite_file(suite_file, text):
    load_file(suite_file, utf8(text))


@fuzz(200)
@given(content=st.binary(max_size=200))
def test_random_bytes_as_a_suite_file(suite_file, content):
    load_file(suite_file, content)


@fuzz(500)
@given(
    document=suite_documents | values,
    flow=st.none() | st.booleans(),
    depth=st.integers(0, 2 * MAX_DEPTH) | st.integers(0, 2000),
)
def test_random_yaml_documents_and_nesting(suite_file, document, flow, depth):
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True, sort_keys=False)
    if depth:  # the document nested in flow lists: from MAX_DEPTH on it is refused, not a RecursionError
        inner = yaml.safe_dump(document, default_flow_style=True, width=10**9, sort_keys=False).strip()
        text = "techniques: " + "[" * depth + inner + "]" * depth
    load_file(suite_file, utf8(text))


@st.composite
def mutated_suites(draw: st.DrawFn) -> str:
    """A valid suite with characters inserted or deleted and lines duplicated, swapped or dropped."""
    text = draw(st.sampled_from(VALID_SUITES))
    for _ in range(draw(st.integers(1, 5))):
        at = draw(st.integers(0, len(text)))
        lines = text.splitlines(keepends=True)
        line = at % len(lines)
        match draw(st.sampled_from(["insert", "delete", "duplicate", "swap", "drop"])):
            case "insert":
                text = text[:at] + draw(st.sampled_from(TOKENS) | texts) + text[at:]
            case "delete":
                text = text[:at] + text[at + draw(st.integers(1, 30)) :]
            case "duplicate":
                text = "".join([*lines[: line + 1], *lines[line:]])
            case "swap":
                other = draw(st.integers(0, len(lines) - 1))
                lines[line], lines[other] = lines[other], lines[line]
                text = "".join(lines)
            case "drop":
                text = "".join([*lines[:line], *lines[line + 1 :]])
    return text


@fuzz(600)
@given(text=mutated_suites())
def test_mutated_valid_suites(suite_file, text):
    load_file(suite_file, utf8(text))


@fuzz(300)
@given(document=suite_documents)
def test_random_fields_as_overrides(document):
    validates(**{str(key): value for key, value in document.items()})


@fuzz(400)
@given(entries=st.lists(technique_entries, min_size=1, max_size=4))
def test_technique_short_forms_and_stacks(entries):
    validates(techniques=entries)


@fuzz(250)
@given(entries=st.lists(scenario_entries, min_size=1, max_size=3))
def test_scenario_short_forms(entries):
    validates(scenarios=entries)


@st.composite
def command_lines(draw: st.DrawFn, suite_paths: list[str]) -> list[str]:
    """An ``evaluate`` command line: a suite path or none, flags in any order (``--flag=value``: any value is one)."""
    flags = {
        "--model": st.sampled_from(["zoo:micro-m", "zoo:micro-s"]) | names,
        "--technique": stacks,
        "--task": st.sampled_from(["micro_world", "micro_copy"]) | names,
        "--limit": st.integers(-2, 1000).map(str) | texts,
        "--timeout": st.floats().map(str) | texts,
        "--scenario": scenario_shorts,
        "--executor": st.sampled_from(["forkserver", "inline", "ray", "no-such"]) | names,
        "--address": st.sampled_from(["127.0.0.1:6379", "auto", "no-port", ""]) | names,
        "--executor-option": st.sampled_from(["cpus_per_run=2", "runtime_env={a: [1}", "=1", "nokey"]) | texts,
        "--device": st.sampled_from(["auto", "cpu", "cuda", "cuda:1", "cuda:x", "mps", "gpu"]) | names,
        "--dtype": st.sampled_from(["auto", "float32", "bfloat16", "float8", "bf16"]) | names,
        "--device-map": st.sampled_from(["auto", "balanced", "everywhere"]) | names,
        "--attn-implementation": st.sampled_from(["sdpa", "eager", "org/kernel", "a/b/c"]) | names,
    }
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), max_size=6))
    argv = [f"{flag}={draw(flags[flag])}" for flag in chosen]
    if draw(st.booleans()):
        argv.append("--force")
    suite = draw(st.sampled_from([None, *suite_paths]))
    return ([suite] if suite else []) + argv


@pytest.fixture(scope="module")
def suite_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Suite paths to give: a valid suite, an invalid one, a directory and a missing file (in a scratch folder)."""
    root = tmp_path_factory.mktemp("fuzz-cli")
    (root / "valid.yaml").write_text(VALID_SUITE.replace("output: effbench-results", f"output: {root / 'out'}"))
    (root / "invalid.yaml").write_text("techniques: ['prune-magnitude:sparsity=[1']\nlimt: 3\n")
    return [str(root / "valid.yaml"), str(root / "invalid.yaml"), str(root), str(root / "missing.yaml")]


@fuzz(400)
@given(data=st.data())
def test_evaluate_command_lines(suite_paths, data):
    output = str(Path(suite_paths[0]).parent / "out")
    argv = [*data.draw(command_lines(suite_paths)), f"--output={output}"]
    run = evaluate_until_planned(*argv)
    if isinstance(run, Suite):
        event("the sweep would start")
        sound(run)
    elif run.stderr.startswith("usage:"):  # argparse refused the command line (a number flag given text)
        event("usage error")
        assert run.returncode == 2 and run.stderr.splitlines()[-1].startswith("effbench evaluate: error: ")
    else:
        event("EffbenchError")
        assert run.returncode == 2 and run.stderr.startswith("error: "), run.stderr
        checked(run.stderr.rstrip("\n"))
