"""Writers of one lead, deal or meeting at once (READ COMMITTED, the default): every write
succeeds and what the triggers keep (attribution credits, stage history, the meeting's deal)
matches what a from-scratch computation says after the interleaving.

Each test holds one session's transaction open while the other acts, then commits: the
second session either waits for the first (checked with pg_stat_activity, never a sleep) or
runs past it, and the outcome must be right either way."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers.fixtures import T0, Make

Conn = psycopg.Connection[Any]


def blocked_or_done(dsn: str, pid: int, done: threading.Event, timeout: float = 30.0) -> bool:
    """Wait until session ``pid`` waits for a lock (True) or its work finished (False)."""
    import time

    with psycopg.connect(dsn, autocommit=True) as monitor:
        deadline = time.monotonic() + timeout
        while not done.is_set():
            row = monitor.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row == ("Lock",):
                return True
            assert time.monotonic() < deadline, f"session {pid} neither blocked nor finished"
            time.sleep(0.005)
    return False


def interleave(dsn: str, first: Callable[[Conn], object], second: Callable[[Conn], object]) -> bool:
    """Session A runs ``first`` and keeps its transaction open while session B runs and
    commits ``second``; A commits once B waits for it or is done. Returns whether B waited.
    Any error of either session fails the test."""
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        first(a)
        done = threading.Event()
        errors: list[BaseException] = []

        def run_b() -> None:
            try:
                second(b)
                b.commit()
            except BaseException as exc:  # reported in the main thread
                errors.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=run_b)
        worker.start()
        waited = blocked_or_done(dsn, b.info.backend_pid, done)
        a.commit()
        worker.join(timeout=30)
        assert done.is_set()
        if errors:
            raise errors[0]
        return waited


def run(sql: str, *params: Any) -> Callable[[Conn], object]:
    return lambda conn: conn.execute(sql.encode(), params)


def kept_credits(conn: Conn, deal_id: Any) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT channel, touches, round(first_touch::numeric, 9), round(last_touch::numeric, 9),
               round(linear::numeric, 9), round(time_decay::numeric, 9),
               round(position_based::numeric, 9)
        FROM crm_private.deal_attribution WHERE deal_id = %s ORDER BY channel
        """,
        (deal_id,),
    ).fetchall()


