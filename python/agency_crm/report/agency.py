"""Reading the agency comparison (``crm.get_agency_comparison``) whatever columns it has: which
to show together, which clients it flags, and its charts and page.

Its columns are read by name, the way the function names them (``X_ci_low``/``X_ci_high`` an
interval, ``X_rank``/``X_rank_of`` a rank out of so many, ``X_below_agency`` a flag,
``agency_X`` the other clients pooled, ``median_X`` the agency's median); a column it gains
later shows (under "More", if no group's words match it) without a change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from agency_crm.report.model import Report, Row, Table

# A client's flags: boolean columns named <measure>_below_agency.
FLAG_SUFFIX = "_below_agency"
# The columns naming the client, shown first in every table.
WHO = ("client_name",)
# Groups of columns, by the words their names hold (the first group that matches takes a
# column); columns no group takes are shown under "More".
GROUPS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("Show rate", ("show_rate",), ("meetings", "held_meetings", "agency_meetings")),
    ("Win rate", ("win_rate",), ("closed_deals", "won_deals", "agency_closed_deals")),
    ("Pipeline and won value", ("pipeline_value", "won_value", "currency"), ()),
    ("Sales cycle", ("cycle_days",), ()),
    ("Channel yield", ("channel",), ()),
)
# Columns shown in no group: the client's id (in the JSON and CSV), and what the page's header
# says once (how many clients).
HIDDEN = ("client_id", "clients")
# The n behind a flagged rate, where the function names it.
BEHIND = {
    "show_rate": ("meetings", "agency_meetings"),
    "win_rate": ("closed_deals", "agency_closed_deals"),
}


def agency_columns(columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The comparison's columns in groups, each to show as one table with the client's name
    first: (title, columns)."""
    taken: dict[str, list[str]] = {title: [] for title, *_ in GROUPS}
    more: list[str] = []
    for name in columns:
        if name in WHO or name in HIDDEN:
            continue
        for title, words, exact in GROUPS:
            if name in exact or any(word in name for word in words):
                taken[title].append(name)
                break
        else:
            more.append(name)
    groups = [(title, [*WHO, *names]) for title, names in taken.items() if names]
    if more:
        groups.append(("More", [*WHO, *more]))
    return groups


def flags(columns: Sequence[str]) -> list[str]:
    """The flag columns, in the function's order."""
    return [c for c in columns if c.endswith(FLAG_SUFFIX)]


def is_flagged(row: Row) -> bool:
    return any(value is True for column, value in row.items() if column.endswith(FLAG_SUFFIX))


def _rate(row: Row, prefix: str, measure: str) -> str:
    from agency_crm.report.format import interval, show

    name = f"{prefix}{measure}"
    if name not in row:
        return ""
    text = show(name, row[name])
    if f"{name}_ci_low" in row:
        text += f" (95 % CI {interval(row[f'{name}_ci_low'], row.get(f'{name}_ci_high'))})"
    return text


def flagged(rows: Sequence[Row]) -> list[str]:
    """One line per client and flag set: the client, the measure, its rate and interval, the
    agency's, and the n behind each where the function names it."""
    lines = []
    for row in rows:
        for column, value in row.items():
            if not column.endswith(FLAG_SUFFIX) or value is not True:
                continue
            measure = column[: -len(FLAG_SUFFIX)]
            mine, theirs = BEHIND.get(measure, ("", ""))
            n_mine = f", n = {row[mine]:,}" if mine in row else ""
            n_theirs = f", n = {row[theirs]:,}" if theirs in row else ""
            lines.append(
                f"{row.get('client_name', row.get('client_id'))}: "
                f"{measure.replace('_', ' ')} {_rate(row, '', measure)}{n_mine} is significantly "
                f"below the agency's {_rate(row, 'agency_', measure)}{n_theirs}"
            )
    return lines


# ----------------------------------------------------------------------------- charts


