"""``agency-crm crm``: connect a client's CRM (HubSpot through its consent page or with a
private-app token, Pipedrive and Close with an API key), show and change where its deals go,
test it, list what it offers (pipelines, stages, users), read its CRM call log, disconnect it.

Each command acts for one client (``--client``: its uuid or its exact name) through the service
layer the HTTP API uses (:mod:`agency_crm.service`), as the command's own database login. No
command prints a secret: credentials are read from stdin or the environment, and shown masked.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import typer

from agency_crm.cli.common import (
    EXIT_CODES_HELP,
    EXIT_PROBLEMS,
    ClientRef,
    Command,
    DatabaseUrl,
    JsonOutput,
    bounded,
    choices,
    connect_ready,
    examples,
    fail,
    group,
    pool_dsn,
    read_secret,
    resolve_client,
    table,
)
from agency_crm.errors import AgencyCrmError
from agency_crm.push.model import LogStatus

if TYPE_CHECKING:
    from pydantic import BaseModel

    from agency_crm.cli.loopback import Listener
    from agency_crm.service import models
    from agency_crm.service.crm import CrmService

T = TypeVar("T")

VENDOR = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "close": "Close"}
# Where new deals go, as `config show` names the settings.
SETTINGS = ("pipeline_id", "stage_id", "owner_id")

app = group(
    "Connect a client's CRM, choose where its deals go, test it, list its pipelines, stages "
    "and users, read its CRM call log, disconnect it."
)
connect_app = group("Connect a client's HubSpot, Pipedrive or Close.")
config_app = group("Show or change where a client's deals go in its CRM.")
app.add_typer(connect_app, name="connect")
app.add_typer(config_app, name="config")


@app.callback(epilog=EXIT_CODES_HELP)
def crm_group() -> None:
    """Connect a client's CRM, choose where its deals go, test it, list its pipelines, stages
    and users, read its CRM call log, disconnect it.

    Every command takes --client (the client's uuid or its exact name; or AGENCY_CRM_CLIENT)
    and --json. A client has one CRM: connecting another is refused until the first is
    disconnected.
    """


@connect_app.callback(epilog=EXIT_CODES_HELP)
def connect_group() -> None:
    """Connect a client's HubSpot, Pipedrive or Close: the credentials are tested against the
    CRM and saved encrypted only when they work."""


# ----------------------------------------------------------------------------- options

HttpTimeout = Annotated[
    float,
    bounded("--http-timeout", "SECONDS", 0.1, help="Seconds one CRM call may take"),
]
ApiBaseUrl = Annotated[
    str | None,
    typer.Option(
        "--api-base-url",
        metavar="URL",
        envvar="AGENCY_CRM_API_BASE_URL",
        show_envvar=True,
        help="The CRM's API root instead of the vendor's own: the sandbox's URL (`agency-crm "
        "sandbox` prints them), or a proxy.",
    ),
]
SECRET_ON_THE_COMMAND_LINE = (
    "On the command line it shows in the process list (ps) of everyone on the machine: "
    "prefer `-`, reading it from stdin, or the environment variable. Without it, a hidden "
    "prompt on a terminal."
)


def api_key_option(envvar: str, flag: str = "--api-key", what: str = "The API key") -> Any:
    return typer.Option(
        flag,
        metavar="KEY|-",
        envvar=envvar,
        show_envvar=True,
        help=f"{what}; `-` reads it from stdin. {SECRET_ON_THE_COMMAND_LINE}",
    )


def secret_value(value: str | None, flag: str, what: str) -> str:
    """The credential of a --api-key style option: itself, stdin for `-`, a hidden prompt on a
    terminal when not given."""
    if value == "-" or (value is None and sys.stdin.isatty()):
        return read_secret(what, param_hint=f"'{flag}'")
    if value is None:
        raise typer.BadParameter(
            f"no {what}: pass `{flag} -` with it on stdin, or set the environment variable "
            "its help names",
            param_hint=f"'{flag}'",
        )
    value = value.strip()
    if not value:
        raise typer.BadParameter(f"the {what} is empty", param_hint=f"'{flag}'")
    return value


def parse_when(value: str | None, flag: str) -> datetime | None:
    """--since/--until: an ISO 8601 date or time; without a zone, this machine's."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date or time (2026-01-31, 2026-01-31T09:00, "
            "2026-01-31T09:00+10:00)",
            param_hint=f"'{flag}'",
        ) from None
    return when if when.tzinfo else when.astimezone()


