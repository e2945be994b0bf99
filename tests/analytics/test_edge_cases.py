"""Hand-built cases for the analytics functions: empty scopes, boundaries, ties, currencies,
argument errors, and published worked examples."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.analytics.datasets import AS_OF
from tests.helpers.fixtures import Make, Row, raises_sqlstate

D = timedelta(days=1)
FUNCTIONS = [
    "get_show_rate_analysis(%s, %s, %s)",
    "get_funnel_analytics(%s, %s, %s)",
    "get_channel_revenue_attribution(%s, %s, 'linear', %s)",
    "get_lost_deal_analysis(%s, %s, %s)",
]


def call(db: psycopg.Connection[Any], fn: str, *args: Any) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT * FROM crm.{fn}".encode(), args).fetchall()  # type: ignore[no-any-return]


def show(db: Any, client: Row, days: int | None = 90) -> tuple[Any, ...]:
    return call(db, "get_show_rate_analysis(%s, %s, %s)", client["id"], days, AS_OF)[0]


def meeting(make: Make, lead: Row, when: Any, **kw: Any) -> Row:
    return make.meeting(lead, scheduled_at=when, booked_at=when - 3 * D, **kw)


@pytest.mark.parametrize("fn", FUNCTIONS)
@pytest.mark.parametrize("days", [0, -5])
def test_p_days_must_be_positive(db: Any, fn: str, days: int) -> None:
    with raises_sqlstate(db, "22023") as info:
        call(db, fn, uuid.uuid4(), days, AS_OF)
    assert f"p_days {days} must be a positive number of days" in info.value.diag.message_primary
    assert fn.split("(")[0] in info.value.diag.message_primary
    assert info.value.diag.message_hint


def test_an_unknown_client_gives_zeros_and_no_rows(db: Any) -> None:
    nobody = uuid.uuid4()
    assert call(db, FUNCTIONS[0], nobody, 90, AS_OF) == [(0, None, None, None, None, None, 0)]
    assert call(db, FUNCTIONS[1], nobody, 90, AS_OF) == [
        (0, 0, 0, 0, 0, Decimal(0), Decimal(0), None, None, None, None)
    ]
    assert call(db, FUNCTIONS[2], nobody, 90, AS_OF) == []
    assert call(db, FUNCTIONS[3], nobody, 90, AS_OF) == []


def test_show_rate_edges(db: Any, make: Make) -> None:
    client = make.client()
    lead = make.lead(client)
    assert show(db, client) == (0, None, None, None, None, None, 0)  # no meetings: NULL rates
    for _ in range(2):
        meeting(make, lead, AS_OF - 5 * D, meeting_outcome="cancelled")
    assert show(db, client) == (2, None, None, Decimal("0.00"), None, None, 0)  # all cancelled
    meeting(make, lead, AS_OF + D, meeting_outcome="good")  # after the window: not counted
    meeting(make, lead, AS_OF - 100 * D, meeting_outcome="good")  # before it
    assert show(db, client)[0] == 2
    # Rescheduled, then held: a reschedule, and a show.
    moved = meeting(make, lead, AS_OF - 20 * D)
    db.execute(
        "UPDATE crm.meetings SET scheduled_at = %s WHERE id = %s", (AS_OF - 10 * D, moved["id"])
    )
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s", (moved["id"],))
    # Still waiting for a new time: out of the resolved denominator.
    meeting(make, lead, AS_OF - 4 * D, meeting_outcome="rescheduled")
    # Past with no attendance known: unresolved, never assumed attended.
    meeting(make, lead, AS_OF - 3 * D)
    meeting(make, lead, AS_OF - 2 * D, meeting_outcome="no_show")
    total, rate, no_rate, resched, *_, unresolved = show(db, client)
    assert (total, rate, no_rate, resched, unresolved) == (
        6, Decimal("50.00"), Decimal("50.00"), Decimal("33.33"), 1,
    )  # fmt: skip
    assert show(db, client, None)[0] == 7  # all time includes the one 100 days back


def test_only_future_meetings_count_nothing(db: Any, make: Make) -> None:
    client = make.client()
    lead = make.lead(client)
    meeting(make, lead, AS_OF + D)
    meeting(make, lead, AS_OF + 2 * D, meeting_outcome="cancelled")
    assert show(db, client) == (0, None, None, None, None, None, 0)
    assert show(db, client, None) == (0, None, None, None, None, None, 0)


def test_confirmed_and_reminded_show_rates_count_only_before_the_meeting(
    db: Any, make: Make
) -> None:
    client = make.client()
    lead = make.lead(client)
    when = AS_OF - 5 * D
    meeting(make, lead, when, confirmed=True, confirmed_at=when - D, meeting_outcome="good")
    meeting(make, lead, when, confirmed=True, confirmed_at=when - D, meeting_outcome="no_show")
    meeting(make, lead, when, confirmed=True, confirmed_at=when + D, meeting_outcome="good")
    meeting(make, lead, when, reminder_sent=True, reminder_sent_at=when - D,
            meeting_outcome="good")  # fmt: skip
    row = show(db, client)
    assert (row[4], row[5]) == (Decimal("50.00"), Decimal("100.00"))


def test_lost_deal_without_history_and_ties_in_the_stage_lost(db: Any, make: Make) -> None:
    client = make.client()
    lead = make.lead(client)

    def lose(path: list[str], reason: str = "no_budget", value: int = 100) -> None:
        deal = make.deal(lead, probability=None, value=value, created_at=AS_OF - 30 * D)
        for i, stage in enumerate(path, 1):
            db.execute(
                "UPDATE crm.deals SET stage = %s, stage_changed_at = %s WHERE id = %s",
                (stage, AS_OF - 30 * D + i * D, deal["id"]),
            )
        db.execute(
            "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = %s, closed_at = %s"
            " WHERE id = %s",
            (reason, AS_OF - 10 * D, deal["id"]),
        )

    lose(["proposal"])
    lose(["proposal", "negotiation"])  # one each: the tie goes to the later stage
    lose([], reason="bad_fit")  # lost straight from qualification
    make.deal(lead, stage="closed_lost", lost_reason="went_silent", probability=None, value=100,
              created_at=AS_OF - 9 * D, closed_at=AS_OF - 8 * D)  # fmt: skip
    rows = call(db, FUNCTIONS[3], client["id"], 90, AS_OF)
    assert [(str(r[0]), r[1], r[4]) for r in rows] == [
        ("no_budget", 2, "negotiation"),
        # count and value tie: lost_reason in its type's order (went_silent before bad_fit)
        ("went_silent", 1, None),  # inserted already lost: no history to say where
        ("bad_fit", 1, "qualification"),
    ]
    assert rows[0][2:4] == (Decimal("200.00"), Decimal("20.0"))


def test_money_in_several_currencies_needs_p_currency(db: Any, make: Make) -> None:
    client = make.client()
    lead = make.lead(client, created_at=AS_OF - 20 * D)
    for currency, value in [("AUD", 100), ("USD", 70)]:
        make.deal(lead, currency=currency, value=value, stage="closed_won", probability=None,
                  created_at=AS_OF - 10 * D, closed_at=AS_OF - 5 * D)  # fmt: skip
    for fn in FUNCTIONS[1:3]:
        with raises_sqlstate(db, "22023") as info:
            call(db, fn, client["id"], 90, AS_OF)
        assert "several currencies (AUD, USD)" in info.value.diag.message_primary
        assert "p_currency" in (info.value.diag.message_hint or "")
    funnel = db.execute(
        "SELECT total_won_value FROM crm.get_funnel_analytics(%s, 90, %s, p_currency => 'USD')",
        (client["id"], AS_OF),
    ).fetchone()
    assert funnel == (Decimal("70.00"),)
    attributed = db.execute(
        "SELECT channel, total_value FROM crm.get_channel_revenue_attribution("
        "%s, 90, 'linear', %s, p_currency => 'AUD')",
        (client["id"], AS_OF),
    ).fetchall()
    assert attributed == [("unattributed", Decimal("100.000000"))]


def test_unknown_model_lists_the_valid_ones(db: Any) -> None:
    with raises_sqlstate(db, "22023") as info:
        call(db, "get_channel_revenue_attribution(%s, 90, 'w_shaped', %s)", uuid.uuid4(), AS_OF)
    assert "p_model 'w_shaped' is not an attribution model" in info.value.diag.message_primary
    assert "position_based, j_shaped, inverse_j" in (info.value.diag.message_hint or "")


def test_time_decay_matches_the_published_worked_example(db: Any, make: Make) -> None:
    # Touches 9, 6, 0 and 0 days before the conversion, half-life 7 days: 13.8 %, 18.6 %,
    # 33.8 % and 33.8 % of the credit to one decimal (Adobe Analytics' documented example).
    client = make.client()
    lead = make.lead(client)
    created = AS_OF - 20 * D
    for days_before, channel in [(9, "mail"), (6, "sms"), (0, "email"), (0, "linkedin")]:
        make.activity(lead, channel=channel, occurred_at=created - days_before * D)
    make.deal(lead, value=1000, stage="closed_won", probability=None, created_at=created,
              closed_at=created + D)  # fmt: skip
    rows = call(db, "get_channel_revenue_attribution(%s, 90, 'time_decay', %s)", client["id"],
                AS_OF)  # fmt: skip
    shares = {r[0]: r[4] for r in rows}
    assert {c: round(v, 1) for c, v in shares.items()} == {
        "email": Decimal("33.8"), "linkedin": Decimal("33.8"), "sms": Decimal("18.6"),
        "mail": Decimal("13.8"),
    }  # fmt: skip
    # and to two: 1, 1, 2^(-6/7) and 2^(-9/7), normalised
    assert shares == {
        "email": Decimal("33.76"), "linkedin": Decimal("33.76"), "sms": Decimal("18.64"),
        "mail": Decimal("13.85"),
    }  # fmt: skip


def test_position_models_split_two_touches_first_to_last_in_proportion(db: Any, make: Make) -> None:
    client = make.client()
    lead = make.lead(client)
    created = AS_OF - 20 * D
    make.activity(lead, channel="email", occurred_at=created - 2 * D)
    make.activity(lead, channel="sms", occurred_at=created - D)
    make.deal(lead, value=100, stage="closed_won", probability=None, created_at=created,
              closed_at=created + D)  # fmt: skip
    expected = {"position_based": (50, 50), "j_shaped": (25, 75), "inverse_j": (75, 25)}
    for model, (first, last) in expected.items():
        fn = "get_channel_revenue_attribution(%s, 90, %s, %s)"
        rows = {r[0]: r[2] for r in call(db, fn, client["id"], model, AS_OF)}
        assert rows == {"email": Decimal(first).quantize(Decimal("0.000001")),
                        "sms": Decimal(last).quantize(Decimal("0.000001"))}, model  # fmt: skip
