"""Later UPDATEs keep the rules the INSERT path enforces (docs/lifecycle.md, "Corrections"):
keys never change, a meeting that took place stays in the past, outcome corrections keep
attendance and the meeting's deal consistent, and a deal's times keep agreeing with its
stage history."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers.fixtures import T0, Make, raises_sqlstate

Conn = psycopg.Connection[Any]
FUTURE = T0 + timedelta(days=3650)


def update(conn: Conn, table: str, row_id: Any, **values: Any) -> dict[str, Any]:
    query = sql.SQL("UPDATE crm.{} SET {} WHERE id = %(id)s RETURNING *").format(
        sql.Identifier(table),
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in values
        ),
    )
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    row = cur.execute(query, {**values, "id": row_id}).fetchone()
    assert row is not None
    return row


def refused(conn: Conn, sqlstate: str, table: str, row_id: Any, **values: Any) -> psycopg.Error:
    with raises_sqlstate(conn, sqlstate) as info:
        update(conn, table, row_id, **values)
    diag = info.value.diag
    assert diag.message_hint, "every refusal gives a hint"
    return info.value


# --- keys -------------------------------------------------------------------------------------


def key_tables(conn: Conn) -> list[tuple[str, list[str]]]:
    rows = conn.execute(
        """
        SELECT c.relname::text, array_agg(a.attname::text ORDER BY a.attname)
        FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
          AND a.attname IN ('id', 'client_id') AND NOT a.attisdropped
        GROUP BY c.relname ORDER BY c.relname
        """
    ).fetchall()
    return [(name, list(cols)) for name, cols in rows]


def test_every_table_with_keys_refuses_changing_them(db: Conn) -> None:
    """Catalog-driven: a table added later is covered (or this test names it)."""
    tables = key_tables(db)
    assert len(tables) >= 10
    for table, _ in tables:
        trigger = db.execute(
            """
            SELECT tgenabled FROM pg_trigger
            WHERE tgrelid = ('crm.' || quote_ident(%s))::regclass
              AND tgname = '_010_refuse_key_change'
            """,
            (table,),
        ).fetchone()
        assert trigger == ("O",), f"crm.{table} has no _010_refuse_key_change trigger"


@pytest.mark.parametrize("table", ["leads", "activities", "meetings", "deals", "campaigns"])
def test_moving_a_row_to_another_client_is_refused(db: Conn, make: Make, table: str) -> None:
    client = make.client()
    lead = make.lead(client)
    rows = {
        "leads": lambda: lead,
        "activities": lambda: make.activity(lead),
        "meetings": lambda: make.meeting(lead),
        "deals": lambda: make.deal(lead),
        "campaigns": lambda: make.campaign(client),
    }
    row = rows[table]()
    other = make.client()
    error = refused(db, "23514", table, row["id"], client_id=other["id"])
    assert error.diag.column_name == "client_id"
    assert str(other["id"]) in str(error) and str(client["id"]) in str(error)


def test_the_issue_example_meeting_moved_with_its_lead_is_refused(db: Conn, make: Make) -> None:
    lead = make.lead(make.client())
    m = make.meeting(lead)
    other_lead = make.lead(make.client())
    with raises_sqlstate(db, "23514"):
        db.execute(
            "UPDATE crm.meetings SET client_id = %s, lead_id = %s WHERE id = %s",
            (other_lead["client_id"], other_lead["id"], m["id"]),
        )


def test_changing_an_id_is_refused(db: Conn, make: Make) -> None:
    lead = make.lead(make.client())
    with raises_sqlstate(db, "23514") as info:
        db.execute(
            "UPDATE crm.leads SET id = '00000000-0000-4000-8000-00000000abcd' WHERE id = %s",
            (lead["id"],),
        )
    assert info.value.diag.column_name == "id"
    assert info.value.diag.message_hint


def test_naming_the_keys_unchanged_is_fine(db: Conn, make: Make) -> None:
    """ORMs write every column back: the same keys are not a change."""
    lead = make.lead(make.client())
    row = update(
        db, "leads", lead["id"], id=lead["id"], client_id=lead["client_id"], first_name="A"
    )
    assert row["first_name"] == "A"


# --- meetings --------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["good", "bad", "no_show", "pending"])
def test_a_meeting_that_took_place_cannot_move_to_the_future(
    db: Conn, make: Make, outcome: str
) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], meeting_outcome=outcome)
    error = refused(db, "23514", "meetings", m["id"], scheduled_at=FUTURE)
    assert error.diag.column_name == "scheduled_at"


def test_a_took_place_meeting_moves_to_the_future_as_a_reschedule(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], meeting_outcome="no_show")
    row = update(db, "meetings", m["id"], meeting_outcome="rescheduled", scheduled_at=FUTURE)
    assert (row["scheduled_at"], row["rescheduled_count"]) == (FUTURE, 1)


def test_good_to_no_show_is_refused_while_the_auto_created_deal_is_open(
    db: Conn, make: Make
) -> None:
    m = make.meeting(make.lead(make.client(auto_create_deals=True)))
    update(db, "meetings", m["id"], meeting_outcome="good")
    (deal_id,) = db.execute("SELECT deal_id FROM crm.meetings WHERE id = %s", (m["id"],)).fetchone()
    assert deal_id is not None
    error = refused(db, "55000", "meetings", m["id"], meeting_outcome="no_show")
    assert str(deal_id) in str(error)
    # Once the deal is closed (or soft-deleted) the correction goes through.
    db.execute(
        "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = 'other' WHERE id = %s",
        (deal_id,),
    )
    row = update(db, "meetings", m["id"], meeting_outcome="no_show")
    assert (row["showed_up"], row["deal_id"]) == (False, deal_id)


def test_good_to_cancelled_clears_attendance(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], meeting_outcome="good")
    row = update(db, "meetings", m["id"], meeting_outcome="cancelled")
    assert (row["showed_up"], row["cancelled_at"] is not None) == (None, True)


def test_cancelled_with_attendance_is_refused(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    refused(db, "23514", "meetings", m["id"], meeting_outcome="cancelled", showed_up=True)
    update(db, "meetings", m["id"], meeting_outcome="cancelled")
    refused(db, "23514", "meetings", m["id"], showed_up=False)


def test_un_cancelling_clears_cancelled_at(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], meeting_outcome="cancelled")
    row = update(db, "meetings", m["id"], meeting_outcome="bad")
    assert (row["cancelled_at"], row["showed_up"]) == (None, True)


def test_clearing_an_outcome_clears_what_it_recorded(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], meeting_outcome="bad")
    row = update(db, "meetings", m["id"], meeting_outcome=None)
    assert (row["showed_up"], row["outcome_recorded_at"]) == (None, None)


def test_an_outcome_recorded_before_the_meeting_is_refused(db: Conn, make: Make) -> None:
    m = make.meeting(make.lead(make.client()))  # scheduled T0 + 7 days
    error = refused(db, "23514", "meetings", m["id"], meeting_outcome="bad", outcome_recorded_at=T0)
    assert error.diag.column_name == "outcome_recorded_at"
    update(db, "meetings", m["id"], meeting_outcome="bad")
    refused(db, "23514", "meetings", m["id"], outcome_recorded_at=T0)


def test_a_good_outcome_dated_before_the_lead_existed_is_refused(db: Conn, make: Make) -> None:
    lead = make.lead(make.client(auto_create_deals=True), created_at=T0 + timedelta(days=8))
    m = make.meeting(lead, scheduled_at=T0 + timedelta(days=1))
    error = refused(
        db,
        "23514",
        "meetings",
        m["id"],
        meeting_outcome="good",
        outcome_recorded_at=T0 + timedelta(days=2),
    )
    assert error.diag.column_name == "outcome_recorded_at"
    assert db.execute(
        "SELECT count(*) FROM crm.deals WHERE lead_id = %s", (lead["id"],)
    ).fetchone() == (0,)


# --- deals -----------------------------------------------------------------------------------


def test_stage_changed_at_cannot_move_without_a_stage_change(db: Conn, make: Make) -> None:
    d = make.deal(make.lead(make.client()), created_at=T0)
    error = refused(db, "23514", "deals", d["id"], stage_changed_at=T0 + timedelta(days=1))
    assert error.diag.column_name == "stage_changed_at"


def test_closed_at_cannot_move_without_a_stage_change(db: Conn, make: Make) -> None:
    d = make.deal(make.lead(make.client()), created_at=T0)
    update(db, "deals", d["id"], stage="closed_won", closed_at=T0 + timedelta(days=2))
    error = refused(db, "23514", "deals", d["id"], closed_at=T0 + timedelta(days=9))
    assert error.diag.column_name == "closed_at"
    history = db.execute(
        "SELECT max(changed_at) FROM crm.deal_stage_history WHERE deal_id = %s", (d["id"],)
    ).fetchone()
    assert history == (T0 + timedelta(days=2),)


def test_created_at_may_move_earlier_but_not_after_its_history(db: Conn, make: Make) -> None:
    d = make.deal(make.lead(make.client()), created_at=T0)
    update(db, "deals", d["id"], stage="proposal", stage_changed_at=T0 + timedelta(days=2))
    assert update(db, "deals", d["id"], created_at=T0 - timedelta(days=1))["created_at"] == (
        T0 - timedelta(days=1)
    )
    error = refused(db, "23514", "deals", d["id"], created_at=T0 + timedelta(days=1))
    assert error.diag.column_name == "created_at"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e12", "-0.01"])
def test_a_deal_value_that_is_not_a_number_is_refused(db: Conn, make: Make, value: str) -> None:
    lead = make.lead(make.client())
    with raises_sqlstate(db, "23514") as info:
        make.deal(lead, value=value)
    assert info.value.diag.column_name == "value"
    d = make.deal(lead)
    refused(db, "23514", "deals", d["id"], value=value)


# --- times out of range ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("scheduled_at", "-infinity"),
        ("scheduled_at", "infinity"),
        ("booked_at", "1850-01-01"),
        ("created_at", "9999-01-01"),
        ("cancelled_at", "infinity"),
    ],
)
def test_a_meeting_time_out_of_range_is_refused_naming_it(
    db: Conn, make: Make, column: str, value: str
) -> None:
    lead = make.lead(make.client())
    with raises_sqlstate(db, "23514") as info:
        make.meeting(lead, **{column: value})
    assert info.value.diag.column_name == column
    assert info.value.diag.message_hint
    m = make.meeting(lead)
    error = refused(db, "23514", "meetings", m["id"], **{column: value})
    assert error.diag.column_name == column


@pytest.mark.parametrize(
    ("column", "value"),
    [("created_at", "-infinity"), ("closed_at", "9999-01-01"), ("expected_close_date", "infinity")],
)
def test_a_deal_time_out_of_range_is_refused_naming_it(
    db: Conn, make: Make, column: str, value: str
) -> None:
    lead = make.lead(make.client())
    extra = {"stage": "closed_won"} if column == "closed_at" else {}
    with raises_sqlstate(db, "23514") as info:
        make.deal(lead, **{column: value}, **extra)
    assert info.value.diag.column_name == column
    assert info.value.diag.message_hint


def test_a_twenty_year_old_meeting_and_deal_still_work(db: Conn, make: Make) -> None:
    old = T0 - timedelta(days=365 * 20)
    lead = make.lead(make.client(auto_create_deals=True), created_at=old - timedelta(days=9))
    make.activity(lead, occurred_at=old - timedelta(days=3))
    m = make.meeting(lead, scheduled_at=old, booked_at=old - timedelta(days=2))
    update(db, "meetings", m["id"], meeting_outcome="good", outcome_recorded_at=old)
    (deal,) = db.execute("SELECT deal_id FROM crm.meetings WHERE id = %s", (m["id"],)).fetchone()
    assert deal is not None


# --- every CHECK of meetings and deals speaks first -------------------------------------------


def friendly_cases() -> list[tuple[str, dict[str, Any], str]]:
    from tests.sql.test_constraints import CHECKS

    # An amount with more than two decimals is rounded to cents by the trigger, not refused
    # (test_an_amount_is_kept_in_cents); the constraint still refuses it with triggers off.
    return [
        case
        for case in CHECKS
        if case[0] in ("meetings", "deals") and case[1] != {"value": Decimal("1.005")}
    ]


@pytest.mark.parametrize(
    ("table", "overrides", "constraint"),
    friendly_cases(),
    ids=[f"{c}-{'-'.join(map(str, o.values()))}" for _, o, c in friendly_cases()],
)
def test_a_write_a_check_of_meetings_or_deals_refuses_is_refused_first_with_a_hint(
    db: Conn, make: Make, table: str, overrides: dict[str, Any], constraint: str
) -> None:
    """With the triggers on (as app code writes), the refusal is the trigger's: SQLSTATE of
    class 23, a message naming a field of the bad row, a hint, never PostgreSQL's bare
    "violates check constraint" with its "Failing row contains"."""
    from tests.helpers.fixtures import insert
    from tests.sql.test_constraints import build_graph, valid_row

    values = valid_row(table, build_graph(make)) | overrides
    with pytest.raises(psycopg.Error) as info:
        with db.transaction():
            insert(db, table, values)
    error = info.value
    assert (error.sqlstate or "").startswith("23"), (error.sqlstate, str(error))
    assert "violates check constraint" not in (error.diag.message_primary or "")
    assert error.diag.message_hint, str(error)
    assert error.diag.column_name in overrides or any(c in str(error) for c in overrides)


def test_an_amount_is_kept_in_cents(db: Conn, make: Make) -> None:
    deal = make.deal(make.lead(make.client()), value=Decimal("1.005"))
    assert deal["value"] == Decimal("1.01")
    assert update(db, "deals", deal["id"], value=Decimal("9999999999.994"))["value"] == Decimal(
        "9999999999.99"
    )


def test_a_recorded_no_show_without_an_outcome_cannot_move_to_the_future(
    db: Conn, make: Make
) -> None:
    """Attendance alone (showed_up false, no outcome yet) says the meeting took place."""
    m = make.meeting(make.lead(make.client()))
    update(db, "meetings", m["id"], showed_up=False)
    error = refused(db, "23514", "meetings", m["id"], scheduled_at=FUTURE)
    assert error.diag.column_name == "scheduled_at"


def test_closing_lost_without_a_reason_lists_the_reasons_from_the_rule(
    db: Conn, make: Make
) -> None:
    d = make.deal(make.lead(make.client()))
    error = refused(db, "23514", "deals", d["id"], stage="closed_lost")
    assert error.diag.column_name == "lost_reason"
    labels = db.execute("SELECT enum_range(NULL::crm.deal_lost_reason_type)::text[]").fetchone()
    assert labels is not None
    hint = error.diag.message_hint or ""
    assert all(label in hint for label in labels[0]), hint
