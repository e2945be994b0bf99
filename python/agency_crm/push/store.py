"""The runner's database side: claims, the push's target, CRM ids, audit rows and outcomes.

Each method is its own short transaction on a pooled connection; none is ever open across an
HTTP call. Every statement is a named query of ``sql/queries/push.sql``; the rules are in the
SQL functions those call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agency_crm.crypto import KeyRing
from agency_crm.push.model import (
    CallRecord,
    Claimed,
    Config,
    DealState,
    ExternalId,
    Finished,
    IdWrite,
    Lead,
    Outcome,
    PushContext,
)
from agency_crm.queries import PUSH

# The CRM ids a push target reports: (entity type in crm_external_ids, column prefix).
TARGET_IDS = (("lead", "lead"), ("contact", "contact"), ("organisation", "org"), ("deal", "deal"))


class MissingEntity(Exception):
    """The push names a lead, meeting or deal that does not exist."""


def call_rows(
    config_id: uuid.UUID | None,
    logs: Sequence[CallRecord],
    common: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Audit rows of CRM calls as JSON for ``crm.write_push_log``: the config they were made
    with (None: not saved yet), and what ``common`` says (the push, its lead and deal)."""
    base = {"crm_config_id": None if config_id is None else str(config_id), **(common or {})}
    return [
        {
            **base,
            "operation": rec.operation,
            "crm_contact_id": rec.crm_contact_id,
            "crm_deal_id": rec.crm_deal_id,
            "crm_org_id": rec.crm_org_id,
            "request_payload": rec.request_payload,
            "response_payload": rec.response_payload,
            "status": str(rec.status),
            "http_status": rec.http_status,
            "error_code": rec.error_code,
            "error_message": rec.error_message[:2000] if rec.error_message else None,
            "duration_ms": rec.duration_ms,
            "created_at": rec.at.isoformat(),
        }
        for rec in logs
    ]


def audit_json(
    push: Claimed, config_id: uuid.UUID, ctx: PushContext | None, logs: Sequence[CallRecord]
) -> list[dict[str, Any]]:
    """The audit rows of a push's CRM calls, as JSON for ``crm.write_push_log``: with its
    target read, the lead and the deal it is about; without (a missing entity), the ids the
    push names."""
    if not logs:
        return []
    lead_id, deal_id = push.lead_id, push.deal_id
    if ctx is not None:
        lead_id = ctx.lead.id
        deal_id = push.deal_id or (ctx.deal.deal_id if ctx.deal is not None else None)
    return call_rows(
        config_id,
        logs,
        {
            "push_id": push.id,
            "lead_id": None if lead_id is None else str(lead_id),
            "meeting_id": None if push.meeting_id is None else str(push.meeting_id),
            "deal_id": None if deal_id is None else str(deal_id),
        },
    )


def id_arrays(writes: Sequence[IdWrite]) -> dict[str, list[Any]]:
    """CRM ids to write, as the arrays the named queries unnest for crm.record_crm_id."""
    return {
        "entity_types": [w.entity_type for w in writes],
        "external_keys": [w.external_key for w in writes],
        "entity_ids": [w.entity_id for w in writes],
        "crm_ids": [w.crm_id for w in writes],
        "create_sent_ats": [w.create_sent_at for w in writes],
    }


@dataclass
class Ended:
    """How one claimed push ended, for ``Store.finish_many``."""

    push: Claimed
    outcome: Outcome
    error: str | None
    retry_at: datetime | None
    ctx: PushContext | None
    logs: Sequence[CallRecord]
    # For the drain's progress output: CRM calls made, of which rate-limited; a push done
    # without a call (its lead, meeting or deal is deleted); when it started (perf_counter).
    calls: int = 0
    rate_limited: int = 0
    skipped: bool = False
    started: float = 0.0
    # The CRM's error when the outcome is not done and its retry time is still to be set.
    exc: Exception | None = None
    # Batch calls the push rode in (``calls`` counts each call once, for its first push).
    rode: int | None = None
    # CRM ids the push learnt after its last statement (written with its outcome).
    ids: Sequence[IdWrite] = ()


async def write_logs(
    conn: AsyncConnection[Any],
    client_id: uuid.UUID,
    config_id: uuid.UUID | None,
    logs: Sequence[CallRecord],
) -> None:
    """The audit rows of CRM calls made for a config outside a push (a check, a connect),
    in one statement."""
    if logs:
        await conn.execute(
            PUSH["write_push_log"],
            {"client_id": client_id, "logs": Jsonb(call_rows(config_id, logs))},
        )


