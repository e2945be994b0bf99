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
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

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
    PushContext,
    Reported,
)
from agency_crm.push.settings import Settings
from agency_crm.push.store import Ended, MissingEntity, Store
from agency_crm.queries import PUSH

if TYPE_CHECKING:
    from agency_crm.push.aio import AioClient

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


# Outcomes recorded in one statement: at most this many, and none kept waiting longer than
# FLUSH_DELAY seconds for others to end (a lane with nothing else running records at once).
FLUSH_AT = 100
FLUSH_DELAY = 0.05

# An idle lane whose client has pushes due that it could not claim (they wait behind pushes of
# their leads that another process is sending) asks again after 50 ms, then twice as long each
# time it finds none, up to this many seconds: not every 50 ms for as long as those take.
BLOCKED_WAIT_MAX = 1.0


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


# A 429 defers its push for at least this long, whatever its Retry-After says (0, or a
# negative or unreadable value read as 0): a CRM that keeps answering "429, come back now"
# costs a deferred push at most two calls a second, not a busy loop.
RATE_LIMITED_MIN_WAIT = 0.5


def deferral(exc: CrmError) -> datetime:
    """When a deferred push is tried again: when the CRM said (a 429's Retry-After, at least
    RATE_LIMITED_MIN_WAIT, plus up to 250 ms so that pushes told the same time do not all
    come back at once), or in a second; never later than a retry may be."""
    if exc.retry_after is None:
        delay = 1.0
    elif exc.code == "rate_limited":
        delay = max(exc.retry_after, RATE_LIMITED_MIN_WAIT) + random.uniform(0.0, 0.25)
    else:
        delay = exc.retry_after
    return datetime.now(UTC) + timedelta(seconds=min(delay, LONGEST_WAIT.total_seconds()))


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
        self.clients: dict[uuid.UUID, AioClient] = {}
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
            for client in self.clients.values():
                await client.aclose()
            await self.pool.close()
        self.summary.seconds = time.monotonic() - start
        self.summary.clients = len(self.connections)
        return self.summary

    def start_lane(self, config: Config) -> None:
        """Start (or restart) the lane of one config."""
        assert self.store is not None
        connection = self.connections.get(config.client_id)
        if connection is None or connection.config.id != config.id:
            # An HTTP client per lane, sized to the lane's calls in flight (httpx's pool
            # looked at every connection it held on every request: one pool for the whole
            # run, 64 connections, cost about 0.9 ms of CPU per CRM call).
            http = self.clients.get(config.client_id)
            if http is None:
                http = self.clients[config.client_id] = crms.drain_client(
                    self.settings.client, self.settings.per_client
                )
            connection = crms.connect(config, http, self.settings.client, self.store, self.slots)
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
        """Claim and run one client's pushes until nothing is due (or stopped).

        A claim takes up to ``batch_size`` due pushes and reads all their contexts in one
        query; up to ``per_client`` of them run at once (a CRM that takes batches gets them
        as batches of up to its batch limit). Outcomes are finished in sets: one statement
        records every outcome (and audit row) that ended since the last one, while the next
        pushes run, so a lone push is finished at once and a busy lane in few round trips.
        """
        assert self.store is not None
        s = self.settings
        client_id = connection.config.client_id
        wake = self.wake[client_id]
        queue: deque[tuple[Claimed, PushContext | MissingEntity]] = deque()
        running: set[asyncio.Task[list[Ended]]] = set()
        ended: list[Ended] = []
        ended_since = 0.0  # when the oldest of ``ended`` ended (monotonic)
        flushing: asyncio.Task[None] | None = None
        held = False
        drained = False
        empty_claims = 0  # claims in a row that found nothing
        while True:
            stopping = self.stopping.is_set() or time.monotonic() >= self.deadline
            if (stopping or held) and queue:
                # Claimed but not started: back to pending at once, the attempt given back.
                if not ended:
                    ended_since = time.monotonic()
                ended.extend(self.release(connection, queue, held))
                queue.clear()
            if (
                not stopping
                and not held
                and not queue
                and not drained
                and len(running) < s.per_client
            ):
                # What ended is recorded first: a claim must see those pushes finished (not
                # take back one whose lease lapsed while it ran), and their leads' next
                # pushes become claimable.
                if flushing is not None:
                    await flushing
                    flushing = None
                if ended:
                    await self.flush(connection, ended)
                    ended = []
                claimed = await self.store.claim(client_id, s.owner, s.batch_size, s.lease_seconds)
                # Fewer than asked: the rest wait for pushes in flight (their leads' earlier
                # pushes) or for their time; claim again once an outcome is recorded.
                drained = len(claimed) < s.batch_size
                empty_claims = 0 if claimed else empty_claims + 1
                if claimed:
                    crashpoints.reached("after_claim")
                    contexts = await self.store.contexts(claimed, connection.config)
                    queue.extend(zip(claimed, contexts, strict=True))
            while queue and len(running) < s.per_client:
                size = min(connection.batch_limit, len(queue))
                batch = [queue.popleft() for _ in range(size)]
                running.add(asyncio.create_task(self.run_batch(connection, batch)))
            # Outcomes are recorded in sets: when nothing else is about to end, when a set is
            # full, or once the oldest has waited FLUSH_DELAY (a lone push is not held up).
            timeout: float | None = None
            if ended and flushing is None:
                waited = time.monotonic() - ended_since
                if not running or len(ended) >= FLUSH_AT or waited >= FLUSH_DELAY:
                    flushing = asyncio.create_task(self.flush(connection, ended))
                    ended = []
                else:
                    timeout = FLUSH_DELAY - waited
            waiting: set[asyncio.Task[Any]] = set(running)
            if flushing is not None:
                waiting.add(flushing)
            if waiting:
                done, _ = await asyncio.wait(
                    waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    if task is flushing:
                        flushing = None
                        task.result()
                        drained = False
                        continue
                    running.discard(task)
                    results = task.result()
                    if not ended:
                        ended_since = time.monotonic()
                    ended.extend(results)
                    # Our credentials were refused: claim nothing more this round, even when
                    # the config was fixed meanwhile (the push went back to pending): the fix
                    # is not what this lane holds, and sending with the old credentials would
                    # only put the fixed config in error again.
                    held = held or any(r.outcome is Outcome.HELD for r in results)
                continue
            if stopping or held:
                return
            # Idle: nothing claimable now.
            next_at = await self.store.next_run_after(client_id)
            due = None if next_at is None else (next_at - datetime.now(UTC)).total_seconds()
            if s.watch:
                wait = s.poll_seconds
                if due is not None:
                    wait = min(wait, max(0.05, due))
            else:
                if due is None:
                    return
                wait = max(0.05, due)
                if wait > s.retry_horizon:
                    return
            if due is not None and due <= 0 and empty_claims:
                # Due, yet the claim found none: behind pushes of their leads in flight in
                # another process. Ask less and less often until those are finished.
                wait = max(wait, min(BLOCKED_WAIT_MAX, 0.05 * 2 ** (empty_claims - 1)))
            wait = min(wait, max(0.0, self.deadline - time.monotonic()))
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), timeout=wait)
            except TimeoutError:
                pass
            drained = False

    def release(
        self,
        connection: Connection,
        queue: deque[tuple[Claimed, PushContext | MissingEntity]],
        held: bool,
    ) -> list[Ended]:
        """Claimed pushes this lane will not start: held (the config's credentials were
        refused) or deferred to now (the drain is stopping); either gives the attempt back."""
        outcome = Outcome.HELD if held else Outcome.DEFER
        error = (
            f"{connection.config.crm_type}: not sent: the client's credentials were refused"
            if held
            else "not sent: the drain stopped before this push's turn"
        )
        now = datetime.now(UTC)
        return [
            Ended(
                push,
                outcome,
                error,
                None if held else now,
                ctx if isinstance(ctx, PushContext) else None,
                [],
                started=time.perf_counter(),
            )
            for push, ctx in queue
        ]

    async def run_batch(
        self,
        connection: Connection,
        batch: list[tuple[Claimed, PushContext | MissingEntity]],
    ) -> list[Ended]:
        """Run pushes: one alone, or (a CRM that takes batches) together through its batch
        API, a lone push too; the outcome of each, not yet recorded."""
        if connection.batch_limit <= 1:
            return [await self.process(connection, push, ctx) for push, ctx in batch]
        ready: list[PushContext] = []
        out: list[Ended] = []
        for push, ctx in batch:
            if isinstance(ctx, PushContext) and not ctx.skip_reason:
                ready.append(ctx)
            else:
                out.append(await self.process(connection, push, ctx))
        if not ready:
            return out
        try:
            results = await connection.push_batch(ready)
        except Exception as exc:
            # The batch could not finish (our database, or a bug): every push of it is
            # retried with backoff (its writes are keyed: sending them again is safe).
            if not isinstance(exc, psycopg.Error | OSError):
                logger.exception(
                    "a batch of client %s failed unexpectedly", connection.config.client_id
                )
            error = connection.redactor.text(f"runner error: {type(exc).__name__}: {exc}")
            results = [
                Ended(
                    ctx.push,
                    Outcome.RETRY,
                    error,
                    None,
                    ctx,
                    [],
                    exc=CrmError(Outcome.RETRY, "runner_error", error),
                )
                for ctx in ready
            ]
        held = False
        for item in results:
            failure = item.exc
            if isinstance(failure, CrmError):
                if item.outcome is Outcome.HELD and not held:
                    held = True
                    await self.store_hold(connection, item.error or failure.describe())
                elif item.outcome is Outcome.DEFER:
                    item.retry_at = deferral(failure)
                elif item.outcome is Outcome.RETRY:
                    item.retry_at = backoff(failure, item.push.attempts, self.settings)
        return out + results

    async def store_hold(self, connection: Connection, error: str) -> None:
        """crm.hold_pushes: the client's credentials were refused."""
        assert self.store is not None
        config = connection.config
        await self.store.hold(config.client_id, f"{config.crm_type}: {error}")

    async def process(
        self, connection: Connection, push: Claimed, ctx: PushContext | MissingEntity
    ) -> Ended:
        """Run one push; its outcome, not yet recorded."""
        assert self.store is not None
        s = self.settings
        started = time.perf_counter()
        config = connection.config
        http = connection.calls()
        outcome, error, retry_at = Outcome.DONE, None, None
        skipped = False
        target = ctx if isinstance(ctx, PushContext) else None
        try:
            if isinstance(ctx, MissingEntity):
                raise ctx
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
                retry_at = deferral(exc)
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
        return Ended(
            push,
            outcome,
            error,
            retry_at,
            target,
            http.take_records(),
            calls=http.calls,
            rate_limited=http.rate_limited,
            skipped=skipped,
            started=started,
            ids=http.take_ids(),
        )

    async def flush(self, connection: Connection, items: list[Ended]) -> None:
        """Record the outcomes (and remaining audit rows) of ended pushes in one statement."""
        assert self.store is not None
        config = connection.config
        statuses = await self.store.finish_many(config.id, self.settings.owner, items)
        crashpoints.reached("after_commit")
        for item, status in zip(items, statuses, strict=True):
            self.summary.calls += item.calls
            self.summary.rate_limited += item.rate_limited
            reported = report(status, item.outcome, item.skipped)
            self.summary.outcomes[reported] += 1
            self.on_event(
                PushEvent(
                    client_id=item.push.client_id,
                    crm_type=config.crm_type,
                    push_id=item.push.id,
                    operation=item.push.operation,
                    attempt=item.push.attempts,
                    outcome=reported,
                    error=item.error,
                    duration_ms=int((time.perf_counter() - item.started) * 1000),
                    calls=item.calls if item.rode is None else item.rode,
                )
            )


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
