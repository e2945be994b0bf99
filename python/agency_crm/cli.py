"""The agency-crm command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import psycopg
import typer

from agency_crm import __version__, db, schema
from agency_crm.cli_options import DatabaseUrl, JsonOutput
from agency_crm.errors import AgencyCrmError
from agency_crm.push_cli import push_app
from agency_crm.sandbox.cli import sandbox

app = typer.Typer(
    name="agency-crm",
    help="Meetings, deals, analytics and CRM push for lead-generation agencies, in PostgreSQL.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(
    help="Install, upgrade and inspect the agency-crm schema.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(push_app, name="push")
app.command("sandbox")(sandbox)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit non-zero."""
    one_line = " ".join(message.split())
    typer.echo(f"agency-crm: error: {one_line}", err=True)
    sys.exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agency-crm {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """agency-crm command line."""


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    reapply_code: Annotated[
        bool,
        typer.Option(
            "--reapply-code",
            help="Re-apply every function and trigger file even when none changed.",
        ),
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Apply pending migrations, then all functions and triggers, in one transaction.

    Safe to run at every deploy: a second run changes nothing. Refuses, changing nothing,
    when an applied migration's file was edited.
    """

    def progress(message: str) -> None:
        if not as_json:
            typer.echo(message)

    with db.connect(database_url) as conn:
        if not as_json:
            typer.echo(f"database: {db.describe(conn)}")
        result = schema.upgrade(conn, reapply_code=reapply_code, progress=progress)
        state = schema.status(conn)
    applied_total = sum(m.state is schema.MigrationState.APPLIED for m in state.migrations)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "applied": result.applied,
                    "code_applied": result.code_applied,
                    "code_checksum": result.code_checksum,
                    "migrations_applied_total": applied_total,
                    "up_to_date": state.up_to_date,
                }
            )
        )
        return
    if result.changed:
        typer.echo(
            f"upgraded: {len(result.applied)} migration(s) applied now, "
            f"{applied_total} in all; code {result.code_checksum[:12]}"
        )
    else:
        typer.echo(
            f"already up to date: {applied_total} migration(s) applied, "
            f"code {result.code_checksum[:12]} current; nothing changed"
        )


@db_app.command("status")
def db_status(
    database_url: DatabaseUrl = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Exit 3 when anything is pending, changed or unknown."),
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """List applied and pending migrations and whether the functions and triggers are current."""
    with db.connect(database_url) as conn:
        target = db.describe(conn)
        state = schema.status(conn)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "database": target,
                    "migrations": [
                        {
                            "name": m.name,
                            "state": m.state.value,
                            "applied_at": m.applied_at,
                            "package_version": m.package_version,
                        }
                        for m in state.migrations
                    ],
                    "code_current": state.code_current,
                    "code_applied_at": state.code_applied_at,
                    "up_to_date": state.up_to_date,
                }
            )
        )
    else:
        typer.echo(f"database: {target}")
        for m in state.migrations:
            when = f"  {m.applied_at}" if m.applied_at else ""
            typer.echo(f"  {m.state.value:<8} {m.name:<36}{when}")
        code = "current" if state.code_current else "stale (run `agency-crm db upgrade`)"
        typer.echo(f"functions and triggers: {code}")
        summary = (
            "up to date"
            if state.up_to_date
            else (f"{len(state.pending)} pending, {len(state.problems)} changed or unknown")
        )
        typer.echo(summary)
    if check and not state.up_to_date:
        raise typer.Exit(3)


def main() -> None:
    """Console entry point: run the app, turning known errors into one line and exit 1."""
    try:
        app()
    except AgencyCrmError as exc:
        fail(exc.one_line())
    except psycopg.Error as exc:
        message = exc.diag.message_primary or str(exc)
        hint = f" (hint: {exc.diag.message_hint})" if exc.diag.message_hint else ""
        fail(f"database error {exc.sqlstate or ''}: {message}{hint}")
    except KeyboardInterrupt:
        typer.echo("agency-crm: interrupted", err=True)
        sys.exit(130)
