"""The public plugin types: Technique, Metric, Probe and what flows between them."""

from __future__ import annotations

import inspect
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

import pydantic

from effbench.errors import EffbenchError

SCOPES = ("run", "scenario", "repeat")
STAGES = ("architecture", "pretraining", "finetuning", "inference", "system")
RESOURCES = ("computation", "memory", "energy", "money", "network")
QUALITY = "quality"


class Technique:
    """An efficiency technique: ``apply`` returns the model to evaluate.

    Parameters are the keyword-only arguments of ``apply`` after ``model`` and
    ``tokenizer``; their type hints (optionally ``Annotated[float, Field(ge=0, lt=1)]``)
    and defaults are the validation rules and the documentation users see.
    """

    name: ClassVar[str]
    stage: ClassVar[str]
    resources: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()

    def apply(self, model: Any, tokenizer: Any, **params: Any) -> Any:
        """Return the model to evaluate (may modify ``model`` in place)."""
        return model

    def preflight(self, config: Any, **params: Any) -> None:
        """Reject parameters impossible for this model before any run starts: raise ValueError saying why.

        ``config`` is the model's transformers config (no weights loaded); ``config.name_or_path``
        locates the model, e.g. to compare a draft model's tokenizer with it.
        """

    def generation_kwargs(self, model: Any, tokenizer: Any, **params: Any) -> dict[str, Any]:
        """Extra ``model.generate`` arguments for decoding techniques (draft model, cache); none by default.

        Called after ``apply`` with the same parameters; the result is used for every
        generation of the run: lm-eval's ``generate_until`` tasks and the measured workload.
        """
        return {}

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        """Check ``params`` against ``apply``'s signature; raise a clear error naming the technique."""
        try:
            checked = _params_model(type(self)).model_validate(params)
        except pydantic.ValidationError as err:
            problems = "; ".join(_problem(e) for e in err.errors())
            raise EffbenchError(
                f"technique {self.name!r}: {problems}. Parameters: {self.describe_params() or 'none'}"
            ) from None
        return checked.model_dump()

    def describe_params(self) -> str:
        """One line listing every parameter with its type, range and default."""
        parts = []
        for pname, info in _params_model(type(self)).model_fields.items():
            text = f"{pname}: {_type_text(info.annotation)}"
            limits = [
                f"{symbol} {getattr(m, attr)}"
                for m in info.metadata
                for symbol, attr in [_BOUNDS.get(type(m).__name__, ("", ""))]
                if symbol
            ]
            if limits:
                text += f" ({', '.join(limits)})"
            if not info.is_required():
                text += f" = {info.default!r}"
            parts.append(text)
        return ", ".join(parts)


_BOUNDS = {
    "Ge": (">=", "ge"),
    "Gt": (">", "gt"),
    "Le": ("<=", "le"),
    "Lt": ("<", "lt"),
    "MinLen": ("min length", "min_length"),
    "MaxLen": ("max length", "max_length"),
}


def _type_text(annotation: Any) -> str:
    """A readable type: ``float``, or ``one of 'bf16', 'fp16'`` for a Literal."""
    if hasattr(annotation, "__metadata__"):  # Annotated[X, ...]: the constraints are shown separately
        return _type_text(annotation.__origin__)
    if getattr(annotation, "__origin__", None) is Literal:
        return "one of " + ", ".join(repr(a) for a in annotation.__args__)
    if isinstance(annotation, types.UnionType) or getattr(annotation, "__origin__", None) is Union:
        return " | ".join(_type_text(a) for a in annotation.__args__)
    return "None" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def _problem(error: Any) -> str:
    """One pydantic error as a short phrase naming the parameter."""
    where = ".".join(map(str, error["loc"])) or "params"
    if error["type"] == "extra_forbidden":
        return f"unknown parameter {where!r}"
    return f"parameter {where!r}: {error['msg']} (got {error.get('input')!r})"


_PARAM_MODELS: dict[type, type[pydantic.BaseModel]] = {}


def _params_model(cls: type[Technique]) -> type[pydantic.BaseModel]:
    """A pydantic model of ``cls.apply``'s keyword parameters (cached per class)."""
    if cls not in _PARAM_MODELS:
        fields: dict[str, Any] = {}
        hints = inspect.get_annotations(cls.apply, eval_str=True)
        for p in list(inspect.signature(cls.apply).parameters.values())[3:]:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
        config = pydantic.ConfigDict(extra="forbid", strict=False)
        _PARAM_MODELS[cls] = pydantic.create_model(f"{cls.__name__}Params", __config__=config, **fields)
    return _PARAM_MODELS[cls]


@dataclass(frozen=True)
class Measurement:
    """One measured value, with everything needed to read and trust it."""

    metric: str
    value: float
    unit: str
    resource: str
    higher_is_better: bool
    task: str = ""
    stderr: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    method: str = ""
    scenario: str = ""
    cv: float | None = None


