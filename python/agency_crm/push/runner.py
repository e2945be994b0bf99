"""``agency-crm push drain``: lanes per client, bounded concurrency, leases, retries.

One lane per live CRM config claims that client's due pushes (``crm.claim_pushes``) and runs
them concurrently up to ``per_client``; every CRM call also passes the config's rate limiter
and the run-wide bound ``concurrency``, so a slow CRM holds at most its own lane. No database
transaction is ever open across an HTTP call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from agency_crm.push import crashpoints, crms
from agency_crm.push.connection import Connection
from agency_crm.push.http import CrmError
from agency_crm.push.model import (
    MAX_RETRY_DELAY,
    CallRecord,
    Claimed,
    Config,
    Finished,
    LogStatus,
    Outcome,
    Reported,
)
from agency_crm.push.settings import Settings
from agency_crm.push.store import MissingEntity, Store
from agency_crm.queries import PUSH

logger = logging.getLogger("agency_crm.push")


def default_owner() -> str:
    """A lease owner name unique to this process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class DrainSettings:
    """How a drain runs (the CLI options of ``push drain``)."""

    database_url: str
    watch: bool = False
    batch_size: int = 100
    concurrency: int = 16
    per_client: int = 4
    max_seconds: float | None = None
    client_ids: list[uuid.UUID] | None = None
    lease_seconds: int = 300
    backoff_base: float = 2.0
    backoff_cap: float = 900.0
    retry_horizon: float = 30.0
    poll_seconds: float = 30.0
    owner: str = field(default_factory=default_owner)
    client: Settings = field(default_factory=Settings)


@dataclass
class PushEvent:
    """One finished push, for progress output."""

    client_id: uuid.UUID
    crm_type: str
    push_id: int
    operation: str
    attempt: int
    outcome: Reported
    error: str | None
    duration_ms: int
    calls: int


@dataclass
class DrainSummary:
    """What a drain did."""

    outcomes: Counter[Reported] = field(default_factory=Counter)
    calls: int = 0
    rate_limited: int = 0
    seconds: float = 0.0
    clients: int = 0

    @property
    def pushes(self) -> int:
        """Pushes finished in this run (any outcome)."""
        return sum(self.outcomes.values())


# However long a CRM's Retry-After: crm.finish_push refuses a retry later than MAX_RETRY_DELAY
# after its own clock, and an hour of margin covers a runner clock ahead of the database's.
LONGEST_WAIT = MAX_RETRY_DELAY - timedelta(hours=1)


def backoff(exc: CrmError, attempt: int, settings: DrainSettings) -> datetime:
    """When a push whose attempt ``attempt`` failed with ``exc`` is tried again: the one
    backoff policy of every retried push. A rate-limited call as soon as the CRM's
    Retry-After allows (the CRM refused it before doing any work), else exponential from
    backoff_base with jitter in [50 %, 100 %], capped at backoff_cap, and never sooner than a
    Retry-After the CRM gave."""
    if exc.code == "rate_limited" and exc.retry_after is not None:
        delay = exc.retry_after + random.uniform(0.0, 0.25)
    else:
        delay = settings.backoff_base * float(2 ** min(max(attempt - 1, 0), 64))
        delay = min(delay, settings.backoff_cap) * random.uniform(0.5, 1.0)
        delay = max(delay, exc.retry_after or 0.0)
    delay = min(delay, LONGEST_WAIT.total_seconds())
    return datetime.now(UTC) + timedelta(seconds=delay)


