"""Terminal tables measured from their texts' lengths are laid out exactly as rich lays out the same table."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from effbench.cli.console import PlainTable
from tests.test_fuzz import fuzz

# Numbers, words, markup look-alikes, wide characters, line breaks and blanks: what a report's cells hold.
TEXTS = st.text(alphabet=st.sampled_from([*"0.9±+–-abc_[]/:", " ", "\n", "数", "é"]), max_size=24)


def rendered(table: Table, width: int) -> tuple[str, Measurement]:
    """The table as a terminal of ``width`` columns shows it (no colours), and its width range (a table in a table)."""
    out = io.StringIO()
    console = Console(file=out, width=width, emoji=False, color_system=None)
    console.print(table)
    return out.getvalue(), Measurement.get(console, console.options, table)


def rich_table(title: str, headers: list[str], rows: list[list[str]], justify: list[str]) -> Table:
    """The same table measured by rich, cell by cell."""
    table = Table(title=escape(title))
    for header, side in zip(headers, justify, strict=True):
        table.add_column(escape(header), justify=side)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*map(escape, row))
    return table


@fuzz(150)
@given(
    data=st.data(),
    columns=st.integers(1, 12),
    width=st.sampled_from([1, 2, 3, 5, 12, 40, 80, 200]),
)
def test_a_plain_table_renders_as_rich_renders_it(data, columns: int, width: int) -> None:
    headers = data.draw(st.lists(TEXTS, min_size=columns, max_size=columns))
    rows = data.draw(st.lists(st.lists(TEXTS, min_size=columns, max_size=columns), max_size=6))
    justify = data.draw(st.lists(st.sampled_from(["left", "right"]), min_size=columns, max_size=columns))
    plain = PlainTable("title [b]", headers, rows, justify)
    assert rendered(plain, width) == rendered(rich_table("title [b]", headers, rows, justify), width)


def test_a_report_row_keeps_its_layout_at_every_width() -> None:
    headers = ["Technique", "micro_copy exact_match", "Δ micro_copy", "99% gate", "Status", " "]
    rows = [
        ["baseline", "0.950 ± 0.050", "+0.000", "–", "ok", "   "],  # blanks: as wide as they are
        ["prune-magnitude(scope=layer, sparsity=0.5)", "0.850 ± 0.082 [0.80, 0.90]", "−0.100", "fail", "failed: x", ""],
        ["", "", "", "", "", "  "],
    ]
    justify = ["left", "right", "right", "right", "left", "left"]
    for width in range(1, 120):
        plain = PlainTable("zoo:micro-m: accuracy", headers, rows, justify)
        assert rendered(plain, width) == rendered(rich_table("zoo:micro-m: accuracy", headers, rows, justify), width)
