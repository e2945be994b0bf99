"""Queue overhead: N no-op pushes through our push queue, two ways (the batch API, and the
code path `agency-crm push drain` takes), side by side on the same cluster with PgQueuer,
procrastinate and a bare FOR UPDATE SKIP LOCKED loop doing the same no-op jobs.

    python bench/bench_queue.py [--jobs 20000] [--runs 3] [--database-url URL]
                                [--only ours,runner,bare,pgqueuer,procrastinate] [--procs 2,4]
                                [--no-sweep | --wide-sweep]

Needs the bench extra (pgqueuer[asyncpg]==1.6.0, procrastinate==3.10.0) for those two
contenders. Without --database-url it starts a throwaway cluster on /dev/shm with fsync,
synchronous_commit and full_page_writes on (PostgreSQL's defaults).

Every measurement gets a fresh database with the jobs already enqueued, vacuumed, analyzed and
checkpointed; worker processes connect first, then a barrier starts the clock, which stops
when the last worker has found the queue empty (enqueue and connection set-up excluded).

* ours ("claim_pushes + complete_pushes (batch API)"): per process, `crm.claim_pushes(client,
  owner, batch, 300)` (its own transaction: lease, attempt count, per-lead order), then
  `crm.complete_pushes(client, owner, ids, attempts, 'skipped')` (the claims by their attempt
  numbers) in a transaction of its own, which marks the pushes done and writes one
  crm.crm_push_log row per push it completed; that
  transaction and the next claim go out in one pipeline (one round trip per batch). The pushes
  point at real leads, either all of one client shared by every process or one client per
  process. The push runner never calls complete_pushes: this is what the SQL queue can do, not
  what `push drain` does.
* runner ("push drain path, no-op CRM"): the code path `agency-crm push drain` takes. Per
  process, one real `agency_crm.push.runner.Drainer` (DrainSettings watch=False, client_ids =
  the clients that process owns, per_client from the setting, batch_size 100 (push drain's
  default --batch-size), concurrency = clients x per_client, retry_horizon 0 so the drain ends
  when the queue is empty) on asyncio, as the CLI runs it. One lane per client claims up to
  100 pushes at a time (`Store.claim`, named query claim_pushes), reads their targets in one
  query (`Store.contexts`, crm.push_targets), runs up to per_client of them at once through the
  client's `Connection` and `Push`, and records the outcomes of the pushes that ended in one
  statement (`Store.finish_many`: crm.write_push_log and crm.finish_pushes) while the next ones
  run, and always before claiming again; an idle lane asks next_run_after
  once and ends. Only the CRM is replaced: the worker registers a no-op Connection for the
  configs' crm_type ('pipedrive') in `agency_crm.push.crms.CONNECTIONS`, whose push's sync()
  makes no HTTP call and records one successful call (operation noop_sync, HTTP 200), so
  every push writes one crm_push_log row as a one-call push does (and as ours does). No
  product code is changed. Connection set-up is excluded as for the others: before the
  barrier the worker opens the pool Drainer.run() would open (same arguments, checked when
  run() asks for it) and grows it to its max_size, and loads the TLS context the run's HTTP
  client uses (cached per process); the config read, the HTTP client and closing the pool are
  inside the clock. Each process owns its own clients (1 or 8 per process), the jobs spread
  evenly over all of them.
* bare: a table (id, status, payload) and `UPDATE ... WHERE id IN (SELECT id ... ORDER BY id
  LIMIT batch FOR UPDATE SKIP LOCKED) RETURNING id`, then a second UPDATE marking them done,
  pipelined with the next claim.
* pgqueuer: `Queries.install()`, one batch enqueue, `QueueManager.run(mode=drain)` per
  process with a no-op async entrypoint (asyncpg driver when installed, else psycopg).
* procrastinate: `apply_schema_async()`, one `batch_defer_async`, `run_worker_async(wait=
  False)` per process with a no-op async task.

Each contender first tries each setting of its grid once, then runs its fastest --runs times,
contenders interleaved. The grid is --procs worker processes (2 and 4) times batch 100, 200
and 500 (procrastinate has no batch: concurrency 1 per process; ours also tries one client
shared by all processes and one client per process). The runner has no batch of its own: its
grid is --procs processes times 1 or 8 clients per process times per_client 1, 4 and 16
(concurrency = clients x per_client: 1 to 128 per process), less the settings whose
connection pools (Drainer.run's max_size, max(4, min(concurrency + 2, 50)) per process) would
not fit in the server's max_connections less 10 (on the throwaway cluster's 200: 4 processes
of 8 clients x 16). Batches stop at 500, a realistic runner batch: past it ours and PgQueuer
stay flat while bare keeps gaining (about 170,000 jobs/s at 1000 on 2 CPUs). --wide-sweep adds
1 process, batch 50, PgQueuer's psycopg driver and procrastinate's concurrency 10: on a 2-CPU
machine none of those ever won (each was 10 % to 8x slower than the contender's best) and they
took most of the run time. --no-sweep runs the reference settings only (2 processes, batch 100
or concurrency 1, ours with one client per process, the runner with one client per process
and per_client 4, push drain's default).

After each run the outcome is checked (ours and runner: every push done with attempts = 1,
exactly one crm_push_log row per push, with push_id set, of the push's lead, status skipped
and the push's operation for ours, status success and operation noop_sync for the runner;
the runner's drain must also report every push done). The machine may be shared: before each
measurement the script waits (up to 10 s) for idle CPUs, and during it counts the CPU time
the machine spent on anything but the cluster and the workers ("other load", local clusters
only). A measurement with other load above 10 % of the machine (and 0.05 CPU seconds) is
repeated, at most twice, keeping the quietest. Prints progress on stderr and a markdown table
on stdout: medians, ratios, and the CPU time per job of the cluster and of the worker
processes. On a machine with few cores everything is CPU-bound, and CPU per job is what the
other columns follow; it also stays comparable when other work shares the machine, wall time
does not.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import os
import queue
import statistics
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any, ClassVar

import psycopg
from psycopg import conninfo
from psycopg_pool import AsyncConnectionPool

from agency_crm import schema
from agency_crm.push import crms
from agency_crm.push import runner as push_runner
from agency_crm.push.connection import Catalog, Connection
from agency_crm.push.http import CrmHttp
from agency_crm.push.model import CallRecord, LogStatus, PushContext, Reported
from agency_crm.push.runner import Drainer, DrainSettings
from agency_crm.push.sync import Push
from common import (
    Database,
    ServerCpu,
    add_client,
    add_database_url,
    add_leads,
    bench_server,
    database,
    log,
    machine_busy_seconds,
    markdown_header,
    markdown_row,
    per_item,
    wait_idle,
)

CONTENDERS = ("ours", "runner", "bare", "pgqueuer", "procrastinate")
# What each contender is, in the table.
NAMES = {
    "ours": "ours: claim_pushes + complete_pushes (batch API)",
    "runner": "runner: push drain path, no-op CRM",
}
LEASE_SECONDS = 300
TIMEOUT = 600.0  # seconds one measurement may take before it is abandoned
BATCHES = (100, 200, 500)
WIDE_BATCHES = (50, *BATCHES)
NOISY = 0.10  # other load, as a share of the machine, above which a measurement is repeated
NOISY_CPU = 0.05  # ... if it also came to this many CPU seconds (below: clock-tick noise)
RETRIES = 2
RUNNER_CLIENTS = (1, 8)  # clients (lanes) per runner process
# The runner's claim: push drain's default --batch-size.
RUNNER_BATCH = 100
RUNNER_PER_CLIENT = (1, 4, 16)
CONNECTION_HEADROOM = 10  # connections left free for the bench itself and superusers

# -- ours ------------------------------------------------------------------------------------

CLAIM = """
    SELECT id, operation, lead_id, meeting_id, deal_id, crm_config_id, attempts
    FROM crm.claim_pushes(%s, %s, %s, %s)
