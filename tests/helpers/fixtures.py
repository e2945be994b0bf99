"""Factory fixtures: insert valid rows with defaults, override any column."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from agency_crm import crypto

Row = dict[str, Any]


def seal(client_id: Any, column: str, plaintext: str | None) -> str | None:
    """A secret as agency-crm stores it: encrypted under the suite's key (tests/conftest.py)."""
    if plaintext is None:
        return None
    return crypto.KeyRing.from_environment().encrypt(plaintext, client_id=client_id, column=column)


def unseal(client_id: Any, column: str, stored: str | None) -> str | None:
    """The plaintext of a stored secret."""
    if stored is None:
        return None
    return crypto.KeyRing.from_environment().decrypt(stored, client_id=client_id, column=column)


def sealed(table: str, values: Row) -> Row:
    """``values`` for crm.<table> with plaintext secrets encrypted (other tables: as given)."""
    out = dict(values)
    for column in crypto.SECRET_COLUMNS.get(table, ()):
        value = out.get(column)
        if isinstance(value, str) and not crypto.is_envelope(value):
            out[column] = seal(out["client_id"], column, value)
    return out


def revealed(table: str, row: Row) -> Row:
    """A row of crm.<table> with its secrets decrypted."""
    out = dict(row)
    for column in crypto.SECRET_COLUMNS.get(table, ()):
        if out.get(column) is not None:
            out[column] = unseal(out["client_id"], column, out[column])
    return out


# One TLS context for every test HTTP client: httpx loads the CA bundle for each client made
# without one (about 50 ms of CPU each). The tests only speak plain HTTP to loopback.
TLS = httpx.create_ssl_context()


def insert(conn: psycopg.Connection[Any], table: str, values: Row) -> Row:
    """INSERT INTO crm.<table> (...) VALUES (...) RETURNING *, as a dict."""
    query = sql.SQL("INSERT INTO crm.{table} ({cols}) VALUES ({vals}) RETURNING *").format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, values)),
        vals=sql.SQL(", ").join(map(sql.Placeholder, values)),
    )
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query, values).fetchone()
    assert row is not None
    return row


def pick(row: Row, *columns: str) -> tuple[Any, ...]:
    """The row's values of ``columns``, as a tuple to compare in one assert."""
    return tuple(row[c] for c in columns)


def count(conn: psycopg.Connection[Any], table: str) -> int:
    query = sql.SQL("SELECT count(*) FROM crm.{}").format(sql.Identifier(table))
    row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


@contextmanager
def raises_sqlstate(
    conn: psycopg.Connection[Any], sqlstate: str
) -> Iterator[pytest.ExceptionInfo[psycopg.Error]]:
    """Expect the block to fail with ``sqlstate``; roll back to a savepoint so the test's
    transaction stays usable."""
    with pytest.raises(psycopg.Error) as info:
        with conn.transaction():
            yield info
    assert info.value.sqlstate == sqlstate, (
        f"expected SQLSTATE {sqlstate}, got {info.value.sqlstate}: {info.value}"
    )


def wait_until_blocked(dsn: str, pid: int, timeout: float = 30.0) -> None:
    """Return once the session ``pid`` waits for a lock another session holds, so that two
    sessions' statements truly overlap (polled from a third session: pg_stat_activity is a
    per-transaction snapshot)."""
    with psycopg.connect(dsn, autocommit=True) as monitor:
        deadline = time.monotonic() + timeout
        while monitor.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone() != ("Lock",):
            assert time.monotonic() < deadline, f"session {pid} never waited for a lock"
            time.sleep(0.005)


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Make:
    """Row factories. Each takes the parent row (or client) and column overrides."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def client(self, **kw: Any) -> Row:
        return insert(self.conn, "clients", {"name": f"Client {uuid.uuid4().hex[:6]}", **kw})

    def campaign(self, client: Row, **kw: Any) -> Row:
        return insert(self.conn, "campaigns", {"client_id": client["id"], "name": "Q1", **kw})

    def lead(self, client: Row, **kw: Any) -> Row:
        values = {
            "client_id": client["id"],
            "email": f"{uuid.uuid4().hex[:10]}@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "company": "Analytical Engines",
            **kw,
        }
        return insert(self.conn, "leads", values)

    def activity(self, lead: Row, **kw: Any) -> Row:
        values = {"client_id": lead["client_id"], "lead_id": lead["id"], "channel": "email", **kw}
        return insert(self.conn, "activities", values)

    def meeting(self, lead: Row, **kw: Any) -> Row:
        values = {
            "client_id": lead["client_id"],
            "lead_id": lead["id"],
            "scheduled_at": T0 + timedelta(days=7),
            "duration_minutes": 30,
            **kw,
        }
        return insert(self.conn, "meetings", values)

    def deal(self, lead: Row, **kw: Any) -> Row:
        values = {
            "client_id": lead["client_id"],
            "lead_id": lead["id"],
            "name": "Pilot",
            "value": 1000,
            "currency": "AUD",
            "probability": 20,
            **kw,
        }
        return insert(self.conn, "deals", values)

    def stage_change(self, deal: Row, **kw: Any) -> Row:
        values = {
            "client_id": deal["client_id"],
            "deal_id": deal["id"],
            "to_stage": "qualification",
            "probability": 20,
            "value": 1000,
            **kw,
        }
        return insert(self.conn, "deal_stage_history", values)

    def crm_config(self, client: Row, **kw: Any) -> Row:
        """A CRM config; plaintext secrets given are stored encrypted, as agency-crm does."""
        values = {"client_id": client["id"], "crm_type": "pipedrive", "api_key": "pd-key", **kw}
        return insert(self.conn, "client_crm_configs", sealed("client_crm_configs", values))

    def external_id(self, config: Row, **kw: Any) -> Row:
        values = {
            "client_id": config["client_id"],
            "crm_config_id": config["id"],
            "entity_type": "lead",
            "external_key": f"lead:{uuid.uuid4()}",
            "crm_id": "123",
            **kw,
        }
        return insert(self.conn, "crm_external_ids", values)

    def push(self, lead: Row, **kw: Any) -> Row:
        values = {
            "client_id": lead["client_id"],
            "operation": "meeting_booked",
            "lead_id": lead["id"],
            **kw,
        }
        return insert(self.conn, "crm_push_queue", values)

    def push_log(self, client: Row, **kw: Any) -> Row:
        values = {
            "client_id": client["id"],
            "operation": "create_deal",
            "status": "success",
            **kw,
        }
        return insert(self.conn, "crm_push_log", values)


@pytest.fixture
def make(db: psycopg.Connection[Any]) -> Make:
    return Make(db)
