"""Suite configuration: YAML or flags, validated by pydantic, with errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from effbench.config.countries import check_country
from effbench.config.prices import Prices
from effbench.errors import EffbenchError
from effbench.records import StackEntry, stack_label

DEFAULT_TECHNIQUES = ("baseline", "dynamic-int8", "prune-magnitude:sparsity=0.5")
# Without a suite file, evaluate this many documents per task (of 500) so the default comparison
# takes about a minute on a laptop CPU; suite files evaluate every document unless they set a limit.
DEFAULT_SUITE_LIMIT = 200
UNSTABLE_CV = 0.10  # default: a figure whose repeats vary by more than this is flagged unstable


class TechniqueSpec(BaseModel):
    """One technique with its parameters; written ``name`` or ``name:key=value,...`` for short."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_short(cls, value: Any) -> Any:
        return parse_short(value) if isinstance(value, str) else value

    @property
    def label(self) -> str:
        """How the technique is shown in tables: ``name(k=v, ...)``."""
        return StackEntry(self.name, self.params).label


# "a + b": techniques applied one after another; a "+" between digits (1e+3) is not a separator.
STACK_SPLIT = re.compile(r"\s*\+\s*(?=[A-Za-z])")


class Stack(BaseModel):
    """Techniques applied one after another to the same model (prune then quantize); one technique is a stack of one.

    Written ``name:k=v + other`` for short, or as a mapping ``{stack: [name:k=v, other]}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: tuple[TechniqueSpec, ...] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_short(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"steps": [part for part in STACK_SPLIT.split(value.strip())]}
        if isinstance(value, TechniqueSpec):
            return {"steps": [value]}
        if isinstance(value, dict) and "stack" in value:
            return {"steps": value["stack"]}
        if isinstance(value, dict) and "name" in value:
            return {"steps": [value]}
        return value

    @model_validator(mode="after")
    def _distinct(self) -> Stack:
        """A stack names each technique once, and the baseline only alone (it is what stacks are compared with)."""
        names = [step.name for step in self.steps]
        if len(names) > 1 and "baseline" in names:
            raise ValueError("'baseline' is the unmodified model: it cannot be part of a stack")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"technique {repeated[0]!r} appears twice in one stack: give it once with its parameters")
        return self

    @property
    def name(self) -> str:
        """The techniques' names joined by ``+`` (a single technique's own name)."""
        return "+".join(step.name for step in self.steps)

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
        params[key.strip()] = yaml.safe_load(raw)
    return {"name": name.strip(), "params": params}


class Scenario(BaseModel):
    """A load pattern the generation is measured under (MLPerf's scenarios, greedy and forced-length).

    single-stream: one request at a time; fixed-batch: ``batch_size`` requests at a time;
    server: requests arrive as a Poisson process at ``rate`` per second and queue for one
    server (latency includes the wait); offline: every request is there at the start and is
    served in batches of ``batch_size`` for maximum throughput.
    """

    model_config = ConfigDict(extra="forbid")
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


class Suite(BaseModel):
    """Everything that defines a sweep; fields that change results are part of each run's identity."""

    model_config = ConfigDict(extra="forbid")
    name: str = "default"
    models: list[str] = Field(default_factory=lambda: ["zoo:micro-m"], min_length=1)
    revision: str | None = None
    techniques: list[Stack] = Field(
        default_factory=lambda: [Stack.model_validate(t) for t in DEFAULT_TECHNIQUES], min_length=1
    )
    tasks: list[str] = Field(default_factory=lambda: ["micro_world"], min_length=1)
    limit: int | None = Field(None, ge=1, description="documents per task (None: all)")
    batch_size: int = Field(64, ge=1)
    bootstrap_iters: int = Field(1000, ge=0)
    timeout: float = Field(900.0, gt=0, description="seconds per run before it is stopped")
    output: Path = Path("effbench-results")
    scenarios: list[Scenario] = Field(default_factory=lambda: [Scenario()], min_length=1)
    country: str = Field("USA", description="ISO 3166 alpha-3 code for the CO2 intensity of the grid")
    idle_seconds: float = Field(0.0, ge=0, description="measure idle power this long first and subtract it")
    prices: Prices = Field(default_factory=Prices)
    unstable_cv: float = Field(UNSTABLE_CV, gt=0, description="flag a figure whose CV across repeats exceeds this")
    trust_remote_code: bool = False
    executor: str = Field("forkserver", description="where runs execute: forkserver, inline, or a plugin's")

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        try:
            return check_country(value)
        except EffbenchError as err:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _baseline_first(self) -> Suite:
        """Every comparison needs the baseline: add it when the suite leaves it out."""
        if not any(t.name == "baseline" for t in self.techniques):
            self.techniques.insert(0, Stack.model_validate("baseline"))
        return self


def _explain(err: pydantic.ValidationError, source: str) -> EffbenchError:
    lines = [f"{source}: invalid suite"]
    for e in err.errors():
        where = ".".join(map(str, e["loc"])) or "(top level)"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        lines.append(f"  {where}: {msg}")
    return EffbenchError("\n".join(lines))


def load_suite(path: Path | None = None, **overrides: Any) -> Suite:
    """Read a suite YAML (or the default suite) and apply command-line overrides on top."""
    data: dict[str, Any] = {"limit": DEFAULT_SUITE_LIMIT}
    source = "default suite"
    if path is not None:
        data = {}
        source = str(path)
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise EffbenchError(f"suite file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise EffbenchError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise EffbenchError(f"{path}: a suite is a mapping of fields, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Suite.model_validate(data)
    except (pydantic.ValidationError, ValueError) as err:
        if isinstance(err, pydantic.ValidationError):
            raise _explain(err, source) from None
        raise EffbenchError(f"{source}: {err}") from None
