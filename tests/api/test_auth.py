"""Who may call: a bearer token of one client, or an agency-wide one naming the client; and a
client's token never sees, changes or learns the existence of another client's data."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Api, Tenant, assert_problem
from tests.api.seeding import connect_sandbox, seed_history

# Every route but the OAuth callback (test_connect.py), with a body it would take.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/clients/{client}/meetings", None),
    ("GET", "/api/v1/crm/config", None),
    ("PUT", "/api/v1/crm/config", {"owner_id": "1"}),
    ("POST", "/api/v1/crm/connect/hubspot", None),
    ("POST", "/api/v1/crm/connect/pipedrive", {"api_key": "sbx_pipedrive_nope"}),
    ("POST", "/api/v1/crm/connect/close", {"api_key": "sbx_close_nope"}),
    ("DELETE", "/api/v1/crm/disconnect", None),
    ("POST", "/api/v1/crm/test", None),
    ("GET", "/api/v1/crm/pipelines", None),
    ("GET", "/api/v1/crm/stages/1", None),
    ("GET", "/api/v1/crm/users", None),
    ("GET", "/api/v1/crm/logs", None),
]
IDS = [f"{method} {path}" for method, path, _ in ROUTES]


def target(path: str, client: str) -> str:
    """The route's URL acting for ``client``: in the path, or as ?client_id=."""
    if "{client}" in path:
        return path.format(client=client)
    return f"{path}?client_id={client}"


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=IDS)
def test_no_token_an_unknown_one_or_a_revoked_one_is_a_401(
    api: Api, tenant: Callable[..., Tenant], method: str, path: str, body: Any
) -> None:
    a = tenant()
    url = path.format(client=a.id)
    revoked = api.token(a.row, "revoked")
    api.revoke(revoked)
    for headers in (
        {},
        {"Authorization": f"Bearer acrm_{'x' * 43}"},
        {"Authorization": f"Bearer {revoked}"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": f"Basic {a.token}"},
        {"Authorization": a.token},
    ):
        response = api.call(method, url, json=body, headers=headers)
        assert_problem(response, 401, "unauthorized")
    # The same request with the client's live token is not refused for who is calling.
    assert api.call(method, url, a.token, json=body).status_code != 401


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=IDS)
def test_a_client_token_naming_another_client_gets_the_404_of_a_client_that_does_not_exist(
    api: Api, tenant: Callable[..., Tenant], method: str, path: str, body: Any
) -> None:
    a, b = tenant(), tenant()
    nobody = str(uuid.uuid4())
    theirs = api.call(method, target(path, b.id), a.token, json=body)
    missing = api.call(method, target(path, nobody), a.token, json=body)
    other = assert_problem(theirs, 404, "client_not_found")
    none = assert_problem(missing, 404, "client_not_found")
    # Told apart by nothing but the id the caller sent.
    assert other["detail"].replace(b.id, "X") == none["detail"].replace(nobody, "X")
    assert {k: v for k, v in other.items() if k not in ("detail", "instance")} == {
        k: v for k, v in none.items() if k not in ("detail", "instance")
    }
    assert theirs.headers.keys() == missing.headers.keys()
    # Its own id is fine (the 404 above is about the other client, not the parameter).
    own = api.call(method, target(path, a.id), a.token, json=body)
    assert own.status_code != 401 and own.json().get("code") != "client_not_found"


def snapshot(api: Api, client_id: Any) -> dict[str, list[dict[str, Any]]]:
    """Every row of a client an API call could change."""
    out = {}
    for table in (
        "crm.client_crm_configs",
        "crm.crm_push_queue",
        "crm.crm_push_log",
        "crm.meetings",
        "crm_private.oauth_states",
    ):
        out[table] = api.rows(f"SELECT * FROM {table} WHERE client_id = %s ORDER BY 1", client_id)
    return out


def test_another_client_s_rows_and_crm_are_untouched_by_every_route(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a, b = tenant(), tenant()
    crm = connect_sandbox(api.make(), api.sandbox, b.row, "pipedrive")
    history = seed_history(api.make(), b.row)  # its bookings queue pushes
    before = snapshot(api, b.row["id"])
    calls_before = crm.state()["requests"]
    assert before["crm.client_crm_configs"] and before["crm.crm_push_queue"]
    for method, path, body in ROUTES:
        response = api.call(method, target(path, b.id), a.token, json=body)
        assert_problem(response, 404, "client_not_found")
    assert snapshot(api, b.row["id"]) == before
    assert crm.state()["requests"] == calls_before
    # Not vacuous: B's own token reads what A could not.
    assert api.call("GET", "/api/v1/crm/config", b.token).json()["id"] == str(crm.config["id"])
    meetings = api.call("GET", f"/api/v1/clients/{b.id}/meetings", b.token).json()
    assert len(meetings["items"]) == len(history.meetings)
    assert len(api.call("GET", "/api/v1/crm/logs", b.token).json()["items"]) == 3


def test_an_agency_wide_token_names_the_client(api: Api, tenant: Callable[..., Tenant]) -> None:
    a = tenant()
    seed_history(api.make(), a.row, meetings=2, logs=1)
    agency = api.token(None, "agency")
    unnamed = api.call("GET", "/api/v1/crm/logs", agency)
    body = assert_problem(unnamed, 422, "validation_error", "query.client_id")
    assert "agency-wide" in body["detail"]
    logs = api.call("GET", f"/api/v1/crm/logs?client_id={a.id}", agency)
    assert logs.status_code == 200 and len(logs.json()["items"]) == 1
    meetings = api.call("GET", f"/api/v1/clients/{a.id}/meetings", agency)
    assert meetings.status_code == 200 and len(meetings.json()["items"]) == 2
    nobody = uuid.uuid4()
    assert_problem(
        api.call("GET", f"/api/v1/crm/config?client_id={nobody}", agency), 404, "client_not_found"
    )
    assert_problem(
        api.call("GET", f"/api/v1/clients/{nobody}/meetings", agency), 404, "client_not_found"
    )
    # A client token may name its own client; and a soft-deleted client is gone.
    assert api.call("GET", f"/api/v1/crm/logs?client_id={a.id}", a.token).status_code == 200
    api.rows("UPDATE crm.clients SET deleted_at = now() WHERE id = %s RETURNING id", a.row["id"])
    assert_problem(api.call("GET", "/api/v1/crm/logs", a.token), 404, "client_not_found")


def test_a_token_is_checked_by_its_digest_and_its_use_is_noted(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    [row] = api.rows(
        "SELECT token_hash, token_prefix, last_used_at FROM crm_private.api_tokens"
        " WHERE client_id = %s",
        a.row["id"],
    )
    assert row["last_used_at"] is None and a.token.startswith(row["token_prefix"])
    assert a.token.encode() not in bytes(row["token_hash"])
    assert api.call("GET", "/api/v1/crm/logs", a.token).status_code == 200
    [row] = api.rows(
        "SELECT last_used_at FROM crm_private.api_tokens WHERE client_id = %s", a.row["id"]
    )
    assert row["last_used_at"] is not None
