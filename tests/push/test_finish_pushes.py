"""crm.finish_pushes: many claims finished in one call, each exactly as crm.finish_push
finishes it; and crm.write_push_log, the audit rows written with it."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.fixtures import Make

OUTCOMES = ["done", "retry", "defer", "failed", "held", "done", "retry"]
COMPARED = ("status", "attempts", "lease_owner", "lease_expires_at", "last_error")


def queued(pmake: Make, n: int, **config: Any) -> Any:
    """A client with a CRM config and n pushes (one booking of each of n leads)."""
    client = pmake.client()
    pmake.crm_config(client, max_attempts=2, **config)
    for _ in range(n):
        pmake.meeting(pmake.lead(client))
    return client


def claim(conn: psycopg.Connection[Any], client: Any, owner: str, n: int = 100) -> list[Any]:
    return conn.execute(
        "SELECT id, attempts FROM crm.claim_pushes(%s, %s, %s, 300) ORDER BY id",
        (client["id"], owner, n),
    ).fetchall()


def rows(conn: psycopg.Connection[Any], client: Any) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT *, run_after > now() AS later, finished_at IS NOT NULL AS finished"
        " FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id",
        (client["id"],),
    ).fetchall()


def test_each_outcome_is_what_finish_push_makes_of_it(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make
) -> None:
    """Two identical queues: one finished push by push (crm.finish_push), the other in one
    call; every row ends the same (status, attempts, lease, error, when it runs again)."""
    conn, _url = pushdb
    n = len(OUTCOMES)
    one, many = queued(pmake, n), queued(pmake, n)
    for client in (one, many):
        # held is held only while the config is in error: put both in error.
        conn.execute(
            "UPDATE crm.client_crm_configs SET connection_status = 'error' WHERE client_id = %s",
            (client["id"],),
        )
        conn.execute(
            "UPDATE crm.client_crm_configs SET connection_status = 'connected'"
            " WHERE client_id = %s",
            (client["id"],),
        )
    claimed_one, claimed_many = claim(conn, one, "r1"), claim(conn, many, "r2")
    assert len(claimed_one) == len(claimed_many) == n
    later = conn.execute("SELECT now() + interval '1 minute'").fetchone()[0]  # type: ignore[index]
    errors = [None if o == "done" else f"{o}: the CRM said so" for o in OUTCOMES]
    retry_ats = [later if o in ("retry", "defer") else None for o in OUTCOMES]
    singles = [
        conn.execute(
            "SELECT crm.finish_push(%s, %s, 'r1', %s, %s, %s, %s)",
            (one["id"], push_id, attempt, outcome, error, retry_at),
        ).fetchone()[0]  # type: ignore[index]
        for (push_id, attempt), outcome, error, retry_at in zip(
            claimed_one, OUTCOMES, errors, retry_ats, strict=True
        )
    ]
    batch = dict(
        conn.execute(
            "SELECT * FROM crm.finish_pushes(%s, 'r2', %s, %s, %s, %s, %s)",
            (
                many["id"],
                [p for p, _ in claimed_many],
                [a for _, a in claimed_many],
                OUTCOMES,
                errors,
                retry_ats,
            ),
        ).fetchall()
    )
    assert [batch[p] for p, _ in claimed_many] == singles
    assert "done" in singles and "failed" in singles and "pending" in singles
    a, b = rows(conn, one), rows(conn, many)
    for x, y in zip(a, b, strict=True):
        assert {k: x[k] for k in (*COMPARED, "later", "finished")} == {
            k: y[k] for k in (*COMPARED, "later", "finished")
        }


def test_a_lapsed_claim_in_the_set_is_lease_lost_and_the_rest_finish(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make
) -> None:
    conn, _url = pushdb
    client = queued(pmake, 3)
    claimed = claim(conn, client, "old")
    taken = claimed[1][0]
    # Its lease lapsed; another runner took it (attempt 2).
    conn.execute(
        "UPDATE crm.crm_push_queue SET lease_expires_at = now() - interval '1 s' WHERE id = %s",
        (taken,),
    )
    conn.execute("SELECT * FROM crm.claim_pushes(%s, 'new', 1, 300)", (client["id"],))
    result = dict(
        conn.execute(
            "SELECT * FROM crm.finish_pushes(%s, 'old', %s, %s, %s)",
            (client["id"], [p for p, _ in claimed], [a for _, a in claimed], ["done"] * 3),
        ).fetchall()
    )
    assert result == {claimed[0][0]: "done", taken: "lease_lost", claimed[2][0]: "done"}
    now = {r["id"]: (r["status"], r["lease_owner"], r["attempts"]) for r in rows(conn, client)}
    assert now[taken] == ("in_flight", "new", 2)


def test_a_push_of_another_client_refuses_the_whole_set(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make
) -> None:
    conn, _url = pushdb
    mine, theirs = queued(pmake, 2), queued(pmake, 1)
    claimed = claim(conn, mine, "r")
    [(their_push, _)] = claim(conn, theirs, "r")
    with pytest.raises(psycopg.errors.NoDataFound) as caught:
        conn.execute(
            "SELECT * FROM crm.finish_pushes(%s, 'r', %s, %s, %s)",
            (mine["id"], [claimed[0][0], their_push], [1, 1], ["done", "done"]),
        )
    assert str(their_push) in str(caught.value)
    assert caught.value.diag.message_hint
    # Nothing finished: not even the push of the set that was the client's own.
    assert {r["status"] for r in rows(conn, mine)} == {"in_flight"}
    assert {r["status"] for r in rows(conn, theirs)} == {"in_flight"}


@pytest.mark.parametrize(
    ("ids", "attempts", "outcomes", "words"),
    [
        ([1, 2], [1], ["done", "done"], "one entry per push"),
        ([1, 1], [1, 1], ["done", "done"], "names a push twice"),
        (None, [1], ["done"], "one entry per push"),
    ],
)
def test_bad_arguments_are_refused_with_a_hint(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    ids: Any,
    attempts: Any,
    outcomes: Any,
    words: str,
) -> None:
    conn, _url = pushdb
    client = queued(pmake, 1)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute(
            "SELECT * FROM crm.finish_pushes(%s, 'r', %s, %s, %s)",
            (client["id"], ids, attempts, outcomes),
        )
    assert words in str(caught.value) and caught.value.diag.message_hint


def test_a_second_finisher_of_the_same_pushes_waits_and_changes_nothing(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make
) -> None:
    """A finishes its claims and holds its transaction open; B (a stale finisher naming the
    same pushes, in the other order and with other outcomes) waits for A's row locks, then
    finds the claims no longer its own: lease_lost for both, A's outcome kept. (Both lock
    a set's rows in push-id order before touching any, so two such finishers never hold one
    row each while waiting for the other's.)"""
    conn, url = pushdb
    client = queued(pmake, 2)
    [(p1, a1), (p2, a2)] = claim(conn, client, "A")
    with psycopg.connect(url) as a_conn, psycopg.connect(url) as b_conn:
        a_conn.execute(
            "SELECT * FROM crm.finish_pushes(%s, 'A', %s, %s, %s)",
            (client["id"], [p1, p2], [a1, a2], ["done", "done"]),
        ).fetchall()  # A's transaction stays open, holding both rows
        outcome: dict[str, Any] = {}

        def finish_b() -> None:
            try:
                outcome["rows"] = b_conn.execute(
                    "SELECT * FROM crm.finish_pushes(%s, 'B', %s, %s, %s)",
                    (
                        client["id"],
                        [p2, p1],
                        [a2, a1],
                        ["failed", "done"],
                    ),
                ).fetchall()
                b_conn.commit()
            except psycopg.Error as exc:  # a deadlock would land here
                outcome["error"] = exc

        b = threading.Thread(target=finish_b)
        b.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%finish_pushes%%'"
            ).fetchone()
            if waiting and waiting[0] >= 1:
                break
            time.sleep(0.02)
        assert b.is_alive(), "B did not wait for A's locks"
        a_conn.commit()
        b.join(timeout=10)
    assert "error" not in outcome, outcome.get("error")
    assert dict(outcome["rows"]) == {p1: "lease_lost", p2: "lease_lost"}
    assert {r["status"] for r in rows(conn, client)} == {"done"}


