"""A small, independent Python implementation of the analytics definitions of
docs/analytics.md, written from the definitions (not from the SQL), to check the SQL against.

Every function takes plain rows (dicts, as read back from the database after the triggers ran)
and returns what the SQL function returns, in the same order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

Row = dict[str, Any]
STAGES = [
    "qualification", "proposal", "negotiation", "verbal_commit", "contract_sent",
    "closed_won", "closed_lost",
]  # fmt: skip
LOST_REASONS = [
    "price_too_high", "chose_competitor", "no_budget", "timing_not_right", "no_decision",
    "champion_left", "project_cancelled", "went_silent", "bad_fit", "other",
]  # fmt: skip
MODELS = [
    "first_touch", "last_touch", "linear", "time_decay", "position_based", "j_shaped", "inverse_j",
]  # fmt: skip
SHAPES = {
    "position_based": (0.4, 0.2, 0.4),
    "j_shaped": (0.2, 0.2, 0.6),
    "inverse_j": (0.6, 0.2, 0.2),
}


def in_window(ts: datetime | None, days: int | None, as_of: datetime) -> bool:
    if ts is None or ts >= as_of:
        return False
    return days is None or ts >= as_of - timedelta(days=days)


def rate(numerator: int, denominator: int) -> Decimal | None:
    """Percentage rounded half away from zero to 2 decimals; None when nothing to divide by."""
    if denominator == 0:
        return None
    return (Decimal(100 * numerator) / Decimal(denominator)).quantize(
        Decimal("0.01"), ROUND_HALF_UP
    )


def live(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r["deleted_at"] is None]


def show_rate(meetings: list[Row], days: int | None, as_of: datetime) -> tuple[Any, ...]:
    scope = [m for m in live(meetings) if in_window(m["scheduled_at"], days, as_of)]

    def state(m: Row) -> str:
        if m["meeting_outcome"] in ("cancelled", "rescheduled"):
            return "excluded"
        if m["showed_up"] is True:
            return "held"
        if m["showed_up"] is False or m["meeting_outcome"] == "no_show":
            return "no_show"
        return "unresolved"

    def before(flag: str, stamp: str, m: Row) -> bool:
        return bool(m[flag]) and m[stamp] is not None and m[stamp] < m["scheduled_at"]

    held = sum(state(m) == "held" for m in scope)
    no_show = sum(state(m) == "no_show" for m in scope)
    rescheduled = sum(
        m["rescheduled_count"] > 0 or m["meeting_outcome"] == "rescheduled" for m in scope
    )

    def conditional(flag: str, stamp: str) -> Decimal | None:
        group = [m for m in scope if before(flag, stamp, m)]
        h = sum(state(m) == "held" for m in group)
        return rate(h, h + sum(state(m) == "no_show" for m in group))

    return (
        len(scope),
        rate(held, held + no_show),
        rate(no_show, held + no_show),
        rate(rescheduled, len(scope)),
        conditional("confirmed", "confirmed_at"),
        conditional("reminder_sent", "reminder_sent_at"),
        sum(state(m) == "unresolved" for m in scope),
    )


class MixedCurrencies(Exception):
    pass


def one_currency(deals: list[Row], currency: str | None) -> list[Row]:
    chosen = [d for d in deals if currency is None or d["currency"] == currency]
    if len({d["currency"] for d in chosen}) > 1:
        raise MixedCurrencies
    return chosen


def funnel(
    leads: list[Row],
    meetings: list[Row],
    deals: list[Row],
    days: int | None,
    as_of: datetime,
    currency: str | None = None,
) -> tuple[Any, ...]:
    cohort = {lead["id"] for lead in live(leads) if in_window(lead["created_at"], days, as_of)}
    booked: set[Any] = set()
    showed: set[Any] = set()
    for m in live(meetings):
        if m["lead_id"] in cohort and m["booked_at"] < as_of:
            booked.add(m["lead_id"])
            if m["showed_up"] is True and m["scheduled_at"] < as_of:
                showed.add(m["lead_id"])
    cohort_deals = one_currency(
        [d for d in live(deals) if d["lead_id"] in cohort and d["created_at"] < as_of], currency
    )

    def closed(d: Row, stage: str) -> bool:
        return bool(d["stage"] == stage and d["closed_at"] < as_of)

    won = [d for d in cohort_deals if closed(d, "closed_won")]
    lost = [d for d in cohort_deals if closed(d, "closed_lost")]
    return (
        len(cohort),
        len(booked),
        len(showed),
        len(cohort_deals),
        len(won),
        sum((d["value"] for d in cohort_deals), Decimal(0)),
        sum((d["value"] for d in won), Decimal(0)),
        rate(len(showed), len(booked)),
        rate(len(won), len(won) + len(lost)),
        rate(len(booked), len(cohort)),
        rate(len({d["lead_id"] for d in won}), len(cohort)),
    )


def touch_weights(
    model: str, touches: list[Row], created_at: datetime, half_life_days: float
) -> list[float]:
    """Weights of a deal's eligible touches (ordered by occurred_at, id), summing to 1."""
    n = len(touches)
    if model == "first_touch":
        raw = [1.0 if i == 0 else 0.0 for i in range(n)]
    elif model == "last_touch":
        raw = [1.0 if i == n - 1 else 0.0 for i in range(n)]
    elif model == "linear":
        raw = [1.0] * n
    elif model == "time_decay":
        raw = [
            2.0 ** (-((created_at - t["occurred_at"]).total_seconds() / 86400) / half_life_days)
            for t in touches
        ]
    else:
        first, middle, last = SHAPES[model]
        if n == 1:
            raw = [1.0]
        elif n == 2:
            raw = [first, last]
        else:
            raw = [first] + [middle / (n - 2)] * (n - 2) + [last]
    total = sum(raw)
    return [w / total for w in raw]


