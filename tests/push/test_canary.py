"""Canary secrets through a full push run (issue 12: no secret anywhere else).

Three clients, each with CRM secrets of its own that are canaries: a HubSpot OAuth access and
refresh token, a Pipedrive API key and a Close API key, each a distinctive prefix, random
digits and characters that URL-encoding changes. The fake CRMs take them as their
credentials. Against a throwaway cluster with ``log_statement = 'all'``, one scenario runs
what a deployment does:

1. bookings drained by the real CLI (``agency-crm push drain`` in a subprocess, with Python's
   logging at DEBUG on its stderr), through a 503 and an answer that is not JSON;
2. deal changes drained in-process with every Python logger at DEBUG (httpx and httpcore
   included): a HubSpot token refresh; a 500, a malformed answer and a 502 on updates; a 401
   that holds the Close client until its config is fixed; a validation error (400) that fails
   a push. The fakes echo credentials in some answers, as some vendors do: raw, URL-encoded,
   as HTTP basic credentials, and where a message is cut to length;
3. ``push check`` in-process (a 401, a 503 and a config problem among the answers) and by the
   CLI, then ``push status`` and ``push logs --payloads`` by the CLI.

Afterwards every secret (the canaries, the access token the refresh brought, the OAuth app's
secret), in every form it travels in (raw; ``quote``, ``quote(safe='')`` and ``quote_plus``;
base64 and base64url of ``value`` and of ``value:``, Close's basic credentials; and the
canary's core, which shows a copy cut short) appears 0 times in the push log, the queue, the
configs' status columns, the server log, the captured Python log records, the CLI output and
a ``pg_dump`` of the database. ``test_the_run_is_not_vacuous`` proves each part of the
scenario happened, and that the places searched hold what they must.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from psycopg import conninfo, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from agency_crm import schema
from agency_crm.dev.cluster import TempCluster
from agency_crm.push.check import CheckResult, check
from agency_crm.push.redact import REDACTED
from agency_crm.push.settings import Settings
from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import Make, Row, unseal
from tests.push.conftest import OUR_OPEN_STAGES, run_drain, stage_ids

# Every statement logged with its bind parameters; a line prefix with spaces (the settings
# reach postgres through pg_ctl's shell: their quoting is exercised too).
SERVER_SETTINGS = {"log_statement": "all", "log_line_prefix": "%m [%p] %q%u@%d "}
# The sandbox's HubSpot OAuth app (its secret is a secret too: a refresh sends it).
APP_ID, APP_SECRET = "sbx-client", "sbx-secret"
SECRET_COLUMNS = ("api_key", "oauth_access_token", "oauth_refresh_token")
# The CLI as a process with Python's logging at DEBUG on its stderr: whatever any logger of
# the run (ours, httpx, httpcore, psycopg) would print is in the CLI output searched.
CLI = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,"
    " format='%(levelname)s %(name)s: %(message)s')\n"
    "from agency_crm.cli import main\n"
    "sys.argv[0] = 'agency-crm'\n"
    "main()\n"
)


# --------------------------------------------------------------------------- the needles


@dataclass(frozen=True)
class Secret:
    """A secret the run handles, and the forms it may travel or be stored in."""

    name: str
    value: str
    # A canary's distinctive start (no encoding changes it): a copy cut short shows.
    core: str | None = None

    def forms(self) -> dict[str, str]:
        v = self.value
        found = {
            "raw": v,
            "quote": quote(v),
            "quote(safe='')": quote(v, safe=""),
            "quote_plus": quote_plus(v),
        }
        for label, raw in (("value", v), ("value:", f"{v}:")):
            data = raw.encode()
            # Unpadded: a prefix of the padded form, so this finds both.
            found[f"base64({label})"] = base64.b64encode(data).decode().rstrip("=")
            found[f"base64url({label})"] = base64.urlsafe_b64encode(data).decode().rstrip("=")
        if self.core:
            found["core"] = self.core
        return found


def canary(tag: str) -> Secret:
    """A fresh canary, ``canary-<tag>-<12 hex> +/=??~~??~~<12 hex>``: a space, '+', '/' and
    '=' make each URL-encoding differ from the others, '?' and '~' its base64 from its
    base64url. Its core is the prefix and 8 random digits."""
    core = f"canary-{tag}-{secrets.token_hex(4)}"
    return Secret(tag, f"{core}{secrets.token_hex(2)} +/=??~~??~~{secrets.token_hex(6)}", core)


def echo(secret: str, at: int, size: int) -> str:
    """An error text of ``size`` characters echoing ``secret`` at offset ``at``."""
    filler = "the request could not be processed as sent; " * (size // 40 + 1)
    return (filler[:at] + secret + " " + filler)[:size]


def leaks(text: str, watched: Iterable[Secret]) -> list[str]:
    """Where any form of any secret occurs in ``text``, with some context."""
    found = []
    for secret in watched:
        for form, needle in secret.forms().items():
            at = text.find(needle)
            if at >= 0:
                context = text[max(0, at - 100) : at + len(needle) + 100]
                found.append(f"{secret.name} as {form} x{text.count(needle)}: ...{context!r}...")
    return found


def test_the_needles_find_every_form() -> None:
    """The search itself works: each form of a canary, planted in text, is found."""
    secret = canary("selftest")
    forms = secret.forms()
    for form, needle in forms.items():
        assert leaks(f"before {needle} after", [secret]), form
    basic = "Basic " + base64.b64encode(f"{secret.value}:".encode()).decode()
    assert leaks(json.dumps({"headers": {"Authorization": basic}}), [secret])
    assert secret.core is not None
    assert leaks(f"'{secret.value[: len(secret.core) + 1]}'", [secret]), "a copy cut short"
    assert not leaks("nothing here", [secret])
    assert len({forms[f] for f in ("raw", "quote", "quote(safe='')", "quote_plus")}) == 4
    assert forms["base64(value)"] != forms["base64url(value)"]
    assert forms["base64(value:)"] != forms["base64url(value:)"]


# --------------------------------------------------------------------------- capture


class _Records(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__(logging.DEBUG)
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_log_record(records: list[logging.LogRecord]) -> Iterator[None]:
    """Collect every record of every logger at DEBUG, as caplog would with each logger's
    level at DEBUG (httpx and httpcore included); the levels are restored afterwards."""
    handler = _Records(records)
    root = logging.getLogger()
    named = [logging.getLogger(n) for n in ("httpx", "httpcore", "psycopg", "agency_crm")]
    known = [lg for lg in root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    loggers = {id(lg): lg for lg in (root, *named, *known)}.values()
    saved = [(lg, lg.level, lg.disabled) for lg in loggers]
    isolated = [lg for lg in loggers if not lg.propagate]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
    for lg in (root, *isolated):
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in (root, *isolated):
            lg.removeHandler(handler)
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled


def record_text(record: logging.LogRecord) -> str:
    """All a log record holds: its line as formatted (exception and stack included) and
    every attribute (message template, arguments, extras)."""
    formatted = logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)
    return f"{formatted}\n{vars(record)!r}"


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``agency-crm ARGS`` as a process (Python's logging at DEBUG on its stderr)."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


# --------------------------------------------------------------------------- the scenario


@dataclass
class Client:
    """One client, its CRM config and its account in a fake CRM."""

    vendor: str
    row: Row
    config: Row
    token: str  # the credential the fake knows the account by
    leads: list[Row] = field(default_factory=list)
    meetings: list[Row] = field(default_factory=list)
    deal: Row | None = None


@dataclass
class Run:
    """What the scenario did, and where to look for the secrets."""

    url: str
    conn: psycopg.Connection[Any]
    cluster: TempCluster
    sandbox: Sandbox
    clients: dict[str, Client]
    canaries: dict[str, Secret]
    secrets: list[Secret] = field(default_factory=list)
    cli_runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    records: list[logging.LogRecord] = field(default_factory=list)
    # The queue and the configs' status columns after each drain and check (a later one
    # overwrites their error columns).
    snapshots: dict[str, str] = field(default_factory=dict)
    refreshes_before_phase_2: int = -1
    checks: list[CheckResult] = field(default_factory=list)

    def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        return self.conn.cursor(row_factory=dict_row).execute(query, params).fetchall()

    def fault(self, vendor: str, **rule: Any) -> None:
        """A fault rule for the client's account only."""
        self.sandbox.admin(vendor).add_faults([{"token": self.clients[vendor].token, **rule}])

    def queue(self, vendor: str) -> list[str]:
        rows = self.rows(
            "SELECT status FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id",
            self.clients[vendor].row["id"],
        )
        return [r["status"] for r in rows]

    def config(self, vendor: str) -> dict[str, Any]:
        [row] = self.rows(
            "SELECT * FROM crm.client_crm_configs WHERE id = %s",
            self.clients[vendor].config["id"],
        )
        return row

    def snapshot(self, after: str) -> None:
        self.snapshots[f"queue after {after}"] = table_text(self.conn, "crm_push_queue")
        self.snapshots[f"configs after {after}"] = table_text(
            self.conn, "client_crm_configs", without=SECRET_COLUMNS
        )


