"""One push's sync: the base every CRM's push implements, and the CRM-id bookkeeping they
share (creates claimed before they are sent, ids stored by the push's next statement)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import ExternalId, IdWrite, Outcome, PushContext
from agency_crm.push.store import Store

if TYPE_CHECKING:
    from agency_crm.push.connection import Connection

T = TypeVar("T")


class Ids:
    """The CRM ids of one push: read from the context; one learnt is written by the push's
    next statement (its next create claim, or its finish), with the audit rows so far."""

    def __init__(self, ctx: PushContext, store: Store, http: CrmHttp) -> None:
        self.ctx = ctx
        self.store = store
        self.http = http

    def get(self, entity: str, key: str) -> ExternalId | None:
        """What we know of (entity, key)."""
        return self.ctx.ids.get((entity, key))

    def known(self, entity: str, key: str) -> str | None:
        """The CRM id when the record exists and every step of its creation is done."""
        ext = self.get(entity, key)
        return ext.crm_id if ext and ext.crm_id and ext.create_sent_at is None else None

    async def refresh(self, entity: str, key: str) -> ExternalId | None:
        """Re-read (entity, key) from the database (another push may have stored it)."""
        ext = await self.store.lookup_id(self.ctx, entity, key)
        if ext is not None:
            self.ctx.ids[(entity, key)] = ext
        return ext

    async def claim_create(
        self, entity: str, key: str, entity_id: uuid.UUID | None, window: timedelta, what: str
    ) -> str | None:
        """Before sending a create: take the right to create (entity, key).

        Returns None when we may create; the CRM id when the record turned out to exist;
        raises a deferral when another create of it (an earlier attempt whose outcome is
        unknown, or another runner) was sent within ``window`` and may still land.
        """
        won, ext = await self.store.claim_create(
            self.ctx, entity, key, entity_id, window, self.http.take_records(), self.http.take_ids()
        )
        self.ctx.ids[(entity, key)] = ext
        if won:
            return None
        if ext.crm_id:
            return ext.crm_id
        assert ext.create_sent_at is not None
        ready = ext.create_sent_at + window
        wait = max(0.05, (ready - datetime.now(UTC)).total_seconds())
        raise CrmError(
            Outcome.DEFER,
            "create_in_doubt",
            f"a create of {what} was sent at {ext.create_sent_at.isoformat(timespec='seconds')}"
            " and may still land; not creating it again before "
            f"{ready.isoformat(timespec='seconds')}",
            retry_after=min(wait, 5.0),
        )

    def record(
        self,
        entity: str,
        key: str,
        entity_id: uuid.UUID | None,
        crm_id: str,
        *,
        complete: bool = True,
    ) -> None:
        """Keep a CRM id for the push's next statement (its next create claim, or its
        finish) to write, with the calls made so far.

        Until then the create's intent row says its outcome is unknown: a crash in between
        costs the next attempt a search that finds the record, never a second create. No
        other push needs the id sooner: another push of this lead waits for this one to
        finish, and a shared record (an organisation) is followed at once by this push's
        next claim."""
        ext = self.get(entity, key)
        sent = None if complete else (ext.create_sent_at if ext else None) or datetime.now(UTC)
        self.http.ids[(entity, key)] = IdWrite(entity, key, entity_id, crm_id, sent)
        self.ctx.ids[(entity, key)] = ExternalId(crm_id, sent)

    async def release(self, entity: str, key: str) -> None:
        """The CRM refused a create outright (a 4xx): nothing landed, no create is in doubt."""
        ext = self.get(entity, key)
        if ext is None or ext.crm_id is not None or ext.create_sent_at is None:
            return
        await self.store.release_create(self.ctx, entity, key, self.http.take_records())
        self.ctx.ids[(entity, key)] = ExternalId(None, None)

    async def create(self, entity: str, key: str, send: Callable[[], Awaitable[T]]) -> T:
        """Send a create we hold the claim for; a definite refusal releases the claim."""
        try:
            return await send()
        except CrmError as exc:
            # A 4xx answer (429 included: refused before any work) means nothing was
            # created; a timeout, a dropped connection or a 5xx leaves the outcome unknown.
            if exc.status is not None and 400 <= exc.status < 500 and exc.status != 408:
                await self.release(entity, key)
            raise

    def unknown_outcome(self, entity: str, key: str) -> ExternalId | None:
        """The intent row when an earlier create of (entity, key) may or may not have landed."""
        ext = self.get(entity, key)
        return ext if ext and ext.crm_id is None and ext.create_sent_at else None


class Push:
    """Makes one CRM hold one push's lead (contact) and deal as they are now. Subclasses:
    HubSpotPush, PipedrivePush, ClosePush."""

    def __init__(self, connection: Connection, ctx: PushContext, http: CrmHttp) -> None:
        self.connection = connection
        self.config = connection.config
        self.settings = connection.settings
        self.ctx = ctx
        self.http = http
        self.ids = Ids(ctx, connection.store, http)

    async def sync(self) -> None:
        """Make the CRM hold the lead's contact and the push's deal as they are now."""
        raise NotImplementedError

    @property
    def unknown_outcome_window(self) -> timedelta:
        """How long a create whose outcome is unknown blocks another create of the record."""
        return self.settings.unknown_outcome_window
