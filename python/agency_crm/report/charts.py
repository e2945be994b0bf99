"""The charts of the HTML report, as Vega-Lite (altair) drawn to SVG by vl-convert: each says
in its title what it answers, its axes say their units, money and percentages are formatted by
Vega-Lite's format strings. A chart draws a section's rows as the function returned them;
reshaping a row into the marks a chart needs (one bar per model) is all that happens here.

Every builder returns None when its section has nothing to draw: the page then says so in a
sentence instead of showing an empty frame.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import altair as alt
import vl_convert

from agency_crm.report.model import Report, Row

WIDTH = 560
# Text is measured by vl-convert when it lays a chart out and drawn by the browser: a wide font
# first (DejaVu Sans, Verdana) so that the browser's text is never wider than the room made.
FONT = "DejaVu Sans, Verdana, sans-serif"
MODEL_NAMES = {
    "first_touch": "first touch",
    "last_touch": "last touch",
    "linear": "linear",
    "time_decay": "time decay",
    "position_based": "position based",
    "j_shaped": "J-shaped",
    "inverse_j": "inverse J",
    "markov": "Markov",
}
PERCENT_AXIS = "format(datum.value, '.0f') + ' %'"
FUNNEL_STEPS = (
    ("total_leads", "Leads created"),
    ("meetings_booked", "Booked a meeting"),
    ("meetings_showed", "Showed up"),
    ("deals_created", "Deals created"),
    ("deals_won", "Deals won"),
)
Chart = alt.TopLevelMixin


def svg(chart: Chart) -> str:
    """The chart as an SVG document (no URL may be loaded while drawing it)."""
    spec = chart.to_dict()
    drawn: str = vl_convert.vegalite_to_svg(spec, allowed_base_urls=[])
    return drawn


def _values(rows: list[Row]) -> alt.InlineData:
    """Rows as inline data: dates as ISO strings, numbers as numbers."""
    out = []
    for row in rows:
        item: dict[str, Any] = {}
        for key, value in row.items():
            if isinstance(value, date):
                item[key] = value.isoformat()
            elif isinstance(value, bool | int | float | str) or value is None:
                item[key] = value
            else:
                item[key] = float(value)  # Decimal: drawn, not computed with
        out.append(item)
    return alt.InlineData(values=out)


def _finish(chart: Any, title: str, subtitle: str | None = None) -> Chart:
    heading = alt.TitleParams(title, subtitle=subtitle or alt.Undefined, anchor="start")
    finished: Chart = (
        chart.properties(title=heading, padding=12)
        .configure(font=FONT)
        .configure_view(stroke=None)
        .configure_axis(labelFontSize=11, titleFontSize=12, titleFontWeight="normal")
        .configure_title(fontSize=15, subtitleFontSize=12, subtitleColor="#555")
        .configure_legend(labelFontSize=11, titleFontSize=11, orient="bottom")
    )
    return finished


def window(report: Report) -> str:
    return f"the last {report.days} days"


def count_axis(title: str) -> alt.Axis:
    """An axis of counts: labels on whole numbers only."""
    return alt.Axis(
        title=title, tickMinStep=1, labelExpr="datum.value % 1 ? '' : format(datum.value, ',d')"
    )


def money_axis(report: Report, what: str) -> alt.Axis:
    return alt.Axis(format=",.0f", title=f"{what} ({report.currency})")


# ----------------------------------------------------------------------------- client charts


def funnel(report: Report) -> Chart | None:
    rows = report.rows("funnel")
    if not rows or not any(rows[0][key] for key, _ in FUNNEL_STEPS):
        return None
    steps = [{"step": label, "count": rows[0][key], "order": i} for i, (key, label) in
             enumerate(FUNNEL_STEPS)]  # fmt: skip
    base = alt.Chart(_values(steps)).encode(
        y=alt.Y("step:N", sort=alt.SortField("order"), title=None),
        x=alt.X(
            "count:Q",
            axis=count_axis("Leads, then deals (count)"),
        ),
    )
    bars = base.mark_bar(color="#4c78a8")
    labels = base.mark_text(align="left", dx=4).encode(text=alt.Text("count:Q", format=",d"))
    return _finish(
        (bars + labels).properties(width=WIDTH, height=180),
        "Where do leads drop out?",
        f"Leads created in {window(report)}, as of {report.as_of.date().isoformat()}",
    )


def show_rate_by_week(report: Report) -> Chart | None:
    weeks = [r for r in report.rows("show_rate_by_week") if r["show_rate"] is not None]
    if not weeks:
        return None
    # a tick at each week's start (a Monday, as the function's weeks are)
    ticks = [alt.DateTime(year=w["week_start"].year, month=w["week_start"].month,
                          date=w["week_start"].day, utc=True) for w in weeks]  # fmt: skip
    x = alt.X(
        "week_start:T",
        title="Week starting (Monday)",
        scale=alt.Scale(type="utc"),
        axis=alt.Axis(format="%d %b", labelAngle=0, values=ticks, labelOverlap=True),
    )
    y_scale = alt.Scale(domain=[0, 100])
    data = [{**w, "n": f"n = {w['meetings']}"} for w in weeks]
    base = alt.Chart(_values(data)).encode(x=x)
    band = base.mark_area(opacity=0.25, color="#4c78a8").encode(
        y=alt.Y(
            "ci_low:Q",
            scale=y_scale,
            title="Show rate (held / resolved meetings)",
            axis=alt.Axis(labelExpr=PERCENT_AXIS),
        ),
        y2="ci_high:Q",
    )
    line = base.mark_line(color="#4c78a8").encode(y=alt.Y("show_rate:Q", scale=y_scale))
    points = base.mark_point(filled=True, color="#4c78a8", size=40).encode(
        y=alt.Y("show_rate:Q", scale=y_scale)
    )
    counts = base.mark_text(dy=-10, color="#333", fontSize=10).encode(
        y=alt.Y("show_rate:Q", scale=y_scale), text="n:N"
    )
    layers: Any = band + line + points + counts
    overall = report.rows("show_rate")
    if overall and overall[0]["show_rate"] is not None:
        rate = [{"rate": float(overall[0]["show_rate"]),
                 "label": f"{window(report)}: {overall[0]['show_rate']} %"}]  # fmt: skip
        rule = alt.Chart(_values(rate)).encode(y=alt.Y("rate:Q", scale=y_scale))
        layers += rule.mark_rule(strokeDash=[4, 4], color="#e45756")
        layers += rule.mark_text(align="left", dy=-6, x=4, color="#e45756").encode(text="label:N")
    return _finish(
        layers.properties(width=WIDTH, height=240),
        "Is the show rate holding up week to week?",
        "Line: the week's show rate; band: its 95 % interval; n: the resolved meetings behind it",
    )


def show_rate_drivers(report: Report) -> Chart | None:
    rows = report.rows("show_rate_drivers")
    if not rows:
        return None
    data = [
        {**r, "label": f"{str(r['dimension']).replace('_', ' ')}: {r['bucket']}", "order": i,
         "n": f"n = {r['meetings']}"}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    scale = alt.Scale(domain=[0, 100])
    base = alt.Chart(_values(data)).encode(
        y=alt.Y("label:N", sort=alt.SortField("order"), title=None)
    )
    bars = base.mark_rule(color="#9ecae9", strokeWidth=3).encode(
        x=alt.X(
            "ci_low:Q",
            scale=scale,
            title="Show rate, with its 95 % interval",
            axis=alt.Axis(labelExpr=PERCENT_AXIS),
        ),
        x2="ci_high:Q",
    )
    dots = base.mark_point(filled=True, color="#4c78a8", size=50).encode(
        x=alt.X("show_rate:Q", scale=scale)
    )
    labels = base.mark_text(align="left", x=WIDTH + 6, color="#555").encode(text="n:N")
    return _finish(
        (bars + dots + labels).properties(width=WIDTH, height=18 * len(rows)),
        "What moves the show rate?",
        f"Resolved meetings of {window(report)} by lead time, weekday, type, booking and channel",
    )


def attribution(report: Report) -> Chart | None:
    data = []
    for row in report.rows("attribution"):
        for model in MODEL_NAMES:
            if model in row:
                data.append({"channel": row["channel"], "model": MODEL_NAMES[model],
                             "value": row[model]})  # fmt: skip
    for row in report.rows("markov"):
        data.append({"channel": row["channel"], "model": "Markov", "value": row["total_value"]})
    if not any(d["value"] for d in data):
        return None
    chart = (
        alt.Chart(_values(data))
        .mark_bar()
        .encode(
            x=alt.X("channel:N", title="Channel", axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("model:N", sort=list(MODEL_NAMES.values())),
            y=alt.Y("value:Q", axis=money_axis(report, "Revenue credited")),
            color=alt.Color(
                "model:N",
                sort=list(MODEL_NAMES.values()),
                title="Attribution model",
                scale=alt.Scale(scheme="tableau10"),
            ),
        )
    )
    channels = len({d["channel"] for d in data})
    return _finish(
        chart.properties(width=min(WIDTH, 80 + 110 * channels), height=260),
        f"Which channels bring the revenue? ({report.currency}, {window(report)})",
        "Deals won, credited to channels under each attribution model; Markov uses the lost "
        "paths too",
    )


def stage_conversion(report: Report) -> Chart | None:
    rows = report.rows("stage_conversion")
    if not any(r["deals_entered"] for r in rows):
        return None
    data = [
        {**r, "order": i, "label": "" if r["next_step_rate"] is None
         else f"{r['next_step_rate']} % go on"}
        for i, r in enumerate(rows)
    ]  # fmt: skip
    base = alt.Chart(_values(data)).encode(
        x=alt.X("stage:N", sort=alt.SortField("order"), title=None, axis=alt.Axis(labelAngle=0)),
    )
    bars = base.mark_bar(color="#54a24b").encode(
        y=alt.Y(
            "deals_entered:Q",
            axis=count_axis("Deals that reached the stage"),
        )
    )
    labels = base.mark_text(dy=-8, color="#333").encode(y="deals_entered:Q", text="label:N")
    return _finish(
        (bars + labels).properties(width=WIDTH, height=220),
        "How far do deals get?",
        f"Deals created in {window(report)} reaching each stage (and every earlier one)",
    )


def time_in_stage(report: Report) -> Chart | None:
    rows = [r for r in report.rows("time_in_stage") if r["median_days_latest"] is not None]
    if not rows:
        return None
    data = [{**r, "order": i} for i, r in enumerate(rows)]
    base = alt.Chart(_values(data)).encode(
        y=alt.Y("stage:N", sort=alt.SortField("order"), title=None)
    )
    bars = base.mark_bar(color="#f58518").encode(
        x=alt.X("median_days_latest:Q", title="Days in the stage (median; tick: 90th percentile)")
    )
    ticks = base.mark_tick(color="#333", thickness=2, size=18).encode(x="p90_days_latest:Q")
    labels = base.mark_text(align="left", dx=4).encode(
        x="median_days_latest:Q", text=alt.Text("median_days_latest:Q", format=".1f")
    )
    return _finish(
        (bars + ticks + labels).properties(width=WIDTH, height=36 * len(rows)),
        "How long do deals sit in each stage?",
        f"Completed stays of the deals created in {window(report)}, in days",
    )


def lost_reasons_by_stage(report: Report) -> Chart | None:
    rows = report.rows("lost_reasons_by_stage")
    if not rows:
        return None
    stages = list(dict.fromkeys(r["stage"] or "not recorded" for r in rows))
    data = [
        {**r, "stage": r["stage"] or "not recorded",
         "lost_reason": str(r["lost_reason"]).replace("_", " ")}
        for r in rows
    ]  # fmt: skip
    chart = (
        alt.Chart(_values(data))
        .mark_bar()
        .encode(
            y=alt.Y("stage:N", sort=stages, title="Stage the deal was lost at"),
            x=alt.X("deals:Q", axis=count_axis("Deals lost"), stack="zero"),
            color=alt.Color("lost_reason:N", title="Reason", scale=alt.Scale(scheme="set2")),
        )
    )
    return _finish(
        chart.properties(width=WIDTH, height=max(60, 40 * len(stages))),
        "Where and why are deals lost?",
        f"Deals lost in {window(report)}, by the stage they left and the reason given",
    )


def forecast(report: Report) -> Chart | None:
    rows = report.rows("forecast")
    if not rows:
        return None
    data = []
    for i, r in enumerate(rows):
        month = r["expected_close_month"]
        label = month.strftime("%b %Y") if month else "no close date"
        data.append({"month": label, "order": i, "kind": "open value", "value": r["open_value"]})
        data.append(
            {"month": label, "order": i, "kind": "weighted value", "value": r["weighted_value"]}
        )
    months = list(dict.fromkeys(d["month"] for d in data))
    chart = (
        alt.Chart(_values(data))
        .mark_bar()
        .encode(
            x=alt.X(
                "month:N", sort=months, title="Expected close month", axis=alt.Axis(labelAngle=0)
            ),
            xOffset=alt.XOffset("kind:N"),
            y=alt.Y("value:Q", axis=money_axis(report, "Value")),
            color=alt.Color(
                "kind:N",
                title=None,
                scale=alt.Scale(
                    domain=["open value", "weighted value"], range=["#bab0ac", "#4c78a8"]
                ),
            ),
        )
    )
    return _finish(
        chart.properties(width=min(WIDTH, 60 + 90 * len(months)), height=240),
        f"What is likely to close, and when? ({report.currency})",
        f"Deals open at {report.as_of.date().isoformat()}: their value, and weighted by the "
        "probability of their stage",
    )


CLIENT_CHARTS = {
    "funnel": funnel,
    "show_rate_by_week": show_rate_by_week,
    "show_rate_drivers": show_rate_drivers,
    "attribution": attribution,
    "stage_conversion": stage_conversion,
    "time_in_stage": time_in_stage,
    "lost_reasons_by_stage": lost_reasons_by_stage,
    "forecast": forecast,
}