def table_text(conn: psycopg.Connection[Any], table: str, *, without: Iterable[str] = ()) -> str:
    """Every row of crm.<table> as JSON, every column but ``without``, one row a line."""
    row = sql.SQL("to_jsonb(t)")
    for column in without:
        row = sql.SQL("{} - {}").format(row, sql.Literal(column))
    query = sql.SQL("SELECT ({})::text FROM crm.{} AS t").format(row, sql.Identifier(table))
    rows = conn.execute(query).fetchall()
    assert rows, f"crm.{table} is empty: nothing to search"
    return "\n".join(r[0] for r in rows)


def connect(make: Make, sandbox: Sandbox, vendor: str, canaries: dict[str, Secret]) -> Client:
    """A client whose live config holds canaries, and its fake CRM account taking them.
    The in-process admin API: no admin request carries a canary over HTTP (httpx would log
    its URL)."""
    app = sandbox.admin(vendor)
    row = make.client(name=f"Canary {vendor}")
    values: dict[str, Any] = {"crm_type": vendor, "api_base_url": sandbox.urls[vendor]}
    if vendor == "hubspot":
        token, refresh = canaries["hs-access"].value, canaries["hs-refresh"].value
        account = app.create_account(token, expires_in=3600, refresh_token=refresh)
        values.update(
            api_key=None,
            oauth_access_token=token,
            oauth_refresh_token=refresh,
            # Far from expiry: the first run authenticates with the canary access token.
            oauth_expires_at=datetime.now(UTC) + timedelta(hours=1),
        )
    else:
        token = canaries["pd" if vendor == "pipedrive" else "close"].value
        account = app.create_account(token)
        values["api_key"] = token
    pipeline_id, first_stage, open_ids, closed = stage_ids(vendor, account)
    stage_map = {
        ours: open_ids[min(i, len(open_ids) - 1)] for i, ours in enumerate(OUR_OPEN_STAGES)
    }
    if vendor == "close":
        stage_map.update(closed_won=closed["won"], closed_lost=closed["lost"])
    values.update(
        pipeline_id=pipeline_id,
        stage_id=first_stage,
        owner_id=str(account["users"][0]["id"]),
        stage_map=Jsonb(stage_map),
        connection_status="connected",
    )
    return Client(vendor, row, make.crm_config(row, **values), token)