def eligible_touches(deal: Row, activities: list[Row]) -> list[Row]:
    touches = [
        a
        for a in live(activities)
        if a["lead_id"] == deal["lead_id"] and a["occurred_at"] <= deal["created_at"]
    ]
    return sorted(touches, key=lambda a: (a["occurred_at"], str(a["id"])))


def won_in_window(
    deals: list[Row], days: int | None, as_of: datetime, currency: str | None
) -> list[Row]:
    won = [
        d
        for d in live(deals)
        if d["stage"] == "closed_won" and in_window(d["closed_at"], days, as_of)
    ]
    return one_currency(won, currency)


def attribution(
    deals: list[Row],
    activities: list[Row],
    days: int | None,
    as_of: datetime,
    model: str,
    half_life_days: float = 7.0,
    currency: str | None = None,
) -> dict[str, tuple[float, float]]:
    """channel -> (deals_attributed, total_value), unrounded."""
    credit: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for deal in won_in_window(deals, days, as_of, currency):
        touches = eligible_touches(deal, activities)
        value = float(deal["value"])
        if not touches:
            credit["unattributed"][0] += 1.0
            credit["unattributed"][1] += value
            continue
        for touch, w in zip(
            touches, touch_weights(model, touches, deal["created_at"], half_life_days), strict=True
        ):
            credit[str(touch["channel"])][0] += w
            credit[str(touch["channel"])][1] += w * value
    return {ch: (d, v) for ch, (d, v) in credit.items() if d > 0}


def lost_deals(
    deals: list[Row],
    history: list[Row],
    days: int | None,
    as_of: datetime,
    currency: str | None = None,
) -> list[tuple[Any, ...]]:
    lost = one_currency(
        [
            d
            for d in live(deals)
            if d["stage"] == "closed_lost" and in_window(d["closed_at"], days, as_of)
        ],
        currency,
    )
    moves: dict[Any, list[Row]] = defaultdict(list)
    for h in history:
        if h["to_stage"] == "closed_lost":
            moves[h["deal_id"]].append(h)

    def stage_lost(deal: Row) -> str | None:
        into_lost = sorted(moves[deal["id"]], key=lambda h: h["seq"])
        return (
            str(into_lost[-1]["from_stage"]) if into_lost and into_lost[-1]["from_stage"] else None
        )

    groups: dict[str, list[Row]] = defaultdict(list)
    for d in lost:
        groups[str(d["lost_reason"])].append(d)
    rows = []
    for reason, members in groups.items():
        days_in = [
            Decimal(int((d["closed_at"] - d["created_at"]) / timedelta(microseconds=1)))
            / Decimal(86_400_000_000)
            for d in members
        ]
        stages = Counter(s for s in map(stage_lost, members) if s is not None)
        common = max(stages, key=lambda s: (stages[s], STAGES.index(s))) if stages else None
        rows.append(
            (
                reason,
                len(members),
                sum((d["value"] for d in members), Decimal(0)),
                (sum(days_in, Decimal(0)) / len(days_in)).quantize(Decimal("0.1"), ROUND_HALF_UP),
                common,
            )
        )
    rows.sort(key=lambda r: (-r[1], -r[2], LOST_REASONS.index(r[0])))
    return rows


