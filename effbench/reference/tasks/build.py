"""Regenerate the bundled task data files (``python -m effbench.reference.tasks.build``); same seed, same bytes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from effbench.reference import microworld
from effbench.reference.skills import subtraction
from effbench.reference.tasks import TASKS_DIR


def write_task_data(out: Path, seed: int = microworld.TASK_SEED, n: int = 500) -> list[Path]:
    """Write one JSON-lines file per task under ``out`` (the fine-tuning skills' tasks too) and return their paths."""
    tasks, _ = microworld.task_documents(n=n, seed=seed)
    tasks["sub"] = subtraction.task_documents(n=n, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rows in tasks.items():
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=TASKS_DIR / "data")
    parser.add_argument("--seed", type=int, default=microworld.TASK_SEED)
    args = parser.parse_args()
    for path in write_task_data(args.out, args.seed):
        print(path)


if __name__ == "__main__":
    main()
