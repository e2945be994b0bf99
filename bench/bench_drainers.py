"""Several drainers against one database: 1, 2 and 4 ``push drain --once`` processes started
together on the same queue, many clients, the sandbox with latency on.

    python bench/bench_drainers.py [--processes 1,2,4] [--pushes 10000] [--clients 40]
                                   [--latency-ms 50] [--limits 10000/10,100/10]
                                   [--concurrency 32] [--per-client 4] [--database-url URL]

The workload of ``bench/bench_push.py`` (its ``seed``): --clients clients spread over the three
fakes in turn (40: 14 HubSpot, 13 Pipedrive, 13 Close), each connected to an account of its
own, then booking pushes / clients meetings, five per lead, each of which queues a
meeting_booked push. Each account answers after --latency-ms and allows the run's limit per
rolling window. Two limits by default: one far above what the drain can send (10,000 per 10 s
per client), so that the drainers' CPU and the database are what bounds the run, and the
usual 100 per 10 s, so that the CRMs' limits do.

For every limit and process count: a fresh database (a copy of one with the schema), new
accounts, the same workload; then N ``push drain --once`` subprocesses started at once
(``bench_push.drain_subprocess``), each with --concurrency and --per-client of its own.
Measured: the seconds from the start to the last push done, pushes and CRM calls per second
(the calls the fakes answered, 429s included), the 429s, the CPU of all drain processes
(user + system, start-up included), of the cluster and of this process (the sandbox's
threads), and what was left of the machine's busy time (other work; the machine is shared).
Each process's share of the pushes comes from its summary line.

The bound is bench_push's: min(clients x max / interval, N x concurrency / latency) calls per
second, and the same bound applied to this workload: the seconds the busiest client's calls
need at its limit. "fraction" is that bound's seconds over the run's.

Checked after each run: every push done, one deal per meeting and one contact per lead in every
account (no duplicate, whichever process sent it). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from bench_push import (
    ROOT,
    Account,
    Limit,
    Progress,
    drain_subprocess,
    seed,
    verify,
)
from common import (
    ServerCpu,
    add_database_url,
    bench_server,
    database,
    log,
    machine_busy_seconds,
    markdown_header,
    markdown_row,
    wait_idle,
)

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from agency_crm import schema
from agency_crm.sandbox import VENDORS, Sandbox


@dataclass
class Result:
    """One run: N processes on one workload."""

    limit: Limit
    processes: int
    pushes: int = 0
    seconds: float = 0.0  # start of the drains to the last push done
    process_seconds: float = 0.0  # start of the drains to the last one's exit
    calls: int = 0
    status_429: int = 0
    busiest: int = 0  # the busiest client's accepted calls
    drain_cpu: float = 0.0
    server_cpu: float | None = None
    bench_cpu: float = 0.0
    machine_busy: float | None = None
    shares: list[int] = field(default_factory=list)  # pushes finished by each process
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    functions: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def other_cores(self) -> float | None:
        """Cores busy with work not ours (other sessions on this shared machine)."""
        if self.machine_busy is None:
            return None
        ours = self.drain_cpu + (self.server_cpu or 0.0) + self.bench_cpu
        return max(0.0, self.machine_busy - ours) / self.process_seconds


def one_run(
    server: str,
    template: str,
    sandbox: Sandbox,
    server_cpu: ServerCpu,
    args: argparse.Namespace,
    limit: Limit,
    processes: int,
) -> Result:
    out = Result(limit, processes)
    with (
        database(server, "bench_drainers_run", template=template) as db,
        psycopg.connect(db.url, autocommit=True) as conn,
    ):
        accounts: list[Account] = seed(
            conn, sandbox, args.pushes, args.clients, args.latency_ms, limit, VENDORS
        )
        # Where the cluster's time goes: the drains' sessions count their function calls.
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(sql.Identifier(db.name))
        )
        wait_idle()
        log(
            f"limit {limit.max}/{limit.seconds:g} s, {processes} process(es): "
            f"{args.pushes} pushes of {len(accounts)} clients queued; draining ..."
        )
        started_at = datetime.now(UTC)
        progress = Progress(db.url, args.pushes, time.monotonic())
        progress.start()
        busy0, cpu0 = machine_busy_seconds(), server_cpu.seconds()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        try:
            run = drain_subprocess(
                db.url, args.concurrency, args.per_client, args.drain_args, processes
            )
        finally:
            progress.stopped.set()
            progress.join()
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        busy1, cpu1 = machine_busy_seconds(), server_cpu.seconds()
        out.process_seconds = run.seconds
        out.drain_cpu = run.cpu or 0.0
        out.server_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        out.bench_cpu = own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime
        out.machine_busy = None if busy0 is None or busy1 is None else busy1 - busy0
        out.shares = [int(s["pushes"]) for s in run.summaries]
        for summary in run.summaries:
            for key in ("retry", "deferred", "failed", "dead", "held", "lease_lost"):
                out.outcomes[key] += int(summary.get(key, 0))
        row = conn.execute(
            "SELECT max(finished_at), count(*) FILTER (WHERE status = 'done')"
            " FROM crm.crm_push_queue"
        ).fetchone()
        assert row is not None
        out.seconds = (row[0] - started_at) / timedelta(seconds=1) if row[0] else float("nan")
        out.pushes = int(row[1])
        for a in accounts:
            counts = a.crm.state()["status_counts"]
            calls = sum(int(v) for v in counts.values())
            n429 = int(counts.get("429", 0))
            out.calls += calls
            out.status_429 += n429
            out.busiest = max(out.busiest, calls - n429)
        out.problems = verify(conn, accounts)
        out.functions = conn.execute(
            """
            SELECT schemaname || '.' || funcname, sum(calls), sum(self_time) / 1000
            FROM pg_stat_user_functions
            GROUP BY 1
            ORDER BY 3 DESC
            LIMIT 5
            """
        ).fetchall()
    log(
        f"  {out.pushes} pushes in {out.seconds:.1f} s (processes exited at "
        f"{out.process_seconds:.1f} s), {out.calls} calls, {out.status_429} x 429; pushes per "
        f"process {out.shares}; outcomes besides done: {dict(+out.outcomes) or 'none'}"
    )
    other = out.other_cores
    log(
        f"  CPU s: drains {out.drain_cpu:.1f}, cluster "
        f"{'-' if out.server_cpu is None else f'{out.server_cpu:.1f}'}, sandbox (this process) "
        f"{out.bench_cpu:.1f}; other work on the machine "
        f"{'-' if other is None else f'{other:.2f} cores'}"
    )
    log(
        "  the cluster's busiest functions (self time, s): "
        + ", ".join(f"{name} {secs:.1f} ({calls} calls)" for name, calls, secs in out.functions)
    )
    log(
        "  check: every push done, one deal per meeting and one contact per lead: "
        + ("yes" if not out.problems else "NO")
    )
    for problem in out.problems:
        log(f"    {problem}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,4", help="process counts, one run each")
    parser.add_argument("--pushes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--limits",
        default="10000/10,100/10",
        help="rate limits (MAX/SECONDS per client), comma-separated: one table each",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--per-client", type=int, default=4)
    parser.add_argument(
        "--drain-args",
        type=str.split,
        default=[],
        help='further push drain options, e.g. "--batch-size 4"',
    )
    add_database_url(parser)
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.processes.split(",") if x.strip()]
    limits = [Limit.parse(x.strip()) for x in args.limits.split(",") if x.strip()]

    results: list[Result] = []
    with bench_server(args.database_url) as server:
        with database(server.url, "bench_drainers_tmpl", drop=not server.throwaway) as tmpl:
            with psycopg.connect(tmpl.url) as conn:
                schema.upgrade(conn)
            server_cpu = ServerCpu(server.url)
            with Sandbox() as sandbox:
                for limit in limits:
                    for n in counts:
                        results.append(
                            one_run(server.url, tmpl.name, sandbox, server_cpu, args, limit, n)
                        )
                errors = [e for app in sandbox.apps.values() for e in app.internal_errors]
                if errors:
                    raise SystemExit(f"sandbox handlers raised: {errors[:3]}")

    cores = os.cpu_count() or 1
    for limit in limits:
        rows = [r for r in results if r.limit is limit]
        base = rows[0]
        print(f"\nLimit {limit.max}/{limit.seconds:g} s per client:\n")
        header = markdown_header(
            "processes", "seconds", "pushes/s", "speed-up", "CRM calls", "calls/s",
            "bound calls/s", "fraction", "429s", "drain CPU s", "cluster CPU s",
            "sandbox CPU s", "other work (cores)", "pushes per process",
        )  # fmt: skip
        print(header)
        for r in rows:
            conc_rate = r.processes * args.concurrency / (args.latency_ms / 1000.0)
            limits_rate = args.clients * limit.rate
            bound = min(limits_rate, conc_rate)
            client_rate = limit.rate * min(1.0, conc_rate / limits_rate)
            accepted = r.calls - r.status_429
            least = max(r.busiest / client_rate, accepted / conc_rate)
            other = r.other_cores
            row = markdown_row(
                r.processes, f"{r.seconds:.1f}", f"{r.pushes / r.seconds:.0f}",
                f"{base.seconds / r.seconds:.2f}x", f"{r.calls:,}", f"{r.calls / r.seconds:.0f}",
                f"{bound:,.0f}", f"{least / r.seconds:.2f}", r.status_429, f"{r.drain_cpu:.1f}",
                "-" if r.server_cpu is None else f"{r.server_cpu:.1f}", f"{r.bench_cpu:.1f}",
                "-" if other is None else f"{other:.2f}", " / ".join(f"{n:,}" for n in r.shares),
            )  # fmt: skip
            print(row)
    print(
        f"\n{args.pushes:,} pushes of {args.clients} clients ({', '.join(VENDORS)} in turn, five "
        f"meetings per lead), latency {args.latency_ms:g} ms, each process --concurrency "
        f"{args.concurrency} --per-client {args.per_client}"
        + "".join(f" {a}" for a in args.drain_args)
        + f", {cores} CPUs. Seconds: start to the "
        "last push done. Bound: min(clients x limit, processes x concurrency / latency); "
        "fraction: the seconds the busiest client's accepted calls need at its limit (or all "
        "calls at the concurrency bound) over the run's. Other work: the machine's busy CPU "
        "time not used by the drains, the cluster or this process, per second of the run."
    )
    return 0 if all(not r.problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