def _below_chart(report: Report, measure: str, n_column: str, label: str, question: str) -> Any:
    """Per client: its rate and 95 % interval against the other clients' pooled interval,
    the flagged clients in red."""
    import altair as alt

    from agency_crm.report.charts import PERCENT_AXIS, _finish, _values

    table = report.sections["comparison"]
    low, high = f"{measure}_ci_low", f"{measure}_ci_high"
    agency_low, agency_high = f"agency_{measure}_ci_low", f"agency_{measure}_ci_high"
    needed = {measure, low, high, agency_low, agency_high, "client_name"}
    if not needed <= set(table.columns):
        return None
    rows = [r for r in table.rows if r[measure] is not None]
    if not rows:
        return None
    flag = f"{measure}{FLAG_SUFFIX}"
    data = [
        {
            "client": r["client_name"],
            "rate": r[measure],
            "low": r[low],
            "high": r[high],
            "agency_low": r[agency_low],
            "agency_high": r[agency_high],
            "below": "significantly below the agency" if r.get(flag) else "not below",
            "n": f"n = {r[n_column]:,}" if n_column in r else "",
        }
        for r in rows
    ]
    scale = alt.Scale(domain=[0, 100])
    y = alt.Y("client:N", title=None, sort=None)
    base = alt.Chart(_values(data)).encode(y=y)
    band = base.mark_bar(color="#d9d9d9", height=16).encode(
        x=alt.X(
            "agency_low:Q",
            scale=scale,
            title=f"{label}, with its 95 % interval",
            axis=alt.Axis(labelExpr=PERCENT_AXIS),
        ),
        x2="agency_high:Q",
    )
    colour = alt.Color(
        "below:N",
        title=None,
        legend=alt.Legend(labelLimit=400),
        scale=alt.Scale(
            domain=["not below", "significantly below the agency"], range=["#4c78a8", "#c4372b"]
        ),
    )
    rule = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("low:Q", scale=scale), x2="high:Q", color=colour
    )
    dot = base.mark_point(filled=True, size=70).encode(x=alt.X("rate:Q", scale=scale), color=colour)
    label = base.mark_text(align="left", dx=6, dy=-9, color="#555", fontSize=10).encode(
        x=alt.X("rate:Q", scale=scale), text="n:N"
    )
    chart = (band + rule + dot + label).properties(width=520, height=max(60, 34 * len(rows)))
    return _finish(
        chart,
        question,
        "Grey: the other clients pooled; line: the client's interval; red: entirely below",
    )


def _value_chart(report: Report) -> Any:
    """Pipeline and won value per client, one panel per currency (money is never added up
    across currencies, nor drawn on one axis)."""
    import altair as alt

    from agency_crm.report.charts import _finish, _values

    table = report.sections["comparison"]
    measures = [c for c in ("pipeline_value", "won_value") if c in table.columns]
    if not measures or "currency" not in table.columns:
        return None
    shown = [r for r in table.rows if any(r[m] for m in measures)]  # clients with any value
    if not shown:
        return None
    data = [
        {
            "client": r["client_name"],
            "currency": r["currency"],
            "measure": m.replace("_", " "),
            "value": r[m],
        }
        for r in shown
        for m in measures
        if r[m] is not None
    ]
    chart = (
        alt.Chart(_values(data))
        .mark_bar()
        .encode(
            y=alt.Y("client:N", title=None, sort=None),
            yOffset=alt.YOffset("measure:N"),
            x=alt.X(
                "value:Q", title="Value (in the panel's currency)", axis=alt.Axis(format=",.0f")
            ),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(range=["#bab0ac", "#54a24b"]),
            ),
        )
        .properties(width=520, height=alt.Step(14))
        .facet(row=alt.Row("currency:N", title="Currency"))
        .resolve_scale(x="independent", y="independent")
    )
    return _finish(
        chart,
        "Who brings the pipeline, and who closes it?",
        f"Deals created in {report_window(report)} (pipeline) and won (won value), in each "
        "client's currency",
    )


def _cycle_chart(report: Report) -> Any:
    import altair as alt

    from agency_crm.report.charts import _finish, _values

    table = report.sections["comparison"]
    if "avg_cycle_days" not in table.columns:
        return None
    rows = [r for r in table.rows if r["avg_cycle_days"] is not None]
    if not rows:
        return None
    data = [{"client": r["client_name"], "days": r["avg_cycle_days"]} for r in rows]
    bars = (
        alt.Chart(_values(data))
        .mark_bar(color="#f58518")
        .encode(
            y=alt.Y("client:N", title=None, sort=None),
            x=alt.X("days:Q", title="Days from created to won (mean)"),
        )
    )
    layers: Any = bars
    median = rows[0].get("median_cycle_days")
    if median is not None:  # the same in every row: the agency's median
        rule = alt.Chart(_values([{"median": median, "label": f"median {median} d"}]))
        layers += rule.mark_rule(strokeDash=[4, 4], color="#333").encode(x="median:Q")
        layers += rule.mark_text(align="left", dx=4, y=-6, color="#333").encode(
            x="median:Q", text="label:N"
        )
    return _finish(
        layers.properties(width=520, height=max(60, 28 * len(rows))),
        "How long does each client take to win a deal?",
        f"Deals won in {report_window(report)}; dashed: the agency's median",
    )


