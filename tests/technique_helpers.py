"""Helpers shared by the technique tests: apply a registered technique, count FLOPs, generate greedily."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from effbench.default_plugins.metrics.model import extra_flop_formulas
from effbench.plugins import registry
from effbench.reference import microworld
from effbench.reference.zoo import load, resolve

SENTENCE = "the old dogs near a cat run today . the bird sings ."


def applied(technique: str, model_id: str = "zoo:micro-m", **params: Any) -> tuple[Any, Any]:
    """Load a model and apply a registered technique through its validated parameters, as a run does."""
    model, tokenizer = load(model_id)
    tech = registry().technique(technique)
    model = tech.apply(model, tokenizer, **tech.validate(params))
    model.eval()
    return model, tokenizer


def generation_kwargs(technique: str, model: Any, tokenizer: Any, **params: Any) -> dict[str, Any]:
    """A technique's extra ``generate`` arguments, for its validated parameters."""
    tech = registry().technique(technique)
    return tech.generation_kwargs(model, tokenizer, **tech.validate(params))


def ids(tokenizer: Any, text: str = SENTENCE) -> torch.Tensor:
    """A batch of one tokenized text."""
    return tokenizer(text, return_tensors="pt")["input_ids"]


def flops(model: Any, input_ids: torch.Tensor) -> dict[str, int]:
    """FLOPs of one forward pass, in total ("Global") and per module name, counted as effbench's metric counts them."""
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=extra_flop_formulas()) as counter:
        model(input_ids)
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def module_flops(counts: dict[str, int], suffix: str) -> int:
    """FLOPs summed over every module whose name ends with ``suffix`` (e.g. ``.mlp``)."""
    return sum(value for name, value in counts.items() if name.endswith(suffix))


def prompts(count: int = 6, seed: int = 7) -> list[str]:
    """Micro-world prompts of every generative skill (copy, add, recall), deterministic."""
    rng = random.Random(seed)
    makers = (microworld.copy_doc, microworld.add_doc, microworld.recall_doc)
    return [makers[i % len(makers)](rng)[0] for i in range(count)]


def greedy(model: Any, tokenizer: Any, prompt: str, **kwargs: Any) -> list[int]:
    """Greedy continuation of one prompt (batch 1), as token ids (16 new tokens at most unless ``kwargs`` say)."""
    input_ids = ids(tokenizer, prompt)
    settings = {"max_new_tokens": 16, "do_sample": False, **kwargs}
    with torch.inference_mode():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **settings)
    return out[0].tolist()


def other_tokenizer_model(tmp_path: Path) -> Path:
    """A copy of micro-s whose tokenizer maps two characters to each other's ids: a second model to refuse."""
    target = tmp_path / "micro-s-swapped"
    shutil.copytree(resolve("zoo:micro-s"), target)
    path = target / "tokenizer.json"
    data = json.loads(path.read_text())
    vocab = data["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
    path.write_text(json.dumps(data))
    return target
