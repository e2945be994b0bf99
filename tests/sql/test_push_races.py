"""Races between the writers that enqueue pushes, the runner that claims and finishes them, and
whoever fixes a CRM config, each with real concurrent sessions in an explicit interleaving:
one session holds its transaction open while the other acts, and waits are for a lock (never
for time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.fixtures import Make, Row, seal

Conn = psycopg.Connection[Any]

CLAIM = "SELECT * FROM crm.claim_pushes(%s, 'runner-1', 10, 300)"


@dataclass
class Background:
    """A statement run in a session of its own on another thread, so this thread can act
    while it waits for a lock."""

    dsn: str
    work: Callable[[Conn], Any]
    result: Any = None
    error: BaseException | None = None
    pid: int = 0
    _thread: threading.Thread = field(init=False)
    _started: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._started.wait(30), "the background session did not connect"

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn) as conn:
                self.pid = conn.info.backend_pid
                self._started.set()
                self.result = self.work(conn)
                conn.commit()
        except BaseException as exc:
            self.error = exc
        finally:
            self._started.set()

    def blocked(self, timeout: float = 30.0) -> bool:
        """Wait until the session waits for a lock (True), or has finished without ever
        waiting (False)."""
        with psycopg.connect(self.dsn, autocommit=True) as monitor:
            deadline = time.monotonic() + timeout
            while self._thread.is_alive():
                row = monitor.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (self.pid,)
                ).fetchone()
                if row == ("Lock",):
                    return True
                assert time.monotonic() < deadline, f"session {self.pid} neither waited nor ended"
                time.sleep(0.005)
            return False

    def join(self) -> Any:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the background session never finished"
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def dsn(fresh_db: Conn) -> Iterator[str]:
    fresh_db.commit()
    yield fresh_db.info.dsn


@pytest.fixture
def runner(dsn: str) -> Iterator[Conn]:
    """The push runner's session: each statement commits at once, unless a test opens a
    transaction."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def seed(conn: Conn, **config: Any) -> tuple[Row, Row]:
    """A client with a CRM config and a lead, committed."""
    make = Make(conn)
    client = make.client()
    make.crm_config(client, **config)
    lead = make.lead(client)
    conn.commit()
    return client, lead


def queue(conn: Conn, client: Row) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT operation, status FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id",
        (client["id"],),
    ).fetchall()
    return [(op, st) for op, st in rows]


def claim(conn: Conn, client: Row) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(CLAIM, (client["id"],)).fetchall()


def target(conn: Conn, client: Row, push_id: int) -> tuple[Any, ...]:
    """What the push would make the CRM hold: the deal's stage and amount."""
    row = conn.execute(
        "SELECT deal_stage, deal_amount FROM crm.push_target(%s, %s)", (client["id"], push_id)
    ).fetchone()
    assert row is not None
    return tuple(row)


def move_deal(deal: Row) -> Callable[[Conn], None]:
    def work(conn: Conn) -> None:
        conn.execute(
            "UPDATE crm.deals SET stage = 'proposal', value = 5000 WHERE id = %s", (deal["id"],)
        )

    return work


# --- a deal change and the claim of the push it collapses into (issue 11, item 2) -----------


def test_a_change_collapsed_into_a_pending_deal_created_is_not_claimed_before_it_commits(
    fresh_db: Conn, dsn: str, runner: Conn
) -> None:
    client, lead = seed(fresh_db)
    deal = Make(fresh_db).deal(lead, value=0)
    fresh_db.commit()
    assert queue(runner, client) == [("deal_created", "pending")]

    with psycopg.connect(dsn) as writer:
        move_deal(deal)(writer)  # its transaction stays open
        # The runner claims while the change is not committed: were it to take the
        # deal_created now, it would read qualification and 0 and the change would be lost.
        assert claim(runner, client) == []
        writer.commit()

    [push] = claim(runner, client)
    assert push["operation"] == "deal_created"
    assert target(runner, client, push["id"]) == ("proposal", 5000)
    assert queue(runner, client) == [("deal_created", "in_flight")]


def test_a_change_made_while_its_deal_created_is_being_claimed_gets_its_own_push(
    fresh_db: Conn, dsn: str, runner: Conn
) -> None:
    client, lead = seed(fresh_db)
    deal = Make(fresh_db).deal(lead, value=0)
    fresh_db.commit()

    with runner.transaction():
        [push] = claim(runner, client)  # the claim's transaction stays open
        writer = Background(dsn, move_deal(deal))
        blocked = writer.blocked()
    writer.join()

    assert queue(runner, client) == [("deal_created", "in_flight"), ("deal_updated", "pending")]
    assert blocked, "the writer did not wait for the claim to commit"
    finished = runner.execute(
        "SELECT crm.finish_push(%s, %s, 'runner-1', %s, 'done')",
        (client["id"], push["id"], push["attempts"]),
    ).fetchone()
    assert finished == ("done",)
    [update] = claim(runner, client)
    assert update["operation"] == "deal_updated"
    assert target(runner, client, update["id"]) == ("proposal", 5000)


