"""Resource columns from the quantities the registered metrics declare: header, scale, digits, direction, ratio.

No table names a metric: a plugin's quantity gets a column like a builtin's, and a quantity stored
in the data but declared by no installed metric gets a generic one from its stored unit and direction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from effbench.api.metric import Quantity
from effbench.plugins import Registry
from effbench.records import MeasurementRow

RATIO_DIGITS = 2
MODEL_SCOPE = "run"  # a run-scope metric describes the model; repeat and scenario ones a load scenario
MAX_DIGITS = 12


def fmt(value: float | None, digits: int, stderr: float | None = None, sign: bool = False) -> str:
    """A number with its uncertainty, or a dash when it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if stderr is not None:
        text += f" ± {stderr:.{digits}f}"
    return text


def fmt_each(
    values: Sequence[float | None], digits: int, spreads: Sequence[float | None] | None = None, sign: bool = False
) -> list[str]:
    """``fmt`` of each value (with its spread): two printf-style formats made once (a fifth faster than
    ``str.format``, the same digits), not a call per value."""
    alone = f"%{'+' if sign else ''}.{digits}f"
    spread = f"{alone} ± %.{digits}f"
    halves = [None] * len(values) if spreads is None else spreads
    return [
        "–" if value is None or value != value  # missing or NaN
        else alone % value if half is None
        else spread % (value, half)
        for value, half in zip(values, halves, strict=True)
    ]  # fmt: skip


@dataclass(frozen=True)
class Column:
    """One resource column: the quantity it shows, the scope of the metric declaring it, and whether it is a ratio."""

    quantity: Quantity
    scope: str = MODEL_SCOPE
    ratio: bool = False  # the baseline's value ÷ this run's, under the quantity's ratio_header

    @property
    def name(self) -> str:
        """The stored quantity (``measurements.metric``) the column reads."""
        return self.quantity.name

    @property
    def header(self) -> str:
        """The column header, with the shown unit."""
        return self.quantity.ratio_header if self.ratio else self.quantity.label

    @property
    def per_scenario(self) -> bool:
        """Whether the column belongs to a load scenario's section rather than the model's."""
        return self.scope != MODEL_SCOPE

    def shown(self, value: float | None) -> float | None:
        """A stored value in the header's unit (a ratio is shown as computed)."""
        if value is None or self.ratio:
            return value
        return value * self.quantity.scale

    def format(self, value: float | None, spread: float | None = None) -> str:
        """A shown value with its uncertainty; a small non-zero value keeps two significant digits, not 0.00."""
        digits = RATIO_DIGITS if self.ratio else self.quantity.digits
        if value and abs(value) < 0.5 * 10**-digits:
            digits = min(MAX_DIGITS, 1 - math.floor(math.log10(abs(value))))
        return fmt(value, digits, spread)

    def format_each(self, values: list[float], spreads: list[float | None]) -> list[str]:
        """``format`` of each value with its spread, a column at a time (``fmt_each``; ``format`` itself only for a
        small non-zero value)."""
        digits = RATIO_DIGITS if self.ratio else self.quantity.digits
        smallest = 0.5 * 10**-digits
        shown = fmt_each(values, digits, spreads)
        return [
            self.format(value, half) if value and abs(value) < smallest else text
            for value, half, text in zip(values, spreads, shown, strict=True)
        ]


def declared_quantities(reg: Registry) -> dict[str, tuple[Quantity, str]]:
    """Every quantity the registered metrics declare, with its metric's scope (the first declaration of a name)."""
    declared: dict[str, tuple[Quantity, str]] = {}
    for metric in reg.metrics.values():
        for quantity in metric.declared():
            declared.setdefault(quantity.name, (quantity, metric.scope))
    return declared


def registry_columns(reg: Registry) -> list[Column]:
    """The registered metrics' run-level columns (resources, fidelity) in registration order, ratios after theirs.

    Task metrics (lm-eval's, stored per task) have columns of their own; a declared quality quantity that is
    never stored without a task (``accuracy``) finds no value and is not shown.
    """
    out = []
    for quantity, scope in declared_quantities(reg).values():
        out.append(Column(quantity, scope))
        if quantity.ratio_header:
            out.append(Column(quantity, scope, ratio=True))
    return out


def stored_column(row: MeasurementRow) -> Column:
    """A generic column for a quantity no registered metric declares: ``name (unit)``, its stored direction."""
    quantity = Quantity(row.metric, row.unit or "", row.resource, bool(row.higher_is_better))
    return Column(quantity, MODEL_SCOPE if not row.in_scenario else "scenario")


def candidates(columns: list[Column], rows: Iterable[MeasurementRow]) -> list[Column]:
    """The given columns, then a generic column per undeclared resource quantity among ``rows``, first seen first."""
    declared = {c.name for c in columns}
    undeclared: dict[str, Column] = {}
    for row in rows:
        if not row.task and row.metric not in declared and row.metric not in undeclared:
            undeclared[row.metric] = stored_column(row)
    return [*columns, *undeclared.values()]
