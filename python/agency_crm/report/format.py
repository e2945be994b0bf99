"""How a value reads in a table (the terminal's and the HTML report's): money with its currency
and thousands separators, rates as percentages, days as days, a rate's 95 % interval beside it.

A column's kind is read from its name, the way the analytics name their columns (``*_rate``
is a percentage, ``*_value`` money, ``*_days`` days ...), so a column a function gains later
reads right without a change here. Formatting only: every number shown is the function's,
rounded for reading at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from agency_crm.report.model import Report, Row, Table

Kind = Literal["percent", "fraction", "money", "days", "date", "number"]

# Percentages (0-100) whose names do not end in _rate.
PERCENT = {"ci_low", "ci_high", "percentage_of_revenue", "confidence"}
# Money whose names do not end in _value.
MONEY = {"velocity_per_day", "lost_value"}
# Shares of 0-1.
FRACTION = {"removal_effect"}
# The attribution models' columns of crm.get_attribution_comparison (and Markov's beside
# them): money.
MODELS = (
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "position_based",
    "j_shaped",
    "inverse_j",
    "markov",
)
NOTHING = "—"


def kind(column: str) -> Kind:
    """What a column holds, by its name."""
    if column in FRACTION:
        return "fraction"
    if column in PERCENT or column.endswith(("_rate", "_ci_low", "_ci_high", "_percentage")):
        return "percent"
    if column in MONEY or column in MODELS or column.endswith(("_value", "_yield")):
        return "money"
    if column.endswith("_days") or "_days_" in column or column.startswith("days_"):
        return "days"
    if column.endswith(("_month", "_date", "_start")) or column.endswith("_at"):
        return "date"
    return "number"


def exact(value: Any) -> str:
    """A number as the function returned it, with thousands separators (no rounding)."""
    return f"{Decimal(value):,}"


def money(value: Any, currency: str | None) -> str:
    """An amount to the cent (attribution splits deals into fractions of a cent)."""
    cents = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return f"{currency} {cents:,}" if currency else f"{cents:,}"


def percent(value: Any) -> str:
    """A percentage as the function returned it (rounded to 2 decimals there)."""
    return f"{exact(value)} %"


def show(column: str, value: Any, currency: str | None = None) -> str:
    """A value of ``column`` as a table cell reads."""
    if value is None:
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, int | Decimal | float):
        return str(value)
    found = kind(column)
    if found == "fraction":
        return percent((Decimal(value) * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    if found == "percent":
        return percent(value)
    if found == "money":
        return money(value, currency)
    if found == "days":
        return f"{exact(value)} d"
    return exact(value)


def heading(column: str) -> str:
    """A column's name as a header reads: words, with the units they are in."""
    words = column.replace("_", " ")
    return f"{words} %" if kind(column) in ("percent", "fraction") else words


def interval(low: Any, high: Any) -> str:
    """A 95 % interval: ``20.77-93.85 %``."""
    if low is None or high is None:
        return NOTHING
    return f"{exact(low)}-{exact(high)} %"


@dataclass(frozen=True)
class Column:
    """A column of a shown table: one of the function's, or an interval made of two."""

    header: str
    names: tuple[str, ...]
    # how its names make one cell: the value, an interval (low, high), a rank (rank, of)
    shape: Literal["value", "interval", "rank"] = "value"

    @property
    def money(self) -> bool:
        return self.shape == "value" and kind(self.names[0]) == "money"

    def cell(self, row: Row, currency: str | None) -> str:
        if self.shape == "interval":
            return interval(row.get(self.names[0]), row.get(self.names[1]))
        if self.shape == "rank":
            rank, of = row.get(self.names[0]), row.get(self.names[1])
            return NOTHING if rank is None else f"{rank:,} of {of:,}"
        return show(self.names[0], row.get(self.names[0]), currency)

    def numeric(self, rows: Sequence[Row]) -> bool:
        """Whether the column holds numbers (shown right-aligned)."""
        if self.shape == "rank":
            return True
        values = [row.get(self.names[0]) for row in rows]
        found = [v for v in values if v is not None]
        return bool(found) and all(
            isinstance(v, int | Decimal | float) and not isinstance(v, bool) for v in found
        )


def columns(names: Sequence[str], *, hide: Sequence[str] = ()) -> list[Column]:
    """The columns a table shows: each of ``names`` but ``hide``, with ``X_ci_low`` and
    ``X_ci_high`` (or ``ci_low`` and ``ci_high``) shown as one interval column where the low
    one was."""
    shown: list[Column] = []
    for name in names:
        if name in hide or name.endswith("ci_high"):
            continue
        if name.endswith("_rank_of") and name[: -len("_of")] in names:
            continue
        if name.endswith("_rank") and f"{name}_of" in names:
            shown.append(Column(name.replace("_", " "), (name, f"{name}_of"), "rank"))
            continue
        if name.endswith("ci_low"):
            high = name[: -len("low")] + "high"
            if high in names:
                prefix = name[: -len("ci_low")].rstrip("_").replace("_", " ")
                shown.append(Column(f"{prefix} 95 % CI".strip(), (name, high), "interval"))
                continue
        shown.append(Column(heading(name), (name,)))
    return shown


def attribution_table(report: Report) -> Table:
    """Every model's credit per channel with Markov's beside them, one row per channel."""
    models = report.sections.get("attribution")
    markov = report.sections.get("markov")
    by_channel: dict[str, Row] = {}
    for row in models.rows if models else []:
        by_channel.setdefault(row["channel"], {}).update(row)
    for row in markov.rows if markov else []:
        by_channel.setdefault(row["channel"], {"channel": row["channel"]}).update(
            markov=row["total_value"], removal_effect=row["removal_effect"]
        )
    names = list(models.columns if models else ("channel",))
    if markov is not None:
        names += ["markov", "removal_effect"]
    return Table(tuple(names), list(by_channel.values()))
