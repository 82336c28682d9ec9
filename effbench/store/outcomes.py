"""Per-document outcomes as arrays indexed by run, task and metric: what paired statistics and output lengths read,
without making a record of each of a million sample rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effbench.measure.paired import Aligned, Outcome, align, aligned, outcome
from effbench.store.rows import ranges, text_codes

MISSING = -1  # prediction_tokens of a row that has none (a token count is never negative)


def _contiguous(table: pa.Table, spans: dict[str, tuple[int, int]] | None) -> np.ndarray | None:
    """Each run's (start, stop) where ``spans`` say the runs' rows lie one run after the other (a store's), else
    None."""
    if not spans:
        return None
    bounds = np.array(list(spans.values()), np.int64)
    if bounds[0, 0] == 0 and (bounds[1:, 0] == bounds[:-1, 1]).all() and bounds[-1, 1] == table.num_rows:
        return bounds
    return None


@dataclass(frozen=True)
class Gathered:
    """Several runs' rows of one task and metric, one run after the other: each one's start and size, and whether
    its rows are as lm-eval logs them (one filter, documents ascending)."""

    docs: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    filters: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    as_logged: np.ndarray

    def outcome(self, i: int) -> Outcome | None:
        """The i-th run's outcome: a view of its rows when as logged."""
        start, stop = int(self.starts[i]), int(self.starts[i] + self.sizes[i])
        if start == stop:
            return None
        if self.as_logged[i]:
            return Outcome(self.docs[start:stop], self.values[start:stop], self.weights[start:stop])
        rows = slice(start, stop)
        return outcome(self.docs[rows], self.values[rows], self.weights[rows], self.filters[rows])


class SampleIndex:
    """A samples table's outcomes per (run, task, metric) and generated lengths per run, grouped once.

    ``spans``: where each run's rows lie, when they are contiguous (``Rows.spans``)."""

    def __init__(self, table: pa.Table, spans: dict[str, tuple[int, int]] | None = None) -> None:
        bounds = _contiguous(table, spans)
        if bounds is not None:  # each run's rows known without reading a run id per row, and already grouped
            run_names: list[str | None] = list(spans)  # type: ignore[arg-type]
            runs = np.repeat(np.arange(len(run_names)), bounds[:, 1] - bounds[:, 0])
        else:
            runs, run_names = text_codes(table.column("run_id"))
        tasks, self._task_names = text_codes(table.column("task"))
        metrics, metric_names = text_codes(table.column("metric"))
        self._filters, _ = text_codes(table.column("filter"))
        self._tasks = tasks
        self._docs = table.column("doc_id").to_numpy()
        self._values = table.column("value").to_numpy()
        weights = pc.cast(table.column("weight"), pa.float64(), safe=False)  # an integer weight above 2**53: rounded
        self._weights = weights.to_numpy(zero_copy_only=False)  # null: NaN
        self._tokens = pc.fill_null(table.column("prediction_tokens"), MISSING).to_numpy()
        self._run_code = {name: code for code, name in enumerate(run_names)}
        self._task_code = {name: code for code, name in enumerate(self._task_names)}
        self._metric_code = {name: code for code, name in enumerate(metric_names)}
        self._per_task = len(metric_names) or 1
        self._width = (len(self._task_names) or 1) * self._per_task
        keys = runs.astype(np.int64) * self._width + tasks * self._per_task + metrics
        self._order = np.argsort(keys, kind="stable")  # each group's rows in stored order
        self._keys, self._starts, self._stops = _groups(keys[self._order])
        if bounds is not None:
            self._run_order: np.ndarray | None = None  # the rows are in run order
            self._run_keys, self._run_starts, self._run_stops = np.arange(len(bounds)), bounds[:, 0], bounds[:, 1]
        else:
            self._run_order = np.argsort(runs, kind="stable")
            self._run_keys, self._run_starts, self._run_stops = _groups(runs[self._run_order].astype(np.int64))

    def _spans(self, run_ids: list[str], task: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Where each run's rows of one task and metric lie in ``_order`` (start, stop; empty where it has none)."""
        task_code, metric_code = self._task_code.get(task), self._metric_code.get(metric)
        if task_code is None or metric_code is None:
            empty = np.zeros(len(run_ids), np.int64)
            return empty, empty
        runs = np.array([self._run_code.get(run_id, -1) for run_id in run_ids], np.int64)
        wanted = runs * self._width + task_code * self._per_task + metric_code
        return _found(self._keys, self._starts, self._stops, np.where(runs >= 0, wanted, -1))

    def _gathered(self, run_ids: list[str], task: str, metric: str) -> Gathered | None:
        """The rows of these runs in one task and metric, gathered at once (None where no run has one)."""
        first, last = self._spans(run_ids, task, metric)
        sizes = last - first
        if not sizes.sum():
            return None
        rows = self._order[ranges(first, last)]
        docs, values, weights, filters = (a[rows] for a in (self._docs, self._values, self._weights, self._filters))
        ends = np.cumsum(sizes)
        starts = ends - sizes
        follows = np.ones(len(rows), bool)  # a row continuing its run's rows as lm-eval logs them
        follows[1:] = (docs[1:] > docs[:-1]) & (filters[1:] == filters[:-1])
        follows[starts[sizes > 0]] = True  # a run's first row starts afresh
        breaks = np.cumsum(~follows)
        last_row = np.maximum(ends - 1, 0)
        as_logged = (sizes > 0) & (breaks[last_row] == breaks[np.minimum(starts, last_row)])  # no row breaks the order
        return Gathered(docs, values, weights, filters, starts, sizes, as_logged)

    def outcomes(self, run_ids: list[str], task: str, metric: str) -> list[Outcome | None]:
        """Each run's value per document of one task and metric (None where it has none), gathered at once: a run
        whose rows are as lm-eval logs them (one filter, documents ascending) is a view of them."""
        found = self._gathered(run_ids, task, metric)
        if found is None:
            return [None] * len(run_ids)
        return [found.outcome(i) for i in range(len(run_ids))]

    def aligned(self, run_ids: list[str], task: str, metric: str, baseline: Outcome | None) -> Aligned:
        """``paired.align`` of these runs' outcomes: those as lm-eval logs them, of the baseline's length, taken as
        matrices straight from the rows gathered (no outcome made per run); the others made one by one."""
        n = 0 if baseline is None else len(baseline.doc_ids)
        found = self._gathered(run_ids, task, metric) if baseline is not None else None
        if found is None:
            return align([None] * len(run_ids), baseline, metric)
        whole = np.flatnonzero(found.as_logged & (found.sizes == n))
        at = found.starts[whole][:, None] + np.arange(n)
        matrices = [found.docs[at], found.values[at], found.weights[at]]
        others = [(i, found.outcome(i)) for i in np.flatnonzero(~found.as_logged & (found.sizes > 0)).tolist()]
        others = [(i, made) for i, made in others if made is not None and len(made.doc_ids) == n]
        if others:
            whole = np.append(whole, [i for i, _ in others])
            for k, name in enumerate(("doc_ids", "values", "weights")):
                matrices[k] = np.vstack([matrices[k], *(getattr(made, name)[None] for _, made in others)])
        return aligned(len(run_ids), whole, *matrices, baseline, metric)

    def length_ratios(self, run_ids: list[str], base_run_id: str) -> list[float | None]:
        """``paired.length_ratio`` of each run against the baseline run, every run at once."""
        _, base_tasks, base_docs, base_tokens = self._lengths([base_run_id])
        runs, tasks, docs, tokens = self._lengths(run_ids)
        if not len(base_docs) or not len(docs):
            return [None] * len(run_ids)
        every = np.concatenate([docs, base_docs])  # a (task, document) as one number: documents numbered densely
        _, dense = np.unique(every, return_inverse=True)
        keys = tasks.astype(np.int64) * (int(dense.max()) + 1) + dense[: len(docs)]
        base_keys = base_tasks.astype(np.int64) * (int(dense.max()) + 1) + dense[len(docs) :]
        order = np.argsort(base_keys)
        at = np.searchsorted(base_keys[order], keys).clip(max=len(base_keys) - 1)
        shared = base_keys[order][at] == keys
        theirs = base_tokens[order][at]
        count = np.bincount(runs[shared], minlength=len(run_ids))
        mine_sum = np.bincount(runs[shared], tokens[shared], minlength=len(run_ids))  # exact below 2**53 tokens
        base_sum = np.bincount(runs[shared], theirs[shared], minlength=len(run_ids))
        return [m / b if n and b else None for n, m, b in zip(count.tolist(), mine_sum.tolist(), base_sum.tolist(),
                                                                strict=True)]  # fmt: skip

    def _lengths(self, run_ids: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The generated lengths of these runs: position in ``run_ids``, task code, document, tokens; one row per
        (run, task, document), the last logged (as a dict keeps it)."""
        codes = np.array([self._run_code.get(run_id, -1) for run_id in run_ids], np.int64)
        first, last = _found(self._run_keys, self._run_starts, self._run_stops, codes)
        rows = ranges(first, last)
        if self._run_order is not None:
            rows = self._run_order[rows]
        runs = np.repeat(np.arange(len(run_ids)), last - first)
        counted = self._tokens[rows] != MISSING
        rows, runs = rows[counted], runs[counted]
        tasks, docs = self._tasks[rows], self._docs[rows]
        _, dense = np.unique(docs, return_inverse=True)
        keys = (runs.astype(np.int64) * (len(self._task_names) or 1) + tasks) * (int(dense.max(initial=0)) + 1) + dense
        _, last_reversed = np.unique(keys[::-1], return_index=True)  # each key's last row
        kept = np.sort(len(keys) - 1 - last_reversed)
        return runs[kept], tasks[kept], docs[kept], self._tokens[rows][kept]


def _groups(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stretches of equal values of a sorted array: each one's value, start and stop."""
    bounds = np.flatnonzero(ordered[1:] != ordered[:-1]) + 1
    starts = np.concatenate([[0], bounds]) if len(ordered) else bounds
    stops = np.append(bounds, len(ordered)) if len(ordered) else bounds
    return ordered[starts], starts, stops


def _found(keys: np.ndarray, starts: np.ndarray, stops: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, ...]:
    """The (start, stop) of each wanted group among ``_groups``' (sorted keys), (0, 0) where there is none."""
    if not len(keys):
        empty = np.zeros(len(wanted), np.int64)
        return empty, empty
    at = np.searchsorted(keys, wanted).clip(max=len(keys) - 1)
    hit = keys[at] == wanted
    return np.where(hit, starts[at], 0), np.where(hit, stops[at], 0)
