"""Fake Close: auth, users, pipelines, leads, contacts, opportunities, data search."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sandbox import configure, state

Client = Callable[..., httpx.Client]

#: Fields the spec's Lead / Opportunity schemas require.
LEAD_REQUIRED = {
    "contact_ids",
    "created_by",
    "date_created",
    "date_updated",
    "description",
    "html_url",
    "id",
    "name",
    "organization_id",
    "status_id",
    "updated_by",
    "url",
}
OPP_REQUIRED = {
    "annualized_expected_value",
    "annualized_value",
    "confidence",
    "contact_id",
    "created_by",
    "date_created",
    "date_lost",
    "date_updated",
    "date_won",
    "expected_value",
    "id",
    "lead_id",
    "note",
    "organization_id",
    "status_id",
    "updated_by",
    "user_id",
    "value",
    "value_period",
}


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def field_errors(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["errors"] == [] or isinstance(body["errors"], list)
    errors: dict[str, Any] = body["field-errors"]
    return errors


def statuses(cl: httpx.Client) -> dict[str, str]:
    """label -> status id."""
    return {s["label"]: s["id"] for s in ok(cl.get("/api/v1/status/opportunity/"))["data"]}


def lead(cl: httpx.Client, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "Acme",
        "contacts": [
            {
                "name": "Wile E.",
                "title": "Buyer",
                "emails": [{"email": "wile@acme.com", "type": "office"}],
                "phones": [{"phone": "+1 650 555 0100", "type": "office"}],
            }
        ],
        **extra,
    }
    return ok(cl.post("/api/v1/lead/", json=body))


def search_body(object_type: str, condition: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    return {
        "query": {
            "type": "and",
            "queries": [{"type": "object_type", "object_type": object_type}, condition],
        },
        "_fields": {object_type: fields},
        "_limit": 10,
    }


def by_email(email: str) -> dict[str, Any]:
    return search_body(
        "contact",
        {
            "type": "has_related",
            "this_object_type": "contact",
            "related_object_type": "contact_email",
            "related_query": {
                "type": "field_condition",
                "field": {
                    "type": "regular_field",
                    "object_type": "contact_email",
                    "field_name": "email",
                },
                "condition": {"type": "text", "mode": "exact_value", "value": email},
            },
        },
        ["id", "lead_id"],
    )


def by_custom(object_type: str, field_id: str, value: str) -> dict[str, Any]:
    return search_body(
        object_type,
        {
            "type": "field_condition",
            "field": {"type": "custom_field", "custom_field_id": field_id},
            "condition": {"type": "text", "mode": "exact_value", "value": value},
        },
        ["id", "lead_id"] if object_type == "opportunity" else ["id", "name"],
    )


def test_401(client: Client, token: str) -> None:
    for c in (
        client("close"),
        client("close", "bad-key"),
        client("close", headers={"Authorization": "Basic !!"}),
    ):
        r = c.get("/api/v1/me/")
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
    bearer = client("close", headers={"Authorization": f"Bearer {token}"})
    assert bearer.get("/api/v1/me/").status_code == 200


def test_me_users_pipelines(cl: httpx.Client) -> None:
    me = ok(cl.get("/api/v1/me/"))
    assert me["id"].startswith("user_") and me["organizations"][0]["id"].startswith("orga_")
    page = ok(cl.get("/api/v1/user/", params={"_limit": 1}))
    assert page["has_more"] is True and page["data"][0]["id"] == me["id"]
    rest = ok(cl.get("/api/v1/user/", params={"_skip": 1, "_limit": 1}))
    assert rest["has_more"] is False and rest["data"][0]["id"] != me["id"]
    pipelines = ok(cl.get("/api/v1/pipeline/"))
    (pipe,) = pipelines["data"]
    assert pipe["id"].startswith("pipe_") and pipelines["has_more"] is False
    kinds = {s["type"] for s in pipe["statuses"]}
    assert kinds == {"active", "won", "lost"}
    assert all(s["id"].startswith("stat_") for s in pipe["statuses"])
    assert set(statuses(cl).values()) == {s["id"] for s in pipe["statuses"]}
    # Paths end with a slash.
    assert cl.get("/api/v1/me").status_code == 404


def test_create_lead(cl: httpx.Client, token: str) -> None:
    created = lead(cl, **{"custom.cf_key123": "LEAD-1", "description": "d"})
    assert LEAD_REQUIRED <= set(created)
    assert created["id"].startswith("lead_") and len(created["id"]) == 48
    (c,) = created["contacts"]
    assert c["id"].startswith("cont_") and c["lead_id"] == created["id"]
    assert c["emails"] == [
        {
            "email": "wile@acme.com",
            "email_lower": "wile@acme.com",
            "type": "office",
            "is_unsubscribed": False,
        }
    ]
    assert created["contact_ids"] == [c["id"]]
    assert created["custom.cf_key123"] == "LEAD-1"
    assert created["status_label"] == "Potential" and created["description"] == "d"
    assert ok(cl.get(f"/api/v1/lead/{created['id']}/")) == created
    assert cl.get("/api/v1/lead/lead_missing/").status_code == 404
    s = state(cl, token)
    assert s["leads"][0]["contacts"][0]["id"] == c["id"] and s["opportunities"] == []


def test_lead_validation(cl: httpx.Client, token: str) -> None:
    errors = field_errors(
        cl.post("/api/v1/lead/", json={"name": "X", "contacts": [{"emails": [{"email": "nope"}]}]})
    )
    assert "emails" in errors["contacts"]["field-errors"]["0"]["field-errors"]
    assert "custom.Key" in field_errors(
        cl.post("/api/v1/lead/", json={"name": "X", "custom.Key": "v"})
    )
    assert "status_id" in field_errors(cl.post("/api/v1/lead/", json={"status_id": "stat_nope"}))
    assert state(cl, token)["leads"] == []


def test_create_contact(cl: httpx.Client) -> None:
    created = lead(cl)
    contact = ok(
        cl.post(
            "/api/v1/contact/",
            json={
                "lead_id": created["id"],
                "name": "Road Runner",
                "emails": [{"email": "rr@acme.com", "type": "office"}],
            },
        )
    )
    assert contact["lead_id"] == created["id"] and contact["id"].startswith("cont_")
    assert ok(cl.get(f"/api/v1/contact/{contact['id']}/"))["name"] == "Road Runner"
    assert len(ok(cl.get(f"/api/v1/lead/{created['id']}/"))["contacts"]) == 2
    assert "lead_id" in field_errors(
        cl.post("/api/v1/contact/", json={"lead_id": "lead_x", "name": "N"})
    )
    alone = ok(cl.post("/api/v1/contact/", json={"name": "Solo"}))
    assert ok(cl.get(f"/api/v1/lead/{alone['lead_id']}/"))["name"] == "Solo"


def test_opportunity_lifecycle(cl: httpx.Client, token: str) -> None:
    created = lead(cl)
    contact_id = created["contacts"][0]["id"]
    user_id = ok(cl.get("/api/v1/user/"))["data"][1]["id"]
    ids = statuses(cl)
    opp = ok(
        cl.post(
            "/api/v1/opportunity/",
            json={
                "lead_id": created["id"],
                "contact_id": contact_id,
                "status_id": ids["Active"],
                "user_id": user_id,
                "value": 150000,
                "value_currency": "USD",
                "value_period": "monthly",
                "confidence": 40,
                "note": "via runner",
                "custom.cf_dealkey": "OPP-1",
            },
        )
    )
    assert OPP_REQUIRED <= set(opp)
    assert opp["id"].startswith("oppo_") and opp["status_type"] == "active"
    assert opp["value"] == 150000 and opp["value_formatted"] == "$1,500 monthly"
    assert opp["annualized_value"] == 1800000 and opp["expected_value"] == 60000
    assert opp["user_id"] == user_id and opp["custom.cf_dealkey"] == "OPP-1"
    assert opp["pipeline_id"].startswith("pipe_") and opp["date_won"] is None
    path = f"/api/v1/opportunity/{opp['id']}/"
    won = ok(cl.put(path, json={"status_id": ids["Won"], "value": 200000}))
    assert won["status_type"] == "won" and won["date_won"] and won["value"] == 200000
    assert won["note"] == "via runner" and won["confidence"] == 40  # partial update
    assert ok(cl.get(path)) == won
    lost = ok(cl.put(path, json={"status_id": ids["Lost"]}))
    assert lost["status_type"] == "lost" and lost["date_lost"]
    assert cl.put("/api/v1/opportunity/oppo_missing/", json={}).status_code == 404
    assert cl.get("/api/v1/opportunity/oppo_missing/").status_code == 404
    s = state(cl, token)
    assert [o["id"] for o in s["opportunities"]] == [opp["id"]]
    assert s["leads"][0]["opportunities"][0]["id"] == opp["id"]


def test_opportunity_defaults(cl: httpx.Client) -> None:
    created = lead(cl)
    opp = ok(cl.post("/api/v1/opportunity/", json={"lead_id": created["id"]}))
    assert opp["status_label"] == "Active" and opp["value_period"] == "one_time"
    assert opp["user_id"] == ok(cl.get("/api/v1/me/"))["id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "lead_id"),
        ({"lead_id": "lead_nope"}, "lead_id"),
        ({"value": 10.5}, "value"),
        ({"value": "100"}, "value"),
        ({"confidence": 101}, "confidence"),
        ({"value_period": "weekly"}, "value_period"),
        ({"status_id": "stat_nope"}, "status_id"),
        ({"pipeline_id": "pipe_nope"}, "pipeline_id"),
        ({"user_id": "user_nope"}, "user_id"),
        ({"contact_id": "cont_nope"}, "contact_id"),
    ],
)
def test_opportunity_validation(
    cl: httpx.Client, token: str, body: dict[str, Any], field: str
) -> None:
    created = lead(cl)
    if field != "lead_id":
        body = {"lead_id": created["id"], **body}
    assert field in field_errors(cl.post("/api/v1/opportunity/", json=body))
    assert state(cl, token)["opportunities"] == []


def test_opportunity_contact_must_belong_to_lead(cl: httpx.Client) -> None:
    one, two = lead(cl), lead(cl, name="Other")
    body = {"lead_id": one["id"], "contact_id": two["contacts"][0]["id"]}
    assert "contact_id" in field_errors(cl.post("/api/v1/opportunity/", json=body))
    opp = ok(cl.post("/api/v1/opportunity/", json={"lead_id": one["id"]}))
    assert "value" in field_errors(cl.put(f"/api/v1/opportunity/{opp['id']}/", json={"value": 1.5}))


def test_data_search(cl: httpx.Client) -> None:
    first = lead(cl, **{"custom.cf_lk": "LEAD-KEY"})
    lead(cl, name="Other", contacts=[{"name": "O", "emails": [{"email": "o@other.com"}]}])
    opp = ok(
        cl.post("/api/v1/opportunity/", json={"lead_id": first["id"], "custom.cf_ok": "OPP-KEY"})
    )
    found = ok(cl.post("/api/v1/data/search/", json=by_email("WILE@acme.com")))
    assert found == {
        "data": [
            {"__object_type": "contact", "id": first["contacts"][0]["id"], "lead_id": first["id"]}
        ],
        "cursor": None,
    }
    assert ok(cl.post("/api/v1/data/search/", json=by_email("nobody@acme.com")))["data"] == []
    opps = ok(cl.post("/api/v1/data/search/", json=by_custom("opportunity", "cf_ok", "OPP-KEY")))
    assert opps["data"] == [
        {"__object_type": "opportunity", "id": opp["id"], "lead_id": first["id"]}
    ]
    leads = ok(cl.post("/api/v1/data/search/", json=by_custom("lead", "cf_lk", "lead-key")))
    assert leads["data"] == [{"__object_type": "lead", "id": first["id"], "name": "Acme"}]
    assert (
        ok(cl.post("/api/v1/data/search/", json=by_custom("lead", "cf_ok", "OPP-KEY")))["data"]
        == []
    )


def test_data_search_paging(cl: httpx.Client) -> None:
    ids = {lead(cl, **{"custom.cf_same": "S"})["id"] for _ in range(3)}
    body = {**by_custom("lead", "cf_same", "S"), "_limit": 2}
    page = ok(cl.post("/api/v1/data/search/", json=body))
    assert len(page["data"]) == 2 and page["cursor"]
    rest = ok(cl.post("/api/v1/data/search/", json={**body, "cursor": page["cursor"]}))
    assert rest["cursor"] is None
    assert {r["id"] for r in page["data"] + rest["data"]} == ids


@pytest.mark.parametrize(
    "query",
    [
        {"type": "object_type", "object_type": "task"},
        {"type": "and", "queries": [{"type": "text", "value": "x"}]},
        {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": "lead"},
                {
                    "type": "field_condition",
                    "field": {"type": "custom_field", "custom_field_id": "cf_x"},
                    "condition": {"type": "text", "mode": "phrase", "value": "x"},
                },
            ],
        },
        {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": "lead"},
                {"type": "has_related", "this_object_type": "lead", "related_object_type": "task"},
            ],
        },
    ],
)
def test_data_search_unsupported_shapes(cl: httpx.Client, query: dict[str, Any]) -> None:
    assert "query" in field_errors(cl.post("/api/v1/data/search/", json={"query": query}))


def test_search_lag(cl: httpx.Client, token: str) -> None:
    configure(cl, token=token, search_lag_ms=300)
    created = lead(cl)
    assert ok(cl.post("/api/v1/data/search/", json=by_email("wile@acme.com")))["data"] == []
    assert ok(cl.get(f"/api/v1/lead/{created['id']}/"))["id"] == created["id"]
    time.sleep(0.35)
    assert len(ok(cl.post("/api/v1/data/search/", json=by_email("wile@acme.com")))["data"]) == 1
