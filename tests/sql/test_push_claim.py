"""The push runner's side of the queue: claiming under a lease (per-lead order, rescue of
lapsed leases), finishing, completing, holding and releasing, retrying, the status view, the
NOTIFY that wakes a watching drainer, and several runners draining one client at once."""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.fixtures import T0, Make, Row, raises_sqlstate, seal

Conn = psycopg.Connection[Any]

# Four operations: a lead can have four pending lead-only pushes without colliding in the
# one-pending-per-entity-and-operation index.
OPS = ("meeting_booked", "meeting_outcome", "deal_created", "deal_updated")
LEASE = timedelta(seconds=300)


# --- helpers ---------------------------------------------------------------------------------


def scalar(db: Conn, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = db.execute(query.encode(), params).fetchone()
    assert row is not None
    return row[0]


def now(db: Conn) -> datetime:
    """Transaction time: what column defaults (run_after, created_at) and triggers use."""
    value: datetime = scalar(db, "SELECT now()")
    return value


def clock(db: Conn) -> datetime:
    """Wall-clock time: what the claim and finish functions use."""
    value: datetime = scalar(db, "SELECT clock_timestamp()")
    return value


def claim(
    db: Conn, client: Row, owner: str = "runner-1", limit: int = 100, lease: int = 300
) -> list[Row]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM crm.claim_pushes(%s, %s, %s, %s)", (client["id"], owner, limit, lease)
        ).fetchall()


def ids(rows: list[Row]) -> set[int]:
    return {r["id"] for r in rows}


def push_row(db: Conn, push: Row | int) -> Row:
    push_id = push if isinstance(push, int) else push["id"]
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM crm.crm_push_queue WHERE id = %s", (push_id,)).fetchone()
    assert row is not None
    return row


def status(db: Conn, push: Row | int) -> str:
    value: str = push_row(db, push)["status"]
    return value


def config_of(db: Conn, client: Row) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM crm.client_crm_configs WHERE client_id = %s AND deleted_at IS NULL",
            (client["id"],),
        ).fetchone()
    assert row is not None
    return row


def current_attempts(db: Conn, push_id: int) -> int:
    """The attempt number the push's live claim holds (at least 1, what a claim returns)."""
    row = db.execute("SELECT attempts FROM crm.crm_push_queue WHERE id = %s", (push_id,)).fetchone()
    return max(int(row[0]), 1) if row else 1


def finish(
    db: Conn,
    client: Row,
    push: Row | int,
    outcome: str | None,
    owner: str = "runner-1",
    error: str | None = None,
    retry_at: datetime | None = None,
    attempt: int | None = None,
) -> str:
    """crm.finish_push of the claim ``attempt`` (default: the push's current claim)."""
    push_id = push if isinstance(push, int) else push["id"]
    if attempt is None:
        attempt = current_attempts(db, push_id)
    value: str = scalar(
        db,
        "SELECT crm.finish_push(%s, %s::bigint, %s, %s::integer, %s, %s, %s::timestamptz)",
        (client["id"], push_id, owner, attempt, outcome, error, retry_at),
    )
    return value


def complete(
    db: Conn, client: Row, owner: str, push_ids: list[int], attempts: list[int] | None = None
) -> int:
    """crm.complete_pushes of the claims ``attempts`` (default: each push's current claim)."""
    if attempts is None:
        attempts = [current_attempts(db, i) for i in push_ids]
    value: int = scalar(
        db,
        "SELECT crm.complete_pushes(%s, %s, %s::bigint[], %s::integer[])",
        (client["id"], owner, push_ids, attempts),
    )
    return value


def retry(
    db: Conn,
    client: Row | None = None,
    statuses: list[str | None] | None = None,
    push_ids: list[int] | None = None,
) -> int:
    client_id = None if client is None else client["id"]
    if statuses is None:
        value: int = scalar(
            db,
            "SELECT crm.retry_pushes(%s::uuid, p_push_ids => %s::bigint[])",
            (client_id, push_ids),
        )
    else:
        value = scalar(
            db,
            "SELECT crm.retry_pushes(%s::uuid, %s::text[], %s::bigint[])",
            (client_id, statuses, push_ids),
        )
    return value


def lead_pushes(make: Make, lead: Row, n: int, **kw: Any) -> list[Row]:
    """``n`` lead-only pushes of one lead, in id order, one per operation."""
    return [make.push(lead, operation=op, **kw) for op in OPS[:n]]


def finished(db: Conn) -> dict[str, Any]:
    """Column values that put a push in a finished status."""
    return {"finished_at": now(db)}


def in_flight(owner: str, expires: datetime) -> dict[str, Any]:
    return {"status": "in_flight", "lease_owner": owner, "lease_expires_at": expires}


@pytest.fixture
def client(make: Make) -> Row:
    c = make.client()
    make.crm_config(c)
    return c


# --- 1. claim_pushes -------------------------------------------------------------------------


def test_claim_takes_the_due_pending_pushes_of_that_client_only(
    db: Conn, make: Make, client: Row
) -> None:
    t = now(db)
    leads = [make.lead(client) for _ in range(6)]
    due = make.push(leads[0])
    overdue = make.push(leads[1], run_after=t - timedelta(hours=1), attempts=4)
    future = make.push(leads[2], run_after=t + timedelta(hours=1))
    held = make.push(leads[3], status="held")
    failed = make.push(leads[4], status="failed", **finished(db))
    busy = make.push(leads[5], **in_flight("runner-2", t + timedelta(minutes=5)))
    other = make.client()
    make.crm_config(other)
    others = make.push(make.lead(other))

    before = clock(db)
    rows = claim(db, client)
    after = clock(db)

    assert ids(rows) == {due["id"], overdue["id"]}
    config_id = config_of(db, client)["id"]
    for r, attempts in ((due, 1), (overdue, 5)):
        [got] = [g for g in rows if g["id"] == r["id"]]
        row = push_row(db, r)
        assert (row["status"], row["lease_owner"], row["attempts"]) == (
            "in_flight",
            "runner-1",
            attempts,
        )
        assert before + LEASE <= row["lease_expires_at"] <= after + LEASE
        assert got == {
            "client_id": client["id"],
            "id": r["id"],
            "operation": "meeting_booked",
            "lead_id": r["lead_id"],
            "meeting_id": None,
            "deal_id": None,
            "attempts": attempts,
            "crm_config_id": config_id,
            "lease_expires_at": row["lease_expires_at"],
        }
    for untouched in (future, held, failed, busy, others):
        row = push_row(db, untouched)
        assert (row["status"], row["attempts"], row["lease_owner"]) == (
            untouched["status"],
            untouched["attempts"],
            untouched["lease_owner"],
        )


