"""Technique: an efficiency technique and the validation of its parameters."""

from __future__ import annotations

import importlib
import inspect
import types
from typing import Any, ClassVar, Literal, Union

import pydantic

from effbench.api.vocabulary import ONE_OFF_PHASES, RESOURCES, STAGES
from effbench.errors import EffbenchError


class Technique:
    """An efficiency technique: ``apply`` returns the model to evaluate.

    Parameters are the keyword-only arguments of ``apply`` after ``model`` and
    ``tokenizer``; their type hints (optionally ``Annotated[float, Field(ge=0, lt=1)]``)
    and defaults are the validation rules and the documentation users see.

    A technique with ``phase = "train"`` shapes the run's bounded training instead: ``apply`` returns
    the model to train (wrapped, its trainable parameters chosen by ``requires_grad``),
    ``training_options`` sets the loop's options, and ``after_training`` returns the model to evaluate.
    """

    name: ClassVar[str]
    stage: ClassVar[str]
    resources: ClassVar[tuple[str, ...]]
    description: ClassVar[str] = ""
    references: ClassVar[tuple[str, ...]] = ()
    # device types with kernels for it ("cpu", "cuda", "mps"); None: any. A suite pairing it with another is refused.
    devices: ClassVar[tuple[str, ...] | None] = None
    # the run phase it acts in: "apply" transforms the loaded model; "train" shapes a training run, then evaluates
    phase: ClassVar[str] = "apply"
    # training ranks it needs (suite training.ranks): more than 1 for techniques that exchange data between ranks
    min_ranks: ClassVar[int] = 1
    # modules its methods import (its library: "peft", "torchao"): imported before the run's windows open, as torch
    # and transformers are, so loading a library is not counted as the technique's time or memory
    imports: ClassVar[tuple[str, ...]] = ()

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

    def training_options(self, model: Any, tokenizer: Any, **params: Any) -> dict[str, Any]:
        """For ``phase = "train"``: the ``TrainingOptions`` fields this technique sets (learning rate, ...); none here.

        Called after ``apply`` with the same parameters; two techniques of a stack setting one option is an error.
        """
        return {}

    def after_training(self, model: Any, tokenizer: Any, **params: Any) -> Any:
        """For ``phase = "train"``: the model to evaluate once trained (adapters merged); the trained one here."""
        return model

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
    if getattr(obj, "phase", None) not in ONE_OFF_PHASES:
        raise TypeError(f"technique {name!r}: phase must be one of {', '.join(ONE_OFF_PHASES)}")
    min_ranks = getattr(obj, "min_ranks", 1)
    if not isinstance(min_ranks, int) or min_ranks < 1:
        raise TypeError(f"technique {name!r}: min_ranks must be an int >= 1 (the training ranks it needs)")
    devices = getattr(obj, "devices", None)
    if devices is not None and (
        isinstance(devices, str) or not devices or not all(isinstance(d, str) for d in devices)
    ):
        raise TypeError(f"technique {name!r}: devices must be None (any) or device types, e.g. ('cpu', 'cuda')")
    _params_model(type(obj))


def stack_phases(techniques: list[Technique]) -> list[str]:
    """The run phases a stack's techniques act in, in order; refuse a phase that would come back after another.

    ``prune + lora`` prunes, then fine-tunes the pruned model; ``lora + prune + dynamic-int8`` would
    need a second apply phase after training, which a run does not have.
    """
    phases: list[str] = []
    for technique in techniques:
        if phases and technique.phase == phases[-1]:
            continue
        if technique.phase in phases:
            raise EffbenchError(
                f"technique {technique.name!r} acts in the {technique.phase} phase, which an earlier technique of "
                f"the stack already passed: put the stack's {technique.phase}-phase techniques next to each other"
            )
        phases.append(technique.phase)
    return phases


def import_libraries(techniques: list[Technique]) -> None:
    """Import the modules the techniques declare (``imports``) before a window opens: a one-off load is no figure."""
    for module in dict.fromkeys(m for technique in techniques for m in technique.imports):
        importlib.import_module(module)


def check_one_training_method(techniques: list[Technique]) -> None:
    """Refuse two training methods in one stack: each chooses what the run trains and its learning rate (``lr``)."""
    methods = [t.name for t in techniques if t.phase == "train" and "lr" in _params_model(type(t)).model_fields]
    if len(methods) > 1:
        raise EffbenchError(
            f"techniques {methods[0]!r} and {methods[1]!r} are both training methods, each choosing what the run "
            "trains and how fast; a run trains once: list them as separate runs"
        )
