"""The runner's database side: claims, context, CRM ids, audit rows and outcomes.

Each method is its own short transaction on a pooled connection; none is ever open across an
HTTP call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agency_crm.push.model import (
    LOST_REASONS,
    CallRecord,
    Claimed,
    Config,
    DealState,
    ExternalId,
    Lead,
    PushContext,
    org_key,
)

CONFIG_SQL = """
    SELECT cfg.id, cfg.client_id, c.name AS client_name, cfg.crm_type, cfg.api_key,
           cfg.oauth_access_token, cfg.oauth_refresh_token, cfg.oauth_expires_at,
           cfg.pipeline_id, cfg.stage_id, cfg.owner_id, cfg.api_base_url, cfg.stage_map,
           cfg.external_key_fields, cfg.max_attempts
    FROM crm.client_crm_configs AS cfg
    JOIN crm.clients AS c ON c.id = cfg.client_id
    WHERE cfg.deleted_at IS NULL
"""
# Configs that get pushes: active, and not waiting for their credentials to be fixed.
PUSHABLE_SQL = " AND cfg.is_active AND cfg.connection_status <> 'error'"

CONTEXT_SQL = """
    SELECT
        l.id AS lead_id, l.email, l.first_name, l.last_name, l.company, l.title, l.phone,
        l.deleted_at IS NOT NULL AS lead_deleted,
        m.id AS meeting_id, m.scheduled_at, m.meeting_type, m.meeting_outcome,
        m.deleted_at IS NOT NULL AS meeting_deleted,
        d.id AS deal_id, d.meeting_id AS deal_meeting_id, d.name AS deal_name, d.value,
        d.currency, d.stage::text AS stage, d.probability, d.expected_close_date,
        d.closed_at, d.won, d.lost_reason::text AS lost_reason,
        d.deleted_at IS NOT NULL AS deal_deleted,
        c.default_currency
    FROM (SELECT %(client)s::uuid AS client_id) AS q
    JOIN crm.clients AS c ON c.id = q.client_id
    LEFT JOIN crm.deals AS d
        ON d.client_id = q.client_id
        AND d.id = coalesce(
            %(deal)s::uuid,
            (SELECT d2.id FROM crm.deals AS d2
             WHERE d2.client_id = q.client_id AND d2.meeting_id = %(meeting)s::uuid
               AND d2.meeting_id IS NOT NULL AND d2.deleted_at IS NULL)
        )
    LEFT JOIN crm.meetings AS m
        ON m.client_id = q.client_id AND m.id = coalesce(%(meeting)s::uuid, d.meeting_id)
    LEFT JOIN crm.leads AS l
        ON l.client_id = q.client_id AND l.id = coalesce(%(lead)s::uuid, d.lead_id, m.lead_id)
"""

LOG_SQL = """
    INSERT INTO crm.crm_push_log (
        client_id, crm_config_id, push_id, operation, lead_id, meeting_id, deal_id,
        crm_contact_id, crm_deal_id, crm_org_id, request_payload, response_payload, status,
        http_status, error_code, error_message, duration_ms, created_at
    ) VALUES (
        %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
    )