"""
COMPLETE = "SELECT crm.complete_pushes(%s, %s, %s, %s, 'skipped')"


def report(out: Any, n: int, cpu0: float, error: str | None = None) -> None:
    """A worker's result: when it finished, jobs done, its CPU seconds since the start."""
    out.put((time.perf_counter(), n, time.process_time() - cpu0, error))


def fail(out: Any, barrier: Barrier, cpu0: float = 0.0) -> None:
    """Report the exception being handled, then break the barrier: a worker failing before
    the start must not leave the others (and the clock) waiting for it."""
    report(out, 0, cpu0, traceback.format_exc())
    barrier.abort()


def ours_worker(url: str, clients: list[uuid.UUID], batch: int, barrier: Barrier, out: Any) -> None:
    """Drain the pushes of `clients` in turn, then report (see report())."""
    try:
        cpu0 = 0.0
        owner = f"bench-{os.getpid()}"
        with psycopg.connect(url, autocommit=True) as conn:
            claim, done = conn.cursor(), conn.cursor()
            barrier.wait(TIMEOUT)
            cpu0 = time.process_time()
            n = 0
            for client in clients:
                rows = claim.execute(CLAIM, (client, owner, batch, LEASE_SECONDS)).fetchall()
                while rows:
                    ids = [r[0] for r in rows]
                    attempts = [r[6] for r in rows]
                    with conn.pipeline():
                        # COMMIT before the next claim, which runs in a transaction of its own.
                        with conn.transaction():
                            done.execute(COMPLETE, (client, owner, ids, attempts))
                        claim.execute(CLAIM, (client, owner, batch, LEASE_SECONDS))
                    completed = done.fetchone()
                    if completed is None or completed[0] != len(ids):
                        raise RuntimeError(f"completed {completed} of {len(ids)} claimed pushes")
                    n += len(ids)
                    rows = claim.fetchall()
        report(out, n, cpu0)
    except Exception:
        fail(out, barrier, cpu0)


