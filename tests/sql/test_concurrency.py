"""Two sessions changing one deal or meeting at once: the stage history chain stays
continuous and a good outcome still creates exactly one deal."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import psycopg

from tests.helpers.fixtures import T0, Make, wait_until_blocked


def seed(conn: psycopg.Connection[Any], **client: Any) -> dict[str, Any]:
    make = Make(conn)
    lead = make.lead(make.client(**client))
    deal = make.deal(lead, probability=None, created_at=T0)
    meeting = make.meeting(lead, scheduled_at=T0 + timedelta(days=1))
    conn.commit()
    return {"deal": deal["id"], "meeting": meeting["id"]}


def race(dsn: str, first: str, second: str, params: tuple[Any, ...]) -> None:
    """Session A runs ``first`` and holds its transaction open while session B starts
    ``second`` on the same row (B blocks on A's row lock); then A commits and B finishes."""
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        a.execute(first.encode(), params)
        b_pid = b.info.backend_pid
        done = threading.Event()

        def run_b() -> None:
            b.execute(second.encode(), params)
            b.commit()
            done.set()

        worker = threading.Thread(target=run_b)
        worker.start()
        wait_until_blocked(dsn, b_pid)
        a.commit()
        worker.join(timeout=30)
        assert done.is_set()


def test_concurrent_stage_changes_keep_the_history_chain_continuous(
    fresh_db: psycopg.Connection[Any],
) -> None:
    ids = seed(fresh_db)
    race(
        fresh_db.info.dsn,
        "UPDATE crm.deals SET stage = 'proposal' WHERE id = %s",
        "UPDATE crm.deals SET stage = 'negotiation' WHERE id = %s",
        (ids["deal"],),
    )
    rows = fresh_db.execute(
        """
        SELECT from_stage, to_stage FROM crm.deal_stage_history
        WHERE deal_id = %s ORDER BY seq
        """,
        (ids["deal"],),
    ).fetchall()
    assert rows == [
        (None, "qualification"),
        ("qualification", "proposal"),
        ("proposal", "negotiation"),
    ]
    assert fresh_db.execute(
        "SELECT stage, probability FROM crm.deals WHERE id = %s", (ids["deal"],)
    ).fetchone() == ("negotiation", 60)


def test_concurrent_good_outcomes_create_exactly_one_deal(
    fresh_db: psycopg.Connection[Any],
) -> None:
    ids = seed(fresh_db, auto_create_deals=True)
    race(
        fresh_db.info.dsn,
        "UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s",
        "UPDATE crm.meetings SET meeting_outcome = 'good', meeting_notes = 'b' WHERE id = %s",
        (ids["meeting"],),
    )
    deals = fresh_db.execute(
        "SELECT count(*) FROM crm.deals WHERE meeting_id = %s", (ids["meeting"],)
    ).fetchone()
    assert deals == (1,)