"""

EXT_ID_SQL = """
    INSERT INTO crm.crm_external_ids AS x (
        client_id, crm_config_id, entity_type, external_key, entity_id, crm_id, create_sent_at
    ) VALUES (%s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (client_id, crm_config_id, entity_type, external_key) DO UPDATE
    SET crm_id = coalesce(EXCLUDED.crm_id, x.crm_id),
        create_sent_at = EXCLUDED.create_sent_at,
        entity_id = coalesce(EXCLUDED.entity_id, x.entity_id)
"""


CLAIM_CREATE_SQL = """
    INSERT INTO crm.crm_external_ids AS x (
        client_id, crm_config_id, entity_type, external_key, entity_id, crm_id, create_sent_at
    ) VALUES (%s, %s, %s, %s, %s, NULL, clock_timestamp())
    ON CONFLICT (client_id, crm_config_id, entity_type, external_key) DO UPDATE
    SET create_sent_at = clock_timestamp(),
        entity_id = coalesce(EXCLUDED.entity_id, x.entity_id)
    WHERE x.crm_id IS NULL
      AND (x.create_sent_at IS NULL OR x.create_sent_at < clock_timestamp() - %s::interval)
    RETURNING x.create_sent_at
"""


def log_row(
    client_id: uuid.UUID,
    config_id: uuid.UUID,
    push_id: int | None,
    rec: CallRecord,
    lead_id: uuid.UUID | None = None,
    meeting_id: uuid.UUID | None = None,
    deal_id: uuid.UUID | None = None,
) -> tuple[Any, ...]:
    """The parameters of LOG_SQL for one audit row."""
    return (
        client_id,
        config_id,
        push_id,
        rec.operation,
        lead_id,
        meeting_id,
        deal_id,
        rec.crm_contact_id,
        rec.crm_deal_id,
        rec.crm_org_id,
        Jsonb(rec.request_payload) if rec.request_payload is not None else None,
        Jsonb(rec.response_payload) if rec.response_payload is not None else None,
        rec.status,
        rec.http_status,
        rec.error_code,
        rec.error_message[:2000] if rec.error_message else None,
        rec.duration_ms,
        rec.at,
    )


def config_from_row(row: dict[str, Any]) -> Config:
    """A Config from a CONFIG_SQL row."""
    return Config(
        id=row["id"],
        client_id=row["client_id"],
        client_name=row["client_name"],
        crm_type=row["crm_type"],
        api_key=row["api_key"],
        oauth_access_token=row["oauth_access_token"],
        oauth_refresh_token=row["oauth_refresh_token"],
        oauth_expires_at=row["oauth_expires_at"],
        pipeline_id=row["pipeline_id"],
        stage_id=row["stage_id"],
        owner_id=row["owner_id"],
        api_base_url=row["api_base_url"],
        stage_map={str(k): str(v) for k, v in (row["stage_map"] or {}).items()},
        external_key_fields={str(k): str(v) for k, v in (row["external_key_fields"] or {}).items()},
        max_attempts=row["max_attempts"],
    )


def meeting_key(meeting_id: uuid.UUID) -> str:
    """External key of the CRM deal a booked meeting opens (our deal from it shares it)."""
    return f"acrm-meeting-{meeting_id}"


def deal_state(row: dict[str, Any], push: Claimed) -> tuple[DealState | None, str | None]:
    """The CRM deal this push should leave behind, or a reason to skip the push."""
    if row["deal_id"] is not None and (push.deal_id is not None or not row["deal_deleted"]):
        if row["deal_deleted"]:
            return None, f"deal {row['deal_id']} is deleted"
        key = (
            meeting_key(row["deal_meeting_id"])
            if row["deal_meeting_id"] is not None
            else f"acrm-deal-{row['deal_id']}"
        )
        status = "open" if row["won"] is None else ("won" if row["won"] else "lost")
        closed = row["closed_at"].date() if row["closed_at"] is not None else None
        reason = row["lost_reason"]
        return (
            DealState(
                key=key,
                entity_id=row["deal_id"],
                name=row["deal_name"],
                amount=Decimal(row["value"]),
                currency=row["currency"],
                stage=row["stage"],
                probability=row["probability"],
                status=status,  # type: ignore[arg-type]
                lost_reason=LOST_REASONS.get(reason, reason) if reason else None,
                close_date=closed or row["expected_close_date"],
            ),
            None,
        )
    if push.deal_id is not None:
        return None, None  # the caller reports the missing deal
    if row["meeting_id"] is None:
        return None, None
    if row["meeting_deleted"]:
        return None, f"meeting {row['meeting_id']} is deleted"
    outcome = row["meeting_outcome"]
    lost = outcome in ("cancelled", "bad")
    name_bits = [row["first_name"], row["last_name"]]
    who = " ".join(b for b in name_bits if b) or row["email"] or "lead"
    if row["company"]:
        who = f"{who} ({row['company']})"
    when = row["scheduled_at"].strftime("%Y-%m-%d")
    return (
        DealState(
            key=meeting_key(row["meeting_id"]),
            entity_id=row["meeting_id"],
            name=f"{who}: {row['meeting_type']} meeting {when}",
            amount=Decimal(0),
            currency=row["default_currency"],
            stage=None,
            probability=None,
            status="lost" if lost else "open",
            lost_reason=("Meeting cancelled" if outcome == "cancelled" else "Meeting outcome: bad")
            if lost
            else None,
            close_date=None,
        ),
        None,
    )


class MissingEntity(Exception):
    """The push names a lead, meeting or deal that does not exist."""


class Store:
    """Database operations of the runner over an async connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Any]) -> None:
        self.pool = pool

    async def configs(
        self, client_ids: Sequence[uuid.UUID] | None = None, *, pushable_only: bool = True
    ) -> list[Config]:
        """Live configs (optionally only these clients'); by default only those that get
        pushes (active, not in error)."""
        query = CONFIG_SQL + (PUSHABLE_SQL if pushable_only else "")
        query += " AND cfg.client_id = ANY(%s)" if client_ids else ""
        query += " ORDER BY c.name, cfg.client_id"
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query, (list(client_ids),) if client_ids else None)
            return [config_from_row(r) for r in await cur.fetchall()]

    async def config(self, client_id: uuid.UUID) -> Config | None:
        """The client's live config, re-read (tokens may have been refreshed elsewhere)."""
        found = await self.configs([client_id])
        return found[0] if found else None

    async def claim(
        self, client_id: uuid.UUID, owner: str, limit: int, lease_seconds: int
    ) -> list[Claimed]:
        """crm.claim_pushes in its own transaction."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT client_id, id, operation, lead_id, meeting_id, deal_id, attempts, "
                "crm_config_id FROM crm.claim_pushes(%s, %s, %s, %s)",
                (client_id, owner, limit, lease_seconds),
            )
            return [Claimed(*row) for row in await cur.fetchall()]

    async def next_run_after(self, client_id: uuid.UUID) -> datetime | None:
        """When the client's next pending push is due (None: nothing pending)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT min(run_after) FROM crm.crm_push_queue "
                "WHERE client_id = %s AND status = 'pending'",
                (client_id,),
            )
            row = await cur.fetchone()
            return row[0] if row else None

    async def in_flight_elsewhere(self, client_id: uuid.UUID, owner: str) -> datetime | None:
        """Earliest lease expiry of the client's pushes claimed by other runners."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT min(lease_expires_at) FROM crm.crm_push_queue "
                "WHERE client_id = %s AND status = 'in_flight' AND lease_owner <> %s",
                (client_id, owner),
            )
            row = await cur.fetchone()
            return row[0] if row else None

    async def context(self, push: Claimed, config: Config) -> PushContext:
        """The lead, meeting and deal of a push, and the CRM ids already known."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                CONTEXT_SQL,
                {
                    "client": push.client_id,
                    "lead": push.lead_id,
                    "meeting": push.meeting_id,
                    "deal": push.deal_id,
                },
            )
            row = await cur.fetchone()
            if row is None or row["lead_id"] is None:
                raise MissingEntity(f"lead {push.lead_id} of push {push.id} does not exist")
            if push.deal_id is not None and row["deal_id"] is None:
                raise MissingEntity(f"deal {push.deal_id} of push {push.id} does not exist")
            if push.meeting_id is not None and row["meeting_id"] is None:
                raise MissingEntity(f"meeting {push.meeting_id} of push {push.id} does not exist")
            lead = Lead(
                id=row["lead_id"],
                email=row["email"],
                first_name=row["first_name"],
                last_name=row["last_name"],
                company=row["company"],
                title=row["title"],
                phone=row["phone"],
            )
            deal, skip = deal_state(row, push)
            if row["lead_deleted"]:
                skip = f"lead {lead.id} is deleted"
            ctx = PushContext(push=push, config=config, lead=lead, deal=deal, skip_reason=skip)
            wanted = [("lead", lead.key), ("contact", lead.key)]
            if deal is not None:
                wanted.append(("deal", deal.key))
            if lead.company and lead.company.strip():
                wanted.append(("organisation", org_key(lead.company)))
            await cur.execute(
                "SELECT x.entity_type, x.external_key, x.crm_id, x.create_sent_at "
                "FROM unnest(%s::text[], %s::text[]) AS k (entity_type, external_key) "
                "JOIN crm.crm_external_ids AS x ON x.client_id = %s AND x.crm_config_id = %s "
                "AND x.entity_type = k.entity_type AND x.external_key = k.external_key",
                (
                    [w[0] for w in wanted],
                    [w[1] for w in wanted],
                    push.client_id,
                    config.id,
                ),
            )
            for r in await cur.fetchall():
                ctx.ids[(r["entity_type"], r["external_key"])] = ExternalId(
                    r["crm_id"], r["create_sent_at"]
                )
            return ctx

    async def save_ids(
        self,
        ctx: PushContext,
        entries: Sequence[tuple[str, str, uuid.UUID | None, str | None, datetime | None]],
        logs: Sequence[CallRecord],
    ) -> None:
        """Upsert CRM ids / create intents and write pending audit rows, in one transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if entries:
                await cur.executemany(
                    EXT_ID_SQL,
                    [
                        (ctx.push.client_id, ctx.config.id, et, key, eid, crm_id, sent)
                        for et, key, eid, crm_id, sent in entries
                    ],
                )
            if logs:
                await cur.executemany(LOG_SQL, [self._log_params(ctx, rec) for rec in logs])

    @staticmethod
    def _log_params(ctx: PushContext, rec: CallRecord) -> tuple[Any, ...]:
        push = ctx.push
        # A DealState with a stage comes from our deal (entity_id is the deal's id).
        deal_id = push.deal_id or (
            ctx.deal.entity_id if ctx.deal is not None and ctx.deal.stage is not None else None
        )
        return log_row(
            push.client_id, ctx.config.id, push.id, rec, ctx.lead.id, push.meeting_id, deal_id
        )

    async def finish(
        self,
        push: Claimed,
        owner: str,
        outcome: str,
        error: str | None,
        retry_at: datetime | None,
        ctx: PushContext | None,
        logs: Sequence[CallRecord],
    ) -> str:
        """Write the remaining audit rows and the push's outcome in one transaction."""
        async with self.pool.connection() as conn, conn.transaction():
            if logs and ctx is not None:
                await conn.cursor().executemany(
                    LOG_SQL, [self._log_params(ctx, rec) for rec in logs]
                )
            cur = await conn.execute(
                "SELECT crm.finish_push(%s, %s, %s, %s, %s, %s)",
                (push.client_id, push.id, owner, outcome, error, retry_at),
            )
            row = await cur.fetchone()
            return str(row[0]) if row else "lease_lost"

    async def claim_create(
        self,
        ctx: PushContext,
        entity: str,
        key: str,
        entity_id: uuid.UUID | None,
        window: timedelta,
        logs: Sequence[CallRecord],
    ) -> tuple[bool, ExternalId]:
        """Take the right to create (entity, key): atomically write the create intent unless
        the record exists or another create of it was sent within ``window``. Returns (won,
        the row as it now is)."""
        async with self.pool.connection() as conn, conn.transaction():
            if logs:
                await conn.cursor().executemany(LOG_SQL, [self._log_params(ctx, r) for r in logs])
            cur = await conn.execute(
                CLAIM_CREATE_SQL,
                (
                    ctx.push.client_id,
                    ctx.config.id,
                    entity,
                    key,
                    entity_id,
                    window,
                ),
            )
            won = await cur.fetchone()
            if won is not None:
                return True, ExternalId(None, won[0])
            cur = await conn.execute(
                "SELECT crm_id, create_sent_at FROM crm.crm_external_ids "
                "WHERE client_id = %s AND crm_config_id = %s AND entity_type = %s "
                "AND external_key = %s",
                (ctx.push.client_id, ctx.config.id, entity, key),
            )
            row = await cur.fetchone()
            assert row is not None
            return False, ExternalId(row[0], row[1])

    async def release_create(
        self, ctx: PushContext, entity: str, key: str, logs: Sequence[CallRecord]
    ) -> None:
        """Clear a create intent the CRM refused (nothing was created)."""
        async with self.pool.connection() as conn, conn.transaction():
            if logs:
                await conn.cursor().executemany(LOG_SQL, [self._log_params(ctx, r) for r in logs])
            await conn.execute(
                "UPDATE crm.crm_external_ids SET create_sent_at = NULL "
                "WHERE client_id = %s AND crm_config_id = %s AND entity_type = %s "
                "AND external_key = %s AND crm_id IS NULL",
                (ctx.push.client_id, ctx.config.id, entity, key),
            )

    async def lookup_id(self, ctx: PushContext, entity: str, key: str) -> ExternalId | None:
        """Re-read one id (another push of this run may have just stored it)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT crm_id, create_sent_at FROM crm.crm_external_ids "
                "WHERE client_id = %s AND crm_config_id = %s AND entity_type = %s "
                "AND external_key = %s",
                (ctx.push.client_id, ctx.config.id, entity, key),
            )
            row = await cur.fetchone()
            return ExternalId(row[0], row[1]) if row else None

    async def log_without_context(
        self, push: Claimed, config_id: uuid.UUID, rec: CallRecord
    ) -> None:
        """An audit row for a push whose context could not be read (missing entity)."""
        async with self.pool.connection() as conn:
            await conn.execute(LOG_SQL, log_row(push.client_id, config_id, push.id, rec))

    async def record_check(
        self, config: Config, ok: bool, problem: str | None, logs: Sequence[CallRecord]
    ) -> None:
        """The outcome of ``push check``: its calls in the audit log (no push, no lead) and
        the config's connection_status / last_error."""
        async with self.pool.connection() as conn, conn.transaction():
            if logs:
                await conn.cursor().executemany(
                    LOG_SQL, [log_row(config.client_id, config.id, None, rec) for rec in logs]
                )
            await conn.execute(
                "UPDATE crm.client_crm_configs SET connection_status = %s, last_error = %s "
                "WHERE client_id = %s AND id = %s",
                ("connected" if ok else "error", problem, config.client_id, config.id),
            )

    async def hold(self, client_id: uuid.UUID, error: str) -> int:
        """crm.hold_pushes: config in error, pending pushes held."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT crm.hold_pushes(%s, %s)", (client_id, error))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def save_tokens(
        self, config: Config, access: str, refresh: str, expires_at: datetime
    ) -> None:
        """Store refreshed HubSpot OAuth tokens (bind parameters: never in statement text)."""
        async with self.pool.connection() as conn:
            await conn.execute(
                "UPDATE crm.client_crm_configs SET oauth_access_token = %s, "
                "oauth_refresh_token = %s, oauth_expires_at = %s "
                "WHERE client_id = %s AND id = %s",
                (access, refresh, expires_at, config.client_id, config.id),
            )
