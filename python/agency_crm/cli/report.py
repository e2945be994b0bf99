"""``agency-crm report``: a client's analytics, or every client side by side, as terminal
tables, JSON, CSV or one self-contained HTML page.

Each section is one call of an analytics function with the report's arguments
(:mod:`agency_crm.report`); this module only draws what they return. The terminal rendering is
public, for the demo: :func:`print_client_report` and :func:`print_agency_report`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agency_crm.cli.common import (
    EXIT_USAGE,
    Command,
    DatabaseUrl,
    connect_ready,
    examples,
    fail,
    resolve_client,
)

if TYPE_CHECKING:
    from rich.console import Console

    from agency_crm.report import Report
    from agency_crm.report.format import Column
    from agency_crm.report.model import Row

FORMATS = ("table", "json", "csv", "html")
DEFAULT_DAYS = 90  # agency_crm.report.DEFAULT_DAYS, without importing the report for --help
MAX_DAYS = 1_000_000

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


# ----------------------------------------------------------------------------- arguments


def parse_days(value: str) -> int:
    """--days: a whole number of days, 1 to 1,000,000."""
    try:
        days = int(value.strip())
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        fail(
            f"--days {value!r} is not a window: give a whole number of days from 1 to "
            f"{MAX_DAYS:,} (default {DEFAULT_DAYS})",
            EXIT_USAGE,
        )
    return days


def parse_as_of(value: str | None) -> datetime | None:
    """--as-of: an ISO 8601 date or time; without an offset, this machine's time zone."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(
            f"--as-of {value!r} is not a date or time: give ISO 8601, e.g. 2026-06-01, "
            "2026-06-01T09:00 or 2026-06-01T09:00+10:00",
            EXIT_USAGE,
        )
    if not 1 < when.year < 9999:
        fail(f"--as-of {value!r} is not a time of the years 2 to 9998", EXIT_USAGE)
    return when if when.tzinfo else when.astimezone()


def parse_format(value: str) -> str:
    found = value.strip().lower()
    if found not in FORMATS:
        fail(f"--format {value!r} is not one of {', '.join(FORMATS)}", EXIT_USAGE)
    return found


def slug(text: str) -> str:
    """A name as a file name reads: lower case, words joined by '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "client"


def default_path(report: Report, suffix: str) -> Path:
    """Where a report goes when --out is not given: ./report-<client>-<as-of date><suffix>."""
    who = slug(report.client_name or "") if report.kind == "client" else "agency"
    return Path(f"report-{who}-{report.as_of.date().isoformat()}{suffix}")


# ----------------------------------------------------------------------------- terminal tables

# The sections of one row: shown as a list of measure and value.
RECORDS = {"show_rate", "funnel", "velocity"}
# What an empty section says, instead of an empty table.
EMPTY = {
    "show_rate_by_week": "No meeting was scheduled in the window.",
    "show_rate_drivers": "No meeting of the window has a recorded attendance.",
    "attribution": "No deal was won in the window, so no channel is credited.",
    "markov": "No lead was touched in the window.",
    "lost_deals": "No deal was lost in the window.",
    "lost_reasons_by_stage": "No deal was lost in the window.",
    "time_in_stage": "No deal was created in the window.",
    "forecast": "No deal is open.",
    "comparison": "No client to compare.",
}


def _table(
    console: Console,
    title: str,
    rows: Sequence[Row],
    shown: Sequence[Column],
    currency: str | None,
    empty: str,
    *,
    money_in_headers: bool = True,
    flagged: Callable[[Row], bool] | None = None,
) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console.print(Text(title, style="bold"))
    if not rows:
        console.print(Text(f"  {empty}", style="dim"))
        console.print()
        return
    # Amounts in a table: the currency once, in the header (or the title says it).
    table = Table(box=box.SIMPLE_HEAD)
    for column in shown:
        header = column.header
        if column.money and currency and money_in_headers:
            header = f"{header} ({currency})"
        table.add_column(header, justify="right" if column.numeric(rows) else "left")
    for row in rows:
        style = "bold red" if flagged and flagged(row) else None
        table.add_row(*(Text(column.cell(row, None)) for column in shown), style=style)
    console.print(table)


def _record(console: Console, title: str, row: Row, currency: str | None) -> None:
    """A one-row section as a list of measure and value."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from agency_crm.report.format import columns

    console.print(Text(title, style="bold"))
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for column in columns(list(row)):
        table.add_row(Text(column.header), Text(column.cell(row, currency)))
    console.print(table)