def test_claim_lease_lasts_p_lease_seconds(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    before = clock(db)
    [row] = claim(db, client, owner="host-7:1234", lease=42)
    after = clock(db)
    lease = timedelta(seconds=42)
    assert before + lease <= row["lease_expires_at"] <= after + lease
    assert push_row(db, p)["lease_owner"] == "host-7:1234"


def test_claim_respects_the_limit_in_run_after_then_id_order(
    db: Conn, make: Make, client: Row
) -> None:
    t = now(db)
    offsets = [timedelta(minutes=1), timedelta(hours=3), timedelta(hours=2), timedelta(hours=3)]
    offsets.append(timedelta(minutes=1))
    p = [make.push(make.lead(client), run_after=t - off) for off in offsets]
    assert ids(claim(db, client, limit=2)) == {p[1]["id"], p[3]["id"]}  # oldest, id breaks tie
    assert ids(claim(db, client, limit=1)) == {p[2]["id"]}
    assert ids(claim(db, client, limit=1)) == {p[0]["id"]}  # tie with p[4]: lower id first
    assert ids(claim(db, client, limit=10)) == {p[4]["id"]}
    assert claim(db, client, limit=10) == []


@pytest.mark.parametrize(
    "config",
    [None, {"is_active": False}, {"deleted_at": T0}, {"connection_status": "error"}],
    ids=["no-config", "inactive", "deleted", "error"],
)
def test_claim_returns_nothing_without_a_usable_config(
    db: Conn, make: Make, config: Row | None
) -> None:
    c = make.client()
    if config is not None:
        make.crm_config(c, **config)
    p = make.push(make.lead(c))
    assert claim(db, c) == []
    row = push_row(db, p)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)


@pytest.mark.parametrize("connection_status", ["pending", "connected", "disconnected"])
def test_claim_works_for_every_status_but_error(
    db: Conn, make: Make, connection_status: str
) -> None:
    c = make.client()
    make.crm_config(c, connection_status=connection_status)
    p = make.push(make.lead(c))
    assert ids(claim(db, c)) == {p["id"]}


@pytest.mark.parametrize(
    ("owner", "limit", "lease", "parameter"),
    [
        (None, 10, 300, "p_lease_owner"),
        ("", 10, 300, "p_lease_owner"),
        ("   ", 10, 300, "p_lease_owner"),
        ("r", None, 300, "p_limit"),
        ("r", 0, 300, "p_limit"),
        ("r", -1, 300, "p_limit"),
        ("r", 10001, 300, "p_limit"),
        ("r", 10, None, "p_lease_seconds"),
        ("r", 10, 0, "p_lease_seconds"),
        ("r", 10, 86401, "p_lease_seconds"),
    ],
)
def test_claim_rejects_bad_arguments(
    db: Conn,
    make: Make,
    client: Row,
    owner: str | None,
    limit: int | None,
    lease: int | None,
    parameter: str,
) -> None:
    p = make.push(make.lead(client))
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            "SELECT * FROM crm.claim_pushes(%s, %s, %s::integer, %s::integer)",
            (client["id"], owner, limit, lease),
        )
    assert parameter in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint
    assert status(db, p) == "pending"


@pytest.mark.parametrize(("limit", "lease"), [(1, 1), (10000, 86400)])
def test_claim_accepts_the_bounds(
    db: Conn, make: Make, client: Row, limit: int, lease: int
) -> None:
    p = make.push(make.lead(client))
    assert ids(claim(db, client, limit=limit, lease=lease)) == {p["id"]}


# --- 2. per-lead order -----------------------------------------------------------------------


def test_one_lead_at_a_time_in_id_order_different_leads_together(
    db: Conn, make: Make, client: Row
) -> None:
    a = lead_pushes(make, make.lead(client), 3)
    b = lead_pushes(make, make.lead(client), 2)

    assert ids(claim(db, client)) == {a[0]["id"], b[0]["id"]}
    assert claim(db, client) == []  # the later pushes wait for the in-flight ones
    assert finish(db, client, a[0], "done") == "done"
    assert finish(db, client, b[0], "failed", error="422") == "failed"
    assert ids(claim(db, client)) == {a[1]["id"], b[1]["id"]}

    # A retry due at once is claimed again before its lead's later push.
    past = clock(db) - timedelta(seconds=1)
    assert finish(db, client, a[1], "retry", error="503", retry_at=past) == "pending"
    [again] = claim(db, client)
    assert (again["id"], again["attempts"]) == (a[1]["id"], 2)
    assert finish(db, client, a[1], "done") == "done"
    assert ids(claim(db, client)) == {a[2]["id"]}


@pytest.mark.parametrize(
    ("earlier", "later_claimable"),
    [
        ("done", True),
        ("failed", True),
        ("dead", True),
        ("pending_future", False),
        ("in_flight", False),
        ("held", False),
    ],
)
def test_a_later_push_of_a_lead_waits_for_the_earlier_one(
    db: Conn, make: Make, client: Row, earlier: str, later_claimable: bool
) -> None:
    t = now(db)
    state: dict[str, Any] = {
        "done": {"status": "done", **finished(db)},
        "failed": {"status": "failed", **finished(db)},
        "dead": {"status": "dead", **finished(db)},
        "pending_future": {"run_after": t + timedelta(hours=1)},
        "in_flight": in_flight("runner-2", t + timedelta(minutes=5)),
        "held": {"status": "held"},
    }[earlier]
    lead = make.lead(client)
    first = make.push(lead, operation="meeting_booked", **state)
    second = make.push(lead, operation="meeting_outcome")
    assert ids(claim(db, client)) == ({second["id"]} if later_claimable else set())
    assert push_row(db, first)["status"] == first["status"]


# --- 3. lease rescue -------------------------------------------------------------------------


def expire(db: Conn, push: Row) -> None:
    db.execute(
        "UPDATE crm.crm_push_queue SET lease_expires_at = now() - interval '1 minute' "
        "WHERE id = %s",
        (push["id"],),
    )