def fresh_credits(conn: Conn, client_id: Any, deal_id: Any) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT channel, touches, round(first_touch::numeric, 9), round(last_touch::numeric, 9),
               round(linear::numeric, 9), round(time_decay::numeric, 9),
               round(position_based::numeric, 9)
        FROM crm_private.compute_deal_attribution(%s, ARRAY[%s]::uuid[]) ORDER BY channel
        """,
        (client_id, deal_id),
    ).fetchall()


@pytest.fixture
def lead(fresh_db: Conn) -> dict[str, Any]:
    make = Make(fresh_db)
    row = make.lead(make.client(auto_create_deals=True))
    make.activity(row, channel="email", occurred_at=T0)
    fresh_db.commit()
    return row


def add_deal(conn: Conn, lead: dict[str, Any], **kw: Any) -> Any:
    row = Make(conn).deal(lead, created_at=T0 + timedelta(days=10), **kw)
    return row["id"]


TOUCH = (
    "INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at) VALUES (%s, %s, %s, %s)"
)


def touch(lead: dict[str, Any], channel: str, days: float) -> Callable[[Conn], object]:
    return run(TOUCH, lead["client_id"], lead["id"], channel, T0 + timedelta(days=days))


def test_two_touches_of_one_lead_at_once_both_count(fresh_db: Conn, lead: dict[str, Any]) -> None:
    deal = add_deal(fresh_db, lead)
    fresh_db.commit()
    interleave(fresh_db.info.dsn, touch(lead, "linkedin", 2), touch(lead, "voice", 3))
    credits = kept_credits(fresh_db, deal)
    assert credits == fresh_credits(fresh_db, lead["client_id"], deal)
    assert sum(row[1] for row in credits) == 3


@pytest.mark.parametrize("deal_first", [False, True], ids=["touch-first", "deal-first"])
def test_a_touch_and_a_deal_of_one_lead_at_once(
    fresh_db: Conn, lead: dict[str, Any], deal_first: bool
) -> None:
    """Whichever of the two is uncommitted while the other is written, the deal's credits
    count the touch."""
    sessions = [touch(lead, "linkedin", 2), lambda conn: add_deal(conn, lead)]
    if deal_first:
        sessions.reverse()
    interleave(fresh_db.info.dsn, *sessions)
    (deal,) = fresh_db.execute(
        "SELECT id FROM crm.deals WHERE lead_id = %s", (lead["id"],)
    ).fetchone()
    credits = kept_credits(fresh_db, deal)
    assert credits == fresh_credits(fresh_db, lead["client_id"], deal)
    assert sum(row[1] for row in credits) == 2


def test_a_touch_moved_while_another_is_inserted(fresh_db: Conn, lead: dict[str, Any]) -> None:
    deal = add_deal(fresh_db, lead)
    fresh_db.commit()
    interleave(
        fresh_db.info.dsn,
        run(
            "UPDATE crm.activities SET channel = 'voice' WHERE lead_id = %s",
            lead["id"],
        ),
        touch(lead, "linkedin", 2),
    )
    credits = kept_credits(fresh_db, deal)
    assert credits == fresh_credits(fresh_db, lead["client_id"], deal)
    assert [row[0] for row in credits] == ["linkedin", "voice"]


def test_a_stage_change_after_another_sessions_committed_one(fresh_db: Conn) -> None:
    """A's transaction began before B moved the deal and committed; A then moves it: both
    succeed, in commit order, and the history chain is continuous and in time order."""
    make = Make(fresh_db)
    deal = make.deal(make.lead(make.client()), probability=None, created_at=T0)
    fresh_db.commit()
    dsn = fresh_db.info.dsn
    with psycopg.connect(dsn) as a, psycopg.connect(dsn, autocommit=True) as b:
        a.execute("SELECT now()")  # A's transaction (and its now()) begins here
        b.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))
        a.execute("UPDATE crm.deals SET stage = 'negotiation' WHERE id = %s", (deal["id"],))
        a.commit()
    rows = fresh_db.execute(
        """
        SELECT from_stage, to_stage, changed_at, time_in_from_stage
        FROM crm.deal_stage_history WHERE deal_id = %s ORDER BY seq
        """,
        (deal["id"],),
    ).fetchall()
    assert [r[:2] for r in rows] == [
        (None, "qualification"),
        ("qualification", "proposal"),
        ("proposal", "negotiation"),
    ]
    assert rows[1][2] <= rows[2][2]
    assert rows[2][3] >= timedelta(0)
    latest = fresh_db.execute(
        "SELECT stage, stage_changed_at FROM crm.deals WHERE id = %s", (deal["id"],)
    ).fetchone()
    assert latest == ("negotiation", rows[2][2])


def test_a_close_after_another_sessions_committed_stage_change(fresh_db: Conn) -> None:
    make = Make(fresh_db)
    deal = make.deal(make.lead(make.client()), probability=None, created_at=T0)
    fresh_db.commit()
    dsn = fresh_db.info.dsn
    with psycopg.connect(dsn) as a, psycopg.connect(dsn, autocommit=True) as b:
        a.execute("SELECT now()")
        b.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))
        a.execute("UPDATE crm.deals SET stage = 'closed_won' WHERE id = %s", (deal["id"],))
        a.commit()
    row = fresh_db.execute(
        "SELECT stage, closed_at = stage_changed_at, won FROM crm.deals WHERE id = %s",
        (deal["id"],),
    ).fetchone()
    assert row == ("closed_won", True, True)


def test_good_outcome_while_a_hand_made_deal_for_the_meeting_is_uncommitted(
    fresh_db: Conn, lead: dict[str, Any]
) -> None:
    meeting = Make(fresh_db).meeting(lead, scheduled_at=T0 + timedelta(days=1))
    fresh_db.commit()
    waited = interleave(
        fresh_db.info.dsn,
        lambda conn: add_deal(conn, lead, meeting_id=meeting["id"], name="by hand"),
        run("UPDATE crm.meetings SET meeting_outcome = 'good' WHERE id = %s", meeting["id"]),
    )
    assert waited
    row = fresh_db.execute(
        """
        SELECT m.meeting_outcome, m.deal_created, d.name
        FROM crm.meetings AS m JOIN crm.deals AS d ON d.id = m.deal_id
        WHERE m.id = %s
        """,
        (meeting["id"],),
    ).fetchone()
    assert row == ("good", True, "by hand")
    assert fresh_db.execute(
        "SELECT count(*) FROM crm.deals WHERE meeting_id = %s", (meeting["id"],)
    ).fetchone() == (1,)
