"""Suite configuration: YAML or flags, validated by pydantic, with errors that name the field."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from effbench.config.countries import check_country
from effbench.config.prices import Prices
from effbench.config.yaml_reader import read_suite_file, read_yaml, yaml_problem
from effbench.errors import EffbenchError
from effbench.records import StackEntry, stack_label, stack_name

DEFAULT_TECHNIQUES = ("baseline", "dynamic-int8", "prune-magnitude:sparsity=0.5")
# Without a suite file, evaluate this many documents per task (of 500) so the default comparison
# takes about a minute on a laptop CPU; suite files evaluate every document unless they set a limit.
DEFAULT_SUITE_LIMIT = 200
DEFAULT_TRAINING_STEPS = 100
TRAINING_FILE_SUFFIX = ".jsonl"  # training data ending so is a file; anything else names bundled data
UNSTABLE_CV = 0.10  # default: a figure whose repeats vary by more than this is flagged unstable
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
DEVICES = "auto, cpu, cuda, cuda:N or mps"
LOAD_OPTIONS = ("device_map", "attn_implementation")  # Suite fields given to from_pretrained as they are
# transformers' attention kernels by name, or a Hub kernel repository (the `kernels` package's ORG/NAME[@REV])
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")
HUB_KERNEL = re.compile(r"[\w.-]+/[\w.-]+([@:][\w.-]+)*")
# A suite is a short text: a larger file is a mistake, and the cap bounds the work of reading any file.
TECHNIQUE_FORMS = "NAME[:k=v,...], NAME + NAME (a stack), {name: NAME, params: {...}} or {stack: [NAME, ...]}"


def not_blank(expected: str) -> Callable[[Any], Any]:
    """A check refusing empty text, saying what to give: ``--model ""`` must not quietly mean the default model."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"empty; expected {expected}")
        return value

    return check


class TechniqueSpec(BaseModel):
    """One technique with its parameters; written ``name`` or ``name:key=value,...`` for short."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, BeforeValidator(not_blank("a technique name (`effbench plugins` lists them)"))]
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short(cls, value: Any) -> Any:
        return parse_short(value) if isinstance(value, str) else value

    @property
    def label(self) -> str:
        """How the technique is shown in tables: ``name(k=v, ...)``."""
        return StackEntry(self.name, self.params).label


class TrackerSpec(TechniqueSpec):
    """A tracker stored runs are exported to, with its parameters; ``name`` or ``name:key=value,...`` for short."""

    name: Annotated[str, BeforeValidator(not_blank("a tracker name (`effbench plugins` lists them)"))]


# "a + b": techniques applied one after another; a "+" between digits (1e+3) is not a separator.
STACK_SPLIT = re.compile(r"\s*\+\s*(?=[A-Za-z])")


class Stack(BaseModel):
    """Techniques applied one after another to the same model (prune then quantize); one technique is a stack of one.

    Written ``name:k=v + other`` for short, or as a mapping ``{stack: [name:k=v, other]}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: tuple[TechniqueSpec, ...]  # not min_length=1: pydantic would add "at least 1 item" to a step's error

    @model_validator(mode="before")
    @classmethod
    def _from_short(cls, value: Any) -> Any:
        """Accept every written form of a technique, and say which forms there are for anything else."""
        if isinstance(value, str):
            return {"steps": STACK_SPLIT.split(value.strip())}
        if isinstance(value, TechniqueSpec):
            return {"steps": [value]}
        if isinstance(value, dict) and "stack" in value:
            extra = sorted(map(repr, set(value) - {"stack"}))
            if extra:
                raise ValueError(f"unknown field {', '.join(extra)} beside 'stack': a stack is {{stack: [NAME, ...]}}")
            return {"steps": value["stack"]}
        if isinstance(value, dict) and "name" in value:
            return {"steps": [value]}
        if isinstance(value, Stack) or (isinstance(value, dict) and "steps" in value):
            return value
        got = "a mapping without name or stack" if isinstance(value, dict) else repr(value)
        raise ValueError(f"expected a technique: {TECHNIQUE_FORMS}; got {got}")

    @model_validator(mode="after")
    def _distinct(self) -> Stack:
        """A stack names each technique once, and the baseline only alone (it is what stacks are compared with)."""
        names = [step.name for step in self.steps]
        if not names:
            raise ValueError(f"an empty stack; expected {TECHNIQUE_FORMS}")
        if len(names) > 1 and "baseline" in names:
            raise ValueError("'baseline' is the unmodified model: it cannot be part of a stack")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"technique {repeated[0]!r} appears twice in one stack: give it once with its parameters")
        return self

    @property
    def name(self) -> str:
        """The techniques' names joined by ``+`` (a single technique's own name)."""
        return stack_name([StackEntry(step.name, step.params) for step in self.steps])

    @property
    def label(self) -> str:
        """How the stack is shown in tables: ``name(k=v) + other``."""
        return stack_label([StackEntry(step.name, step.params) for step in self.steps])


