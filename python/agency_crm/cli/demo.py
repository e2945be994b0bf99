"""``agency-crm demo``: the whole job, end to end, on a private throwaway database.

A PostgreSQL of its own (``DATABASE_URL`` when set; else the installed server binaries, else
the pip-installed server) with the schema installed by ``db upgrade``; the three fake CRMs on
free loopback ports; three clients with six months of realistic history loaded through the
real tables and triggers; each client connected to its CRM through the real connect path
(HubSpot by its OAuth consent page); the queue drained into the CRMs; what each CRM holds
checked against what the database says it should; every client's analytics and the agency
view printed; the HTML reports written.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer

from agency_crm.cli.common import Command, bounded, choices, examples
from agency_crm.errors import AgencyCrmError

if TYPE_CHECKING:
    from rich.console import Console

    from agency_crm.demo.crms import Connected, FakeCrms
    from agency_crm.demo.holdings import CrmCheck
    from agency_crm.push.runner import DrainSummary

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

VENDOR = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "close": "Close"}
#: How many upcoming meetings per client the demo confirms "now", after the connect, so that
#: the triggers (not the connect's backfill) queue their pushes.
LIVE_CONFIRMATIONS = 3


DEFAULT_DATA_DIR = Path(".agency-crm")


class Server(enum.StrEnum):
    """Which PostgreSQL the demo starts when no DATABASE_URL is given."""

    AUTO = "auto"
    INSTALLED = "installed"
    PIP = "pip"


class DemoFailed(AgencyCrmError):
    """The demo ran, but a check of its outcome failed."""


@app.command(
    "demo",
    cls=Command,
    epilog=examples(
        "make demo                                # installs, then runs this",
        "agency-crm demo",
        "agency-crm demo --keep                   # leave the database running to explore",
        "agency-crm demo --stop                   # stop a database kept by --keep",
        "DATABASE_URL=postgresql://me@localhost/scratch agency-crm demo",
    ),
)
def demo(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            metavar="URL",
            envvar=["AGENCY_CRM_DATABASE_URL", "DATABASE_URL"],
            show_envvar=True,
            help="Run in this database (an empty one: the demo installs the schema and adds "
            "its clients). Without it the demo starts a private PostgreSQL of its own.",
        ),
    ] = None,
    server: Annotated[
        Server,
        typer.Option(
            "--server",
            metavar=choices(Server),
            help="Without --database-url: the installed PostgreSQL binaries (installed), the "
            "pip-installed server (pip), or the first that exists (auto).",
        ),
    ] = Server.AUTO,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Where the demo keeps its database and reports.",
        ),
    ] = DEFAULT_DATA_DIR,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Leave the database running at the end; print its URL and how to stop it.",
        ),
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop the database a --keep run left running, and exit.")
    ] = False,
    seed: Annotated[int, bounded("--seed", "N", 0, help="The random seed of the demo data")] = 14,
    scale: Annotated[
        float,
        bounded("--scale", "X", 0.05, 5.0, help="Multiplies the number of leads and meetings"),
    ] = 1.0,
    days: Annotated[
        int, bounded("--days", "DAYS", 1, 3650, help="The analytics window, in days")
    ] = 90,
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="FILE",
            help="The HTML report (default: DATA_DIR/report.html).",
        ),
    ] = None,
    dump_crms: Annotated[
        Path | None,
        typer.Option(
            "--dump-crms",
            metavar="DIR",
            help="Also write what each fake CRM holds, as the sandbox's JSON state, to "
            "DIR/<crm>.json (the fake CRMs stop with the demo).",
        ),
    ] = None,
) -> None:
    """Run agency-crm end to end on a private database, with fake CRMs: the two-minute tour.

    Starts a throwaway PostgreSQL (or uses --database-url), installs the schema, starts fake
    HubSpot, Pipedrive and Close servers on loopback, creates three clients with six months of
    history, connects each to its CRM (HubSpot through its OAuth consent page), drains the
    push queue, checks what each CRM holds, prints the analytics and the agency view, and
    writes the HTML report. Nothing leaves this machine.
    """
    from agency_crm import localdb

    if stop:
        stopped = localdb.stop_local_database(data_dir / "demo-db")
        typer.echo(
            f"stopped the demo database in {data_dir / 'demo-db'}"
            if stopped
            else f"no demo database is running in {data_dir / 'demo-db'}"
        )
        return
    Demo(
        database_url=database_url,
        server=server,
        data_dir=data_dir,
        keep=keep,
        seed=seed,
        scale=scale,
        days=days,
        report_path=report_path or data_dir / "report.html",
        dump_crms=dump_crms,
    ).run()


class Demo:
    """One demo run: each step prints what it did."""

    def __init__(
        self,
        *,
        database_url: str | None,
        server: Server,
        data_dir: Path,
        keep: bool,
        seed: int,
        scale: float,
        days: int,
        report_path: Path,
        dump_crms: Path | None = None,
    ) -> None:
        from rich.console import Console

        self.dump_crms = dump_crms
        self.database_url = database_url
        self.server = server
        self.data_dir = data_dir
        self.keep = keep
        self.seed = seed
        self.scale = scale
        self.days = days
        self.report_path = report_path
        self.console: Console = Console(highlight=False)
        self.started = time.monotonic()
        self.as_of = datetime.now(UTC).replace(microsecond=0)
        self.url = ""
        self.roles: set[str] = set()

    # ------------------------------------------------------------------ output

    def step(self, title: str) -> None:
        self.console.rule(f"[bold]{title}", align="left")

    def say(self, text: str) -> None:
        self.console.print(text)

    @contextmanager
    def timed(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        yield
        self.say(f"[dim]{what} in {time.monotonic() - start:.1f} s[/dim]")

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        from agency_crm import localdb

        self.console.print(
            "[bold]agency-crm demo[/bold]: three clients of a lead-generation agency, six "
            "months of meetings and deals, pushed into fake HubSpot, Pipedrive and Close. "
            "Nothing leaves this machine."
        )
        self.step("1. The database")
        database = localdb.open_local_database(
            database_url=self.database_url,
            data_dir=self.data_dir / "demo-db",
            server=self.server.value,
            log=lambda line: self.say(f"  {line}"),
            stop_with="agency-crm demo --stop"
            + ("" if self.data_dir == DEFAULT_DATA_DIR else f" --data-dir {self.data_dir}"),
        )
        try:
            self.say(f"  {database.description}")
            self.with_database(database.url)
        except BaseException:
            if not self.keep:
                database.stop()
            raise
        if self.keep and database.kind != "database-url":
            self.say(
                f"\nThe database is still running: [bold]{database.url}[/bold]\n"
                f"  psql '{database.url}'\n"
                f"  agency-crm report --agency --database-url '{database.url}'\n"
                f"Stop it with: [bold]{database.stop_command()}[/bold]"
            )
        else:
            database.stop()
        self.say(
            f"\n[bold green]Demo finished[/bold green] in {time.monotonic() - self.started:.1f} s."
        )

    def with_database(self, url: str) -> None:
        self.url = url
        from agency_crm import schema
        from agency_crm.demo import seed as demo_seed
        from agency_crm.demo.crms import SANDBOX_APP_ID, SANDBOX_APP_SECRET, FakeCrms

        with psycopg.connect(url, autocommit=True) as conn:
            with self.timed("agency-crm db upgrade"):
                result = schema.upgrade(conn)
            self.roles = set(result.created_roles) | set(schema.ROLES)
            self.roles -= set(result.missing_roles)
            self.say(
                f"  {len(result.applied)} migration(s) applied, functions and triggers"
                f" {result.code_checksum[:12]}"
                + (
                    f", roles created: {', '.join(result.created_roles)}"
                    if result.created_roles
                    else ""
                )
            )

            self.step("2. The fake CRMs")
            self.prepare_environment(SANDBOX_APP_ID, SANDBOX_APP_SECRET)
            sandbox = FakeCrms.start()
            try:
                for vendor, base in sandbox.urls.items():
                    self.say(f"  fake {VENDOR[vendor]:<9} {base}")
                self.with_sandbox(conn, url, sandbox, demo_seed)
            finally:
                sandbox.stop()

    def prepare_environment(self, app_id: str, app_secret: str) -> None:
        """The key ring the CRM credentials are encrypted with, and the sandbox's HubSpot app."""
        from agency_crm.crypto import ENV_VAR, generate_entry

        if not os.environ.get(ENV_VAR):
            os.environ[ENV_VAR] = generate_entry("demo")
            self.say(
                f"  {ENV_VAR}: a throwaway key for this run (the CRM credentials are encrypted)"
            )
        os.environ["AGENCY_CRM_HUBSPOT_CLIENT_ID"] = app_id
        os.environ["AGENCY_CRM_HUBSPOT_CLIENT_SECRET"] = app_secret

    def with_sandbox(
        self, conn: psycopg.Connection[Any], url: str, sandbox: FakeCrms, demo_seed: Any
    ) -> None:
        self.step("3. Clients and six months of history")
        clients = demo_seed.create_clients(conn, as_of=self.as_of)
        for client in clients:
            self.say(f"  {client.name} ({client.currency}), CRM: {VENDOR[client.crm]}")
        with (
            self.timed("history loaded through the tables and triggers"),
            self.progress("loading") as advance,
        ):
            with self.as_app(conn):
                summary = demo_seed.seed(
                    conn,
                    clients,
                    as_of=self.as_of,
                    seed=self.seed,
                    scale=self.scale,
                    progress=advance,
                )
        self.say(f"  {summary}")

        self.step("4. Connecting each client's CRM")
        connected = self.connect(url, sandbox, [(c.client_id, c.crm) for c in clients])
        self.live_changes(conn, [c.client_id for c in clients])

        self.step("5. Draining the push queue into the CRMs")
        drained = self.drain(url, [c.client_id for c in clients])
        self.say(
            f"  {drained.pushes} pushes in {drained.seconds:.1f} s: "
            + ", ".join(f"{k.value} {v}" for k, v in sorted(drained.outcomes.items()))
            + f"; {drained.calls} CRM calls, {drained.rate_limited} rate-limited"
        )

        self.step("6. What each CRM holds, against the database")
        from agency_crm.demo.holdings import check

        checks = check(conn, sandbox, connected)
        if self.dump_crms is not None:
            self.write_crm_states(sandbox, connected)
        self.print_holdings(checks, {c.client_id: c.name for c in clients})

        self.step("7. Every lifecycle rule, exercised")
        rules = demo_seed.exercised_rules(conn, [c.client_id for c in clients])
        self.print_rules(rules)

        self.step("8. Analytics")
        self.print_analytics(conn, clients)

        self.step("9. The HTML report")
        self.write_reports(conn, clients)

        problems = [c for c in checks if not c.ok]
        if problems:
            raise DemoFailed(
                "the CRMs do not hold what the database expects: "
                + ", ".join(f"{VENDOR[c.crm]}" for c in problems),
                hint="see the table above; this is a defect of agency-crm, please report it",
            )
        missing = [name for name, count in rules.items() if count == 0]
        if missing:
            raise DemoFailed(
                f"the demo data did not exercise {len(missing)} lifecycle rule(s): "
                + ", ".join(missing)
            )

    # ------------------------------------------------------------------ steps

    def can_be(self, role: str) -> bool:
        """Whether this login may act as one of the package's roles."""
        if role not in self.roles:
            return False
        with psycopg.connect(self.url) as conn:
            row = conn.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()
        return bool(row and row[0])

    @contextmanager
    def as_app(self, conn: psycopg.Connection[Any]) -> Iterator[None]:
        """Write as app code does: as crm_app when this login may take that role."""
        if not self.can_be("crm_app"):
            yield
            return
        conn.execute("SET ROLE crm_app")
        try:
            yield
        finally:
            conn.execute("RESET ROLE")

    @contextmanager
    def progress(self, label: str) -> Iterator[Callable[[str, int, int], None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("  {task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self.console,
            transient=True,
        )
        tasks: dict[str, Any] = {}

        def advance(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        with bar:
            yield advance

    def connect(
        self, url: str, sandbox: FakeCrms, clients: Sequence[tuple[uuid.UUID, str]]
    ) -> list[Connected]:
        from psycopg_pool import AsyncConnectionPool

        from agency_crm.demo.crms import connect_all
        from agency_crm.service.crm import CrmService

        def said(connected: Connected, result: Any) -> None:
            account = (
                f"portal {connected.account}" if connected.crm == "hubspot" else "a new account"
            )
            self.say(
                f"  {VENDOR[connected.crm]:<9} connected through its {connected.how} ({account}):"
                f" pipeline {result.config.pipeline_id}, stage {result.config.stage_id};"
                f" history queued: {result.backfill.meetings} meetings,"
                f" {result.backfill.deals} deals"
            )

        async def main() -> list[Connected]:
            async with AsyncConnectionPool(
                url,
                min_size=1,
                max_size=4,
                open=False,
                kwargs={"autocommit": True, "application_name": "agency-crm demo"},
            ) as pool:
                # As the HTTP API runs it, when this login may take the API's role.
                crm = CrmService(pool, role="crm_api" if self.can_be("crm_api") else None)
                try:
                    return await connect_all(crm, sandbox, clients, said)
                finally:
                    await crm.aclose()

        with self.timed("connected"):
            return asyncio.run(main())

    def live_changes(self, conn: psycopg.Connection[Any], client_ids: Sequence[uuid.UUID]) -> None:
        """App code at work after the connect: a few upcoming meetings confirmed now; the
        triggers queue their pushes in the same transaction."""
        from agency_crm.queries import DEMO

        with self.as_app(conn), conn.transaction():
            rows = conn.execute(
                DEMO["confirm_upcoming"],
                {"client_ids": list(client_ids), "per_client": LIVE_CONFIRMATIONS},
            ).fetchall()
        self.say(
            f"  meanwhile app code confirmed {len(rows)} upcoming meetings: the triggers queued"
            " their pushes"
        )

    def drain(self, url: str, client_ids: Sequence[uuid.UUID]) -> DrainSummary:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        from agency_crm.push.runner import Drainer, DrainSettings, PushEvent
        from agency_crm.push.settings import Settings
        from agency_crm.queries import PUSH

        with psycopg.connect(url) as conn:
            row = conn.execute(PUSH["due_count"], {"client_ids": list(client_ids)}).fetchone()
        total = int(row[0]) if row else 0
        bar = Progress(
            TextColumn("  push drain"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[calls]} CRM calls"),
            console=self.console,
            transient=False,
        )
        calls = 0
        task = bar.add_task("drain", total=total, calls=0)

        def on_event(event: PushEvent) -> None:
            nonlocal calls
            calls += event.calls
            bar.update(task, advance=1, calls=calls)

        settings = DrainSettings(
            database_url=url, client_ids=list(client_ids), client=Settings.from_environment()
        )
        with bar:
            return asyncio.run(Drainer(settings, on_event).run())

    def write_crm_states(self, sandbox: FakeCrms, connected: Sequence[Connected]) -> None:
        import json

        assert self.dump_crms is not None
        self.dump_crms.mkdir(parents=True, exist_ok=True)
        for c in connected:
            state = sandbox.state(c.crm, c.account)
            state.pop("request_log", None)
            state["client_id"] = str(c.client_id)
            path = self.dump_crms / f"{c.crm}.json"
            path.write_text(json.dumps(state, indent=1, default=str), encoding="utf-8")
        self.say(f"  each CRM's records written to {self.dump_crms}/<crm>.json")

    # ------------------------------------------------------------------ printing

    def print_holdings(self, checks: Sequence[CrmCheck], names: dict[uuid.UUID, str]) -> None:
        from rich.table import Table

        from agency_crm.report.format import money

        table = Table(box=None, pad_edge=False, padding=(0, 2))
        for header in ("client", "CRM", "records", "in the CRM", "expected", ""):
            table.add_column(
                header, justify="right" if header in ("in the CRM", "expected") else "left"
            )
        for crm in checks:
            first = True
            for kind in crm.kinds:
                held, expected = kind.count()
                table.add_row(
                    names[crm.client_id] if first else "",
                    VENDOR[crm.crm] if first else "",
                    kind.label,
                    f"{held:,}",
                    f"{expected:,}",
                    "[green]✓[/green]" if kind.ok else "[red]✗[/red] " + problems(kind),
                )
                first = False
                if kind.kind == "deal":
                    for status in ("won", "lost", "open"):
                        h, e = kind.count(status)
                        table.add_row("", "", f"  {status}", f"{h:,}", f"{e:,}", "")
                    hv, ev = kind.value("won")
                    table.add_row("", "", "  won value", money(hv, None), money(ev, None), "")
        self.console.print(table)

    def print_rules(self, rules: dict[str, int]) -> None:
        from rich.columns import Columns

        exercised = sum(1 for n in rules.values() if n > 0)
        self.say(f"  {exercised} of {len(rules)} rules of docs/lifecycle.md shown by the data:")
        self.console.print(
            Columns(
                [
                    f"  {'[green]✓[/green]' if n else '[red]✗[/red]'} {name} [dim]{n:,}[/dim]"
                    for name, n in rules.items()
                ],
                equal=True,
            )
        )

    def print_analytics(self, conn: psycopg.Connection[Any], clients: Sequence[Any]) -> None:
        from agency_crm.cli import report as report_cli
        from agency_crm.report import agency_report, client_report, snapshot

        with snapshot(conn):
            for client in clients:
                report = client_report(conn, client.client_id, days=self.days, as_of=self.as_of)
                report_cli.print_client_report(self.console, report)
            agency = agency_report(conn, days=self.days, as_of=self.as_of)
        report_cli.print_agency_report(self.console, agency)

    def write_reports(self, conn: psycopg.Connection[Any], clients: Sequence[Any]) -> None:
        from agency_crm.cli.report import slug
        from agency_crm.report import agency_report, client_report, snapshot
        from agency_crm.report.html import render

        self.report_path.parent.mkdir(parents=True, exist_ok=True)
        written = []
        with snapshot(conn):
            for client in clients:
                report = client_report(conn, client.client_id, days=self.days, as_of=self.as_of)
                name = f"{self.report_path.stem}-{slug(client.name)}.html"
                path = self.report_path.with_name(name)
                path.write_text(render(report), encoding="utf-8")
                written.append(path)
            agency = agency_report(conn, days=self.days, as_of=self.as_of)
        self.report_path.write_text(render(agency), encoding="utf-8")
        self.say(f"  the agency report: [bold]{self.report_path.resolve()}[/bold]")
        for path in written:
            self.say(f"  a client's report: {path.resolve()}")


def problems(kind: Any) -> str:
    parts = []
    for what in ("missing", "unexpected", "duplicates", "different"):
        found = getattr(kind, what)
        if found:
            parts.append(f"{len(found)} {what}")
    return ", ".join(parts)