def context_from_target(push: Claimed, config: Config, row: dict[str, Any] | None) -> PushContext:
    """A PushContext from a ``crm.push_target`` row; MissingEntity when it says fail."""
    if row is None:
        raise MissingEntity(f"push {push.id} of client {push.client_id} does not exist")
    if row["action"] == "fail":
        raise MissingEntity(row["reason"])
    lead = Lead(
        id=row["lead_id"],
        key=row["contact_key"],
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        name=row["contact_name"],
        company=row["company"],
        title=row["title"],
        phone=row["phone"],
        org_key=row["org_key"],
    )
    deal = None
    if row["deal_key"] is not None:
        deal = DealState(
            key=row["deal_key"],
            entity_id=row["deal_entity_id"],
            deal_id=row["deal_id"],
            name=row["deal_name"],
            amount=row["deal_amount"],
            currency=row["deal_currency"],
            stage=row["deal_stage"],
            crm_stage=row["deal_crm_stage"],
            probability=row["deal_probability"],
            status=row["deal_status"],
            lost_reason=row["deal_lost_reason"],
            close_date=row["deal_close_date"],
        )
    skip = row["reason"] if row["action"] == "skip" else None
    ctx = PushContext(push=push, config=config, lead=lead, deal=deal, skip_reason=skip)
    keys = {"lead": lead.key, "contact": lead.key, "organisation": lead.org_key}
    keys["deal"] = deal.key if deal is not None else None
    for entity, prefix in TARGET_IDS:
        crm_id, sent = row[f"{prefix}_crm_id"], row[f"{prefix}_create_sent_at"]
        key = keys[entity]
        if key is not None and (crm_id is not None or sent is not None):
            ctx.ids[(entity, key)] = ExternalId(crm_id, sent)
    return ctx