def new_database(cluster: TempCluster) -> str:
    """A database on the cluster, with the schema as `db upgrade` installs it."""
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE canary")
    url = conninfo.make_conninfo(cluster.url, dbname="canary")
    with psycopg.connect(url) as conn:
        schema.upgrade(conn)
    return url


def cli_env(url: str) -> dict[str, str]:
    """This environment (its key ring included) without libpq's settings, plus the database
    and the HubSpot app."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.update(
        AGENCY_CRM_DATABASE_URL=url,
        AGENCY_CRM_HUBSPOT_CLIENT_ID=APP_ID,
        AGENCY_CRM_HUBSPOT_CLIENT_SECRET=APP_SECRET,
    )
    return env


def phase_1_bookings_by_the_cli(run: Run, env: dict[str, str]) -> None:
    """Two bookings per client, drained by `agency-crm push drain`: Pipedrive's first deal
    create answers 503, HubSpot's first deal upsert a body that is not JSON (both retried)."""
    make = Make(run.conn)
    for client in run.clients.values():
        for _ in range(2):
            lead = make.lead(client.row)
            client.leads.append(lead)
            client.meetings.append(make.meeting(lead))
    run.fault("pipedrive", method="POST", path="/api/v2/deals", kind="status", status=503)
    run.fault("hubspot", method="POST", path="/crm/v3/objects/deals/batch/upsert", kind="malformed")
    planned = run.cli_runs["push drain --dry-run"] = cli("push", "drain", "--dry-run", env=env)
    assert planned.returncode == 0 and len(planned.stdout.splitlines()) == 6, planned.stderr
    drained = cli(
        "push", "drain", "--progress", "log", "--http-timeout", "2", "--search-lag", "0.2", env=env
    )
    run.cli_runs["push drain"] = drained
    assert drained.returncode == 0, drained.stderr[-3000:]
    for vendor in run.clients:
        assert run.queue(vendor) == ["done", "done"], (vendor, drained.stderr[-3000:])
    run.snapshot("the CLI drain")
    run.refreshes_before_phase_2 = len(
        run.rows("SELECT id FROM crm.crm_push_log WHERE operation = 'refresh_token'")
    )


