"""The two functions the report's charts need and no other function returned: the show rate
week by week (crm.get_show_rate_by_week) and lost deals by the stage they were lost at and
their reason (crm.get_lost_reasons_by_stage). Each is a finer cut of a function already
checked against the reference, so each is checked to add up to it: on the worked example, and
on random clients loaded through the real tables."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from agency_crm import schema
from tests.analytics.datasets import AS_OF, clients, load
from tests.analytics.test_against_oracles import WINDOWS
from tests.helpers.fixtures import Make, raises_sqlstate

EXAMPLE = "00000000-0000-4000-a000-000000000001"
EXAMPLE_AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def rows(db: psycopg.Connection[Any], query: str, *params: Any) -> list[dict[str, Any]]:
    cur = db.execute(query.encode(), params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def weekly_adds_up(db: psycopg.Connection[Any], client: Any, days: int | None, as_of: Any) -> None:
    """The weeks sum to get_show_rate_analysis's totals, and each week's rate and interval
    are those get_show_rate_drivers gives the same counts."""
    weeks = rows(db, "SELECT * FROM crm.get_show_rate_by_week(%s, %s, %s)", client, days, as_of)
    [total] = rows(db, "SELECT * FROM crm.get_show_rate_analysis(%s, %s, %s)", client, days, as_of)
    assert sum(w["total_meetings"] for w in weeks) == total["total_meetings"]
    assert sum(w["unresolved_meetings"] for w in weeks) == total["unresolved_meetings"]
    resolved = sum(w["meetings"] for w in weeks)
    held = sum(w["held"] for w in weeks)
    expected = None if resolved == 0 else round(Decimal(100 * held) / resolved, 2)
    assert total["show_rate"] == expected
    # the same resolved meetings as the drivers (their weekday buckets partition them)
    drivers = rows(db, "SELECT * FROM crm.get_show_rate_drivers(%s, %s, %s)", client, days, as_of)
    by_weekday = [d for d in drivers if d["dimension"] == "weekday"]
    assert sum(d["meetings"] for d in by_weekday) == resolved
    assert sum(d["held"] for d in by_weekday) == held
    starts = [w["week_start"] for w in weeks]
    assert starts == sorted(set(starts)) and all(s.isoweekday() == 1 for s in starts)
    for w in weeks:
        assert w["total_meetings"] > 0  # a week without a meeting has no row
        assert w["total_meetings"] >= w["unresolved_meetings"] + w["meetings"]
        if w["meetings"] == 0:
            assert (w["show_rate"], w["ci_low"], w["ci_high"]) == (None, None, None)
        else:
            assert w["ci_low"] <= w["show_rate"] <= w["ci_high"]
            assert 0 <= w["ci_low"] and w["ci_high"] <= 100


def lost_adds_up(
    db: psycopg.Connection[Any], client: Any, days: int | None, as_of: Any, currency: Any = None
) -> None:
    """Per reason, the stages sum to get_lost_deal_analysis's count and value, and its
    common_stage_lost is the stage with the most deals (ties: the later stage)."""
    cells = rows(
        db,
        "SELECT stage::text, lost_reason::text, deals, lost_value"
        " FROM crm.get_lost_reasons_by_stage(%s, %s, %s, %s)",
        client,
        days,
        as_of,
        currency,
    )
    analysis = rows(
        db,
        "SELECT lost_reason::text, count, total_lost_value, common_stage_lost::text"
        " FROM crm.get_lost_deal_analysis(%s, %s, %s, %s)",
        client,
        days,
        as_of,
        currency,
    )
    by_reason: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for cell in cells:
        assert cell["deals"] > 0
        by_reason[cell["lost_reason"]].append(cell)
    assert set(by_reason) == {a["lost_reason"] for a in analysis}
    stages = [
        s for (s,) in db.execute("SELECT unnest(enum_range(NULL::crm.deal_stage_type))::text")
    ]
    for a in analysis:
        mine = by_reason[a["lost_reason"]]
        assert sum(c["deals"] for c in mine) == a["count"]
        assert sum(c["lost_value"] for c in mine) == a["total_lost_value"]
        known = [c for c in mine if c["stage"] is not None]
        if not known:
            assert a["common_stage_lost"] is None
        else:
            best = max(known, key=lambda c: (c["deals"], stages.index(c["stage"])))
            assert a["common_stage_lost"] == best["stage"]
    order = [(stages.index(c["stage"]) if c["stage"] else len(stages)) for c in cells]
    assert order == sorted(order)


@pytest.fixture
def example(db: psycopg.Connection[Any]) -> str:
    """The worked example of docs/analytics.md, loaded into the rolled-back transaction."""
    path = schema.default_sql_dir().joinpath("examples").joinpath("analytics_example.sql")
    db.execute(path.read_text(encoding="utf-8").encode())
    return EXAMPLE


def test_the_weeks_of_the_example(db: psycopg.Connection[Any], example: str) -> None:
    weeks = rows(db, "SELECT * FROM crm.get_show_rate_by_week(%s, 90, %s)", example, EXAMPLE_AS_OF)
    assert weeks, "the example has meetings in the window"
    weekly_adds_up(db, example, 90, EXAMPLE_AS_OF)
    weekly_adds_up(db, example, None, EXAMPLE_AS_OF)
    weekly_adds_up(db, example, 7, EXAMPLE_AS_OF)


def test_the_lost_deals_of_the_example(db: psycopg.Connection[Any], example: str) -> None:
    cells = rows(
        db,
        "SELECT stage::text, lost_reason::text, deals, lost_value"
        " FROM crm.get_lost_reasons_by_stage(%s, 90, %s)",
        example,
        EXAMPLE_AS_OF,
    )
    assert cells == [
        {
            "stage": "proposal",
            "lost_reason": "price_too_high",
            "deals": 1,
            "lost_value": Decimal("8000.00"),
        }
    ]
    lost_adds_up(db, example, 90, EXAMPLE_AS_OF)
    lost_adds_up(db, example, None, EXAMPLE_AS_OF, "AUD")


def test_a_week_without_a_resolved_meeting_has_no_rate(db: psycopg.Connection[Any]) -> None:
    make = Make(db)
    client = make.client(timezone="Australia/Sydney")
    lead = make.lead(client)
    # Monday 2026-05-11 08:00 in Sydney is Sunday 22:00 UTC: the week is the client's.
    monday = datetime(2026, 5, 10, 22, 0, tzinfo=UTC)
    make.meeting(lead, scheduled_at=monday, booked_at=monday - timedelta(days=3))
    make.meeting(
        lead,
        scheduled_at=monday + timedelta(days=7),
        booked_at=monday,
        meeting_outcome="cancelled",
    )
    weeks = rows(
        db, "SELECT * FROM crm.get_show_rate_by_week(%s, 90, %s)", client["id"], EXAMPLE_AS_OF
    )
    assert [(str(w["week_start"]), w["total_meetings"], w["meetings"]) for w in weeks] == [
        ("2026-05-11", 1, 0),
        ("2026-05-18", 1, 0),
    ]
    assert weeks[0]["unresolved_meetings"] == 1 and weeks[1]["unresolved_meetings"] == 0
    assert all(w["show_rate"] is None and w["ci_low"] is None for w in weeks)


def test_several_currencies_need_p_currency(db: psycopg.Connection[Any]) -> None:
    make = Make(db)
    client = make.client()
    for currency in ("AUD", "USD"):
        deal = make.deal(
            make.lead(client), currency=currency, created_at=EXAMPLE_AS_OF - timedelta(days=20)
        )
        db.execute(
            "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = 'no_budget',"
            " closed_at = %s WHERE id = %s",
            (EXAMPLE_AS_OF - timedelta(days=5), deal["id"]),
        )
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            "SELECT * FROM crm.get_lost_reasons_by_stage(%s, 90, %s)", (client["id"], EXAMPLE_AS_OF)
        )
    assert "get_lost_reasons_by_stage" in info.value.diag.message_primary
    assert "p_currency" in (info.value.diag.message_hint or "")
    usd = rows(
        db,
        "SELECT * FROM crm.get_lost_reasons_by_stage(%s, 90, %s, 'USD')",
        client["id"],
        EXAMPLE_AS_OF,
    )
    assert [(r["stage"], r["deals"]) for r in usd] == [("qualification", 1)]


EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.property
@EXAMPLES
@given(specs=clients, days=WINDOWS)
def test_the_finer_cuts_add_up_on_random_clients(
    db: psycopg.Connection[Any], specs: list[Any], days: int | None
) -> None:
    with db.transaction(force_rollback=True):
        data = load(db, specs)
        weekly_adds_up(db, data.client_id, days, AS_OF)
        lost_adds_up(db, data.client_id, days, AS_OF)
