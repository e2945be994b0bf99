"""The reports the HTTP API serves (:mod:`agency_crm.report`), each collected in one read-only,
repeatable-read transaction on the service's pool:

* a client's, as the service's role (``crm_api``) with ``crm.client_id`` naming the client, so
  row-level security backs the route's own check: another client's rows are not there;
* the agency's, as ``crm_analyst``, which reads every client (only an agency-wide token gets
  there): the login needs ``GRANT crm_analyst TO <login>``, else the route answers 503 saying
  so.

The HTML page is drawn in a worker thread (vl-convert's layout is CPU work).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from agency_crm.queries import REPORT, SERVICE
from agency_crm.report import Report, aagency_report, aclient_report
from agency_crm.service.crm import CrmService
from agency_crm.service.errors import NotConfigured

# The role an agency report reads every client as (sql/access.sql).
AGENCY_ROLE = "crm_analyst"


@asynccontextmanager
async def snapshot(
    service: CrmService, client_id: uuid.UUID | None, role: str | None
) -> AsyncIterator[AsyncConnection[Any]]:
    """A read-only, repeatable-read transaction as ``role``, acting for ``client_id``."""
    async with service.pool.connection() as conn, conn.transaction():
        # Before any statement that takes a snapshot (the role's set_config below does).
        await conn.execute(REPORT["repeatable_read"])
        await conn.execute(REPORT["read_only"])
        if role:
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        await conn.execute(
            SERVICE["act_for_client"], {"client_id": str(client_id) if client_id else ""}
        )
        yield conn


async def client_report(
    service: CrmService,
    client_id: uuid.UUID,
    *,
    days: int,
    as_of: datetime | None = None,
    currency: str | None = None,
    sections: Iterable[str] | None = None,
) -> Report:
    """A client's report (404 when the client does not exist or is not the caller's)."""
    try:
        async with snapshot(service, client_id, service.role) as conn:
            return await aclient_report(
                conn, client_id, days=days, as_of=as_of, currency=currency, sections=sections
            )
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused_role(exc, service.role) from exc


async def agency_report(
    service: CrmService,
    *,
    days: int,
    as_of: datetime | None = None,
    currency: str | None = None,
) -> Report:
    """Every client side by side, read as crm_analyst (as the login itself when the service
    runs without a role, as the CLI does)."""
    role = AGENCY_ROLE if service.role else None
    try:
        async with snapshot(service, None, role) as conn:
            return await aagency_report(conn, days=days, as_of=as_of, currency=currency)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise refused_role(exc, role) from exc


def refused_role(exc: psycopg.Error, role: str | None) -> NotConfigured:
    """The database refused the role a report reads as: the login lacks its grant."""
    wanted = role or "the analytics"
    return NotConfigured(
        f"the database refused this server's role: {exc.diag.message_primary or exc}",
        hint=f"grant the login the role reports read as (GRANT {wanted} TO <login>), and run "
        "agency-crm db upgrade",
        code="database_privileges",
    )


async def page(report: Report) -> str:
    """The report as one self-contained HTML page, drawn off the event loop."""
    from agency_crm.report.html import render

    return await asyncio.to_thread(render, report)
