"""Collecting a report: each section is one call of an analytics function (a named query of
``sql/queries/report.sql``) with the report's arguments, its rows kept as the function returned
them. Nothing is computed here: the arguments are checked and chosen (the as-of, the currency),
the rows are read.

Call it inside :func:`snapshot` (or the API's transaction, which does the same) so that every
section reads the same snapshot of the database. A synchronous and an asynchronous version:
the CLI and the demo hold a connection, the API an async pool.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agency_crm.queries import REPORT
from agency_crm.report.model import (
    AGENCY_SECTIONS,
    CLIENT_SECTIONS,
    DEFAULT_DAYS,
    MAX_DAYS,
    Report,
    Row,
    Section,
    Table,
)
from agency_crm.service.errors import Invalid, NotFound

CURRENCY = re.compile(r"[A-Z]{3}")
# The argument an analytics function names in a 22023, as the report's callers name it.
ARGUMENTS = {"p_days": "days", "p_as_of": "as_of", "p_currency": "currency"}


# ----------------------------------------------------------------------------- arguments


def client_sections(keys: Iterable[str] | None = None) -> tuple[Section, ...]:
    """The sections of a client's report named by ``keys`` (their JSON keys or API slugs), in
    the report's order; all of them when ``keys`` is None or empty."""
    wanted = {k.strip().replace("-", "_") for k in keys or ()}
    known = {s.key for s in CLIENT_SECTIONS}
    unknown = sorted(wanted - known)
    if unknown:
        raise Invalid(
            f"no section {unknown[0]!r} in a client's report",
            hint="the sections: " + ", ".join(s.key for s in CLIENT_SECTIONS),
            field="section",
        )
    return tuple(s for s in CLIENT_SECTIONS if not wanted or s.key in wanted)


def check_arguments(days: int, as_of: datetime | None, currency: str | None) -> None:
    """The arguments every report takes, refused (naming the field) before any call."""
    if not 1 <= days <= MAX_DAYS:
        raise Invalid(
            f"days {days} is not a window the analytics take",
            hint=f"give a whole number of days from 1 to {MAX_DAYS:,}",
            field="days",
        )
    if as_of is not None and as_of.tzinfo is None:
        raise Invalid(
            "as_of has no time zone",
            hint="give the end of the window with its offset, e.g. 2026-06-01T00:00:00+00:00",
            field="as_of",
        )
    if as_of is not None:
        try:
            as_of.astimezone(UTC)
        except OverflowError:  # in UTC, before the year 1 or after 9999
            raise Invalid(
                f"as_of {as_of.isoformat()} is not a time of the years 1 to 9999",
                hint="give the end of the window, e.g. 2026-06-01T00:00:00+00:00",
                field="as_of",
            ) from None
    if currency is not None and not CURRENCY.fullmatch(currency):
        raise Invalid(
            f"currency {currency!r} is not an ISO-4217 code",
            hint="give three upper-case letters, e.g. AUD",
            field="currency",
        )


def choose_currency(head: Row, currency: str | None) -> str:
    """The currency of a client's report: the one asked for, else the one its deals carry,
    else (no deal) its default. Money is never summed across currencies: a client whose
    deals carry several must be asked for one."""
    if currency is not None:
        return currency
    found: list[str] = list(head["deal_currencies"] or [])
    if len(found) > 1:
        raise Invalid(
            f"the deals of {head['name']} carry several currencies ({', '.join(found)})",
            hint="money is never summed across currencies: report one of them (--currency "
            f"{found[0]}, or currency={found[0]} in the API)",
            field="currency",
        )
    return found[0] if found else str(head["default_currency"])


def refused(exc: psycopg.Error) -> Invalid:
    """An analytics function's refusal of an argument (22023), naming the report's field."""
    message = exc.diag.message_primary or str(exc)
    field = next((ours for theirs, ours in ARGUMENTS.items() if theirs in message), None)
    return Invalid(message, hint=exc.diag.message_hint, field=field)


def _client_missing(client_id: uuid.UUID) -> NotFound:
    return NotFound(f"client {client_id} does not exist", code="client_not_found")


def _params(client_id: uuid.UUID | None, days: int, as_of: datetime, currency: str | None) -> Row:
    return {"client_id": client_id, "days": days, "as_of": as_of, "currency": currency}


# ----------------------------------------------------------------------------- synchronous


def _idle(status: psycopg.pq.TransactionStatus) -> None:
    if status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            "a report's snapshot starts its own transaction: commit or roll back first"
        )


