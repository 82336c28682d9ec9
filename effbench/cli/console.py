"""The terminal: rich consoles and tables shared by every command.

Text from data (model, task and technique names, parameters, file names, errors) is printed through
``rich.markup.escape``, so a ``[bold]`` or ``[/x]`` in it is shown as itself rather than read as markup; emoji codes
such as ``:thumbs_up:`` are never replaced either.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from effbench.present.report import ComparisonTable

# Wide enough for the comparison table when output goes to a file or a pipe, where an error stays one line.
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)
err_console = Console(stderr=True, emoji=False, soft_wrap=not sys.stderr.isatty())


# Rows a terminal table shows: a store of thousands of runs is read in the files written, not on a terminal.
SHOWN_ROWS = 50
SHOWN_TABLES = 3  # comparison tables (one per model, machine and placement)


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

    view = Table(title=escape(title))
    for header in headers:
        view.add_column(escape(header), justify="right" if numeric and header not in TEXT_COLUMNS else "left")
    for row in rows[:SHOWN_ROWS]:
        view.add_row(*map(escape, row))
    console.print(view)
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
