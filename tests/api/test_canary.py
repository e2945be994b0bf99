"""Canary secrets through the HTTP API and the connect flows (issue 13: never a secret in a
response; the security issue's canary, extended).

The secrets: a Pipedrive and a Close key that are canaries (a distinctive core, characters
that every encoding changes), keys refused by the CRM that are canaries too, the HubSpot
tokens the OAuth flow brings (and its state and code), and the API's bearer tokens. One
scenario connects Pipedrive and Close by key and HubSpot by OAuth, calls every route (each
error path too: validation, a body that is not JSON, a refused key, another client's id),
and has the fake CRMs echo the credentials they were sent in error answers.

Afterwards no form of any secret (raw, URL-encoded three ways, base64 and base64url of it and
of ``value:``, its core) is in any response body or header, in any log record the API server
wrote (Python's logging at DEBUG, every logger), in the push log or in the configs' status
columns. ``test_the_run_is_not_vacuous`` shows each part happened.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agency_crm.push.redact import REDACTED
from tests.api.conftest import Api, Tenant
from tests.api.seeding import seed_history
from tests.api.test_connect import consent, start_hubspot
from tests.helpers.fixtures import TLS, unseal
from tests.push.test_canary import Secret, every_log_record, leaks, record_text, table_text


def canary(tag: str) -> Secret:
    """A canary an API key may be (visible ASCII, no space): ``canary-<tag>-<8 hex>`` and
    characters that URL-encoding, base64 and base64url each change."""
    core = f"canary-{tag}-{secrets.token_hex(4)}"
    return Secret(tag, f"{core}{secrets.token_hex(2)}+/=??~~??~~{secrets.token_hex(6)}", core)


@dataclass
class Run:
    api: Api
    clients: dict[str, Tenant]
    canaries: dict[str, Secret]
    exchanges: list[tuple[str, httpx.Response]] = field(default_factory=list)
    records: list[logging.LogRecord] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)

    def call(self, who: str, method: str, path: str, **kw: Any) -> httpx.Response:
        token = self.clients[who].token if who in self.clients else who
        response = self.api.call(method, path, token, **kw)
        # Labelled by the route (a query string may hold what the test sent on purpose).
        self.exchanges.append((f"{method} {path.split('?')[0]}", response))
        return response

    def status(self, label: str) -> int:
        return next(r.status_code for name, r in self.exchanges if name == label)


def scenario(run: Run) -> None:
    api, c = run.api, run.canaries
    urls = api.sandbox.urls
    pd, hs, other = (run.clients[k] for k in ("pd", "hs", "other"))
    # The fake CRMs take the canaries as keys (made in-process: no admin request carries one).
    api.sandbox.admin("pipedrive").create_account(c["pd"].value)
    api.sandbox.admin("close").create_account(c["close"].value)
    seed_history(api.make(), pd.row, meetings=2, logs=0)

    # Connecting: refused keys first (a 400 with the CRM's reason), then the canaries.
    for vendor, tag in (("pipedrive", "pd-refused"), ("close", "close-refused")):
        refused = run.call(
            "cl",
            "POST",
            f"/api/v1/crm/connect/{vendor}",
            json={"api_key": c[tag].value, "api_base_url": urls[vendor]},
        )
        assert refused.status_code == 400, refused.text
    for who, vendor, tag in (("pd", "pipedrive", "pd"), ("cl", "close", "close")):
        for _ in range(2):  # connect, then connect again (the key replaced)
            done = run.call(
                who,
                "POST",
                f"/api/v1/crm/connect/{vendor}",
                json={"api_key": c[tag].value, "api_base_url": urls[vendor]},
            )
            assert done.status_code == 200, done.text
    # HubSpot by OAuth: the browser's way back holds the state and the code.
    _, query = start_hubspot(api, hs)
    callback = consent(api, query)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    run.secrets += [Secret("oauth-state", query["state"]), Secret("oauth-code", code)]
    for accept in ("text/html", "application/json"):
        back = httpx.get(callback, headers={"Accept": accept}, verify=TLS)
        run.exchanges.append(("GET callback", back))
    assert run.exchanges[-2][1].status_code == 200, run.exchanges[-2][1].text
    [stored] = api.rows(
        "SELECT oauth_access_token, oauth_refresh_token FROM crm.client_crm_configs"
        " WHERE client_id = %s AND deleted_at IS NULL",
        hs.row["id"],
    )
    tokens = {k: unseal(hs.row["id"], k, v) for k, v in stored.items()}
    access = tokens["oauth_access_token"]
    assert access and tokens["oauth_refresh_token"]
    run.secrets += [Secret(k, v) for k, v in tokens.items() if v]

    # Every route of each connected client, and their error paths.
    for who in ("pd", "cl", "hs"):
        pipelines = run.call(who, "GET", "/api/v1/crm/pipelines").json()
        first = pipelines[0]
        for method, path, body in (
            ("GET", "/api/v1/crm/config", None),
            ("PUT", "/api/v1/crm/config", {"stage_id": first["stages"][-1]["id"]}),
            ("PUT", "/api/v1/crm/config", {"stage_id": "no-such-stage"}),
            ("POST", "/api/v1/crm/test", None),
            ("GET", f"/api/v1/crm/stages/{first['id']}", None),
            ("GET", "/api/v1/crm/stages/no-such-pipeline", None),
            ("GET", "/api/v1/crm/users", None),
            ("GET", "/api/v1/crm/logs?limit=200", None),
            ("GET", f"/api/v1/clients/{run.clients[who].id}/meetings", None),
            ("POST", "/api/v1/crm/connect/hubspot", None),
            ("GET", f"/api/v1/crm/config?client_id={other.id}", None),
        ):
            run.call(who, method, path, json=body)
    # Canaries where they do not belong: refused without being echoed.
    pd_key = c["pd"].value
    for kw in (
        {"json": {"api_key": pd_key + " x"}},
        {"json": {"api_key": pd_key * 40}},
        {"json": {"api_key": "k", "apikey": pd_key}},
        {"json": {"api_key": 5, "api_base_url": pd_key}},
        {
            "content": b'{"api_key": "' + pd_key.encode(),
            "headers": {"Content-Type": "application/json"},
        },
        {
            "content": json.dumps({"api_key": pd_key}).encode(),
            "headers": {"Content-Type": "text/plain"},
        },
    ):
        assert run.call("other", "POST", "/api/v1/crm/connect/close", **kw).status_code in (
            400,
            415,
            422,
        )
    assert run.call("other", "GET", f"/api/v1/crm/logs?operation={pd_key}").status_code == 422

    # The fake CRMs echo the credentials they were sent in their error answers.
    for vendor, account, path, echoed in (
        ("pipedrive", c["pd"].value, "/api/v2/pipelines", f"bad api_token={pd_key}"),
        ("close", c["close"].value, "/api/v1/pipeline/", f"key {c['close'].value} is suspended"),
        ("hubspot", access, "/crm/v3/owners", f"Authorization: Bearer {access}"),
    ):
        api.sandbox.admin(vendor).add_faults(
            [
                {
                    "token": account,
                    "method": "GET",
                    "path": path,
                    "kind": "status",
                    "status": status,
                    "message": echoed,
                    "times": 1,
                }
                for status in (503, 400)
            ]
        )
        who = {"pipedrive": "pd", "close": "cl", "hubspot": "hs"}[vendor]
        run.call(
            who, "GET", "/api/v1/crm/pipelines" if vendor != "hubspot" else "/api/v1/crm/users"
        )
        run.call(who, "POST", "/api/v1/crm/test")
    # An agency-wide token too; then each disconnects.
    agency = api.token(None, "canary agency")
    run.secrets.append(Secret("agency-token", agency))
    for who in ("pd", "cl", "hs"):
        run.call(agency, "GET", f"/api/v1/crm/config?client_id={run.clients[who].id}")
        assert run.call(who, "DELETE", "/api/v1/crm/disconnect").status_code == 200


@pytest.fixture(scope="module")
def run(api: Api) -> Iterator[Run]:
    canaries = {t: canary(t) for t in ("pd", "close", "pd-refused", "close-refused")}
    clients = {}
    for who in ("pd", "cl", "hs", "other"):
        row = api.make().client(name=f"API canary {who}")
        clients[who] = Tenant(row, api.token(row, f"canary {who}"))
    result = Run(api, clients, canaries)
    with every_log_record(result.records):
        scenario(result)
    result.secrets += [
        *canaries.values(),
        *(Secret(f"token-{who}", t.token) for who, t in clients.items()),
    ]
    yield result


def responses_text(run: Run) -> str:
    return "\n".join(
        f"{label} -> {r.status_code}\n{r.headers!r}\n{r.text}" for label, r in run.exchanges
    )


def server_log_text(run: Run) -> str:
    """What the API server logged (its thread's records: not the test's own client, nor the
    fake CRMs, which are given the secrets)."""
    return "\n".join(record_text(r) for r in run.records if r.threadName == "api-server")


def database_text(run: Run) -> str:
    return "\n".join(
        [
            table_text(run.api.seed, "crm_push_log"),
            table_text(
                run.api.seed,
                "client_crm_configs",
                without=("api_key", "oauth_access_token", "oauth_refresh_token"),
            ),
            table_text(run.api.seed, "crm_push_queue"),
        ]
    )


SINKS = {
    "responses": responses_text,
    "server log": server_log_text,
    "push log, configs and queue": database_text,
}


@pytest.mark.parametrize("where", SINKS)
def test_no_secret_in_any_form_reaches(run: Run, where: str) -> None:
    text = SINKS[where](run)
    assert text.strip(), f"{where}: nothing to search"
    found = leaks(text, run.secrets)
    assert found == [], f"{where} holds a secret:\n" + "\n".join(found)


def test_the_run_is_not_vacuous(run: Run) -> None:
    statuses = {}
    for label, response in run.exchanges:
        statuses.setdefault(label.split("?")[0], set()).add(response.status_code)
    # Connected three ways, refused twice, every route answered, errors included.
    assert statuses["POST /api/v1/crm/connect/pipedrive"] >= {200, 400}
    assert statuses["POST /api/v1/crm/connect/close"] >= {200, 400, 415, 422}
    assert statuses["GET callback"] == {200, 400}  # the second time: the state was used
    assert statuses["PUT /api/v1/crm/config"] >= {200, 422}
    assert statuses["GET /api/v1/crm/pipelines"] >= {200, 502}
    assert statuses["GET /api/v1/crm/users"] >= {200, 502}
    assert statuses["GET /api/v1/crm/config"] >= {200, 404}
    assert statuses["DELETE /api/v1/crm/disconnect"] == {200}
    responses = responses_text(run)
    assert "********" in responses and '<h1 id="outcome">Connected</h1>' in responses
    # The fakes took the canaries and echoed them; the echoes reached the API, masked.
    for vendor, tag in (("pipedrive", "pd"), ("close", "close")):
        state = run.api.sandbox.admin(vendor).state(token=run.canaries[tag].value)
        assert sum(state["status_counts"].values()) > 5, state["status_counts"]
        rules = [r.to_json() for r in run.api.sandbox.admin(vendor).faults]
        assert any(r["fired"] for r in rules), rules
    masked = [
        r
        for r in run.api.rows("SELECT error_message FROM crm.crm_push_log")
        if REDACTED in (r["error_message"] or "")
    ]
    assert masked, "no echoed credential reached the push log to be masked"
    # The server logged each request (its access log) and was captured at DEBUG.
    log = server_log_text(run)
    assert "agency_crm.api.access" in log and "POST /api/v1/crm/connect/pipedrive 200" in log
    assert any(r.levelno == logging.DEBUG for r in run.records)
    # The secrets searched for include the OAuth flow's.
    names = {s.name for s in run.secrets}
    assert {"oauth-state", "oauth-code", "oauth_access_token", "oauth_refresh_token"} <= names
    assert {"agency-token", "token-pd", "pd", "close-refused"} <= names