def _channel_chart(report: Report) -> Any:
    import altair as alt

    from agency_crm.report.charts import _finish, _values

    table = report.sections["comparison"]
    if not {"best_channel", "best_channel_yield"} <= set(table.columns):
        return None
    rows = [r for r in table.rows if r["best_channel"] is not None]
    if not rows:
        return None
    data = [
        {
            "client": r["client_name"],
            "currency": r.get("currency") or "",
            "yield": r["best_channel_yield"],
            "label": f"{r['best_channel']} ({r['currency']} {r['best_channel_yield']:,} a lead)"
            if r.get("currency")
            else str(r["best_channel"]),
        }
        for r in rows
    ]
    base = alt.Chart(_values(data)).encode(y=alt.Y("client:N", title=None, sort=None))
    bars = base.mark_bar(color="#72b7b2").encode(
        x=alt.X("yield:Q", title="Won value per lead reached", axis=alt.Axis(format=",.0f"))
    )
    labels = base.mark_text(align="left", dx=4).encode(x="yield:Q", text="label:N")
    chart = (
        (bars + labels)
        .properties(width=420, height=alt.Step(22))
        .facet(row=alt.Row("currency:N", title="Currency"))
        .resolve_scale(x="independent", y="independent")
    )
    return _finish(
        chart,
        "Which channel pays best for each client?",
        "Its best channel: won value credited by linear attribution per lead it reached",
    )


def report_window(report: Report) -> str:
    return f"the last {report.days} days"


def charts(report: Report) -> list[tuple[str, str, Any]]:
    """The agency page's charts that have something to draw: (key, heading, chart)."""
    if "comparison" not in report.sections:
        return []
    candidates = [
        (
            "show_rate",
            "Show rate",
            _below_chart(
                report, "show_rate", "meetings", "Show rate (held / resolved meetings)",
                "Whose show rate is significantly below the rest of the agency?",
            ),
        ),
        (
            "win_rate",
            "Win rate",
            _below_chart(
                report, "win_rate", "closed_deals", "Win rate (won / closed deals)",
                "Whose win rate is significantly below the rest of the agency?",
            ),
        ),
        ("value", "Pipeline and won value", _value_chart(report)),
        ("cycle", "Sales cycle", _cycle_chart(report)),
        ("channel", "Channel yield", _channel_chart(report)),
    ]  # fmt: skip
    return [(key, heading, chart) for key, heading, chart in candidates if chart is not None]


# ----------------------------------------------------------------------------- the page


def body(report: Report) -> str:
    """The agency page's body: the flagged clients, a chart per question, the comparison's
    columns as tables."""
    from agency_crm.report.charts import svg
    from agency_crm.report.html import inline_svg, table_html

    table = report.sections.get("comparison")
    if table is None or not table.rows:
        return '<p class="empty">No client to compare.</p>'
    count = len(table.rows)
    out = [
        f'<p class="lead">{count} client{"s" if count != 1 else ""}, each against the other '
        "clients pooled (the agency) and the agency's median.</p>"
    ]
    lines = flagged(table.rows)
    if lines:
        items = "".join(f"<li>{escape(line)}</li>" for line in lines)
        out.append(
            '<section id="flags"><h2>Significantly below the agency</h2>'
            f'<ul class="flags">{items}</ul></section>'
        )
    else:
        out.append(
            '<section id="flags"><h2>Significantly below the agency</h2><p class="empty">No '
            "client's show or win rate is significantly below the other clients'.</p></section>"
        )
    for i, (key, heading, chart) in enumerate(charts(report)):
        out.append(
            f'<section id="{key}"><h2>{escape(heading)}</h2>'
            f'<figure class="chart" data-chart="{key}">{inline_svg(svg(chart), f"a{i}")}'
            "</figure></section>"
        )
    tables = "".join(
        f"<h3>{escape(title)}</h3>"
        + table_html(Table(tuple(names), table.rows), None, flagged=is_flagged)
        for title, names in agency_columns(table.columns)
    )
    out.append(
        f'<section id="comparison"><h2>Every client side by side</h2>'
        f'<div class="numbers">{tables}</div>'
        '<p class="source">From crm.get_agency_comparison. Amounts in each client\'s currency '
        "(its column says which); red rows: a client flagged below the agency.</p></section>"
    )
    return "".join(out)
