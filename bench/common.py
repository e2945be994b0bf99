"""What the benchmarks in bench/ share: the server they run on (--database-url, or a throwaway
cluster) and scratch databases on it, the CPU time of a local cluster and of the machine,
markdown tables, progress lines on stderr, and seeding of clients and leads.

Not part of the agency_crm package: the scripts import it as ``common``, found in their own
directory (first on sys.path when run as ``python bench/bench_x.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import conninfo, sql

from agency_crm import crypto
from agency_crm.dev.cluster import TempCluster

# The CRM secrets are stored encrypted: the benchmarks (and the runs they start) use a
# throwaway key unless one is given.
os.environ.setdefault(crypto.ENV_VAR, crypto.generate_entry("bench"))

# -- output ----------------------------------------------------------------------------------


def log(message: str) -> None:
    """A progress line on stderr (stdout holds the tables)."""
    print(message, file=sys.stderr, flush=True)


def markdown_row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_header(*cells: object) -> str:
    """A markdown table's header row and the separator row under it."""
    return markdown_row(*cells) + "\n|" + "---|" * len(cells)


def per_item(cpu: float | None, n: int) -> str:
    """CPU seconds spread over `n` items, in microseconds; "-" when not known."""
    return "-" if cpu is None else f"{cpu / n * 1e6:.0f} us"


# -- servers and databases -------------------------------------------------------------------


def add_database_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="server to run on, in scratch databases dropped at the end (default"
        " $BENCH_DATABASE_URL; without either, a throwaway cluster)",
    )


@dataclass(frozen=True)
class Server:
    url: str  # a superuser connection to its maintenance database
    throwaway: bool  # a cluster started for this run: stopped at the end, nothing to drop


@contextmanager
def bench_server(database_url: str | None, *, fsync: bool = False) -> Iterator[Server]:
    """`database_url`, or a throwaway TempCluster (fsync as given) stopped on the way out."""
    if database_url:
        yield Server(database_url, throwaway=False)
        return
    cluster = TempCluster(fsync=fsync).start()
    try:
        yield Server(cluster.url, throwaway=True)
    finally:
        cluster.stop()


def url_for(server: str, dbname: str) -> str:
    """`server`'s connection string with the database `dbname`."""
    params = conninfo.conninfo_to_dict(server)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def admin(server: str, statement: sql.Composable) -> None:
    """Run `statement` outside a transaction (CREATE / DROP DATABASE)."""
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(statement)


class Database(NamedTuple):
    name: str
    url: str


@contextmanager
def database(
    server: str, prefix: str, *, template: str | None = None, drop: bool = True
) -> Iterator[Database]:
    """A new database `prefix`_<random> on `server` (a copy of `template` if given), dropped
    on the way out unless `drop` is false (on a throwaway cluster, which goes as a whole)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create = sql.SQL("{} TEMPLATE {}").format(create, sql.Identifier(template))
    admin(server, create)
    try:
        yield Database(name, url_for(server, name))
    finally:
        if drop:
            admin(
                server,
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            )


@contextmanager
def bench_database(
    database_url: str | None, prefix: str, *, fsync: bool = False
) -> Iterator[tuple[str, Database]]:
    """bench_server() and a database() on it for the whole run: (the server's URL, the
    database). The database is dropped at the end from --database-url's server; a throwaway
    cluster goes as a whole."""
    with (
        bench_server(database_url, fsync=fsync) as server,
        database(server.url, prefix, drop=not server.throwaway) as db,
    ):
        yield server.url, db


# -- seeding ---------------------------------------------------------------------------------


def add_client(
    conn: psycopg.Connection[Any], client: uuid.UUID, name: str, crm_api_key: str | None = None
) -> None:
    """A client; with `crm_api_key`, also an active Pipedrive config (so that its bookings
    enqueue pushes)."""
    key = None
    if crm_api_key is not None:
        key = crypto.KeyRing.from_environment().encrypt(
            crm_api_key, client_id=client, column="api_key"
        )
    p = {"client": client, "name": name, "key": key}
    conn.execute("INSERT INTO crm.clients (id, name) VALUES (%(client)s, %(name)s)", p)
    if crm_api_key is not None:
        conn.execute(
            "INSERT INTO crm.client_crm_configs (client_id, crm_type, api_key)"
            " VALUES (%(client)s, 'pipedrive', %(key)s)",
            p,
        )


def add_leads(
    conn: psycopg.Connection[Any], client: uuid.UUID, n: int, **columns: sql.Composable
) -> None:
    """`n` leads of `client`, lead1@bench.io to lead<n>@bench.io, in one statement; `columns`
    sets further columns to SQL expressions (the same for every lead)."""
    values: dict[str, sql.Composable] = {
        "client_id": sql.Placeholder("client"),
        "email": sql.SQL("'lead' || g || '@bench.io'"),
        **columns,
    }
    conn.execute(
        sql.SQL("INSERT INTO crm.leads ({}) SELECT {} FROM generate_series(1, %(n)s) AS g").format(
            sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(values.values())
        ),
        {"client": client, "n": n},
    )


# -- CPU accounting --------------------------------------------------------------------------


class ServerCpu:
    """CPU seconds used by a local cluster: its live processes plus the children its
    postmaster has reaped (backends that exited). None when the server is not local."""

    def __init__(self, server: str) -> None:
        self.postmaster: int | None = None
        with psycopg.connect(server) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
        try:
            backend = self._stat(int(row[0])) if row else None
            if backend is not None and b"postgres" in self._cmdline(backend[0]):
                self.postmaster = backend[0]
        except OSError:
            self.postmaster = None

    @staticmethod
    def _stat(pid: int) -> tuple[int, int, int] | None:
        """(ppid, own CPU ticks, reaped children's CPU ticks) of a process."""
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            return None
        return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])

    @staticmethod
    def _cmdline(pid: int) -> bytes:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()

    def seconds(self) -> float | None:
        if self.postmaster is None:
            return None
        for _attempt in range(100):
            before = self._stat(self.postmaster)
            ticks = 0
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    stat = self._stat(int(entry))
                    if stat is not None and stat[0] == self.postmaster:
                        ticks += stat[1]
            after = self._stat(self.postmaster)
            if before is None or after is None:
                return None
            if before == after:  # no child reaped meanwhile: nobody missed or counted twice
                return (ticks + after[1] + after[2]) / os.sysconf("SC_CLK_TCK")
        return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent running tasks (user, nice, system), or None
    without /proc/stat. Interrupt time is left out: it is not charged to any process."""
    try:
        with open("/proc/stat") as f:
            values = [int(x) for x in f.readline().split()[1:4]]
    except OSError:
        return None
    return sum(values) / os.sysconf("SC_CLK_TCK")


def wait_idle(limit: float = 10.0) -> None:
    """Wait (up to `limit` s) until the CPUs are mostly idle: the machine may be shared."""

    def busy_share() -> float:
        def sample() -> tuple[int, int]:
            with open("/proc/stat") as f:
                values = [int(x) for x in f.readline().split()[1:]]
            return sum(values), values[3] + values[4]

        total0, idle0 = sample()
        time.sleep(0.3)
        total1, idle1 = sample()
        return 1 - (idle1 - idle0) / max(total1 - total0, 1)

    if not os.path.exists("/proc/stat"):
        return
    deadline = time.monotonic() + limit
    share = busy_share()
    while share > 0.15 and time.monotonic() < deadline:
        share = busy_share()
    if share > 0.15:
        log(f"    note: CPUs {share:.0%} busy with something else; timings may be noisy")
