"""Time decay never underflows: a touch too old to weigh anything weighs 0, and writing a deal,
a touch or a meeting outcome, or reading a report, never fails because of an old touch.

2^(-age / H) is below the smallest double once a touch is ~1,075 half-lives older than the
deal: about 20 years at the default half-life of 7 days, two years at half a day. PostgreSQL
raises 22003 (value out of range: underflow) rather than return 0, which used to block the
deal insert (the trigger that keeps crm_private.deal_attribution), a late touch, a good meeting
outcome with auto_create_deals, and the reports with p_half_life_days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.analytics.datasets import AS_OF
from tests.helpers.fixtures import Make, Row, raises_sqlstate

D = timedelta(days=1)
YEAR = 365 * D
CREATED = AS_OF - 10 * D
KEPT = (
    "channel, touches, first_touch, last_touch, linear, time_decay, position_based, j_shaped,"
    " inverse_j"
)


def won(make: Make, lead: Row, created: datetime = CREATED, value: int = 1000) -> Row:
    return make.deal(lead, value=value, stage="closed_won", probability=None, created_at=created,
                     closed_at=created + D)  # fmt: skip


def time_decay(db: psycopg.Connection[Any], client: Row, **kw: Any) -> dict[str, Decimal]:
    extra = "".join(f", {name} => %({name})s" for name in kw)
    rows = db.execute(
        "SELECT channel, total_value FROM crm.get_channel_revenue_attribution("
        f"%(c)s, 90, 'time_decay', %(as_of)s{extra})",
        {"c": client["id"], "as_of": AS_OF, **kw},
    ).fetchall()
    return {str(channel): value for channel, value in rows}


def kept_equals_fresh(db: psycopg.Connection[Any], client: Row) -> list[tuple[Any, ...]]:
    """The maintained credits of the client's deals, checked against a fresh computation."""
    kept = db.execute(
        f"SELECT deal_id, {KEPT} FROM crm_private.deal_attribution WHERE client_id = %s"
        " ORDER BY deal_id, channel",
        (client["id"],),
    ).fetchall()
    fresh = db.execute(
        f"SELECT deal_id, {KEPT} FROM crm_private.compute_deal_attribution(%s,"
        " ARRAY(SELECT id FROM crm.deals WHERE client_id = %s)) ORDER BY deal_id, channel",
        (client["id"], client["id"]),
    ).fetchall()
    assert kept == fresh
    return kept