def phase_2_deal_changes_in_process(run: Run) -> None:
    """Deals made from each client's first booking, moved, won or refused, drained
    in-process."""
    make = Make(run.conn)
    hs, pd, cl = (run.clients[v] for v in ("hubspot", "pipedrive", "close"))
    # Time passes: the HubSpot access token nears its expiry, so it is refreshed.
    run.conn.execute(
        "UPDATE crm.client_crm_configs SET oauth_expires_at = now() + interval '1 minute'"
        " WHERE id = %s",
        (hs.config["id"],),
    )
    for client in run.clients.values():
        lead, meeting = client.leads[0], client.meetings[0]
        client.deal = make.deal(lead, meeting_id=meeting["id"], name="Pilot", value=1500)
        run.conn.execute(
            "UPDATE crm.deals SET stage = 'proposal', probability = 40, value = 2500 WHERE id = %s",
            (client.deal["id"],),
        )
    # Updates that fail and are retried, the answers echoing credentials: Pipedrive its key
    # just before the 500th character of its error message (where a message is cut), HubSpot
    # the requests it forwarded, URL-encoded: a refresh with the app's secret, and a token's
    # own URL.
    deal = "/api/v2/deals/{id}"
    pd_key, hs_refresh = run.canaries["pd"].value, run.canaries["hs-refresh"].value
    hs_access = run.canaries["hs-access"].value
    cut = echo(pd_key, 480, 900)
    run.fault("pipedrive", method="PATCH", path=deal, kind="status", status=500, message=cut)
    # ... and then a page that is not JSON, echoing it just before character 200.
    page = "<html>" + echo(pd_key, 169, 400)
    assert page.index(pd_key) == 175
    run.fault("pipedrive", method="PATCH", path=deal, kind="malformed", message=page)
    forwarded = (
        f"upstream refused grant_type=refresh_token&refresh_token={quote_plus(hs_refresh)}"
        f"&client_id={APP_ID}&client_secret={APP_SECRET}; and GET /oauth/v1/access-tokens/"
        f"{quote(hs_access)}"
    )
    run.fault(
        "hubspot",
        method="POST",
        path="/crm/v3/objects/deals/batch/update",
        kind="status",
        status=502,
        message=forwarded,
    )
    # The Close key is refused (401): the client's pushes are held, its config in error.
    run.sandbox.admin("close").set_revoked(cl.token, True)
    run_drain(run.url)
    run.snapshot("the 401")
    assert set(run.queue("close")) == {"done", "held"}, run.queue("close")
    assert run.config("close")["connection_status"] == "error"
    for client in (hs, pd):
        assert set(run.queue(client.vendor)) == {"done"}, run.queue(client.vendor)

    # The agency reconnects Close: the held pushes go out, through an HTML error page that
    # echoes the basic credentials it was sent, the key as an unpadded base64url token, and
    # the key just before character 2000 (where such a page is cut for the audit row).
    run.sandbox.admin("close").set_revoked(cl.token, False)
    key = run.canaries["close"].value
    basic = base64.b64encode(f"{key}:".encode()).decode()
    token = base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")
    head = f"<html><p>Authorization: Basic {basic}</p><p>session {token}</p><p>"
    page = head + echo(key, 1975 - len(head), 2100 - len(head)) + "</p></html>"
    assert page.index(key) == 1975
    opportunity = "/api/v1/opportunity/{id}/"
    run.fault("close", method="PUT", path=opportunity, kind="malformed", message=page)
    run.conn.execute(
        "UPDATE crm.client_crm_configs SET connection_status = 'pending' WHERE id = %s",
        (cl.config["id"],),
    )
    run_drain(run.url)
    run.snapshot("the reconnection")
    assert set(run.queue("close")) == {"done"}, run.queue("close")

    # A validation error: Close refuses a status it does not have (400, not retried). The
    # other deals are won.
    run.conn.execute(
        "UPDATE crm.client_crm_configs"
        " SET stage_map = stage_map || jsonb_build_object('negotiation', 'stat_no_such_status')"
        " WHERE id = %s",
        (cl.config["id"],),
    )
    for client in (hs, pd, cl):
        assert client.deal is not None
        stage = "negotiation" if client is cl else "closed_won"
        run.conn.execute(
            "UPDATE crm.deals SET stage = %s, value = 3000 WHERE id = %s",
            (stage, client.deal["id"]),
        )
    run_drain(run.url)
    run.snapshot("the validation error")
    assert run.queue("close")[-1] == "failed", run.queue("close")
    for client in (hs, pd):
        assert set(run.queue(client.vendor)) == {"done"}, run.queue(client.vendor)


