"""Rows the API tests read back: a client's history (leads, meetings past and upcoming, a
deal, push log rows) and a live connection to a sandbox CRM."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import Make, Row, insert
from tests.push.conftest import Crm, connect_crm


def connect_sandbox(make: Make, sandbox: Sandbox, client: Row, vendor: str, **kw: Any) -> Crm:
    """An account in the sandbox's CRM and the client's live config pointing at it."""
    return connect_crm(make, sandbox, client, vendor, **kw)


@dataclass
class History:
    leads: list[Row] = field(default_factory=list)
    meetings: list[Row] = field(default_factory=list)
    deals: list[Row] = field(default_factory=list)
    logs: list[Row] = field(default_factory=list)


def seed_history(make: Make, client: Row, *, meetings: int = 3, logs: int = 3) -> History:
    """``meetings`` meetings a day apart starting two days ago (so some are past, some
    upcoming), each with its lead; a deal on the first; ``logs`` push log rows."""
    found = History()
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(meetings):
        lead = make.lead(client)
        found.leads.append(lead)
        found.meetings.append(
            make.meeting(
                lead,
                scheduled_at=now + timedelta(days=i - 2, hours=1),
                booked_at=now - timedelta(days=10 - i),
            )
        )
    if found.meetings:
        found.deals.append(make.deal(found.leads[0], meeting_id=found.meetings[0]["id"]))
    for i in range(logs):
        found.logs.append(
            insert(
                make.conn,
                "crm_push_log",
                {
                    "client_id": client["id"],
                    "operation": ("create_contact", "create_deal", "get_me")[i % 3],
                    "status": ("success", "failed", "success")[i % 3],
                    "http_status": (201, 500, 200)[i % 3],
                    "lead_id": found.leads[i % len(found.leads)]["id"] if found.leads else None,
                    "request_payload": Jsonb({"properties": {"email": "ada@example.com"}}),
                    "response_payload": Jsonb({"id": str(100 + i)}),
                    "duration_ms": 12 + i,
                    "created_at": now - timedelta(minutes=10 * (logs - i)),
                },
            )
        )
    return found
