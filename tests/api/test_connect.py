"""Connecting a client's CRM through the API, against the sandbox: HubSpot by OAuth (the
consent page answered over HTTP here; in a real browser in test_oauth_browser.py), Pipedrive
and Close by API key; one CRM per client; the history queued once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agency_crm.crypto import is_envelope
from agency_crm.push.connection import KEY_FIELD_LABEL
from tests.api.conftest import APP_ID, Api, Tenant, assert_problem
from tests.api.seeding import seed_history
from tests.helpers.fixtures import TLS, unseal

KEY_VENDORS = ("pipedrive", "close")
VENDOR = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "close": "Close"}


# --------------------------------------------------------------------------- helpers


def configs(api: Api, client_id: Any) -> list[dict[str, Any]]:
    return api.rows(
        "SELECT * FROM crm.client_crm_configs WHERE client_id = %s ORDER BY created_at",
        client_id,
    )


def queue(api: Api, client_id: Any) -> list[dict[str, Any]]:
    return api.rows(
        "SELECT operation, meeting_id, deal_id, status FROM crm.crm_push_queue"
        " WHERE client_id = %s ORDER BY id",
        client_id,
    )


def connect_key(api: Api, who: Tenant, vendor: str, key: str, **body: Any) -> httpx.Response:
    return api.call(
        "POST",
        f"/api/v1/crm/connect/{vendor}",
        who.token,
        json={"api_key": key, "api_base_url": api.sandbox.urls[vendor], **body},
    )


def new_key(api: Api, vendor: str) -> str:
    """A key of a new sandbox account."""
    return str(api.sandbox.admin(vendor).create_account()["token"])


def key_fields_in_crm(api: Api, vendor: str, key: str) -> int:
    """How many fields named like our key field the CRM holds (setup must be idempotent)."""
    base = api.sandbox.urls[vendor]
    if vendor == "pipedrive":
        found = 0
        for kind in ("person", "organization", "deal"):
            got = httpx.get(f"{base}/v1/{kind}Fields", params={"api_token": key}, verify=TLS)
            found += sum(f.get("name") == KEY_FIELD_LABEL for f in got.json()["data"])
        return found
    if vendor == "close":
        found = 0
        for kind in ("lead", "opportunity"):
            got = httpx.get(f"{base}/api/v1/custom_field/{kind}/", auth=(key, ""), verify=TLS)
            found += sum(f.get("name") == KEY_FIELD_LABEL for f in got.json()["data"])
        return found
    found = 0
    for kind in ("contacts", "deals"):
        got = httpx.get(
            f"{base}/crm/v3/properties/{kind}",
            headers={"Authorization": f"Bearer {key}"},
            verify=TLS,
        )
        found += sum(p.get("label") == KEY_FIELD_LABEL for p in got.json()["results"])
    return found


def start_hubspot(api: Api, who: Tenant) -> tuple[str, dict[str, str]]:
    """POST /crm/connect/hubspot: the authorisation URL and its query."""
    response = api.call(
        "POST",
        "/api/v1/crm/connect/hubspot",
        who.token,
        json={"api_base_url": api.sandbox.urls["hubspot"]},
    )
    assert response.status_code == 200, response.text
    url = response.json()["authorization_url"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return url, query


def consent(api: Api, query: dict[str, str], decision: str = "approve") -> str:
    """Answer the sandbox HubSpot's consent form; the callback URL it redirects to."""
    form = {k: query[k] for k in ("client_id", "redirect_uri", "scope", "state")}
    response = httpx.post(
        f"{api.sandbox.urls['hubspot']}/oauth/authorize",
        data={**form, "decision": decision, "portal_id": ""},
        verify=TLS,
    )
    assert response.status_code == 302, response.text
    return str(response.headers["location"])


def oauth_state(api: Api, state: str) -> dict[str, Any]:
    [row] = api.rows(
        "SELECT * FROM crm_private.oauth_states WHERE state_hash = %s",
        hashlib.sha256(state.encode()).digest(),
    )
    return row


# --------------------------------------------------------------------------- API keys


