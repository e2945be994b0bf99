"""Analytics under row-level security: each spec function of bench_analytics.py, on the same
dataset (ten clients of 100,000 leads, ~1,000,000 activities, 50,000 meetings and 20,000 deals
each), run as the owner, as a login that is a member of crm_analyst and as a login that is a
member of crm_client_viewer with crm.client_id set to the client analysed.

    python bench/bench_analytics_roles.py [--clients 10] [--scale 1.0] [--rounds 41]
                                          [--explain] [--database-url URL]

Before timing, checks that row-level security filters: the viewer sees its client's rows and
no other's, and every spec function returns the same rows to the three callers for that client
(and nothing of another client to the viewer). Then, per function, `--rounds` rounds each call
it once as each caller, in an order that rotates from round to round, each call in a
transaction of its own that sets crm.client_id first (set_config(..., true), untimed).

Prints, as markdown, each caller's median time and each role's ratio to the owner: the median
of the rounds' ratios (role / owner in the same round) with their interquartile range and full
range. Target: <= 1.1 for both roles; exit status 1 when a function misses it. --explain also
writes EXPLAIN ANALYZE of every statement each function runs, as each caller, to
bench/plans/roles/ (through auto_explain).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from psycopg import conninfo, sql

from agency_crm import schema
from bench_analytics import AS_OF, SPEC_CALLS, seed_client
from common import (
    add_database_url,
    bench_database,
    log,
    markdown_header,
    markdown_row,
    wait_idle,
)

TARGET = 1.1
PLANS = Path(__file__).with_name("plans") / "roles"
# The callers: the benchmark's own (superuser, owner) connection, then a login of each role.
OWNER = "owner"
ROLES = ("crm_analyst", "crm_client_viewer")
CALLERS = (OWNER, *ROLES)
# Tables the viewer's row count is checked on: those the spec functions read.
CHECKED_TABLES = (
    ("crm", "leads"),
    ("crm", "activities"),
    ("crm", "meetings"),
    ("crm", "deals"),
    ("crm", "deal_stage_history"),
    ("crm_private", "deal_attribution"),
)


def login_url(url: str, user: str) -> str:
    """`url` with the login `user` (the benchmark cluster trusts local connections)."""
    params = conninfo.conninfo_to_dict(url)
    params["user"] = user
    params.pop("password", None)
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


@contextmanager
def role_logins(server: str, prefix: str) -> Iterator[dict[str, str]]:
    """A LOGIN role that is a member of each of ROLES: {role: login}, dropped on the way out
    (roles belong to the cluster: on --database-url's server they must not stay)."""
    logins = {role: f"{prefix}_{role.removeprefix('crm_')}" for role in ROLES}
    with psycopg.connect(server, autocommit=True) as conn:
        for role, login in logins.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(login), sql.Identifier(role)
                )
            )
    try:
        yield logins
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            for login in logins.values():
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def backend_cpu_ns(conn: psycopg.Connection[Any]) -> int | None:
    """CPU time the connection's backend has run, in ns (/proc/<pid>/schedstat), or None when
    the server is not on this machine."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class Timing(NamedTuple):
    wall: float  # seconds, as the client sees the call
    cpu: float | None  # seconds of the backend's CPU, None when not known
    rows: list[tuple[Any, ...]]


def call(conn: psycopg.Connection[Any], query: str, client: uuid.UUID, viewed: uuid.UUID) -> Timing:
    """Run a spec call for `client` in a transaction of its own that first sets crm.client_id
    to `viewed` (untimed)."""
    conn.execute("SELECT set_config('crm.client_id', %s, true)", (str(viewed),))
    cpu_before = backend_cpu_ns(conn)
    started = time.perf_counter()
    rows = conn.execute(query.encode(), {"c": client, "as_of": AS_OF}).fetchall()
    wall = time.perf_counter() - started
    cpu_after = backend_cpu_ns(conn)
    conn.commit()
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / 1e9
    return Timing(wall, cpu, rows)


def check_isolation(
    conns: dict[str, psycopg.Connection[Any]], clients: list[uuid.UUID]
) -> list[str]:
    """What is wrong with what each caller sees (nothing when the viewer sees exactly its
    client's rows and every caller gets the same results for that client)."""
    problems = []
    mine, other = clients[0], clients[1]
    owner, viewer = conns[OWNER], conns["crm_client_viewer"]
    for table in CHECKED_TABLES:
        name = ".".join(table)
        query = sql.SQL("SELECT count(*) FILTER (WHERE client_id = %s), count(*) FROM {}")
        query = query.format(sql.Identifier(*table))
        own, total = owner.execute(query, (mine,)).fetchone() or (0, 0)
        owner.commit()
        viewer.execute("SELECT set_config('crm.client_id', %s, true)", (str(mine),))
        seen, seen_total = viewer.execute(query, (mine,)).fetchone() or (0, 0)
        viewer.commit()
        unset = viewer.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*table)))
        (unset_count,) = unset.fetchone() or (0,)
        viewer.commit()
        if not 0 < own < total:
            problems.append(f"{name}: client 1 has {own} of {total} rows: RLS filters nothing")
        if (seen, seen_total) != (own, own):
            problems.append(
                f"{name}: the viewer sees {seen_total} rows, {seen} of its client's {own}"
            )
        if unset_count:
            problems.append(f"{name}: the viewer sees {unset_count} rows without crm.client_id")
    for name, query in SPEC_CALLS.items():
        expected = call(owner, query, mine, mine).rows
        if not expected:
            problems.append(f"{name}: no rows for client 1")
        for role in ROLES:
            got = call(conns[role], query, mine, mine).rows
            if got != expected:
                problems.append(f"{name}: {role} gets {got}, the owner {expected}")
        # Another client's figures through the viewer of client 1: its rows are not visible.
        leaked = call(viewer, query, other, mine).rows
        if leaked == call(owner, query, other, mine).rows:
            problems.append(f"{name}: the viewer of client 1 gets client 2's figures")
    return problems


