"""Per-document outcomes as arrays indexed by run, task and metric: what paired statistics and output lengths read,
without making a record of each of a million sample rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effbench.measure.paired import Outcome, outcome
from effbench.store.rows import equal_spans, text_codes

MISSING = -1  # prediction_tokens of a row that has none (a token count is never negative)


def _groups(keys: np.ndarray) -> tuple[np.ndarray, list[int], list[tuple[int, int]]]:
    """Rows grouped by key, each group in stored order: the row order, each group's key and (start, stop)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    spans = equal_spans(ordered)
    return order, [int(ordered[start]) for start, _ in spans], spans


class SampleIndex:
    """A samples table's outcomes per (run, task, metric) and generated lengths per run, grouped once."""

    def __init__(self, table: pa.Table) -> None:
        runs, self._run_names = text_codes(table.column("run_id"))
        tasks, self._task_names = text_codes(table.column("task"))
        metrics, metric_names = text_codes(table.column("metric"))
        self._filters, _ = text_codes(table.column("filter"))
        self._tasks = tasks
        self._docs = table.column("doc_id").to_numpy()
        self._values = table.column("value").to_numpy()
        weights = pc.cast(table.column("weight"), pa.float64(), safe=False)  # an integer weight above 2**53: rounded
        self._weights = weights.to_numpy(zero_copy_only=False)  # null: NaN
        self._tokens = pc.fill_null(table.column("prediction_tokens"), MISSING).to_numpy()
        per_task = len(metric_names) or 1
        width = (len(self._task_names) or 1) * per_task
        keys = runs.astype(np.int64) * width + tasks * per_task + metrics
        self._order, group_keys, spans = _groups(keys)
        self._outcomes = {
            (self._run_names[k // width], self._task_names[k % width // per_task], metric_names[k % per_task]): span
            for k, span in zip(group_keys, spans, strict=True)
        }  # fmt: skip
        self._run_order, run_keys, run_spans = _groups(runs.astype(np.int64))
        self._runs = {self._run_names[k]: span for k, span in zip(run_keys, run_spans, strict=True)}

    def outcomes(self, run_ids: list[str], task: str, metric: str) -> list[Outcome | None]:
        """Each run's value per document of one task and metric (None where it has none), gathered at once: a run
        whose rows are as lm-eval logs them (one filter, documents ascending) is a view of them."""
        spans = [self._outcomes.get((run_id, task, metric), (0, 0)) for run_id in run_ids]
        sizes = np.array([stop - start for start, stop in spans], np.int64)
        if not sizes.sum():
            return [None] * len(run_ids)
        rows = self._order[np.concatenate([np.arange(start, stop) for start, stop in spans])]
        docs, values, weights, filters = (a[rows] for a in (self._docs, self._values, self._weights, self._filters))
        ends = np.cumsum(sizes)
        starts = ends - sizes
        follows = np.ones(len(rows), bool)  # a row continuing its run's rows as lm-eval logs them
        follows[1:] = (docs[1:] > docs[:-1]) & (filters[1:] == filters[:-1])
        follows[starts[sizes > 0]] = True  # a run's first row starts afresh
        breaks = np.cumsum(~follows)
        last = np.maximum(ends - 1, 0)
        as_logged = (breaks[last] == breaks[np.minimum(starts, last)]).tolist()  # no row of it breaks the order
        out: list[Outcome | None] = []
        for start, end, plain in zip(starts.tolist(), ends.tolist(), as_logged, strict=True):
            if start == end:
                out.append(None)
            elif plain:
                out.append(Outcome(docs[start:end], values[start:end], weights[start:end]))
            else:
                out.append(outcome(docs[start:end], values[start:end], weights[start:end], filters[start:end]))
        return out

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
        spans = [self._runs.get(run_id, (0, 0)) for run_id in run_ids] or [(0, 0)]
        rows = self._run_order[np.concatenate([np.arange(start, stop) for start, stop in spans])]
        runs = np.repeat(np.arange(len(run_ids)), [stop - start for start, stop in spans])
        counted = self._tokens[rows] != MISSING
        rows, runs = rows[counted], runs[counted]
        tasks, docs = self._tasks[rows], self._docs[rows]
        _, dense = np.unique(docs, return_inverse=True)
        keys = (runs.astype(np.int64) * (len(self._task_names) or 1) + tasks) * (int(dense.max(initial=0)) + 1) + dense
        _, last = np.unique(keys[::-1], return_index=True)  # each key's last row
        kept = np.sort(len(keys) - 1 - last)
        return runs[kept], tasks[kept], docs[kept], self._tokens[rows][kept]
