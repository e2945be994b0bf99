"""Fake Pipedrive: auth, users, pipelines/stages paging, persons, organizations, deals, search."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sandbox import configure, state

Client = Callable[..., httpx.Client]


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


def assert_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["success"] is False and body["error"] and body["error_info"]
    assert body["data"] is None and body["additional_data"] is None
    return body


def stages(pd: httpx.Client) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = ok(pd.get("/api/v2/stages"))
    return data


def test_401_body(client: Client, token: str) -> None:
    for c in (client("pipedrive"), client("pipedrive", "wrong-token")):
        r = c.get("/v1/users/me")
        assert r.status_code == 401
        body = r.json()
        assert body["success"] is False and body["error"] == "unauthorized access"
        assert body["errorCode"] == 401 and body["error_info"]
    legacy = client("pipedrive").get("/v1/users/me", params={"api_token": token})
    assert legacy.status_code == 200


def test_users(pd: httpx.Client) -> None:
    me = ok(pd.get("/v1/users/me"))
    assert me["is_you"] is True and me["company_id"] and me["email"]
    r = pd.get("/v1/users", params={"limit": 1})
    users = ok(r)
    assert len(users) == 1 and users[0]["id"] == me["id"]
    pagination = r.json()["additional_data"]["pagination"]
    assert pagination == {"start": 0, "limit": 1, "more_items_in_collection": True, "next_start": 1}
    rest = pd.get("/v1/users", params={"start": 1, "limit": 1})
    assert rest.json()["additional_data"]["pagination"]["more_items_in_collection"] is False


def test_pipelines_and_stage_cursor_paging(pd: httpx.Client) -> None:
    (pipeline,) = ok(pd.get("/api/v2/pipelines"))
    assert {"id", "name", "order_nr", "is_deleted", "is_deal_probability_enabled"} <= set(pipeline)
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"pipeline_id": pipeline["id"], "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = pd.get("/api/v2/stages", params=params)
        seen += [s["id"] for s in ok(r)]
        cursor = r.json()["additional_data"]["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and len(set(seen)) == 5
    assert all(s["pipeline_id"] == pipeline["id"] for s in stages(pd))
    assert ok(pd.get("/api/v2/stages", params={"pipeline_id": 999999})) == []
    assert_error(pd.get("/api/v2/stages", params={"cursor": "garbage!"}), 400)
    assert_error(pd.get("/api/v2/stages", params={"limit": 501}), 400)


def test_persons(pd: httpx.Client, token: str) -> None:
    org = ok(pd.post("/api/v2/organizations", json={"name": "Acme", "custom_fields": {"k": "O1"}}))
    owner = ok(pd.get("/v1/users"))[1]["id"]
    person = ok(
        pd.post(
            "/api/v2/persons",
            json={
                "name": "Ann Lee",
                "emails": [{"value": "ann@acme.com", "primary": True, "label": "work"}],
                "org_id": org["id"],
                "owner_id": owner,
                "custom_fields": {"a" * 40: "P-1"},
            },
        )
    )
    assert person["first_name"] == "Ann" and person["last_name"] == "Lee"
    assert person["org_id"] == org["id"] and person["owner_id"] == owner
    assert person["custom_fields"] == {"a" * 40: "P-1"}
    assert ok(pd.get(f"/api/v2/persons/{person['id']}")) == person
    assert ok(pd.get(f"/api/v2/organizations/{org['id']}"))["name"] == "Acme"
    assert_error(pd.get("/api/v2/persons/424242"), 404)
    assert_error(pd.get("/api/v2/persons/abc"), 400)
    s = state(pd, token)
    assert [p["id"] for p in s["persons"]] == [person["id"]]
    assert [o["id"] for o in s["organizations"]] == [org["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "X", "org_id": 999999},
        {"name": "X", "owner_id": 1},
        {"name": "X", "emails": ["a@b.com"]},
        {"name": "X", "emails": [{"value": "a@b.com", "primary": "yes"}]},
        {"name": "X", "email": "a@b.com"},
        {"name": "X", "custom_fields": []},
    ],
)
def test_person_validation(pd: httpx.Client, token: str, body: dict[str, Any]) -> None:
    assert_error(pd.post("/api/v2/persons", json=body), 400)
    assert state(pd, token)["persons"] == []


def test_organization_validation(pd: httpx.Client) -> None:
    assert_error(pd.post("/api/v2/organizations", json={}), 400)
    assert_error(pd.post("/api/v2/organizations", json={"name": "A", "owner_id": 5}), 400)


def test_deal_create_defaults_and_references(pd: httpx.Client) -> None:
    person = ok(pd.post("/api/v2/persons", json={"name": "P"}))
    org = ok(pd.post("/api/v2/organizations", json={"name": "O"}))
    first_stage = stages(pd)[0]
    deal = ok(pd.post("/api/v2/deals", json={"title": "D"}))
    assert (
        deal["stage_id"] == first_stage["id"] and deal["pipeline_id"] == first_stage["pipeline_id"]
    )
    assert deal["status"] == "open" and deal["currency"] == "USD" and deal["value"] == 0
    third = stages(pd)[2]
    full = ok(
        pd.post(
            "/api/v2/deals",
            json={
                "title": "Full",
                "value": 1234.5,
                "currency": "EUR",
                "person_id": person["id"],
                "org_id": org["id"],
                "stage_id": third["id"],
                "probability": 40,
                "expected_close_date": "2026-12-31",
                "custom_fields": {"key": "K-9"},
            },
        )
    )
    assert full["stage_id"] == third["id"] and full["value"] == 1234.5
    assert full["person_id"] == person["id"] and full["org_id"] == org["id"]
    assert ok(pd.get(f"/api/v2/deals/{full['id']}")) == full


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"title": ""},
        {"title": "X", "person_id": 999999},
        {"title": "X", "org_id": 999999},
        {"title": "X", "stage_id": 999999},
        {"title": "X", "pipeline_id": 999999},
        {"title": "X", "owner_id": 3},
        {"title": "X", "status": "closed"},
        {"title": "X", "value": "100"},
        {"title": "X", "currency": "euro"},
        {"title": "X", "lost_reason": "price"},
        {"title": "X", "expected_close_date": "31.12.2026"},
        {"title": "X", "probability": 101},
        {"title": "X", "user_id": 1},
    ],
)
def test_deal_validation(pd: httpx.Client, token: str, body: dict[str, Any]) -> None:
    assert_error(pd.post("/api/v2/deals", json=body), 400)
    assert state(pd, token)["deals"] == []


def test_deal_patch(pd: httpx.Client) -> None:
    deal = ok(pd.post("/api/v2/deals", json={"title": "D", "custom_fields": {"a": "1", "b": "2"}}))
    path = f"/api/v2/deals/{deal['id']}"
    last = stages(pd)[-1]
    moved = ok(
        pd.patch(path, json={"stage_id": last["id"], "value": 99, "custom_fields": {"a": None}})
    )
    assert moved["stage_id"] == last["id"] and moved["value"] == 99
    assert moved["stage_change_time"] is not None
    assert moved["custom_fields"] == {"b": "2"}
    won = ok(pd.patch(path, json={"status": "won"}))
    assert won["status"] == "won" and won["won_time"] and won["close_time"]
    assert_error(pd.patch(path, json={"lost_reason": "price"}), 400)
    lost = ok(pd.patch(path, json={"status": "lost", "lost_reason": "price"}))
    assert lost["lost_reason"] == "price" and lost["won_time"] is None and lost["lost_time"]
    reopened = ok(pd.patch(path, json={"status": "open"}))
    assert reopened["lost_reason"] is None and reopened["close_time"] is None
    assert_error(pd.patch(path, json={"status": "done"}), 400)
    assert_error(pd.patch(path, json={"stage_id": 999999}), 400)
    assert ok(pd.get(path))["status"] == "open"  # failed PATCHes changed nothing
    assert_error(pd.patch("/api/v2/deals/999999", json={"title": "x"}), 404)


def test_search(pd: httpx.Client) -> None:
    org = ok(
        pd.post(
            "/api/v2/organizations", json={"name": "Globex Corp", "custom_fields": {"ok": "ORG-1"}}
        )
    )
    person = ok(
        pd.post(
            "/api/v2/persons",
            json={
                "name": "Hank Scorpio",
                "emails": [{"value": "Hank@Globex.com", "primary": True, "label": "work"}],
                "org_id": org["id"],
                "custom_fields": {"pk": "PER-1"},
            },
        )
    )
    deal = ok(
        pd.post(
            "/api/v2/deals",
            json={
                "title": "Globex deal",
                "person_id": person["id"],
                "custom_fields": {"dk": "DEAL-1"},
            },
        )
    )

    def search(entity: str, **params: Any) -> list[dict[str, Any]]:
        data = ok(pd.get(f"/api/v2/{entity}/search", params=params))
        return list(data["items"])

    (hit,) = search("persons", term="hank@globex.COM", fields="email", exact_match="true")
    assert hit["item"]["id"] == person["id"] and hit["result_score"] > 0
    assert hit["item"]["emails"] == ["Hank@Globex.com"]
    assert hit["item"]["organization"]["id"] == org["id"]
    assert search("persons", term="hank@globex", fields="email", exact_match="true") == []
    assert len(search("persons", term="hank@globex", fields="email")) == 1
    assert search("persons", term="PER-1", fields="custom_fields", exact_match="true")[0]["item"][
        "custom_fields"
    ] == ["PER-1"]
    assert search("persons", term="PER-1", fields="email", exact_match="true") == []
    assert (
        search("organizations", term="globex corp", fields="name", exact_match="true")[0]["item"][
            "id"
        ]
        == org["id"]
    )
    assert (
        search("organizations", term="ORG-1", fields="custom_fields", exact_match="true")[0][
            "item"
        ]["id"]
        == org["id"]
    )
    (d,) = search("deals", term="DEAL-1", fields="custom_fields", exact_match="true")
    assert d["item"]["id"] == deal["id"] and d["item"]["person"]["id"] == person["id"]
    assert d["item"]["stage"]["id"] == deal["stage_id"]
    assert (
        search("deals", term="globex deal", fields="title", exact_match="true")[0]["item"]["title"]
        == "Globex deal"
    )
    assert (
        search("deals", term="DEAL-1", fields="custom_fields", exact_match="true", status="won")
        == []
    )
    assert_error(pd.get("/api/v2/persons/search", params={"term": "h"}), 400)
    assert_error(pd.get("/api/v2/persons/search", params={"term": "hank", "fields": "title"}), 400)
    assert_error(pd.get("/api/v2/persons/search"), 400)


def test_search_lag(pd: httpx.Client, token: str) -> None:
    configure(pd, token=token, search_lag_ms=300)
    person = ok(
        pd.post("/api/v2/persons", json={"name": "Laggy", "emails": [{"value": "lag@x.com"}]})
    )
    params = {"term": "lag@x.com", "fields": "email", "exact_match": "true"}
    assert ok(pd.get("/api/v2/persons/search", params=params))["items"] == []
    assert ok(pd.get(f"/api/v2/persons/{person['id']}"))["id"] == person["id"]
    time.sleep(0.35)
    (hit,) = ok(pd.get("/api/v2/persons/search", params=params))["items"]
    assert hit["item"]["id"] == person["id"]


def test_unknown_route(pd: httpx.Client) -> None:
    assert_error(pd.get("/v1/persons"), 404)
    assert_error(pd.delete("/api/v2/deals/1"), 405)
