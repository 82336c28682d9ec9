"""The ``sub`` skill: two-digit subtraction the reference models never saw, for fine-tuning to teach.

Its line format is its own, ``sub 35-12=23`` (53 - 21 = 32, every number written least-significant
digit first like the micro world's ``add``; the first number is never the smaller, so the answer
has two digits). The held-out lm-eval task ``micro_sub`` and the training split come from
different seeds, and no training pair is a held-out pair: the task measures a learned skill,
not memorised lines.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from effbench.reference.microworld import TASK_SEED, TRAIN_SEED

NAME = "micro_sub"  # the lm-eval task, and the training data's name in a suite (`training: {data: micro_sub}`)
DATA_FILE = "sub.jsonl"
TASK_DOCUMENTS = 500


def _lsb(number: int) -> str:
    """Two digits, least-significant first (7 -> "70", 53 -> "35")."""
    return str(number).zfill(2)[::-1]


def sub_pair(rng: random.Random) -> tuple[str, str]:
    """One (prompt, answer): ``a - b`` with ``a >= b``, both under 100."""
    a, b = sorted((rng.randint(0, 99), rng.randint(0, 99)), reverse=True)
    return f"sub {_lsb(a)}-{_lsb(b)}=", _lsb(a - b)


def task_documents(n: int = TASK_DOCUMENTS, seed: int = TASK_SEED) -> list[dict[str, str]]:
    """The held-out task's documents: ``n`` distinct prompts with their answers."""
    rng = random.Random(seed)
    rows: dict[str, str] = {}
    while len(rows) < n:
        prompt, answer = sub_pair(rng)
        rows.setdefault(prompt, answer)
    return [{"prompt": prompt, "answer": answer} for prompt, answer in rows.items()]


def training_examples(count: int | None, seed: int = TRAIN_SEED) -> Iterator[dict[str, str]]:
    """``count`` (None: endless) training examples, never a held-out prompt, in the training data format.

    The completion ends with the line's newline, as every micro-world line does in pre-training:
    the fine-tuned model learns to end its answer where the task's generation stops.
    """
    held_out = {row["prompt"] for row in task_documents()}
    rng = random.Random(seed)
    produced = 0
    while count is None or produced < count:
        prompt, answer = sub_pair(rng)
        if prompt in held_out:
            continue
        produced += 1
        yield {"prompt": prompt, "completion": answer + "\n"}