# -- runner ----------------------------------------------------------------------------------

NOOP_OPERATION = "noop_sync"
NOOP_CRM = "pipedrive"  # the crm_type of the seeded configs (common.add_client)


class NoopPush(Push):
    """A push whose sync makes no HTTP call but records one successful call, so that its
    finish writes one audit row, as a push of one CRM call does."""

    async def sync(self) -> None:
        self.http.records.append(
            CallRecord(
                operation=NOOP_OPERATION,
                status=LogStatus.SUCCESS,
                request_payload=None,
                response_payload=None,
                http_status=200,
                error_code=None,
                error_message=None,
                duration_ms=0,
            )
        )


class NoopConnection(Connection):
    """A CRM that takes every push without a call (registered in the worker process only)."""

    crm_type = NOOP_CRM
    default_base_url = "http://noop.invalid"
    default_interval = 2.0
    default_key_fields: ClassVar[dict[str, str]] = {}

    async def headers(self, http: CrmHttp) -> dict[str, str]:
        return {}

    async def catalog(self, http: CrmHttp) -> Catalog:
        raise AssertionError("a drain never reads the catalog")

    def push(self, ctx: PushContext, http: CrmHttp) -> Push:
        return NoopPush(self, ctx, http)


def runner_pool_size(concurrency: int) -> int:
    """The max_size Drainer.run() gives its connection pool."""
    return max(4, min(concurrency + 2, 50))


def runner_settings(url: str, clients: list[uuid.UUID], per_client: int) -> DrainSettings:
    """`push drain --once` over `clients`, ending as soon as nothing is pending."""
    return DrainSettings(
        database_url=url,
        watch=False,
        batch_size=RUNNER_BATCH,
        concurrency=len(clients) * per_client,
        per_client=per_client,
        max_seconds=TIMEOUT,
        client_ids=clients,
        lease_seconds=LEASE_SECONDS,
        retry_horizon=0.0,
    )


async def warm_pool(settings: DrainSettings) -> AsyncConnectionPool[Any]:
    """The pool Drainer.run() opens, opened and grown to its max_size now (connection set-up
    stays out of the clock); Drainer.run() gets it from runner.AsyncConnectionPool, which
    checks that run() asks for a pool with these very arguments."""
    args: tuple[Any, ...] = (settings.database_url,)
    kwargs: dict[str, Any] = {
        "min_size": 1,
        "max_size": runner_pool_size(settings.concurrency),
        "open": False,
        "kwargs": {
            "autocommit": True,
            "application_name": f"agency-crm push {settings.owner}",
        },
    }
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(*args, **kwargs)
    await pool.open(wait=True, timeout=15)
    held = [await pool.getconn(timeout=30) for _ in range(kwargs["max_size"])]
    for conn in held:
        await pool.putconn(conn)

    def same_pool(*a: Any, **k: Any) -> AsyncConnectionPool[Any]:
        if (a, k) != (args, kwargs):
            raise RuntimeError(
                f"Drainer.run() asked for a pool with {a} {k}, the bench opened one with"
                f" {args} {kwargs}: update warm_pool() in bench/bench_queue.py"
            )
        return pool

    push_runner.AsyncConnectionPool = same_pool  # type: ignore[assignment,misc]
    return pool


async def runner_drain(
    url: str, clients: list[uuid.UUID], per_client: int, barrier: Barrier
) -> tuple[int, float]:
    crms.CONNECTIONS[NOOP_CRM] = NoopConnection
    settings = runner_settings(url, clients, per_client)
    pool = await warm_pool(settings)
    crms.tls_context()  # cached per process: the run's HTTP client gets it without the cost
    await asyncio.to_thread(barrier.wait, TIMEOUT)
    cpu0 = time.process_time()
    summary = await Drainer(settings).run()
    if not pool.closed:
        raise RuntimeError("Drainer.run() did not use the pool the bench opened")
    other = {str(k): v for k, v in summary.outcomes.items() if k is not Reported.DONE}
    if other or summary.clients != len(clients):
        raise RuntimeError(
            f"drain of {len(clients)} client(s): {summary.clients} lane(s),"
            f" {summary.outcomes[Reported.DONE]} pushes done, others {other}"
        )
    return summary.pushes, cpu0


