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

    def generated_tokens(self, run_id: str) -> dict[tuple[str, int], int]:
        """Tokens generated per (task, document) of a run, as ``paired.generated_tokens`` counts them."""
        start, stop = self._runs.get(run_id, (0, 0))
        rows = self._run_order[start:stop]
        rows = rows[self._tokens[rows] != MISSING]
        tasks = [self._task_names[t] for t in self._tasks[rows].tolist()]
        return dict(zip(zip(tasks, self._docs[rows].tolist(), strict=True), self._tokens[rows].tolist(), strict=True))
