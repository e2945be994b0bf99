"""``agency-crm serve``: run the HTTP API (FastAPI on uvicorn) until Ctrl-C or SIGTERM.

Before it listens it checks what every request will need, and says in one line what is
missing: the schema installed and current, the login allowed to act as ``crm_api`` (every
request's queries run as that role), and a key ring to encrypt the CRM credentials with.
FastAPI and uvicorn are imported only when the command runs.
"""

from __future__ import annotations

import copy
import os
import signal
from typing import Annotated, Any

import psycopg
import typer
from psycopg import sql

from agency_crm.cli.common import Command, DatabaseUrl, bounded, connect_ready, examples, fail
from agency_crm.crypto import ENV_VAR, GENERATE_HINT, KeyRing

# The role every request's queries run as (sql/access.sql).
API_ROLE = "crm_api"
# The role the /agency routes read every client as.
AGENCY_ROLE = "crm_analyst"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def check_role(conn: psycopg.Connection[Any], role: str = API_ROLE) -> None:
    """The login may ``SET ROLE`` to the API's role, else one line saying how to grant it."""
    login = conn.info.user
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except psycopg.errors.InsufficientPrivilege:
        fail(
            f"the login {login} may not act as {role}, the role the API runs every query as "
            f"(hint: GRANT {role} TO {login}; as the database owner)"
        )
    except psycopg.errors.InvalidParameterValue:  # the role does not exist
        fail(
            f"role {role} does not exist (hint: run agency-crm db upgrade as a login with "
            f"CREATEROLE, which creates it, then GRANT {role} TO {login};)"
        )


def may_act_as(conn: psycopg.Connection[Any], role: str) -> bool:
    """Whether the login may ``SET ROLE`` to ``role``."""
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.InvalidParameterValue):
        return False
    return True


def check_keys() -> None:
    """A key ring to encrypt the credentials a connect call stores."""
    if not KeyRing.from_environment().keys:
        fail(
            f"{ENV_VAR} is unset or empty: the API stores each CRM key and token encrypted "
            f"(hint: {GENERATE_HINT}; set it to the same value everywhere agency-crm runs)"
        )


def log_config() -> dict[str, Any]:
    """Uvicorn's logging, with the API's own loggers (its access log among them) beside it."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["agency_crm"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


@app.command(
    "serve",
    cls=Command,
    epilog=examples(
        "agency-crm serve --database-url postgresql://api@db/agency",
        "agency-crm serve --host 0.0.0.0 --port 8080",
        "AGENCY_CRM_HUBSPOT_CLIENT_ID=... AGENCY_CRM_HUBSPOT_CLIENT_SECRET=... "
        "AGENCY_CRM_HUBSPOT_REDIRECT_URI=https://crm.example.com/api/v1/crm/callback/hubspot "
        "agency-crm serve",
        "agency-crm serve --allow-api-base-url   # connect calls may name a sandbox",
    ),
)
def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            envvar="AGENCY_CRM_API_HOST",
            show_envvar=True,
            help="Address to listen on.",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        bounded(
            "--port",
            "PORT",
            1,
            65535,
            help="Port to listen on",
            envvar="AGENCY_CRM_API_PORT",
            show_envvar=True,
        ),
    ] = 8000,
    allow_api_base_url: Annotated[
        bool,
        typer.Option(
            "--allow-api-base-url",
            envvar="AGENCY_CRM_ALLOW_API_BASE_URL",
            show_envvar=True,
            help="Let connect calls name an API root instead of the vendor's (the CRM sandbox). "
            "Off by default: it would let a caller make this server send a key anywhere.",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the HTTP API under /api/v1 until Ctrl-C or SIGTERM.

    Requests need a bearer token (agency-crm api-token create); their queries run as
    crm_api, so the login needs GRANT crm_api TO <login> (and crm_analyst for the /agency
    report routes, which read every client). The HubSpot OAuth app comes from
    AGENCY_CRM_HUBSPOT_CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI and _SCOPES; the CRM
    credentials are encrypted with AGENCY_CRM_SECRET_KEYS. The OpenAPI document is served at
    /api/v1/openapi.json, its pages at /api/v1/docs.
    """
    check_keys()
    with connect_ready(database_url) as conn:
        check_role(conn)
        if not may_act_as(conn, AGENCY_ROLE):
            typer.echo(
                f"agency-crm: note: the login {conn.info.user} may not act as {AGENCY_ROLE}: the "
                f"/agency report routes answer 503 (hint: GRANT {AGENCY_ROLE} TO "
                f"{conn.info.user}; as the database owner)",
                err=True,
            )
    if not all(
        os.environ.get(f"AGENCY_CRM_HUBSPOT_{name}")
        for name in ("CLIENT_ID", "CLIENT_SECRET", "REDIRECT_URI")
    ):
        typer.echo(
            "agency-crm: note: HubSpot OAuth is not configured (AGENCY_CRM_HUBSPOT_CLIENT_ID, "
            "_CLIENT_SECRET, _REDIRECT_URI): POST /api/v1/crm/connect/hubspot answers 503",
            err=True,
        )

    import uvicorn

    from agency_crm.api import create_app

    application = create_app(database_url, allow_api_base_url=allow_api_base_url)
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        # The API logs each request itself, without the query string (the OAuth callback's
        # holds the code); uvicorn's access log would print it.
        access_log=False,
        log_config=log_config(),
        server_header=False,
    )
    server = uvicorn.Server(config)
    # Uvicorn shuts down on SIGTERM, then raises the signal again for the handler it found:
    # a no-op here, so that a stop asked for (systemd, docker stop) exits 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        fail(f"the API could not listen on {host}:{port} (hint: another port, or --host)")