# ----------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class Target:
    """The client a command acts for, and the database to reach it in."""

    dsn: str
    client_id: uuid.UUID
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.client_id})"


def target(database_url: str | None, client: str) -> Target:
    """The database (checked for the current schema) and the client --client names."""
    with connect_ready(database_url) as conn:
        client_id, name = resolve_client(conn, client)
    return Target(pool_dsn(database_url, check=False), client_id, name)


@asynccontextmanager
async def service(dsn: str, http_timeout: float | None = None) -> AsyncIterator[CrmService]:
    """The service layer as this command's own login (no role switch)."""
    from psycopg_pool import AsyncConnectionPool

    from agency_crm.push.settings import DEFAULT_HTTP_TIMEOUT, Settings
    from agency_crm.service.crm import CrmService

    settings = Settings.from_environment(http_timeout=http_timeout or DEFAULT_HTTP_TIMEOUT)
    async with AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        open=False,
        kwargs={"autocommit": True, "application_name": "agency-crm crm"},
    ) as pool:
        crm = CrmService(pool, role=None, settings=settings)
        try:
            yield crm
        finally:
            await crm.aclose()


def call(
    where: Target,
    work: Callable[[CrmService], Awaitable[T]],
    http_timeout: float | None = None,
) -> T:
    """Run one service call for the target client."""

    async def main() -> T:
        async with service(where.dsn, http_timeout) as crm:
            return await work(crm)

    return asyncio.run(main())


def require_key_ring() -> None:
    """Connecting stores credentials encrypted: refuse before calling the CRM when no key is
    set (one line saying how to make one)."""
    from agency_crm import crypto

    crypto.KeyRing.from_environment().primary  # noqa: B018 - raises NoKeyError when unset


# ----------------------------------------------------------------------------- output


def emit_json(value: BaseModel | Sequence[BaseModel]) -> None:
    if isinstance(value, Sequence):
        typer.echo(json.dumps([v.model_dump(mode="json") for v in value]))
    else:
        typer.echo(json.dumps(value.model_dump(mode="json")))


def pairs(items: Sequence[tuple[str, str]]) -> None:
    """``name  value`` lines, values aligned."""
    width = max(len(k) for k, _ in items)
    for key, value in items:
        typer.echo(f"{key.ljust(width)}  {value}")


def show(value: str | None) -> str:
    return "-" if value is None or value == "" else value


def config_lines(config: models.CrmConfig, name: str) -> list[tuple[str, str]]:
    """The config as `config show` prints it; secrets only as set or not."""
    from agency_crm.service.models import MASK

    credentials = config.credentials
    held = [
        k
        for k in ("api_key", "oauth_access_token", "oauth_refresh_token")
        if getattr(credentials, k)
    ]
    status = config.connection_status + ("" if config.is_active else " (inactive)")
    lines = [
        ("client", f"{name} ({config.client_id})"),
        ("crm", VENDOR[config.crm_type]),
        ("status", status),
        ("api base url", config.api_base_url or "the vendor's own"),
        ("pipeline", show(config.pipeline_id)),
        ("stage", show(config.stage_id)),
        ("owner", show(config.owner_id)),
        (
            "stage map",
            ", ".join(f"{k}={v}" for k, v in sorted(config.stage_map.items())) or "-",
        ),
    ]
    if config.crm_type == "hubspot":
        lines.append(("portal", show(config.hubspot_portal_id)))
    lines += [
        (
            "key fields",
            ", ".join(f"{k}={v}" for k, v in sorted(config.external_key_fields.items())) or "-",
        ),
        ("credentials", ", ".join(f"{k} {MASK}" for k in held) or "none"),
    ]
    if credentials.oauth_expires_at:
        lines.append(("token expires", when_text(credentials.oauth_expires_at)))
    lines += [
        ("last push", when_text(config.last_successful_push_at)),
        ("last error", show(config.last_error)),
        ("config", str(config.id)),
    ]
    return lines


