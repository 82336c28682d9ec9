"""Builtin decoding techniques: they change how ``generate`` is called, not the weights.

Both are lossless under greedy decoding (the output equals the baseline's) and save time by
verifying several proposed tokens in one forward pass of the model. transformers runs them
only for a batch of one sequence ("assisted generate is only supported for batch_size = 1").
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from pydantic import Field

from effbench.api.technique import Technique
from effbench.hookspecs import hookimpl
from effbench.modeling import check_same_tokenizer
from effbench.reference import zoo

DEFAULT_DRAFT = "zoo:micro-s"


@cache
def _draft(model_id: str) -> Any:
    """The draft model, loaded once per process (it is only read, never modified)."""
    model, _ = zoo.load(model_id)
    return model


class Speculative(Technique):
    """A small draft model proposes tokens that the evaluated model verifies in one pass."""

    name = "speculative"
    stage = "inference"
    resources = ("computation", "energy")
    description = "Speculative (assisted) decoding with a draft model sharing the tokenizer (default zoo:micro-s)."
    references = ("https://arxiv.org/abs/2211.17192", "https://arxiv.org/abs/2302.01318")

    def preflight(self, config: Any, *, draft: str, **_: Any) -> None:
        from transformers import AutoTokenizer

        check_same_tokenizer("draft", draft, AutoTokenizer.from_pretrained(config.name_or_path))

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        draft: Annotated[str, Field(min_length=1, description="draft model: zoo:NAME, Hub id or directory")] = (
            DEFAULT_DRAFT
        ),
        draft_tokens: Annotated[int, Field(ge=1, le=64, description="tokens the draft proposes per step")] = 5,
        schedule: Literal["constant", "heuristic"] = "constant",
    ) -> Any:
        check_same_tokenizer("draft", draft, tokenizer)
        _draft(draft)  # load now, so the run's accuracy and workload phases do not pay for it
        return model

    def generation_kwargs(
        self, model: Any, tokenizer: Any, *, draft: str, draft_tokens: int, schedule: str
    ) -> dict[str, Any]:
        assistant = _draft(draft).to(device=model.device, dtype=model.dtype)  # the run's device and dtype
        assistant.generation_config.num_assistant_tokens = draft_tokens
        assistant.generation_config.num_assistant_tokens_schedule = schedule
        return {"assistant_model": assistant}


class PromptLookup(Technique):
    """Propose continuations by matching the last n-gram earlier in the prompt: no draft model needed."""

    name = "prompt-lookup"
    stage = "inference"
    resources = ("computation", "energy")
    description = "Prompt-lookup decoding: candidate tokens copied from an earlier match of the last n-gram."
    references = ("https://github.com/apoorvumang/prompt-lookup-decoding",)

    def apply(
        self,
        model: Any,
        tokenizer: Any,
        *,
        tokens: Annotated[int, Field(ge=1, le=64, description="candidate tokens copied per step")] = 10,
        ngram: Annotated[int, Field(ge=1, le=16, description="longest n-gram matched")] = 2,
    ) -> Any:
        return model

    def generation_kwargs(self, model: Any, tokenizer: Any, *, tokens: int, ngram: int) -> dict[str, Any]:
        return {"prompt_lookup_num_tokens": tokens, "max_matching_ngram_size": ngram}


@hookimpl
def register_techniques(register):
    for technique in (Speculative(), PromptLookup()):
        register(technique)
