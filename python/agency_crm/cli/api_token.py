"""``agency-crm api-token``: the bearer tokens of the HTTP API (``agency-crm serve``): create
one for a client (or agency-wide), list them, revoke one.

Only a token's SHA-256 digest is stored: ``create`` prints the token once, alone on stdout, and
nothing can show it again. Listings show its first characters (``acrm_xxxx``) to recognise it.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from typing import Annotated, Any

import typer

from agency_crm.cli.common import (
    Command,
    DatabaseUrl,
    JsonOutput,
    connect_ready,
    examples,
    group,
    resolve_client,
    table,
    to_json,
)

app = group("The HTTP API's bearer tokens: create one for a client or the agency, list, revoke.")

ClientFilter = Annotated[
    str | None,
    typer.Option(
        "--client",
        metavar="CLIENT",
        envvar="AGENCY_CRM_CLIENT",
        show_envvar=True,
        help="The client (its uuid, or its exact name).",
    ),
]


def default_name() -> str:
    """Who made the token, where: what a listing shows when no --name was given."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "someone"
    return f"{user}@{socket.gethostname()}"[:200]


@app.command(
    "create",
    cls=Command,
    epilog=examples(
        "agency-crm api-token create --client Acme --name 'Acme dashboard'",
        "agency-crm api-token create --client 6f1c0e2a-... > acme.token",
        "agency-crm api-token create --agency --name 'agency back office' --json",
    ),
)
def create_command(
    client: ClientFilter = None,
    agency: Annotated[
        bool,
        typer.Option(
            "--agency",
            help="Agency-wide: each request names the client it acts for (instead of --client).",
        ),
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="TEXT", help="What it is for, 1-200 characters (default: user@host)."
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Create an API token for one client (--client) or the whole agency (--agency).

    The token goes to stdout, alone (with --json: an object with id, client_id, name, token and
    created_at); it is shown this once: only its digest is stored. A client's token acts for
    that client only: another client's data is not there for it. Exit 4 when there is no such
    client.
    """
    from agency_crm.service import tokens

    if agency == (client is not None):
        raise typer.BadParameter("give --client CLIENT or --agency (one of them)")
    with connect_ready(database_url) as conn:
        client_id, client_name = resolve_client(conn, client) if client else (None, None)
        with conn.transaction():
            token, row = tokens.create(conn, client_id, default_name() if name is None else name)
    if as_json:
        typer.echo(
            to_json(
                {
                    "id": row["id"],
                    "client_id": row["client_id"],
                    "name": row["name"],
                    "token": token,
                    "created_at": row["created_at"],
                }
            )
        )
    else:
        typer.echo(token)
    scope = f"client {client_name} ({client_id})" if client_id else "the agency (any client)"
    typer.echo(
        f"API token {row['id']} ({row['name']}) for {scope}: shown this once, only its digest "
        f"is stored; revoke it with `agency-crm api-token revoke {row['id']}`",
        err=True,
    )


@app.command(
    "list",
    cls=Command,
    epilog=examples(
        "agency-crm api-token list",
        "agency-crm api-token list --client Acme --all --json",
    ),
)
def list_command(
    client: ClientFilter = None,
    everything: Annotated[bool, typer.Option("--all", help="Revoked tokens too.")] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The API tokens (of one client, with --client), oldest first: id, client, name, first
    characters, when created, last used and revoked. Never the token."""
    from agency_crm.service import tokens

    with connect_ready(database_url) as conn:
        client_id = resolve_client(conn, client)[0] if client else None
        rows = tokens.listing(conn, client_id, revoked=everything)
    if as_json:
        typer.echo(to_json(rows))
        return
    if not rows:
        typer.echo("no API tokens" + ("" if everything else " (--all shows revoked ones)"))
        return
    headers = ["id", "client", "name", "token", "created", "last used"]
    if everything:
        headers.append("revoked")
    lines = []
    for r in rows:
        line = [
            str(r["id"]),
            r["client_name"] or "(agency)",
            r["name"],
            r["token_prefix"] + "…",
            when(r["created_at"]),
            when(r["last_used_at"]),
        ]
        if everything:
            line.append(when(r["revoked_at"]))
        lines.append(line)
    table(headers, lines)


def when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


@app.command(
    "revoke",
    cls=Command,
    epilog=examples("agency-crm api-token revoke 0b6f5a1e-...-4c2d"),
)
def revoke_command(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="The token's id (api-token list shows it).")
    ],
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Revoke an API token: requests with it are refused from now on. Revoking it again changes
    nothing. Exit 4 when there is no token with this id."""
    from agency_crm.service import tokens

    try:
        wanted = uuid.UUID(token_id)
    except ValueError:
        raise typer.BadParameter(f"{token_id!r} is not a token id (a uuid)") from None
    with connect_ready(database_url) as conn, conn.transaction():
        row = tokens.revoke(conn, wanted)
    if as_json:
        typer.echo(json.dumps({"id": str(row["id"]), "revoked_at": row["revoked_at"].isoformat()}))
    else:
        typer.echo(f"revoked API token {row['id']} (at {when(row['revoked_at'])})")
