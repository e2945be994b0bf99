"""Fake HubSpot: the properties API, and hasUniqueValue properties enforced on writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Client = Callable[..., httpx.Client]


def prop(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": name.title(),
        "type": "string",
        "fieldType": "text",
        "groupName": "contactinformation",
        **extra,
    }


def no_key_account(client: Client) -> httpx.Client:
    """A portal made without the predefined agency_crm_key property."""
    created = client("hubspot").post("/_sandbox/accounts", json={"key_property": False})
    assert created.status_code == 201, created.text
    return client("hubspot", created.json()["token"])


def test_list_and_get(hs: httpx.Client) -> None:
    listed = hs.get("/crm/v3/properties/contacts").json()["results"]
    names = {p["name"] for p in listed}
    assert {"email", "firstname", "lastname", "agency_crm_key"} <= names
    key = hs.get("/crm/v3/properties/contacts/agency_crm_key").json()
    assert key["hasUniqueValue"] is True and key["hubspotDefined"] is False
    assert key["type"] == "string" and key["groupName"] == "contactinformation"
    amount = hs.get("/crm/v3/properties/0-3/amount").json()
    assert amount["type"] == "number" and amount["hubspotDefined"] is True
    missing = hs.get("/crm/v3/properties/deals/no_such_property")
    assert missing.status_code == 404 and missing.json()["category"] == "OBJECT_NOT_FOUND"
    only = hs.get("/crm/v3/properties/deals", params={"properties": "amount,dealname"})
    assert {p["name"] for p in only.json()["results"]} == {"amount", "dealname"}


def test_connect_flow_creates_the_key_idempotently(client: Client) -> None:
    hs = no_key_account(client)
    for object_type in ("contacts", "deals"):
        path = f"/crm/v3/properties/{object_type}"
        assert hs.get(f"{path}/agency_crm_key").status_code == 404
        body = prop("agency_crm_key", hasUniqueValue=True, groupName="agency_crm")
        created = hs.post(path, json=body)
        assert created.status_code == 201, created.text
        assert created.json()["hasUniqueValue"] is True and created.json()["name"] == body["name"]
        again = hs.post(path, json=body)
        assert again.status_code == 409, again.text
        err = again.json()
        assert err["status"] == "error" and err["category"] == "OBJECT_ALREADY_EXISTS"
        assert "agency_crm_key" in err["message"] and err["correlationId"]
        assert hs.get(f"{path}/agency_crm_key").json() == created.json()


def test_unique_property_enforced_on_writes(client: Client) -> None:
    hs = no_key_account(client)
    # Before the property exists, it is not an idProperty.
    upsert = {"inputs": [{"id": "u-1", "idProperty": "ext_id", "properties": {"dealname": "D"}}]}
    assert hs.post("/crm/v3/objects/deals/batch/upsert", json=upsert).status_code == 400
    body = prop("ext_id", hasUniqueValue=True, groupName="dealinformation")
    assert hs.post("/crm/v3/properties/0-3", json=body).status_code == 201
    upsert["inputs"][0]["properties"]["dealstage"] = "closedwon"
    first = hs.post("/crm/v3/objects/deals/batch/upsert", json=upsert).json()["results"][0]
    again = hs.post("/crm/v3/objects/deals/batch/upsert", json=upsert).json()["results"][0]
    assert first["new"] is True and again["new"] is False and again["id"] == first["id"]
    dup = hs.post(
        "/crm/v3/objects/deals",
        json={"properties": {"dealname": "E", "dealstage": "closedwon", "ext_id": "u-1"}},
    )
    assert dup.status_code == 409 and dup.json()["category"] == "CONFLICT"
    assert first["id"] in dup.json()["message"]
    by_key = hs.get("/crm/v3/objects/deals/u-1", params={"idProperty": "ext_id"})
    assert by_key.status_code == 200 and by_key.json()["id"] == first["id"]
    # A property without hasUniqueValue is not unique.
    assert hs.post("/crm/v3/properties/deals", json=prop("note_x")).status_code == 201
    for name in ("F", "G"):
        props = {"dealname": name, "dealstage": "closedwon", "note_x": "same"}
        assert hs.post("/crm/v3/objects/deals", json={"properties": props}).status_code == 201


def test_typed_values_of_created_properties(hs: httpx.Client) -> None:
    for body in (
        prop("score", type="number", fieldType="number"),
        prop("vip", type="bool", fieldType="booleancheckbox"),
        prop("met_on", type="date", fieldType="date"),
        prop(
            "tier",
            type="enumeration",
            fieldType="select",
            options=[{"label": "Gold", "value": "gold"}, {"label": "Silver", "value": "silver"}],
        ),
    ):
        assert hs.post("/crm/v3/properties/contacts", json=body).status_code == 201
    good = {"score": "12.5", "vip": "TRUE", "met_on": "2026-01-31", "tier": "gold;silver"}
    created = hs.post("/crm/v3/objects/contacts", json={"properties": good})
    assert created.status_code == 201, created.text
    stored = created.json()["properties"]
    assert stored["vip"] == "true" and stored["met_on"] == "2026-01-31"
    for bad in ({"score": "lots"}, {"vip": "maybe"}, {"met_on": "soon"}, {"tier": "bronze"}):
        r = hs.post("/crm/v3/objects/contacts", json={"properties": bad})
        assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR", r.text


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x"},
        prop("Bad Name"),
        prop("x", type="money"),
        prop("x", fieldType="booleancheckbox"),
        prop("x", type="bool", fieldType="booleancheckbox", hasUniqueValue=True),
        prop("x", type="enumeration", fieldType="select"),
        prop("x", options=[{"label": 1}]),
        prop("x", hasUniqueValue="yes"),
    ],
)
def test_create_property_validation(hs: httpx.Client, body: dict[str, Any]) -> None:
    r = hs.post("/crm/v3/properties/contacts", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["category"] == "VALIDATION_ERROR"