def runner_worker(
    url: str, clients: list[uuid.UUID], per_client: int, barrier: Barrier, out: Any
) -> None:
    """One `push drain --once` over `clients` with the no-op CRM, then report (see report())."""
    try:
        n, cpu0 = asyncio.run(runner_drain(url, clients, per_client, barrier))
        report(out, n, cpu0)
    except Exception:
        fail(out, barrier)


# -- bare ------------------------------------------------------------------------------------

BARE_CLAIM = """
    UPDATE bare_jobs SET status = 'doing'
    WHERE id IN (
        SELECT id FROM bare_jobs WHERE status = 'todo' ORDER BY id LIMIT %s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
"""
BARE_DONE = "UPDATE bare_jobs SET status = 'done' WHERE id = ANY(%s)"


def bare_worker(url: str, batch: int, barrier: Barrier, out: Any) -> None:
    cpu0 = 0.0
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            claim, done = conn.cursor(), conn.cursor()
            barrier.wait(TIMEOUT)
            cpu0 = time.process_time()
            n = 0
            rows = claim.execute(BARE_CLAIM, (batch,)).fetchall()
            while rows:
                ids = [r[0] for r in rows]
                with conn.pipeline():
                    done.execute(BARE_DONE, (ids,))
                    claim.execute(BARE_CLAIM, (batch,))
                n += len(ids)
                rows = claim.fetchall()
        report(out, n, cpu0)
    except Exception:
        fail(out, barrier, cpu0)


# -- PgQueuer --------------------------------------------------------------------------------


def has_asyncpg() -> bool:
    try:
        import asyncpg  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


async def pgqueuer_connect(url: str, driver: str) -> tuple[Any, Any]:
    """A PgQueuer driver on a new connection, and that connection (for closing)."""
    if driver == "asyncpg":
        import asyncpg
        from pgqueuer import AsyncpgDriver

        p = conninfo.conninfo_to_dict(url)
        conn = await asyncpg.connect(
            host=p.get("host"), port=p.get("port"), user=p.get("user"),
            password=p.get("password"), database=p.get("dbname"),
        )  # fmt: skip
        return AsyncpgDriver(conn), conn
    from pgqueuer import PsycopgDriver

    aconn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    return PsycopgDriver(aconn), aconn


async def pgqueuer_drain(url: str, driver: str, batch: int, barrier: Barrier) -> tuple[int, float]:
    from pgqueuer import Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.models import Job

    drv, conn = await pgqueuer_connect(url, driver)
    qm = QueueManager(Queries(drv))
    n = 0

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal n
        n += 1

    await asyncio.to_thread(barrier.wait, TIMEOUT)
    cpu0 = time.process_time()
    await qm.run(batch_size=batch, mode=QueueExecutionMode.drain)
    await conn.close()
    return n, cpu0


def pgqueuer_worker(url: str, driver: str, batch: int, barrier: Barrier, out: Any) -> None:
    try:
        import uvloop

        n, cpu0 = uvloop.run(pgqueuer_drain(url, driver, batch, barrier))
        report(out, n, cpu0)
    except Exception:
        fail(out, barrier)


async def pgqueuer_prepare(url: str, jobs: int) -> None:
    from pgqueuer import Queries

    drv, conn = await pgqueuer_connect(url, "asyncpg" if has_asyncpg() else "psycopg")
    queries = Queries(drv)
    await queries.install()
    await queries.enqueue(["noop"] * jobs, [None] * jobs, [0] * jobs)
    await conn.close()


# -- procrastinate ---------------------------------------------------------------------------


def procrastinate_app(url: str, pool_size: int) -> Any:
    import procrastinate

    # It warns that the app lives in the main module, which matters only to its CLI.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=url, min_size=pool_size, max_size=pool_size
        )
    )

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def procrastinate_drain(url: str, concurrency: int, barrier: Barrier) -> float:
    app = procrastinate_app(url, concurrency + 2)
    async with app.open_async():
        await asyncio.to_thread(barrier.wait, TIMEOUT)
        cpu0 = time.process_time()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, listen_notify=False,
            install_signal_handlers=False,
        )  # fmt: skip
    return cpu0


def procrastinate_worker(url: str, concurrency: int, barrier: Barrier, out: Any) -> None:
    try:
        cpu0 = asyncio.run(procrastinate_drain(url, concurrency, barrier))
        report(out, 0, cpu0)
    except Exception:
        fail(out, barrier)


async def procrastinate_prepare(url: str, jobs: int) -> None:
    app = procrastinate_app(url, 2)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await app.tasks["noop"].batch_defer_async(*({} for _ in range(jobs)))


# -- harness ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    seconds: float
    client_cpu: float  # CPU seconds of the worker processes
    server_cpu: float | None  # CPU seconds of the cluster, when local
    other: float | None  # share of the machine's CPU time spent on other work, when known
    other_cpu: float = 0.0  # that other work, in CPU seconds

    @property
    def disturbed(self) -> bool:
        return (self.other or 0.0) > NOISY and self.other_cpu >= NOISY_CPU


