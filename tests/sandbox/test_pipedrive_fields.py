"""Fake Pipedrive: every field the v2 spec declares, PATCH of persons and organizations,
the /api/v1 path form, and the custom-field APIs (dealFields, personFields,
organizationFields) whose created keys custom_fields writes and searches accept."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Client = Callable[..., httpx.Client]


def ok(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return body["data"]


def invalid(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == "ERR_SCHEMA_VALIDATION_FAILED"
    for word in words:
        assert word in body["error"], body["error"]


PERSON = {
    "name": "Ada Lovelace",
    "emails": [{"value": "ada@x.com", "primary": True, "label": "work"}],
    "phones": [{"value": "+44 20", "primary": True, "label": "mobile"}],
    "im": [{"value": "ada@chat", "primary": True, "label": "google"}],
    "job_title": "Analyst",
    "birthday": "1815-12-10",
    "notes": "Met at the engine demo",
    "marketing_status": "subscribed",
    "postal_address": {"value": "12 St James's Square, London", "country": "UK"},
    "add_time": "2026-01-31 09:30:00",
    "visible_to": 7,
    "label_ids": [1, 2],
}
ORG = {
    "name": "Analytical Engines Ltd",
    "website": "https://engines.example",
    "linkedin": "https://linkedin.example/engines",
    "industry": 12,
    "annual_revenue": 1_000_000,
    "employee_count": 42,
    "address": {"value": "London", "locality": "London", "postal_code": "SW1"},
    "visible_to": 1,
}


def test_every_declared_person_and_org_field_round_trips(pd: httpx.Client) -> None:
    org = ok(pd.post("/api/v2/organizations", json=ORG))
    person = ok(pd.post("/api/v2/persons", json={**PERSON, "org_id": org["id"]}))
    for key, value in PERSON.items():
        if key == "postal_address":
            assert person[key]["value"] == value["value"] and person[key]["country"] == "UK"
        elif key == "add_time":
            assert person[key] == "2026-01-31T09:30:00Z"
        else:
            assert person[key] == value, key
    for key, value in ORG.items():
        if key == "address":
            assert org[key]["postal_code"] == "SW1" and org[key]["route"] is None
        else:
            assert org[key] == value, key
    assert ok(pd.get(f"/api/v2/persons/{person['id']}")) == person
    assert ok(pd.get(f"/api/v2/organizations/{org['id']}")) == org


def test_patch_person(pd: httpx.Client) -> None:
    person = ok(pd.post("/api/v2/persons", json={"name": "Grace Hopper"}))
    assert person["job_title"] is None and person["marketing_status"] is None
    patched = ok(
        pd.patch(
            f"/api/v2/persons/{person['id']}",
            json={"name": "Grace B. Hopper", "job_title": "Admiral", "custom_fields": {"k": "1"}},
        )
    )
    assert patched["name"] == "Grace B. Hopper" and patched["first_name"] == "Grace"
    assert patched["job_title"] == "Admiral" and patched["custom_fields"] == {"k": "1"}
    assert patched["add_time"] == person["add_time"]
    cleared = ok(pd.patch(f"/api/v2/persons/{person['id']}", json={"job_title": None}))
    assert cleared["job_title"] is None and cleared["name"] == "Grace B. Hopper"
    # A refused PATCH changes nothing.
    invalid(pd.patch(f"/api/v2/persons/{person['id']}", json={"name": "X", "birthday": "soon"}))
    assert ok(pd.get(f"/api/v2/persons/{person['id']}"))["name"] == "Grace B. Hopper"
    assert pd.patch("/api/v2/persons/999999", json={"name": "N"}).status_code == 404


def test_patch_organization(pd: httpx.Client) -> None:
    org = ok(pd.post("/api/v2/organizations", json={"name": "Org"}))
    patched = ok(
        pd.patch(
            f"/api/v2/organizations/{org['id']}",
            json={"website": "https://org.example", "employee_count": 7, "owner_id": None},
        )
    )
    assert patched["website"] == "https://org.example" and patched["employee_count"] == 7
    assert patched["owner_id"] == org["owner_id"] and patched["name"] == "Org"
    invalid(pd.patch(f"/api/v2/organizations/{org['id']}", json={"industry": "software"}))
    invalid(pd.patch(f"/api/v2/organizations/{org['id']}", json={"colour": "red"}), "colour")
    assert pd.patch("/api/v2/organizations/999999", json={"name": "N"}).status_code == 404


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ({"name": "P", "marketing_status": "maybe"}, "marketing_status"),
        ({"name": "P", "birthday": "10/12/1815"}, "birthday"),
        ({"name": "P", "postal_address": "London"}, "postal_address"),
        ({"name": "P", "postal_address": {"planet": "Earth"}}, "planet"),
        ({"name": "P", "notes": 5}, "notes"),
        ({"name": "P", "visible_to": 2}, "visible_to"),
        ({"name": "P", "label_ids": ["a"]}, "label_ids"),
        ({"name": "P", "add_time": "yesterday"}, "add_time"),
        ({"name": "P", "im": "chat"}, "im"),
    ],
)
def test_person_field_validation(pd: httpx.Client, body: dict[str, Any], word: str) -> None:
    invalid(pd.post("/api/v2/persons", json=body), word)


def test_deal_declared_fields(pd: httpx.Client) -> None:
    deal = ok(pd.post("/api/v2/deals", json={"title": "D", "is_deleted": False}))
    archived = ok(
        pd.patch(
            f"/api/v2/deals/{deal['id']}",
            json={"is_archived": True, "archive_time": "2026-02-01 00:00:00"},
        )
    )
    assert archived["is_archived"] is True and archived["archive_time"] == "2026-02-01 00:00:00"
    invalid(pd.patch(f"/api/v2/deals/{deal['id']}", json={"is_archived": "yes"}), "is_archived")


@pytest.mark.parametrize("prefix", ["/v1", "/api/v1"])
def test_v1_routes_under_both_prefixes(pd: httpx.Client, prefix: str) -> None:
    me = ok(pd.get(f"{prefix}/users/me"))
    assert me["is_you"] is True
    assert ok(pd.get(f"{prefix}/users"))[0]["id"] == me["id"]
    assert ok(pd.get(f"{prefix}/dealFields"))[0]["key"] == "title"


@pytest.mark.parametrize("kind", ["deal", "person", "organization"])
def test_custom_fields_api(pd: httpx.Client, kind: str) -> None:
    builtin = ok(pd.get(f"/v1/{kind}Fields"))
    assert all(f["edit_flag"] is False for f in builtin)
    created = ok(
        pd.post(f"/v1/{kind}Fields", json={"name": "agency-crm key", "field_type": "varchar"})
    )
    assert re.fullmatch(r"[0-9a-f]{40}", created["key"])
    assert created["name"] == "agency-crm key" and created["edit_flag"] is True
    assert created["field_type"] == "varchar" and created["active_flag"] is True
    listed = ok(pd.get(f"/api/v1/{kind}Fields"))
    assert listed[-1] == created and len(listed) == len(builtin) + 1
    assert ok(pd.get(f"/v1/{kind}Fields/{created['id']}")) == created
    assert pd.get(f"/v1/{kind}Fields/999999").status_code == 404
    paged = pd.get(f"/v1/{kind}Fields", params={"start": 0, "limit": 2}).json()
    assert paged["additional_data"]["pagination"]["more_items_in_collection"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"field_type": "varchar"},
        {"name": "X", "field_type": "colour"},
        {"name": "X", "field_type": "enum"},
        {"name": "X", "field_type": "set", "options": [{"title": "a"}]},
        {"name": "X", "field_type": "varchar", "add_visible_flag": "yes"},
    ],
)
def test_create_field_validation(pd: httpx.Client, body: dict[str, Any]) -> None:
    invalid(pd.post("/v1/dealFields", json=body))


@pytest.mark.parametrize(
    ("kind", "path", "base"),
    [
        ("person", "/api/v2/persons", {"name": "P"}),
        ("organization", "/api/v2/organizations", {"name": "O"}),
        ("deal", "/api/v2/deals", {"title": "D"}),
    ],
)
def test_created_keys_in_writes_and_search(
    pd: httpx.Client, kind: str, path: str, base: dict[str, Any]
) -> None:
    key = ok(pd.post(f"/v1/{kind}Fields", json={"name": "Key", "field_type": "varchar"}))["key"]
    made = ok(pd.post(path, json={**base, "custom_fields": {key: "EXT-1"}}))
    assert made["custom_fields"] == {key: "EXT-1"}
    params = {"term": "EXT-1", "fields": "custom_fields", "exact_match": "true"}
    found = ok(pd.get(f"{path}/search", params=params))["items"]
    assert [i["item"]["id"] for i in found] == [made["id"]]
    assert found[0]["item"]["custom_fields"] == ["EXT-1"]
    invalid(pd.post(path, json={**base, "custom_fields": {key: 5}}), key)
    # The name existing tests use still works without a created field.
    legacy = ok(pd.post(path, json={**base, "custom_fields": {"agency_crm_key": "L-1"}}))
    assert legacy["custom_fields"] == {"agency_crm_key": "L-1"}


def test_typed_custom_values(pd: httpx.Client) -> None:
    def field(field_type: str, **extra: Any) -> dict[str, Any]:
        body = {"name": field_type, "field_type": field_type, **extra}
        made: dict[str, Any] = ok(pd.post("/v1/dealFields", json=body))
        return made

    double, date, enum = field("double"), field("date"), field("enum", options=[{"label": "A"}])
    money = field("monetary")
    option = enum["options"][0]["id"]
    good = {double["key"]: 1.5, date["key"]: "2026-01-31", enum["key"]: option, money["key"]: 9}
    deal = ok(pd.post("/api/v2/deals", json={"title": "D", "custom_fields": good}))
    assert deal["custom_fields"][money["key"]] == {"value": 9, "currency": "USD"}
    for key, bad in ((double["key"], "1.5"), (date["key"], "31/01"), (enum["key"], option + 999)):
        invalid(pd.post("/api/v2/deals", json={"title": "D", "custom_fields": {key: bad}}), key)
