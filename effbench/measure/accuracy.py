"""Task accuracy through lm-evaluation-harness, on the already-modified model object."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import cache
from pathlib import Path
from typing import Any

from effbench.errors import EffbenchError
from effbench.records import WEIGHTED_METRICS


@cache
def task_manager(task_dirs: tuple[str, ...]) -> Any:
    """lm-eval's task index including effbench's and plugins' task directories (built once per process)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(task_dirs) or None)


def known_tasks(payload: dict[str, Any], emit: Any = None) -> list[str]:
    """Every task and group name lm-eval knows (a worker target: the forkserver has the index built)."""
    return sorted(task_manager(tuple(payload["task_dirs"])).all_tasks)


CACHE_ENV = "EFFBENCH_CACHE"


def _task_index_file(task_dirs: tuple[str, ...]) -> Path:
    """Where the task names of this lm-eval version and these task folders (as they are now) are kept."""
    from importlib.metadata import version

    key = [version("lm-eval")]
    for folder in sorted(task_dirs):
        key += [_stamp(p) for p in sorted(Path(folder).rglob("*.yaml"))]
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    return cache_folder() / f"tasks-{digest}.json"


def cache_folder() -> Path:
    """effbench's own cache (lm-eval's task names, stores' snapshots): $EFFBENCH_CACHE, else ~/.cache/effbench."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "effbench")


def _stamp(path: Path) -> str:
    """A task file and its modification time, which a user's folder may lack (a dangling link)."""
    try:
        return f"{path}:{path.stat().st_mtime_ns}"
    except OSError:
        return f"{path}:-"


def cached_known_tasks(task_dirs: tuple[str, ...]) -> set[str] | None:
    """The task names a previous sweep listed for the same lm-eval and task folders, without importing lm-eval."""
    try:
        return set(json.loads(_task_index_file(task_dirs).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def remember_known_tasks(task_dirs: tuple[str, ...], names: list[str]) -> None:
    """Keep the task names for the next sweep (best effort: an unwritable cache only costs time)."""
    path = _task_index_file(task_dirs)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(names)))
        os.replace(tmp, path)


def check_tasks(tasks: list[str], task_dirs: tuple[str, ...], known: set[str]) -> None:
    """Fail before any run starts when a task or group name is unknown, listing the local ones."""
    import difflib

    unknown = [t for t in tasks if t not in known]
    if not unknown:
        return
    local = sorted(name for d in task_dirs for name in _names_in(Path(d)))
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=3)
        hints.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise EffbenchError(
        f"unknown task {', '.join(hints)}; tasks in the bundled, plugins' and your task folders: {', '.join(local)}; "
        f"any of lm-eval's {len(known)} tasks and groups also works (`lm-eval ls tasks`)"
    )


def _names_in(folder: Path) -> list[str]:
    """Task and group names declared by the YAML files of a task directory and its subfolders (as lm-eval reads it)."""
    import yaml

    names = []
    for path in folder.rglob("*.yaml"):
        with contextlib.suppress(OSError, yaml.YAMLError):  # a user's folder may hold anything: it only costs the hint
            for line in path.read_text(errors="replace").splitlines():
                key, _, value = line.partition(":")
                name = yaml.safe_load(value) if key in ("task", "group") else None
                if isinstance(name, str) and name:
                    names.append(name)
    return names


# generate() arguments that transformers only supports for one sequence at a time
ONE_SEQUENCE_AT_A_TIME = frozenset({"assistant_model", "prompt_lookup_num_tokens"})


def answer_tokens(tokenizer: Any, text: str) -> int:
    """The length in tokens of a generated answer, as the model's tokenizer splits it (no special tokens)."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# A measurement window around lm-eval's generative requests, to which the answers' (prompt, new) token counts go.
GenerationWindow = Callable[[], AbstractContextManager[list[tuple[int, int]]]]


def technique_lm(generate_kwargs: dict[str, Any], window: GenerationWindow | None = None) -> type:
    """An HFLM whose generations use the technique's ``generate`` arguments (lm-eval imported lazily)."""
    import torch
    from lm_eval.models.huggingface import HFLM

    class TechniqueLM(HFLM):
        """HFLM that passes a decoding technique's arguments to every ``generate`` call."""

        def generate_until(self, requests, disable_tqdm: bool = False):
            if window is None:
                return super().generate_until(requests, disable_tqdm)
            with window() as answers:  # lm-eval sends every generative request of every task in this one call
                outputs = super().generate_until(requests, disable_tqdm)
                answers += [
                    (
                        len(self.tok_encode(request.args[0])),
                        len(self.tokenizer(output, add_special_tokens=False)["input_ids"]),
                    )
                    for request, output in zip(requests, outputs, strict=True)
                ]
            return outputs

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            kwargs = {**generation_kwargs, **generate_kwargs}
            if context.shape[0] == 1 or not ONE_SEQUENCE_AT_A_TIME & set(kwargs):
                return super()._model_generate(context, max_length, stop, **kwargs)
            # Strip each row's left padding, generate alone, then rebuild lm-eval's padded layout
            # (right-filled with EOS, which lm-eval's stop sequences cut off).
            mask = kwargs.pop("attention_mask", None)
            if mask is None:
                mask = context != self.tokenizer.pad_token_id
            rows = []
            for i, row in enumerate(context):
                start = int(mask[i].nonzero()[0])
                single = {**kwargs, "attention_mask": mask[i : i + 1, start:]}
                out = super()._model_generate(row[start:].unsqueeze(0), max_length - start, stop, **single)
                rows.append(torch.cat([row[:start], out[0]]))
            eos = self.tokenizer.eos_token_id
            width = max(len(r) for r in rows)
            return torch.stack([torch.nn.functional.pad(r, (0, width - len(r)), value=eos) for r in rows])

    return TechniqueLM