def test_write_push_log_writes_the_rows_given_for_its_client_only(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make
) -> None:
    conn, _url = pushdb
    client, other = pmake.client(), pmake.client()
    config = pmake.crm_config(client)
    entries = [
        {"crm_config_id": str(config["id"]), "operation": "create_deal", "status": "success",
         "http_status": 201, "request_payload": {"path": "/x", "body": {"a": [1, None]}},
         "response_payload": None, "duration_ms": 12},
        {"crm_config_id": str(config["id"]), "operation": "find_contact", "status": "failed",
         "error_code": "timeout", "error_message": "ReadTimeout"},
    ]  # fmt: skip
    n = conn.execute("SELECT crm.write_push_log(%s, %s)", (client["id"], Jsonb(entries))).fetchone()
    assert n == (2,)
    cur = conn.cursor(row_factory=dict_row)
    written = cur.execute(
        "SELECT * FROM crm.crm_push_log WHERE client_id = %s ORDER BY operation", (client["id"],)
    ).fetchall()
    assert [r["operation"] for r in written] == ["create_deal", "find_contact"]
    assert written[0]["request_payload"] == {"path": "/x", "body": {"a": [1, None]}}
    assert written[0]["response_payload"] is None and written[1]["duration_ms"] == 0
    assert conn.execute(
        "SELECT count(*) FROM crm.crm_push_log WHERE client_id = %s", (other["id"],)
    ).fetchone() == (0,)
    with pytest.raises(psycopg.errors.InvalidParameterValue) as caught:
        conn.execute("SELECT crm.write_push_log(%s, %s)", (client["id"], Jsonb({"a": 1})))
    assert "JSON array" in str(caught.value) and caught.value.diag.message_hint
    # A bad row refuses the whole set.
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "SELECT crm.write_push_log(%s, %s)",
            (client["id"], Jsonb([entries[0], {**entries[1], "status": "maybe"}])),
        )
    assert conn.execute(
        "SELECT count(*) FROM crm.crm_push_log WHERE client_id = %s", (client["id"],)
    ).fetchone() == (2,)
