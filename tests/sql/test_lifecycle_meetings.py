"""Meeting lifecycle rules (docs/lifecycle.md), one test per rule, on a real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.fixtures import T0, Make, Row, count, pick, raises_sqlstate

FUTURE = datetime.now(UTC) + timedelta(days=30)


def meeting(db: psycopg.Connection[Any], meeting_id: Any) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM crm.meetings WHERE id = %s", (meeting_id,)).fetchone()
    assert row is not None
    return row


def update(db: psycopg.Connection[Any], meeting_id: Any, **values: Any) -> Row:
    sets = ", ".join(f"{column} = %({column})s" for column in values)
    db.execute(f"UPDATE crm.meetings SET {sets} WHERE id = %(id)s", {**values, "id": meeting_id})
    return meeting(db, meeting_id)


def tx_now(db: psycopg.Connection[Any]) -> datetime:
    row = db.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


# --- booking -------------------------------------------------------------------------------


def test_booked_at_is_the_rows_created_at_unless_given(db: Any, make: Make) -> None:
    lead = make.lead(make.client())
    assert make.meeting(lead)["booked_at"] == tx_now(db)
    assert make.meeting(lead, booked_at=T0)["booked_at"] == T0
    imported = make.meeting(lead, created_at=T0 - timedelta(days=2))
    assert imported["booked_at"] == T0 - timedelta(days=2)


@pytest.mark.parametrize(
    ("meeting_type", "minutes"),
    [("discovery", 30), ("demo", 45), ("follow_up", 30), ("close", 30), ("onboarding", 60),
     ("other", 30)],
)  # fmt: skip
def test_duration_defaults_by_meeting_type(
    db: Any, make: Make, meeting_type: str, minutes: int
) -> None:
    lead = make.lead(make.client())
    row = make.meeting(lead, meeting_type=meeting_type, duration_minutes=None)
    assert row["duration_minutes"] == minutes
    assert (
        make.meeting(lead, meeting_type=meeting_type, duration_minutes=50)["duration_minutes"] == 50
    )


def test_booking_marks_the_lead(db: Any, make: Make) -> None:
    lead = make.lead(make.client(), status="contacted")
    make.meeting(lead, booked_at=T0)
    row = db.execute(
        "SELECT meeting_booked, meeting_booked_at, status FROM crm.leads WHERE id = %s",
        (lead["id"],),
    ).fetchone()
    assert row == (True, T0, "meeting_booked")


def test_a_later_booking_keeps_the_first_booking_time_an_earlier_one_replaces_it(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client())
    make.meeting(lead, booked_at=T0)
    make.meeting(lead, booked_at=T0 + timedelta(days=3))
    first = db.execute("SELECT meeting_booked_at FROM crm.leads WHERE id = %s", (lead["id"],))
    assert first.fetchone() == (T0,)
    make.meeting(lead, booked_at=T0 - timedelta(days=3))  # an imported, older booking
    older = db.execute("SELECT meeting_booked_at FROM crm.leads WHERE id = %s", (lead["id"],))
    assert older.fetchone() == (T0 - timedelta(days=3),)


@pytest.mark.parametrize("status", ["qualified", "customer"])
def test_booking_does_not_move_a_lead_back_from_a_later_status(
    db: Any, make: Make, status: str
) -> None:
    lead = make.lead(make.client(), status=status)
    make.meeting(lead)
    row = db.execute("SELECT status, meeting_booked FROM crm.leads WHERE id = %s", (lead["id"],))
    assert row.fetchone() == (status, True)


def test_attribution_is_derived_from_the_touches_before_booking(db: Any, make: Make) -> None:
    lead = make.lead(make.client())
    make.activity(lead, channel="email", occurred_at=T0 - timedelta(days=5, hours=1))
    last = make.activity(lead, channel="linkedin", occurred_at=T0 - timedelta(days=2))
    make.activity(lead, channel="sms", occurred_at=T0 + timedelta(hours=1))  # after booking
    make.activity(lead, channel="voice", occurred_at=T0 - timedelta(days=1), deleted_at=T0)
    row = make.meeting(lead, booked_at=T0)
    assert row["converting_activity_id"] == last["id"]
    assert row["converting_channel"] == "linkedin"
    assert row["touches_before_booking"] == 2
    assert row["days_to_booking"] == 5  # whole days from the first touch


def test_attribution_ties_in_time_go_to_the_larger_id_and_given_values_are_kept(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client())
    a = make.activity(lead, channel="email", occurred_at=T0 - timedelta(days=1))
    b = make.activity(lead, channel="sms", occurred_at=T0 - timedelta(days=1))
    later = max(a, b, key=lambda r: str(r["id"]))
    assert make.meeting(lead, booked_at=T0)["converting_activity_id"] == later["id"]
    given = make.meeting(
        lead, booked_at=T0, converting_activity_id=a["id"], touches_before_booking=9,
        days_to_booking=4,
    )  # fmt: skip
    assert pick(given, "converting_channel", "touches_before_booking", "days_to_booking") == (
        "email",
        9,
        4,
    )


def test_a_lead_without_touches_books_with_zero_touches(db: Any, make: Make) -> None:
    row = make.meeting(make.lead(make.client()))
    derived = pick(row, "converting_activity_id", "touches_before_booking", "days_to_booking")
    assert derived == (None, 0, None)


def test_attendance_and_outcome_are_unknown_after_booking(db: Any, make: Make) -> None:
    row = make.meeting(make.lead(make.client()))
    assert (row["showed_up"], row["meeting_outcome"], row["outcome_recorded_at"]) == (
        None,
        None,
        None,
    )


# --- lifecycle flags -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "stamp", "value"),
    [("confirmed", "confirmed_at", True), ("reminder_sent", "reminder_sent_at", True),
     ("showed_up", "showed_up_confirmed_at", True), ("showed_up", "showed_up_confirmed_at", False)],
)  # fmt: skip
def test_lifecycle_flags_set_their_timestamp_once(
    db: Any, make: Make, flag: str, stamp: str, value: bool
) -> None:
    lead = make.lead(make.client())
    fresh = make.meeting(lead)
    assert fresh[stamp] is None
    assert update(db, fresh["id"], **{flag: value})[stamp] == tx_now(db)
    # Set once: toggling the flag again keeps the first time.
    imported = make.meeting(lead, **{flag: value, stamp: T0})
    update(db, imported["id"], **{flag: None if flag == "showed_up" else False})
    assert update(db, imported["id"], **{flag: value})[stamp] == T0


# --- outcomes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "showed_up"), [("good", True), ("bad", True), ("no_show", False), ("pending", True)]
)
def test_outcome_sets_attendance(db: Any, make: Make, outcome: str, showed_up: bool) -> None:
    row = update(db, make.meeting(make.lead(make.client()))["id"], meeting_outcome=outcome)
    assert row["showed_up"] is showed_up
    assert row["showed_up_confirmed_at"] == tx_now(db)
    recorded = None if outcome == "pending" else tx_now(db)
    assert row["outcome_recorded_at"] == recorded


def test_a_show_without_an_outcome_defaults_to_pending(db: Any, make: Make) -> None:
    row = update(db, make.meeting(make.lead(make.client()))["id"], showed_up=True)
    assert (row["meeting_outcome"], row["outcome_recorded_at"]) == ("pending", None)


def test_a_recorded_no_show_corrected_to_good_becomes_attended(db: Any, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, m["id"], meeting_outcome="no_show", no_show_reason="sick")
    assert update(db, m["id"], meeting_outcome="good")["showed_up"] is True


def test_outcome_recorded_at_given_by_the_writer_is_kept(db: Any, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    row = update(db, m["id"], meeting_outcome="bad", outcome_recorded_at=T0 + timedelta(days=8))
    assert row["outcome_recorded_at"] == T0 + timedelta(days=8)


def test_cancelled_sets_cancelled_at_and_records_the_reason_in_the_notes(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client())
    m = make.meeting(lead, scheduled_at=FUTURE, meeting_notes="Wants pricing first.")
    row = update(db, m["id"], meeting_outcome="cancelled", cancellation_reason="budget freeze")
    assert row["cancelled_at"] == tx_now(db)
    assert row["meeting_notes"] == "Wants pricing first.\nCancelled: budget freeze"
    bare = update(db, make.meeting(lead)["id"], meeting_outcome="cancelled")
    assert bare["meeting_notes"] == "Cancelled: no reason given"
    assert bare["showed_up"] is None


def reschedules(db: Any, meeting_id: Any) -> list[tuple[Any, ...]]:
    return db.execute(  # type: ignore[no-any-return]
        """
        SELECT previous_scheduled_at, new_scheduled_at FROM crm.meeting_reschedules
        WHERE meeting_id = %s ORDER BY seq
        """,
        (meeting_id,),
    ).fetchall()


def test_a_changed_scheduled_at_is_a_reschedule_kept_in_history(db: Any, make: Make) -> None:
    m = make.meeting(make.lead(make.client()), scheduled_at=T0)
    row = update(db, m["id"], scheduled_at=T0 + timedelta(days=2))
    assert (row["rescheduled_count"], row["meeting_outcome"]) == (1, None)
    assert reschedules(db, m["id"]) == [(T0, T0 + timedelta(days=2))]


def test_outcome_rescheduled_counts_once_and_the_next_time_change_completes_it(
    db: Any, make: Make
) -> None:
    m = make.meeting(make.lead(make.client()), scheduled_at=T0)
    assert update(db, m["id"], meeting_outcome="rescheduled")["rescheduled_count"] == 1
    assert reschedules(db, m["id"]) == [(T0, None)]
    new_time = T0 + timedelta(days=3)
    assert update(db, m["id"], scheduled_at=new_time)["rescheduled_count"] == 1
    assert reschedules(db, m["id"]) == [(T0, new_time)]
    # Moving it again is a second reschedule.
    assert update(db, m["id"], scheduled_at=T0 + timedelta(days=4))["rescheduled_count"] == 2
    assert reschedules(db, m["id"])[-1] == (new_time, T0 + timedelta(days=4))


def test_outcome_rescheduled_with_a_new_time_in_one_update_is_one_reschedule(
    db: Any, make: Make
) -> None:
    m = make.meeting(make.lead(make.client()), scheduled_at=T0)
    row = update(db, m["id"], meeting_outcome="rescheduled", scheduled_at=FUTURE)
    assert row["rescheduled_count"] == 1
    assert reschedules(db, m["id"]) == [(T0, FUTURE)]


def test_a_meeting_imported_as_rescheduled_has_been_rescheduled_at_least_once(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client())
    assert make.meeting(lead, meeting_outcome="rescheduled")["rescheduled_count"] == 1
    assert (
        make.meeting(lead, meeting_outcome="rescheduled", rescheduled_count=3)["rescheduled_count"]
        == 3
    )


# --- deal auto-creation ----------------------------------------------------------------------


def deals_of(db: Any, meeting_id: Any) -> list[Row]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(  # type: ignore[no-any-return]
            "SELECT * FROM crm.deals WHERE meeting_id = %s", (meeting_id,)
        ).fetchall()


def test_a_good_outcome_creates_one_deal_when_the_client_auto_creates(db: Any, make: Make) -> None:
    lead = make.lead(make.client(auto_create_deals=True, default_currency="USD"))
    make.activity(lead, channel="mail", occurred_at=T0 - timedelta(days=9))
    touch = make.activity(lead, channel="voice", occurred_at=T0 - timedelta(days=1))
    m = make.meeting(lead, booked_at=T0)
    row = update(db, m["id"], meeting_outcome="good")
    (deal,) = deals_of(db, m["id"])
    assert (row["deal_id"], row["deal_created"]) == (deal["id"], True)
    assert (deal["stage"], deal["probability"], deal["lead_id"], deal["currency"]) == (
        "qualification", 20, lead["id"], "USD",
    )  # fmt: skip
    assert (deal["converting_activity_id"], deal["converting_channel"]) == (touch["id"], "voice")
    assert deal["first_touch_channel"] == "mail"
    assert deal["name"] == "Analytical Engines (discovery meeting)"
    # good -> bad -> good never makes a second deal (leaving good needs the deal closed).
    db.execute(
        "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = 'bad_fit' WHERE id = %s",
        (deal["id"],),
    )
    update(db, m["id"], meeting_outcome="bad")
    update(db, m["id"], meeting_outcome="good")
    assert len(deals_of(db, m["id"])) == 1


def test_no_deal_without_auto_create_deals(db: Any, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    row = update(db, m["id"], meeting_outcome="good")
    assert (row["deal_id"], row["deal_created"], deals_of(db, m["id"])) == (None, False, [])


def test_an_existing_deal_of_the_meeting_is_linked_not_duplicated(db: Any, make: Make) -> None:
    lead = make.lead(make.client(auto_create_deals=True))
    m = make.meeting(lead)
    manual = make.deal(lead, meeting_id=m["id"])
    row = update(db, m["id"], meeting_outcome="good")
    assert row["deal_id"] == manual["id"]
    assert [d["id"] for d in deals_of(db, m["id"])] == [manual["id"]]


def test_an_imported_good_meeting_gets_its_deal_dated_when_the_outcome_was_recorded(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client(auto_create_deals=True), created_at=T0 - timedelta(days=20))
    recorded = T0 + timedelta(days=7, hours=1)
    m = make.meeting(lead, meeting_outcome="good", outcome_recorded_at=recorded)
    (deal,) = deals_of(db, m["id"])
    assert (deal["created_at"], deal["stage_changed_at"]) == (recorded, recorded)
    assert meeting(db, m["id"])["deal_id"] == deal["id"]


# --- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [{"meeting_outcome": "good"}, {"meeting_outcome": "bad"}, {"meeting_outcome": "no_show"},
     {"meeting_outcome": "pending"}, {"showed_up": True}, {"showed_up": False}],
    ids=lambda v: "-".join(map(str, v.values())),
)  # fmt: skip
def test_attendance_or_outcome_on_a_future_meeting_is_rejected(
    db: Any, make: Make, values: Row
) -> None:
    m = make.meeting(make.lead(make.client()), scheduled_at=FUTURE)
    with raises_sqlstate(db, "23514") as info:
        update(db, m["id"], **values)
    ((field, value),) = values.items()
    assert (
        f"{field} {str(value).lower()} needs a past scheduled_at" in info.value.diag.message_primary
    )
    assert info.value.diag.message_hint and info.value.diag.column_name == field
    assert meeting(db, m["id"]) == m  # unchanged


@pytest.mark.parametrize("outcome", ["cancelled", "rescheduled"])
def test_a_future_meeting_can_be_cancelled_or_rescheduled(
    db: Any, make: Make, outcome: str
) -> None:
    m = make.meeting(make.lead(make.client()), scheduled_at=FUTURE)
    assert update(db, m["id"], meeting_outcome=outcome)["meeting_outcome"] == outcome


def test_a_lead_of_another_client_is_rejected_and_nothing_is_written(db: Any, make: Make) -> None:
    mine, theirs = make.client(), make.lead(make.client())
    before = count(db, "meetings"), count(db, "crm_push_queue")
    with raises_sqlstate(db, "23503") as info:
        make.meeting(theirs, client_id=mine["id"])
    assert info.value.diag.message_primary == (
        f"meeting lead_id {theirs['id']} is not a lead of client {mine['id']}"
    )
    assert info.value.diag.constraint_name == "meetings_client_id_lead_id_fkey"
    assert info.value.diag.message_hint
    assert (count(db, "meetings"), count(db, "crm_push_queue")) == before


def test_a_campaign_of_another_client_is_rejected(db: Any, make: Make) -> None:
    lead = make.lead(make.client())
    other_campaign = make.campaign(make.client())
    before = count(db, "meetings")
    with raises_sqlstate(db, "23503") as info:
        make.meeting(lead, campaign_id=other_campaign["id"])
    assert f"campaign_id {other_campaign['id']}" in info.value.diag.message_primary
    assert info.value.diag.message_hint
    assert count(db, "meetings") == before


def test_a_soft_deleted_lead_cannot_book(db: Any, make: Make) -> None:
    lead = make.lead(make.client(), deleted_at=T0)
    before = count(db, "meetings")
    with raises_sqlstate(db, "23503") as info:
        make.meeting(lead)
    assert count(db, "meetings") == before
    assert "soft-deleted lead" in info.value.diag.message_primary
    assert "deleted_at = NULL" in (info.value.diag.message_hint or "")


@pytest.mark.parametrize(
    ("start", "values", "message"),
    [
        ({}, {"showed_up": True, "meeting_outcome": "no_show"},
         "showed_up true contradicts meeting_outcome no_show"),
        ({}, {"showed_up": False, "meeting_outcome": "good"},
         "showed_up false contradicts meeting_outcome good"),
        ({"meeting_outcome": "no_show"}, {"showed_up": True},
         "showed_up true contradicts meeting_outcome no_show"),
        ({"meeting_outcome": "bad"}, {"showed_up": False},
         "showed_up false contradicts meeting_outcome bad"),
    ],
)  # fmt: skip
def test_contradicting_attendance_and_outcome_are_rejected(
    db: Any, make: Make, start: Row, values: Row, message: str
) -> None:
    m = make.meeting(make.lead(make.client()))
    if start:
        update(db, m["id"], **start)
    before = meeting(db, m["id"])
    with raises_sqlstate(db, "23514") as info:
        update(db, m["id"], **values)
    assert message in info.value.diag.message_primary
    assert info.value.diag.message_hint
    assert meeting(db, m["id"]) == before


@pytest.mark.parametrize(
    "values", [{"rescheduled_count": -1}, {"touches_before_booking": -2}, {"days_to_booking": -3}]
)
def test_negative_counts_are_rejected(db: Any, make: Make, values: Row) -> None:
    lead = make.lead(make.client())
    before = count(db, "meetings")
    with raises_sqlstate(db, "23514") as info:
        make.meeting(lead, **values)
    ((field, value),) = values.items()
    assert f"{field} {value}" in info.value.diag.message_primary
    assert info.value.diag.message_hint
    assert count(db, "meetings") == before


@pytest.mark.parametrize("outcome", [None, "good"])
def test_writing_the_outcome_it_already_has_changes_nothing(
    db: Any, make: Make, outcome: str | None
) -> None:
    # Found by the property test: NULL = 'rescheduled' once counted as a reschedule.
    m = make.meeting(make.lead(make.client()))
    if outcome:
        update(db, m["id"], meeting_outcome=outcome)
    before = meeting(db, m["id"])
    after = update(db, m["id"], meeting_outcome=outcome)
    assert after == before
    assert reschedules(db, m["id"]) == []
