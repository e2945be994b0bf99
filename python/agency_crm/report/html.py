"""A report as one self-contained HTML page: its charts inlined as SVG (Vega-Lite drawn by
vl-convert), its styles inline, no script, no font, no request of any kind, so the file opens
offline and as file://. A Content-Security-Policy in the page itself forbids loading
anything.

The page shows, per section, a chart that answers one question and the section's key numbers
as a small table; a section with nothing to show says so in a sentence. Every number is the
function's (the tables format them, the charts draw them).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from agency_crm import __version__
from agency_crm.report import charts
from agency_crm.report.format import Column, attribution_table, columns, show
from agency_crm.report.model import BY_KEY, Report, Row, Table

# The page may load nothing at all: its styles are inline, its charts inline SVG.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
:root{color-scheme:light;--ink:#1d2330;--muted:#5b6475;--line:#e3e6ec;--accent:#4c78a8;
--warn:#c4372b}
*{box-sizing:border-box}
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,
sans-serif;color:var(--ink);background:#f6f7f9;line-height:1.45}
header{background:#fff;border-bottom:1px solid var(--line);padding:1.5rem 2rem}
header h1{margin:0 0 .25rem;font-size:1.7rem}
header p{margin:.1rem 0;color:var(--muted)}
main{padding:1rem 2rem 3rem;max-width:1500px}
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:.7rem 1rem;
min-width:11rem}
.card .value{font-size:1.45rem;font-weight:600;font-variant-numeric:tabular-nums}
.card .label{color:var(--muted);font-size:.85rem}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:1rem 1.25rem;
margin:0 0 1rem}
section h2{margin:0 0 .5rem;font-size:1.15rem}
.parts{display:flex;flex-wrap:wrap;gap:.5rem 2rem;align-items:flex-start}
.numbers{flex:1 1 24rem;min-width:0;overflow-x:auto}
figure.chart{margin:0;flex:0 1 auto;max-width:100%}
figure.chart svg{max-width:100%;height:auto}
p.empty{color:var(--muted);font-style:italic}
p.source{color:var(--muted);font-size:.8rem;margin:.5rem 0 0}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0;font-variant-numeric:tabular-nums}
th,td{padding:.25rem .6rem;border-bottom:1px solid var(--line);text-align:left;
white-space:nowrap}
th{color:var(--muted);font-weight:600}
td.num,th.num{text-align:right}
tr.flagged td{color:var(--warn);font-weight:600}
ul.flags li{color:var(--warn);font-weight:600;margin:.2rem 0}
p.lead{color:var(--muted);margin:1rem 0}
h3{font-size:.95rem;margin:1rem 0 .25rem}
footer{color:var(--muted);font-size:.8rem;padding:0 2rem 2rem}
"""
# vl-convert writes no ids today; were a chart to, each inlined SVG's would be made its own.
_ID = re.compile(r'\bid="([^"]+)"')


@dataclass(frozen=True)
class Part:
    """A section of the page: its heading, its chart, its tables, and what it says when it
    has nothing to show."""

    key: str
    heading: str
    chart: Callable[[Report], charts.Chart | None] | None
    tables: tuple[str, ...]
    empty: str


CLIENT_PAGE = (
    Part(
        "show_rate",
        "Show rate",
        charts.show_rate_by_week,
        ("show_rate", "show_rate_by_week"),
        "No meeting was scheduled in the window.",
    ),
    Part(
        "show_rate_drivers",
        "What moves the show rate",
        charts.show_rate_drivers,
        ("show_rate_drivers",),
        "No meeting of the window has a recorded attendance.",
    ),
    Part("funnel", "Funnel", charts.funnel, ("funnel",), "No lead was created in the window."),
    Part(
        "attribution",
        "Revenue by channel",
        charts.attribution,
        ("attribution",),
        "No deal was won in the window, so no channel is credited.",
    ),
    Part(
        "stage_conversion",
        "Stage conversion",
        charts.stage_conversion,
        ("stage_conversion",),
        "No deal was created in the window.",
    ),
    Part(
        "time_in_stage",
        "Time in stage",
        charts.time_in_stage,
        ("time_in_stage",),
        "No deal created in the window has left a stage yet.",
    ),
    Part(
        "lost",
        "Lost deals",
        charts.lost_reasons_by_stage,
        ("lost_deals", "lost_reasons_by_stage"),
        "No deal was lost in the window.",
    ),
    Part(
        "forecast",
        "Weighted forecast",
        charts.forecast,
        ("forecast",),
        "No deal is open.",
    ),
    Part("velocity", "Pipeline velocity", None, ("velocity",), "No deal in the window."),
)
# Sections of one row, shown as a list of measure and value.
RECORDS = {"show_rate", "funnel", "velocity"}


def inline_svg(drawn: str, prefix: str) -> str:
    """An SVG document as an element of the page: ids (if any) made the chart's own."""
    body = drawn[drawn.index("<svg") :]
    ids = set(_ID.findall(body))
    for found in sorted(ids, key=len, reverse=True):
        mine = f"{prefix}-{found}"
        body = body.replace(f'id="{found}"', f'id="{mine}"')
        body = body.replace(f"url(#{found})", f"url(#{mine})")
        body = body.replace(f'href="#{found}"', f'href="#{mine}"')
    return body


def _cells(row: Row, shown: Sequence[Column], currency: str | None, numeric: list[bool]) -> str:
    return "".join(
        f"<td{' class=num' if num else ''}>{escape(c.cell(row, currency))}</td>"
        for c, num in zip(shown, numeric, strict=True)
    )