@pytest.mark.parametrize("vendor", KEY_VENDORS)
def test_a_working_key_is_tested_saved_encrypted_and_the_crm_set_up(
    api: Api, tenant: Callable[..., Tenant], vendor: str
) -> None:
    a = tenant()
    key = new_key(api, vendor)
    response = connect_key(api, a, vendor, key)
    assert response.status_code == 200, response.text
    result = response.json()
    config = result["config"]
    assert (config["crm_type"], config["is_active"], config["connection_status"]) == (
        vendor,
        True,
        "connected",
    )
    assert config["credentials"]["api_key"] == "********" and key not in response.text
    assert result["replaced"] is False
    # Defaults proposed from the CRM: its first pipeline, that pipeline's first stage, the
    # user the key belongs to; and kept in the config.
    proposed = result["proposed"]
    assert proposed["pipeline_id"] and proposed["stage_id"] and proposed["owner_id"]
    assert (config["pipeline_id"], config["stage_id"], config["owner_id"]) == (
        proposed["pipeline_id"],
        proposed["stage_id"],
        proposed["owner_id"],
    )
    assert config["external_key_fields"], "no key field was set up"
    [stored] = configs(api, a.row["id"])
    assert is_envelope(stored["api_key"]) and key not in stored["api_key"]
    assert unseal(a.row["id"], "api_key", stored["api_key"]) == key
    # Connecting again (same CRM, same key) replaces, and sets nothing up twice.
    fields = key_fields_in_crm(api, vendor, key)
    assert fields >= 2
    again = connect_key(api, a, vendor, key).json()
    assert again["replaced"] is True and again["config"]["id"] == config["id"]
    assert key_fields_in_crm(api, vendor, key) == fields
    # The calls made to connect are in the client's push log, redacted.
    logged = api.call("GET", "/api/v1/crm/logs", a.token)
    assert logged.json()["items"] and key not in logged.text


@pytest.mark.parametrize("vendor", KEY_VENDORS)
def test_a_refused_key_is_a_400_with_the_crm_s_reason_and_nothing_is_saved(
    api: Api, tenant: Callable[..., Tenant], vendor: str
) -> None:
    a = tenant()
    response = connect_key(api, a, vendor, "not-a-sandbox-key-0123456789")
    body = assert_problem(response, 400, "crm_refused")
    assert body["detail"].startswith(f"{VENDOR[vendor]} refused the credentials")
    assert "401" in body["detail"] and "not-a-sandbox-key" not in response.text
    assert configs(api, a.row["id"]) == []
    assert_problem(api.call("GET", "/api/v1/crm/config", a.token), 404, "no_crm_config")