def test_a_change_collapsed_into_a_pending_push_of_its_own_operation_waits_the_same_way(
    fresh_db: Conn, dsn: str, runner: Conn
) -> None:
    """The ON CONFLICT DO UPDATE collapse locks the pending row it updates."""
    client, lead = seed(fresh_db)
    deal = Make(fresh_db).deal(lead, value=0)
    fresh_db.execute(
        "UPDATE crm.crm_push_queue SET status = 'done', finished_at = now() WHERE client_id = %s",
        (client["id"],),
    )
    fresh_db.execute("UPDATE crm.deals SET value = 100 WHERE id = %s", (deal["id"],))
    fresh_db.commit()
    assert queue(runner, client) == [("deal_created", "done"), ("deal_updated", "pending")]

    with psycopg.connect(dsn) as writer:
        move_deal(deal)(writer)
        assert claim(runner, client) == []
        writer.commit()
    [push] = claim(runner, client)
    assert target(runner, client, push["id"]) == ("proposal", 5000)

    # And the other order: the claim first, the change then waits and gets a new push.
    with runner.transaction():
        runner.execute(
            "SELECT crm.finish_push(%s, %s, 'runner-1', %s, 'done')",
            (client["id"], push["id"], push["attempts"]),
        )
    fresh_db.execute("UPDATE crm.deals SET value = 6000 WHERE id = %s", (deal["id"],))
    fresh_db.commit()
    with runner.transaction():
        [again] = claim(runner, client)
        assert again["operation"] == "deal_updated"
        writer = Background(
            dsn,
            lambda conn: conn.execute(
                "UPDATE crm.deals SET value = 7000 WHERE id = %s", (deal["id"],)
            ),
        )
        assert writer.blocked()
    writer.join()
    assert queue(runner, client)[-2:] == [
        ("deal_updated", "in_flight"),
        ("deal_updated", "pending"),
    ]


# --- a held finish and a config fix (issue 11, item 4) ---------------------------------------


def refused(runner: Conn, client: Row) -> Row:
    """The runner claimed the client's push and got a 401: it held the client's pushes (config
    in error), and is about to finish this one held."""
    Make(runner).meeting(Make(runner).lead(client))
    [push] = claim(runner, client)
    runner.execute("SELECT crm.hold_pushes(%s, '401 from the CRM')", (client["id"],))
    return push


def finish_held(push: Row) -> Callable[[Conn], str]:
    def work(conn: Conn) -> str:
        row = conn.execute(
            "SELECT crm.finish_push(%s, %s, 'runner-1', %s, 'held', '401 from the CRM')",
            (push["client_id"], push["id"], push["attempts"]),
        ).fetchone()
        assert row is not None
        return str(row[0])

    return work


def fix_config(client: Row) -> Callable[[Conn], None]:
    def work(conn: Conn) -> None:
        conn.execute(
            "UPDATE crm.client_crm_configs SET api_key = %s WHERE client_id = %s",
            (seal(client["id"], "api_key", "a-working-key"), client["id"]),
        )

    return work


def push_state(conn: Conn, push: Row) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT status, attempts, run_after <= clock_timestamp() FROM crm.crm_push_queue "
        "WHERE id = %s",
        (push["id"],),
    ).fetchone()
    assert row is not None
    return tuple(row)


def connection_status(conn: Conn, client: Row) -> str:
    row = conn.execute(
        "SELECT connection_status FROM crm.client_crm_configs WHERE client_id = %s",
        (client["id"],),
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_a_held_finish_waits_for_a_config_fix_in_progress_and_leaves_the_push_pending(
    fresh_db: Conn, dsn: str, runner: Conn
) -> None:
    client, _ = seed(fresh_db, connection_status="connected")
    push = refused(runner, client)

    with psycopg.connect(dsn) as fixer:
        fix_config(client)(fixer)  # the fix is not committed yet
        finish = Background(dsn, finish_held(push))
        blocked = finish.blocked()
        fixer.commit()
    status = finish.join()

    assert (status, push_state(runner, push)) == ("pending", ("pending", 0, True))
    assert connection_status(runner, client) == "pending"
    assert blocked, "the finish did not wait for the fix to commit"
    assert [p["id"] for p in claim(runner, client)] == [push["id"]]


def test_a_config_fix_waits_for_a_held_finish_in_progress_and_then_releases_the_push(
    fresh_db: Conn, dsn: str, runner: Conn
) -> None:
    client, _ = seed(fresh_db, connection_status="connected")
    push = refused(runner, client)

    with runner.transaction():
        assert finish_held(push)(runner) == "held"  # not committed yet
        fixer = Background(dsn, fix_config(client))
        blocked = fixer.blocked()
    fixer.join()

    assert push_state(runner, push) == ("pending", 0, True)
    assert connection_status(runner, client) == "pending"
    assert blocked, "the fix did not wait for the held finish to commit"
    assert [p["id"] for p in claim(runner, client)] == [push["id"]]