def time_roles(
    conns: dict[str, psycopg.Connection[Any]], query: str, client: uuid.UUID, rounds: int
) -> dict[str, list[Timing]]:
    """Each caller's timings of `rounds` calls, interleaved: round r calls the three callers in
    an order rotated by r, so that none always goes first or last."""
    times: dict[str, list[Timing]] = {caller: [] for caller in CALLERS}
    for caller in CALLERS:  # warm: the caches, and each backend's catalog caches
        call(conns[caller], query, client, client)
    for r in range(rounds):
        order = CALLERS[r % 3 :] + CALLERS[: r % 3]
        for caller in order:
            times[caller].append(call(conns[caller], query, client, client)._replace(rows=[]))
    return times


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def explain_roles(url: str, logins: dict[str, str], client: uuid.UUID) -> None:
    """EXPLAIN ANALYZE of every statement each spec function runs, as each caller, to PLANS.
    auto_explain needs a superuser to load and set: a superuser connection switches to the
    login (SET ROLE) after loading it, so row-level security applies as for the login."""
    PLANS.mkdir(parents=True, exist_ok=True)
    for caller in CALLERS:
        with psycopg.connect(url) as conn:
            notices: list[str] = []
            conn.add_notice_handler(lambda d, n=notices: n.append(d.message_primary or ""))
            conn.execute("LOAD 'auto_explain'")
            for setting, value in [
                ("log_min_duration", "0"),
                ("log_nested_statements", "on"),
                ("log_analyze", "on"),
                ("log_buffers", "on"),
                ("log_level", "notice"),
            ]:
                conn.execute(
                    sql.SQL("SET auto_explain.{} = {}").format(
                        sql.Identifier(setting), sql.Literal(value)
                    )
                )
            if caller != OWNER:
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(logins[caller])))
            conn.commit()
            for name, query in SPEC_CALLS.items():
                call(conn, query, client, client)  # warm
                notices.clear()
                call(conn, query, client, client)
                text = "\n\n".join(n for n in notices if "Plan" in n or "->" in n)
                (PLANS / f"{name}.{caller}.txt").write_text(text + "\n")


