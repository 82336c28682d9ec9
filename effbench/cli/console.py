"""The terminal: rich consoles and tables shared by every command."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

# Wide enough for the comparison table when output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


def print_table(title: str, headers: list[str], rows: list[list[str]], numeric: bool = False) -> None:
    """A rich table on the terminal; ``numeric`` right-aligns every column but the report's text columns."""
    from effbench.present.report import TEXT_COLUMNS

    view = Table(title=title)
    for header in headers:
        view.add_column(header, justify="right" if numeric and header not in TEXT_COLUMNS else "left")
    for row in rows:
        view.add_row(*row)
    console.print(view)


def print_tables(tables) -> None:
    for table in tables:
        for title, headers, rows in table.parts():
            print_table(f"{table.title}: {title}", headers, [[c.text for c in row] for row in rows], numeric=True)
        for note in table.notes:
            console.print(f"  [dim]{note}[/dim]")