def test_one_crm_per_client_and_reconnecting_the_same_one_replaces_the_key(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    first = connect_key(api, a, "pipedrive", new_key(api, "pipedrive")).json()
    users = api.call("GET", "/api/v1/crm/users", a.token).json()
    owner = users[-1]["id"]
    assert owner != first["proposed"]["owner_id"]
    chosen = api.call("PUT", "/api/v1/crm/config", a.token, json={"owner_id": owner}).json()
    assert chosen["owner_id"] == owner
    before = configs(api, a.row["id"])
    for refused in (
        connect_key(api, a, "close", new_key(api, "close")),
        api.call("POST", "/api/v1/crm/connect/hubspot", a.token),
    ):
        body = assert_problem(refused, 409, "crm_already_connected")
        assert "already connected to Pipedrive" in body["detail"]
        assert "DELETE /api/v1/crm/disconnect" in body["hint"]
    assert configs(api, a.row["id"]) == before
    # The same CRM with another key: the key is replaced, the settings chosen are kept.
    other = new_key(api, "pipedrive")
    again = connect_key(api, a, "pipedrive", other).json()
    assert again["replaced"] is True and again["config"]["id"] == first["config"]["id"]
    [stored] = configs(api, a.row["id"])
    assert unseal(a.row["id"], "api_key", stored["api_key"]) == other
    assert stored["owner_id"] == owner and stored["pipeline_id"] == first["config"]["pipeline_id"]
    # Disconnected, another CRM may come: a new config, the old one kept as history.
    assert api.call("DELETE", "/api/v1/crm/disconnect", a.token).status_code == 200
    close = connect_key(api, a, "close", new_key(api, "close"))
    assert close.status_code == 200, close.text
    assert close.json()["config"]["id"] != first["config"]["id"]
    history = configs(api, a.row["id"])
    assert [(c["crm_type"], c["deleted_at"] is None) for c in history] == [
        ("pipedrive", False),
        ("close", True),
    ]


@pytest.mark.parametrize("vendor", KEY_VENDORS)
def test_connecting_queues_the_history_once(
    api: Api, tenant: Callable[..., Tenant], vendor: str
) -> None:
    a = tenant()
    history = seed_history(api.make(), a.row, meetings=4, logs=0)  # no config yet: no push
    gone = history.meetings[-1]
    api.rows("UPDATE crm.meetings SET deleted_at = now() WHERE id = %s RETURNING id", gone["id"])
    # A deal of its own (the first meeting's deal goes with that meeting's push).
    alone = api.make().deal(history.leads[1], name="Referral")
    assert queue(api, a.row["id"]) == []
    key = new_key(api, vendor)
    result = connect_key(api, a, vendor, key).json()
    assert result["backfill"] == {"meetings": 3, "deals": 1}
    queued = queue(api, a.row["id"])
    assert sorted(str(q["meeting_id"]) for q in queued if q["operation"] == "meeting_booked") == (
        sorted(str(m["id"]) for m in history.meetings[:3])
    )
    assert [q["deal_id"] for q in queued if q["meeting_id"] is None] == [alone["id"]]
    assert len(queued) == 4 and {q["status"] for q in queued} == {"pending"}
    # Twice: nothing new.
    again = connect_key(api, a, vendor, key).json()
    assert again["backfill"] == {"meetings": 0, "deals": 0}
    assert queue(api, a.row["id"]) == queued


def test_history_reaches_the_crm_once(api: Api, api_db: str, tenant: Callable[..., Tenant]) -> None:
    from tests.push.conftest import run_drain

    a = tenant()
    seed_history(api.make(), a.row, meetings=3, logs=0)
    key = new_key(api, "pipedrive")
    assert connect_key(api, a, "pipedrive", key).json()["backfill"]["meetings"] == 3
    run_drain(api_db)
    state = api.sandbox.admin("pipedrive").state(token=key)
    assert len(state["deals"]) == 3 and len(state["persons"]) == 3
    # Connect again and drain again: the CRM gets nothing twice.
    assert connect_key(api, a, "pipedrive", key).json()["backfill"] == {"meetings": 0, "deals": 0}
    run_drain(api_db)
    state = api.sandbox.admin("pipedrive").state(token=key)
    assert len(state["deals"]) == 3 and len(state["persons"]) == 3


# --------------------------------------------------------------------------- HubSpot OAuth


def test_starting_hubspot_gives_the_authorisation_url_and_keeps_only_a_digest_of_the_state(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    started = datetime.now(UTC)
    url, query = start_hubspot(api, a)
    assert url.startswith(f"{api.sandbox.urls['hubspot']}/oauth/authorize?")
    assert query["client_id"] == APP_ID
    assert query["redirect_uri"] == f"{api.url}/api/v1/crm/callback/hubspot"
    assert {"crm.objects.deals.write", "crm.schemas.deals.write", "oauth"} <= set(
        query["scope"].split()
    )
    assert len(query["state"]) >= 43
    row = oauth_state(api, query["state"])
    assert row["client_id"] == a.row["id"] and row["used_at"] is None
    assert timedelta(minutes=9) < row["expires_at"] - started <= timedelta(minutes=10, seconds=5)
    assert query["state"] not in str(row)
    # Two flows, two states.
    assert start_hubspot(api, a)[1]["state"] != query["state"]


def test_the_oauth_flow_connects_hubspot(api: Api, tenant: Callable[..., Tenant]) -> None:
    a = tenant()
    seed_history(api.make(), a.row, meetings=2, logs=0)
    _, query = start_hubspot(api, a)
    callback = consent(api, query)
    assert callback.startswith(f"{api.url}/api/v1/crm/callback/hubspot?")
    # The browser comes back without a token.
    response = httpx.get(callback, verify=TLS)
    assert response.status_code == 200, response.text
    result = response.json()
    config = result["config"]
    assert (config["crm_type"], config["connection_status"]) == ("hubspot", "connected")
    assert config["hubspot_portal_id"]
    credentials = config["credentials"]
    assert credentials["oauth_access_token"] == credentials["oauth_refresh_token"] == "********"
    assert datetime.fromisoformat(credentials["oauth_expires_at"]) > datetime.now(UTC)
    assert result["backfill"] == {"meetings": 2, "deals": 0}  # the deal goes with its meeting
    assert config["external_key_fields"]
    [stored] = configs(api, a.row["id"])
    access = unseal(a.row["id"], "oauth_access_token", stored["oauth_access_token"])
    assert access and is_envelope(stored["oauth_access_token"]) and access not in response.text
    assert key_fields_in_crm(api, "hubspot", access) >= 1
    # The state was used: the same callback again is refused.
    assert_problem(httpx.get(callback, verify=TLS), 400, "oauth_state_reused", "query.state")
    # The client's own API sees the connection.
    assert api.call("POST", "/api/v1/crm/test", a.token).json()["ok"] is True


def test_a_browser_gets_a_page(api: Api, tenant: Callable[..., Tenant]) -> None:
    a = tenant()
    _, query = start_hubspot(api, a)
    callback = consent(api, query)
    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    page = httpx.get(callback, headers=html, verify=TLS)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<h1 id="outcome">Connected</h1>' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    again = httpx.get(callback, headers=html, verify=TLS)
    assert again.status_code == 400 and "Not connected: the OAuth state was already used" in (
        again.text
    )


def test_declining_on_the_consent_page_is_reported_and_uses_the_state_up(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    _, query = start_hubspot(api, a)
    callback = consent(api, query, decision="deny")
    assert "error=access_denied" in callback
    body = assert_problem(httpx.get(callback, verify=TLS), 400, "oauth_denied")
    assert "access_denied" in body["detail"]
    page = httpx.get(callback, headers={"Accept": "text/html"}, verify=TLS)
    assert page.status_code == 400 and "Not connected" in page.text
    assert oauth_state(api, query["state"])["used_at"] is not None
    assert configs(api, a.row["id"]) == []


def test_an_unknown_expired_or_another_client_s_state_is_refused(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a, b = tenant(), tenant()
    callback = f"{api.url}/api/v1/crm/callback/hubspot"
    unknown = httpx.get(callback, params={"state": "nobody-issued-this", "code": "x"}, verify=TLS)
    assert_problem(unknown, 400, "oauth_state_unknown", "query.state")
    assert_problem(
        httpx.get(callback, params={"code": "x"}, verify=TLS),
        422,
        "validation_error",
        "query.state",
    )
    # B's token with A's state: unknown to B, and A's state stays usable.
    _, query = start_hubspot(api, a)
    theirs = httpx.get(
        callback,
        params={"state": query["state"], "code": "x"},
        headers={"Authorization": f"Bearer {b.token}"},
        verify=TLS,
    )
    assert_problem(theirs, 400, "oauth_state_unknown", "query.state")
    assert oauth_state(api, query["state"])["used_at"] is None
    # A token that is not valid is refused, even here.
    bad = httpx.get(
        callback,
        params={"state": query["state"], "code": "x"},
        headers={"Authorization": "Bearer acrm_" + "x" * 43},
        verify=TLS,
    )
    assert_problem(bad, 401, "unauthorized")
    # A state without a code or an error: the code is missing.
    assert_problem(
        httpx.get(callback, params={"state": query["state"]}, verify=TLS),
        422,
        "invalid",
        "query.code",
    )
    # Expired: refused, and used up.
    _, late = start_hubspot(api, a)
    api.rows(
        "UPDATE crm_private.oauth_states SET created_at = now() - interval '11 minutes',"
        " expires_at = now() - interval '1 minute'"
        " WHERE state_hash = %s RETURNING id",
        hashlib.sha256(late["state"].encode()).digest(),
    )
    expired = httpx.get(callback, params={"state": late["state"], "code": "x"}, verify=TLS)
    assert_problem(expired, 400, "oauth_state_expired", "query.state")
    assert configs(api, a.row["id"]) == []


def test_a_code_hubspot_refuses_is_a_400_and_nothing_is_saved(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    _, query = start_hubspot(api, a)
    response = httpx.get(
        f"{api.url}/api/v1/crm/callback/hubspot",
        params={"state": query["state"], "code": "not-a-code-hubspot-issued"},
        verify=TLS,
    )
    body = assert_problem(response, 400, "crm_refused")
    assert body["detail"].startswith("HubSpot refused the authorisation code")
    assert configs(api, a.row["id"]) == []