def parse_short(text: str) -> dict[str, Any]:
    """Parse the short form ``name:key=value,...`` of techniques and scenarios (values read as YAML scalars)."""
    name, _, rest = text.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{text!r}: expected key=value, got {item!r}")
        try:
            params[key.strip()] = read_yaml(raw)
        except yaml.YAMLError as err:
            problem = yaml_problem(err, located=False)
            raise ValueError(f"{text!r}: the value of {key.strip()!r} is not valid YAML: {problem}") from None
    return {"name": name.strip(), "params": params}


class Scenario(BaseModel):
    """A load pattern the generation is measured under (MLPerf's scenarios, greedy and forced-length).

    single-stream: one request at a time; fixed-batch: ``batch_size`` requests at a time;
    server: requests arrive as a Poisson process at ``rate`` per second and queue for one
    server (latency includes the wait); offline: every request is there at the start and is
    served in batches of ``batch_size`` for maximum throughput.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    kind: Literal["single-stream", "fixed-batch", "server", "offline"] = "single-stream"
    prompt_tokens: int = Field(32, ge=1, description="tokens per prompt")
    output_tokens: int = Field(32, ge=1, description="tokens generated per request (min = max new tokens)")
    batch_size: int | None = Field(None, ge=1, description="requests per batch (fixed-batch 4, offline 8)")
    rate: float | None = Field(None, gt=0, description="server: mean arrivals per second")
    warmup: int = Field(2, ge=0, description="unmeasured batches before the first repeat")
    min_requests: int = Field(10, ge=1, description="measured requests per repeat, at least")
    min_duration_s: float = Field(0.0, ge=0, description="seconds a repeat lasts, at least")
    repeats: int = Field(3, ge=1, description="independent repeats: their spread is the CV")
    seed: int = Field(0, description="prompts and arrival times")

    @model_validator(mode="before")
    @classmethod
    def _from_short(cls, value: Any) -> Any:
        """``server:rate=4,repeats=5`` is short for ``{kind: server, rate: 4, repeats: 5}``."""
        if not isinstance(value, str):
            return value
        parsed = parse_short(value)
        return {"kind": parsed["name"], **parsed["params"]}

    @model_validator(mode="after")
    def _fits_kind(self) -> Scenario:
        """Fill the kind's defaults and reject settings the kind does not use, so no setting is ignored silently."""
        if self.kind == "server" and self.rate is None:
            raise ValueError("scenario 'server' needs rate (mean requests per second, > 0)")
        if self.kind != "server" and self.rate is not None:
            raise ValueError(f"scenario {self.kind!r} has no arrival rate: rate is only for 'server'")
        batched = {"fixed-batch": 4, "offline": 8}
        if self.kind in batched:
            self.batch_size = self.batch_size or batched[self.kind]
        elif self.batch_size not in (None, 1):
            raise ValueError(f"scenario {self.kind!r} serves one request at a time: batch_size is for fixed-batch")
        else:
            self.batch_size = 1
        return self

    @property
    def label(self) -> str:
        """How the scenario is named in results and tables, e.g. ``server(rate=2/s)``."""
        if self.kind == "server":
            return f"server(rate={self.rate:g}/s)"
        if self.kind in ("fixed-batch", "offline"):
            return f"{self.kind}(batch={self.batch_size})"
        return self.kind


