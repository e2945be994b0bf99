"""``push drain --dry-run``: what the next drain would send, without claiming or sending."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from agency_crm.push import crms
from agency_crm.push.connection import Connection
from agency_crm.push.model import Claimed
from agency_crm.push.settings import Settings
from agency_crm.push.store import MissingEntity, Store


async def plan(
    dsn: str, client_ids: list[uuid.UUID] | None, limit: int, settings: Settings
) -> list[dict[str, Any]]:
    """One entry per due push: the target CRM, the lead's contact, the desired deal and
    whether each record would be created or updated. No CRM is called."""
    out: list[dict[str, Any]] = []
    async with (
        AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False) as pool,
        crms.http_client(settings) as client,
    ):
        store = Store(pool)
        slots = asyncio.Semaphore(1)
        for config in await store.configs(client_ids):
            connection = crms.connect(config, client, settings, store, slots)
            for push in await store.due(config.client_id, limit):
                out.append(await describe(connection, push))
    return out


async def describe(connection: Connection, push: Claimed) -> dict[str, Any]:
    """What sending one push would do."""
    config = connection.config
    item: dict[str, Any] = {
        "push_id": push.id,
        "client": config.client_name,
        "client_id": str(config.client_id),
        "crm": config.crm_type,
        "api": connection.base_url,
        "operation": push.operation,
        "attempts_so_far": push.attempts,
    }
    try:
        ctx = await connection.store.context(push, config)
    except MissingEntity as exc:
        return {**item, "would": f"fail: {exc}"}
    if ctx.skip_reason:
        return {**item, "would": f"skip: {ctx.skip_reason}"}
    lead = ctx.lead
    contact = ctx.ids.get(("lead", lead.key))
    item["contact"] = {
        "key": lead.key,
        "email": lead.email,
        "name": lead.name,
        "company": lead.company,
        "crm_id": contact.crm_id if contact else None,
        "would": "reuse" if contact and contact.crm_id else first_contact(connection),
    }
    if ctx.deal is not None:
        deal = ctx.ids.get(("deal", ctx.deal.key))
        fields = dataclasses.asdict(ctx.deal)
        fields["amount"] = str(fields["amount"])
        fields["crm_stage"] = ctx.deal.crm_stage or (
            config.stage_id if not (deal and deal.crm_id) else None
        )
        fields["crm_id"] = deal.crm_id if deal else None
        fields["would"] = "update" if deal and deal.crm_id else "create"
        item["deal"] = fields
    item["would"] = "send"
    return item


def first_contact(connection: Connection) -> str:
    """What a push does with a contact our id map does not know yet."""
    if connection.batch_limit > 1:  # HubSpot in batches: one upsert finds or creates it
        return "upsert by email (by our key without one)"
    if connection.crm_type == "hubspot":
        return "find by email or create"
    return "create (searched for by our key only after a create whose answer was lost)"
