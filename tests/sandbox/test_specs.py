"""Fake responses (and the requests that produced them) validated against the vendor specs.

The vendors' OpenAPI descriptions are not shipped with the project (internal use only): they
are read from ``../shared/crm-specs`` beside the repository, or ``CRM_SPECS_DIR``. Without them
these tests are skipped, except under ``CI=true``, where a missing spec fails the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

ROOT = Path(__file__).resolve().parents[2]
SPECS = Path(os.environ.get("CRM_SPECS_DIR") or ROOT.parent / "shared" / "crm-specs")
if not SPECS.is_dir():
    missing = f"vendor specs not found at {SPECS} (set CRM_SPECS_DIR)"
    if os.environ.get("CI", "").strip().lower() in ("true", "1"):
        raise pytest.UsageError(f"{missing}: CI must run the spec tests")
    pytest.skip(missing, allow_module_level=True)

Client = Callable[..., httpx.Client]
# openapi-core warns about HubSpot's oauth2 security scheme, which it cannot check.
pytestmark = pytest.mark.filterwarnings("ignore:Unsupported scheme type:UserWarning")


@cache
def spec(rel: str, server: str) -> Any:
    """A spec with ``servers`` replaced by a relative base, so any host matches."""
    text = (SPECS / rel).read_text()
    if rel.endswith(".json"):
        data = json.loads(text)
    else:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    data["servers"] = [{"url": server}]
    if rel.startswith("pipedrive/"):
        _nullable(data)
    if rel.startswith("pipedrive/v1"):
        _no_datetime_format(data)
    # Close's spec reuses operationIds, so skip spec validation (see research §5).
    return OpenAPI.from_dict(data, config=Config(spec_validator_cls=None))


def _nullable(node: Any) -> None:
    """Spec quirk allow-list for Pipedrive: its specs mark almost nothing nullable, while the
    API returns null for unset fields (e.g. a deal's org_id, and next_cursor on the last page).
    """
    if isinstance(node, dict):
        if "type" in node and isinstance(node["type"], str):
            node["nullable"] = True
        for value in node.values():
            _nullable(value)
    elif isinstance(node, list):
        for value in node:
            _nullable(value)


def _no_datetime_format(node: Any) -> None:
    """Spec quirk allow-list for Pipedrive v1: fields' ``add_time``/``update_time`` are
    declared ``format: date-time`` while the spec's own examples (and the API) give
    ``2019-02-04 13:58:03``, which is not RFC 3339."""
    if isinstance(node, dict):
        if node.get("format") == "date-time":
            del node["format"]
        for value in node.values():
            _no_datetime_format(value)
    elif isinstance(node, list):
        for value in node:
            _no_datetime_format(value)


@dataclass
class _Request:
    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes


def check(api: Any, r: httpx.Response, *, request: bool = True) -> None:
    """Validate the exchange ``r`` against ``api`` (raises on any mismatch)."""
    sent = r.request
    req = _Request(
        host_url=f"{sent.url.scheme}://{sent.url.netloc.decode()}",
        path=sent.url.path,
        method=sent.method.lower(),
        body=sent.content or None,
        content_type=(sent.headers.get("content-type") or "application/json").split(";")[0],
        parameters=RequestParameters(
            query=ImmutableMultiDict(list(sent.url.params.multi_items())),
            header=Headers(list(sent.headers.items())),
        ),
    )
    resp = _Response(
        status_code=r.status_code,
        content_type=r.headers["content-type"].split(";")[0],
        headers=Headers(list(r.headers.items())),
        data=r.content,
    )
    if request:
        api.validate_request(req)
    api.validate_response(req, resp)


def search_body(prop: str, value: str) -> dict[str, Any]:
    return {
        "filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}],
        "properties": [prop],
        "limit": 10,
        "after": "0",
        "sorts": [],
    }


def test_hubspot_against_spec(client: Client, token: str) -> None:
    hs = client("hubspot", token)
    contacts = spec("hubspot/v3/contacts.json", "/")
    objects = spec("hubspot/v3/objects.json", "/")
    props = {"email": "spec@x.com", "firstname": "S", "lastname": "P", "agency_crm_key": "k"}
    created = hs.post("/crm/v3/objects/contacts", json={"properties": props, "associations": []})
    check(contacts, created)
    contact_id = created.json()["id"]
    check(contacts, hs.get(f"/crm/v3/objects/contacts/{contact_id}"))
    check(
        contacts,
        hs.patch(f"/crm/v3/objects/contacts/{contact_id}", json={"properties": {"firstname": "T"}}),
    )
    check(
        contacts,
        hs.post("/crm/v3/objects/contacts/search", json=search_body("email", "spec@x.com")),
    )
    deal_props = {
        "dealname": "D",
        "dealstage": "closedwon",
        "pipeline": "default",
        "amount": "1",
        "closedate": "2026-01-02",
    }
    deal = hs.post(
        "/crm/v3/objects/deals",
        json={
            "properties": deal_props,
            "associations": [
                {
                    "to": {"id": contact_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                }
            ],
        },
    )
    check(objects, deal)
    upsert = {"inputs": [{"id": "u1", "idProperty": "agency_crm_key", "properties": deal_props}]}
    check(objects, hs.post("/crm/v3/objects/deals/batch/upsert", json=upsert))
    deal_id = deal.json()["id"]
    check(
        spec("hubspot/v4/associations.json", "/"),
        hs.put(f"/crm/v4/objects/deals/{deal_id}/associations/default/contacts/{contact_id}"),
    )
    check(spec("hubspot/v3/pipelines.json", "/"), hs.get("/crm/v3/pipelines/deals"))
    check(spec("hubspot/v3/crmOwners.json", "/"), hs.get("/crm/v3/owners", params={"limit": 1}))
    # (The specs declare error responses as */*, so error bodies are not checked here;
    # test_hubspot checks their required category/correlationId/message.)


def test_hubspot_batch_against_spec(client: Client, token: str) -> None:
    """The batch endpoints' 200s and 207s (per-input errors) against the spec."""
    hs = client("hubspot", token)
    contacts = spec("hubspot/v3/contacts.json", "/")
    objects = spec("hubspot/v3/objects.json", "/")
    deals = spec("hubspot/v3/deals.json", "/")  # /crm/v3/objects/0-3/...
    v4 = spec("hubspot/v4/associations.json", "/")
    by_email = [
        {"id": "B1@x.com", "idProperty": "email", "properties": {"firstname": "B"}},
        {"id": "b2@x.com", "idProperty": "email", "properties": {"firstname": "C"}},
    ]
    upserted = hs.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": by_email})
    check(contacts, upserted)
    ids = [r["id"] for r in upserted.json()["results"]]
    traced = [
        {**by_email[0], "objectWriteTraceId": "t1"},
        {"id": "bad", "idProperty": "email", "properties": {}, "objectWriteTraceId": "t2"},
    ]
    partial = hs.post("/crm/v3/objects/contacts/batch/upsert", json={"inputs": traced})
    assert partial.status_code == 207, partial.text
    check(contacts, partial)
    update = [{"id": i, "properties": {"lastname": "L"}} for i in ids]
    check(contacts, hs.post("/crm/v3/objects/contacts/batch/update", json={"inputs": update}))
    missing = [*update, {"id": "1", "properties": {"lastname": "L"}}]
    partial = hs.post("/crm/v3/objects/contacts/batch/update", json={"inputs": missing})
    assert partial.status_code == 207, partial.text
    check(contacts, partial)
    read = {
        "inputs": [{"id": i} for i in ids],
        "properties": ["email"],
        "propertiesWithHistory": [],
    }
    check(contacts, hs.post("/crm/v3/objects/contacts/batch/read", json=read))
    read["inputs"].append({"id": "1"})
    read["propertiesWithHistory"] = ["firstname"]
    partial = hs.post(
        "/crm/v3/objects/contacts/batch/read", params={"archived": "false"}, json=read
    )
    assert partial.status_code == 207, partial.text
    check(contacts, partial)
    # Every default property set: HubSpot (and the fake) answer null for an unset one, which
    # the spec's string-typed properties do not allow.
    props = {
        "dealname": "D",
        "dealstage": "closedwon",
        "pipeline": "default",
        "amount": "1",
        "closedate": "2026-01-31",
    }
    made = hs.post(
        "/crm/v3/objects/deals/batch/upsert",
        json={"inputs": [{"id": "bk", "idProperty": "agency_crm_key", "properties": props}]},
    )
    deal_id = made.json()["results"][0]["id"]
    deal_update = {"inputs": [{"id": deal_id, "properties": {"amount": "2"}}]}
    check(objects, hs.post("/crm/v3/objects/deals/batch/update", json=deal_update))
    check(deals, hs.post("/crm/v3/objects/0-3/batch/update", json=deal_update))
    deal_read = {"inputs": [{"id": deal_id}], "properties": [], "propertiesWithHistory": []}
    check(objects, hs.post("/crm/v3/objects/deals/batch/read", json=deal_read))
    check(deals, hs.post("/crm/v3/objects/0-3/batch/read", json=deal_read))
    pairs = [{"from": {"id": deal_id}, "to": {"id": i}} for i in ids]
    path = "/crm/v4/associations/{}/{}/batch/associate/default"
    check(v4, hs.post(path.format("deals", "contacts"), json={"inputs": pairs}))
    back = [
        {"from": {"id": ids[0]}, "to": {"id": deal_id}},
        {"from": {"id": "9"}, "to": {"id": "8"}},
    ]
    with_errors = hs.post(path.format("contacts", "deals"), json={"inputs": back})
    assert with_errors.json()["numErrors"] == 1, with_errors.text
    check(v4, with_errors)


def test_hubspot_oauth_against_spec(client: Client) -> None:
    created = client("hubspot").post("/_sandbox/accounts", json={}).json()
    form = {
        "grant_type": "refresh_token",
        "client_id": "sbx-client",
        "client_secret": "sbx-secret",
        "refresh_token": created["refresh_token"],
    }
    api = spec("hubspot/oauth-v1/oauth.json", "/")
    c = client("hubspot")
    check(api, c.post("/oauth/v1/token", data=form))
    # (The spec declares its error response as */*, so error bodies are not checked here.)


def test_pipedrive_against_spec(client: Client, token: str) -> None:
    pd = client("pipedrive", token)
    v2 = spec("pipedrive/v2.yaml", "/api/v2")
    v1 = spec("pipedrive/v1.yaml", "/v1")
    check(v1, pd.get("/v1/users/me"))
    check(v1, pd.get("/v1/users"))
    check(v2, pd.get("/api/v2/pipelines"))
    check(v2, pd.get("/api/v2/stages", params={"limit": 2}))
    org = pd.post("/api/v2/organizations", json={"name": "Org", "custom_fields": {"k": "v"}})
    check(v2, org)
    person = pd.post(
        "/api/v2/persons",
        json={
            "name": "P Q",
            "emails": [{"value": "p@q.com", "primary": True, "label": "work"}],
            "org_id": org.json()["data"]["id"],
        },
    )
    check(v2, person)
    deal = pd.post(
        "/api/v2/deals",
        json={
            "title": "D",
            "value": 10,
            "currency": "EUR",
            "person_id": person.json()["data"]["id"],
            "expected_close_date": "2026-01-31",
        },
    )
    check(v2, deal)
    deal_id = deal.json()["data"]["id"]
    check(v2, pd.patch(f"/api/v2/deals/{deal_id}", json={"status": "lost", "lost_reason": "price"}))
    check(v2, pd.get(f"/api/v2/deals/{deal_id}"))
    check(v2, pd.get(f"/api/v2/persons/{person.json()['data']['id']}"))
    params = {"term": "p@q.com", "fields": "email", "exact_match": "true"}
    check(v2, pd.get("/api/v2/persons/search", params=params))
    check(v2, pd.get("/api/v2/organizations/search", params={"term": "Org", "fields": "name"}))
    check(
        v2,
        pd.get(
            "/api/v2/deals/search", params={"term": "D", "fields": "title", "exact_match": "true"}
        ),
    )


def test_close_against_spec(client: Client, token: str) -> None:
    cl = client("close", token)
    api = spec("close/close-openapi.yml", "/api/v1")
    check(api, cl.get("/api/v1/me/"))
    check(api, cl.get("/api/v1/user/"))
    check(api, cl.get("/api/v1/pipeline/"))
    check(api, cl.get("/api/v1/status/opportunity/"))
    lead = cl.post(
        "/api/v1/lead/",
        json={
            "name": "L",
            "contacts": [
                {
                    "name": "C",
                    "emails": [{"email": "c@l.com", "type": "office"}],
                    "phones": [{"phone": "+15550100", "type": "mobile"}],
                }
            ],
            "custom.cf_x": "1",
        },
    )
    check(api, lead)
    lead_id = lead.json()["id"]
    check(api, cl.get(f"/api/v1/lead/{lead_id}/"))
    check(api, cl.post("/api/v1/contact/", json={"lead_id": lead_id, "name": "D", "emails": []}))
    opp = cl.post(
        "/api/v1/opportunity/",
        json={"lead_id": lead_id, "value": 100, "confidence": 10, "value_period": "annual"},
    )
    check(api, opp)
    opp_id = opp.json()["id"]
    won = next(
        s["id"] for s in cl.get("/api/v1/status/opportunity/").json()["data"] if s["type"] == "won"
    )
    check(api, cl.put(f"/api/v1/opportunity/{opp_id}/", json={"status_id": won}))
    check(api, cl.get(f"/api/v1/opportunity/{opp_id}/"))


def test_hubspot_numeric_deal_paths_against_spec(client: Client, token: str) -> None:
    hs = client("hubspot", token)
    deals = spec("hubspot/v3/deals.json", "/")  # spells every path /crm/v3/objects/0-3
    props = {
        "dealname": "D",
        "dealstage": "closedwon",
        "pipeline": "default",
        "amount": "1",
        "closedate": "2026-01-31",
    }
    created = hs.post("/crm/v3/objects/0-3", json={"properties": props, "associations": []})
    check(deals, created)
    deal_id = created.json()["id"]
    check(deals, hs.get(f"/crm/v3/objects/0-3/{deal_id}"))
    check(deals, hs.patch(f"/crm/v3/objects/0-3/{deal_id}", json={"properties": {"amount": "2"}}))
    check(deals, hs.get("/crm/v3/objects/0-3", params={"limit": 5}))
    check(deals, hs.post("/crm/v3/objects/0-3/search", json=search_body("dealname", "D")))
    upsert = {"inputs": [{"id": "u1", "idProperty": "agency_crm_key", "properties": props}]}
    check(deals, hs.post("/crm/v3/objects/0-3/batch/upsert", json=upsert))


@pytest.mark.parametrize(
    ("rel", "path"), [("oauth-v1", "/oauth/v1/token"), ("oauth-v3", "/oauth/v3/token")]
)
def test_hubspot_code_exchange_against_spec(client: Client, rel: str, path: str) -> None:
    c = client("hubspot")
    redirect = "https://app.example.test/cb"
    approve = {
        "client_id": "sbx-client",
        "redirect_uri": redirect,
        "scope": "oauth",
        "state": "s",
        "decision": "approve",
    }
    location = c.post("/oauth/authorize", data=approve).headers["location"]
    code = httpx.URL(location).params["code"]
    form = {
        "grant_type": "authorization_code",
        "client_id": "sbx-client",
        "client_secret": "sbx-secret",
        "redirect_uri": redirect,
        "code": code,
    }
    check(spec(f"hubspot/{rel}/oauth.json", "/"), c.post(path, data=form))


def test_pipedrive_fields_and_updates_against_spec(client: Client, token: str) -> None:
    pd = client("pipedrive", token)
    v2 = spec("pipedrive/v2.yaml", "/api/v2")
    v1 = spec("pipedrive/v1.yaml", "/v1")
    check(spec("pipedrive/v1.yaml", "/api/v1"), pd.get("/api/v1/users/me"))
    for kind in ("deal", "person", "organization"):
        created = pd.post(f"/v1/{kind}Fields", json={"name": "Key", "field_type": "varchar"})
        check(v1, created)
        check(v1, pd.get(f"/v1/{kind}Fields"))
    key = created.json()["data"]["key"]
    org = pd.post(
        "/api/v2/organizations",
        json={"name": "O", "website": "https://o.example", "address": {"value": "x"}},
    )
    check(v2, org)
    org_id = org.json()["data"]["id"]
    check(
        v2,
        pd.patch(
            f"/api/v2/organizations/{org_id}",
            json={"employee_count": 3, "custom_fields": {key: "K"}},
        ),
    )
    person = pd.post(
        "/api/v2/persons",
        json={"name": "P", "job_title": "CTO", "birthday": "1990-01-31", "org_id": org_id},
    )
    check(v2, person)
    check(
        v2,
        pd.patch(
            f"/api/v2/persons/{person.json()['data']['id']}",
            json={"notes": "n", "marketing_status": "subscribed", "im": []},
        ),
    )


def test_close_lists_updates_and_custom_fields_against_spec(client: Client, token: str) -> None:
    cl = client("close", token)
    api = spec("close/close-openapi.yml", "/api/v1")
    field = cl.post("/api/v1/custom_field/lead/", json={"name": "Key", "type": "text"})
    check(api, field)
    check(api, cl.get("/api/v1/custom_field/lead/"))
    check(api, cl.get(f"/api/v1/custom_field/lead/{field.json()['id']}/"))
    check(api, cl.post("/api/v1/custom_field/opportunity/", json={"name": "K", "type": "text"}))
    lead = cl.post("/api/v1/lead/", json={"name": "L", "contacts": [{"name": "C"}]})
    lead_id = lead.json()["id"]
    check(api, cl.put(f"/api/v1/lead/{lead_id}/", json={"name": "M", "description": "d"}))
    check(api, cl.get("/api/v1/lead/", params={"query": "name:M", "_limit": 10}))
    contact_id = lead.json()["contacts"][0]["id"]
    check(api, cl.put(f"/api/v1/contact/{contact_id}/", json={"title": "CTO"}))
    check(api, cl.post("/api/v1/opportunity/", json={"lead_id": lead_id, "value": 5}))
    # The spec types lead_id as [string, null] (OpenAPI 3.1), which openapi-core's parameter
    # parser cannot read: the response is checked, the request is not.
    check(api, cl.get("/api/v1/opportunity/", params={"lead_id": lead_id}), request=False)
