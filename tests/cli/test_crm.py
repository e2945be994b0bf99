"""`agency-crm crm ...` as an operator runs it: a real process against a committed database and
the CRM sandbox over real HTTP. Connecting with keys good and bad, one CRM per client, the
config and the CRM's catalog, the call log, disconnecting, and HubSpot's consent page driven by
httpx playing the browser (GET the authorisation URL, POST the consent form, follow the
redirect to the command's loopback listener), and once in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
import threading
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm import crypto
from agency_crm.sandbox import Sandbox
from agency_crm.sandbox.hubspot import CLIENT_ID, CLIENT_SECRET
from tests.cli.conftest import Cli, account, admin, one_line, state
from tests.cli.test_secrets import read_until
from tests.helpers.cli import clean_env
from tests.helpers.fixtures import TLS, Make, Row

if TYPE_CHECKING:
    from tests.helpers.browser import Browser as ChromiumBrowser

KEYED = ("pipedrive", "close")
OAUTH_APP = {
    "AGENCY_CRM_HUBSPOT_CLIENT_ID": CLIENT_ID,
    "AGENCY_CRM_HUBSPOT_CLIENT_SECRET": CLIENT_SECRET,
}


def configs(conn: psycopg.Connection[Any], client: Row) -> list[Row]:
    """Every config of the client (soft-deleted ones too), oldest first."""
    return (
        conn.cursor(row_factory=dict_row)
        .execute(
            "SELECT * FROM crm.client_crm_configs WHERE client_id = %s ORDER BY created_at",
            (client["id"],),
        )
        .fetchall()
    )


def connect(
    cli: Cli, vendor: str, client: Row, key: str, sandbox: Sandbox, *more: str
) -> subprocess.CompletedProcess[str]:
    """`crm connect pipedrive|close --api-key -` with the key on stdin, at the sandbox."""
    return cli(
        "crm", "connect", vendor, "--client", client["name"], "--api-key", "-",
        "--api-base-url", sandbox.urls[vendor], *more, input=key + "\n",
    )  # fmt: skip


def connected(cli: Cli, vendor: str, client: Row, sandbox: Sandbox) -> dict[str, Any]:
    """A client connected to a new account of the fake CRM, through the CLI; the account."""
    acct = account(sandbox, vendor)
    done = connect(cli, vendor, client, acct["token"], sandbox, "--json")
    assert done.returncode == 0, done.stderr
    return acct


# --- connecting with a key -----------------------------------------------------------------


@pytest.mark.parametrize("vendor", KEYED)
def test_a_working_key_is_saved_encrypted_with_defaults_proposed_by_the_crm(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    client = cmake.client()
    acct = account(sandbox, vendor)
    done = connect(cli, vendor, client, acct["token"], sandbox, "--json")
    assert done.returncode == 0, done.stderr
    assert acct["token"] not in done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert set(result) == {"config", "replaced", "proposed", "backfill"}
    config = result["config"]
    assert (config["crm_type"], config["connection_status"], config["is_active"]) == (
        vendor,
        "connected",
        True,
    )
    assert config["credentials"]["api_key"] == "********"
    assert config["api_base_url"] == sandbox.urls[vendor]
    pipeline = acct["pipelines"][0]
    assert result["proposed"]["pipeline_id"] == str(pipeline["id"])
    assert result["proposed"]["stage_id"] == str(pipeline["stages"][0]["id"])
    assert result["proposed"]["owner_id"] in {str(u["id"]) for u in acct["users"]}
    assert (config["pipeline_id"], config["stage_id"]) == (
        result["proposed"]["pipeline_id"],
        result["proposed"]["stage_id"],
    )
    assert result["replaced"] is False
    assert result["backfill"] == {"meetings": 0, "deals": 0}
    # Our key's custom field exists in the CRM now, and the config says where it is.
    assert config["external_key_fields"]
    [row] = configs(conn, client)
    assert crypto.is_envelope(row["api_key"])
    assert (
        crypto.KeyRing.from_environment().decrypt(
            row["api_key"], client_id=client["id"], column="api_key"
        )
        == acct["token"]
    )


@pytest.mark.parametrize("vendor", KEYED)
def test_the_human_output_says_where_deals_go_and_what_to_run(
    cli: Cli, cmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    client = cmake.client(name=f"Acme {uuid.uuid4().hex[:6]}")
    cmake.meeting(cmake.lead(client))
    acct = account(sandbox, vendor)
    done = connect(cli, vendor, client, acct["token"], sandbox)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    vendor_name = {"pipedrive": "Pipedrive", "close": "Close"}[vendor]
    assert lines[0] == (
        f"connected {client['name']} ({client['id']}) to {vendor_name} at {sandbox.urls[vendor]}"
    )
    assert lines[1].startswith(f"new deals go to pipeline {acct['pipelines'][0]['id']}, stage ")
    assert lines[2] == (
        "queued 1 meeting(s) and 0 deal(s) the CRM has not got: run `agency-crm push drain` to "
        "send them"
    )


@pytest.mark.parametrize("vendor", KEYED)
def test_a_refused_key_saves_nothing_and_says_why_in_one_line(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    client = cmake.client()
    acct = account(sandbox, vendor)
    admin(sandbox, vendor, "POST", "/_sandbox/accounts/revoke", json={"token": acct["token"]})
    done = connect(cli, vendor, client, acct["token"], sandbox)
    line = one_line(done, 1)
    vendor_name = {"pipedrive": "Pipedrive", "close": "Close"}[vendor]
    assert f"{vendor_name} refused the credentials: 401" in line
    assert "nothing was saved" in line
    assert acct["token"] not in done.stdout + done.stderr
    assert configs(conn, client) == []


@pytest.mark.parametrize("vendor", KEYED)
def test_a_key_that_is_no_account_at_all_is_refused(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    client = cmake.client()
    done = connect(cli, vendor, client, "not-a-sandbox-key-canary", sandbox)
    assert "refused the credentials" in one_line(done, 1)
    assert "canary" not in done.stderr
    assert configs(conn, client) == []


def test_the_key_comes_from_the_environment_too(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = account(sandbox, "close")
    done = cli(
        "crm", "connect", "close", "--client", str(client["id"]),
        "--api-base-url", sandbox.urls["close"],
        env={"AGENCY_CRM_API_KEY": acct["token"]},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert configs(conn, client)[0]["crm_type"] == "close"


def test_no_key_is_a_usage_error_naming_the_ways_to_give_one(cli: Cli, cmake: Make) -> None:
    client = cmake.client()
    done = cli("crm", "connect", "pipedrive", "--client", str(client["id"]))
    assert done.returncode == 2
    assert "--api-key -" in done.stderr and "environment" in done.stderr
    empty = cli("crm", "connect", "pipedrive", "--client", str(client["id"]), "--api-key", "-")
    assert empty.returncode == 2 and "empty" in empty.stderr


def test_a_second_crm_is_refused_naming_the_connected_one(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    connected(cli, "pipedrive", client, sandbox)
    other = account(sandbox, "close")
    done = connect(cli, "close", client, other["token"], sandbox)
    line = one_line(done, 5)
    assert "already connected to Pipedrive" in line
    assert f"agency-crm crm disconnect --client {client['id']}" in line
    assert [c["crm_type"] for c in configs(conn, client)] == ["pipedrive"]
    # Refused before the CRM was called.
    assert state(sandbox, "close", other["token"])["requests"] == {}


def test_reconnecting_the_same_crm_replaces_the_key_and_keeps_the_settings(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = connected(cli, "pipedrive", client, sandbox)
    stages = acct["pipelines"][0]["stages"]
    chosen = str(stages[-1]["id"])
    done = cli("crm", "config", "set", "--client", client["name"], "--stage-id", chosen)
    assert done.returncode == 0, done.stderr
    # The same account's key again (a rotated key of the same company).
    again = connect(cli, "pipedrive", client, acct["token"], sandbox)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"reconnected {client['name']} ({client['id']}) to Pipedrive")
    [row] = configs(conn, client)
    assert row["stage_id"] == chosen


def test_a_client_is_named_by_uuid_or_exact_name_and_an_ambiguous_name_is_refused(
    cli: Cli, cmake: Make, sandbox: Sandbox
) -> None:
    unknown = cli("crm", "config", "show", "--client", "No Such Client")
    assert "no client has the id or name 'No Such Client'" in one_line(unknown, 4)
    first = cmake.client(name="Twins")
    second = cmake.client(name="Twins")
    both = cli("crm", "config", "show", "--client", "Twins")
    line = one_line(both, 1)
    assert "2 clients are named 'Twins'" in line
    assert str(first["id"]) in line and str(second["id"]) in line
    by_id = cli("crm", "config", "show", "--client", str(second["id"]))
    assert "has no CRM config" in one_line(by_id, 4)
    from_env = cli("crm", "config", "show", env={"AGENCY_CRM_CLIENT": str(first["id"])})
    assert "has no CRM config" in one_line(from_env, 4)


# --- config, catalog, test -----------------------------------------------------------------


def test_config_show_masks_the_credentials(cli: Cli, cmake: Make, sandbox: Sandbox) -> None:
    client = cmake.client()
    acct = connected(cli, "close", client, sandbox)
    shown = cli("crm", "config", "show", "--client", client["name"])
    assert shown.returncode == 0, shown.stderr
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in shown.stdout.splitlines())
    assert fields["crm"] == "Close" and fields["status"] == "connected"
    assert fields["credentials"] == "api_key ********"
    assert fields["pipeline"] == acct["pipelines"][0]["id"]
    assert acct["token"] not in shown.stdout
    as_json = json.loads(cli("crm", "config", "show", "--client", client["name"], "--json").stdout)
    assert as_json["credentials"] == {
        "api_key": "********",
        "oauth_access_token": None,
        "oauth_refresh_token": None,
        "oauth_expires_at": None,
    }


def test_config_set_checks_each_id_against_the_crm_and_saves_nothing_refused(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = connected(cli, "pipedrive", client, sandbox)
    pipeline = acct["pipelines"][0]
    stages = [str(s["id"]) for s in pipeline["stages"]]
    owner = str(acct["users"][-1]["id"])
    done = cli(
        "crm", "config", "set", "--client", client["name"], "--stage-id", stages[1],
        "--owner-id", owner, "--stage-map", f"proposal={stages[2]}",
        "--stage-map", f"negotiation={stages[3]}", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert (config["stage_id"], config["owner_id"]) == (stages[1], owner)
    assert config["stage_map"] == {"proposal": stages[2], "negotiation": stages[3]}

    # An id the CRM does not know: exit 2 naming the field; nothing saved.
    refused = cli("crm", "config", "set", "--client", client["name"], "--stage-id", "999999")
    assert "stage_id '999999' is not a stage of pipeline" in one_line(refused, 2)
    unknown_owner = cli("crm", "config", "set", "--client", client["name"], "--owner-id", "42")
    assert "owner_id '42' is not a user" in one_line(unknown_owner, 2)
    [row] = configs(conn, client)
    assert (row["stage_id"], row["owner_id"]) == (stages[1], owner)

    # A key that is not one of our stages would never map anything: refused before the CRM
    # is asked.
    typo = cli(
        "crm", "config", "set", "--client", client["name"], "--stage-map", f"proposl={stages[2]}"
    )
    line = one_line(typo, 2)
    assert "stage_map.proposl: 'proposl' is not one of our deal stages" in line
    assert "qualification, proposal, negotiation" in line

    # --stage-map adds and removes entries, keeping the others; --clear-owner.
    changed = cli(
        "crm", "config", "set", "--client", client["name"], "--stage-map", "proposal=",
        "--stage-map", f"closed_won={stages[4]}", "--clear-owner", "--json",
    )  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    config = json.loads(changed.stdout)
    assert config["stage_map"] == {"negotiation": stages[3], "closed_won": stages[4]}
    assert config["owner_id"] is None
    cleared = cli("crm", "config", "set", "--client", client["name"], "--clear-stage-map")
    assert cleared.returncode == 0, cleared.stderr
    assert "stage map     -" in cleared.stdout
    assert configs(conn, client)[0]["stage_map"] == {}


def test_config_set_without_a_change_or_with_a_malformed_pair_is_a_usage_error(
    cli: Cli, cmake: Make
) -> None:
    client = cmake.client()
    nothing = cli("crm", "config", "set", "--client", str(client["id"]))
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
    bad = cli("crm", "config", "set", "--client", str(client["id"]), "--stage-map", "proposal")
    assert bad.returncode == 2 and "OUR_STAGE=CRM_STAGE_ID" in bad.stderr
    both = cli(
        "crm", "config", "set", "--client", str(client["id"]), "--owner-id", "1", "--clear-owner"
    )
    assert both.returncode == 2


def test_pipelines_stages_and_users_come_from_the_crm_and_mark_what_the_config_uses(
    cli: Cli, cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = connected(cli, "pipedrive", client, sandbox)
    pipeline = acct["pipelines"][0]
    first_stage = str(pipeline["stages"][0]["id"])

    pipelines = cli("crm", "pipelines", "--client", client["name"])
    assert pipelines.returncode == 0, pipelines.stderr
    header, *rows = pipelines.stdout.splitlines()
    assert header.split() == ["id", "label", "stages", "in", "config"]
    assert rows[0].split()[0] == str(pipeline["id"]) and rows[0].endswith("new deals")
    as_json = json.loads(cli("crm", "pipelines", "--client", client["name"], "--json").stdout)
    assert [p["id"] for p in as_json] == [str(p["id"]) for p in acct["pipelines"]]
    assert set(as_json[0]) == {"id", "label", "stages"}
    assert as_json[0]["stages"][0] == {"id": first_stage, "label": pipeline["stages"][0]["name"]}

    stages = cli("crm", "stages", str(pipeline["id"]), "--client", client["name"])
    assert stages.returncode == 0, stages.stderr
    rows = stages.stdout.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [str(s["id"]) for s in pipeline["stages"]]
    assert rows[0].endswith("new deals")
    stages_json = json.loads(
        cli("crm", "stages", str(pipeline["id"]), "--client", client["name"], "--json").stdout
    )
    assert [s["id"] for s in stages_json] == [str(s["id"]) for s in pipeline["stages"]]
    missing = cli("crm", "stages", "424242", "--client", client["name"])
    assert "pipeline '424242' is not a pipeline of this CRM" in one_line(missing, 4)

    users = json.loads(cli("crm", "users", "--client", client["name"], "--json").stdout)
    assert {u["id"] for u in users} == {str(u["id"]) for u in acct["users"]}
    assert all(set(u) == {"id", "name"} for u in users)
    listed = cli("crm", "users", "--client", client["name"])
    assert "owner of new deals" in listed.stdout


def test_crm_test_records_the_outcome_and_exits_3_on_a_problem(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = connected(cli, "close", client, sandbox)
    ok = cli("crm", "test", "--client", client["name"])
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"{client['name']} ({client['id']}): connected; 1 pipeline(s)")
    admin(sandbox, "close", "POST", "/_sandbox/accounts/revoke", json={"token": acct["token"]})
    bad = cli("crm", "test", "--client", client["name"], "--json")
    assert bad.returncode == 3, bad.stderr
    result = json.loads(bad.stdout)
    assert set(result) == {"ok", "connection_status", "problems", "pipelines", "users"}
    assert result["ok"] is False and result["connection_status"] == "error"
    assert acct["token"] not in bad.stdout
    assert configs(conn, client)[0]["connection_status"] == "error"


def test_crm_test_of_a_client_without_a_crm_is_exit_4(cli: Cli, cmake: Make) -> None:
    client = cmake.client()
    done = cli("crm", "test", "--client", str(client["id"]))
    assert "has no CRM config" in one_line(done, 4)


# --- logs ----------------------------------------------------------------------------------


def test_logs_show_the_connect_calls_filtered_and_paged(
    cli: Cli, cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    connected(cli, "pipedrive", client, sandbox)
    everything = json.loads(
        cli("crm", "logs", "--client", client["name"], "--limit", "1000", "--json").stdout
    )
    assert set(everything) == {"items", "limit", "offset", "next_offset"}
    operations = {i["operation"] for i in everything["items"]}
    assert {"get_me", "get_pipelines", "get_users"} <= operations
    assert all("request_payload" not in i for i in everything["items"])
    assert everything["next_offset"] is None
    total = len(everything["items"])

    first = json.loads(
        cli("crm", "logs", "--client", client["name"], "--limit", "2", "--json").stdout
    )
    assert len(first["items"]) == 2 and first["next_offset"] == 2
    second = json.loads(
        cli(
            "crm", "logs", "--client", client["name"], "--limit", "2", "--offset", "2", "--json"
        ).stdout
    )
    assert second["offset"] == 2
    assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in second["items"]})

    only = json.loads(
        cli(
            "crm", "logs", "--client", client["name"], "--operation", "get_me",
            "--status", "success", "--payloads", "--json",
        ).stdout
    )  # fmt: skip
    assert [i["operation"] for i in only["items"]] == ["get_me"]
    assert only["items"][0]["request_payload"]["path"].endswith("/users/me")

    later = json.loads(
        cli("crm", "logs", "--client", client["name"], "--since", "2999-01-01", "--json").stdout
    )
    assert later["items"] == []
    before = json.loads(
        cli(
            "crm", "logs", "--client", client["name"], "--until", "2999-01-01T00:00+00:00",
            "--limit", "1000", "--json",
        ).stdout
    )  # fmt: skip
    assert len(before["items"]) == total

    text = cli("crm", "logs", "--client", client["name"], "--limit", "3")
    lines = text.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == "more: --offset 3"
    assert all(" check " in line or " success " in line for line in lines[:3])
    none = cli("crm", "logs", "--client", client["name"], "--status", "failed")
    assert none.stdout.strip() == "no CRM calls logged that match"
    bad = cli("crm", "logs", "--client", client["name"], "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


# --- disconnect ----------------------------------------------------------------------------


def test_disconnect_skips_pending_and_held_pushes_and_forgets_the_credentials(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    connected(cli, "pipedrive", client, sandbox)
    leads = [cmake.lead(client) for _ in range(3)]
    for lead in leads:
        cmake.meeting(lead)
    conn.execute(
        "UPDATE crm.crm_push_queue SET status = 'held' WHERE lead_id = %s", (leads[0]["id"],)
    )
    other = cmake.client()
    connected(cli, "close", other, sandbox)
    cmake.meeting(cmake.lead(other))

    done = cli("crm", "disconnect", "--client", client["name"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"disconnected the Pipedrive of {client['name']} ({client['id']}): 3 pending or held "
        "push(es) skipped"
    )
    statuses = conn.execute(
        "SELECT client_id, status, count(*) FROM crm.crm_push_queue GROUP BY 1, 2"
    ).fetchall()
    assert sorted((str(c), s, n) for c, s, n in statuses) == sorted(
        [(str(client["id"]), "skipped", 3), (str(other["id"]), "pending", 1)]
    )
    [row] = configs(conn, client)
    assert (row["is_active"], row["connection_status"], row["api_key"]) == (
        False,
        "disconnected",
        None,
    )
    again = cli("crm", "disconnect", "--client", client["name"], "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["skipped_pushes"] == 0
    assert result["config"]["connection_status"] == "disconnected"
    assert result["config"]["credentials"]["api_key"] is None

    # Now another CRM may be connected, and it starts clean.
    acct = account(sandbox, "close")
    switched = connect(cli, "close", client, acct["token"], sandbox, "--json")
    assert switched.returncode == 0, switched.stderr
    assert json.loads(switched.stdout)["backfill"] == {"meetings": 3, "deals": 0}


def test_disconnecting_a_client_without_a_crm_is_exit_4(cli: Cli, cmake: Make) -> None:
    client = cmake.client()
    assert "has no CRM connected" in one_line(
        cli("crm", "disconnect", "--client", str(client["id"])), 4
    )


# --- HubSpot -------------------------------------------------------------------------------


def test_hubspot_with_a_private_app_token(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = account(sandbox, "hubspot")
    done = cli(
        "crm", "connect", "hubspot", "--client", client["name"], "--private-app-token", "-",
        "--api-base-url", sandbox.urls["hubspot"], "--json", input=acct["token"] + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)["config"]
    assert config["crm_type"] == "hubspot" and config["credentials"]["api_key"] == "********"
    assert config["external_key_fields"] == {
        "contact": "agency_crm_key",
        "deal": "agency_crm_key",
    }
    assert (config["pipeline_id"], config["stage_id"]) == ("default", "appointmentscheduled")
    [row] = configs(conn, client)
    assert row["oauth_access_token"] is None and crypto.is_envelope(row["api_key"])


def test_hubspot_consent_needs_the_agency_app(cli: Cli, cmake: Make) -> None:
    client = cmake.client()
    done = cli(
        "crm", "connect", "hubspot", "--client", str(client["id"]), "--no-browser",
        env={"AGENCY_CRM_HUBSPOT_CLIENT_ID": "", "AGENCY_CRM_HUBSPOT_CLIENT_SECRET": ""},
    )  # fmt: skip
    line = one_line(done, 1)
    assert "AGENCY_CRM_HUBSPOT_CLIENT_ID and AGENCY_CRM_HUBSPOT_CLIENT_SECRET are not set" in line
    assert "--private-app-token" in line


class Form(HTMLParser):
    """The consent page's form: its action and fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, tuple[str, str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag in ("input", "select") and a.get("name"):
            self.fields.setdefault(a["name"], a.get("value", ""))
        elif tag == "button" and a.get("id"):
            self.buttons[a["id"]] = (a.get("name", ""), a.get("value", ""))


