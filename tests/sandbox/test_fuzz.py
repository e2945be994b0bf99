"""Random input against every route of the three fakes: no answer is a 5xx, none is HTML.

Each route (read from the apps themselves, so new routes are fuzzed without anyone
remembering) gets Hypothesis-made path parameters, query parameters and bodies: mostly a
valid seed body with a few values anywhere in it replaced by random JSON, otherwise random
JSON or bytes. The vendors answer all of that with a 4xx; a 5xx here is a bug in the fake
(no fault is injected), and the sandbox fixture also fails the test when a handler raised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agency_crm.sandbox import CloseApp, HubSpotApp, PipedriveApp
from agency_crm.sandbox.core import Route

Client = Callable[..., httpx.Client]
Path = tuple[str | int, ...]

#: Examples per route: a deterministic few by default (fast, same in CI every run); set
#: SANDBOX_FUZZ_EXAMPLES to hunt with more, randomly chosen ones.
EXAMPLES = int(os.environ.get("SANDBOX_FUZZ_EXAMPLES") or 0)

ROUTES: list[tuple[str, Route[Any]]] = [
    (vendor, route)
    for vendor, app in (
        ("hubspot", HubSpotApp()),
        ("pipedrive", PipedriveApp()),
        ("close", CloseApp()),
    )
    for route in app.routes
    # HubSpot's 0-1/0-3 paths reach the same handlers as contacts/deals.
    if "/0-1" not in route.template and "/0-3" not in route.template
]
#: Form fields of the OAuth routes, and values that get past their first checks.
FORM_NAMES = (
    "grant_type",
    "client_id",
    "client_secret",
    "redirect_uri",
    "code",
    "refresh_token",
    "scope",
    "state",
    "decision",
    "portal_id",
)
FORM_VALUES = (
    "sbx-client",
    "sbx-secret",
    "authorization_code",
    "refresh_token",
    "https://x.test/cb",
    "approve",
    "deny",
    "²",
)

#: Query parameter names the fakes read somewhere, and values that mean something to them.
QUERY_NAMES = (
    "limit",
    "after",
    "properties",
    "idProperty",
    "associations",
    "archived",
    "email",
    "cursor",
    "term",
    "fields",
    "exact_match",
    "start",
    "pipeline_id",
    "person_id",
    "organization_id",
    "status",
    "_skip",
    "_limit",
    "_fields",
    "query",
    "lead_id",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
)
QUERY_VALUES = ("0", "1", "-1", "10", "500", "²", "1e3", "", "email", "agency_crm_key", "true")

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["²", "0", "-1", "1" * 30, "2026-01-31", "99999-01-01", "open", "EQ"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def seed_bodies(vendor: str, ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """A valid body per (method, template) for the routes that take one."""
    if vendor == "hubspot":
        search = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "email", "operator": "EQ", "value": "a@b.co"},
                        {"propertyName": "amount", "operator": "IN", "values": ["1", "2"]},
                    ]
                }
            ],
            "properties": ["email"],
            "limit": 10,
            "after": "0",
            "sorts": [],
            "query": "a",
        }
        contact = {"properties": {"email": "z@b.co", "firstname": "Z"}, "associations": []}
        deal = {
            "properties": {
                "dealname": "D",
                "dealstage": "closedwon",
                "pipeline": "default",
                "amount": "1",
                "closedate": "2026-01-31",
                "hubspot_owner_id": ids["owner"],
            },
            "associations": [
                {
                    "to": {"id": ids["contact"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                }
            ],
        }
        upsert = {
            "inputs": [
                {"id": "k1", "idProperty": "agency_crm_key", "properties": deal["properties"]}
            ]
        }
        prop = {
            "name": "fuzz_prop",
            "label": "Fuzz",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
            "hasUniqueValue": True,
        }
        out: dict[tuple[str, str], Any] = {}
        for obj, body in (("contacts", contact), ("deals", deal)):
            own = ids["contact"] if obj == "contacts" else ids["deal"]
            for alias in (obj, "0-1" if obj == "contacts" else "0-3"):
                base = f"/crm/v3/objects/{alias}"
                out["POST", base] = body
                out["PATCH", base + "/{id}"] = {"properties": body["properties"]}
                out["POST", base + "/search"] = search
                out["POST", base + "/batch/upsert"] = upsert
                out["POST", base + "/batch/update"] = {
                    "inputs": [
                        {"id": own, "properties": body["properties"], "objectWriteTraceId": "t"}
                    ]
                }
                out["POST", base + "/batch/read"] = {
                    "inputs": [{"id": own}, {"id": "1"}],
                    "properties": ["email"],
                    "propertiesWithHistory": ["email"],
                    "idProperty": "hs_object_id",
                }
                out["POST", f"/crm/v3/properties/{alias}"] = prop
        pair = {"from": {"id": ids["deal"]}, "to": {"id": ids["contact"]}}
        out["POST", "/crm/v4/associations/deals/contacts/batch/associate/default"] = {
            "inputs": [pair]
        }
        out["POST", "/crm/v4/associations/contacts/deals/batch/associate/default"] = {
            "inputs": [{"from": pair["to"], "to": pair["from"]}]
        }
        return out
    if vendor == "pipedrive":
        person = {
            "name": "P Q",
            "emails": [{"value": "p@q.co", "primary": True, "label": "work"}],
            "phones": [{"value": "+1555", "primary": True, "label": "work"}],
            "org_id": int(ids["org"]),
            "owner_id": int(ids["user"]),
            "custom_fields": {"agency_crm_key": "k"},
            "job_title": "CTO",
            "birthday": "1990-01-31",
            "marketing_status": "subscribed",
            "postal_address": {"value": "1 Road"},
        }
        org = {"name": "O", "website": "https://o.co", "industry": 1, "address": {"value": "x"}}
        deal = {
            "title": "D",
            "value": 10,
            "currency": "EUR",
            "person_id": int(ids["person"]),
            "org_id": int(ids["org"]),
            "stage_id": int(ids["stage"]),
            "status": "lost",
            "lost_reason": "price",
            "expected_close_date": "2026-01-31",
            "probability": 50,
        }
        field = {"name": "Key", "field_type": "varchar"}
        return {
            ("POST", "/api/v2/persons"): person,
            ("PATCH", "/api/v2/persons/{id}"): person,
            ("POST", "/api/v2/organizations"): org,
            ("PATCH", "/api/v2/organizations/{id}"): org,
            ("POST", "/api/v2/deals"): deal,
            ("PATCH", "/api/v2/deals/{id}"): deal,
            **{
                ("POST", f"{prefix}/{kind}Fields"): field
                for prefix in ("/v1", "/api/v1")
                for kind in ("deal", "person", "organization")
            },
        }
    contact = {
        "name": "C",
        "title": "T",
        "emails": [{"email": "c@l.co", "type": "office"}],
        "phones": [{"phone": "+1555", "type": "mobile"}],
        "lead_id": ids["lead"],
    }
    lead = {
        "name": "L",
        "description": "d",
        "status_id": ids["lead_status"],
        "contacts": [contact],
        "custom.cf_agency_crm_key": "k",
    }
    opp = {
        "lead_id": ids["lead"],
        "contact_id": ids["contact"],
        "status_id": ids["status"],
        "value": 100,
        "value_period": "annual",
        "confidence": 10,
        "note": "n",
        "custom.cf_agency_crm_key": "k",
    }
    search = {
        "query": {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": "lead"},
                {
                    "type": "field_condition",
                    "field": {"type": "custom_field", "custom_field_id": "cf_agency_crm_key"},
                    "condition": {"type": "text", "mode": "exact_value", "value": "k"},
                },
                {
                    "type": "has_related",
                    "this_object_type": "lead",
                    "related_object_type": "contact",
                    "related_query": {
                        "type": "field_condition",
                        "field": {
                            "type": "regular_field",
                            "object_type": "contact",
                            "field_name": "name",
                        },
                        "condition": {"type": "text", "mode": "exact_value", "value": "C"},
                    },
                },
            ],
        },
        "_limit": 10,
        "_fields": {"lead": ["id", "name"]},
    }
    field = {"name": "Key", "type": "text"}
    return {
        ("POST", "/api/v1/lead/"): lead,
        ("PUT", "/api/v1/lead/{id}/"): lead,
        ("POST", "/api/v1/contact/"): contact,
        ("PUT", "/api/v1/contact/{id}/"): contact,
        ("POST", "/api/v1/opportunity/"): opp,
        ("PUT", "/api/v1/opportunity/{id}/"): opp,
        ("POST", "/api/v1/data/search/"): search,
        ("POST", "/api/v1/custom_field/lead/"): field,
        ("POST", "/api/v1/custom_field/opportunity/"): field,
    }


def seed_records(vendor: str, c: httpx.Client) -> dict[str, str]:
    """Records the fuzzed requests can refer to; their ids by kind."""
    if vendor == "hubspot":
        owner = c.get("/crm/v3/owners").json()["results"][0]["id"]
        contact = c.post(
            "/crm/v3/objects/contacts",
            json={"properties": {"email": "s@b.co", "agency_crm_key": "s"}, "associations": []},
        ).json()["id"]
        deal = c.post(
            "/crm/v3/objects/deals",
            json={"properties": {"dealname": "D", "dealstage": "closedwon"}, "associations": []},
        ).json()["id"]
        return {"owner": owner, "contact": contact, "deal": deal, "id": contact}
    if vendor == "pipedrive":
        user = str(c.get("/v1/users/me").json()["data"]["id"])
        stage = str(c.get("/api/v2/stages").json()["data"][0]["id"])
        org = str(c.post("/api/v2/organizations", json={"name": "O"}).json()["data"]["id"])
        person = str(c.post("/api/v2/persons", json={"name": "P"}).json()["data"]["id"])
        deal = str(c.post("/api/v2/deals", json={"title": "D"}).json()["data"]["id"])
        return {"user": user, "stage": stage, "org": org, "person": person, "deal": deal}
    lead = c.post("/api/v1/lead/", json={"name": "L", "contacts": [{"name": "C"}]}).json()
    statuses = c.get("/api/v1/status/opportunity/").json()["data"]
    lead_statuses = c.get("/api/v1/status/lead/").json()["data"]
    opp = c.post("/api/v1/opportunity/", json={"lead_id": lead["id"]}).json()
    return {
        "lead": lead["id"],
        "contact": lead["contacts"][0]["id"],
        "opp": opp["id"],
        "status": statuses[0]["id"],
        "lead_status": lead_statuses[0]["id"],
    }


def leaf_paths(value: Any, prefix: Path = ()) -> list[Path]:
    """Every path into a JSON value (containers included)."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += leaf_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            out += leaf_paths(item, (*prefix, n))
    return out