@dataclass(frozen=True)
class Setting:
    contender: str
    procs: int
    size: int  # batch size; procrastinate's per-process concurrency; the runner's per_client
    variant: str = ""  # ours: "1 client" / "1 client per process"; pgqueuer: driver
    clients: int = 0  # runner: clients (lanes) per process

    @property
    def label(self) -> str:
        p = f"{self.procs} process{'es' if self.procs > 1 else ''}"
        if self.contender == "runner":
            k = self.clients
            return (
                f"{p}, {k} client{'s' if k > 1 else ''} per process, per_client {self.size},"
                f" concurrency {k * self.size}"
            )
        size = f"concurrency {self.size}" if self.contender == "procrastinate" else (
            f"batch {self.size}"
        )  # fmt: skip
        return ", ".join(x for x in (p, size, self.variant) if x)


@dataclass
class Bench:
    server: str
    jobs: int
    server_cpu: ServerCpu
    template: str = ""
    clients: list[uuid.UUID] = field(default_factory=list)
    repeated: int = 0  # measurements repeated because of other load


def settle(url: str) -> None:
    """Same start for everyone: fresh statistics, visibility map set, nothing dirty."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def seed_template(bench: Bench, template: Database, nclients: int) -> None:
    """Schema and `nclients` clients with an active Pipedrive config; the i-th (from 1) has
    ceil(jobs / i) leads, enough for its share whenever the jobs are spread over i or more
    clients (the first has them all)."""
    bench.template = template.name
    with psycopg.connect(template.url) as conn:
        schema.upgrade(conn)
        for i in range(nclients):
            client = uuid.UUID(int=i + 1)
            add_client(conn, client, f"Bench {i + 1}", crm_api_key="bench-key")
            add_leads(conn, client, math.ceil(bench.jobs / (i + 1)))
            bench.clients.append(client)
        conn.commit()


def clients_needed(setting: Setting) -> int:
    """How many seeded clients a setting of ours or the runner uses."""
    if setting.contender == "runner":
        return setting.procs * setting.clients
    return 1 if setting.variant != "1 client per process" else setting.procs


def enqueue_pushes(bench: Bench, url: str, setting: Setting) -> list[uuid.UUID]:
    """Enqueue the no-op pushes of ours or the runner, spread evenly over the clients the
    setting uses; returns those clients."""
    clients = bench.clients[: clients_needed(setting)]
    with psycopg.connect(url) as conn:
        for i, client in enumerate(clients):
            share = bench.jobs // len(clients) + (1 if i < bench.jobs % len(clients) else 0)
            conn.execute(
                """
                INSERT INTO crm.crm_push_queue (client_id, operation, lead_id)
                SELECT client_id, 'deal_updated', id FROM crm.leads
                WHERE client_id = %s ORDER BY email LIMIT %s
                """,
                (client, share),
            )
        conn.commit()
    return clients


def push_check(
    url: str, jobs: int, log_status: str, log_operation: str | None = None
) -> str | None:
    """None when every push is done once (attempts = 1) with exactly one log row of its own
    (push_id and lead set, status `log_status`, operation `log_operation` or the push's)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'done' AND attempts = 1
                                    AND finished_at IS NOT NULL AND lease_owner IS NULL),
                   (SELECT count(*) FROM crm.crm_push_log),
                   (SELECT count(DISTINCT (client_id, push_id)) FROM crm.crm_push_log
                    WHERE status = %(status)s AND push_id IS NOT NULL),
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM crm.crm_push_log AS l
                       WHERE l.client_id = q.client_id AND l.push_id = q.id
                         AND l.lead_id = q.lead_id AND l.status = %(status)s
                         AND l.operation = coalesce(%(operation)s, q.operation)))
            FROM crm.crm_push_queue AS q
            """,
            {"status": log_status, "operation": log_operation},
        ).fetchone()
    if row != (jobs,) * 5:
        got = dict(
            zip(
                ("pushes", "done with 1 attempt", "log rows", "distinct pushes logged",
                 "pushes with a matching log row"),
                row or (None,) * 5,
                strict=True,
            )
        )  # fmt: skip
        return (
            f"expected {jobs} pushes all done with attempts = 1 and {jobs} log rows, one per"
            f" push; got {got}"
        )
    return None


def bare_prepare(url: str, jobs: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            CREATE TABLE bare_jobs (
                id bigserial PRIMARY KEY,
                status text NOT NULL DEFAULT 'todo',
                payload jsonb
            );
            CREATE INDEX bare_jobs_todo_idx ON bare_jobs (id) WHERE status = 'todo'
            """
        )
        conn.execute(
            "INSERT INTO bare_jobs (payload) SELECT '{}' FROM generate_series(1, %s)", (jobs,)
        )


