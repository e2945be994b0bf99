"""``push drain --dry-run``: what the next drain would send, without claiming or sending."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from psycopg_pool import AsyncConnectionPool

from agency_crm.push.model import Claimed
from agency_crm.push.store import MissingEntity, Store

DUE_SQL = """
    SELECT q.client_id, q.id, q.operation, q.lead_id, q.meeting_id, q.deal_id, q.attempts
    FROM crm.crm_push_queue AS q
    WHERE q.client_id = %s AND q.status = 'pending' AND q.run_after <= now()
    ORDER BY q.run_after, q.id
    LIMIT %s
"""


async def plan(dsn: str, client_ids: list[uuid.UUID] | None, limit: int) -> list[dict[str, Any]]:
    """One entry per due push: the target CRM, the lead's contact, the desired deal and
    whether each record would be created or updated."""
    out: list[dict[str, Any]] = []
    async with AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False) as pool:
        store = Store(pool)
        for config in await store.configs(client_ids):
            async with pool.connection() as conn:
                cur = await conn.execute(DUE_SQL, (config.client_id, limit))
                rows = await cur.fetchall()
            for row in rows:
                client_id, push_id, operation, lead_id, meeting_id, deal_id, attempts = row[:7]
                push = Claimed(
                    client_id, push_id, operation, lead_id, meeting_id, deal_id, attempts, config.id
                )
                item: dict[str, Any] = {
                    "push_id": push.id,
                    "client": config.client_name,
                    "client_id": str(config.client_id),
                    "crm": config.crm_type,
                    "api": config.base_url,
                    "operation": push.operation,
                    "attempts_so_far": push.attempts,
                }
                try:
                    ctx = await store.context(push, config)
                except MissingEntity as exc:
                    item["would"] = f"fail: {exc}"
                    out.append(item)
                    continue
                if ctx.skip_reason:
                    item["would"] = f"skip: {ctx.skip_reason}"
                    out.append(item)
                    continue
                lead = ctx.lead
                contact = ctx.ids.get(("lead", lead.key))
                item["contact"] = {
                    "key": lead.key,
                    "email": lead.email,
                    "name": lead.display_name,
                    "company": lead.company,
                    "crm_id": contact.crm_id if contact else None,
                    "would": "reuse" if contact and contact.crm_id else "find by email or create",
                }
                if ctx.deal is not None:
                    deal = ctx.ids.get(("deal", ctx.deal.key))
                    fields = dataclasses.asdict(ctx.deal)
                    fields["amount"] = str(fields["amount"])
                    fields["crm_stage"] = (
                        config.stage_map.get(ctx.deal.stage) if ctx.deal.stage else config.stage_id
                    )
                    fields["crm_id"] = deal.crm_id if deal else None
                    fields["would"] = "update" if deal and deal.crm_id else "create"
                    item["deal"] = fields
                item["would"] = "send"
                out.append(item)
    return out
