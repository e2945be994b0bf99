"""Connecting to the database agency-crm lives in."""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from psycopg import conninfo

from agency_crm import __version__
from agency_crm.errors import AgencyCrmError

CONNECT_TIMEOUT_S = 10


class ConnectionFailed(AgencyCrmError):
    """The database could not be reached."""


def connect(database_url: str | None) -> psycopg.Connection[tuple[object, ...]]:
    """Open a connection from a URL or key=value string; empty means libpq's PG* variables."""
    dsn = database_url or ""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConnectionFailed(
            f"invalid database URL: {exc}",
            hint="Use postgresql://user@host:port/dbname or key=value pairs.",
        ) from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    params.setdefault("application_name", f"agency-crm {__version__}")
    try:
        return psycopg.connect(**params)  # type: ignore[arg-type]
    except psycopg.OperationalError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = "; ".join(lines) or "unknown error"
        raise ConnectionFailed(
            f"cannot connect to {describe_params(params)}: {reason}",
            hint=connection_hint(reason, params, given=bool(dsn.strip())),
        ) from None


def connection_hint(reason: str, params: Mapping[str, object], *, given: bool) -> str:
    """What to do about a failed connection, from libpq's reason."""
    where = describe_params(params)
    text = reason.lower()
    if "password authentication failed" in text or "no password supplied" in text:
        return "Check the user name and password in the database URL (or PGPASSWORD)."
    if "does not exist" in text and "database" in text:
        return f"Create the database or fix its name in the URL ({where})."
    if "does not exist" in text and "role" in text:
        return f"Use a role that exists on the server ({where}), or create it."
    if "pg_hba.conf" in text:
        return "The server refuses this user or host: an entry in its pg_hba.conf allows it."
    if not given:
        return (
            "No database was named: pass --database-url or set DATABASE_URL (libpq's PG*"
            " variables also work)."
        )
    if "timeout" in text or "timed out" in text:
        return f"Nothing answered in time: is {where} reachable from here?"
    return f"Is PostgreSQL running and accepting connections at {where}?"


def describe_params(params: Mapping[str, object]) -> str:
    """user@host:port/dbname for messages; never includes the password."""
    user = params.get("user") or "(default user)"
    host = params.get("host") or "(default host)"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or "(default database)"
    return f"{user}@{host}:{port}/{dbname}"


def describe(conn: psycopg.Connection[tuple[object, ...]]) -> str:
    """Where a connection points, for messages; never includes the password."""
    info = conn.info
    return f"{info.user}@{info.host}:{info.port}/{info.dbname}"
