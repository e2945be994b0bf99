"""Reading the agency comparison (crm.get_agency_comparison) whatever columns it has: which
to show together, and which clients it flags. Its columns are read by name, so a column the
function gains shows without a change here."""

from __future__ import annotations

from collections.abc import Sequence

from agency_crm.report.model import Report, Row

# A client's flags: boolean columns named <measure>_below_agency.
FLAG_SUFFIX = "_below_agency"


def agency_columns(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The comparison's columns in groups to show as one table each (title, columns)."""
    return [("Clients side by side", list(columns))]


def flagged(rows: Sequence[Row]) -> list[str]:
    """One line per client and flag set: '<client>: <measure> below the agency's'."""
    lines = []
    for row in rows:
        for column, value in row.items():
            if column.endswith(FLAG_SUFFIX) and value is True:
                measure = column[: -len(FLAG_SUFFIX)].replace("_", " ")
                lines.append(
                    f"{row.get('client_name', row.get('client_id'))}: {measure} "
                    "significantly below the agency's"
                )
    return lines


def body(report: Report) -> str:
    """The agency page's body (charts come with the agency comparison)."""
    from html import escape

    from agency_crm.report.html import table_html

    table = report.sections.get("comparison")
    if table is None or not table.rows:
        return '<p class="empty">No client to compare.</p>'
    flags = [c for c in table.columns if c.endswith(FLAG_SUFFIX)]

    def flagged_row(row: Row) -> bool:
        return any(row.get(c) is True for c in flags)

    return (
        f'<section id="comparison"><h2>{escape("Clients side by side")}</h2>'
        f"{table_html(table, report.currency, flagged=flagged_row)}</section>"
    )