def table_html(
    table: Table,
    currency: str | None,
    *,
    hide: Sequence[str] = (),
    flagged: Callable[[Row], bool] | None = None,
) -> str:
    """A section's rows as a table; money in ``currency``, named once in its header."""
    shown = columns(table.columns, hide=hide)
    numeric = [c.numeric(table.rows) for c in shown]
    head = "".join(
        f"<th{' class=num' if num else ''}>"
        f"{escape(c.header + (f' ({currency})' if c.money and currency else ''))}</th>"
        for c, num in zip(shown, numeric, strict=True)
    )
    body = "".join(
        f"<tr{' class=flagged' if flagged and flagged(row) else ''}>"
        f"{_cells(row, shown, None, numeric)}</tr>"
        for row in table.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def record_html(row: Row, currency: str | None) -> str:
    """A one-row section as a table of measure and value."""
    body = "".join(
        f"<tr><th>{escape(c.header)}</th><td class=num>{escape(c.cell(row, currency))}</td></tr>"
        for c in columns(list(row))
    )
    return f"<table><tbody>{body}</tbody></table>"


def _source(report: Report, keys: Sequence[str]) -> str:
    """Which functions a section's numbers are, with the report's arguments."""
    calls = []
    for key in keys:
        if key in report.sections:
            calls.append(BY_KEY[key].function)
    if "attribution" in keys and "markov" in report.sections:
        calls.append(BY_KEY["markov"].function)
    if not calls:
        return ""
    return f'<p class="source">From {escape(", ".join(calls))}.</p>'


def _part(report: Report, part: Part, number: int) -> str:
    present = [key for key in part.tables if key in report.sections]
    if not present and not (part.key == "attribution" and "markov" in report.sections):
        return ""
    out = [f'<section id="{part.key}"><h2>{escape(part.heading)}</h2><div class="parts">']
    chart = part.chart(report) if part.chart else None
    if chart is not None:
        out.append(
            f'<figure class="chart" data-chart="{part.key}">'
            f"{inline_svg(charts.svg(chart), f'c{number}')}</figure>"
        )
    elif part.chart is not None:
        out.append(f'<p class="empty">{escape(part.empty)}</p>')
    # A one-row section's numbers beside the chart, the other tables below it.
    beside, below = [], []
    for key in present:
        table = attribution_table(report) if key == "attribution" else report.sections[key]
        if key in RECORDS and len(table.rows) == 1:
            beside.append(record_html(table.rows[0], report.currency))
        elif table.rows:
            below.append(table_html(table, report.currency))
        elif part.chart is None:
            below.append(f'<p class="empty">{escape(part.empty)}</p>')
    if beside:
        out.append(f'<div class="numbers">{"".join(beside)}</div>')
    out.append(f'</div><div class="numbers">{"".join(below)}')
    out.append(_source(report, part.tables))
    out.append("</div></section>")
    return "".join(out)


def _card(value: str, label: str) -> str:
    return (
        f'<div class="card"><div class="value">{escape(value)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
    )


def _cards(report: Report) -> str:
    """The key numbers at the top, each a function's value."""
    out = []
    money = report.currency
    show_rate = report.rows("show_rate")
    if show_rate:
        row = show_rate[0]
        out.append(
            _card(
                show("show_rate", row["show_rate"]),
                f"show rate of {row['total_meetings']:,} meetings",
            )
        )
    funnel = report.rows("funnel")
    if funnel:
        row = funnel[0]
        out.append(_card(f"{row['total_leads']:,}", "leads created"))
        out.append(_card(f"{row['deals_won']:,}", "deals won of them"))
        out.append(_card(show("total_won_value", row["total_won_value"], money), "won value"))
        out.append(_card(show("deal_win_rate", row["deal_win_rate"]), "win rate"))
    velocity = report.rows("velocity")
    if velocity:
        row = velocity[0]
        out.append(
            _card(
                show("velocity_per_day", row["velocity_per_day"], money),
                "pipeline velocity per day",
            )
        )
    return f'<div class="cards">{"".join(out)}</div>' if out else ""


def _window(report: Report) -> str:
    end = report.as_of.isoformat(sep=" ", timespec="minutes")
    money = f" Amounts in {report.currency}." if report.currency else ""
    return f"The {report.days} days up to {end}.{money}"


def page(title: str, header: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><header>{header}</header><main>{body}</main>"
        f"<footer>Made by agency-crm {escape(__version__)}: every number is an analytics "
        "function's (docs/analytics.md), called with the window above.</footer>"
        "</body></html>\n"
    )


def render_client(report: Report) -> str:
    """A client's report as one self-contained page."""
    name = report.client_name or str(report.client_id)
    header = (
        f"<h1>{escape(name)}</h1><p class=window>{escape(_window(report))}</p>"
        f"<p>Client {escape(str(report.client_id))}</p>"
    )
    parts = "".join(_part(report, part, i) for i, part in enumerate(CLIENT_PAGE))
    return page(
        f"{name}: the last {report.days} days",
        header,
        _cards(report) + parts,
    )


def render_agency(report: Report) -> str:
    """The agency's report as one self-contained page."""
    from agency_crm.report import agency

    header = f"<h1>All clients side by side</h1><p class=window>{escape(_window(report))}</p>"
    return page(f"All clients: the last {report.days} days", header, agency.body(report))


def render(report: Report) -> str:
    """The report as one self-contained HTML page."""
    return render_agency(report) if report.kind == "agency" else render_client(report)