@contextmanager
def snapshot(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A read-only, repeatable-read transaction: every section of a report collected in it
    reads the same snapshot. It starts the transaction: the connection must be idle (not in
    one already)."""
    _idle(conn.info.transaction_status)
    with conn.transaction():
        conn.execute(REPORT["repeatable_read"])
        conn.execute(REPORT["read_only"])
        yield conn


def _table(cur: psycopg.Cursor[Row], query: str, params: Row) -> Table:
    try:
        cur.execute(query, params)
    except psycopg.errors.InvalidParameterValue as exc:
        raise refused(exc) from exc
    return Table(tuple(c.name for c in cur.description or ()), cur.fetchall())


def client_report(
    conn: psycopg.Connection[Any],
    client_id: uuid.UUID,
    *,
    days: int = DEFAULT_DAYS,
    as_of: datetime | None = None,
    currency: str | None = None,
    sections: Iterable[str] | None = None,
) -> Report:
    """A client's report: each of ``sections`` (default all) as its function returns it for
    the client, the window of ``days`` ending at ``as_of`` (default: now, once for every
    section) and the currency (default: the one its deals carry)."""
    chosen = client_sections(sections)
    check_arguments(days, as_of, currency)
    with conn.cursor(row_factory=dict_row) as cur:
        head = cur.execute(REPORT["client"], {"client_id": client_id}).fetchone()
        if head is None:
            raise _client_missing(client_id)
        money = choose_currency(head, currency)
        when = as_of or head["now"]
        params = _params(client_id, days, when, money)
        tables = {s.key: _table(cur, REPORT[s.key], params) for s in chosen}
    return Report("client", days, when, money, tables, client_id, str(head["name"]))


def agency_report(
    conn: psycopg.Connection[Any],
    *,
    days: int = DEFAULT_DAYS,
    as_of: datetime | None = None,
    currency: str | None = None,
) -> Report:
    """The agency's report: every client the connection may see, side by side."""
    check_arguments(days, as_of, currency)
    with conn.cursor(row_factory=dict_row) as cur:
        if as_of is None:
            now = cur.execute(REPORT["now"]).fetchone()
            assert now is not None
            as_of = now["now"]
        assert as_of is not None
        params = _params(None, days, as_of, currency)
        tables = {s.key: _table(cur, REPORT[f"agency_{s.key}"], params) for s in AGENCY_SECTIONS}
    return Report("agency", days, as_of, currency, tables)


# ----------------------------------------------------------------------------- asynchronous


@asynccontextmanager
async def asnapshot(
    conn: psycopg.AsyncConnection[Any],
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """:func:`snapshot` on an async connection."""
    _idle(conn.info.transaction_status)
    async with conn.transaction():
        await conn.execute(REPORT["repeatable_read"])
        await conn.execute(REPORT["read_only"])
        yield conn


async def _atable(cur: psycopg.AsyncCursor[Row], query: str, params: Row) -> Table:
    try:
        await cur.execute(query, params)
    except psycopg.errors.InvalidParameterValue as exc:
        raise refused(exc) from exc
    return Table(tuple(c.name for c in cur.description or ()), await cur.fetchall())


async def aclient_report(
    conn: psycopg.AsyncConnection[Any],
    client_id: uuid.UUID,
    *,
    days: int = DEFAULT_DAYS,
    as_of: datetime | None = None,
    currency: str | None = None,
    sections: Iterable[str] | None = None,
) -> Report:
    """:func:`client_report` on an async connection."""
    chosen = client_sections(sections)
    check_arguments(days, as_of, currency)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(REPORT["client"], {"client_id": client_id})
        head = await cur.fetchone()
        if head is None:
            raise _client_missing(client_id)
        money = choose_currency(head, currency)
        when = as_of or head["now"]
        params = _params(client_id, days, when, money)
        tables = {s.key: await _atable(cur, REPORT[s.key], params) for s in chosen}
    return Report("client", days, when, money, tables, client_id, str(head["name"]))


async def aagency_report(
    conn: psycopg.AsyncConnection[Any],
    *,
    days: int = DEFAULT_DAYS,
    as_of: datetime | None = None,
    currency: str | None = None,
) -> Report:
    """:func:`agency_report` on an async connection."""
    check_arguments(days, as_of, currency)
    async with conn.cursor(row_factory=dict_row) as cur:
        if as_of is None:
            await cur.execute(REPORT["now"])
            now = await cur.fetchone()
            assert now is not None
            as_of = now["now"]
        assert as_of is not None
        params = _params(None, days, as_of, currency)
        tables = {
            s.key: await _atable(cur, REPORT[f"agency_{s.key}"], params) for s in AGENCY_SECTIONS
        }
    return Report("agency", days, as_of, currency, tables)
