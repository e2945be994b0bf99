"""A HubSpot backfill: one client's history (50,000 past bookings of 10,000 leads) pushed into
the fake HubSpot through its batch APIs, against the bound its rate limit sets.

    python bench/bench_backfill.py [--leads 10000] [--meetings-per-lead 5] [--latency-ms 50]
                                   [--limit 100/10] [--batch-sizes 100,400] [--per-client 4]
                                   [--concurrency 16] [--sample-leads 100] [--database-url URL]

Starts a throwaway cluster (or uses --database-url: scratch databases are created on that
server and dropped at the end), installs the schema and seeds one database that serves as the
template of every run: a client "Backfill" with --leads leads and --meetings-per-lead past
bookings each, and a client "Sample" with --sample-leads leads booked the same way, both
**before any CRM is connected** (set-based INSERT ... SELECT through the lifecycle triggers,
in chunks with progress). The history interleaves as a real one does: the leads arrive evenly
over a year, each books its meetings 14 days apart (discovery, demo, follow-ups), all of them
in the past; so about one booking in five is a new lead's. With no CRM config nothing is
queued, which is checked.

Each run then clones the template, connects the client to a new account of the fake HubSpot
in this process (``tests.push.conftest.connect_crm``: the config the connect flow saves),
gives the account --latency-ms and a rolling --limit, and queues the history with
``crm.backfill_pushes(client, NULL)``, the call the connect flow makes after saving the config
(``agency_crm.service.crm``, ``agency-crm push backfill``). One ``push drain --once``
subprocess drains it (``--batch-size`` from --batch-sizes, one run each; ``--per-client``,
``--concurrency``).

Measured per run: the seconds from the start of the drain to the last push done, the CRM calls
the fake answered (its request counts) and its 429s, calls per push, the bound (the accepted
calls at the limit's rate: calls / (max / interval)) and the run's fraction of it (bound
seconds / seconds), the drain subprocess's CPU (user + system, start-up included) and the
cluster's CPU (when local) during the drain. Then the fake is checked: exactly one contact per
lead, one deal per booking (by our key), each deal associated with exactly its lead's contact,
every push done.

Before/after: the "Sample" client's bookings (--sample-leads x --meetings-per-lead) drained the
same way with ``--no-batches`` (each push on its own, the path before batches), at a limit
high enough not to wait (calls per push do not depend on it), give the one-push path's calls
per push, and from them what the same backfill would take at --limit without batches.

On stderr, to explain a run: progress every 10 s (pushes done, calls the fake answered), the
calls per operation from the push log (a batch call counted once, with its pushes), who used
the CPUs during the drain (the drain, the cluster, this process, which is mostly the fake, and
what is left of the machine's busy time: other work, the machine being shared), the cluster's
busiest functions (``track_functions``) and when autovacuum analyzed the CRM-id map, which
is empty when the drain starts.

Targets: no 429, at most 0.05 calls per push (HubSpot), every check passed; exit status 1
otherwise.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from bench_push import ROOT, Account, Limit, calls_per_push, drain_subprocess
from common import (
    ServerCpu,
    add_database_url,
    bench_server,
    database,
    log,
    machine_busy_seconds,
    markdown_header,
    markdown_row,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.fixtures import Make
from tests.push.conftest import Crm, connect_crm

from agency_crm import schema
from agency_crm.sandbox import Sandbox

TARGET_CALLS_PER_PUSH = 0.05
FOLLOW_UP_GAP = timedelta(days=14)
SEED_CHUNK = 10_000  # bookings per INSERT ... SELECT
# The sample without batches is measured for its calls per push, not its time: a limit this
# high never makes it wait.
SAMPLE_LIMIT = Limit(10_000, 10.0)


@dataclass
class Client:
    id: uuid.UUID
    name: str
    leads: int
    meetings: int


@dataclass
class Run:
    """One backfill drained, as the database and the fake see it."""

    label: str
    extra: list[str]
    pushes: int = 0
    queued_seconds: float = 0.0
    seconds: float = 0.0  # start of the drain to the last push done
    process_seconds: float = 0.0
    drain_cpu: float | None = None
    server_cpu: float | None = None
    machine_busy: float | None = None  # CPU seconds the whole machine ran tasks meanwhile
    bench_cpu: float = 0.0  # this process meanwhile: the fake HubSpot's threads, mostly
    calls: int = 0
    status_429: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    per_push: dict[str, tuple[int, float]] = field(default_factory=dict)
    operations: list[tuple[str, int, int, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    functions: list[tuple[str, int, float]] = field(default_factory=list)
    # autovacuum's analyses of the id map during the drain, and when the last one was
    id_map_analyzed: tuple[int, float] | None = None

    @property
    def accepted(self) -> int:
        return self.calls - self.status_429

    @property
    def calls_per_push(self) -> float:
        return self.calls / self.pushes if self.pushes else float("nan")

    def cpu_note(self) -> str:
        """Who used the machine's CPUs during the drain, in seconds: what is left of the
        machine's busy time is other work on this shared machine."""
        parts = [
            f"drain {self.drain_cpu or 0:.1f}",
            f"cluster {self.server_cpu:.1f}" if self.server_cpu is not None else "cluster -",
            f"fake HubSpot (this process) {self.bench_cpu:.1f}",
        ]
        if self.machine_busy is None:
            return ", ".join(parts)
        ours = (self.drain_cpu or 0) + (self.server_cpu or 0) + self.bench_cpu
        other = max(0.0, self.machine_busy - ours)
        capacity = self.process_seconds * (os.cpu_count() or 1)
        return (
            ", ".join(parts)
            + f"; machine {self.machine_busy:.1f} of {capacity:.0f} CPU-seconds, other work "
            f"{other:.1f} ({other / self.process_seconds:.2f} cores)"
        )