def phase_3_checks(run: Run, env: dict[str, str]) -> None:
    """`push check` in-process (Pipedrive's key refused; HubSpot's owners answering 503 with
    the refreshed access token echoed; the Close stage map naming a status Close lacks),
    then by the CLI; `push status` and `push logs --payloads` print what was recorded."""
    pd, hs = run.clients["pipedrive"], run.clients["hubspot"]
    run.sandbox.admin("pipedrive").set_revoked(pd.token, True)
    stored = run.config("hubspot")["oauth_access_token"]
    refreshed = unseal(hs.row["id"], "oauth_access_token", stored)
    run.fault(
        "hubspot",
        method="GET",
        path="/crm/v3/owners",
        kind="status",
        status=503,
        message=f"owners unavailable for Authorization: Bearer {refreshed}",
    )
    settings = Settings(hubspot_client_id=APP_ID, hubspot_client_secret=APP_SECRET, http_timeout=5)
    run.checks = asyncio.run(check(run.url, None, settings))
    run.snapshot("the in-process check")
    run.sandbox.admin("pipedrive").set_revoked(pd.token, False)
    commands = {
        "push check": ("push", "check", "--http-timeout", "5"),
        "push check --json": ("push", "check", "--json"),
        "push status": ("push", "status"),
        "push logs --payloads": ("push", "logs", "--payloads", "--limit", "10000"),
        "push logs --json": ("push", "logs", "--json", "--payloads", "--limit", "10000"),
    }
    for name, args in commands.items():
        done = run.cli_runs[name] = cli(*args, env=env)
        assert done.returncode in (0, 3), (name, done.stderr[-3000:])  # 3: a check found a problem
    run.snapshot("the CLI check")


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    canaries = {tag: canary(tag) for tag in ("hs-access", "hs-refresh", "pd", "close")}
    with TempCluster(settings=SERVER_SETTINGS) as cluster, Sandbox() as sandbox:
        url = new_database(cluster)
        with psycopg.connect(url, autocommit=True) as conn:
            make = Make(conn)
            clients = {
                v: connect(make, sandbox, v, canaries) for v in ("hubspot", "pipedrive", "close")
            }
            result = Run(url, conn, cluster, sandbox, clients, canaries)
            env = cli_env(url)
            with every_log_record(result.records):
                phase_1_bookings_by_the_cli(result, env)
                phase_2_deal_changes_in_process(result)
                phase_3_checks(result, env)
            stored = result.config("hubspot")["oauth_access_token"]
            refreshed = unseal(clients["hubspot"].row["id"], "oauth_access_token", stored)
            assert refreshed is not None
            result.secrets = [
                *canaries.values(),
                Secret("hs-refreshed-access", refreshed),
                Secret("hubspot-app-secret", APP_SECRET),
            ]
            yield result