def test_a_lapsed_lease_is_rescued_and_claimed_again(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    [first] = claim(db, client, owner="runner-1")
    assert first["attempts"] == 1
    expire(db, p)

    [again] = claim(db, client, owner="runner-2")
    assert (again["id"], again["attempts"]) == (p["id"], 2)
    row = push_row(db, p)
    assert (row["status"], row["lease_owner"], row["attempts"]) == ("in_flight", "runner-2", 2)
    assert row["last_error"] is not None
    assert "lease" in row["last_error"] and "runner-1" in row["last_error"]
    # The crashed runner comes back: it no longer owns the push.
    assert finish(db, client, p, "done", owner="runner-1") == "lease_lost"
    assert finish(db, client, p, "done", owner="runner-2") == "done"


def test_a_live_lease_is_left_alone(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client, owner="runner-1")
    before = push_row(db, p)
    assert claim(db, client, owner="runner-2") == []
    assert push_row(db, p) == before


def test_a_rescued_earlier_push_goes_before_the_later_one(
    db: Conn, make: Make, client: Row
) -> None:
    first, second = lead_pushes(make, make.lead(client), 2)
    claim(db, client, owner="runner-1")
    expire(db, first)
    assert ids(claim(db, client, owner="runner-2")) == {first["id"]}
    assert status(db, second) == "pending"


@pytest.mark.parametrize(("attempts", "dead"), [(2, False), (3, True), (4, True)])
def test_a_lapsed_lease_with_its_attempts_spent_is_dead(
    db: Conn, make: Make, attempts: int, dead: bool
) -> None:
    c = make.client()
    make.crm_config(c, max_attempts=3)
    t = now(db)
    p = make.push(make.lead(c), attempts=attempts, **in_flight("runner-1", t - timedelta(hours=1)))
    before = clock(db)
    rows = claim(db, c, owner="runner-2")
    after = clock(db)
    row = push_row(db, p)
    if dead:
        assert rows == []
        assert (row["status"], row["attempts"], row["lease_owner"], row["lease_expires_at"]) == (
            "dead",
            attempts,
            None,
            None,
        )
        assert before <= row["finished_at"] <= after
        assert "lease" in row["last_error"]
    else:
        assert [(r["id"], r["attempts"]) for r in rows] == [(p["id"], attempts + 1)]
        assert (row["status"], row["finished_at"]) == ("in_flight", None)


# --- 4. finish_push --------------------------------------------------------------------------


def test_done_finishes_the_push_and_marks_the_config_connected(
    db: Conn, make: Make, client: Row
) -> None:
    db.execute(
        "UPDATE crm.client_crm_configs SET last_error = 'old' WHERE client_id = %s",
        (client["id"],),
    )
    p = make.push(make.lead(client))
    claim(db, client)
    before = clock(db)
    assert finish(db, client, p, "done") == "done"
    after = clock(db)
    row = push_row(db, p)
    assert (row["status"], row["lease_owner"], row["lease_expires_at"], row["attempts"]) == (
        "done",
        None,
        None,
        1,
    )
    assert before <= row["finished_at"] <= after
    cfg = config_of(db, client)
    assert (cfg["connection_status"], cfg["last_error"]) == ("connected", None)
    assert before <= cfg["last_successful_push_at"] <= after


def test_done_leaves_a_config_in_error_in_error(db: Conn, make: Make) -> None:
    c = make.client()
    make.crm_config(c, connection_status="connected")
    p = make.push(make.lead(c))
    claim(db, c)
    # Meanwhile another push got a 401 and put the config in error.
    db.execute(
        "UPDATE crm.client_crm_configs SET connection_status = 'error', last_error = '401' "
        "WHERE client_id = %s",
        (c["id"],),
    )
    assert finish(db, c, p, "done") == "done"
    assert status(db, p) == "done"
    cfg = config_of(db, c)
    assert (cfg["connection_status"], cfg["last_error"], cfg["last_successful_push_at"]) == (
        "error",
        "401",
        None,
    )


def test_retry_is_pending_again_at_retry_at(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    retry_at = clock(db) + timedelta(minutes=10)
    assert finish(db, client, p, "retry", error="503 from the CRM", retry_at=retry_at) == "pending"
    row = push_row(db, p)
    assert (
        row["status"],
        row["run_after"],
        row["last_error"],
        row["attempts"],
        row["lease_owner"],
        row["lease_expires_at"],
        row["finished_at"],
    ) == ("pending", retry_at, "503 from the CRM", 1, None, None, None)
    assert claim(db, client) == []  # not before retry_at


def test_retry_with_the_attempts_spent_is_dead(db: Conn, make: Make) -> None:
    c = make.client()
    make.crm_config(c, max_attempts=2)
    p = make.push(make.lead(c), attempts=1)
    [got] = claim(db, c)
    assert got["attempts"] == 2
    before = clock(db)
    assert finish(db, c, p, "retry", error="timeout", retry_at=before) == "dead"
    row = push_row(db, p)
    assert (row["status"], row["last_error"], row["lease_owner"]) == ("dead", "timeout", None)
    assert before <= row["finished_at"] <= clock(db)


def test_retry_after_the_config_was_deleted_waits_pending_for_the_next_config(
    db: Conn, make: Make
) -> None:
    # max_attempts lives on the config only (its column default): with the config deleted
    # while the push was in flight there is no budget to spend, so the push is not dead.
    c = make.client()
    make.crm_config(c, max_attempts=1)
    p = make.push(make.lead(c), attempts=5)
    claim(db, c)
    db.execute(
        "UPDATE crm.client_crm_configs SET deleted_at = now() WHERE client_id = %s", (c["id"],)
    )
    assert finish(db, c, p, "retry", error="timeout", retry_at=clock(db)) == "pending"
    assert push_row(db, p)["status"] == "pending"


def test_failed_finishes_the_push(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    assert finish(db, client, p, "failed", error="422 validation") == "failed"
    row = push_row(db, p)
    assert (row["status"], row["last_error"], row["lease_owner"], row["attempts"]) == (
        "failed",
        "422 validation",
        None,
        1,
    )
    assert row["finished_at"] is not None
    assert config_of(db, client)["last_successful_push_at"] is None


def test_held_gives_the_attempt_back(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client), attempts=2)
    claim(db, client)
    assert push_row(db, p)["attempts"] == 3
    # The runner holds the client's pushes (config in error) before it finishes this one.
    assert scalar(db, "SELECT crm.hold_pushes(%s, '401')", (client["id"],)) == 0
    assert finish(db, client, p, "held", error="401") == "held"
    row = push_row(db, p)
    assert (
        row["status"],
        row["attempts"],
        row["last_error"],
        row["lease_owner"],
        row["lease_expires_at"],
        row["finished_at"],
    ) == ("held", 2, "401", None, None, None)


def test_a_long_error_is_cut_to_2000_characters(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    finish(db, client, p, "failed", error="x" * 5000)
    assert push_row(db, p)["last_error"] == "x" * 2000


@pytest.mark.parametrize("outcome", ["done", "retry", "failed", "held"])
def test_lease_lost_when_another_runner_holds_the_push(
    db: Conn, make: Make, client: Row, outcome: str
) -> None:
    p = make.push(make.lead(client))
    claim(db, client, owner="runner-2")
    before = push_row(db, p)
    got = finish(db, client, p, outcome, owner="runner-1", error="e", retry_at=clock(db))
    assert got == "lease_lost"
    assert push_row(db, p) == before
    assert config_of(db, client)["last_successful_push_at"] is None


@pytest.mark.parametrize("state", ["pending", "done", "held"])
def test_lease_lost_when_the_push_is_not_in_flight(
    db: Conn, make: Make, client: Row, state: str
) -> None:
    extra = finished(db) if state == "done" else {}
    p = make.push(make.lead(client), status=state, lease_owner="runner-1", **extra)
    before = push_row(db, p)
    assert finish(db, client, p, "done", owner="runner-1") == "lease_lost"
    assert push_row(db, p) == before


@pytest.mark.parametrize("outcome", [None, "dead", "pending", "DONE", ""])
def test_finish_rejects_an_unknown_outcome(
    db: Conn, make: Make, client: Row, outcome: str | None
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    with raises_sqlstate(db, "22023") as info:
        finish(db, client, p, outcome)
    assert "p_outcome" in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint
    assert status(db, p) == "in_flight"


def test_retry_needs_retry_at(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    with raises_sqlstate(db, "22004") as info:
        finish(db, client, p, "retry", error="503")
    assert "p_retry_at" in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint
    assert status(db, p) == "in_flight"


def test_finish_an_unknown_push(db: Conn, make: Make, client: Row) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    with raises_sqlstate(db, "P0002") as info:
        finish(db, client, p["id"] + 1_000_000, "done")
    assert info.value.diag.message_hint
    other = make.client()
    make.crm_config(other)
    with raises_sqlstate(db, "P0002"):  # the push exists, but not for that client
        finish(db, other, p, "done")
    assert status(db, p) == "in_flight"


def test_retry_while_a_newer_pending_push_of_the_entity_exists(
    db: Conn, make: Make, client: Row
) -> None:
    """The entity changed while its push was in flight, so a second pending push of the same
    operation exists (see test_push_queue). Retrying the first must not collide with it in
    the one-pending-per-entity index."""
    lead = make.lead(client)
    first = make.push(lead, operation="deal_updated")
    claim(db, client)
    newer = make.push(lead, operation="deal_updated")
    finish(db, client, first, "retry", error="503", retry_at=clock(db))
    pending = scalar(
        db,
        "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND status = 'pending' "
        "AND operation = 'deal_updated' AND lead_id = %s",
        (client["id"], lead["id"]),
    )
    assert pending == 1
    assert status(db, first) != "in_flight"
    assert status(db, newer) == "pending"


def test_lease_rescue_while_a_newer_pending_push_of_the_entity_exists(
    db: Conn, make: Make, client: Row
) -> None:
    """As above, but the runner crashed: the rescue must not collide either (else every
    claim of the client fails from then on)."""
    lead = make.lead(client)
    first = make.push(lead, operation="deal_updated")
    claim(db, client, owner="runner-1")
    make.push(lead, operation="deal_updated")
    expire(db, first)
    elsewhere = make.push(make.lead(client))
    rows = claim(db, client, owner="runner-2")
    assert elsewhere["id"] in ids(rows)
    pending = scalar(
        db,
        "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND lead_id = %s "
        "AND operation = 'deal_updated' AND status IN ('pending', 'in_flight')",
        (client["id"], lead["id"]),
    )
    assert pending == 1
    assert push_row(db, first)["lease_owner"] != "runner-1"


# --- 4b. a finish names its claim -----------------------------------------------------------


def relapse(db: Conn, client: Row, push: Row, owner: str = "runner-1") -> int:
    """The claim of ``owner`` lapses and the same runner claims the push again: returns the
    new claim's attempt number."""
    expire(db, push)
    [again] = claim(db, client, owner=owner)
    assert again["id"] == push["id"]
    return int(again["attempts"])


@pytest.mark.parametrize("outcome", ["done", "retry", "defer", "failed", "held"])
def test_a_late_finish_of_a_lapsed_claim_leaves_the_same_runners_new_claim_alone(
    db: Conn, make: Make, client: Row, outcome: str
) -> None:
    """Issue 11: the lease lapsed and the same runner (same lease owner) claimed the push
    again; the first attempt's late finish must not finish the second."""
    p = make.push(make.lead(client))
    [first] = claim(db, client)
    assert relapse(db, client, p) == 2
    before = push_row(db, p)
    late = finish(db, client, p, outcome, error="late", retry_at=clock(db), attempt=1)
    assert late == "lease_lost"
    assert push_row(db, p) == before
    assert first["attempts"] == 1
    assert finish(db, client, p, "done", attempt=2) == "done"
    row = push_row(db, p)
    assert (row["status"], row["attempts"]) == ("done", 2)


def test_a_late_defer_does_not_hand_the_push_to_a_third_runner(
    db: Conn, make: Make, client: Row
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    relapse(db, client, p)
    past = clock(db) - timedelta(seconds=1)
    assert finish(db, client, p, "defer", error="search lag", retry_at=past, attempt=1) == (
        "lease_lost"
    )
    assert claim(db, client, owner="runner-3") == []  # attempt 2 is still sending it
    assert status(db, p) == "in_flight"
    assert finish(db, client, p, "done", attempt=2) == "done"


def test_attempt_numbers_are_never_handed_out_again_after_a_lapse(
    db: Conn, make: Make, client: Row
) -> None:
    """Held and deferred finishes give their number back, and push retry starts a fresh
    budget: none of them may let a later claim carry a lapsed claim's number."""
    p = make.push(make.lead(client))
    claim(db, client)  # attempt 1 lapses and stays out there
    assert relapse(db, client, p) == 2
    past = clock(db) - timedelta(seconds=1)
    assert finish(db, client, p, "defer", retry_at=past, attempt=2) == "pending"
    assert [r["attempts"] for r in claim(db, client)] == [2]
    scalar(db, "SELECT crm.hold_pushes(%s, '401')", (client["id"],))
    assert finish(db, client, p, "held", error="401", attempt=2) == "held"
    db.execute(
        "UPDATE crm.client_crm_configs SET api_key = %s WHERE client_id = %s",
        (seal(client["id"], "api_key", "new"), client["id"]),
    )
    assert [r["attempts"] for r in claim(db, client)] == [2]
    assert finish(db, client, p, "failed", error="422", attempt=2) == "failed"
    assert retry(db, client) == 1
    [again] = claim(db, client)
    assert again["attempts"] == 3
    for stale in (1, 2):
        assert finish(db, client, p, "failed", error="late", attempt=stale) == "lease_lost"
    assert finish(db, client, p, "done", attempt=3) == "done"


def test_push_retry_gives_a_fresh_budget_counted_from_attempts_base(db: Conn, make: Make) -> None:
    c = make.client()
    make.crm_config(c, max_attempts=2)
    t = now(db)
    p = make.push(make.lead(c), status="dead", attempts=5, **finished(db))
    assert retry(db, c) == 1
    assert (push_row(db, p)["attempts"], push_row(db, p)["attempts_base"]) == (5, 5)
    [got] = claim(db, c)
    assert got["attempts"] == 6
    assert finish(db, c, p, "retry", error="503", retry_at=clock(db)) == "pending"  # 1 of 2
    [got] = claim(db, c)
    assert got["attempts"] == 7
    assert finish(db, c, p, "retry", error="503", retry_at=clock(db)) == "dead"  # 2 of 2
    # A lapsed lease is judged by the same budget.
    lapsed = {"attempts_base": 5, **in_flight("runner-1", t - timedelta(hours=1))}
    alive = make.push(make.lead(c), attempts=6, **lapsed)
    spent = make.push(make.lead(c), attempts=7, **lapsed)
    claimed = claim(db, c, owner="runner-2")
    assert [(r["id"], r["attempts"]) for r in claimed] == [(alive["id"], 7)]
    assert status(db, spent) == "dead"


def test_attempts_base_stays_within_attempts(db: Conn, make: Make, client: Row) -> None:
    lead = make.lead(client)
    with raises_sqlstate(db, "23514") as info:
        make.push(lead, attempts=2, attempts_base=3)
    assert info.value.diag.constraint_name == "crm_push_queue_attempts_base_check"


@pytest.mark.parametrize(
    "call",
    [
        "SELECT crm.finish_push(%(c)s, %(p)s, 'runner-1', 'done')",
        "SELECT crm.finish_push(%(c)s, %(p)s, 'runner-1', 'failed', 'e')",
        "SELECT crm.finish_push(%(c)s, %(p)s, 'runner-1', 'retry', 'e', now())",
        "SELECT crm.finish_push(%(c)s, %(p)s, 'runner-1', 'retry', 'e', NULL)",
        "SELECT crm.finish_push(%(c)s, %(p)s, 'runner-1', 'done'::text, NULL::text, NULL)",
        # The runner's own call before the claim was named, with its parameters typed as
        # psycopg types them (a missing error or retry_at is an untyped NULL).
        "SELECT crm.finish_push(%(c)s, %(p)s, %(owner)s, %(outcome)s, %(error)s, %(retry_at)s)",
    ],
)
@pytest.mark.parametrize("outcome", ["done", "retry"])
def test_the_old_finish_push_signature_refuses_and_shows_the_new_call(
    db: Conn, make: Make, client: Row, call: str, outcome: str
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    params = {"c": client["id"], "p": p["id"], "owner": "runner-1", "outcome": outcome}
    params |= {"error": None, "retry_at": None}
    if outcome == "retry":
        params |= {"error": "503", "retry_at": clock(db)}
    with raises_sqlstate(db, "0A000") as info:
        db.execute(call.encode(), params)
    assert "claim must be named" in str(info.value.diag.message_primary)
    assert "p_attempt" in str(info.value.diag.message_hint)
    assert "<attempts>" in str(info.value.diag.message_hint)
    assert status(db, p) == "in_flight"


@pytest.mark.parametrize(("attempt", "sqlstate"), [(None, "22004"), (0, "22023"), (-1, "22023")])
def test_finish_needs_the_claims_attempt(
    db: Conn, make: Make, client: Row, attempt: int | None, sqlstate: str
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    with raises_sqlstate(db, sqlstate) as info:
        db.execute(
            "SELECT crm.finish_push(%s, %s, 'runner-1', %s::integer, 'done')",
            (client["id"], p["id"], attempt),
        )
    assert "p_attempt" in str(info.value.diag.message_primary)
    assert "claim_pushes" in str(info.value.diag.message_hint)
    assert status(db, p) == "in_flight"


@pytest.mark.parametrize("outcome", ["retry", "defer"])
@pytest.mark.parametrize(
    "retry_at",
    ["'infinity'", "'-infinity'", "clock_timestamp() + interval '7 days 1 minute'"],
    ids=["infinity", "minus-infinity", "past-the-bound"],
)
def test_finish_refuses_a_retry_at_that_would_park_the_push(
    db: Conn, make: Make, client: Row, outcome: str, retry_at: str
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    before = push_row(db, p)
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            f"SELECT crm.finish_push(%s, %s, 'runner-1', 1, %s, 'e', {retry_at})".encode(),
            (client["id"], p["id"], outcome),
        )
    assert "p_retry_at" in str(info.value.diag.message_primary)
    assert "7 days" in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint
    assert push_row(db, p) == before


def test_finish_takes_a_retry_at_up_to_the_bound(db: Conn, make: Make, client: Row) -> None:
    from agency_crm.push.model import MAX_RETRY_DELAY

    p = make.push(make.lead(client))
    claim(db, client)
    # The bound the runner keeps to is the one the SQL enforces.
    with raises_sqlstate(db, "22023"):
        finish(db, client, p, "retry", retry_at=clock(db) + MAX_RETRY_DELAY + timedelta(seconds=1))
    retry_at = clock(db) + MAX_RETRY_DELAY - timedelta(minutes=1)
    assert finish(db, client, p, "retry", error="429", retry_at=retry_at) == "pending"
    assert push_row(db, p)["run_after"] == retry_at


def test_held_leaves_the_push_pending_when_the_config_is_no_longer_in_error(
    db: Conn, make: Make, client: Row
) -> None:
    """The config was fixed between crm.hold_pushes and this finish (the interleavings with
    the fix still in progress are in test_push_races)."""
    p = make.push(make.lead(client), attempts=2)
    claim(db, client)
    scalar(db, "SELECT crm.hold_pushes(%s, '401')", (client["id"],))
    db.execute(
        "UPDATE crm.client_crm_configs SET api_key = %s WHERE client_id = %s",
        (seal(client["id"], "api_key", "fixed"), client["id"]),
    )
    t = clock(db)
    assert finish(db, client, p, "held", error="401") == "pending"
    row = push_row(db, p)
    assert (row["status"], row["attempts"], row["last_error"], row["lease_owner"]) == (
        "pending",
        2,
        "401",
        None,
    )
    assert t <= row["run_after"] <= clock(db)
    assert ids(claim(db, client)) == {p["id"]}


def test_held_without_a_live_config_leaves_the_push_pending(db: Conn, make: Make) -> None:
    c = make.client()
    make.crm_config(c)
    p = make.push(make.lead(c))
    claim(db, c)
    db.execute(
        "UPDATE crm.client_crm_configs SET deleted_at = now() WHERE client_id = %s", (c["id"],)
    )
    assert finish(db, c, p, "held", error="401") == "pending"
    # It waits for the client's next config (a new config releases nothing held).
    make.crm_config(c)
    assert ids(claim(db, c)) == {p["id"]}


# --- 5. complete_pushes ----------------------------------------------------------------------


def test_complete_pushes_completes_only_the_owners_pushes(
    db: Conn, make: Make, client: Row
) -> None:
    mine = [make.push(make.lead(client)) for _ in range(3)]
    assert ids(claim(db, client, owner="runner-1")) == {p["id"] for p in mine}
    theirs = make.push(make.lead(client))
    assert ids(claim(db, client, owner="runner-2")) == {theirs["id"]}
    waiting = make.push(make.lead(client))
    other = make.client()
    make.crm_config(other)
    elsewhere = make.push(make.lead(other))
    claim(db, other, owner="runner-1")

    every = [p["id"] for p in (*mine, theirs, waiting, elsewhere)]
    before = clock(db)
    assert complete(db, client, "runner-1", every) == 3
    after = clock(db)
    for p in mine:
        row = push_row(db, p)
        assert (row["status"], row["lease_owner"], row["lease_expires_at"]) == ("done", None, None)
        assert before <= row["finished_at"] <= after
    assert push_row(db, theirs)["lease_owner"] == "runner-2"
    assert status(db, theirs) == "in_flight"
    assert status(db, waiting) == "pending"
    assert status(db, elsewhere) == "in_flight"
    assert complete(db, client, "runner-1", every) == 0  # already done
    assert complete(db, client, "runner-1", []) == 0


def test_complete_pushes_completes_only_the_claims_named(db: Conn, make: Make, client: Row) -> None:
    p, q = make.push(make.lead(client)), make.push(make.lead(client))
    claim(db, client)
    assert relapse(db, client, p) == 2  # p was claimed again by the same runner
    assert complete(db, client, "runner-1", [p["id"], q["id"]], [1, 1]) == 1
    assert (status(db, p), status(db, q)) == ("in_flight", "done")
    assert complete(db, client, "runner-1", [p["id"]], [2]) == 1
    assert status(db, p) == "done"


@pytest.mark.parametrize(
    ("push_ids", "attempts"), [([1, 2], [1]), ([1], [1, 1]), ([1], None), (None, [1])]
)
def test_complete_pushes_needs_one_attempt_per_push(
    db: Conn, client: Row, push_ids: list[int] | None, attempts: list[int] | None
) -> None:
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            "SELECT crm.complete_pushes(%s, 'runner-1', %s::bigint[], %s::integer[])",
            (client["id"], push_ids, attempts),
        )
    assert "p_attempts" in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint


@pytest.mark.parametrize(
    "call",
    [
        "SELECT crm.complete_pushes(%(c)s, 'runner-1', ARRAY[%(p)s]::bigint[])",
        "SELECT crm.complete_pushes(%(c)s, 'runner-1', ARRAY[%(p)s]::bigint[], 'skipped')",
    ],
)
def test_the_old_complete_pushes_signature_refuses(
    db: Conn, make: Make, client: Row, call: str
) -> None:
    p = make.push(make.lead(client))
    claim(db, client)
    with raises_sqlstate(db, "0A000") as info:
        db.execute(call.encode(), {"c": client["id"], "p": p["id"]})
    assert "p_attempts" in str(info.value.diag.message_hint)
    assert status(db, p) == "in_flight"


# --- 6. hold_pushes and the credentials trigger ----------------------------------------------


@pytest.fixture
def held_client(db: Conn, make: Make) -> tuple[Row, list[Row]]:
    """A client whose CRM refused the credentials: two held pushes."""
    c = make.client()
    make.crm_config(c, connection_status="connected")
    pushes = [make.push(make.lead(c)) for _ in range(2)]
    assert scalar(db, "SELECT crm.hold_pushes(%s, %s)", (c["id"], "401 bad key")) == 2
    return c, pushes


def test_hold_pushes_marks_the_config_and_holds_its_pending_pushes(db: Conn, make: Make) -> None:
    c = make.client()
    make.crm_config(c, connection_status="connected")
    t = now(db)
    pending = [make.push(make.lead(c)) for _ in range(2)]
    flying = make.push(make.lead(c), **in_flight("runner-1", t + timedelta(minutes=5)))
    done = make.push(make.lead(c), status="done", **finished(db))
    other = make.client()
    make.crm_config(other)
    elsewhere = make.push(make.lead(other))

    assert scalar(db, "SELECT crm.hold_pushes(%s, %s)", (c["id"], "401 bad key")) == 2
    cfg = config_of(db, c)
    assert (cfg["connection_status"], cfg["last_error"]) == ("error", "401 bad key")
    for p in pending:
        row = push_row(db, p)
        assert (row["status"], row["last_error"], row["attempts"]) == ("held", "401 bad key", 0)
    assert status(db, flying) == "in_flight"
    assert status(db, done) == "done"
    assert status(db, elsewhere) == "pending"
    assert config_of(db, other)["connection_status"] == "pending"
    assert claim(db, c) == []


def test_new_credentials_reset_the_config_and_release_held_pushes(
    db: Conn, held_client: tuple[Row, list[Row]]
) -> None:
    c, pushes = held_client
    db.execute(
        "UPDATE crm.client_crm_configs SET api_key = %s WHERE client_id = %s",
        (seal(c["id"], "api_key", "new-key"), c["id"]),
    )
    cfg = config_of(db, c)
    assert (cfg["connection_status"], cfg["last_error"]) == ("pending", None)
    t = now(db)
    for p in pushes:
        row = push_row(db, p)
        assert row["status"] == "pending"
        assert t <= row["run_after"] <= clock(db)
    assert ids(claim(db, c)) == {p["id"] for p in pushes}


def test_leaving_error_releases_held_pushes(db: Conn, held_client: tuple[Row, list[Row]]) -> None:
    c, pushes = held_client
    db.execute(
        "UPDATE crm.client_crm_configs SET connection_status = 'connected' WHERE client_id = %s",
        (c["id"],),
    )
    assert config_of(db, c)["connection_status"] == "connected"
    t = now(db)
    for p in pushes:
        row = push_row(db, p)
        assert row["status"] == "pending"
        assert t <= row["run_after"] <= clock(db)
    assert ids(claim(db, c)) == {p["id"] for p in pushes}


def test_other_config_changes_keep_pushes_held(
    db: Conn, held_client: tuple[Row, list[Row]]
) -> None:
    c, pushes = held_client
    db.execute(
        "UPDATE crm.client_crm_configs SET pipeline_id = 'p9', stage_id = 's1' "
        "WHERE client_id = %s",
        (c["id"],),
    )
    cfg = config_of(db, c)
    assert (cfg["connection_status"], cfg["last_error"]) == ("error", "401 bad key")
    assert {status(db, p) for p in pushes} == {"held"}


def test_releasing_held_pushes_when_a_newer_pending_push_of_the_entity_exists(
    db: Conn, held_client: tuple[Row, list[Row]], make: Make
) -> None:
    """Pushes are still enqueued while the config is in error; one of the same entity and
    operation as a held push must not make fixing the config fail."""
    c, pushes = held_client
    lead_id = pushes[0]["lead_id"]
    newer = make.push({"id": lead_id, "client_id": c["id"]})  # same entity and operation
    db.execute(
        "UPDATE crm.client_crm_configs SET connection_status = 'connected' WHERE client_id = %s",
        (c["id"],),
    )
    assert status(db, newer) == "pending"
    assert status(db, pushes[1]) == "pending"
    pending = scalar(
        db,
        "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND lead_id = %s "
        "AND status = 'pending'",
        (c["id"], lead_id),
    )
    assert pending == 1
    assert (
        scalar(
            db,
            "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND status = 'held'",
            (c["id"],),
        )
        == 0
    )


# --- 7. retry_pushes -------------------------------------------------------------------------


def stuck(db: Conn, make: Make, lead: Row, state: str, **kw: Any) -> Row:
    return make.push(lead, status=state, attempts=10, last_error="boom", **finished(db), **kw)


def test_retry_pushes_puts_dead_and_failed_pushes_back(db: Conn, make: Make, client: Row) -> None:
    dead = stuck(db, make, make.lead(client), "dead")
    failed = stuck(db, make, make.lead(client), "failed")
    done = make.push(make.lead(client), status="done", **finished(db))
    held = make.push(make.lead(client), status="held")

    assert retry(db, client) == 2
    t = now(db)
    for p in (dead, failed):
        row = push_row(db, p)
        # A fresh budget from attempt 10 on: the attempt numbers are not handed out again.
        assert (
            row["status"],
            row["attempts"],
            row["attempts_base"],
            row["finished_at"],
            row["lease_owner"],
            row["lease_expires_at"],
        ) == ("pending", 10, 10, None, None, None)
        assert t <= row["run_after"] <= clock(db)
    assert status(db, done) == "done"
    assert status(db, held) == "held"
    assert {(r["id"], r["attempts"]) for r in claim(db, client)} == {
        (dead["id"], 11),
        (failed["id"], 11),
    }


def test_retry_pushes_filters_by_client_status_and_id(db: Conn, make: Make) -> None:
    a, b = make.client(), make.client()
    make.crm_config(a)
    make.crm_config(b)
    a_dead, a_failed = (
        stuck(db, make, make.lead(a), "dead"),
        stuck(db, make, make.lead(a), "failed"),
    )
    b_dead, b_failed = (
        stuck(db, make, make.lead(b), "dead"),
        stuck(db, make, make.lead(b), "failed"),
    )
    b_held = make.push(make.lead(b), status="held")
    b_dead2 = stuck(db, make, make.lead(b), "dead")

    assert retry(db, a, ["dead"]) == 1
    assert [status(db, p) for p in (a_dead, a_failed, b_dead, b_failed)] == [
        "pending",
        "failed",
        "dead",
        "failed",
    ]
    assert retry(db, None, ["failed"], [b_failed["id"]]) == 1
    assert [status(db, p) for p in (a_failed, b_failed, b_dead)] == ["failed", "pending", "dead"]
    assert retry(db, None, ["held"]) == 1
    assert status(db, b_held) == "pending"
    assert retry(db, b, push_ids=[b_dead2["id"]]) == 1
    assert [status(db, p) for p in (b_dead, b_dead2)] == ["dead", "pending"]
    assert retry(db) == 2  # the rest: a_failed and b_dead
    assert {status(db, p) for p in (a_failed, b_dead)} == {"pending"}
    assert retry(db) == 0


def test_retry_pushes_sends_back_only_the_newest_of_one_entity_and_operation(
    db: Conn, make: Make, client: Row
) -> None:
    lead = make.lead(client)
    older = stuck(db, make, lead, "dead", operation="deal_updated")
    newer = stuck(db, make, lead, "failed", operation="deal_updated")
    other_op = stuck(db, make, lead, "dead", operation="meeting_outcome")
    assert retry(db, client) == 2
    assert [status(db, p) for p in (older, newer, other_op)] == ["dead", "pending", "pending"]


def test_retry_pushes_leaves_a_push_alone_when_its_entity_has_a_pending_one(
    db: Conn, make: Make, client: Row
) -> None:
    lead = make.lead(client)
    dead = stuck(db, make, lead, "dead", operation="deal_updated")
    dead_other_op = stuck(db, make, lead, "dead", operation="meeting_outcome")
    pending = make.push(lead, operation="deal_updated")
    assert retry(db, client) == 1
    assert [status(db, p) for p in (dead, dead_other_op, pending)] == [
        "dead",
        "pending",
        "pending",
    ]


@pytest.mark.parametrize(
    "statuses",
    [["pending"], ["in_flight"], ["done"], ["dead", "bogus"], [None], [], None],
    ids=["pending", "in_flight", "done", "bogus", "null-element", "empty", "null"],
)
def test_retry_pushes_rejects_bad_statuses(
    db: Conn, make: Make, client: Row, statuses: list[str | None] | None
) -> None:
    dead = stuck(db, make, make.lead(client), "dead")
    with raises_sqlstate(db, "22023") as info:
        db.execute("SELECT crm.retry_pushes(NULL, %s::text[], NULL)", (statuses,))
    assert "p_statuses" in str(info.value.diag.message_primary)
    assert info.value.diag.message_hint
    assert status(db, dead) == "dead"


# --- 8. push_queue_status ----------------------------------------------------------------


def queue_status(db: Conn, client: Row | None = None) -> dict[Any, Row]:
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM crm.push_queue_status(%s::uuid)",
            (None if client is None else client["id"],),
        ).fetchall()
    return {r["client_id"]: r for r in rows}


COUNTS = ("pending", "due", "in_flight", "held", "failed", "dead")


def test_queue_status_counts_per_client(db: Conn, make: Make) -> None:
    t = now(db)
    busy = make.client()
    make.crm_config(busy, connection_status="connected", last_error="slow")
    make.push(make.lead(busy), created_at=t - timedelta(hours=2))
    make.push(make.lead(busy), created_at=t - timedelta(hours=5), run_after=t + timedelta(hours=1))
    make.push(make.lead(busy), created_at=t - timedelta(hours=9), run_after=t - timedelta(hours=1))
    make.push(make.lead(busy), **in_flight("runner-1", t + timedelta(minutes=5)))
    make.push(make.lead(busy), status="held", created_at=t - timedelta(days=3))
    for state, n in (("failed", 2), ("dead", 3), ("done", 4)):
        for _ in range(n):
            make.push(make.lead(busy), status=state, **finished(db))

    idle = make.client()
    make.crm_config(idle)
    orphan = make.client()  # no config (any more), but pushes left
    make.push(make.lead(orphan), status="dead", **finished(db))
    unconfigured = make.client()
    make.lead(unconfigured)
    finished_only = make.client()
    make.push(make.lead(finished_only), status="done", **finished(db))

    status_by_client = queue_status(db)
    assert unconfigured["id"] not in status_by_client
    assert finished_only["id"] not in status_by_client

    row = status_by_client[busy["id"]]
    assert tuple(row[k] for k in COUNTS) == (3, 2, 1, 1, 2, 3)
    assert row["oldest_pending_at"] == t - timedelta(hours=9)
    assert row["next_run_after"] == t - timedelta(hours=1)
    assert (row["client_name"], row["crm_type"], row["connection_status"], row["is_active"]) == (
        busy["name"],
        "pipedrive",
        "connected",
        True,
    )
    assert row["last_error"] == "slow"

    row = status_by_client[idle["id"]]
    assert tuple(row[k] for k in COUNTS) == (0,) * 6
    assert (row["oldest_pending_at"], row["crm_type"]) == (None, "pipedrive")

    row = status_by_client[orphan["id"]]
    assert tuple(row[k] for k in COUNTS) == (0, 0, 0, 0, 0, 1)
    assert (row["crm_type"], row["connection_status"]) == (None, None)

    assert list(queue_status(db, idle)) == [idle["id"]]
    assert queue_status(db, unconfigured) == {}


# --- 9. NOTIFY -------------------------------------------------------------------------------


def seed_client(conn: Conn) -> Row:
    make = Make(conn)
    c = make.client()
    make.crm_config(c)
    lead = make.lead(c)
    conn.commit()
    return lead


def book(conn: Conn, lead: Row, day: int) -> None:
    Make(conn).meeting(lead, scheduled_at=T0 + timedelta(days=day))


def test_committed_pushes_notify_a_listener(fresh_db: Conn) -> None:
    lead_a, lead_b = seed_client(fresh_db), seed_client(fresh_db)
    with psycopg.connect(fresh_db.info.dsn, autocommit=True) as listener:
        listener.execute("LISTEN crm_push_queue")
        book(fresh_db, lead_a, 1)
        book(fresh_db, lead_a, 2)  # a second statement: folded into one notification
        fresh_db.commit()
        got = list(listener.notifies(timeout=10, stop_after=1))
        got += list(listener.notifies(timeout=0.3))
        assert [(n.channel, n.payload, n.pid) for n in got] == [
            ("crm_push_queue", str(lead_a["client_id"]), fresh_db.info.backend_pid)
        ]

        # A bulk insert for two clients: one notification per client.
        fresh_db.execute(
            "INSERT INTO crm.meetings (client_id, lead_id, scheduled_at) "
            "VALUES (%s, %s, %s), (%s, %s, %s)",
            (lead_a["client_id"], lead_a["id"], T0, lead_b["client_id"], lead_b["id"], T0),
        )
        fresh_db.commit()
        got = list(listener.notifies(timeout=10, stop_after=2))
        got += list(listener.notifies(timeout=0.3))
        assert sorted(n.payload for n in got) == sorted(
            [str(lead_a["client_id"]), str(lead_b["client_id"])]
        )


def test_rolled_back_pushes_do_not_notify(fresh_db: Conn) -> None:
    lead_a, lead_b = seed_client(fresh_db), seed_client(fresh_db)
    with psycopg.connect(fresh_db.info.dsn, autocommit=True) as listener:
        listener.execute("LISTEN crm_push_queue")
        book(fresh_db, lead_a, 1)
        assert scalar(fresh_db, "SELECT count(*) FROM crm.crm_push_queue") == 1
        fresh_db.rollback()
        # Notifications arrive in commit order: had the rolled-back one been sent, it would
        # come before this one.
        book(fresh_db, lead_b, 1)
        fresh_db.commit()
        got = list(listener.notifies(timeout=10, stop_after=1))
        got += list(listener.notifies(timeout=0.3))
        assert [n.payload for n in got] == [str(lead_b["client_id"])]


# --- 10. several runners at once -------------------------------------------------------------


@dataclass
class Claimed:
    push_id: int
    lead_id: Any
    runner: str
    claimed_seq: int
    completed_seq: int | None = None


def test_concurrent_runners_claim_each_push_once_one_per_lead_in_order(
    fresh_db: Conn,
) -> None:
    make = Make(fresh_db)
    client = make.client()
    make.crm_config(client)
    leads = [make.lead(client)["id"] for _ in range(100)]
    rng = random.Random(20260105)
    rows = []
    for op in OPS:  # each lead's pushes interleaved with the other leads', in shuffled order
        rng.shuffle(leads)
        rows += [(client["id"], op, lead) for lead in leads]
    with fresh_db.cursor() as cur:
        cur.executemany(
            "INSERT INTO crm.crm_push_queue (client_id, operation, lead_id) VALUES (%s, %s, %s)",
            rows,
        )
    fresh_db.commit()
    assert scalar(fresh_db, "SELECT count(*) FROM crm.crm_push_queue") == 400

    lock = threading.Lock()
    seq = itertools.count()
    claims: list[Claimed] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 60
    start = threading.Barrier(4)

    def runner(name: str) -> None:
        local = random.Random(name)
        try:
            with psycopg.connect(fresh_db.info.dsn, autocommit=True) as conn:
                start.wait(timeout=30)
                while time.monotonic() < deadline:
                    got = conn.execute(
                        "SELECT id, lead_id FROM crm.claim_pushes(%s, %s, 10, 300)",
                        (client["id"], name),
                    ).fetchall()
                    if not got:
                        left = scalar(
                            conn,
                            "SELECT count(*) FROM crm.crm_push_queue "
                            "WHERE client_id = %s AND status <> 'done'",
                            (client["id"],),
                        )
                        if left == 0:
                            return
                        time.sleep(0.001)
                        continue
                    # Recorded after the claim committed ...
                    with lock:
                        mine = [Claimed(i, lead, name, next(seq)) for i, lead in got]
                        claims.extend(mine)
                    local.shuffle(mine)
                    while mine:
                        k = local.randint(1, 4)
                        chunk, mine = mine[:k], mine[k:]
                        time.sleep(local.random() * 0.002)
                        # ... and completion recorded before it commits, so the recorded
                        # interval lies inside the real one.
                        with lock:
                            for c in chunk:
                                c.completed_seq = next(seq)
                        n = complete(conn, client, name, [c.push_id for c in chunk])
                        assert n == len(chunk), f"{name} completed {n} of {len(chunk)}"
                raise AssertionError(f"{name} ran out of time")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(f"runner-{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    claimed_ids = [c.push_id for c in claims]
    assert len(claimed_ids) == len(set(claimed_ids)) == 400  # each push claimed exactly once
    assert (
        scalar(
            fresh_db,
            "SELECT count(*) FROM crm.crm_push_queue WHERE status = 'done' AND attempts = 1",
        )
        == 400
    )

    by_lead: dict[Any, list[Claimed]] = {}
    for c in claims:
        by_lead.setdefault(c.lead_id, []).append(c)
    assert len(by_lead) == 100
    for lead_claims in by_lead.values():
        lead_claims.sort(key=lambda c: c.claimed_seq)
        assert [c.push_id for c in lead_claims] == sorted(c.push_id for c in lead_claims)
        for earlier, later in itertools.pairwise(lead_claims):
            assert earlier.completed_seq is not None
            assert earlier.completed_seq < later.claimed_seq, "two pushes of a lead in flight"
