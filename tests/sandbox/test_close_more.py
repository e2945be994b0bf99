"""Fake Close: lead list and search syntax, lead and contact updates, opportunity list by
lead, and the custom-field APIs whose ids custom.cf_... writes and searches accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Client = Callable[..., httpx.Client]


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def field_errors(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    errors: dict[str, Any] = r.json()["field-errors"]
    return errors


def lead(cl: httpx.Client, name: str, email: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "contacts": [{"name": f"{name} Boss", "emails": [{"email": email}]}]}
    return ok(cl.post("/api/v1/lead/", json={**body, **extra}))


def test_list_leads_paging_and_query(cl: httpx.Client) -> None:
    acme = lead(cl, "Acme Inc", "boss@acme.com", description="rockets", **{"custom.cf_k": "A-1"})
    beta = lead(cl, "Beta Ltd", "ceo@beta.io")
    lead(cl, "Gamma", "g@gamma.org")
    everything = ok(cl.get("/api/v1/lead/"))
    assert everything["total_results"] == 3 and everything["has_more"] is False
    assert {d["id"] for d in everything["data"]} >= {acme["id"], beta["id"]}
    assert everything["data"][0]["contacts"]  # full Lead objects
    page = ok(cl.get("/api/v1/lead/", params={"_skip": 1, "_limit": 1}))
    assert len(page["data"]) == 1 and page["has_more"] is True
    cases = {
        "acme": [acme["id"]],
        'name:"Acme Inc"': [acme["id"]],
        "email:ceo@beta.io": [beta["id"]],
        "rockets": [acme["id"]],
        "custom.cf_k:a-1": [acme["id"]],
        "email:nobody@x.com": [],
        "acme beta": [],
    }
    for query, expected in cases.items():
        found = ok(cl.get("/api/v1/lead/", params={"query": query}))["data"]
        assert [d["id"] for d in found] == expected, query
    assert "query" in field_errors(cl.get("/api/v1/lead/", params={"query": "colour:red"}))
    assert field_errors(cl.get("/api/v1/lead/", params={"_limit": "x"}))


def test_update_lead(cl: httpx.Client) -> None:
    created = lead(cl, "Old", "o@x.com", **{"custom.cf_a": "1", "custom.cf_b": "2"})
    statuses = ok(cl.get("/api/v1/status/lead/"))["data"]
    updated = ok(
        cl.put(
            f"/api/v1/lead/{created['id']}/",
            json={
                "name": "New",
                "status_id": statuses[1]["id"],
                "custom.cf_a": "9",
                "custom.cf_b": None,
            },
        )
    )
    assert updated["name"] == "New" and updated["display_name"] == "New"
    assert updated["status_id"] == statuses[1]["id"]
    assert updated["custom.cf_a"] == "9" and "custom.cf_b" not in updated
    assert updated["contacts"] == created["contacts"]
    by_label = ok(cl.put(f"/api/v1/lead/{created['id']}/", json={"status": statuses[2]["label"]}))
    assert by_label["status_id"] == statuses[2]["id"]
    assert "status_id" in field_errors(
        cl.put(f"/api/v1/lead/{created['id']}/", json={"name": "X", "status_id": "stat_no"})
    )
    assert ok(cl.get(f"/api/v1/lead/{created['id']}/"))["name"] == "New"  # 400 changed nothing
    assert "contacts" in field_errors(
        cl.put(f"/api/v1/lead/{created['id']}/", json={"contacts": []})
    )
    assert cl.put("/api/v1/lead/lead_missing/", json={"name": "N"}).status_code == 404


def test_update_contact(cl: httpx.Client) -> None:
    created = lead(cl, "L", "a@x.com")
    contact_id = created["contacts"][0]["id"]
    updated = ok(
        cl.put(
            f"/api/v1/contact/{contact_id}/",
            json={"title": "CTO", "emails": [{"email": "b@x.com", "type": "office"}]},
        )
    )
    assert updated["title"] == "CTO" and [e["email"] for e in updated["emails"]] == ["b@x.com"]
    assert updated["name"] == "L Boss"
    other = lead(cl, "M", "m@x.com")
    assert "lead_id" in field_errors(
        cl.put(f"/api/v1/contact/{contact_id}/", json={"lead_id": other["id"]})
    )
    assert "emails" in field_errors(cl.put(f"/api/v1/contact/{contact_id}/", json={"emails": 5}))


def test_list_opportunities_by_lead(cl: httpx.Client) -> None:
    first, second = lead(cl, "A", "a@x.com"), lead(cl, "B", "b@x.com")
    made = [
        ok(cl.post("/api/v1/opportunity/", json={"lead_id": first["id"], "value": v}))
        for v in (100, 200)
    ]
    ok(cl.post("/api/v1/opportunity/", json={"lead_id": second["id"]}))
    mine = ok(cl.get("/api/v1/opportunity/", params={"lead_id": first["id"]}))
    assert {o["id"] for o in mine["data"]} == {o["id"] for o in made}
    assert mine["total_results"] == 2 and mine["has_more"] is False
    assert all(o["lead_id"] == first["id"] for o in mine["data"])
    assert ok(cl.get("/api/v1/opportunity/"))["total_results"] == 3
    none = ok(cl.get("/api/v1/opportunity/", params={"lead_id": "lead_missing"}))
    assert none["data"] == [] and none["total_results"] == 0
    active = ok(cl.get("/api/v1/opportunity/", params={"status_type": "active"}))
    assert active["total_results"] == 3


@pytest.mark.parametrize("kind", ["lead", "opportunity"])
def test_custom_fields_api(cl: httpx.Client, kind: str) -> None:
    path = f"/api/v1/custom_field/{kind}/"
    assert ok(cl.get(path)) == {"data": [], "has_more": False}
    created = ok(cl.post(path, json={"name": "agency-crm key", "type": "text"}))
    assert created["id"].startswith("cf_") and len(created["id"]) > 20
    assert created["name"] == "agency-crm key" and created["type"] == "text"
    assert created["accepts_multiple_values"] is False and created["date_created"]
    assert ok(cl.get(path))["data"] == [created]
    assert ok(cl.get(f"{path}{created['id']}/")) == created
    assert cl.get(f"{path}cf_missing/").status_code == 404
    assert "name" in field_errors(cl.post(path, json={"name": "agency-crm key", "type": "text"}))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "text"}, "name"),
        ({"name": "X", "type": "colour"}, "type"),
        ({"name": "X", "type": "choices"}, "choices"),
        ({"name": "X", "type": "choices", "choices": [1]}, "choices"),
        ({"name": "X", "type": "text", "accepts_multiple_values": "no"}, "accepts_multiple_values"),
    ],
)
def test_custom_field_validation(cl: httpx.Client, body: dict[str, Any], field: str) -> None:
    assert field in field_errors(cl.post("/api/v1/custom_field/lead/", json=body))


def test_created_fields_in_writes_and_search(cl: httpx.Client) -> None:
    key = ok(cl.post("/api/v1/custom_field/lead/", json={"name": "Key", "type": "text"}))["id"]
    opp_key = ok(
        cl.post("/api/v1/custom_field/opportunity/", json={"name": "Key", "type": "text"})
    )["id"]
    made = lead(cl, "K", "k@x.com", **{f"custom.{key}": "LEAD-9"})
    assert made[f"custom.{key}"] == "LEAD-9"
    opp = ok(
        cl.post("/api/v1/opportunity/", json={"lead_id": made["id"], f"custom.{opp_key}": "O-9"})
    )

    def search(object_type: str, field_id: str, value: str) -> list[str]:
        query = {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": object_type},
                {
                    "type": "field_condition",
                    "field": {"type": "custom_field", "custom_field_id": field_id},
                    "condition": {"type": "text", "mode": "exact_value", "value": value},
                },
            ],
        }
        rows = ok(cl.post("/api/v1/data/search/", json={"query": query}))["data"]
        return [r["id"] for r in rows]

    assert search("lead", key, "LEAD-9") == [made["id"]]
    assert search("opportunity", opp_key, "O-9") == [opp["id"]]
    assert search("lead", "cf_agency_crm_key", "x") == []  # the legacy id still searches


def test_typed_values_of_created_fields(cl: httpx.Client) -> None:
    def field(**body: Any) -> str:
        made = ok(cl.post("/api/v1/custom_field/lead/", json={"name": body["type"], **body}))
        return str(made["id"])

    number, date = field(type="number"), field(type="date")
    tier = field(type="choices", choices=["Gold", "Silver"], accepts_multiple_values=True)
    good = {f"custom.{number}": 3, f"custom.{date}": "2026-01-31", f"custom.{tier}": ["Gold"]}
    assert ok(cl.post("/api/v1/lead/", json={"name": "T", **good}))[f"custom.{tier}"] == ["Gold"]
    for key, bad in ((number, "lots"), (date, "31/01/2026"), (tier, ["Bronze"])):
        errors = field_errors(cl.post("/api/v1/lead/", json={"name": "T", f"custom.{key}": bad}))
        assert f"custom.{key}" in errors
    legacy = lead(cl, "L", "l@x.com", **{"custom.cf_agency_crm_key": "any value"})
    assert legacy["custom.cf_agency_crm_key"] == "any value"