def ratio_table(results: dict[str, dict[str, list[Timing]]], cpu: bool) -> tuple[list[str], float]:
    """The markdown table of wall-clock times (or the backends' CPU times), and its worst
    ratio. A ratio is the median of the rounds' role / owner ratios, with their interquartile
    range and full range."""
    unit = "backend CPU ms" if cpu else "ms"
    lines = [
        markdown_header(
            "365-day window, client 1",
            f"owner ({unit})",
            f"crm_analyst ({unit})",
            "analyst / owner",
            f"crm_client_viewer ({unit})",
            "viewer / owner",
        )
    ]
    worst = 0.0
    for name, timings in results.items():

        def seconds(caller: str, timings: dict[str, list[Timing]] = timings) -> list[float]:
            return [(t.cpu or 0.0) if cpu else t.wall for t in timings[caller]]

        owner = seconds(OWNER)
        cells = [f"`{name}`", f"{statistics.median(owner) * 1000:.1f}"]
        for role in ROLES:
            mine = seconds(role)
            pairs = sorted(t / o for t, o in zip(mine, owner, strict=True) if o > 0)
            ratio = statistics.median(pairs)
            worst = max(worst, ratio)
            q1, q3 = quartiles(pairs)
            cells += [
                f"{statistics.median(mine) * 1000:.1f}",
                f"{ratio:.3f} (IQR {q1:.2f}-{q3:.2f}, range {pairs[0]:.2f}-{pairs[-1]:.2f})",
            ]
        lines.append(markdown_row(*cells))
    return lines, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=41, help="interleaved rounds per function")
    parser.add_argument("--explain", action="store_true", help="write plans as each caller")
    add_database_url(parser)
    args = parser.parse_args(argv)
    if args.clients < 2:
        parser.error("--clients must be at least 2: row-level security has to filter something")
    clients = [uuid.UUID(int=i + 1) for i in range(args.clients)]
    started = time.perf_counter()
    with bench_database(args.database_url, "bench_roles") as (server, db):
        with psycopg.connect(db.url) as conn:
            schema.upgrade(conn)
            conn.commit()
            for i, client in enumerate(clients, start=1):
                seed_client(conn, client, args.scale, i)
                log(f"client {i} loaded ({time.perf_counter() - started:.0f} s)")
            conn.autocommit = True  # VACUUM runs outside a transaction
            conn.execute("VACUUM ANALYZE")
        loaded = time.perf_counter() - started
        with role_logins(server, db.name) as logins, ExitStack() as stack:
            # Three new connections alike: the owner's is not the one that loaded the data.
            conns = {OWNER: stack.enter_context(psycopg.connect(db.url))}
            for role, login in logins.items():
                conns[role] = stack.enter_context(psycopg.connect(login_url(db.url, login)))
            problems = check_isolation(conns, clients)
            for problem in problems:
                log(f"CHECK FAILED: {problem}")
            if problems:
                return 1
            log("checked: the viewer sees only its client's rows; same results for the three")
            results = {}
            for name, query in SPEC_CALLS.items():
                wait_idle()
                log(f"  {name}: {args.rounds} rounds")
                results[name] = time_roles(conns, query, clients[0], args.rounds)
            if args.explain:
                explain_roles(db.url, logins, clients[0])
                log(f"plans written to {PLANS}/")
        timed = time.perf_counter() - started - loaded
    print(
        f"{args.clients} clients (scale {args.scale}); each spec function for a 365-day window"
        " of client 1, as each caller.\n"
    )
    lines, worst = ratio_table(results, cpu=False)
    print("\n".join(lines))
    print(
        f"\n{args.rounds} rounds per function, the three callers interleaved (order rotated"
        " each round); ratio: the median of the rounds' role / owner ratios (interquartile"
        f" range, full range). Target <= {TARGET} (worst here {worst:.3f})."
    )
    if all(t.cpu is not None for by in results.values() for ts in by.values() for t in ts):
        lines, worst_cpu = ratio_table(results, cpu=True)
        print("\nThe same calls, CPU time of the server backend (/proc/<pid>/schedstat):\n")
        print("\n".join(lines))
        print(f"\nworst CPU ratio {worst_cpu:.3f} (informative: the target is on the wall clock)")
    print(f"\nLoading took {loaded:.0f} s, checking and timing {timed:.0f} s.")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
