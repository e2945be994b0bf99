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
            hint="Pass --database-url or set DATABASE_URL (libpq PG* variables also work).",
        ) from None


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
