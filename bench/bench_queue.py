"""Queue overhead: claim + complete of N no-op pushes through crm.claim_pushes and
crm.complete_pushes (which writes one audit row per push), side by side on the same cluster
with PgQueuer, procrastinate and a bare FOR UPDATE SKIP LOCKED loop doing the same no-op jobs.

    python bench/bench_queue.py [--jobs 20000] [--runs 3] [--database-url URL]
                                [--only ours,bare,pgqueuer,procrastinate] [--procs 2,4]
                                [--no-sweep | --wide-sweep]

Needs the bench extra (pgqueuer[asyncpg]==1.6.0, procrastinate==3.10.0) for those two
contenders. Without --database-url it starts a throwaway cluster on /dev/shm with fsync,
synchronous_commit and full_page_writes on (PostgreSQL's defaults).

Every measurement gets a fresh database with the jobs already enqueued, vacuumed, analyzed and
checkpointed; worker processes connect first, then a barrier starts the clock, which stops
when the last worker has found the queue empty (enqueue and connection set-up excluded).

* ours: per process, `crm.claim_pushes(client, owner, batch, 300)` (its own transaction:
  lease, attempt count, per-lead order), then `crm.complete_pushes(client, owner, ids,
  'skipped')` in a transaction of its own, which marks the pushes done and writes one
  crm.crm_push_log row per push it completed; that transaction and the next claim go out in
  one pipeline (one round trip per batch). The pushes point at real leads, either all of one
  client shared by every process or one client per process.
* bare: a table (id, status, payload) and `UPDATE ... WHERE id IN (SELECT id ... ORDER BY id
  LIMIT batch FOR UPDATE SKIP LOCKED) RETURNING id`, then a second UPDATE marking them done,
  pipelined with the next claim.
* pgqueuer: `Queries.install()`, one batch enqueue, `QueueManager.run(mode=drain)` per
  process with a no-op async entrypoint (asyncpg driver when installed, else psycopg).
* procrastinate: `apply_schema_async()`, one `batch_defer_async`, `run_worker_async(wait=
  False)` per process with a no-op async task.

Each contender first tries each setting of its grid once, then runs its fastest --runs times,
contenders interleaved. The grid is the same for everyone: --procs worker processes (2 and 4)
times batch 100, 200 and 500 (procrastinate has no batch: concurrency 1 per process; ours
also tries one client shared by all processes and one client per process). Batches stop at
500, a realistic runner batch: past it ours and PgQueuer stay flat while bare keeps gaining
(about 170,000 jobs/s at 1000 on 2 CPUs). --wide-sweep adds 1 process, batch 50, PgQueuer's
psycopg driver and procrastinate's concurrency 10: on a 2-CPU machine none of those ever won
(each was 10 % to 8x slower than the contender's best) and they took most of the run time.
--no-sweep runs the reference settings only (2 processes, batch 100 or concurrency 1, ours
with one client per process).

After each run the outcome is checked (ours: every push done with attempts = 1, exactly one
crm_push_log row per push, with push_id set). The machine may be shared: before each
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
import multiprocessing
import os
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier
from typing import Any

import psycopg
from psycopg import conninfo

from agency_crm import schema
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

CONTENDERS = ("ours", "bare", "pgqueuer", "procrastinate")
LEASE_SECONDS = 300
TIMEOUT = 600.0  # seconds one measurement may take before it is abandoned
BATCHES = (100, 200, 500)
WIDE_BATCHES = (50, *BATCHES)
NOISY = 0.10  # other load, as a share of the machine, above which a measurement is repeated
NOISY_CPU = 0.05  # ... if it also came to this many CPU seconds (below: clock-tick noise)
RETRIES = 2

# -- ours ------------------------------------------------------------------------------------

CLAIM = """
    SELECT id, operation, lead_id, meeting_id, deal_id, crm_config_id
    FROM crm.claim_pushes(%s, %s, %s, %s)
