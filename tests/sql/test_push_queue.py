"""Every change a client's CRM must learn of enqueues one push in the same transaction;
repeated changes collapse; clients without an active CRM config get nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers.fixtures import T0, Make, Row


def queue(db: psycopg.Connection[Any], client: Row) -> list[tuple[Any, ...]]:
    return db.execute(  # type: ignore[no-any-return]
        """
        SELECT operation, lead_id, meeting_id, deal_id, status FROM crm.crm_push_queue
        WHERE client_id = %s ORDER BY id
        """,
        (client["id"],),
    ).fetchall()


@pytest.fixture
def client(make: Make) -> Row:
    c = make.client()
    make.crm_config(c)
    return c


def test_booking_enqueues_meeting_booked(db: Any, make: Make, client: Row) -> None:
    lead = make.lead(client)
    m = make.meeting(lead)
    assert queue(db, client) == [("meeting_booked", lead["id"], m["id"], None, "pending")]


def test_an_outcome_enqueues_meeting_outcome_and_repeats_collapse(
    db: Any, make: Make, client: Row
) -> None:
    lead = make.lead(client)
    m = make.meeting(lead)
    db.execute("UPDATE crm.meetings SET showed_up = true WHERE id = %s", (m["id"],))  # pending
    assert [op for op, *_ in queue(db, client)] == ["meeting_booked"]
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'bad' WHERE id = %s", (m["id"],))
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s", (m["id"],))
    assert queue(db, client) == [
        ("meeting_booked", lead["id"], m["id"], None, "pending"),
        ("meeting_outcome", lead["id"], m["id"], None, "pending"),
    ]


def test_deal_created_then_updates_collapse_until_it_is_sent(
    db: Any, make: Make, client: Row
) -> None:
    lead = make.lead(client)
    d = make.deal(lead)
    db.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (d["id"],))
    assert queue(db, client) == [("deal_created", lead["id"], None, d["id"], "pending")]
    db.execute(
        "UPDATE crm.crm_push_queue SET status = 'done', finished_at = now() WHERE client_id = %s",
        (client["id"],),
    )
    db.execute("UPDATE crm.deals SET value = 2500 WHERE id = %s", (d["id"],))
    db.execute("UPDATE crm.deals SET stage = 'negotiation' WHERE id = %s", (d["id"],))
    db.execute("UPDATE crm.deals SET name = 'Renamed' WHERE id = %s", (d["id"],))  # not pushed
    assert queue(db, client)[1:] == [("deal_updated", lead["id"], None, d["id"], "pending")]


def test_a_change_while_the_push_is_in_flight_gets_a_new_pending_row(
    db: Any, make: Make, client: Row
) -> None:
    lead = make.lead(client)
    d = make.deal(lead)
    db.execute(
        """
        UPDATE crm.crm_push_queue
        SET status = 'in_flight', lease_owner = 'runner-1', lease_expires_at = now()
        WHERE client_id = %s
        """,
        (client["id"],),
    )
    db.execute("UPDATE crm.deals SET value = 10 WHERE id = %s", (d["id"],))
    assert [(op, status) for op, _, _, _, status in queue(db, client)] == [
        ("deal_created", "in_flight"),
        ("deal_updated", "pending"),
    ]


@pytest.mark.parametrize(
    "config", [None, {"is_active": False}, {"deleted_at": T0}], ids=["none", "inactive", "deleted"]
)
def test_no_active_crm_config_no_pushes(db: Any, make: Make, config: Row | None) -> None:
    c = make.client()
    if config is not None:
        make.crm_config(c, **config)
    lead = make.lead(c)
    m = make.meeting(lead)
    d = make.deal(lead)
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s", (m["id"],))
    db.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (d["id"],))
    assert queue(db, c) == []


def test_a_bulk_insert_enqueues_one_push_per_meeting(db: Any, make: Make, client: Row) -> None:
    lead = make.lead(client)
    db.execute(
        """
        INSERT INTO crm.meetings (client_id, lead_id, scheduled_at)
        SELECT %s, %s, %s + n * interval '1 day' FROM generate_series(1, 25) AS n
        """,
        (client["id"], lead["id"], T0),
    )
    assert len(queue(db, client)) == 25


def test_the_push_is_part_of_the_writers_transaction(db: Any, make: Make, client: Row) -> None:
    lead = make.lead(client)
    with pytest.raises(psycopg.errors.CheckViolation):
        with db.transaction():
            make.meeting(lead, scheduled_at=T0 + timedelta(days=1))
            make.meeting(lead, duration_minutes=0)  # fails: the whole block rolls back
    assert queue(db, client) == []
