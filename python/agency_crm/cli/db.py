"""``agency-crm db``: install, upgrade and inspect the schema."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from agency_crm import db, schema
from agency_crm.cli.common import Command, DatabaseUrl, JsonOutput, bounded, examples, group

app = group("Install, upgrade and inspect the agency-crm schema.")


@app.command(
    "upgrade",
    cls=Command,
    epilog=examples(
        "agency-crm db upgrade --database-url postgresql://app@db.internal:5432/agency",
        "DATABASE_URL=postgresql://app@db/agency agency-crm db upgrade --json",
        "agency-crm db upgrade --lock-timeout 30   # a quiet hour: wait longer for locks",
    ),
)
def upgrade(
    database_url: DatabaseUrl = None,
    reapply_code: Annotated[
        bool,
        typer.Option(
            "--reapply-code",
            help="Re-apply every function and trigger file even when none changed.",
        ),
    ] = False,
    lock_timeout: Annotated[
        float,
        bounded(
            "--lock-timeout",
            "SECONDS",
            0.0,
            envvar="AGENCY_CRM_LOCK_TIMEOUT",
            show_envvar=True,
            help="Most seconds a migration waits for a table lock (the app's writes queue "
            "behind it meanwhile); past it nothing is applied and the error names the lock "
            "and who holds it; 0 waits as long as it takes",
        ),
    ] = schema.DEFAULT_LOCK_TIMEOUT,
    as_json: JsonOutput = False,
) -> None:
    """Apply pending migrations, then all functions and triggers, in one transaction.

    Safe to run at every deploy: a second run changes nothing, and two runs at once take
    turns. Refuses, changing nothing, when an applied migration's file was edited or the
    database was upgraded by a newer agency-crm.
    """

    def progress(message: str) -> None:
        if not as_json:
            typer.echo(message)

    with db.connect(database_url) as conn:
        if not as_json:
            typer.echo(f"database: {db.describe(conn)}")
        result = schema.upgrade(
            conn, reapply_code=reapply_code, lock_timeout=lock_timeout, progress=progress
        )
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
                    "created_roles": result.created_roles,
                    "missing_roles": result.missing_roles,
                    "create_roles_sql": schema.create_roles_sql(result.missing_roles) or None,
                    "access_applied": result.access_applied,
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
    if result.missing_roles:
        echo_missing_roles(result.missing_roles)


def echo_missing_roles(missing: list[str] | tuple[str, ...]) -> None:
    """Which roles are missing and the SQL an administrator runs (on stderr: a warning)."""
    typer.echo(
        f"roles missing: {', '.join(missing)}: this login may not create roles (it lacks"
        " CREATEROLE), so they have no privileges yet. An administrator runs:",
        err=True,
    )
    for line in schema.create_roles_sql(missing).splitlines():
        typer.echo(f"    {line}", err=True)
    typer.echo(
        "then `agency-crm db upgrade` again grants them (docs/security.md maps them to a"
        " managed PostgreSQL's roles).",
        err=True,
    )


@app.command(
    "status",
    cls=Command,
    epilog=examples(
        "agency-crm db status",
        "agency-crm db status --check || agency-crm db upgrade   # in a deploy script",
    ),
)
def status(
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
                    "missing_roles": list(state.missing_roles),
                    "grants_current": state.access_current,
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
        grants = (
            "current"
            if state.access_current
            else "stale (run `agency-crm db upgrade` to apply them)"
        )
        typer.echo(f"grants and row-level security: {grants}")
        if state.missing_roles:
            echo_missing_roles(state.missing_roles)
        summary = (
            "up to date"
            if state.up_to_date
            else (f"{len(state.pending)} pending, {len(state.problems)} changed or unknown")
        )
        typer.echo(summary)
    if check and not (state.up_to_date and state.access_current):
        raise typer.Exit(3)