def replaced(value: Any, path: Path, new: Any) -> Any:
    """``value`` (deep-copied along ``path``) with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, str(head): replaced(value.get(head), rest, new)}
    if isinstance(value, list) and isinstance(head, int) and head < len(value):
        copy = list(value)
        copy[head] = replaced(value[head], rest, new)
        return copy
    return value


def bodies(seed: Any) -> st.SearchStrategy[bytes]:
    """Mostly ``seed`` with up to three values replaced; sometimes random JSON or bytes."""
    mutated: st.SearchStrategy[Any]
    if seed is None:
        mutated = st.just({})
    else:
        paths = leaf_paths(seed)
        mutated = st.lists(st.tuples(st.sampled_from(paths), json_values), max_size=3).map(
            lambda changes: _apply(seed, changes)
        )
    as_json = st.one_of(mutated, mutated, mutated, json_values).map(
        lambda v: json.dumps(v).encode()
    )
    return st.one_of(as_json, as_json, as_json, st.binary(max_size=20))


def _apply(seed: Any, changes: list[tuple[Path, Any]]) -> Any:
    for path, new in changes:
        seed = replaced(seed, path, new)
    return seed


@pytest.mark.parametrize(
    ("vendor", "route"),
    ROUTES,
    ids=[f"{v}:{r.method} {r.template}" for v, r in ROUTES],
)
def test_no_route_answers_a_5xx(client: Client, token: str, vendor: str, route: Route[Any]) -> None:
    c = client(vendor, token)
    ids = seed_records(vendor, c)
    seed = seed_bodies(vendor, ids).get((route.method, route.template))
    valid_params = sorted(set(ids.values()))
    param_names = [p[1:-1] for p in route.parts if p.startswith("{")]
    form_route = route.template.startswith("/oauth")

    @settings(
        max_examples=EXAMPLES or 30,
        deadline=None,
        derandomize=not EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        params=st.fixed_dictionaries(
            {
                name: st.sampled_from(valid_params) | st.text(min_size=1, max_size=12)
                for name in param_names
            }
        ),
        query=st.dictionaries(
            st.sampled_from(QUERY_NAMES),
            st.sampled_from(QUERY_VALUES) | st.text(max_size=8),
            max_size=3,
        ),
        body=bodies(seed),
        form=st.dictionaries(
            st.sampled_from(FORM_NAMES),
            st.sampled_from(FORM_VALUES) | st.text(max_size=8),
            max_size=len(FORM_NAMES),
        ),
    )
    def run(
        params: dict[str, str], query: dict[str, str], body: bytes, form: dict[str, str]
    ) -> None:
        path = route.template
        for name, value in params.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        if form_route:
            r = c.request(route.method, path, params=query, data=form)
        else:
            headers = {"content-type": "application/json"}
            send = body if route.method in ("POST", "PUT", "PATCH") else None
            r = c.request(route.method, path, params=query, content=send, headers=headers)
        assert r.status_code < 500, (route.method, path, query, body, r.text)
        ctype = r.headers.get("content-type", "")
        if r.content and not ctype.startswith("text/html"):
            assert ctype.startswith("application/json"), (path, r.headers)
            r.json()

    run()