class Drainer:
    """One drain run."""

    def __init__(
        self,
        settings: DrainSettings,
        on_event: Callable[[PushEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_event = on_event or (lambda _event: None)
        self.summary = DrainSummary()
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.stopping = asyncio.Event()
        self.wake: dict[uuid.UUID, asyncio.Event] = {}
        self.lanes: dict[uuid.UUID, asyncio.Task[None]] = {}
        self.connections: dict[uuid.UUID, Connection] = {}
        self.deadline = (
            time.monotonic() + settings.max_seconds if settings.max_seconds else float("inf")
        )
        self.pool: AsyncConnectionPool[Any] | None = None
        self.http: httpx.AsyncClient | None = None
        self.store: Store | None = None

    def stop(self) -> None:
        """Stop claiming; pushes in flight finish (signal handler, --max-seconds)."""
        self.stopping.set()
        for event in self.wake.values():
            event.set()

    async def run(self) -> DrainSummary:
        """Drain until nothing is due (--once) or until stopped (--watch)."""
        start = time.monotonic()
        s = self.settings
        self.pool = AsyncConnectionPool(
            s.database_url,
            min_size=1,
            max_size=max(4, min(s.concurrency + 2, 50)),
            open=False,
            kwargs={"autocommit": True, "application_name": f"agency-crm push {s.owner}"},
        )
        await self.pool.open(wait=True, timeout=15)
        self.store = Store(self.pool)
        self.http = crms.http_client(s.client, s.concurrency)
        try:
            configs = await self.store.configs(s.client_ids)
            for config in configs:
                self.start_lane(config)
            if s.watch:
                await self.watch()
            else:
                while self.lanes:
                    await asyncio.wait(list(self.lanes.values()))
                    self.lanes = {k: t for k, t in self.lanes.items() if not t.done()}
        finally:
            self.stop()
            if self.lanes:
                await asyncio.gather(*self.lanes.values(), return_exceptions=True)
            await self.http.aclose()
            await self.pool.close()
        self.summary.seconds = time.monotonic() - start
        self.summary.clients = len(self.connections)
        return self.summary

    def start_lane(self, config: Config) -> None:
        """Start (or restart) the lane of one config."""
        assert self.store is not None and self.http is not None
        connection = self.connections.get(config.client_id)
        if connection is None or connection.config.id != config.id:
            connection = crms.connect(
                config, self.http, self.settings.client, self.store, self.slots
            )
            self.connections[config.client_id] = connection
        else:
            connection.update(config)
        self.wake.setdefault(config.client_id, asyncio.Event())
        task = self.lanes.get(config.client_id)
        if task is None or task.done():
            self.lanes[config.client_id] = asyncio.create_task(self.lane(connection))

    async def watch(self) -> None:
        """--watch: LISTEN crm_push_queue; new pushes wake their lane, new configs get one."""
        assert self.store is not None
        conn = await psycopg.AsyncConnection.connect(self.settings.database_url, autocommit=True)
        try:
            await conn.execute(PUSH["listen_push_queue"])
            next_refresh = time.monotonic() + self.settings.poll_seconds
            while not self.stopping.is_set() and time.monotonic() < self.deadline:
                # Short waits, so a stop request (SIGTERM) is seen within a second.
                timeout = max(
                    0.05,
                    min(next_refresh, self.deadline, time.monotonic() + 1.0) - time.monotonic(),
                )
                woken: set[str] = set()
                async for notify in conn.notifies(timeout=timeout, stop_after=1):
                    woken.add(notify.payload)
                refresh = time.monotonic() >= next_refresh
                for payload in woken:
                    try:
                        client_id = uuid.UUID(payload)
                    except ValueError:
                        continue
                    if client_id in self.wake and not self.lanes[client_id].done():
                        self.wake[client_id].set()
                    else:
                        refresh = True
                if refresh:
                    for config in await self.store.configs(self.settings.client_ids):
                        self.start_lane(config)
                    for event in self.wake.values():
                        event.set()
                    next_refresh = time.monotonic() + self.settings.poll_seconds
        finally:
            await conn.close()

    async def lane(self, connection: Connection) -> None:
        """Claim and run one client's pushes until nothing is due (or stopped)."""
        assert self.store is not None
        s = self.settings
        client_id = connection.config.client_id
        wake = self.wake[client_id]
        running: set[asyncio.Task[tuple[Finished, Outcome]]] = set()
        held = False
        while True:
            stopping = self.stopping.is_set() or time.monotonic() >= self.deadline
            free = s.per_client - len(running)
            claimed: list[Claimed] = []
            if not stopping and not held and free > 0:
                claimed = await self.store.claim(
                    client_id, s.owner, min(free, s.batch_size), s.lease_seconds
                )
                if claimed:
                    crashpoints.reached("after_claim")
                for push in claimed:
                    running.add(asyncio.create_task(self.process(connection, push)))
            if running:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                # Our credentials were refused: claim nothing more this round, even when the
                # config was fixed meanwhile (the push went back to pending): the fix is not
                # what this lane holds, and sending with the old credentials would only put
                # the fixed config in error again.
                if any(t.result()[1] is Outcome.HELD for t in done):
                    held = True
                continue
            if stopping or held:
                return
            # Idle: nothing claimable now.
            next_at = await self.store.next_run_after(client_id)
            now = datetime.now(UTC)
            if s.watch:
                wait = s.poll_seconds
                if next_at is not None:
                    wait = min(wait, max(0.05, (next_at - now).total_seconds()))
            else:
                if next_at is None:
                    return
                wait = max(0.05, (next_at - now).total_seconds())
                if wait > s.retry_horizon:
                    return
            wait = min(wait, max(0.0, self.deadline - time.monotonic()))
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def process(self, connection: Connection, push: Claimed) -> tuple[Finished, Outcome]:
        """Run one push and record its outcome; returns the push's new status and the
        outcome it was finished with."""
        assert self.store is not None
        s = self.settings
        started = time.perf_counter()
        config = connection.config
        http = connection.calls()
        ctx = None
        outcome, error, retry_at = Outcome.DONE, None, None
        skipped = False
        try:
            ctx = await self.store.context(push, config)
            if ctx.skip_reason:
                http.records.append(_skipped(ctx.skip_reason))
                skipped = True
            else:
                await connection.push(ctx, http).sync()
        except MissingEntity as exc:
            outcome, error = Outcome.FAILED, str(exc)
            http.records.append(_skipped(error, status=LogStatus.FAILED, code="missing_entity"))
        except CrmError as exc:
            outcome, error = exc.kind, exc.describe()
            if outcome is Outcome.HELD:
                await self.store.hold(push.client_id, f"{config.crm_type}: {error}")
            elif outcome is Outcome.DEFER:
                retry_at = datetime.now(UTC) + timedelta(seconds=exc.retry_after or 1.0)
            elif outcome is Outcome.RETRY:
                retry_at = backoff(exc, push.attempts, s)
        except (psycopg.Error, OSError) as exc:
            # Our own database or network trouble: the push is retried later.
            outcome, error = Outcome.RETRY, f"runner error: {type(exc).__name__}: {exc}"
            retry_at = backoff(CrmError(outcome, "runner_error", error), push.attempts, s)
        except Exception as exc:  # a bug must not strand the push in flight
            # An answer we could not understand (or a bug): retried with backoff, dead after
            # max_attempts, with the error recorded instead of a crashed lane.
            outcome = Outcome.RETRY
            error = connection.redactor.text(f"internal error: {type(exc).__name__}: {exc}")
            retry_at = backoff(CrmError(outcome, "internal_error", error), push.attempts, s)
            logger.exception("push %s of client %s failed unexpectedly", push.id, push.client_id)
        status = await self.store.finish(
            push, config.id, s.owner, outcome, error, retry_at, ctx, http.take_records()
        )
        crashpoints.reached("after_commit")
        self.summary.calls += http.calls
        self.summary.rate_limited += http.rate_limited
        reported = report(status, outcome, skipped)
        self.summary.outcomes[reported] += 1
        self.on_event(
            PushEvent(
                client_id=push.client_id,
                crm_type=config.crm_type,
                push_id=push.id,
                operation=push.operation,
                attempt=push.attempts,
                outcome=reported,
                error=error,
                duration_ms=int((time.perf_counter() - started) * 1000),
                calls=http.calls,
            )
        )
        return status, outcome


def report(status: Finished, outcome: Outcome, skipped: bool) -> Reported:
    """How push drain reports a push crm.finish_push left in ``status``."""
    if status is Finished.DONE:
        return Reported.SKIPPED if skipped else Reported.DONE
    if status is Finished.PENDING:
        return Reported.DEFERRED if outcome is Outcome.DEFER else Reported.RETRY
    return Reported(status.value)


def _skipped(
    reason: str, status: LogStatus = LogStatus.SKIPPED, code: str = "skipped"
) -> CallRecord:
    return CallRecord(
        operation="skip_push",
        status=status,
        request_payload=None,
        response_payload=None,
        http_status=None,
        error_code=code,
        error_message=reason,
        duration_ms=0,
    )


async def drain(
    settings: DrainSettings, on_event: Callable[[PushEvent], None] | None = None
) -> DrainSummary:
    """Run one drain (see Drainer)."""
    return await Drainer(settings, on_event).run()
