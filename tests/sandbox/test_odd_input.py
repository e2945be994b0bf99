"""Odd input the vendors answer with a 400 (each once answered a 500 by the fakes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

Client = Callable[..., httpx.Client]


def search(**body: Any) -> dict[str, Any]:
    return {"filterGroups": [], "properties": [], "limit": 10, **body}


@pytest.mark.parametrize(
    "body",
    [
        search(after="²"),
        search(after=True),
        search(after=[1]),
        search(
            filterGroups=[{"filters": [{"propertyName": "email", "operator": "IN", "values": 5}]}]
        ),
        search(
            filterGroups=[{"filters": [{"propertyName": "email", "operator": "IN", "values": []}]}]
        ),
    ],
)
def test_hubspot_search_rejects(client: Client, token: str, body: dict[str, Any]) -> None:
    r = client("hubspot", token).post("/crm/v3/objects/contacts/search", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["category"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "closedate",
    ["99999-01-01", "10" + "0" * 19, "1" * 40, "²", "9999-12-31T23:00:00-05:00", "0000-01-01"],
)
def test_hubspot_out_of_range_dates_are_invalid(client: Client, token: str, closedate: str) -> None:
    props = {"dealname": "D", "dealstage": "closedwon", "closedate": closedate}
    r = client("hubspot", token).post(
        "/crm/v3/objects/deals", json={"properties": props, "associations": []}
    )
    assert r.status_code == 400, r.text
    assert "INVALID_DATE" in r.text


@pytest.mark.parametrize("body", [b'{"properties": {"email": NaN}}', b"[" * 100_000])
def test_non_json_bodies_are_400(client: Client, token: str, body: bytes) -> None:
    r = client("hubspot", token).post(
        "/crm/v3/objects/contacts", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("bad", ["²", "\u0661", "-1", "1.5", "9" * 40])
def test_pipedrive_odd_ids_are_400(client: Client, token: str, bad: str) -> None:
    pd = client("pipedrive", token)
    for path in (f"/api/v2/deals/{bad}", f"/api/v2/persons/{bad}", f"/api/v2/stages/{bad}"):
        r = pd.get(path)
        assert r.status_code == 400, (path, r.text)
        assert r.json()["success"] is False
    if bad != "-1":
        r = pd.get("/api/v2/stages", params={"pipeline_id": bad})
        assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/contact/", {"name": "N", "emails": 5}, "emails"),
        ("/api/v1/contact/", {"name": "N", "phones": "+1555"}, "phones"),
        ("/api/v1/contact/", {"name": "N", "lead_id": []}, "lead_id"),
        ("/api/v1/contact/", {"name": "N", "emails": [{"email": "a@b.co", "type": 1}]}, "emails"),
        ("/api/v1/opportunity/", {"lead_id": []}, "lead_id"),
        ("/api/v1/opportunity/", {"lead_id": {"x": 1}}, "lead_id"),
    ],
)
def test_close_odd_bodies_are_field_errors(
    client: Client, token: str, path: str, body: dict[str, Any], field: str
) -> None:
    r = client("close", token).post(path, json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["field-errors"]


@pytest.mark.parametrize(
    "condition_field",
    [
        {"type": "regular_field", "object_type": "lead", "field_name": "no_such_field"},
        {"type": "regular_field", "object_type": "lead", "field_name": ["name"]},
        {"type": "unknown"},
        ["not", "an", "object"],
    ],
)
def test_close_search_on_unknown_fields_is_400(
    client: Client, token: str, condition_field: Any
) -> None:
    query = {
        "type": "and",
        "queries": [
            {"type": "object_type", "object_type": "lead"},
            {
                "type": "field_condition",
                "field": condition_field,
                "condition": {"type": "text", "mode": "exact_value", "value": "x"},
            },
        ],
    }
    r = client("close", token).post("/api/v1/data/search/", json={"query": query})
    assert r.status_code == 400, r.text
    assert "query" in r.json()["field-errors"]