def _section(console: Console, report: Report, key: str, title: str) -> None:
    from agency_crm.report.format import columns

    table = report.sections.get(key)
    if table is None:
        return
    if key in RECORDS and len(table.rows) == 1:
        _record(console, title, table.rows[0], report.currency)
        return
    shown = columns(table.columns)
    empty = EMPTY.get(key, "Nothing in the window.")
    _table(console, title, table.rows, shown, report.currency, empty)


def _attribution(console: Console, report: Report) -> None:
    """Every model side by side, Markov beside them, one row per channel."""
    from agency_crm.report.format import attribution_table, columns

    if "attribution" not in report.sections and "markov" not in report.sections:
        return
    table = attribution_table(report)
    title = f"Revenue by channel under each attribution model ({report.currency})"
    _table(
        console,
        title,
        table.rows,
        columns(table.columns),
        report.currency,
        EMPTY["attribution"],
        money_in_headers=False,
    )


def _header(console: Console, report: Report) -> None:
    from rich.text import Text

    who = report.client_name if report.kind == "client" else "All clients"
    start = report.as_of.isoformat(sep=" ", timespec="minutes")
    money = f" · amounts in {report.currency}" if report.currency else ""
    console.rule(Text(f"{who} · the {report.days} days to {start}{money}", style="bold"))


def print_client_report(console: Console, report: Report) -> None:
    """A client's report as terminal tables: show rate and its drivers, the funnel,
    attribution under every model with Markov beside them, lost deals, stage conversion,
    time in stage, velocity and the weighted forecast. Sections the report left out are
    skipped."""
    _header(console, report)
    _section(console, report, "show_rate", "Show rate (meetings scheduled in the window)")
    _section(console, report, "show_rate_drivers", "What moves the show rate (n = meetings)")
    _section(console, report, "show_rate_by_week", "Show rate by week")
    _section(console, report, "funnel", "Funnel (leads created in the window)")
    _attribution(console, report)
    _section(console, report, "lost_deals", "Lost deals by reason")
    _section(console, report, "lost_reasons_by_stage", "Lost deals by stage and reason")
    _section(console, report, "stage_conversion", "Stage conversion (deals created in the window)")
    _section(console, report, "time_in_stage", "Time in stage, days")
    _section(console, report, "velocity", "Pipeline velocity")
    _section(console, report, "forecast", "Weighted forecast by expected close month")


def print_agency_report(console: Console, report: Report) -> None:
    """The agency's report as terminal tables: every client side by side (a table per
    measure: the client's figure with its interval and n, the other clients pooled, the
    agency's median, its rank), then the clients significantly below the agency, in red."""
    from rich.text import Text

    from agency_crm.report.agency import agency_columns, flagged, is_flagged
    from agency_crm.report.format import columns

    _header(console, report)
    table = report.sections.get("comparison")
    if table is None:
        return
    if not table.rows:
        console.print(Text(EMPTY["comparison"], style="dim"))
        return
    console.print(
        Text(
            f"{len(table.rows)} client(s), each against the other clients pooled (agency_*) "
            "and the agency's median (median_*); amounts in each client's currency"
        )
    )
    console.print()
    for title, names in agency_columns(table.columns):
        _table(
            console, title, table.rows, columns(names), None, EMPTY["comparison"],
            flagged=is_flagged,
        )  # fmt: skip
    lines = flagged(table.rows)
    console.print(
        Text("Significantly below the agency (95 % intervals that do not overlap)", style="bold")
    )
    for line in lines or ["no client"]:
        console.print(Text(f"  {line}", style="bold red" if lines else "dim"))


# ----------------------------------------------------------------------------- the command