def listed_once(items: list, keys: list, what: str) -> list:
    """Refuse an item listed twice (compared by ``keys``): a duplicate would be run or measured twice."""
    for index, key in enumerate(keys):
        first = keys.index(key)
        if first != index:
            raise ValueError(f"items {first} and {index} are both {what} {key!r}: list each {what} once")
    return items


def existing_folder(value: Any) -> Path:
    """A task folder that exists, made absolute so the workers and the task-name cache see the same one."""
    expected = "expected a folder of lm-eval task YAML files"
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError(f"{expected}, got {value!r}")
    expanded = os.path.expanduser(value)  # os.path: a bad name is "not a folder", never an exception
    if not os.path.isdir(expanded):
        raise ValueError(f"{_field(str(value))} is not an existing folder; {expected}")
    return Path(expanded).resolve()


class Training(BaseModel):
    """The bounded training run of every stack with a training technique: the same data and budget for each."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    data: Annotated[str, BeforeValidator(not_blank("bundled training data or a .jsonl file"))] = Field(
        "micro_sub",
        description="bundled training data (micro_sub: a new skill; micro_induction: the micro world's copy and "
        "recall; micro_world: pre-training text) or a .jsonl file of examples, checked before any run of a suite "
        "that trains",
    )
    steps: int | None = Field(None, gt=0, description="optimizer steps (default 100 when tokens is not given)")
    tokens: int | None = Field(None, gt=0, description="stop once this many target tokens were trained on")
    batch_size: int = Field(32, ge=1, description="examples (rows, when packing) per optimizer step")
    max_length: int = Field(128, ge=2, description="tokens per example; longer ones are cut")
    seed: int = Field(0, description="initialisation of new weights (adapters, a model from scratch), the data order")
    target_loss: float | None = Field(
        None, gt=0, description="report the steps, time and energy until the loss first reached it"
    )
    ranks: int = Field(
        1,
        ge=1,
        description="processes training together (DistributedDataParallel: gloo on cpu, NCCL on GPUs); each takes "
        "an equal share of every batch of batch_size examples",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> Training:
        """A budget in steps or in tokens: both at once would leave it unclear which one ends the run."""
        if self.steps is not None and self.tokens is not None:
            raise ValueError("give the budget as steps or as tokens, not both")
        if self.steps is None and self.tokens is None:
            self.steps = DEFAULT_TRAINING_STEPS
        return self

    @model_validator(mode="after")
    def _shared_by_ranks(self) -> Training:
        """Ranks split every batch equally and stop at the same step, so each takes its share and none waits."""
        if self.ranks > 1 and self.batch_size % self.ranks:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of ranks {self.ranks}: each rank "
                             "takes an equal share of every batch")  # fmt: skip
        if self.ranks > 1 and self.tokens is not None:
            raise ValueError("a distributed training's budget is given in steps (every rank stops at the same step)")
        return self

    def settings(self) -> dict[str, Any]:
        """The training settings a training run stores (part of its id); one rank keeps the ids of runs before ranks."""
        return self.model_dump(exclude={"ranks"} if self.ranks == 1 else None)


class Suite(BaseModel):
    """Everything that defines a sweep; fields that change results are part of each run's identity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Annotated[str, BeforeValidator(not_blank("a name for the suite"))] = "default"
    models: list[Annotated[str, BeforeValidator(not_blank("zoo:NAME, a Hub id or a local directory"))]] = Field(
        default_factory=lambda: ["zoo:micro-m"], min_length=1
    )
    revision: Annotated[str, BeforeValidator(not_blank("a branch, tag or commit of the models"))] | None = None
    techniques: list[Stack] = Field(
        default_factory=lambda: [Stack.model_validate(t) for t in DEFAULT_TECHNIQUES], min_length=1
    )
    tasks: list[Annotated[str, BeforeValidator(not_blank("an lm-eval task or group name"))]] = Field(
        default_factory=lambda: ["micro_world"], min_length=1
    )
    task_dirs: list[Annotated[Path, BeforeValidator(existing_folder)]] = Field(
        default_factory=list, description="the user's lm-eval task folders, beside the plugins' (--include-path)"
    )
    limit: int | None = Field(None, ge=1, description="documents per task (None: all)")
    batch_size: int = Field(64, ge=1)
    bootstrap_iters: int = Field(1000, ge=0)
    timeout: float = Field(900.0, gt=0, description="seconds per run before it is stopped")
    output: Annotated[Path, BeforeValidator(not_blank("a results directory"))] = Path("effbench-results")
    scenarios: list[Scenario] = Field(default_factory=lambda: [Scenario()], min_length=1)
    country: str = Field("USA", description="ISO 3166 alpha-3 code for the CO2 intensity of the grid")
    idle_seconds: float = Field(0.0, ge=0, description="measure idle power this long first and subtract it")
    prices: Prices = Field(default_factory=Prices)
    unstable_cv: float = Field(UNSTABLE_CV, gt=0, description="flag a figure whose CV across repeats exceeds this")
    trust_remote_code: bool = False
    executor: Annotated[str, BeforeValidator(not_blank("forkserver, inline, ray or a plugin's executor"))] = Field(
        "forkserver", description="where runs execute: forkserver, inline, ray, or a plugin's"
    )
    executor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="the executor's own settings, e.g. ray's address (--address, --executor-option)",
    )
    device: str = Field("auto", description=f"where the model runs: {DEVICES} (auto: the first GPU, else cpu)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights' dtype when loaded (auto: the checkpoint's on a GPU, float32 on cpu)"
    )
    device_map: Literal["auto", "balanced", "balanced_low_0", "sequential"] | None = Field(
        None, description="spread a model too large for one device over several (accelerate's strategies)"
    )
    attn_implementation: str | None = Field(None, description="attention kernel at load (None: transformers' choice)")
    trackers: list[TrackerSpec] = Field(
        default_factory=list, description="where each run is exported once stored (--tracker): mlflow, a plugin's"
    )
    training: Training = Field(default_factory=Training, description="data and budget of training techniques' runs")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError(f"unknown device {value!r}; valid: {DEVICES}")
        return value

    @field_validator("attn_implementation")
    @classmethod
    def _known_attention(cls, value: str | None) -> str | None:
        if value is not None and value not in ATTENTION and not HUB_KERNEL.fullmatch(value):
            raise ValueError(f"unknown attention {value!r}; valid: {', '.join(ATTENTION)} or a Hub kernel ORG/NAME")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        try:
            return check_country(value)
        except EffbenchError as err:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(err)) from None

    @field_validator("models", "tasks")
    @classmethod
    def _names_once(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        """A model or task listed twice would be run (or evaluated) twice."""
        return listed_once(value, value, info.field_name.removesuffix("s"))

    @field_validator("task_dirs")
    @classmethod
    def _folders_once(cls, value: list[Path]) -> list[Path]:
        """A folder given twice (in the suite and with --include-path) is read once."""
        return list(dict.fromkeys(value))

    @field_validator("techniques")
    @classmethod
    def _stacks_once(cls, value: list[Stack]) -> list[Stack]:
        """The same stack with the same parameters twice would run twice, as two rows no table could tell apart."""
        return listed_once(value, [stack.label for stack in value], "technique")

    @field_validator("trackers")
    @classmethod
    def _trackers_once(cls, value: list[TrackerSpec]) -> list[TrackerSpec]:
        """A tracker listed twice would log every run twice."""
        return listed_once(value, [tracker.name for tracker in value], "tracker")

    @field_validator("scenarios")
    @classmethod
    def _scenarios_once(cls, value: list[Scenario]) -> list[Scenario]:
        """Measurements are stored by the scenario's label, so two scenarios with one label could not be told apart."""
        return listed_once(value, [scenario.label for scenario in value], "scenario")

    @model_validator(mode="after")
    def _baseline_first(self) -> Suite:
        """Every comparison needs the baseline: add it when the suite leaves it out."""
        if not any(t.name == "baseline" for t in self.techniques):
            self.techniques.insert(0, Stack.model_validate("baseline"))
        return self


# The model an unknown field was found in, by the field names of its location (list indices left out).
MODEL_AT: dict[tuple[str, ...], type[BaseModel]] = {
    (): Suite,
    ("techniques",): Stack,
    ("techniques", "steps"): TechniqueSpec,
    ("scenarios",): Scenario,
    ("prices",): Prices,
    ("training",): Training,
}


def _field(part: str | int) -> str:
    """One part of an error's location, quoted when it is blank or would break the line."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _problem(error: Any) -> str:
    """pydantic's message for one error, with the valid fields for an unknown one and without its "Value error,"."""
    if error["type"] == "extra_forbidden":
        model = MODEL_AT.get(tuple(p for p in error["loc"][:-1] if isinstance(p, str)))
        return f"unknown field; valid fields: {', '.join(model.model_fields)}" if model else "unknown field"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def _explain(err: pydantic.ValidationError, source: str) -> EffbenchError:
    lines = [f"{source}: invalid suite"]
    for e in err.errors():
        where = ".".join(map(_field, e["loc"])) or "(top level)"
        lines.append(f"  {where}: {_problem(e)}")
    return EffbenchError("\n".join(lines))


def _beside(suite_file: Path, folders: Any) -> Any:
    """A suite file's relative task folders are relative to the file (not to where effbench is started)."""
    if not isinstance(folders, list):
        return folders  # validation names the wrong type
    return [
        os.path.join(suite_file.parent, os.path.expanduser(f)) if isinstance(f, str) and f.strip() else f
        for f in folders
    ]


def _training_beside(suite_file: Path, training: Any) -> Any:
    """A suite file's relative training file (``*.jsonl``) is relative to the file, like its task folders."""
    if not isinstance(training, dict) or not isinstance(training.get("data"), str):
        return training if training is not None else {}
    if not training["data"].endswith(TRAINING_FILE_SUFFIX):
        return training  # bundled data's name
    return {**training, "data": os.path.join(suite_file.parent, os.path.expanduser(training["data"]))}


def load_suite(path: Path | None = None, **overrides: Any) -> Suite:
    """Read a suite YAML (or the default suite) and apply command-line overrides on top."""
    data: dict[str, Any] = {"limit": DEFAULT_SUITE_LIMIT}
    source = "default suite"
    if path is not None:
        data = read_suite_file(Path(path))
        source = str(path)
        data["task_dirs"] = _beside(Path(path), data.get("task_dirs", []))
        data["training"] = _training_beside(Path(path), data.get("training"))
    suite_dirs = data.get("task_dirs", [])
    if isinstance(overrides.get("task_dirs"), list) and isinstance(suite_dirs, list):  # --include-path adds to them
        overrides["task_dirs"] = [*suite_dirs, *overrides["task_dirs"]]
    if overrides.get("executor") not in (None, data.get("executor", Suite.model_fields["executor"].default)):
        data.pop("executor_options", None)  # the suite's options are for the suite's executor
    suite_options = data.get("executor_options", {})
    if isinstance(overrides.get("executor_options"), dict) and isinstance(suite_options, dict):  # the command's win
        overrides["executor_options"] = {**suite_options, **overrides["executor_options"]}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Suite.model_validate(data)
    except pydantic.ValidationError as err:
        raise _explain(err, source) from None