"""
COMPLETE = "SELECT crm.complete_pushes(%s, %s, %s, 'skipped')"


def report(out: Any, n: int, cpu0: float, error: str | None = None) -> None:
    """A worker's result: when it finished, jobs done, its CPU seconds since the start."""
    out.put((time.perf_counter(), n, time.process_time() - cpu0, error))


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
                    with conn.pipeline():
                        # COMMIT before the next claim, which runs in a transaction of its own.
                        with conn.transaction():
                            done.execute(COMPLETE, (client, owner, ids))
                        claim.execute(CLAIM, (client, owner, batch, LEASE_SECONDS))
                    completed = done.fetchone()
                    if completed is None or completed[0] != len(ids):
                        raise RuntimeError(f"completed {completed} of {len(ids)} claimed pushes")
                    n += len(ids)
                    rows = claim.fetchall()
        report(out, n, cpu0)
    except Exception:
        report(out, 0, cpu0, traceback.format_exc())


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
        report(out, 0, cpu0, traceback.format_exc())


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
        report(out, 0, 0.0, traceback.format_exc())


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
        report(out, 0, 0.0, traceback.format_exc())


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
    size: int  # batch size, or procrastinate's per-process concurrency
    variant: str = ""  # ours: "1 client" / "1 client per process"; pgqueuer: driver

    @property
    def label(self) -> str:
        p = f"{self.procs} process{'es' if self.procs > 1 else ''}"
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
    """Schema, `nclients` clients with an active Pipedrive config and `jobs` leads each."""
    bench.template = template.name
    with psycopg.connect(template.url) as conn:
        schema.upgrade(conn)
        for i in range(nclients):
            client = uuid.UUID(int=i + 1)
            add_client(conn, client, f"Bench {i + 1}", crm_api_key="bench-key")
            add_leads(conn, client, bench.jobs)
            bench.clients.append(client)
        conn.commit()


def ours_prepare(bench: Bench, url: str, setting: Setting) -> list[uuid.UUID]:
    """Enqueue the no-op pushes; returns the clients that hold them."""
    shared = setting.variant != "1 client per process"
    clients = bench.clients[:1] if shared else bench.clients[: setting.procs]
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


def ours_check(url: str, jobs: int) -> str | None:
    """None when every push is done once (attempts = 1) with exactly one log row."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """
            SELECT count(*),
                   count(*) FILTER (WHERE status = 'done' AND attempts = 1
                                    AND finished_at IS NOT NULL AND lease_owner IS NULL),
                   (SELECT count(*) FROM crm.crm_push_log),
                   (SELECT count(DISTINCT (client_id, push_id)) FROM crm.crm_push_log
                    WHERE status = 'skipped' AND push_id IS NOT NULL),
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1 FROM crm.crm_push_log AS l
                       WHERE l.client_id = q.client_id AND l.push_id = q.id
                         AND l.lead_id = q.lead_id AND l.operation = q.operation))
            FROM crm.crm_push_queue AS q
            """
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
        barrier.wait(TIMEOUT)
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
    template = bench.template if c == "ours" else None
    with database(bench.server, "bench_queue", template=template) as (_, url):
        target: Callable[..., None]
        args: list[tuple[Any, ...]]
        if c == "ours":
            clients = ours_prepare(bench, url, setting)
            mine = [clients] * setting.procs if len(clients) == 1 else [[x] for x in clients]
            target, args = ours_worker, [(url, m, setting.size) for m in mine]
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
        return ours_check(url, jobs)
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


def grid(contender: str, procs: tuple[int, ...], sweep: str) -> list[Setting]:
    """Settings tried for a contender: sweep is "default", "wide" or "none" (the reference
    settings)."""
    c = contender
    batches: tuple[int, ...] = WIDE_BATCHES if sweep == "wide" else BATCHES
    if sweep == "wide":
        procs = tuple(sorted({1, *procs}))
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
        vs_pgq = f"{rate[c] / rate['pgqueuer']:.2f}" if "pgqueuer" in rate else "-"
        vs_bare = f"{rate[c] / rate['bare']:.2f}" if "bare" in rate else "-"
        row = markdown_row(
            c, best[c].label, f"{seconds[c]:.3f}", f"{rate[c]:,.0f}", vs_pgq, vs_bare,
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
            f"ours: {rate['ours'] / rate['pgqueuer']:.2f}x PgQueuer (target >= 1.5),"
            f" {rate['ours'] / rate['bare']:.2f}x the bare loop (target >= 0.6)"
        )


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
        log(f"PostgreSQL {version[0] if version else '?'}; fsync, synchronous_commit,"
            f" full_page_writes: {durability}; {os.cpu_count()} CPUs")  # fmt: skip
        if "ours" in only:
            nclients = max(max(procs), 2)
            log(f"seeding the template: {nclients} clients with {args.jobs} leads each ...")
            template = database(server.url, "bench_queue_template", drop=not server.throwaway)
            seed_template(bench, stack.enter_context(template), nclients)

        best: dict[str, Setting] = {}
        for contender in only:
            settings = grid(contender, procs, mode)
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