@app.command(
    "report",
    cls=Command,
    epilog=examples(
        "agency-crm report --client Acme",
        "agency-crm report --client 'Acme Dental' --days 30 --as-of 2026-06-01",
        "agency-crm report --client Acme --format json > acme.json",
        "agency-crm report --client Acme --format csv --out acme/   # one CSV per section",
        "agency-crm report --client Acme --format csv --section funnel --out -",
        "agency-crm report --client Acme --format html   # writes report-acme-<date>.html",
        "agency-crm report --agency --days 90 --format html --out agency.html",
    ),
)
def report(
    client: Annotated[
        str | None,
        typer.Option(
            "--client",
            metavar="CLIENT",
            envvar="AGENCY_CRM_CLIENT",
            show_envvar=True,
            help="The client: its uuid, or its exact name.",
        ),
    ] = None,
    agency: Annotated[
        bool,
        typer.Option("--agency", help="Every client side by side (instead of --client)."),
    ] = False,
    days: Annotated[
        str,
        typer.Option(
            "--days",
            metavar="N",
            envvar="AGENCY_CRM_REPORT_DAYS",
            show_envvar=True,
            help=f"The window: the N days up to --as-of (1 to {MAX_DAYS:,}).",
        ),
    ] = str(DEFAULT_DAYS),
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="WHEN",
            envvar="AGENCY_CRM_REPORT_AS_OF",
            show_envvar=True,
            help="The end of the window, ISO 8601 (2026-06-01, 2026-06-01T09:00+10:00; without "
            "an offset, this machine's time zone). Default: now.",
        ),
    ] = None,
    currency: Annotated[
        str | None,
        typer.Option(
            "--currency",
            metavar="CODE",
            envvar="AGENCY_CRM_REPORT_CURRENCY",
            show_envvar=True,
            help="Report the deals in this currency only (ISO 4217). Default: the one the "
            "client's deals carry; needed when they carry several.",
        ),
    ] = None,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="[" + "|".join(FORMATS) + "]",
            envvar="AGENCY_CRM_REPORT_FORMAT",
            show_envvar=True,
            help="table: terminal tables; json: every section's rows, numbers exact; csv: one "
            "file per section; html: one page with charts that opens offline.",
        ),
    ] = "table",
    sections: Annotated[
        list[str] | None,
        typer.Option(
            "--section",
            metavar="NAME",
            help="Only this section of a client's report (show_rate, funnel, attribution ...); "
            "repeat for several.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help="Where to write: a file (json, html, table), a directory (csv), or - for "
            "stdout. Default: stdout for table and json; ./report-<client>-<date>.html for html, "
            "./report-<client>-<date>/ for csv.",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A client's analytics (--client), or every client side by side (--agency).

    Every number is an analytics function's (docs/analytics.md), called with the report's
    window: the --days days up to --as-of. --format json equals what the functions return;
    html is one file with its charts inlined, which opens without a network.

    Exit codes: 0 done; 1 failed (the database refused); 2 a bad option or value; 4 no such
    client.
    """
    if agency == (client is not None):
        fail("give --client CLIENT or --agency (one of them)", EXIT_USAGE)
    window = parse_days(days)
    when = parse_as_of(as_of)
    kind = parse_format(output_format)
    if agency and sections:
        fail("--section picks sections of a client's report; --agency has one", EXIT_USAGE)
    if kind == "csv" and str(out) == "-" and len(sections or ()) != 1:
        fail("--out - writes one CSV to stdout: pick its section with --section", EXIT_USAGE)

    from agency_crm import report as reports

    code = currency.strip().upper() if currency else None
    with connect_ready(database_url) as conn:
        conn.rollback()  # the schema check's; the snapshot starts a transaction of its own
        if agency:
            with reports.snapshot(conn):
                found = reports.agency_report(conn, days=window, as_of=when, currency=code)
        else:
            assert client is not None
            client_id, _ = resolve_client(conn, client)
            conn.rollback()  # the snapshot starts a transaction of its own
            with reports.snapshot(conn):
                found = reports.client_report(
                    conn, client_id, days=window, as_of=when, currency=code, sections=sections
                )
    write(found, kind, out)


def write(report: Report, kind: str, out: Path | None) -> None:
    """The report in ``kind`` to ``out`` (None: the format's default)."""
    from agency_crm import report as reports

    to_stdout = out is None or str(out) == "-"
    if kind == "csv":
        if str(out) == "-":
            [table] = report.sections.values()
            typer.echo(reports.to_csv(table), nl=False)
            return
        directory = out or default_path(report, "")
        for path in reports.write_csv(report, directory):
            typer.echo(str(path))
        return
    if kind == "html":
        from agency_crm.report.html import render

        page = render(report)
        if str(out) == "-":
            typer.echo(page, nl=False)
            return
        path = out or default_path(report, ".html")
        path.write_text(page, encoding="utf-8")
        typer.echo(str(path))
        return
    if kind == "json":
        text = reports.to_json(report, indent=2) + "\n"
        if to_stdout:
            typer.echo(text, nl=False)
        else:
            assert out is not None
            out.write_text(text, encoding="utf-8")
            typer.echo(str(out))
        return
    from rich.console import Console

    if to_stdout:
        console = Console(soft_wrap=False)
        _print(console, report)
        return
    assert out is not None
    with out.open("w", encoding="utf-8") as handle:
        _print(Console(file=handle, width=160, color_system=None), report)
    typer.echo(str(out))


def _print(console: Console, report: Report) -> None:
    if report.kind == "agency":
        print_agency_report(console, report)
    else:
        print_client_report(console, report)
