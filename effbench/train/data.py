"""Training data: bundled data by name (a fine-tuning skill, pre-training text) or the user's JSON-lines file.

A file holds one JSON object per line: ``{"text": ...}`` (the loss counts every token) or
``{"prompt": ..., "completion": ...}`` (the loss counts the completion's tokens only).
"""

from __future__ import annotations

import itertools
import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from effbench.config.suite import TRAINING_FILE_SUFFIX
from effbench.errors import EffbenchError
from effbench.reference import microworld
from effbench.reference.microworld import TRAIN_SEED
from effbench.reference.skills import subtraction

PRETRAINING_TEXT = "micro_world"  # the micro world's pre-training documents, for training a model from scratch


def micro_world_text(seed: int) -> Iterator[dict[str, str]]:
    """The reference models' first-phase mixture of micro-world lines as ``text`` examples, never a held-out one."""
    _, held_out = microworld.task_documents()
    mixture = microworld.BASE_MIXTURE
    documents = microworld.training_documents(None, held_out, seed=TRAIN_SEED + seed, mixture=mixture)
    return ({"text": document + "\n"} for document in documents)  # every micro-world line ends with its newline


# Bundled data by name: an endless stream of examples from a seed.
BUNDLED: dict[str, Callable[[int], Iterator[dict[str, str]]]] = {
    subtraction.NAME: lambda seed: subtraction.training_examples(None, seed=TRAIN_SEED + seed),
    microworld.INDUCTION: microworld.induction_examples,
    PRETRAINING_TEXT: micro_world_text,
}
FORMATS = '{"text": ...} or {"prompt": ..., "completion": ...}'
MAX_FILE_BYTES = 1 << 30  # a training file larger than this is a mistake: checking it would take minutes


def _row_problem(row: Any) -> str | None:
    """Why a parsed line is not a training example, or None."""
    if not isinstance(row, dict):
        return f"expected a JSON object {FORMATS}, got {type(row).__name__}"
    keys = set(row)
    if keys == {"text"}:
        wanted = ("text",)
    elif keys == {"prompt", "completion"}:
        wanted = ("prompt", "completion")
    else:
        return f"expected {FORMATS}, got the keys {sorted(keys)}"
    for key in wanted:
        if not isinstance(row[key], str):
            return f"{key!r} must be a string, got {type(row[key]).__name__}"
    if not (row.get("text") or row.get("completion")):
        return "the text (or completion) to train on is empty"
    return None


def check_data(value: str) -> str:
    """Bundled data's name as it is, or the training file as an absolute path once every line is valid.

    Raises ValueError saying what is wrong (the first bad line, with its number).
    """
    if value in BUNDLED:
        return value
    choices = f"give bundled data ({', '.join(BUNDLED)}) or a {TRAINING_FILE_SUFFIX} file"
    if not value.endswith(TRAINING_FILE_SUFFIX):
        raise ValueError(f"unknown training data {value!r}; {choices}")
    path = Path(os.path.expanduser(value))
    where = f"training file {value!r}"
    if not path.is_file():
        raise ValueError(f"{where} does not exist; {choices}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{where} is larger than {MAX_FILE_BYTES >> 20} MiB")
    count = 0
    with path.open(encoding="utf-8", errors="strict") as lines:
        try:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    problem = _row_problem(json.loads(line))
                except json.JSONDecodeError as err:
                    problem = f"not JSON ({err.msg})"
                if problem:
                    raise ValueError(f"{where} line {number}: {problem}")
                count += 1
        except UnicodeDecodeError:
            raise ValueError(f"{where} is not UTF-8 text") from None
    if not count:
        raise ValueError(f"{where} holds no example; expected one JSON object per line, {FORMATS}")
    return str(path.resolve())


def checked_training(training: dict[str, Any]) -> dict[str, Any]:
    """The suite's ``training`` settings with their data checked (a file made absolute): one line when wrong."""
    try:
        return {**training, "data": check_data(training["data"])}
    except ValueError as err:
        raise EffbenchError(f"training.data: {err}") from None


def examples(data: str, seed: int) -> Iterator[dict[str, str]]:
    """An endless stream of examples: bundled data's, or the file's lines shuffled anew each epoch by ``seed``."""
    if data in BUNDLED:
        return BUNDLED[data](seed)
    with open(data, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    rng = random.Random(seed)

    def epochs() -> Iterator[dict[str, str]]:
        for _ in itertools.count():
            order = rng.sample(rows, len(rows))
            yield from order

    return epochs()
