"""The small interface every CRM client implements, and the id bookkeeping they share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import Config, ExternalId, PushContext
from agency_crm.push.ratelimit import RateLimiter
from agency_crm.push.redact import Redactor
from agency_crm.push.store import Store

T = TypeVar("T")


@dataclass
class ConfigState:
    """What all pushes of one config share during a run."""

    config: Config
    limiter: RateLimiter
    redactor: Redactor
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cache: dict[str, Any] = field(default_factory=dict)
    key_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def key_lock(self, entity: str, key: str) -> asyncio.Lock:
        """Serialises, within this run, the pushes that may create one shared record (an
        organisation several leads work for)."""
        return self.key_locks.setdefault((entity, key), asyncio.Lock())


@dataclass
class Settings:
    """Knobs of the clients that tests and operators may turn."""

    # A create whose outcome is unknown is not repeated until the CRM's search index has had
    # this long to show the record (Pipedrive and Close search lags behind writes).
    search_lag: timedelta = timedelta(seconds=30)
    hubspot_client_id: str | None = None
    hubspot_client_secret: str | None = None
    token_refresh_margin: timedelta = timedelta(minutes=5)
    # A call may still land this long after it was sent (the runner's HTTP timeout).
    http_timeout: timedelta = timedelta(seconds=30)

    @property
    def unknown_outcome_window(self) -> timedelta:
        """How long after sending a create whose outcome is unknown we wait before creating
        again: the CRM's search lag after the moment we gave up on the call (one timeout),
        plus one more timeout for a CRM that finishes a request after we stopped waiting."""
        return 2 * self.http_timeout + self.search_lag


class Ids:
    """The CRM ids of one push: read from the context, written the moment they are known."""

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
            self.ctx, entity, key, entity_id, window, self.http.take_records()
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
            "defer",
            "create_in_doubt",
            f"a create of {what} was sent at {ext.create_sent_at.isoformat(timespec='seconds')}"
            " and may still land; not creating it again before "
            f"{ready.isoformat(timespec='seconds')}",
            retry_after=min(wait, 5.0),
        )

    async def record(
        self,
        entity: str,
        key: str,
        entity_id: uuid.UUID | None,
        crm_id: str,
        *,
        complete: bool = True,
    ) -> None:
        """Store a CRM id at once, in its own transaction, with the calls made so far."""
        ext = self.get(entity, key)
        sent = None if complete else (ext.create_sent_at if ext else None) or datetime.now(UTC)
        await self.store.save_ids(
            self.ctx, [(entity, key, entity_id, crm_id, sent)], self.http.take_records()
        )
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


class CrmClient:
    """Pushes one entity's current state into one CRM. Subclasses: HubSpot, Pipedrive, Close."""

    def __init__(
        self, ctx: PushContext, http: CrmHttp, state: ConfigState, store: Store, settings: Settings
    ) -> None:
        self.ctx = ctx
        self.http = http
        self.state = state
        self.store = store
        self.settings = settings
        self.ids = Ids(ctx, store, http)
        self.config = state.config

    async def headers(self) -> dict[str, str]:
        """Authentication headers for the next call."""
        return {}

    async def sync(self) -> dict[str, str | None]:
        """Make the CRM hold the lead's contact and the push's deal as they are now."""
        raise NotImplementedError

    async def catalog(self) -> tuple[dict[str, set[str]], set[str]]:
        """The CRM's deal pipelines with their stage ids, and its user (owner) ids."""
        raise NotImplementedError

    def stage_for(self, our_stage: str | None) -> str | None:
        """The CRM stage mapped from ours, or None when the config maps none."""
        return self.config.stage_map.get(our_stage) if our_stage else None


def require(value: str | None, what: str) -> str:
    """A config value the CRM needs, or a not-retryable error naming it."""
    if not value:
        raise CrmError(
            "failed",
            "config_incomplete",
            f"the CRM config has no {what}; set client_crm_configs.{what}",
        )
    return value


def as_int(value: str | None, what: str) -> int | None:
    """A numeric CRM id from text config (Pipedrive ids are integers)."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise CrmError(
            "failed", "config_invalid", f"client_crm_configs.{what} {value!r} is not a number"
        ) from None
