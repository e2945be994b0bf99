"""The /crm routes of a connected client: its config (secrets masked), changing it (each id
checked against the CRM first), the CRM's catalog, the connection test, and disconnecting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.conftest import Api, Tenant, assert_problem
from tests.api.seeding import connect_sandbox, seed_history
from tests.helpers.fixtures import unseal
from tests.push.conftest import Crm, stage_ids

VENDORS = ("hubspot", "pipedrive", "close")


@pytest.fixture
def connected(api: Api, tenant: Callable[..., Tenant]) -> Callable[[str], tuple[Tenant, Crm]]:
    def make(vendor: str) -> tuple[Tenant, Crm]:
        a = tenant()
        return a, connect_sandbox(api.make(), api.sandbox, a.row, vendor)

    return make


def config_row(api: Api, client_id: Any) -> dict[str, Any]:
    [row] = api.rows(
        "SELECT * FROM crm.client_crm_configs WHERE client_id = %s AND deleted_at IS NULL",
        client_id,
    )
    return row


def test_no_config_is_a_404_saying_how_to_connect(api: Api, tenant: Callable[..., Tenant]) -> None:
    a = tenant()
    for method, path in (
        ("GET", "/api/v1/crm/config"),
        ("DELETE", "/api/v1/crm/disconnect"),
        ("POST", "/api/v1/crm/test"),
        ("GET", "/api/v1/crm/pipelines"),
        ("GET", "/api/v1/crm/users"),
    ):
        body = assert_problem(api.call(method, path, a.token), 404, "no_crm_config")
        assert a.id in body["detail"]
    hint = assert_problem(api.call("GET", "/api/v1/crm/config", a.token), 404, "no_crm_config")
    assert "POST /api/v1/crm/connect/" in hint["hint"]


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_config_comes_back_with_its_secrets_masked(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]], vendor: str
) -> None:
    a, crm = connected(vendor)
    response = api.call("GET", "/api/v1/crm/config", a.token)
    assert response.status_code == 200, response.text
    config = response.json()
    assert (config["id"], config["crm_type"], config["connection_status"]) == (
        str(crm.config["id"]),
        vendor,
        "connected",
    )
    assert config["pipeline_id"] == crm.config["pipeline_id"]
    expected = {
        "api_key": None if vendor == "hubspot" else "********",
        "oauth_access_token": "********" if vendor == "hubspot" else None,
        "oauth_refresh_token": "********" if vendor == "hubspot" else None,
    }
    credentials = config["credentials"]
    assert {k: credentials[k] for k in expected} == expected
    assert (credentials["oauth_expires_at"] is None) == (vendor != "hubspot")
    stored = config_row(api, a.row["id"])
    for column in ("api_key", "oauth_access_token", "oauth_refresh_token"):
        if stored[column]:
            assert stored[column] not in response.text
            assert unseal(a.row["id"], column, stored[column]) not in response.text


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_crm_catalog_pipelines_stages_and_users(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]], vendor: str
) -> None:
    a, crm = connected(vendor)
    pipeline_id, first_stage, _, _ = stage_ids(vendor, crm.account)
    pipelines = api.call("GET", "/api/v1/crm/pipelines", a.token).json()
    assert [p["id"] for p in pipelines] == [str(p["id"]) for p in crm.account["pipelines"]]
    stages = api.call("GET", f"/api/v1/crm/stages/{pipeline_id}", a.token).json()
    assert [s["id"] for s in stages] == [
        str(s["id"]) for s in crm.account["pipelines"][0]["stages"]
    ]
    assert first_stage in {s["id"] for s in stages} and all(s["label"] for s in stages)
    assert pipelines[0]["stages"] == stages
    users = api.call("GET", "/api/v1/crm/users", a.token).json()
    assert [u["id"] for u in users] == [str(u["id"]) for u in crm.account["users"]]
    missing = api.call("GET", "/api/v1/crm/stages/no-such-pipeline", a.token)
    assert_problem(missing, 404, "pipeline_not_found")
    # Each call to the CRM is in the client's push log.
    operations = [
        r["operation"] for r in api.call("GET", "/api/v1/crm/logs", a.token).json()["items"]
    ]
    assert operations, "the catalog calls were not logged"


def test_changing_the_config_checks_each_id_against_the_crm(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]]
) -> None:
    a, crm = connected("pipedrive")
    pipeline_id, _, open_ids, _ = stage_ids("pipedrive", crm.account)
    other_user = str(crm.account["users"][-1]["id"])
    change = {
        "stage_id": open_ids[1],
        "owner_id": other_user,
        "stage_map": {"proposal": open_ids[2]},
    }
    response = api.call("PUT", "/api/v1/crm/config", a.token, json=change)
    assert response.status_code == 200, response.text
    config = response.json()
    assert (config["stage_id"], config["owner_id"], config["stage_map"]) == (
        open_ids[1],
        other_user,
        {"proposal": open_ids[2]},
    )
    assert config["pipeline_id"] == pipeline_id  # left out: kept
    before = config_row(api, a.row["id"])
    for body, field in (
        ({"pipeline_id": "999999"}, "body.pipeline_id"),
        ({"stage_id": "999999"}, "body.stage_id"),
        ({"owner_id": "999999", "stage_id": open_ids[0]}, "body.owner_id"),
        ({"stage_map": {"negotiation": "999999"}}, "body.stage_map.negotiation"),
    ):
        refused = api.call("PUT", "/api/v1/crm/config", a.token, json=body)
        problem = assert_problem(refused, 422, "invalid", field)
        assert "999999" in problem["detail"]
        assert config_row(api, a.row["id"]) == before, "a refused change saved something"
    # null clears a setting.
    cleared = api.call("PUT", "/api/v1/crm/config", a.token, json={"owner_id": None}).json()
    assert cleared["owner_id"] is None and cleared["stage_id"] == open_ids[1]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"pipeline_id": 5}, "body.pipeline_id"),
        ({"pipeline_id": True}, "body.pipeline_id"),
        ({"pipeline_id": ""}, "body.pipeline_id"),
        ({"pipeline_id": "a\u0000b"}, "body.pipeline_id"),
        ({"pipeline_id": "x" * 201}, "body.pipeline_id"),
        ({"stage_map": {"won": "1"}}, "body.stage_map.won.[key]"),
        ({"stage_map": {"proposal": 3}}, "body.stage_map.proposal"),
        ({"stage_map": []}, "body.stage_map"),
        ({"pipline_id": "1"}, "body.pipline_id"),
        ([], "body"),
        ("1", "body"),
    ],
)
def test_a_config_change_is_typed_strictly(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]], body: Any, field: str
) -> None:
    a, _ = connected("close")
    before = config_row(api, a.row["id"])
    response = api.call("PUT", "/api/v1/crm/config", a.token, json=body)
    assert_problem(response, 422, "validation_error", field)
    assert config_row(api, a.row["id"]) == before


def test_the_connection_test_reports_and_records_what_it_found(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]]
) -> None:
    a, crm = connected("close")
    ok = api.call("POST", "/api/v1/crm/test", a.token).json()
    assert ok == {
        "ok": True,
        "connection_status": "connected",
        "problems": [],
        "pipelines": len(crm.account["pipelines"]),
        "users": len(crm.account["users"]),
    }
    api.sandbox.admin("close").set_revoked(crm.token, True)
    refused = api.call("POST", "/api/v1/crm/test", a.token).json()
    assert (refused["ok"], refused["connection_status"]) == (False, "error")
    assert "401" in refused["problems"][0]
    assert config_row(api, a.row["id"])["connection_status"] == "error"
    # The catalog calls with a refused key: the CRM's reason, as a 400.
    body = assert_problem(api.call("GET", "/api/v1/crm/users", a.token), 400, "crm_refused")
    assert "Close refused" in body["detail"]
    api.sandbox.admin("close").set_revoked(crm.token, False)
    assert api.call("POST", "/api/v1/crm/test", a.token).json()["ok"] is True


def test_a_crm_that_cannot_be_asked_is_a_502(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]]
) -> None:
    a, crm = connected("pipedrive")
    crm.fault(method="GET", path="/api/v2/pipelines", kind="status", status=503, times=-1)
    body = assert_problem(api.call("GET", "/api/v1/crm/pipelines", a.token), 502, "crm_unavailable")
    assert "Pipedrive" in body["detail"] and "503" in body["detail"]


def test_disconnecting_skips_the_pending_pushes_and_forgets_the_credentials(
    api: Api, connected: Callable[[str], tuple[Tenant, Crm]]
) -> None:
    a, _ = connected("pipedrive")
    seed_history(api.make(), a.row, meetings=3, logs=0)
    pending = api.rows(
        "SELECT id FROM crm.crm_push_queue WHERE client_id = %s AND status = 'pending'",
        a.row["id"],
    )
    assert len(pending) == 4  # three bookings, and the deal of the first
    response = api.call("DELETE", "/api/v1/crm/disconnect", a.token)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["skipped_pushes"] == 4
    config = result["config"]
    assert (config["is_active"], config["connection_status"]) == (False, "disconnected")
    assert set(config["credentials"].values()) == {None}
    queue = api.rows(
        "SELECT status, last_error FROM crm.crm_push_queue WHERE client_id = %s", a.row["id"]
    )
    assert {q["status"] for q in queue} == {"skipped"}
    assert all("disconnected" in q["last_error"] for q in queue)
    stored = config_row(api, a.row["id"])
    assert (stored["api_key"], stored["oauth_access_token"]) == (None, None)
    # Again: nothing more to skip. The CRM is no longer called.
    assert api.call("DELETE", "/api/v1/crm/disconnect", a.token).json()["skipped_pushes"] == 0
    for path in ("/api/v1/crm/pipelines", "/api/v1/crm/users"):
        assert_problem(api.call("GET", path, a.token), 409, "not_connected")
    assert_problem(api.call("POST", "/api/v1/crm/test", a.token), 409, "not_connected")
    assert_problem(
        api.call("PUT", "/api/v1/crm/config", a.token, json={"owner_id": "1"}), 409, "not_connected"
    )
    # The config stays readable, as history.
    assert api.call("GET", "/api/v1/crm/config", a.token).json()["connection_status"] == (
        "disconnected"
    )