def test_a_deal_with_a_touch_decades_older_is_written_and_the_old_touch_weighs_nothing(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.activity(lead, channel="mail", occurred_at=CREATED - 21 * YEAR)  # ~1,095 half-lives
    make.activity(lead, channel="email", occurred_at=CREATED - 2 * D)
    won(make, lead)  # the insert trigger computes the kept credits: it used to raise 22003
    kept = kept_equals_fresh(db, client)
    assert [(r[1], r[6]) for r in kept] == [("email", 1.0), ("mail", 0.0)]
    # A channel whose only touches weigh nothing gets no row, as any channel credited nothing.
    assert time_decay(db, client) == {"email": Decimal("1000.000000")}
    linear = db.execute(
        "SELECT channel, total_value FROM crm.get_channel_revenue_attribution(%s, 90, 'linear',"
        " %s)",
        (client["id"], AS_OF),
    ).fetchall()
    assert linear == [("email", Decimal("500.000000")), ("mail", Decimal("500.000000"))]


def test_when_every_touch_is_ancient_the_weights_are_relative_to_the_most_recent_one(
    db: psycopg.Connection[Any], make: Make
) -> None:
    # Two years at a half-life of half a day is 1,460 half-lives for both touches: each weight
    # alone is 0 as a double, yet one day apart they weigh 1 : 2^-2 (80 % / 20 %).
    client = make.client()
    lead = make.lead(client)
    make.activity(lead, channel="sms", occurred_at=CREATED - 2 * YEAR - D)
    make.activity(lead, channel="voice", occurred_at=CREATED - 2 * YEAR)
    won(make, lead)
    assert time_decay(db, client, p_half_life_days=0.5) == {
        "voice": Decimal("800.000000"), "sms": Decimal("200.000000"),
    }  # fmt: skip
    # A single touch 21 years old gets the whole deal, at the kept default half-life too.
    other = make.lead(client)
    make.activity(other, channel="linkedin", occurred_at=CREATED - 21 * YEAR)
    won(make, other, value=500)
    assert time_decay(db, client)["linkedin"] == Decimal("500.000000")
    assert time_decay(db, client, p_half_life_days=0.5) == {
        "voice": Decimal("800.000000"), "linkedin": Decimal("500.000000"),
        "sms": Decimal("200.000000"),
    }  # fmt: skip
    kept_equals_fresh(db, client)


def test_a_late_touch_decades_before_the_deal_is_accepted(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.activity(lead, channel="email", occurred_at=CREATED - D)
    won(make, lead)
    make.activity(lead, channel="mail", occurred_at=CREATED - 30 * YEAR)  # used to raise 22003
    assert kept_equals_fresh(db, client)[0][1:3] == ("email", 1)
    assert time_decay(db, client) == {"email": Decimal("1000.000000")}


def test_a_good_outcome_creates_the_deal_of_a_lead_first_touched_decades_ago(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client(auto_create_deals=True)
    lead = make.lead(client)
    make.activity(lead, channel="voice", occurred_at=datetime(2001, 3, 1, tzinfo=UTC))
    now = db.execute("SELECT now()").fetchone()
    assert now is not None
    meeting = make.meeting(lead, booked_at=now[0] - 5 * D, scheduled_at=now[0] - 2 * D)
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s", (meeting["id"],))
    deal = db.execute("SELECT deal_id FROM crm.meetings WHERE id = %s", (meeting["id"],)).fetchone()
    assert deal is not None and deal[0] is not None
    assert [r[1:3] for r in kept_equals_fresh(db, client)] == [("voice", 1)]


def test_every_report_with_a_half_life_reads_ancient_touches(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    lead = make.lead(client)
    # 3 years apart at half a day: 2,190 half-lives, so mail weighs 0 next to email
    make.activity(lead, channel="mail", occurred_at=CREATED - 5 * YEAR)
    make.activity(lead, channel="email", occurred_at=CREATED - 2 * YEAR)
    won(make, lead)
    assert time_decay(db, client, p_half_life_days=0.5) == {"email": Decimal("1000.000000")}
    compared = db.execute(
        "SELECT channel, time_decay, linear FROM crm.get_attribution_comparison(%s, 90, %s,"
        " p_half_life_days => 0.5)",
        (client["id"], AS_OF),
    ).fetchall()
    assert compared == [
        ("email", Decimal("1000.000000"), Decimal("500.000000")),
        ("mail", Decimal(0), Decimal("500.000000")),
    ]


@pytest.mark.parametrize(
    ("half_life", "expected"),
    [
        # the smallest positive double: every touch older than the latest weighs 0, and touches
        # tied at the latest time share equally
        (5e-324, {"email": "500.000000", "linkedin": "500.000000"}),
        (2.2250738585072014e-308, {"email": "500.000000", "linkedin": "500.000000"}),
        # the largest: no touch is older than a fraction of a half-life, so the split is linear
        (1e308, {"email": "500.000000", "linkedin": "250.000000", "sms": "250.000000"}),
        (1.7976931348623157e308, {"email": "500.000000", "linkedin": "250.000000",
                                  "sms": "250.000000"}),
    ],
)  # fmt: skip
def test_extreme_half_lives_work(
    db: psycopg.Connection[Any], make: Make, half_life: float, expected: dict[str, str]
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.activity(lead, channel="sms", occurred_at=CREATED - 120 * YEAR)
    make.activity(lead, channel="email", occurred_at=CREATED - 4 * D)
    make.activity(lead, channel="email", occurred_at=CREATED - timedelta(microseconds=1))
    make.activity(lead, channel="linkedin", occurred_at=CREATED - timedelta(microseconds=1))
    won(make, lead)
    assert time_decay(db, client, p_half_life_days=half_life) == {
        c: Decimal(v) for c, v in expected.items()
    }
    compared = db.execute(
        "SELECT channel, time_decay FROM crm.get_attribution_comparison(%s, 90, %s,"
        " p_half_life_days => %s)",
        (client["id"], AS_OF, half_life),
    ).fetchall()
    assert {str(c): v for c, v in compared if v} == {c: Decimal(v) for c, v in expected.items()}


@pytest.mark.parametrize(
    "function",
    [
        "get_channel_revenue_attribution(%s, 90, 'time_decay', %s, p_half_life_days => {})",
        "get_attribution_comparison(%s, 90, %s, p_half_life_days => {})",
    ],
)
@pytest.mark.parametrize("value", ["'NaN'", "'Infinity'", "'-Infinity'", "0", "'-0'", "-7", "NULL"])
def test_a_half_life_that_is_not_a_positive_finite_number_is_refused(
    db: psycopg.Connection[Any], make: Make, function: str, value: str
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.activity(lead, channel="email", occurred_at=CREATED - D)
    won(make, lead)
    name = function.split("(")[0]
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            f"SELECT * FROM crm.{function.format(value + '::double precision')}".encode(),
            (client["id"], AS_OF),
        )
    message = info.value.diag.message_primary or ""
    assert message.startswith(f"{name}: p_half_life_days "), message
    assert "positive" in message
    assert "p_half_life_days" in (info.value.diag.message_hint or "")
