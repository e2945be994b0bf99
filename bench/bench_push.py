"""End-to-end push throughput: N meeting_booked pushes drained into the fake CRMs over HTTP,
as a fraction of the bound min(rate limits, concurrency / latency).

    python bench/bench_push.py [--pushes 10000] [--clients 20] [--latency-ms 50] [--limit 100/10]
                               [--concurrency 32] [--per-client 4] [--mode subprocess|inprocess]
                               [--database-url URL]

Starts a throwaway cluster (or uses --database-url: a scratch database is created on that server
and dropped at the end), installs the schema and starts the CRM sandbox in this process. The
clients are spread over the three fakes in turn (20 clients: 7 HubSpot, 7 Pipedrive, 6 Close);
every account answers after --latency-ms and allows --limit requests per rolling window. Each
client books pushes / clients meetings, five per lead (so a lead's contact is created once and
reused by its next four meetings; each lead works for its own company), which enqueues one
meeting_booked push per meeting.

Then one ``push drain --once`` runs, by default as a subprocess (``python -m agency_crm push
drain``, as cron runs it), so the sandbox's server threads and the drainer's event loop do not
share one GIL as they do with --mode inprocess (measured 1-3 % slower, more so for the clients
whose calls are cheapest). Measured: the seconds from the start of the drain to the last push
done, the CRM calls the fakes served and how many of them were 429s, and the CPU time per CRM
call of the drain subprocess (user + system, start-up included; its own, not the sandbox
threads of this process; not measured with --mode inprocess) and of the whole cluster during
the drain (when local).

The bound, in calls per second, is min(clients x max / interval, concurrency / latency), and
"fraction" is the accepted calls per second of the whole run over it. That assumes every client
has the same number of calls; here they do not (a lead's first push costs 3 calls in Pipedrive
and 2 in Close, a later one 1 and 1, while HubSpot's pushes ride in batch calls of up to 100:
at the defaults 700, 600 and about 11 calls per client), so the HubSpot clients are done long
before the Pipedrive ones, and even a perfect runner reaches at most total calls / (clients x
the busiest client's calls) of it (0.61 here). The table
therefore also gives the same bound applied to this workload: the seconds the busiest client
needs at its limit (busiest calls x interval / max; or all calls / (concurrency / latency) when
that is longer), and the run's fraction of it. Per CRM, stderr shows each client's calls per
second while it had work against its limit, and the least time its calls need when it may send
a whole window at once (a rolling window allows that once more than the rate does).

A second table gives the calls per push of each CRM, as the push log counts them (429s and
failed calls included): for a lead's first push (a new lead: its contact is created), for its
later ones (a known lead), and for all.

At the end the fakes are checked: every push done, one deal per meeting and one contact per lead
in every account (no duplicates). Prints a markdown table; targets: fraction of the bound >= 0.9,
no 429 after each client's first. Exit status 1 when a target or the check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psycopg

from common import (
    ServerCpu,
    add_database_url,
    bench_database,
    log,
    markdown_header,
    markdown_row,
    per_item,
)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.*, when run as `python bench/bench_push.py`

from tests.helpers.fixtures import Make  # noqa: E402
from tests.push.conftest import Crm, connect_crm  # noqa: E402

from agency_crm import schema  # noqa: E402
from agency_crm.push.runner import DrainSettings, DrainSummary, drain  # noqa: E402
from agency_crm.push.settings import Settings  # noqa: E402
from agency_crm.sandbox import VENDORS, Sandbox  # noqa: E402

MEETINGS_PER_LEAD = 5
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OAUTH_APP = {"AGENCY_CRM_HUBSPOT_CLIENT_ID": "sbx-client",
             "AGENCY_CRM_HUBSPOT_CLIENT_SECRET": "sbx-secret"}  # fmt: skip


@dataclass
class Limit:
    """A rate limit: ``max`` requests per ``seconds``."""

    max: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> Limit:
        count, _, seconds = text.partition("/")
        try:
            limit = cls(int(count), float(seconds))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--limit {text!r}: give MAX/SECONDS") from None
        if limit.max <= 0 or limit.seconds <= 0:
            raise argparse.ArgumentTypeError(f"--limit {text!r}: both must be positive")
        return limit

    @property
    def rate(self) -> float:
        return self.max / self.seconds


@dataclass
class Account:
    """One client connected to one fake CRM, and what it booked."""

    crm: Crm
    client_id: uuid.UUID
    leads: int
    meetings: int


@dataclass
class Outcome:
    """What one drain did, as the database and the fakes see it."""

    seconds: float = 0.0
    process_seconds: float = 0.0
    process_cpu: float | None = None  # user + system seconds of the drain subprocess
    server_cpu: float | None = None  # CPU seconds of the cluster during the drain, when local
    runner_calls: int = 0
    runner_rate_limited: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    calls: dict[uuid.UUID, int] = field(default_factory=dict)
    status_429: dict[uuid.UUID, int] = field(default_factory=dict)
    busy: dict[uuid.UUID, float] = field(default_factory=dict)  # start to last push done


# -- seeding ---------------------------------------------------------------------------------


def seed(
    conn: psycopg.Connection[Any],
    sandbox: Sandbox,
    pushes: int,
    clients: int,
    latency_ms: float,
    limit: Limit,
    vendors: tuple[str, ...] = VENDORS,
) -> list[Account]:
    """Clients, their CRM accounts and configs, leads and meetings (autocommit)."""
    make = Make(conn)
    accounts: list[Account] = []
    for i in range(clients):
        vendor = vendors[i % len(vendors)]
        client = make.client(name=f"Bench {i:02d} {vendor}")
        crm = connect_crm(make, sandbox, client, vendor)
        crm.configure(
            latency_ms=latency_ms,
            rate_limit={"max": limit.max, "interval_ms": round(limit.seconds * 1000)},
        )
        meetings = pushes // clients + (1 if i < pushes % clients else 0)
        leads = -(-meetings // MEETINGS_PER_LEAD)
        accounts.append(Account(crm, client["id"], leads, meetings))
        ids = {"client": client["id"], "n": leads, "m": meetings, "i": i, "t0": T0}
        conn.execute(
            """
            INSERT INTO crm.leads (client_id, email, first_name, last_name, company, status)
            SELECT %(client)s, format('lead%%s@client%%s.example', g, %(i)s), 'Lead', 'No. ' || g,
                   format('Company %%s-%%s', %(i)s, g), 'contacted'
            FROM generate_series(1, %(n)s) AS g
            """,
            ids,
        )
        # Meeting k goes to lead k mod n: the queue holds every lead's first push, then every
        # lead's second, ... (a lead's pushes go out one at a time, in order, either way).
        conn.execute(
            """
            WITH l AS (
                SELECT id, row_number() OVER (ORDER BY email) - 1 AS r
                FROM crm.leads WHERE client_id = %(client)s
            )
            INSERT INTO crm.meetings (client_id, lead_id, scheduled_at, duration_minutes,
                                      meeting_type)
            SELECT %(client)s, l.id, %(t0)s + k * interval '1 hour', 30, 'discovery'
            FROM generate_series(0, %(m)s - 1) AS k
            JOIN l ON l.r = k %% %(n)s
            ORDER BY k
            """,
            ids,
        )
    conn.execute("ANALYZE")
    return accounts


# -- the drain -------------------------------------------------------------------------------


class Progress(threading.Thread):
    """Every ``every`` seconds: pushes done and CRM calls so far (read from the database)."""

    def __init__(self, url: str, total: int, started: float, every: float = 10.0) -> None:
        super().__init__(name="bench-progress", daemon=True)
        self.url = url
        self.total = total
        self.started = started
        self.every = every
        self.stopped = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.wait(self.every):
                row = conn.execute(
                    """
                    SELECT (SELECT count(*) FROM crm.crm_push_queue WHERE status = 'done'),
                           count(*) FILTER (WHERE http_status IS NOT NULL),
                           count(*) FILTER (WHERE http_status = 429)
                    FROM crm.crm_push_log
                    """
                ).fetchone()
                assert row is not None
                elapsed = time.monotonic() - self.started
                log(
                    f"  {elapsed:6.1f} s: {row[0]:>6}/{self.total} pushes done, {row[1]:>6} CRM "
                    f"calls logged ({row[1] / elapsed:.0f}/s), {row[2]} x 429"
                )


class DrainRun(NamedTuple):
    calls: int
    rate_limited: int
    seconds: float  # wall time around the subprocess, or the in-process drain's own
    cpu: float | None  # user + system seconds of the drain process; None in-process
    summaries: tuple[dict[str, Any], ...] = ()  # each subprocess's JSON summary line


def drain_subprocess(
    url: str,
    concurrency: int,
    per_client: int,
    extra: Sequence[str] = (),
    processes: int = 1,
) -> DrainRun:
    """``python -m agency_crm push drain --once`` (with the options ``extra``), or
    ``processes`` of them started together; their CPU time and calls, summed."""
    command = [
        sys.executable, "-m", "agency_crm", "push", "drain", "--once", "--progress", "log",
        "--concurrency", str(concurrency), "--per-client", str(per_client),
        "--database-url", url, *extra,
    ]  # fmt: skip
    env = {**os.environ, **OAUTH_APP}
    # This worktree's package, not whichever one the interpreter has installed.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p
    )
    started = time.monotonic()
    with ExitStack() as stack:
        stderrs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in range(processes)]
        # Children's CPU time counts the children this process has waited for: while they
        # run, only the drains (and whatever they wait for). The sandbox threads and the
        # progress thread are this process's own time, not counted here.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        running = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
            for err in stderrs
        ]
        # Each one's stdout is its summary line alone (its progress goes to stderr), so
        # waiting for them in turn blocks none.
        outputs = [proc.communicate()[0] for proc in running]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = time.monotonic() - started
        for proc, out, err in zip(running, outputs, stderrs, strict=True):
            if proc.returncode != 0:
                err.seek(0)
                tail = err.read()[-3000:]
                raise SystemExit(f"push drain exited {proc.returncode}:\n{out}\n{tail}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    lines = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    return DrainRun(
        sum(int(line["crm_calls"]) for line in lines),
        sum(int(line["rate_limited"]) for line in lines),
        seconds,
        cpu,
        tuple(lines),
    )


def drain_inprocess(url: str, concurrency: int, per_client: int) -> DrainRun:
    """The same drain on an event loop in this process (shares the GIL with the sandbox, and
    its CPU time cannot be told from the sandbox's)."""
    settings = DrainSettings(
        database_url=url,
        concurrency=concurrency,
        per_client=per_client,
        client=Settings(
            hubspot_client_id=OAUTH_APP["AGENCY_CRM_HUBSPOT_CLIENT_ID"],
            hubspot_client_secret=OAUTH_APP["AGENCY_CRM_HUBSPOT_CLIENT_SECRET"],
        ),
    )
    summary: DrainSummary = asyncio.run(drain(settings))
    return DrainRun(summary.calls, summary.rate_limited, summary.seconds, None)


def run_drain(
    url: str,
    accounts: list[Account],
    mode: str,
    concurrency: int,
    per_client: int,
    server_cpu: ServerCpu,
) -> Outcome:
    total = sum(a.meetings for a in accounts)
    out = Outcome()
    started_at = datetime.now(UTC)
    progress = Progress(url, total, time.monotonic())
    progress.start()
    try:
        runner = drain_subprocess if mode == "subprocess" else drain_inprocess
        cpu0 = server_cpu.seconds()
        run = runner(url, concurrency, per_client)
        cpu1 = server_cpu.seconds()
        out.runner_calls, out.runner_rate_limited = run.calls, run.rate_limited
        out.process_seconds, out.process_cpu = run.seconds, run.cpu
        out.server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    finally:
        progress.stopped.set()
        progress.join()
    with psycopg.connect(url) as conn:
        out.statuses = Counter(
            dict(
                conn.execute(
                    "SELECT status, count(*) FROM crm.crm_push_queue GROUP BY status"
                ).fetchall()
            )
        )
        last: dict[uuid.UUID, datetime] = dict(
            conn.execute(
                "SELECT client_id, max(finished_at) FROM crm.crm_push_queue"
                " WHERE status = 'done' GROUP BY client_id"
            ).fetchall()
        )
    out.busy = {c: (at - started_at) / timedelta(seconds=1) for c, at in last.items()}
    out.seconds = max(out.busy.values(), default=float("nan"))
    for a in accounts:
        counts = a.crm.state()["status_counts"]
        out.calls[a.client_id] = sum(int(v) for v in counts.values())
        out.status_429[a.client_id] = int(counts.get("429", 0))
    return out


# -- calls per push --------------------------------------------------------------------------


def calls_per_push(
    conn: psycopg.Connection[Any], accounts: list[Account]
) -> dict[str, dict[str, tuple[int, float]]]:
    """Per CRM: (pushes, CRM calls) of a lead's first push ("new lead"), of its later ones
    ("known lead") and of all, from the push log (one row per CRM call and push; a batch
    call counts 1 / its inputs for each push that rode in it)."""
    vendor = {a.client_id: a.crm.vendor for a in accounts}
    rows = conn.execute(
        """
        WITH pushes AS (
            SELECT
                q.client_id,
                q.id,
                q.id = min(q.id) OVER (PARTITION BY q.client_id, q.lead_id) AS first_of_lead
            FROM crm.crm_push_queue AS q
        ),
        -- A batch call is shared by the pushes that rode in it: each gets its share.
        calls AS (
            SELECT
                l.push_id,
                sum(1.0 / coalesce((l.request_payload -> 'batch' ->> 'inputs')::numeric, 1))
                    AS calls
            FROM crm.crm_push_log AS l
            WHERE l.push_id IS NOT NULL
            GROUP BY l.push_id
        )
        SELECT p.client_id, p.first_of_lead, count(*), coalesce(sum(c.calls), 0)
        FROM pushes AS p
        LEFT JOIN calls AS c ON c.push_id = p.id
        GROUP BY p.client_id, p.first_of_lead
        """
    ).fetchall()
    out: dict[str, dict[str, tuple[int, float]]] = {}
    for client_id, first, pushes, calls in rows:
        per = out.setdefault(vendor[client_id], {})
        for kind in ("new lead" if first else "known lead", "all"):
            had = per.get(kind, (0, 0))
            per[kind] = (had[0] + int(pushes), had[1] + float(calls))
    return out


# -- checks ----------------------------------------------------------------------------------


def verify(conn: psycopg.Connection[Any], accounts: list[Account]) -> list[str]:
    """Problems found: pushes not done, missing or duplicate contacts and deals."""
    problems: list[str] = []
    for a in accounts:
        name = f"{a.crm.vendor} client {str(a.client_id)[:8]}"
        keys = {
            f"acrm-meeting-{r[0]}"
            for r in conn.execute(
                "SELECT id FROM crm.meetings WHERE client_id = %s", (a.client_id,)
            ).fetchall()
        }
        emails = {
            r[0]
            for r in conn.execute(
                "SELECT email FROM crm.leads WHERE client_id = %s", (a.client_id,)
            ).fetchall()
        }
        not_done = conn.execute(
            "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND status <> 'done'",
            (a.client_id,),
        ).fetchone()
        if not_done and not_done[0]:
            problems.append(f"{name}: {not_done[0]} push(es) not done")
        deals = [d["key"] for d in a.crm.deals()]
        if len(deals) != len(keys) or set(deals) != keys:
            problems.append(
                f"{name}: {len(deals)} deals ({len(set(deals))} distinct keys) for "
                f"{len(keys)} meetings, {len(keys - set(deals))} missing"
            )
        contacts = [c["email"] for c in a.crm.contacts()]
        if len(contacts) != len(emails) or set(contacts) != emails:
            problems.append(
                f"{name}: {len(contacts)} contacts ({len(set(contacts))} distinct emails) for "
                f"{len(emails)} leads"
            )
    return problems


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--limit", type=Limit.parse, default=Limit(100, 10.0), help="MAX/SECONDS")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument("--mode", choices=("subprocess", "inprocess"), default="subprocess")
    parser.add_argument(
        "--crms",
        default=",".join(VENDORS),
        help="CRMs the clients use, in turn (hubspot alone gives every client the same calls)",
    )
    add_database_url(parser)
    args = parser.parse_args(argv)
    limit: Limit = args.limit

    with bench_database(args.database_url, "bench_push") as (server, db):
        url = db.url
        with psycopg.connect(url) as conn:
            schema.upgrade(conn)
        server_cpu = ServerCpu(server)
        with Sandbox() as sandbox, psycopg.connect(url, autocommit=True) as conn:
            log(
                f"seeding {args.clients} clients, {args.pushes} meetings "
                f"({MEETINGS_PER_LEAD} per lead) ..."
            )
            accounts = seed(
                conn,
                sandbox,
                args.pushes,
                args.clients,
                args.latency_ms,
                limit,
                tuple(v.strip() for v in args.crms.split(",") if v.strip()),
            )
            queued = conn.execute("SELECT count(*) FROM crm.crm_push_queue").fetchone()
            log(
                f"{queued[0] if queued else 0} pushes queued; draining ({args.mode}, concurrency "
                f"{args.concurrency}, per client {args.per_client}) ..."
            )
            out = run_drain(url, accounts, args.mode, args.concurrency, args.per_client, server_cpu)
            problems = verify(conn, accounts)
            per_push = calls_per_push(conn, accounts)

        pushes = out.statuses.get("done", 0)
        calls = sum(out.calls.values())
        n429 = sum(out.status_429.values())
        late_429 = sum(max(0, n - 1) for n in out.status_429.values())
        limits_rate = len(accounts) * limit.rate
        conc_rate = args.concurrency / (args.latency_ms / 1000.0)
        bound = min(limits_rate, conc_rate)
        # A 429 does not count against the CRM's window: the bound is on accepted calls.
        accepted = calls - n429
        rate = accepted / out.seconds
        fraction = rate / bound
        # The same bound applied to this workload: no schedule within the limits finishes
        # before the busiest client has sent its calls at its limit (nor before all calls have
        # passed the concurrency bound).
        client_rate = limit.rate * min(1.0, conc_rate / limits_rate)
        busiest = max(out.calls[a.client_id] - out.status_429[a.client_id] for a in accounts)
        least = max(busiest / client_rate, accepted / conc_rate)
        of_least = least / out.seconds

        by_vendor: dict[str, list[Account]] = {}
        for a in accounts:
            by_vendor.setdefault(a.crm.vendor, []).append(a)
        for vendor, group in by_vendor.items():
            n = [out.calls[a.client_id] - out.status_429[a.client_id] for a in group]
            busy = [out.busy[a.client_id] for a in group]
            # A rolling window lets a client send a full window at once and again each time
            # it has passed: the least time its calls can take.
            whole = [(-(-c // limit.max) - 1) * limit.seconds for c in n]
            log(
                f"{vendor}: {len(group)} clients, {min(n)}-{max(n)} accepted calls and "
                f"{min(busy):.1f}-{max(busy):.1f} s each; {sum(n) / sum(busy) / client_rate:.2f} "
                f"of the limit while busy (least time by whole windows {max(whole):.0f} s), "
                f"{sum(out.status_429[a.client_id] for a in group)} x 429"
            )
        log(
            f"runner: {out.runner_calls} calls, {out.runner_rate_limited} rate-limited, "
            f"process {out.process_seconds:.1f} s; queue: {dict(out.statuses)}"
        )
        log(
            "check: every push done, one deal per meeting and one contact per lead in every "
            "account: " + ("yes" if not problems else "NO")
        )
        for problem in problems:
            log(f"  {problem}")

        header = markdown_header(
            "pushes", "clients", "CRM calls", "seconds", "calls/s", "bound calls/s", "fraction",
            "bound s (busiest client)", "fraction of it", "pushes/s", "429s",
            "drain CPU per call", "server CPU per call",
        )  # fmt: skip
        print(header)
        row = markdown_row(
            pushes, len(accounts), calls, f"{out.seconds:.1f}", f"{rate:.1f}", f"{bound:.0f}",
            f"{fraction:.2f}", f"{least:.1f}", f"{of_least:.2f}", f"{pushes / out.seconds:.1f}",
            n429, per_item(out.process_cpu, calls), per_item(out.server_cpu, calls),
        )  # fmt: skip
        print(row)
        print(
            f"\nbound = min({len(accounts)} x {limit.max}/{limit.seconds:g} s, "
            f"{args.concurrency} / {args.latency_ms:g} ms) = {bound:.0f} calls/s; calls/s and "
            "fractions count the calls the CRMs accepted (not 429s). Bound s: the busiest "
            f"client's accepted calls ({busiest}) at {client_rate:g}/s; fraction of it: bound s "
            f"/ seconds. --mode {args.mode}, --concurrency {args.concurrency}, --per-client "
            f"{args.per_client}. CPU per call: user + system time of the drain subprocess, "
            "start-up included (- with --mode inprocess), and of the whole cluster (- when not "
            "local) during the drain, divided by the CRM calls (429s included). Targets: >= 0.9;"
            f" no 429 after each client's first (here {late_429})."
        )
        print()
        print(markdown_header("CRM", "calls per push: new lead", "known lead", "all", "pushes"))
        for vendor, per in per_push.items():
            cells = [
                f"{per[k][1] / per[k][0]:.2f}" if per.get(k, (0, 0))[0] else "-"
                for k in ("new lead", "known lead", "all")
            ]
            print(markdown_row(vendor, *cells, per["all"][0]))
        ok = not problems and of_least >= 0.9 and late_429 == 0
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