class Flow:
    """A `crm connect hubspot` running, and httpx playing the browser of someone connecting
    HubSpot: reads the authorisation URL the command prints, consents (or not) on the
    sandbox's page, follows the redirect."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.said: list[str] = []
        self.found = threading.Event()
        # stderr is read all along (the progress lines), in a thread of its own.
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        self.url = self.authorisation_url()

    def read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.said.append(line)
            if "/oauth/authorize?" in line:
                self.found.set()
        self.found.set()

    def authorisation_url(self) -> str:
        self.found.wait(60)
        for line in self.said:
            found = re.search(r"(https?://\S+/oauth/authorize\?\S+)", line)
            if found:
                return found.group(1)
        self.__exit__()
        raise AssertionError(f"no authorisation URL: {''.join(self.said)}")

    def consent(self, button: str = "consent-approve") -> httpx.Response:
        """The redirect the consent page answers with (not followed)."""
        with httpx.Client(verify=TLS, timeout=30) as http:
            page = http.get(self.url)
            assert page.status_code == 200, page.text
            form = Form()
            form.feed(page.text)
            name, value = form.buttons[button]
            decision = http.post(urljoin(self.url, form.action), data={**form.fields, name: value})
        assert decision.status_code in (302, 303), decision.text
        return decision

    def follow(self, redirect: httpx.Response) -> httpx.Response:
        with httpx.Client(verify=TLS, timeout=60) as http:
            return http.get(redirect.headers["location"])

    def finish(self) -> tuple[int, str, str]:
        """The command's exit code, stdout and stderr, once it has ended."""
        assert self.process.stdout is not None
        try:
            self.process.wait(90)  # its stdout is one short line of JSON at most
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        out = self.process.stdout.read()
        self.reader.join(10)
        return self.process.returncode, out, "".join(self.said)

    def __enter__(self) -> Flow:
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the command if it still runs; close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.reader.join(10)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def start_consent(cli: Cli, client: Row, sandbox: Sandbox, *more: str) -> Flow:
    process = cli.spawn(
        "crm", "connect", "hubspot", "--client", client["name"], "--no-browser",
        "--api-base-url", sandbox.urls["hubspot"], "--timeout", "60", *more, env=OAUTH_APP,
    )  # fmt: skip
    try:
        return Flow(process)
    except BaseException:
        process.kill()
        raise