def when_text(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def print_connected(result: models.ConnectResult, where: Target) -> None:
    config = result.config
    vendor = VENDOR[config.crm_type]
    at = f" at {config.api_base_url}" if config.api_base_url else ""
    if result.replaced:
        typer.echo(f"reconnected {where} to {vendor}{at}: new credentials, settings kept")
    else:
        typer.echo(f"connected {where} to {vendor}{at}")
    settings = ", ".join(f"{k.removesuffix('_id')} {show(getattr(config, k))}" for k in SETTINGS)
    proposed = "" if result.replaced else " (proposed by the CRM)"
    typer.echo(f"new deals go to {settings}{proposed}; change with `agency-crm crm config set`")
    fill = result.backfill
    if fill.meetings or fill.deals:
        typer.echo(
            f"queued {fill.meetings} meeting(s) and {fill.deals} deal(s) the CRM has not got:"
            " run `agency-crm push drain` to send them"
        )
    else:
        typer.echo("nothing of the client's history to send")


# ----------------------------------------------------------------------------- connect


def connect_with_key(
    crm_type: models.CrmType,
    client: str,
    api_key: str | None,
    api_base_url: str | None,
    database_url: str | None,
    http_timeout: float,
    as_json: bool,
    flag: str = "--api-key",
    what: str = "API key",
) -> None:
    require_key_ring()
    where = target(database_url, client)
    key = secret_value(api_key, flag, what)
    result = call(
        where,
        lambda crm: crm.connect_key(
            where.client_id,
            crm_type,
            key,
            api_base_url,
            trusted=True,
        ),
        http_timeout,
    )
    if as_json:
        emit_json(result)
    else:
        print_connected(result, where)


KEY_CONNECT_HELP = (
    "The key is tested against the CRM (who it belongs to, the pipelines, the users) and saved "
    "encrypted only when it works: a refused key saves nothing. The CRM is made ready for "
    "duplicate-proof pushing (a custom field holding our key), the default pipeline, stage and "
    "owner are proposed from it, and the client's meetings and deals the CRM has not got are "
    "queued (`agency-crm push drain` sends them). Connecting the same CRM again replaces the "
    "key and keeps the settings."
)


@connect_app.command(
    "pipedrive",
    cls=Command,
    help="Connect a client's Pipedrive with an API token.\n\n" + KEY_CONNECT_HELP,
    epilog=examples(
        "agency-crm crm connect pipedrive --client Acme --api-key -   # the key on stdin",
        "AGENCY_CRM_API_KEY=sbx_demo agency-crm crm connect pipedrive --client Acme"
        " --api-base-url http://127.0.0.1:8702   # the sandbox",
    ),
)
def connect_pipedrive(
    client: ClientRef,
    api_key: Annotated[
        str | None, api_key_option("AGENCY_CRM_API_KEY", what="The Pipedrive API token")
    ] = None,
    api_base_url: ApiBaseUrl = None,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    connect_with_key(
        "pipedrive", client, api_key, api_base_url, database_url, http_timeout, as_json
    )


@connect_app.command(
    "close",
    cls=Command,
    help="Connect a client's Close with an API key.\n\n" + KEY_CONNECT_HELP,
    epilog=examples(
        "agency-crm crm connect close --client Acme --api-key -   # the key on stdin",
        "AGENCY_CRM_API_KEY=sbx_demo agency-crm crm connect close --client Acme"
        " --api-base-url http://127.0.0.1:8703   # the sandbox",
    ),
)
def connect_close(
    client: ClientRef,
    api_key: Annotated[
        str | None, api_key_option("AGENCY_CRM_API_KEY", what="The Close API key")
    ] = None,
    api_base_url: ApiBaseUrl = None,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    connect_with_key("close", client, api_key, api_base_url, database_url, http_timeout, as_json)


@connect_app.command(
    "hubspot",
    cls=Command,
    epilog=examples(
        "agency-crm crm connect hubspot --client Acme          # opens the consent page",
        "agency-crm crm connect hubspot --client Acme --no-browser --port 8765",
        "agency-crm crm connect hubspot --client Acme --redirect-uri"
        " https://crm.example.com/api/v1/crm/callback/hubspot",
        "agency-crm crm connect hubspot --client Acme --private-app-token -   # on stdin",
    ),
)
def connect_hubspot(
    client: ClientRef,
    private_app_token: Annotated[
        str | None,
        api_key_option(
            "AGENCY_CRM_HUBSPOT_PRIVATE_APP_TOKEN",
            "--private-app-token",
            "Connect with this private-app token instead of the consent page",
        ),
    ] = None,
    api_base_url: ApiBaseUrl = None,
    redirect_uri: Annotated[
        str | None,
        typer.Option(
            "--redirect-uri",
            metavar="URL",
            envvar="AGENCY_CRM_HUBSPOT_REDIRECT_URI",
            show_envvar=True,
            help="The HTTP API's callback (…/api/v1/crm/callback/hubspot): HubSpot sends the "
            "browser there, the API finishes the connection, and this command waits for it. "
            "Without it (or empty), the browser comes back to this machine.",
        ),
    ] = None,
    port: Annotated[
        int,
        bounded(
            "--port",
            "PORT",
            0,
            65535,
            help="Loopback port the browser comes back to, http://127.0.0.1:PORT/callback; "
            "0 picks a free one. The HubSpot app must allow that redirect URL",
        ),
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL; do not open a browser.")
    ] = False,
    timeout: Annotated[
        float,
        bounded(
            "--timeout",
            "SECONDS",
            1,
            600,
            help="How long to wait for the consent (the flow expires after ten minutes)",
        ),
    ] = 600.0,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """Connect a client's HubSpot: through HubSpot's consent page, or with a private-app token.

    The consent page (OAuth): the command prints the authorisation URL and opens it in a
    browser (unless --no-browser). Once you approve, HubSpot sends the browser back to
    http://127.0.0.1:PORT/callback, where this command listens (as `gh auth login` does): it
    exchanges the code for tokens, saves them encrypted and answers the browser. A browser on
    another machine cannot reach that address: then give --redirect-uri, the HTTP API's
    callback, and this command waits until the API has connected the client. The agency's
    HubSpot app comes from AGENCY_CRM_HUBSPOT_CLIENT_ID and AGENCY_CRM_HUBSPOT_CLIENT_SECRET
    (the sandbox's: sbx-client and sbx-secret).

    A private-app token (--private-app-token) needs no consent page and no refresh: it is
    tested against HubSpot and saved encrypted only when it works.

    Either way HubSpot is made ready for duplicate-proof pushing (a unique agency_crm_key
    property on contacts and deals), the default pipeline, stage and owner are proposed, and
    the client's history is queued for `agency-crm push drain`. --json prints the config, the
    proposed settings and what was queued (with --redirect-uri: the config alone, the API did
    the rest); the URL and the progress go to stderr.
    """
    require_key_ring()
    if private_app_token is not None:
        connect_with_key(
            "hubspot",
            client,
            private_app_token,
            api_base_url,
            database_url,
            http_timeout,
            as_json,
            flag="--private-app-token",
            what="private-app token",
        )
        return
    oauth_app_or_fail()
    where = target(database_url, client)
    if redirect_uri:
        wait_for_api(where, api_base_url, redirect_uri, no_browser, timeout, as_json)
    else:
        loopback(where, api_base_url, port, no_browser, timeout, http_timeout, as_json)


def oauth_app_or_fail() -> None:
    missing = [
        name
        for name in ("AGENCY_CRM_HUBSPOT_CLIENT_ID", "AGENCY_CRM_HUBSPOT_CLIENT_SECRET")
        if not os.environ.get(name)
    ]
    if missing:
        raise AgencyCrmError(
            f"the consent page needs the agency's HubSpot app: {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set",
            hint="set them to the app's client id and secret (the sandbox's: sbx-client, "
            "sbx-secret), or connect with --private-app-token -",
        )


def say(text: str) -> None:
    typer.echo(text, err=True)


def open_browser(url: str, no_browser: bool) -> None:
    """Open the URL where a graphical browser can (not a text browser taking the terminal)."""
    if no_browser:
        return
    graphical = sys.platform in ("darwin", "win32") or any(
        os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    )
    if not graphical:
        return
    import webbrowser

    try:
        if webbrowser.open(url):
            say("(opened in your browser)")
    except webbrowser.Error:
        pass


class Waiting:
    """A progress line while waiting for the browser: a spinner with the seconds left on a
    terminal, one line otherwise."""

    def __init__(self, what: str, timeout: float) -> None:
        self.what = what
        self.deadline = time.monotonic() + timeout
        self.status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self.status = Console(stderr=True).status(self.text())
            self.status.start()
        else:
            say(f"waiting up to {timeout:.0f} s for {what}")

    def text(self) -> str:
        return f"waiting for {self.what}: {self.left():.0f} s left (Ctrl-C to stop)"

    def left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def tick(self) -> bool:
        """Update the line; False once the time is up."""
        if self.status is not None:
            self.status.update(self.text())
        return self.left() > 0

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def state_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["state"][0]


def loopback(
    where: Target,
    api_base_url: str | None,
    port: int,
    no_browser: bool,
    timeout: float,
    http_timeout: float,
    as_json: bool,
) -> None:
    """The OAuth flow with the browser coming back to a listener on this machine."""
    from agency_crm.cli.loopback import Listener

    try:
        listener = Listener(port)
    except OSError as exc:
        fail(
            f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc} (hint: choose another "
            "--port, or 0 for a free one)"
        )
    with listener:
        result = asyncio.run(
            oauth_loopback(where, listener, api_base_url, no_browser, timeout, http_timeout)
        )
    if as_json:
        emit_json(result)
    else:
        print_connected(result, where)


async def oauth_loopback(
    where: Target,
    listener: Listener,
    api_base_url: str | None,
    no_browser: bool,
    timeout: float,
    http_timeout: float,
) -> models.ConnectResult:
    from agency_crm.cli.loopback import Outcome
    from agency_crm.service.errors import ServiceError

    async with service(where.dsn, http_timeout) as crm:
        started = await crm.start_hubspot(
            where.client_id, api_base_url, redirect_uri=listener.redirect_uri, trusted=True
        )
        url = started.authorization_url
        listener.expect(state_of(url))
        say(f"Open this URL in a browser on this machine to connect {where} to HubSpot:")
        say(f"  {url}")
        open_browser(url, no_browser)
        waiting = Waiting(f"HubSpot to send the browser back to {listener.redirect_uri}", timeout)
        try:
            while (back := listener.received()) is None:
                if not waiting.tick():
                    raise AgencyCrmError(
                        f"no answer from the browser within {timeout:.0f} s: nothing was connected",
                        hint="run the command again and open the URL it prints in a browser "
                        "on this machine; for a browser elsewhere, give --redirect-uri (the "
                        "HTTP API's callback)",
                    )
                await asyncio.sleep(0.1)
        finally:
            waiting.stop()
        say("the browser is back; connecting HubSpot")
        try:
            result = await crm.finish_hubspot(
                code=back.code,
                state=back.state,
                error=back.error,
                error_description=back.error_description,
                client_id=where.client_id,
            )
        except ServiceError as exc:
            listener.answer(Outcome(False, "HubSpot was not connected", exc.one_line()))
            raise
        except BaseException:
            listener.answer(
                Outcome(False, "HubSpot was not connected", "agency-crm failed; see the terminal.")
            )
            raise
        portal = result.config.hubspot_portal_id
        listener.answer(
            Outcome(
                True,
                "HubSpot connected",
                f"{where.name} is connected to HubSpot"
                + (f" (portal {portal})" if portal else "")
                + ".",
            )
        )
        return result


def wait_for_api(
    where: Target,
    api_base_url: str | None,
    redirect_uri: str,
    no_browser: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """The OAuth flow with the HTTP API's callback finishing it: wait until it has."""
    from agency_crm.queries import SERVICE
    from agency_crm.service.crm import digest
    from agency_crm.service.errors import NotFound

    async def main() -> models.CrmConfig:
        async with service(where.dsn) as crm:
            started = await crm.start_hubspot(
                where.client_id, api_base_url, redirect_uri=redirect_uri, trusted=True
            )
            url = started.authorization_url
            state_hash = digest(state_of(url))
            say(f"Open this URL in a browser to connect {where} to HubSpot:")
            say(f"  {url}")
            say(f"HubSpot sends the browser to {redirect_uri}, which finishes the connection.")
            open_browser(url, no_browser)
            waiting = Waiting("the HTTP API to connect HubSpot", timeout)
            used_at: datetime | None = None
            seen_used = 0.0
            try:
                while waiting.tick():
                    async with crm.pool.connection() as conn:
                        cur = await conn.execute(SERVICE["oauth_state"], {"state_hash": state_hash})
                        row = await cur.fetchone()
                    used_at = row[0] if row else None
                    if used_at is not None:
                        seen_used = seen_used or time.monotonic()
                        try:
                            config = await crm.config(where.client_id)
                        except NotFound:
                            config = None
                        if (
                            config is not None
                            and config.crm_type == "hubspot"
                            and config.is_active
                            and config.connection_status == "connected"
                            and config.credentials.oauth_access_token
                            and config.updated_at >= used_at
                        ):
                            return config
                        if time.monotonic() - seen_used > 60:
                            raise AgencyCrmError(
                                "the HTTP API took the consent but did not connect HubSpot "
                                "(denied on the consent page, or the code exchange failed)",
                                hint=f"agency-crm crm logs --client {where.client_id} shows the "
                                "CRM calls; the API's log says more; start again",
                            )
                    await asyncio.sleep(1.0)
            finally:
                waiting.stop()
            raise AgencyCrmError(
                f"HubSpot was not connected within {timeout:.0f} s"
                + ("" if used_at else " (the HTTP API's callback was not reached)"),
                hint=f"check that {redirect_uri} is the API's callback and that the API runs; "
                "start again",
            )

    config = asyncio.run(main())
    if as_json:
        typer.echo(json.dumps({"config": config.model_dump(mode="json")}))
    else:
        portal = f" (portal {config.hubspot_portal_id})" if config.hubspot_portal_id else ""
        typer.echo(f"connected {where} to HubSpot{portal} through the HTTP API")
        settings = ", ".join(
            f"{k.removesuffix('_id')} {show(getattr(config, k))}" for k in SETTINGS
        )
        typer.echo(f"new deals go to {settings}; change with `agency-crm crm config set`")


# ----------------------------------------------------------------------------- config


@config_app.command(
    "show",
    cls=Command,
    epilog=examples(
        "agency-crm crm config show --client Acme",
        "agency-crm crm config show --client 6f1c0e2a-... --json",
    ),
)
def config_show(
    client: ClientRef, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """The client's CRM config: the CRM, its status, where new deals go (pipeline, stage,
    owner, stage map), which credentials are set (masked, never shown) and the last error.
    Exit 4 when the client has no CRM config."""
    where = target(database_url, client)
    config = call(where, lambda crm: crm.config(where.client_id))
    if as_json:
        emit_json(config)
    else:
        pairs(config_lines(config, where.name))


def stage_pair(value: str) -> tuple[str, str]:
    ours, sep, theirs = value.partition("=")
    if not sep or not ours.strip():
        raise typer.BadParameter(
            f"{value!r} is not OUR_STAGE=CRM_STAGE_ID (e.g. proposal=presentationscheduled)",
            param_hint="'--stage-map'",
        )
    return ours.strip(), theirs.strip()


@config_app.command(
    "set",
    cls=Command,
    epilog=examples(
        "agency-crm crm config set --client Acme --pipeline-id default --stage-id"
        " appointmentscheduled",
        "agency-crm crm config set --client Acme --owner-id 101 --stage-map"
        " proposal=presentationscheduled --stage-map closed_won=closedwon",
        "agency-crm crm config set --client Acme --clear-owner --stage-map proposal=",
    ),
)
def config_set(
    client: ClientRef,
    pipeline_id: Annotated[
        str | None,
        typer.Option("--pipeline-id", metavar="ID", help="Pipeline new deals go into."),
    ] = None,
    stage_id: Annotated[
        str | None,
        typer.Option(
            "--stage-id", metavar="ID", help="Stage new deals start in (of that pipeline)."
        ),
    ] = None,
    owner_id: Annotated[
        str | None,
        typer.Option("--owner-id", metavar="ID", help="CRM user who owns new deals."),
    ] = None,
    clear_owner: Annotated[
        bool,
        typer.Option("--clear-owner", help="No owner: the CRM's default for new deals."),
    ] = False,
    stage_map: Annotated[
        list[str] | None,
        typer.Option(
            "--stage-map",
            metavar="OUR=THEIRS",
            help="Map one of our deal stages (qualification ... contract_sent, closed_won, "
            "closed_lost) to a stage id of the pipeline; `OUR=` removes it. Repeat for "
            "several; the others are kept.",
        ),
    ] = None,
    clear_stage_map: Annotated[
        bool,
        typer.Option("--clear-stage-map", help="Start the stage map empty (before --stage-map)."),
    ] = False,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """Change where the client's new deals go: pipeline, stage, owner and stage map.

    Each id is checked against the CRM first (`agency-crm crm pipelines`, `stages` and `users`
    list them): one it does not know is refused, naming the option, and nothing is saved
    (exit 2). Prints the config as it is now.
    """
    from agency_crm.service.models import config_update

    if owner_id is not None and clear_owner:
        raise typer.BadParameter("give --owner-id or --clear-owner, not both")
    entries = [stage_pair(v) for v in stage_map or []]
    changes: dict[str, Any] = {}
    if pipeline_id is not None:
        changes["pipeline_id"] = pipeline_id
    if stage_id is not None:
        changes["stage_id"] = stage_id
    if owner_id is not None or clear_owner:
        changes["owner_id"] = owner_id
    if not changes and not entries and not clear_stage_map:
        raise typer.BadParameter(
            "nothing to change: give --pipeline-id, --stage-id, --owner-id, --clear-owner, "
            "--stage-map or --clear-stage-map"
        )
    where = target(database_url, client)

    async def work(crm: CrmService) -> models.CrmConfig:
        if entries or clear_stage_map:
            current = {} if clear_stage_map else dict((await crm.config(where.client_id)).stage_map)
            for ours, theirs in entries:
                if theirs:
                    current[ours] = theirs
                else:
                    current.pop(ours, None)
            changes["stage_map"] = current
        return await crm.update_config(where.client_id, config_update(changes))

    config = call(where, work, http_timeout)
    if as_json:
        emit_json(config)
    else:
        typer.echo(f"updated the {VENDOR[config.crm_type]} config of {where}")
        pairs(config_lines(config, where.name))


# ----------------------------------------------------------------------------- test, lists


@app.command(
    "test",
    cls=Command,
    epilog=examples(
        "agency-crm crm test --client Acme", "agency-crm crm test --client Acme --json"
    ),
)
def test_command(
    client: ClientRef,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """Test the client's CRM connection: the credentials work, and the pipeline, stage, owner
    and stage map of its config exist in the CRM.

    The outcome is recorded on the config (connected, or error with the problems). Exit 3 when
    there is a problem; 6 when the CRM could not be asked (nothing recorded).
    """
    where = target(database_url, client)
    result = call(where, lambda crm: crm.test(where.client_id), http_timeout)
    if as_json:
        emit_json(result)
    elif result.ok:
        typer.echo(
            f"{where}: connected; {result.pipelines} pipeline(s), {result.users} user(s); "
            "pipeline, stage, owner and stage map found"
        )
    else:
        typer.echo(f"{where}: {result.connection_status}: " + "; ".join(result.problems))
    if not result.ok:
        raise typer.Exit(EXIT_PROBLEMS)


def in_config(config: models.CrmConfig | None, kind: str, item_id: str) -> str:
    """What the config uses an id of the CRM for (a pipeline, stage or user)."""
    if config is None:
        return ""
    uses = []
    if kind == "pipeline" and config.pipeline_id == item_id:
        uses.append("new deals")
    if kind == "stage":
        if config.stage_id == item_id:
            uses.append("new deals")
        mapped = sorted(k for k, v in config.stage_map.items() if v == item_id)
        if mapped:
            uses.append("stage map: " + ", ".join(mapped))
    if kind == "user" and config.owner_id == item_id:
        uses.append("owner of new deals")
    return "; ".join(uses)


@app.command(
    "pipelines",
    cls=Command,
    epilog=examples(
        "agency-crm crm pipelines --client Acme",
        "agency-crm crm pipelines --client Acme --json | jq '.[].id'",
    ),
)
def pipelines_command(
    client: ClientRef,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """The deal pipelines of the client's CRM, with their stages (read from the CRM now), and
    which one new deals go into."""
    where = target(database_url, client)

    async def work(crm: CrmService) -> tuple[list[models.Pipeline], models.CrmConfig]:
        found = await crm.pipelines(where.client_id)
        return found, await crm.config(where.client_id)

    found, config = call(where, work, http_timeout)
    if as_json:
        emit_json(found)
        return
    if not found:
        typer.echo("the CRM has no deal pipeline")
        return
    table(
        ("id", "label", "stages", "in config"),
        [(p.id, p.label, str(len(p.stages)), in_config(config, "pipeline", p.id)) for p in found],
    )


@app.command(
    "stages",
    cls=Command,
    epilog=examples(
        "agency-crm crm stages default --client Acme",
        "agency-crm crm stages 1 --client Acme --json",
    ),
)
def stages_command(
    pipeline: Annotated[
        str, typer.Argument(metavar="PIPELINE", help="A pipeline id (`crm pipelines`).")
    ],
    client: ClientRef,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """The stages of one pipeline of the client's CRM, in order, and which the config uses
    (new deals, stage map). Exit 4 when the CRM has no such pipeline."""
    where = target(database_url, client)

    async def work(crm: CrmService) -> tuple[list[models.Stage], models.CrmConfig]:
        found = await crm.stages(where.client_id, pipeline)
        return found, await crm.config(where.client_id)

    found, config = call(where, work, http_timeout)
    if as_json:
        emit_json(found)
        return
    same = config.pipeline_id == pipeline
    table(
        ("id", "label", "in config"),
        [(s.id, s.label, in_config(config if same else None, "stage", s.id)) for s in found],
    )


@app.command(
    "users",
    cls=Command,
    epilog=examples(
        "agency-crm crm users --client Acme", "agency-crm crm users --client Acme --json"
    ),
)
def users_command(
    client: ClientRef,
    database_url: DatabaseUrl = None,
    http_timeout: HttpTimeout = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """The users of the client's CRM who can own deals (for --owner-id), read from the CRM now."""
    where = target(database_url, client)

    async def work(crm: CrmService) -> tuple[list[models.User], models.CrmConfig]:
        found = await crm.users(where.client_id)
        return found, await crm.config(where.client_id)

    found, config = call(where, work, http_timeout)
    if as_json:
        emit_json(found)
        return
    table(
        ("id", "name", "in config"),
        [(u.id, u.name, in_config(config, "user", u.id)) for u in found],
    )


@app.command(
    "logs",
    cls=Command,
    epilog=examples(
        "agency-crm crm logs --client Acme --status failed",
        "agency-crm crm logs --client Acme --since 2026-01-01 --operation create_deal --json",
        "agency-crm crm logs --client Acme --limit 20 --offset 20   # the next page",
    ),
)
def logs_command(
    client: ClientRef,
    status: Annotated[
        LogStatus | None,
        typer.Option("--status", metavar=choices(LogStatus), help="Only calls that ended so."),
    ] = None,
    operation: Annotated[
        str | None,
        typer.Option(
            "--operation", metavar="NAME", help="Only this call, e.g. create_deal, get_pipelines."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="DATE|TIME", help="Calls from then on (ISO 8601)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="DATE|TIME", help="Calls before then (ISO 8601)."),
    ] = None,
    limit: Annotated[int, bounded("--limit", "N", 1, 1000, help="At most N calls")] = 50,
    offset: Annotated[int, bounded("--offset", "N", 0, help="Skip the N newest calls")] = 0,
    payloads: Annotated[
        bool, typer.Option("--payloads", help="Include the (redacted) request and response.")
    ] = False,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """The client's CRM calls (pushes, connecting, tests), newest first, one page at a time.

    Payloads were redacted when they were written: no secret is in them. Without the zone, a
    --since/--until time is this machine's. --json prints the page: items, limit, offset and
    next_offset (null on the last page).
    """
    start, end = parse_when(since, "--since"), parse_when(until, "--until")
    where = target(database_url, client)
    found = call(
        where,
        lambda crm: crm.logs(
            where.client_id,
            status=status.value if status else None,
            operation=operation,
            since=start,
            until=end,
            limit=limit,
            offset=offset,
        ),
    )
    if as_json:
        if not payloads:
            items = [
                i.model_dump(mode="json", exclude={"request_payload", "response_payload"})
                for i in found.items
            ]
            typer.echo(json.dumps({**found.model_dump(mode="json"), "items": items}))
        else:
            emit_json(found)
        return
    from agency_crm.cli.push import log_line

    if not found.items:
        typer.echo(
            "no CRM calls logged" + (" that match" if status or operation or start or end else "")
        )
    for item in found.items:
        row = item.model_dump()
        typer.echo(log_line(row))
        if payloads:
            typer.echo(f"  request:  {json.dumps(row['request_payload'])}")
            typer.echo(f"  response: {json.dumps(row['response_payload'])}")
    if found.next_offset is not None:
        typer.echo(f"more: --offset {found.next_offset}")


# ----------------------------------------------------------------------------- disconnect


@app.command(
    "disconnect",
    cls=Command,
    epilog=examples(
        "agency-crm crm disconnect --client Acme",
        "agency-crm crm disconnect --client 6f1c0e2a-... --json",
    ),
)
def disconnect_command(
    client: ClientRef, database_url: DatabaseUrl = None, as_json: JsonOutput = False
) -> None:
    """Disconnect the client's CRM, at once (nothing is asked).

    The config becomes inactive and disconnected and forgets its credentials; the client's
    pending and held pushes are skipped (their status becomes skipped, with the reason). A
    push in flight finishes. Connecting again later starts clean. Exit 4 when the client has no
    CRM config.
    """
    where = target(database_url, client)
    result = call(where, lambda crm: crm.disconnect(where.client_id))
    if as_json:
        emit_json(result)
    else:
        typer.echo(
            f"disconnected the {VENDOR[result.config.crm_type]} of {where}: "
            f"{result.skipped_pushes} pending or held push(es) skipped"
        )