# -- seeding ---------------------------------------------------------------------------------


def seed_client(
    conn: psycopg.Connection[Any], name: str, leads: int, per_lead: int, tag: str
) -> Client:
    """A client without CRM config, its leads and their past bookings (autocommit)."""
    row = conn.execute(
        "INSERT INTO crm.clients (name) VALUES (%s) RETURNING id", (name,)
    ).fetchone()
    assert row is not None
    client: uuid.UUID = row[0]
    # The history ends a month ago: the last lead arrives a year after the first, and books
    # its last meeting (per_lead - 1) x 14 days later; each meeting is held 3 days after it
    # was booked.
    start = datetime.now(UTC) - timedelta(days=365 + 30) - (per_lead - 1) * FOLLOW_UP_GAP
    step = timedelta(days=365) / max(leads, 1)
    p = {"client": client, "n": leads, "tag": tag, "start": start, "step": step}
    conn.execute(
        """
        INSERT INTO crm.leads (client_id, email, first_name, last_name, company, status,
                               created_at, updated_at)
        SELECT %(client)s, format('lead%%s@%%s.example', g, %(tag)s::text), 'Lead', 'No. ' || g,
               format('Company %%s', g), 'contacted',
               %(start)s + (g - 1) * %(step)s - interval '1 day',
               %(start)s + (g - 1) * %(step)s - interval '1 day'
        FROM generate_series(1, %(n)s) AS g
        """,
        p,
    )
    total = leads * per_lead
    chunk_leads = max(1, SEED_CHUNK // per_lead)
    started = time.monotonic()
    for lo in range(0, leads, chunk_leads):
        conn.execute(
            """
            WITH l AS (
                SELECT id, row_number() OVER (ORDER BY length(email), email) - 1 AS i
                FROM crm.leads
                WHERE client_id = %(client)s
            )
            INSERT INTO crm.meetings (client_id, lead_id, booked_at, scheduled_at,
                                      duration_minutes, meeting_type)
            SELECT %(client)s, l.id, b.at, b.at + interval '3 days', 30,
                   CASE j WHEN 0 THEN 'discovery' WHEN 1 THEN 'demo' ELSE 'follow_up' END
            FROM l
            CROSS JOIN generate_series(0, %(per_lead)s - 1) AS j
            CROSS JOIN LATERAL (SELECT %(start)s + l.i * %(step)s + j * %(gap)s AS at) AS b
            WHERE l.i >= %(lo)s AND l.i < %(hi)s
            ORDER BY b.at
            """,
            {**p, "per_lead": per_lead, "gap": FOLLOW_UP_GAP, "lo": lo, "hi": lo + chunk_leads},
        )
        done = min(lo + chunk_leads, leads) * per_lead
        log(
            f"  {name}: {done:>6}/{total} bookings ({time.monotonic() - started:.1f} s, "
            f"{done / (time.monotonic() - started):.0f}/s)"
        )
    return Client(client, name, leads, total)


def seed_template(url: str, leads: int, per_lead: int, sample_leads: int) -> list[Client]:
    """The schema and both clients' histories; checks that nothing was queued."""
    with psycopg.connect(url) as conn:
        schema.upgrade(conn)
    with psycopg.connect(url, autocommit=True) as conn:
        clients = [
            seed_client(conn, "Backfill", leads, per_lead, "backfill"),
            seed_client(conn, "Sample", sample_leads, per_lead, "sample"),
        ]
        row = conn.execute(
            "SELECT (SELECT count(*) FROM crm.crm_push_queue),"
            " (SELECT count(*) FROM crm.client_crm_configs),"
            " (SELECT count(*) FROM crm.meetings WHERE scheduled_at >= now())"
        ).fetchone()
        assert row is not None
        if row != (0, 0, 0):
            raise SystemExit(
                f"seeding: {row[0]} pushes queued, {row[1]} CRM configs, {row[2]} future "
                "meetings; expected none of each (no CRM connected, a past history)"
            )
        log("  no CRM config: nothing queued (checked)")
        conn.execute("VACUUM ANALYZE")
    return clients


# -- one run ---------------------------------------------------------------------------------


class Progress(threading.Thread):
    """Every ``every`` seconds: pushes done and the calls the fake answered so far."""

    def __init__(
        self, url: str, sandbox: Sandbox, crm: Crm, total: int, every: float = 10.0
    ) -> None:
        super().__init__(name="bench-progress", daemon=True)
        self.url = url
        self.account = sandbox.apps["hubspot"].find_account(crm.token, None)
        self.total = total
        self.every = every
        self.started = time.monotonic()
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.wait(self.every):
                row = conn.execute(
                    "SELECT count(*) FROM crm.crm_push_queue WHERE status = 'done'"
                ).fetchone()
                counts = dict(self.account.status_counts)
                calls = sum(counts.values())
                elapsed = time.monotonic() - self.started
                log(
                    f"  {elapsed:6.1f} s: {row[0] if row else 0:>6}/{self.total} pushes done, "
                    f"{calls:>5} CRM calls ({calls / elapsed:.1f}/s), "
                    f"{counts.get('429', 0)} x 429"
                )


def operations(
    conn: psycopg.Connection[Any], client: uuid.UUID
) -> list[tuple[str, int, int, float]]:
    """Per operation in the push log: (operation, calls, audit rows, mean inputs per call);
    a batch call is one call however many pushes rode in it (request_payload->'batch')."""
    rows = conn.execute(
        """
        SELECT
            operation,
            count(DISTINCT coalesce(request_payload -> 'batch' ->> 'call_id', id::text)),
            count(*)
        FROM crm.crm_push_log
        WHERE client_id = %s AND http_status IS NOT NULL
        GROUP BY operation
        ORDER BY operation
        """,
        (client,),
    ).fetchall()
    return [(op, int(calls), int(n), int(n) / int(calls)) for op, calls, n in rows]


def verify(conn: psycopg.Connection[Any], client: Client, state: dict[str, Any]) -> list[str]:
    """Problems: pushes not done; contacts other than one per lead, deals other than one per
    booking, a deal not associated with exactly its lead's contact."""
    problems: list[str] = []
    statuses = dict(
        conn.execute(
            "SELECT status, count(*) FROM crm.crm_push_queue WHERE client_id = %s GROUP BY status",
            (client.id,),
        ).fetchall()
    )
    if statuses.get("done", 0) != client.meetings or len(statuses) != 1:
        problems.append(f"pushes: {statuses} for {client.meetings} bookings (all done expected)")
    lead_of: dict[str, str] = dict(
        conn.execute(
            "SELECT 'acrm-meeting-' || m.id, l.email FROM crm.meetings AS m"
            " JOIN crm.leads AS l ON l.client_id = m.client_id AND l.id = m.lead_id"
            " WHERE m.client_id = %s",
            (client.id,),
        ).fetchall()
    )
    emails = set(lead_of.values())
    contacts = state["contacts"]
    email_of = {str(c["id"]): (c["properties"].get("email") or "").lower() for c in contacts}
    if len(contacts) != client.leads or set(email_of.values()) != emails:
        problems.append(
            f"contacts: {len(contacts)} ({len(set(email_of.values()))} distinct emails) for "
            f"{client.leads} leads, {len(emails - set(email_of.values()))} leads without one"
        )
    deals = state["deals"]
    keys = [d["properties"].get("agency_crm_key") for d in deals]
    if len(deals) != client.meetings or set(keys) != set(lead_of):
        problems.append(
            f"deals: {len(deals)} ({len(set(keys))} distinct keys) for {client.meetings} "
            f"bookings, {len(set(lead_of) - set(keys))} bookings without one"
        )
    contacts_of: dict[str, list[str]] = {}
    for a in state["associations"]:
        contacts_of.setdefault(str(a["deal_id"]), []).append(str(a["contact_id"]))
    wrong = 0
    for d in deals:
        linked = contacts_of.get(str(d["id"]), [])
        want = lead_of.get(d["properties"].get("agency_crm_key") or "")
        if len(linked) != 1 or email_of.get(linked[0]) != want:
            wrong += 1
    if wrong:
        problems.append(f"associations: {wrong} deals not linked to exactly their lead's contact")
    return problems


def backfill_run(
    server: str,
    template: str,
    sandbox: Sandbox,
    client: Client,
    run: Run,
    limit: Limit,
    latency_ms: float,
    concurrency: int,
    per_client: int,
    server_cpu: ServerCpu,
) -> Run:
    """Clone the template, connect the client's CRM, queue its history, drain it, check."""
    with (
        database(server, "bench_backfill_run", template=template) as db,
        psycopg.connect(db.url, autocommit=True) as conn,
    ):
        crm = connect_crm(Make(conn), sandbox, {"id": client.id}, "hubspot")
        crm.configure(
            latency_ms=latency_ms,
            rate_limit={"max": limit.max, "interval_ms": round(limit.seconds * 1000)},
        )
        started = time.monotonic()
        row = conn.execute(
            "SELECT meetings, deals FROM crm.backfill_pushes(%s, NULL)", (client.id,)
        ).fetchone()
        run.queued_seconds = time.monotonic() - started
        assert row is not None
        if tuple(row) != (client.meetings, 0):
            raise SystemExit(f"crm.backfill_pushes queued {tuple(row)}, not ({client.meetings}, 0)")
        conn.execute("ANALYZE crm.crm_push_queue")
        # Where the cluster's time goes: the drain's sessions count their function calls.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(sql.Identifier(db.name))
        )
        log(
            f"{run.label}: connected; crm.backfill_pushes queued {row[0]} bookings in "
            f"{run.queued_seconds:.1f} s; draining ..."
        )
        progress = Progress(db.url, sandbox, crm, client.meetings)
        drain_started = datetime.now(UTC)
        progress.start()
        busy0, cpu0 = machine_busy_seconds(), server_cpu.seconds()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            done = drain_subprocess(db.url, concurrency, per_client, run.extra)
        finally:
            progress.stopped.set()
            progress.join()
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1, cpu1 = machine_busy_seconds(), server_cpu.seconds()
        run.bench_cpu = own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime
        run.process_seconds, run.drain_cpu = done.seconds, done.cpu
        run.server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        run.machine_busy = None if busy0 is None or busy1 is None else busy1 - busy0
        last = conn.execute(
            "SELECT max(finished_at), count(*) FILTER (WHERE status = 'done')"
            " FROM crm.crm_push_queue WHERE client_id = %s",
            (client.id,),
        ).fetchone()
        assert last is not None
        run.seconds = (last[0] - drain_started) / timedelta(seconds=1) if last[0] else float("nan")
        run.pushes = int(last[1])
        state = crm.state()
        run.requests = {k: int(v) for k, v in state["requests"].items()}
        counts = state["status_counts"]
        run.calls = sum(int(v) for v in counts.values())
        run.status_429 = int(counts.get("429", 0))
        run.statuses = Counter(
            dict(
                conn.execute(
                    "SELECT status, count(*) FROM crm.crm_push_queue WHERE client_id = %s"
                    " GROUP BY status",
                    (client.id,),
                ).fetchall()
            )
        )
        account = Account(crm, client.id, client.leads, client.meetings)
        run.per_push = calls_per_push(conn, [account]).get("hubspot", {})
        run.operations = operations(conn, client.id)
        analyzed = conn.execute(
            "SELECT autoanalyze_count, last_autoanalyze FROM pg_stat_user_tables"
            " WHERE relid = 'crm.crm_external_ids'::regclass"
        ).fetchone()
        if analyzed and analyzed[1] and analyzed[1] > drain_started:
            run.id_map_analyzed = (
                int(analyzed[0]),
                (analyzed[1] - drain_started) / timedelta(seconds=1),
            )
        run.functions = conn.execute(
            """
            SELECT schemaname || '.' || funcname, sum(calls), sum(self_time) / 1000
            FROM pg_stat_user_functions
            GROUP BY 1
            ORDER BY 3 DESC
            LIMIT 8
            """
        ).fetchall()
        run.problems = verify(conn, client, state)
    log(
        f"{run.label}: {run.pushes} pushes done in {run.seconds:.1f} s (process "
        f"{run.process_seconds:.1f} s), {run.calls} calls, {run.status_429} x 429; fake's "
        f"requests: {run.requests}"
    )
    for op, calls, rows, inputs in run.operations:
        log(f"  {op}: {calls} calls, {rows} audit rows, {inputs:.1f} pushes per call")
    log(f"  CPU during the drain: {run.cpu_note()}")
    log(
        "  the cluster's busiest functions (self time, s): "
        + ", ".join(f"{name} {secs:.1f} ({calls} calls)" for name, calls, secs in run.functions)
    )
    log(
        "  crm.crm_external_ids (empty when the drain started) auto-analyzed: "
        + (
            "not during the drain"
            if run.id_map_analyzed is None
            else f"{run.id_map_analyzed[0]} time(s), the last {run.id_map_analyzed[1]:.0f} s in"
        )
    )
    log(f"  check: {'passed' if not run.problems else 'FAILED'}")
    for problem in run.problems:
        log(f"    {problem}")
    return run


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--meetings-per-lead", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--limit", type=Limit.parse, default=Limit(100, 10.0), help="MAX/SECONDS")
    parser.add_argument(
        "--batch-sizes", default="100,400", help="push drain --batch-size of each run"
    )
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--sample-leads",
        type=int,
        default=100,
        help="leads of the sample drained without batches (0: none)",
    )
    add_database_url(parser)
    args = parser.parse_args(argv)
    limit: Limit = args.limit
    sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]

    with bench_server(args.database_url) as server:
        with database(server.url, "bench_backfill_seed", drop=not server.throwaway) as seed:
            log(
                f"seeding {args.leads} leads and {args.leads * args.meetings_per_lead} past "
                f"bookings ({args.meetings_per_lead} per lead, 14 days apart), no CRM "
                "connected ..."
            )
            started = time.monotonic()
            backfill, sample = seed_template(
                seed.url, args.leads, args.meetings_per_lead, args.sample_leads
            )
            log(f"seeded in {time.monotonic() - started:.1f} s")
            server_cpu = ServerCpu(server.url)
            runs: list[Run] = []
            with Sandbox() as sandbox:
                for size in sizes:
                    run = Run(f"--batch-size {size}", ["--batch-size", str(size)])
                    runs.append(
                        backfill_run(
                            server.url,
                            seed.name,
                            sandbox,
                            backfill,
                            run,
                            limit,
                            args.latency_ms,
                            args.concurrency,
                            args.per_client,
                            server_cpu,
                        )
                    )
                one_push: Run | None = None
                if sample.meetings:
                    one_push = backfill_run(
                        server.url,
                        seed.name,
                        sandbox,
                        sample,
                        Run("sample --no-batches", ["--no-batches"]),
                        SAMPLE_LIMIT,
                        args.latency_ms,
                        args.concurrency,
                        args.per_client,
                        server_cpu,
                    )
                errors = [e for app in sandbox.apps.values() for e in app.internal_errors]
                if errors:
                    raise SystemExit(f"sandbox handlers raised: {errors[:3]}")

    print(
        markdown_header(
            "--batch-size",
            "pushes",
            "seconds",
            "pushes/s",
            "CRM calls",
            "calls per push",
            "429s",
            "bound s",
            "fraction",
            "drain CPU s",
            "CPU per push",
            "server CPU per push",
        )
    )
    best = min(runs, key=lambda r: r.seconds)
    for run in runs:
        bound = run.accepted / limit.rate
        print(
            markdown_row(
                run.extra[1] + (" (best)" if run is best and len(runs) > 1 else ""),
                f"{run.pushes:,}",
                f"{run.seconds:.1f}",
                f"{run.pushes / run.seconds:.0f}",
                f"{run.calls:,}",
                f"{run.calls_per_push:.4f}",
                run.status_429,
                f"{bound:.1f}",
                f"{bound / run.seconds:.2f}",
                "-" if run.drain_cpu is None else f"{run.drain_cpu:.1f}",
                "-" if run.drain_cpu is None else f"{run.drain_cpu / run.pushes * 1e3:.2f} ms",
                "-" if run.server_cpu is None else f"{run.server_cpu / run.pushes * 1e3:.2f} ms",
            )
        )
    print(
        f"\nOne HubSpot client, {backfill.leads:,} leads, {backfill.meetings:,} past bookings "
        f"queued by crm.backfill_pushes; --limit {limit.max}/{limit.seconds:g} s, --latency-ms "
        f"{args.latency_ms:g}, --per-client {args.per_client}, --concurrency "
        f"{args.concurrency}. Seconds: start of the drain to the last push done. CRM calls: "
        "the requests the fake answered (429s included). Bound s: the accepted calls at "
        f"{limit.rate:g}/s; fraction: bound s / seconds. CPU: user + system of the drain "
        "subprocess (start-up included), and of the whole cluster during the drain."
    )
    print()
    print(markdown_header("calls per push (push log)", "new lead", "known lead", "all"))
    for run in runs + ([one_push] if one_push else []):
        cells = [
            f"{run.per_push[k][1] / run.per_push[k][0]:.3f}" if k in run.per_push else "-"
            for k in ("new lead", "known lead", "all")
        ]
        print(markdown_row(run.label, *cells))
    ok = all(
        not r.problems and r.status_429 == 0 and r.calls_per_push <= TARGET_CALLS_PER_PUSH
        for r in runs
    )
    if one_push is not None:
        ok = ok and not one_push.problems
        per = one_push.calls_per_push
        without = per * backfill.meetings / limit.rate
        print(
            f"\nWithout batches (--no-batches, {one_push.pushes} bookings of "
            f"{sample.leads} leads): {per:.2f} calls per push, so the same backfill would need "
            f"{per * backfill.meetings:,.0f} calls, {without:,.0f} s ({without / 3600:.1f} h) at "
            f"{limit.max}/{limit.seconds:g} s; with batches ({best.extra[1]}): "
            f"{best.calls:,} calls, {best.seconds:.0f} s, {without / best.seconds:.0f}x faster."
        )
    print(
        f"\nTargets: 0 x 429 and <= {TARGET_CALLS_PER_PUSH} calls per push in every run, "
        "every check passed: " + ("met" if ok else "MISSED")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