def run_workers(
    target: Callable[..., None], args: list[tuple[Any, ...]], server_cpu: ServerCpu
) -> Outcome:
    """Start one process per args tuple, start the clock once all are connected, stop it
    when the last one finished."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out), daemon=True) for a in args]
    for p in procs:
        p.start()
    try:
        try:
            barrier.wait(TIMEOUT)
        except threading.BrokenBarrierError:
            try:  # the first report is the worker that broke the barrier
                first = out.get(timeout=10)[3]
            except queue.Empty:
                first = None
            raise RuntimeError(f"worker failed before the start:\n{first}") from None
        cpu0, busy0 = server_cpu.seconds(), machine_busy_seconds()
        started = time.perf_counter()
        results: list[tuple[float, int, float, str | None]] = [
            out.get(timeout=TIMEOUT) for _ in procs
        ]
        cpu1, busy1 = server_cpu.seconds(), machine_busy_seconds()
        ended = time.perf_counter()
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    errors = [r[3] for r in results if r[3]]
    if errors:
        raise RuntimeError("worker failed:\n" + errors[0])
    client = sum(r[2] for r in results)
    server = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    other, other_cpu = None, 0.0
    if server is not None and busy0 is not None and busy1 is not None:
        other_cpu = max(0.0, busy1 - busy0 - server - client)
        other = other_cpu / ((ended - started) * (os.cpu_count() or 1))
    return Outcome(
        seconds=max(r[0] for r in results) - started,
        client_cpu=client,
        server_cpu=server,
        other=other,
        other_cpu=other_cpu,
    )


def measure(bench: Bench, setting: Setting) -> Outcome:
    """One measurement on a fresh database; raises if the outcome is wrong."""
    c, jobs = setting.contender, bench.jobs
    template = bench.template if c in ("ours", "runner") else None
    with database(bench.server, "bench_queue", template=template) as (_, url):
        target: Callable[..., None]
        args: list[tuple[Any, ...]]
        if c == "ours":
            clients = enqueue_pushes(bench, url, setting)
            mine = [clients] * setting.procs if len(clients) == 1 else [[x] for x in clients]
            target, args = ours_worker, [(url, m, setting.size) for m in mine]
        elif c == "runner":
            clients, k = enqueue_pushes(bench, url, setting), setting.clients
            mine = [clients[i * k : (i + 1) * k] for i in range(setting.procs)]
            target, args = runner_worker, [(url, m, setting.size) for m in mine]
        elif c == "bare":
            bare_prepare(url, jobs)
            target, args = bare_worker, [(url, setting.size)] * setting.procs
        elif c == "pgqueuer":
            asyncio.run(pgqueuer_prepare(url, jobs))
            target = pgqueuer_worker
            args = [(url, setting.variant, setting.size)] * setting.procs
        else:
            asyncio.run(procrastinate_prepare(url, jobs))
            target, args = procrastinate_worker, [(url, setting.size)] * setting.procs
        settle(url)
        wait_idle()
        outcome = run_workers(target, args, bench.server_cpu)
        problem = check(c, url, jobs)
    if problem:
        raise RuntimeError(f"{c} ({setting.label}): {problem}")
    return outcome


def measure_quiet(bench: Bench, setting: Setting) -> Outcome:
    """measure(), repeated (at most RETRIES times) while other work took more than NOISY of
    the machine (and at least NOISY_CPU seconds); the quietest of the tries."""
    tries = [measure(bench, setting)]
    while tries[-1].disturbed and len(tries) <= RETRIES:
        log(f"    note: other load {tries[-1].other:.0%} of the machine during"
            f" {setting.contender} ({setting.label}); measuring again")  # fmt: skip
        bench.repeated += 1
        tries.append(measure(bench, setting))
    return min(tries, key=lambda o: o.other or 0.0)


def check(contender: str, url: str, jobs: int) -> str | None:
    """What is wrong with the outcome of a run, if anything."""
    if contender == "ours":
        return push_check(url, jobs, "skipped")
    if contender == "runner":
        return push_check(url, jobs, LogStatus.SUCCESS, NOOP_OPERATION)
    if contender == "bare":
        query, what = "SELECT count(*) FROM bare_jobs WHERE status = 'done'", "jobs done"
    elif contender == "pgqueuer":
        query = (
            "SELECT CASE WHEN (SELECT count(*) FROM pgqueuer) = 0 THEN count(*) END"
            " FROM pgqueuer_log WHERE status = 'successful'"
        )
        what = "jobs logged successful and an empty queue"
    else:
        query = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        what = "jobs succeeded"
    with psycopg.connect(url) as conn:
        row = conn.execute(query.encode()).fetchone()
    got = row[0] if row else None
    return None if got == jobs else f"expected {jobs} {what}, got {got}"


def grid(
    contender: str, procs: tuple[int, ...], sweep: str, max_connections: int = 100
) -> list[Setting]:
    """Settings tried for a contender: sweep is "default", "wide" or "none" (the reference
    settings). The runner's leave out those whose pools would not fit in `max_connections`."""
    c = contender
    batches: tuple[int, ...] = WIDE_BATCHES if sweep == "wide" else BATCHES
    if sweep == "wide":
        procs = tuple(sorted({1, *procs}))
    if c == "runner":
        if sweep == "none":
            return [Setting(c, 2, 4, clients=1)]
        budget = max_connections - CONNECTION_HEADROOM
        return [
            Setting(c, p, n, clients=k)
            for p in procs
            for k in RUNNER_CLIENTS
            for n in RUNNER_PER_CLIENT
            if p * runner_pool_size(k * n) <= budget
        ]
    if c == "ours":
        if sweep == "none":
            return [Setting(c, 2, 100, "1 client per process")]
        variants = ("1 client", "1 client per process")
        return [Setting(c, p, b, v) for p in procs for b in batches for v in variants[: min(p, 2)]]
    if c == "bare":
        # The reference: a bare loop claiming 100 at a time (its process count swept).
        return [Setting(c, p, 100) for p in procs] if sweep != "none" else [Setting(c, 2, 100)]
    if c == "pgqueuer":
        drivers = ["asyncpg", "psycopg"] if has_asyncpg() else ["psycopg"]
        if sweep == "none":
            return [Setting(c, 2, 100, drivers[0])]
        out = [Setting(c, p, b, drivers[0]) for p in procs for b in batches]
        if sweep == "wide":
            out += [Setting(c, p, 100, d) for d in drivers[1:] for p in procs]
        return out
    if sweep == "none":
        return [Setting(c, 2, 1)]
    return [Setting(c, p, n) for p in procs for n in ((1, 10) if sweep == "wide" else (1,))]