FUNNEL_STAGES = STAGES[:6]  # the open stages, then closed_won


def cohort_deals(deals: list[Row], days: int | None, as_of: datetime) -> list[Row]:
    return [d for d in live(deals) if in_window(d["created_at"], days, as_of)]


def history_of(history: list[Row], deal_ids: set[Any], as_of: datetime) -> dict[Any, list[Row]]:
    per_deal: dict[Any, list[Row]] = defaultdict(list)
    for h in sorted(history, key=lambda h: h["seq"]):
        if h["deal_id"] in deal_ids and h["changed_at"] < as_of:
            per_deal[h["deal_id"]].append(h)
    return per_deal


def stage_conversion(
    deals: list[Row], history: list[Row], days: int | None, as_of: datetime, mode: str
) -> list[tuple[Any, ...]]:
    cohort = cohort_deals(deals, days, as_of)
    moves = history_of(history, {d["id"] for d in cohort}, as_of)
    entered = {
        d["id"]: {str(h["to_stage"]) for h in moves[d["id"]]} & set(FUNNEL_STAGES) for d in cohort
    }

    def counted(deal: Any, k: int) -> bool:
        if mode == "any":
            return FUNNEL_STAGES[k] in entered[deal]
        return all(FUNNEL_STAGES[j] in entered[deal] for j in range(k + 1))

    rows = []
    for k, stage in enumerate(FUNNEL_STAGES):
        at_k = [d for d in entered if counted(d, k)]
        further = {d for d in entered if entered[d] & set(FUNNEL_STAGES[k + 1 :])}
        nxt = [d for d in at_k if k + 1 < len(FUNNEL_STAGES) and counted(d, k + 1)]
        regressions = sum(
            1
            for hs in moves.values()
            for h in hs
            if h["from_stage"] == stage
            and str(h["to_stage"]) in FUNNEL_STAGES
            and FUNNEL_STAGES.index(str(h["to_stage"])) < k
        )
        rows.append(
            (
                stage,
                len(at_k),
                sum(d in further for d in at_k),
                rate(len(nxt), len(at_k)) if k < len(FUNNEL_STAGES) - 1 else None,
                rate(len(at_k), len(cohort)),
                sum(stage not in entered[d] and d in further for d in entered),
                regressions,
            )
        )
    return rows


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between closest ranks, as PostgreSQL's percentile_cont."""
    if not values:
        return None
    xs = sorted(values)
    pos = p * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def time_in_stage(
    deals: list[Row], history: list[Row], days: int | None, as_of: datetime
) -> list[tuple[Any, ...]]:
    cohort = cohort_deals(deals, days, as_of)
    moves = history_of(history, {d["id"] for d in cohort}, as_of)
    latest: dict[str, list[float]] = defaultdict(list)
    cumulative: dict[str, list[float]] = defaultdict(list)
    open_days: dict[str, list[float]] = defaultdict(list)
    for hs in moves.values():
        stays: dict[str, list[float]] = defaultdict(list)
        still: dict[str, float] = {}
        for i, h in enumerate(hs):
            stage = str(h["to_stage"])
            if i + 1 < len(hs):
                stays[stage].append(
                    (hs[i + 1]["changed_at"] - h["changed_at"]).total_seconds() / 86400
                )
            else:
                still[stage] = (as_of - h["changed_at"]).total_seconds() / 86400
        for stage, durations in stays.items():
            latest[stage].append(durations[-1])
            cumulative[stage].append(sum(durations))
        for stage, age in still.items():
            open_days[stage].append(age)

    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    return [
        (
            stage,
            len(latest[stage]),
            percentile(latest[stage], 0.5),
            percentile(latest[stage], 0.9),
            mean(latest[stage]),
            percentile(cumulative[stage], 0.5),
            percentile(cumulative[stage], 0.9),
            mean(cumulative[stage]),
            len(open_days[stage]),
            percentile(open_days[stage], 0.5),
        )
        for stage in STAGES[:5]
    ]