def test_hubspot_consent_on_the_loopback_end_to_end(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    cmake.meeting(cmake.lead(client))
    with start_consent(cli, client, sandbox, "--json") as flow:
        query = parse_qs(urlsplit(flow.url).query)
        redirect_uri = query["redirect_uri"][0]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/callback", redirect_uri)
        assert query["client_id"] == [CLIENT_ID]
        assert "crm.objects.deals.write" in query["scope"][0].split()
        back = flow.consent()
        assert back.headers["location"].startswith(redirect_uri + "?")
        landed = flow.follow(back)
        assert landed.status_code == 200, landed.text
        assert "id=result data-ok=true" in landed.text and "HubSpot connected" in landed.text
        code, out, err = flow.finish()
        assert code == 0, err
        result = json.loads(out)
        config = result["config"]
        assert config["crm_type"] == "hubspot" and config["connection_status"] == "connected"
        assert config["credentials"]["oauth_access_token"] == "********"
        assert config["credentials"]["oauth_refresh_token"] == "********"
        assert config["hubspot_portal_id"]
        assert result["backfill"] == {"meetings": 1, "deals": 0}
        [row] = configs(conn, client)
        assert crypto.is_envelope(row["oauth_access_token"])
        assert crypto.is_envelope(row["oauth_refresh_token"])
        assert row["oauth_expires_at"] is not None and row["api_key"] is None
        code_value = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        assert code_value not in out + err
        # The flow's state is used up.
        used = conn.execute("SELECT count(*) FROM crm_private.oauth_states WHERE used_at IS NULL")
        assert used.fetchone() == (0,)


def test_hubspot_consent_denied_connects_nothing_and_tells_the_browser(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    with start_consent(cli, client, sandbox) as flow:
        back = flow.consent("consent-deny")
        assert "error=access_denied" in back.headers["location"]
        landed = flow.follow(back)
        assert landed.status_code == 400
        assert "HubSpot did not grant access: access_denied" in landed.text
        code, _out, err = flow.finish()
        assert code == 1
        assert (
            err.strip()
            .splitlines()[-1]
            .startswith("agency-crm: error: HubSpot did not grant access: access_denied")
        )
        assert configs(conn, client) == []


def test_a_callback_without_the_flows_state_is_refused_and_the_flow_goes_on(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    with start_consent(cli, client, sandbox) as flow:
        redirect_uri = parse_qs(urlsplit(flow.url).query)["redirect_uri"][0]
        stranger = httpx.get(redirect_uri, params={"code": "x", "state": "forged"}, timeout=10)
        assert stranger.status_code == 400 and "Not this sign-in" in stranger.text
        elsewhere = httpx.get(urljoin(redirect_uri, "/favicon.ico"), timeout=10)
        assert elsewhere.status_code == 404
        landed = flow.follow(flow.consent())
        assert landed.status_code == 200, landed.text
        code, _out, err = flow.finish()
        assert code == 0, err
        assert configs(conn, client)[0]["connection_status"] == "connected"


def test_hubspot_consent_times_out_in_one_line(cli: Cli, cmake: Make, sandbox: Sandbox) -> None:
    client = cmake.client()
    done = cli(
        "crm", "connect", "hubspot", "--client", str(client["id"]), "--no-browser",
        "--api-base-url", sandbox.urls["hubspot"], "--timeout", "1", env=OAUTH_APP,
    )  # fmt: skip
    assert done.returncode == 1
    assert "/oauth/authorize?" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("agency-crm: error: no answer from the browser within 1 s")


def test_hubspot_consent_finished_by_the_api_callback_is_waited_for(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    """--redirect-uri: HubSpot sends the browser to the HTTP API, which finishes the flow (here
    the service layer, as the API's callback calls it); the command sees it connected."""
    from psycopg_pool import AsyncConnectionPool

    from agency_crm.service.crm import CrmService, OAuthSettings

    client = cmake.client()
    callback = "http://127.0.0.1:9/api/v1/crm/callback/hubspot"
    with start_consent(cli, client, sandbox, "--redirect-uri", callback) as flow:
        back = flow.consent()
        location = back.headers["location"]
        assert location.startswith(callback + "?")
        query = parse_qs(urlsplit(location).query)
        url = cli.url

        async def api_callback() -> None:
            async with AsyncConnectionPool(
                url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
            ) as pool:
                crm = CrmService(
                    pool,
                    oauth=OAuthSettings(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
                    role=None,  # the API's role is tested with the API; here: the waiting
                )
                try:
                    await crm.finish_hubspot(code=query["code"][0], state=query["state"][0])
                finally:
                    await crm.aclose()

        asyncio.run(api_callback())
        code, out, err = flow.finish()
        assert code == 0, err
        assert f"connected {client['name']} ({client['id']}) to HubSpot (portal " in out
        assert "through the HTTP API" in out
        assert configs(conn, client)[0]["connection_status"] == "connected"


def test_hubspot_consent_in_a_real_chromium(
    cli: Cli,
    conn: psycopg.Connection[Any],
    cmake: Make,
    sandbox: Sandbox,
    browser: ChromiumBrowser,
    tmp_path: Path,
) -> None:
    """The same flow in headless Chromium: the consent page, the approval, the redirect to the
    command's loopback listener and its answer (screenshots under the test's tmp)."""
    client = cmake.client()
    with start_consent(cli, client, sandbox) as flow:
        browser.open(flow.url)
        assert "Connect app sbx-client" in browser.text("h1")
        browser.screenshot(tmp_path / "consent.png")
        browser.click("#consent-approve")
        browser.wait_for_url(lambda url: "/callback?" in url, timeout=60)
        assert browser.text("#result", timeout=60) == "HubSpot connected"
        assert client["name"] in browser.text("#message")
        browser.screenshot(tmp_path / "connected.png")
        code, _out, err = flow.finish()
    assert code == 0, err
    assert configs(conn, client)[0]["connection_status"] == "connected"
    assert browser.requests_outside_loopback() == []


def test_without_a_key_a_terminal_is_asked_for_it_hidden(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    acct = account(sandbox, "close")
    args = [
        sys.executable, "-m", "agency_crm", "crm", "connect", "close", "--client",
        str(client["id"]), "--api-base-url", sandbox.urls["close"], "--database-url", cli.url,
    ]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes the CLI, on the terminal
        os.execve(sys.executable, args, clean_env())
    output = b""
    try:
        output += read_until(fd, b"(input hidden): ")
        os.write(fd, acct["token"].encode() + b"\n")
        output += read_until(fd, None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "API key (input hidden): " in text
    assert f"connected {client['name']} ({client['id']}) to Close" in text
    assert acct["token"] not in text
    assert configs(conn, client)[0]["crm_type"] == "close"