def ratio(x: float) -> str:
    """A ratio to two decimals, or to two significant digits below 0.1."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def print_table(
    jobs: int, nruns: int, best: dict[str, Setting], runs: dict[str, list[Outcome]], repeated: int
) -> None:
    def median_cpu(outcomes: list[Outcome], server: bool) -> float | None:
        values = [o.server_cpu if server else o.client_cpu for o in outcomes]
        known = [v for v in values if v is not None]
        return statistics.median(known) if len(known) == len(values) else None

    seconds = {c: statistics.median(o.seconds for o in outcomes) for c, outcomes in runs.items()}
    rate = {c: jobs / t for c, t in seconds.items()}
    header = markdown_header(
        f"{jobs:,} no-op jobs", "best setting", "median s", "jobs/s", "x PgQueuer", "x bare",
        "server CPU per job", "client CPU per job",
    )  # fmt: skip
    print(header)
    for c, outcomes in runs.items():
        vs_pgq = ratio(rate[c] / rate["pgqueuer"]) if "pgqueuer" in rate else "-"
        vs_bare = ratio(rate[c] / rate["bare"]) if "bare" in rate else "-"
        row = markdown_row(
            NAMES.get(c, c), best[c].label, f"{seconds[c]:.3f}", f"{rate[c]:,.0f}", vs_pgq, vs_bare,
            per_item(median_cpu(outcomes, True), jobs), per_item(median_cpu(outcomes, False), jobs),
        )  # fmt: skip
        print(row)
    print(
        f"\nMedians of {nruns} runs each, a fresh database per run; CPU per job: CPU time of"
        " the whole cluster (server) and of the worker processes (client) during the run,"
        " divided by the jobs."
    )
    counted = [o for outcomes in runs.values() for o in outcomes]
    if counted and all(o.other is not None for o in counted):
        worst = max(o.other or 0.0 for o in counted)
        disturbed = any(o.disturbed for o in counted)
        print(
            f"Other load during the counted runs: at most {worst:.0%} of the machine"
            f" ({'DISTURBED: rerun on a quiet machine' if disturbed else 'quiet'});"
            f" {repeated} measurement(s) repeated because of it."
        )
    if "ours" in rate and "pgqueuer" in rate and "bare" in rate:
        print(
            f"ours (batch API): {rate['ours'] / rate['pgqueuer']:.2f}x PgQueuer (target >= 1.5),"
            f" {rate['ours'] / rate['bare']:.2f}x the bare loop (target >= 0.6)"
        )
    if "runner" in rate:
        vs = [
            f"{ratio(rate['runner'] / rate[c])}x {what}"
            for c, what in (("pgqueuer", "PgQueuer"), ("bare", "the bare loop"),
                            ("ours", "ours (batch API)"))
            if c in rate
        ]  # fmt: skip
        if vs:
            print(f"runner (the push drain path, no-op CRM): {', '.join(vs)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    add_database_url(parser)
    parser.add_argument(
        "--only", default=",".join(CONTENDERS), help=f"comma-separated, of {', '.join(CONTENDERS)}"
    )
    parser.add_argument(
        "--procs", default="2,4", help="worker process counts the sweep tries (default 2,4)"
    )
    sweep = parser.add_mutually_exclusive_group()
    sweep.add_argument(
        "--no-sweep", action="store_true", help="skip the settings sweep: reference settings"
    )
    sweep.add_argument(
        "--wide-sweep",
        action="store_true",
        help="also sweep 1 process, batch 50, PgQueuer's psycopg driver, procrastinate's"
        " concurrency 10",
    )
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CONTENDERS))
    if unknown:
        parser.error(f"unknown contender(s) {', '.join(unknown)}; choose from {CONTENDERS}")
    try:
        procs = tuple(sorted({int(p) for p in args.procs.split(",") if p.strip()}))
    except ValueError:
        parser.error(f"--procs: comma-separated process counts, got {args.procs!r}")
    if not procs or min(procs) < 1:
        parser.error(f"--procs: comma-separated process counts, got {args.procs!r}")
    mode = "none" if args.no_sweep else "wide" if args.wide_sweep else "default"
    if "pgqueuer" in only and not has_asyncpg():
        log("note: asyncpg is not installed; PgQueuer runs on its (slower) psycopg driver")

    began = time.monotonic()
    with bench_server(args.database_url, fsync=True) as server, ExitStack() as stack:
        bench = Bench(server.url, args.jobs, ServerCpu(server.url))
        with psycopg.connect(bench.server, autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            durability = conn.execute(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit'),"
                " current_setting('full_page_writes')"
            ).fetchone()
            max_conn = conn.execute("SELECT current_setting('max_connections')::int").fetchone()
        log(f"PostgreSQL {version[0] if version else '?'}; fsync, synchronous_commit,"
            f" full_page_writes: {durability}; {os.cpu_count()} CPUs")  # fmt: skip
        max_connections = max_conn[0] if max_conn else 100
        grids = {c: grid(c, procs, mode, max_connections) for c in only}
        if "runner" in only and mode != "none":
            left_out = [
                Setting("runner", p, n, clients=k)
                for p in (tuple(sorted({1, *procs})) if mode == "wide" else procs)
                for k in RUNNER_CLIENTS
                for n in RUNNER_PER_CLIENT
                if Setting("runner", p, n, clients=k) not in grids["runner"]
            ]
            for s in left_out:
                log(f"note: runner ({s.label}) left out: its pools would take"
                    f" {s.procs * runner_pool_size(s.clients * s.size)} of the server's"
                    f" {max_connections} connections")  # fmt: skip
        seeded = [clients_needed(s) for c in ("ours", "runner") for s in grids.get(c, [])]
        if seeded:
            nclients = max(seeded)
            log(f"seeding the template: {nclients} clients, the i-th with"
                f" ceil({args.jobs} / i) leads ...")  # fmt: skip
            template = database(server.url, "bench_queue_template", drop=not server.throwaway)
            seed_template(bench, stack.enter_context(template), nclients)

        best: dict[str, Setting] = {}
        for contender in only:
            settings = grids[contender]
            if len(settings) == 1:
                best[contender] = settings[0]
                continue
            tried: dict[Setting, float] = {}
            for setting in settings:
                tried[setting] = measure_quiet(bench, setting).seconds
                log(f"  sweep {contender}: {setting.label}: {tried[setting]:.3f} s,"
                    f" {args.jobs / tried[setting]:,.0f} jobs/s")  # fmt: skip
            best[contender] = min(tried, key=lambda s: tried[s])

        runs: dict[str, list[Outcome]] = {c: [] for c in only}
        for r in range(args.runs):
            for contender in only:  # interleaved, so drift hits everyone alike
                o = measure_quiet(bench, best[contender])
                runs[contender].append(o)
                other = "-" if o.other is None else f"{o.other:.0%}"
                log(f"  run {r + 1}/{args.runs} {contender}: {best[contender].label}:"
                    f" {o.seconds:.3f} s, {args.jobs / o.seconds:,.0f} jobs/s,"
                    f" CPU per job {per_item(o.server_cpu, args.jobs)} server,"
                    f" {per_item(o.client_cpu, args.jobs)} client, other load {other}")  # fmt: skip
        print_table(args.jobs, args.runs, best, runs, bench.repeated)
        log(f"done in {time.monotonic() - began:.0f} s")
        return 0


if __name__ == "__main__":
    sys.exit(main())