class Store:
    """Database operations of the runner over an async connection pool."""

    def __init__(self, pool: AsyncConnectionPool[Any], keys: KeyRing | None = None) -> None:
        self.pool = pool
        # The key ring the config secrets are decrypted with, and refreshed tokens encrypted.
        self.keys = keys if keys is not None else KeyRing.from_environment()

    async def configs(
        self, client_ids: Sequence[uuid.UUID] | None = None, *, pushable_only: bool = True
    ) -> list[Config]:
        """Live configs (optionally only these clients'); by default only those that get
        pushes (active, not in error)."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                PUSH["live_configs"],
                {
                    "client_ids": list(client_ids) if client_ids else None,
                    "pushable_only": pushable_only,
                },
            )
            return [Config.from_row(r, self.keys) for r in await cur.fetchall()]

    async def claim(
        self, client_id: uuid.UUID, owner: str, limit: int, lease_seconds: int
    ) -> list[Claimed]:
        """crm.claim_pushes in its own transaction."""
        params = {
            "client_id": client_id,
            "owner": owner,
            "batch": limit,
            "lease_seconds": lease_seconds,
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["claim_pushes"], params)
            return [Claimed(*row) for row in await cur.fetchall()]

    async def due(self, client_id: uuid.UUID, limit: int) -> list[Claimed]:
        """The client's due pending pushes in claim order, unclaimed (the dry run)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                PUSH["due_pushes"], {"client_id": client_id, "row_limit": limit}
            )
            return [Claimed(*row) for row in await cur.fetchall()]

    async def next_run_after(self, client_id: uuid.UUID) -> datetime | None:
        """When the client's next pending push is due (None: nothing pending)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["next_run_after"], {"client_id": client_id})
            row = await cur.fetchone()
            return row[0] if row else None

    async def contexts(
        self, pushes: Sequence[Claimed], config: Config
    ) -> list[PushContext | MissingEntity]:
        """The context of each push of a claim (in the same order), read in one query; a
        MissingEntity in place of a push whose target says fail (or that does not exist)."""
        if not pushes:
            return []
        client_id = pushes[0].client_id
        assert all(p.client_id == client_id for p in pushes), "one client per claim"
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                PUSH["push_targets"],
                {"client_id": client_id, "push_ids": [p.id for p in pushes]},
            )
            rows = {r["push_id"]: r for r in await cur.fetchall()}
        out: list[PushContext | MissingEntity] = []
        for push in pushes:
            try:
                out.append(context_from_target(push, config, rows.get(push.id)))
            except MissingEntity as exc:
                out.append(exc)
        return out

    async def context(self, push: Claimed, config: Config) -> PushContext:
        """What the push must make the CRM hold, and the CRM ids already known."""
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                PUSH["push_target"], {"client_id": push.client_id, "push_id": push.id}
            )
            return context_from_target(push, config, await cur.fetchone())

    @staticmethod
    def _id_params(
        ctx: PushContext, entity: str, key: str, logs: Sequence[CallRecord] = ()
    ) -> dict[str, Any]:
        """The parameters of a CRM-id statement, with the audit rows of the calls so far
        (written by the same statement: crm.write_push_log)."""
        return {
            "client_id": ctx.push.client_id,
            "crm_config_id": ctx.config.id,
            "entity_type": entity,
            "external_key": key,
            "logs": Jsonb(audit_json(ctx.push, ctx.config.id, ctx, logs)),
        }

    async def claim_create(
        self,
        ctx: PushContext,
        entity: str,
        key: str,
        entity_id: uuid.UUID | None,
        window: timedelta,
        logs: Sequence[CallRecord],
        ids: Sequence[IdWrite] = (),
    ) -> tuple[bool, ExternalId]:
        """crm.claim_crm_create with the audit rows so far and the CRM ids learnt since the
        push's last statement, in one statement: (whether we may create, the id row as it
        now is)."""
        params = self._id_params(ctx, entity, key, logs)
        params.update(entity_id=entity_id, unknown_outcome_window=window, **id_arrays(ids))
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["claim_crm_create"], params)
            row = await cur.fetchone()
            assert row is not None, "claim_crm_create returns a row"
            return bool(row[0]), ExternalId(row[1], row[2])

    async def release_create(
        self, ctx: PushContext, entity: str, key: str, logs: Sequence[CallRecord]
    ) -> None:
        """crm.release_crm_create (the CRM refused the create, nothing was created) and the
        audit rows so far, in one statement."""
        async with self.pool.connection() as conn:
            await conn.execute(PUSH["release_crm_create"], self._id_params(ctx, entity, key, logs))

    async def lookup_id(self, ctx: PushContext, entity: str, key: str) -> ExternalId | None:
        """Re-read one id (another push of this run may have just stored it)."""
        params = self._id_params(ctx, entity, key)
        del params["logs"]
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["crm_id"], params)
            row = await cur.fetchone()
            return ExternalId(row[0], row[1]) if row else None

    async def finish_many(
        self, config_id: uuid.UUID, owner: str, items: Sequence[Ended]
    ) -> list[Finished]:
        """The remaining audit rows, the CRM ids learnt since each push's last statement
        and the outcomes of many claims of one client (``crm.finish_pushes``) in one
        statement; each push's new status, in order."""
        if not items:
            return []
        client_id = items[0].push.client_id
        logs = [
            row for item in items for row in audit_json(item.push, config_id, item.ctx, item.logs)
        ]
        params = {
            "client_id": client_id,
            "owner": owner,
            "push_ids": [i.push.id for i in items],
            "attempts": [i.push.attempts for i in items],
            "outcomes": [str(i.outcome) for i in items],
            "errors": [i.error for i in items],
            "retry_ats": [i.retry_at for i in items],
            "logs": Jsonb(logs),
            "crm_config_id": config_id,
            **id_arrays([w for i in items for w in i.ids]),
        }
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["finish_pushes"], params)
            statuses = {row[0]: Finished(row[1]) for row in await cur.fetchall()}
        return [statuses.get(i.push.id, Finished.LEASE_LOST) for i in items]

    async def record_ids(
        self,
        ctx_rows: Sequence[tuple[PushContext, str, str, uuid.UUID | None, str, datetime | None]],
    ) -> None:
        """crm.record_crm_id of many (entity, key) of one client in one statement: each row
        (context, entity type, key, entity id, CRM id, create_sent_at)."""
        if not ctx_rows:
            return
        first = ctx_rows[0][0]
        params = {
            "client_id": first.push.client_id,
            "crm_config_id": first.config.id,
            **id_arrays([IdWrite(*r[1:]) for r in ctx_rows]),
        }
        async with self.pool.connection() as conn:
            await conn.execute(PUSH["record_crm_ids"], params)

    async def record_check(
        self,
        config: Config,
        ok: bool,
        problem: str | None,
        logs: Sequence[CallRecord],
        *,
        record: bool = True,
    ) -> None:
        """The outcome of ``push check``: its calls in the audit log (no push, no lead) and,
        with ``record``, the config's connection_status / last_error."""
        params: dict[str, Any] = {"client_id": config.client_id, "config_id": config.id}
        async with self.pool.connection() as conn, conn.transaction():
            await write_logs(conn, config.client_id, config.id, logs)
            if record:
                await conn.execute(
                    PUSH["record_connection_check"], {**params, "ok": ok, "error": problem}
                )

    async def hold(self, client_id: uuid.UUID, error: str) -> int:
        """crm.hold_pushes: config in error, pending pushes held."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(PUSH["hold_pushes"], {"client_id": client_id, "error": error})
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def save_tokens(
        self, config: Config, access: str, refresh: str, expires_at: datetime
    ) -> None:
        """Store refreshed HubSpot OAuth tokens, encrypted (bind parameters: never in the
        statement's text)."""
        seal = self.keys.encrypt
        async with self.pool.connection() as conn:
            await conn.execute(
                PUSH["save_oauth_tokens"],
                {
                    "access_token": seal(
                        access, client_id=config.client_id, column="oauth_access_token"
                    ),
                    "refresh_token": seal(
                        refresh, client_id=config.client_id, column="oauth_refresh_token"
                    )
                    if refresh
                    else None,
                    "expires_at": expires_at,
                    "client_id": config.client_id,
                    "config_id": config.id,
                },
            )