# --------------------------------------------------------------------------- where to look


def pg_dump(run: Run) -> str:
    """The database as a backup holds it (the pg_dump beside the cluster's server)."""
    done = subprocess.run(
        [str(run.cluster.bindir / "pg_dump"), "--dbname", run.url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def sink(run: Run, name: str) -> str:
    """The text of one place a secret must never reach."""
    if name == "push log":
        return table_text(run.conn, "crm_push_log")
    if name in ("push queue", "config status columns"):
        kind = "queue" if name == "push queue" else "configs"
        return "\n".join(text for k, text in run.snapshots.items() if k.startswith(kind))
    if name == "server log":
        return run.cluster.log_file.read_text(errors="replace")
    if name == "python logs":
        return "\n".join(record_text(r) for r in run.records)
    if name == "cli output":
        return "\n".join(
            f"$ agency-crm {name}\n{done.stdout}\n{done.stderr}"
            for name, done in run.cli_runs.items()
        )
    if name == "pg_dump":
        return pg_dump(run)
    raise AssertionError(name)


SINKS = [
    "push log",
    "push queue",
    "config status columns",
    "server log",
    "python logs",
    "cli output",
    "pg_dump",
]


@pytest.mark.parametrize("where", SINKS)
def test_no_secret_in_any_form_reaches(run: Run, where: str) -> None:
    text = sink(run, where)
    assert text.strip(), f"{where}: nothing to search"
    found = leaks(text, run.secrets)
    assert found == [], f"{where} holds a secret:\n" + "\n".join(found)


# --------------------------------------------------------------------------- not vacuous


def test_the_run_is_not_vacuous(run: Run) -> None:
    """Every part of the scenario happened, and the searched places hold what they must."""
    conn = run.conn
    hs, pd, cl = (run.clients[v] for v in ("hubspot", "pipedrive", "close"))

    # The server logged every statement with its bind parameters: the runner's claims,
    # finishes and audit rows, and the refreshed tokens as the envelopes they are stored as.
    assert conn.execute("SHOW log_statement").fetchone() == ("all",)
    server_log = sink(run, "server log")
    assert "crm.claim_pushes(" in server_log and "crm.finish_push(" in server_log
    assert "INSERT INTO crm.crm_push_log" in server_log
    assert "oauth_access_token = $1" in server_log and "parameters: $1 = 'acrm:v1:" in server_log

    # The configs hold the canaries, encrypted; the backup holds them as envelopes.
    for client, column, tag in (
        (hs, "oauth_refresh_token", "hs-refresh"),
        (pd, "api_key", "pd"),
        (cl, "api_key", "close"),
    ):
        stored = run.config(client.vendor)[column]
        assert stored.startswith("acrm:v1:") and stored in pg_dump(run)
        assert unseal(client.row["id"], column, stored) == run.canaries[tag].value

    # The fakes took the canaries: each account, found by its canary, holds the two deals
    # the pushes made, and answered them 2xx.
    for client in run.clients.values():
        state = run.sandbox.admin(client.vendor).state(token=client.token)
        ok = sum(n for status, n in state["status_counts"].items() if status.startswith("2"))
        assert ok >= 6, (client.vendor, state["status_counts"])
        deals = state["opportunities" if client.vendor == "close" else "deals"]
        assert len(deals) == 2, (client.vendor, deals)
    # HubSpot's first run used the canary access token (all its pushes done, no refresh);
    # the second refreshed it, once, with the canary refresh token, which the fake took.
    assert run.refreshes_before_phase_2 == 0
    refreshes = run.rows("SELECT * FROM crm.crm_push_log WHERE operation = 'refresh_token'")
    assert [(r["client_id"], r["status"], r["http_status"]) for r in refreshes] == [
        (hs.row["id"], "success", 200)
    ]
    hs_state = run.sandbox.admin("hubspot").state(token=hs.token)
    assert hs_state["requests"].get("POST /oauth/v1/token") == 1
    refreshed = next(s for s in run.secrets if s.name == "hs-refreshed-access")
    assert refreshed.value != hs.token

    # Every fault rule fired, and each fault shows in the push log as it should.
    for vendor in run.clients:
        rules = [rule.to_json() for rule in run.sandbox.admin(vendor).faults]
        assert rules and all(r["fired"] == 1 for r in rules), (vendor, rules)
    log = run.rows(
        "SELECT l.*, c.crm_type FROM crm.crm_push_log AS l"
        " JOIN crm.client_crm_configs AS c ON c.id = l.crm_config_id"
    )
    met = {(r["crm_type"], r["http_status"], r["error_code"]) for r in log}
    for expected in (
        ("pipedrive", 503, "server_error"),
        ("hubspot", 200, "malformed_response"),
        ("hubspot", 502, "server_error"),
        ("pipedrive", 500, "server_error"),
        ("pipedrive", 200, "malformed_response"),
        ("close", 401, "unauthorized"),
        ("close", 200, "malformed_response"),
        ("close", 400, "bad_request"),
        ("pipedrive", 401, "unauthorized"),  # push check
        ("hubspot", 503, "server_error"),  # push check
    ):
        assert expected in met, (expected, sorted(met, key=str))
    # The echoed credentials reached the runner, which masked them.
    masked = {r["crm_type"] for r in log if REDACTED in (r["error_message"] or "")}
    assert masked == {"hubspot", "pipedrive", "close"}, masked
    [failed] = run.rows(
        "SELECT last_error FROM crm.crm_push_queue WHERE client_id = %s AND status = 'failed'",
        cl.row["id"],
    )
    assert failed["last_error"].startswith("400 bad_request")
    assert "Opportunity status does not exist" in failed["last_error"]
    # The error columns the snapshots caught: the hold, and the in-process check's findings.
    configs = sink(run, "config status columns")
    assert "close: 401 unauthorized" in configs and "401 unauthorized" in configs
    assert "stat_no_such_status" in configs

    # The checks found what they should.
    found = {r.crm_type: r for r in run.checks}
    assert not found["pipedrive"].ok and "401" in found["pipedrive"].problems[0]
    assert not found["hubspot"].ok and not found["hubspot"].recorded
    assert REDACTED in found["hubspot"].problems[0]
    assert not found["close"].ok and "stat_no_such_status" in found["close"].problems[0]
    checked = json.loads(run.cli_runs["push check --json"].stdout)
    assert {r["crm_type"]: r["ok"] for r in checked} == {
        "hubspot": True,
        "pipedrive": True,
        "close": False,
    }

    # The CLI drained the bookings (a JSON line per push on stderr, with its own DEBUG log)
    # and printed the checks, the status and the logs with payloads.
    drained = run.cli_runs["push drain"]
    lines = [json.loads(line) for line in drained.stderr.splitlines() if line.startswith("{")]
    assert {e["outcome"] for e in lines if e["event"] == "push"} >= {"done", "retry"}
    assert json.loads(drained.stdout)["done"] == 6
    # push drain's client (aiohttp) logs nothing itself: each CRM call is logged at DEBUG.
    assert "DEBUG agency_crm.push.http: hubspot " in drained.stderr
    assert "Canary close (close): error:" in run.cli_runs["push check"].stdout
    assert "Canary close" in run.cli_runs["push status"].stdout
    assert "refresh_token" in run.cli_runs["push logs --payloads"].stdout
    assert "request:" in run.cli_runs["push logs --payloads"].stdout

    # Python's logging was captured at DEBUG, the HTTP client's included.
    names = {r.name for r in run.records}
    assert "httpx" in names and any(n.startswith("httpcore") for n in names), names
    assert any(r.levelno == logging.DEBUG for r in run.records)
