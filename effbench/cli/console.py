"""The terminal: rich consoles and tables shared by every command.

Text from data (model, task and technique names, parameters, file names, errors) is printed through
``rich.markup.escape``, so a ``[bold]`` or ``[/x]`` in it is shown as itself rather than read as markup; emoji codes
such as ``:thumbs_up:`` are never replaced either.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Column, Table

if TYPE_CHECKING:
    from effbench.present.report import ComparisonTable

# Wide enough for the comparison table when output goes to a file or a pipe, where an error stays one line.
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
err_console = Console(stderr=True, emoji=False, soft_wrap=not sys.stderr.isatty())


# Rows a terminal table shows: a store of thousands of runs is read in the files written, not on a terminal.
SHOWN_ROWS = 50
SHOWN_TABLES = 3  # comparison tables (one per model, machine and placement)


class PlainTable(Table):
    """A rich table of plain texts whose columns are measured once, from their texts' lengths.

    Rich measures every cell through its renderables, twice when the table is wider than the terminal: most of the
    time a large report's terminal tables take. Each text measures as rich measures it (its longest word at least,
    its longest line at most, padding included), so rich lays the table out just the same.
    """

    def __init__(self, title: str, headers: list[str], rows: list[list[str]], justify: list[str]) -> None:
        super().__init__(title=escape(title))
        self.spans: list[tuple[int, int]] = []  # per column: the longest word and the longest line of its texts
        for index, header in enumerate(headers):
            self.add_column(escape(header), justify=justify[index])  # type: ignore[arg-type]
            texts = [header, *(row[index] for row in rows)]
            lines = [max(map(cell_len, text.splitlines()), default=0) for text in texts]
            words = [max(map(cell_len, text.split()), default=line) for text, line in zip(texts, lines, strict=True)]
            self.spans.append((max(words), max(lines)))
        for row in rows:
            self.add_row(*map(escape, row))

    def _measure_column(self, console: Console, options: ConsoleOptions, column: Column) -> Measurement:
        """The column's width range within ``options.max_width``, as ``Table._measure_column`` finds it."""
        width = options.max_width
        padding = self._get_padding_width(column._index)
        if width < 1:
            return Measurement(0, 0)
        if width - padding < 1:  # a padded cell wider than the room measures as the room
            return Measurement(width, width)
        shortest, longest = self.spans[column._index]
        return Measurement(min(shortest + padding, width), min(longest + padding, width))


def print_table(
    title: str,
    headers: list[str],
    rows: list[list[str]],
    numeric: bool = False,
    full: str = "the files written",
    total: int | None = None,
) -> None:
    """A rich table on the terminal, every text shown as itself; ``numeric`` right-aligns all but the text columns.

    Beyond ``SHOWN_ROWS`` rows, the first ones and a line saying how many more ``full`` holds (of ``total`` rows,
    when only the first are given).
    """
    from effbench.present.report import TEXT_COLUMNS

    justify = ["right" if numeric and header not in TEXT_COLUMNS else "left" for header in headers]
    console.print(PlainTable(title, headers, rows[:SHOWN_ROWS], justify))
    total = len(rows) if total is None else total
    if total > SHOWN_ROWS:
        console.print(f"  [dim]{escape(f'... and {total - SHOWN_ROWS} more rows in {full}')}[/dim]")


def print_tables(tables: list[ComparisonTable], full: str = "report.md", total: int | None = None) -> None:
    """Each comparison table section by section (narrow enough to read), then its notes; the first
    ``SHOWN_TABLES`` only, and how many more ``full`` holds (of ``total``, when only the first are given)."""
    total = len(tables) if total is None else total
    for table in tables[:SHOWN_TABLES]:
        for title, headers, rows in table.parts():
            print_table(f"{table.title}: {title}", headers, rows, numeric=True, full=full)
        for note in table.notes:
            console.print(f"  [dim]{escape(note)}[/dim]")
    if total > SHOWN_TABLES:
        console.print(escape(f"... and {total - SHOWN_TABLES} more comparison tables in {full}"))
