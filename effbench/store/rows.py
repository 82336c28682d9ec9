"""Records backed by an Arrow table: built column by column and only when used, a run's rows at a time.

A store of 10 k runs holds a million measurements and more per-document outcomes; making a Python
object of each one costs seconds, while a report or a leaderboard looks at each run's rows once, and at
the outcomes only as arrays. ``Rows`` keeps the table and makes records when they are asked for.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from effbench.records import Record

R = TypeVar("R", bound=Record)


def text_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str | None]]:
    """A text column as integer codes and the distinct values they stand for (a null's code stands for None)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    distinct = [*encoded.dictionary.to_pylist(), None]
    return pc.fill_null(encoded.indices, len(distinct) - 1).to_numpy(zero_copy_only=False), distinct


SHORT = 64  # values below which a column's ``to_pylist`` is quicker than the conversions' fixed cost (a run's row)


def python_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """A column's values as Python objects, as ``to_pylist`` gives them, without its per-value cost for text
    (made once per distinct value) and numbers (through numpy)."""
    if len(column) < SHORT:
        return column.to_pylist()
    kind = column.type
    if pa.types.is_string(kind):
        codes, distinct = text_codes(column)
        return np.array(distinct, dtype=object)[codes].tolist()  # one object per distinct value, shared
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        filled = pc.fill_null(column, pa.scalar(0 if not pa.types.is_boolean(kind) else False, kind))
        numbers = filled.to_numpy(zero_copy_only=False)  # an array of booleans is bits: copied
        if not column.null_count:
            return numbers.tolist()
        values = numbers.astype(object)  # Python numbers, as tolist makes them
        values[column.is_null().to_numpy(zero_copy_only=False)] = None
        return values.tolist()
    return column.to_pylist()


def records(table: pa.Table, kind: type[R]) -> list[R]:
    """Every row of a table in the record's schema as a record."""
    columns = [python_values(table.column(name)) for name in kind.schema().names]
    return [kind(*values) for values in zip(*columns, strict=True)]


def equal_spans(codes: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each stretch of equal consecutive values."""
    starts = (np.flatnonzero(np.diff(codes)) + 1).tolist()
    return list(itertools.pairwise([0, *starts, len(codes)])) if len(codes) else []


def ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """The row numbers of several (start, stop) ranges, one after the other, made at once."""
    sizes = np.asarray(stops, np.int64) - starts
    offsets = np.repeat(np.asarray(starts, np.int64) - np.cumsum(sizes) + sizes, sizes)
    return offsets + np.arange(int(sizes.sum()))


def run_spans(run_ids: pa.ChunkedArray | pa.Array) -> dict[str, tuple[int, int]]:
    """Where each run's rows lie, (start, stop), in a table whose runs' rows are contiguous."""
    codes, names = text_codes(run_ids)
    return {names[codes[start]]: (start, stop) for start, stop in equal_spans(codes)}  # type: ignore[misc]


class Rows(Sequence[R]):
    """The records of a table whose runs' rows are contiguous (as the store reads them), made when first used."""

    def __init__(self, kind: type[R], table: pa.Table, spans: dict[str, tuple[int, int]] | None = None) -> None:
        self.table = table
        self.kind = kind
        self._all: list[R] | None = None
        self._spans = spans  # where each run's rows lie, when the reader knows (else found when first asked)

    def all(self) -> list[R]:
        """Every record (made once)."""
        if self._all is None:
            self._all = records(self.table, self.kind)
        return self._all

    def spans(self) -> dict[str, tuple[int, int]]:
        """Each run's (start, stop) in the table."""
        if self._spans is None:
            self._spans = run_spans(self.table.column("run_id"))
        return self._spans

    def __len__(self) -> int:
        return self.table.num_rows

    @overload
    def __getitem__(self, index: int) -> R: ...
    @overload
    def __getitem__(self, index: slice) -> list[R]: ...
    def __getitem__(self, index: int | slice) -> R | list[R]:
        return self.all()[index]

    def __iter__(self) -> Iterator[R]:
        return iter(self.all())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return self.all() == list(other)

    __hash__ = None  # type: ignore[assignment]  # a list is not hashable either

    def __repr__(self) -> str:
        return f"Rows({self.kind.__name__}, {len(self)} rows)"