def evaluate(
    model: Any,
    tokenizer: Any,
    tasks: list[str],
    *,
    task_dirs: tuple[str, ...],
    limit: int | None,
    batch_size: int,
    bootstrap_iters: int,
    generate_kwargs: dict[str, Any] | None = None,
    generation_window: GenerationWindow | None = None,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Run lm-eval on the model object; return per-task results, each with its sample count ``n``, and every
    document's outcome (``SampleRow`` fields but the run id). ``generation_window`` measures the generative requests.

    No response cache is used: lm-eval's cache is not keyed by model, so sharing one across
    techniques would silently reuse another model's answers.
    """
    import lm_eval

    lm_class = technique_lm(generate_kwargs or {}, generation_window)
    lm = lm_class(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    output = lm_eval.simple_evaluate(
        model=lm,
        tasks=tasks,
        task_manager=task_manager(task_dirs),
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        use_cache=None,
        log_samples=True,  # per-document outcomes: paired statistics against the baseline
    )
    results = {}
    for task, values in output["results"].items():
        if task not in output.get("n-samples", {}):
            continue  # a group's row: its member tasks carry the figures
        counts = output["n-samples"][task]
        results[task] = {**values, "n": counts.get("effective", counts.get("original"))}
    logged = output.get("samples", {})
    samples = [row for task, entries in logged.items() for row in sample_rows(task, entries, tokenizer)]
    add_corpus_intervals(results, samples)
    return results, samples


CI_KEYS = ("_ci_low", "_ci_high")  # lm-eval-style result keys, "<metric>_ci_low,<filter>", effbench adds


def add_corpus_intervals(results: dict[str, dict[str, Any]], samples: list[dict[str, Any]]) -> None:
    """Give each corpus-level figure (word_perplexity, ...) a bootstrap 95 % interval over its documents.

    lm-eval reports no standard error for them, so without this they would be the only figures without uncertainty.
    """
    import numpy as np

    from effbench.measure.paired import bootstrap_interval

    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in samples:
        if row["metric"] in WEIGHTED_METRICS and row["weight"] is not None:
            grouped.setdefault((row["task"], row["metric"], row["filter"]), []).append(row)
    for (task, metric, filter_name), rows in grouped.items():
        if task not in results:
            continue
        values = np.array([r["value"] for r in rows], dtype=float)
        weights = np.array([r["weight"] for r in rows], dtype=float)
        bounds = bootstrap_interval(values, metric, weights)
        for key, bound in zip(CI_KEYS, bounds, strict=True):
            results[task][f"{metric}{key},{filter_name}"] = bound


def _number(value: Any) -> float | None:
    """A per-document value as a float, or None when lm-eval keeps something else there (texts, pairs for F1)."""
    if isinstance(value, bool | int | float) or (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
        return float(value)
    return None


def sample_rows(task: str, logged: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Each logged document's numeric metric values, with its generated answer's length in tokens.

    A corpus-level metric (``WEIGHTED_METRICS``) is logged as (log-likelihood, words or bytes): both are kept.
    Values lm-eval keeps for a non-numeric aggregation (F1's, BLEU's pairs of texts) are not stored.
    """
    rows = []
    for entry in logged:
        generated = [r[0] for r in entry.get("resps", []) if r and isinstance(r[0], str)]
        tokens = sum(answer_tokens(tokenizer, text) for text in generated)
        for metric in entry.get("metrics", []):
            value, weight = entry.get(metric), None
            if metric in WEIGHTED_METRICS and isinstance(value, tuple | list) and len(value) == 2:
                value, weight = value[0], int(value[1])
            number = _number(value)
            if number is None:
                continue
            rows.append(
                {
                    "task": task,
                    "doc_id": int(entry["doc_id"]),
                    "metric": metric,
                    "filter": entry.get("filter", "none"),
                    "value": number,
                    "weight": weight,
                    "prediction_tokens": tokens if generated else None,
                }
            )
    return rows


def correct_answers(samples: list[dict[str, Any]]) -> int:
    """Documents of generative tasks answered right: a 1 on the task's first right-or-wrong metric and filter."""
    first: dict[str, tuple[str, str]] = {}
    for row in samples:
        if row["prediction_tokens"] is not None:
            first.setdefault(row["task"], (row["metric"], row["filter"]))
    chosen = [r for r in samples if first.get(r["task"]) == (r["metric"], r["filter"])]
    by_task: dict[str, list[float]] = {}
    for row in chosen:
        by_task.setdefault(row["task"], []).append(row["value"])
    return sum(int(sum(v == 1.0 for v in values)) for values in by_task.values() if set(values) <= {0.0, 1.0})