def open_at(deal: Row, as_of: datetime) -> bool:
    return bool(
        deal["created_at"] < as_of and (deal["closed_at"] is None or deal["closed_at"] >= as_of)
    )


def pipeline_velocity(deals: list[Row], days: int | None, as_of: datetime) -> tuple[Any, ...]:
    scope = [d for d in live(deals) if d["created_at"] < as_of]
    open_deals = [d for d in scope if open_at(d, as_of)]
    won = [
        d for d in scope if d["stage"] == "closed_won" and in_window(d["closed_at"], days, as_of)
    ]
    lost = [
        d for d in scope if d["stage"] == "closed_lost" and in_window(d["closed_at"], days, as_of)
    ]
    one_currency(open_deals + won, None)
    avg_value = sum(float(d["value"]) for d in won) / len(won) if won else None
    avg_cycle = (
        sum((d["closed_at"] - d["created_at"]).total_seconds() / 86400 for d in won) / len(won)
        if won
        else None
    )
    velocity = None
    if won and avg_cycle and avg_value is not None:
        velocity = len(open_deals) * len(won) / (len(won) + len(lost)) * avg_value / avg_cycle
    return (
        len(open_deals), len(won), len(lost), rate(len(won), len(won) + len(lost)),
        avg_value, avg_cycle, velocity,
    )  # fmt: skip


def weighted_forecast(
    deals: list[Row], history: list[Row], as_of: datetime
) -> list[tuple[Any, ...]]:
    months: dict[Any, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0), Decimal(0)])
    open_deals = [d for d in live(deals) if open_at(d, as_of)]
    one_currency(open_deals, None)
    for d in open_deals:
        probability = d["probability"]
        if d["closed_at"] is not None or d["stage_changed_at"] >= as_of:
            before = [h for h in history if h["deal_id"] == d["id"] and h["changed_at"] < as_of]
            if before:
                probability = max(before, key=lambda h: h["seq"])["probability"]
        month = d["expected_close_date"].replace(day=1) if d["expected_close_date"] else None
        months[month][0] += 1
        months[month][1] += d["value"]
        months[month][2] += d["value"] * probability / 100
    return [
        (m, int(c), v, w.quantize(Decimal("0.01"), ROUND_HALF_UP))
        for m, (c, v, w) in sorted(months.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    ]


WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def show_rate_drivers(
    meetings: list[Row], days: int | None, as_of: datetime
) -> list[tuple[Any, ...]]:
    resolved = [
        m
        for m in live(meetings)
        if in_window(m["scheduled_at"], days, as_of)
        and m["meeting_outcome"] not in ("cancelled", "rescheduled")
        and (m["showed_up"] is not None or m["meeting_outcome"] == "no_show")
    ]
    cells: dict[tuple[int, str, str, int], list[int]] = defaultdict(lambda: [0, 0])
    for m in resolved:
        lead_days = (m["scheduled_at"] - m["booked_at"]).total_seconds() / 86400
        bucket = next(i for i, edge in enumerate([1, 3, 7, 14, float("inf")]) if lead_days < edge)
        labels = ["< 1 day", "1-3 days", "3-7 days", "7-14 days", "14+ days"]
        weekday = m["scheduled_at"].weekday()  # the datasets' clients are in UTC
        keys = [
            (1, "lead_time", labels[bucket], bucket),
            (2, "weekday", WEEKDAYS[weekday], weekday),
            (3, "meeting_type", m["meeting_type"], 0),
            (4, "booking_method", m["booking_method"] or "unknown", 0),
            (5, "converting_channel", str(m["converting_channel"] or "unknown"), 0),
        ]
        for key in keys:
            cells[key][0] += 1
            cells[key][1] += m["showed_up"] is True
    rows = []
    z2 = 1.959963984540054**2
    for (_, dimension, bucket_name, _), (n, held) in sorted(
        cells.items(), key=lambda kv: (kv[0][0], kv[0][3], kv[0][2])
    ):
        p = held / n
        centre = p + z2 / (2 * n)
        half = z2**0.5 * (p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5
        rows.append(
            (dimension, bucket_name, n, held, rate(held, n),
             100 * (centre - half) / (1 + z2 / n), 100 * (centre + half) / (1 + z2 / n))
        )  # fmt: skip
    return rows