@dataclass
class Request:
    """One generation request of a measured scenario; times in seconds, from its arrival."""

    prompt_tokens: int
    new_tokens: int
    latency_s: float
    ttft_s: float | None = None
    queued_s: float = 0.0
    repeat: int = 0

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first (None when only one token was generated)."""
        if self.ttft_s is None or self.new_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.new_tokens - 1)


@dataclass
class RunContext:
    """What a metric can see: the evaluated model and what happened in the run so far.

    In a ``repeat``-scope metric, ``requests`` and ``workload_seconds`` are the current repeat's;
    in a ``scenario``-scope metric they cover all repeats of the scenario (each request knows its
    repeat), ``repeat_seconds`` lists each repeat's duration and ``measurements`` holds what the
    repeat-scope metrics reported for the scenario, combined over repeats.
    """

    model: Any
    tokenizer: Any
    technique: str
    params: dict[str, Any]
    accuracy: dict[str, Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    workload_seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    generate_kwargs: dict[str, Any] = field(default_factory=dict)
    apply_seconds: float = 0.0
    scenario: Any = None
    repeat_seconds: list[float] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    started_at: float = 0.0  # time.perf_counter() when the run began (loading the model)

    @property
    def output_tokens(self) -> int:
        """Tokens generated by the requests in view."""
        return sum(r.new_tokens for r in self.requests)


class Metric:
    """An instrument of the measured scenarios; ``scope`` says when it is called.

    ``repeat`` (default): ``start`` before and ``stop`` after every repeat of every scenario;
    effbench combines the repeats (mean, 95 % interval, coefficient of variation).
    ``scenario``: ``stop`` once per scenario, seeing all its requests (latency distributions).
    ``run``: ``stop`` once per run, after the scenarios (model size, parameters, accuracy).
    ``stop`` returns a number (reported under this metric's name, unit and resource),
    a Measurement, a list of Measurements (instruments that report several quantities),
    or None when it has nothing to report for this run.
    """

    name: ClassVar[str]
    unit: ClassVar[str]
    resource: ClassVar[str]
    higher_is_better: ClassVar[bool]
    description: ClassVar[str] = ""
    scope: ClassVar[str] = "repeat"

    def start(self, run: RunContext) -> None:
        """Begin measuring (the default does nothing: static metrics only implement ``stop``)."""

    def stop(self, run: RunContext) -> float | Measurement | list[Measurement] | None:
        """Finish measuring and report."""
        raise NotImplementedError

    def measurement(self, value: float, **extra: Any) -> Measurement:
        """A Measurement of this metric's own quantity."""
        return Measurement(self.name, float(value), self.unit, self.resource, self.higher_is_better, **extra)


class Probe:
    """Describes the machine a run happened on; ``collect`` returns JSON-serialisable data.

    ``fingerprint_keys`` name the fields that identify the hardware (not the moment), so
    results from different machines are never mixed silently.
    """

    name: ClassVar[str]
    fingerprint_keys: ClassVar[tuple[str, ...]] = ()

    def collect(self) -> dict[str, Any]:
        """Return what this probe knows about the machine."""
        raise NotImplementedError


def check_technique(obj: Technique) -> None:
    """Reject a malformed technique at registration, naming what is wrong."""
    if not isinstance(obj, Technique):
        raise TypeError(f"{obj!r} is not an effbench.Technique")
    name = getattr(obj, "name", "")
    if not name or not isinstance(name, str):
        raise TypeError(f"{type(obj).__name__} has no name")
    if getattr(obj, "stage", None) not in STAGES:
        raise TypeError(f"technique {name!r}: stage must be one of {', '.join(STAGES)}")
    resources = getattr(obj, "resources", ())
    if not resources or not set(resources) <= set(RESOURCES):
        raise TypeError(f"technique {name!r}: resources must be a non-empty subset of {', '.join(RESOURCES)}")
    _params_model(type(obj))


def check_metric(obj: Metric) -> None:
    """Reject a malformed metric at registration, naming what is wrong."""
    if not isinstance(obj, Metric):
        raise TypeError(f"{obj!r} is not an effbench.Metric")
    for attr in ("name", "unit", "resource", "higher_is_better"):
        if not hasattr(obj, attr):
            raise TypeError(f"metric {type(obj).__name__} lacks {attr!r}")
    if obj.resource not in (*RESOURCES, QUALITY):
        raise TypeError(f"metric {obj.name!r}: resource must be one of {', '.join((*RESOURCES, QUALITY))}")
    if obj.scope not in SCOPES:
        raise TypeError(f"metric {obj.name!r}: scope must be one of {', '.join(SCOPES)}")


def check_probe(obj: Probe) -> None:
    """Reject a malformed probe at registration, naming what is wrong."""
    if not isinstance(obj, Probe) or not getattr(obj, "name", ""):
        raise TypeError(f"{obj!r} is not an effbench.Probe with a name")
