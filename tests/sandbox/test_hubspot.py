"""Fake HubSpot: auth, OAuth, owners, pipelines, contacts, deals, upsert, associations, search."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sandbox import configure, post_admin, state

Client = Callable[..., httpx.Client]
CONTACTS = "/crm/v3/objects/contacts"
DEALS = "/crm/v3/objects/deals"


def eq(prop: str, value: str) -> dict[str, Any]:
    """A search body with one EQ filter."""
    return {
        "filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}],
        "properties": [prop],
        "limit": 10,
    }


def contact(hs: httpx.Client, **props: str) -> dict[str, Any]:
    r = hs.post(CONTACTS, json={"properties": props, "associations": []})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def deal(hs: httpx.Client, **props: str) -> httpx.Response:
    props = {"dealname": "Deal", "pipeline": "default", "dealstage": "qualifiedtobuy", **props}
    return hs.post(DEALS, json={"properties": props, "associations": []})


def assert_error(r: httpx.Response, status: int, category: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "error" and body["category"] == category
    assert body["message"] and body["correlationId"]
    return body


# --------------------------------------------------------------------------- auth


def test_401_bodies(client: Client) -> None:
    assert_error(client("hubspot").get("/crm/v3/owners"), 401, "INVALID_AUTHENTICATION")
    bad = client("hubspot", "not-a-token").get("/crm/v3/owners")
    assert_error(bad, 401, "INVALID_AUTHENTICATION")
    wrong_scheme = client("hubspot", headers={"Authorization": "Basic abc"}).get("/crm/v3/owners")
    assert_error(wrong_scheme, 401, "INVALID_AUTHENTICATION")


def test_expired_access_token(client: Client) -> None:
    created = client("hubspot").post("/_sandbox/accounts", json={"expires_in": 0}).json()
    r = client("hubspot", created["token"]).get("/crm/v3/owners")
    assert_error(r, 401, "EXPIRED_AUTHENTICATION")
    fresh = client("hubspot").post("/_sandbox/accounts", json={}).json()
    c = client("hubspot", fresh["token"])
    assert c.get("/crm/v3/owners").status_code == 200
    assert post_admin(c, "/_sandbox/accounts/expire", {"token": fresh["token"]}).status_code == 200
    assert_error(c.get("/crm/v3/owners"), 401, "EXPIRED_AUTHENTICATION")
    forever = client("hubspot").post("/_sandbox/accounts", json={"expires_in": None}).json()
    assert client("hubspot", forever["token"]).get("/crm/v3/owners").status_code == 200
    assert client("hubspot").post("/_sandbox/accounts", json={"colour": 1}).status_code == 400


def refresh(c: httpx.Client, token: str, **override: str) -> httpx.Response:
    form = {
        "grant_type": "refresh_token",
        "client_id": "sbx-client",
        "client_secret": "sbx-secret",
        "refresh_token": token,
        **override,
    }
    return c.post("/oauth/v1/token", data=form)


def test_oauth_refresh(client: Client) -> None:
    created = client("hubspot").post("/_sandbox/accounts", json={"expires_in": 600}).json()
    old = client("hubspot", created["token"])
    contact(old, email="oauth@x.com")
    r = refresh(client("hubspot"), created["refresh_token"])
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["token_use"] == "access_token"
    assert body["refresh_token"] == created["refresh_token"]
    assert body["expires_in"] == 600 and body["hub_id"] == created["portal_id"]
    new = client("hubspot", body["access_token"])
    # Same account: the contact is visible with the new token; the old token still works.
    found = new.get(f"{CONTACTS}/oauth@x.com", params={"idProperty": "email"})
    assert found.status_code == 200
    assert old.get("/crm/v3/owners").status_code == 200
    info = client("hubspot").get(f"/oauth/v1/access-tokens/{body['access_token']}").json()
    assert info["hub_id"] == created["portal_id"] and 0 < info["expires_in"] <= 600
    log = state(client("hubspot"), created["token"])["request_log"]
    oauth_entry = next(e for e in log if e["path"] == "/oauth/v1/token")
    assert oauth_entry["body"]["refresh_token"] == "<redacted>"
    assert oauth_entry["body"]["client_secret"] == "<redacted>"


@pytest.mark.parametrize(
    ("override", "status"),
    [
        ({"refresh_token": "sbx_unknown"}, "BAD_REFRESH_TOKEN"),
        ({"client_id": "other"}, "BAD_CLIENT_ID"),
        ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
        ({"grant_type": "password"}, "BAD_GRANT_TYPE"),
    ],
)
def test_oauth_refresh_errors(client: Client, override: dict[str, str], status: str) -> None:
    created = client("hubspot").post("/_sandbox/accounts", json={}).json()
    r = refresh(client("hubspot"), created["refresh_token"], **override)
    assert r.status_code == 400
    assert r.json()["status"] == status and r.json()["message"]


def test_revoked_refresh_token(client: Client) -> None:
    created = client("hubspot").post("/_sandbox/accounts", json={}).json()
    c = client("hubspot")
    assert post_admin(
        c, "/_sandbox/accounts/revoke", {"token": created["refresh_token"]}
    ).is_success
    assert refresh(c, created["refresh_token"]).json()["status"] == "BAD_REFRESH_TOKEN"
    assert post_admin(
        c, "/_sandbox/accounts/restore", {"token": created["refresh_token"]}
    ).is_success
    assert refresh(c, created["refresh_token"]).status_code == 200


def test_an_account_with_the_refresh_token_the_caller_chose(client: Client) -> None:
    chosen = "chosen-refresh-token/+= 1"
    created = client("hubspot").post(
        "/_sandbox/accounts",
        json={"token": "chosen-access-token", "refresh_token": chosen},
    )
    assert created.status_code == 201 and created.json()["refresh_token"] == chosen
    r = refresh(client("hubspot"), chosen)
    assert r.status_code == 200 and r.json()["refresh_token"] == chosen
    assert r.json()["hub_id"] == created.json()["portal_id"]
    again = client("hubspot").post("/_sandbox/accounts", json={"refresh_token": chosen})
    assert again.status_code == 409
    for bad in ("", 7):
        made = client("hubspot").post("/_sandbox/accounts", json={"refresh_token": bad})
        assert made.status_code == 400


# --------------------------------------------------------------------------- owners, pipelines


def test_owners_paging(hs: httpx.Client) -> None:
    first = hs.get("/crm/v3/owners", params={"limit": 1}).json()
    assert len(first["results"]) == 1
    after = first["paging"]["next"]["after"]
    second = hs.get("/crm/v3/owners", params={"limit": 1, "after": after}).json()
    assert second["results"][0]["id"] != first["results"][0]["id"]
    assert "paging" not in second
    owner = first["results"][0]
    assert {"id", "email", "firstName", "lastName", "userId", "type", "archived"} <= set(owner)
    assert hs.get("/crm/v3/owners", params={"limit": "x"}).status_code == 400
    assert hs.get(f"/crm/v3/owners/{owner['id']}").json()["email"] == owner["email"]


def test_pipelines(hs: httpx.Client) -> None:
    pipelines = hs.get("/crm/v3/pipelines/deals").json()["results"]
    assert [p["id"] for p in pipelines] == ["default"]
    stages = {s["id"]: s["metadata"] for s in pipelines[0]["stages"]}
    assert list(stages) == [
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    ]
    assert stages["appointmentscheduled"] == {"isClosed": "false", "probability": "0.2"}
    assert stages["closedwon"] == {"isClosed": "true", "probability": "1.0"}
    assert stages["closedlost"]["probability"] == "0.0"
    assert len(hs.get("/crm/v3/pipelines/deals/default/stages").json()["results"]) == 7
    assert hs.get("/crm/v3/pipelines/deals/nope").status_code == 404


# --------------------------------------------------------------------------- contacts


def test_create_and_get_contact(hs: httpx.Client) -> None:
    created = contact(hs, email="Jane@Example.com", firstname="Jane", agency_crm_key="k-1")
    assert created["id"].isdigit() and created["archived"] is False
    props = created["properties"]
    assert props["email"] == "jane@example.com"
    assert props["hs_object_id"] == created["id"]
    assert props["createdate"] and props["lastmodifieddate"]
    assert all(isinstance(v, str) for v in props.values())
    got = hs.get(f"{CONTACTS}/{created['id']}").json()
    assert got["properties"]["firstname"] == "Jane"
    assert got["properties"]["lastname"] is None  # default property, unset
    assert "agency_crm_key" not in got["properties"]  # not a default property
    with_key = hs.get(f"{CONTACTS}/{created['id']}", params={"properties": "agency_crm_key"})
    assert with_key.json()["properties"]["agency_crm_key"] == "k-1"
    by_email = hs.get(f"{CONTACTS}/JANE@example.com", params={"idProperty": "email"})
    assert by_email.json()["id"] == created["id"]
    by_key = hs.get(f"{CONTACTS}/k-1", params={"idProperty": "agency_crm_key"})
    assert by_key.json()["id"] == created["id"]
    assert_error(hs.get(f"{CONTACTS}/999"), 404, "OBJECT_NOT_FOUND")
    missing = hs.get(f"{CONTACTS}/x@y.com", params={"idProperty": "email"})
    assert_error(missing, 404, "OBJECT_NOT_FOUND")
    not_unique = hs.get(f"{CONTACTS}/Jane", params={"idProperty": "firstname"})
    assert_error(not_unique, 400, "VALIDATION_ERROR")


def test_contact_validation(hs: httpx.Client) -> None:
    r = hs.post(CONTACTS, json={"properties": {"email": "a@b.com", "age": 5}})
    body = assert_error(r, 400, "VALIDATION_ERROR")
    assert "age" in body["message"]
    assert_error(hs.post(CONTACTS, json={"properties": {"email": "nope"}}), 400, "VALIDATION_ERROR")
    bad_owner = hs.post(CONTACTS, json={"properties": {"hubspot_owner_id": "1"}})
    assert_error(bad_owner, 400, "VALIDATION_ERROR")
    assert_error(
        hs.post(CONTACTS, content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "VALIDATION_ERROR",
    )


def test_unique_properties_conflict(hs: httpx.Client, token: str) -> None:
    first = contact(hs, email="dup@x.com", agency_crm_key="key-1")
    r = hs.post(CONTACTS, json={"properties": {"email": "DUP@x.com"}})
    body = assert_error(r, 409, "CONFLICT")
    assert body["message"] == f"Contact already exists. Existing ID: {first['id']}"
    r = hs.post(CONTACTS, json={"properties": {"email": "other@x.com", "agency_crm_key": "key-1"}})
    assert assert_error(r, 409, "CONFLICT")["message"].endswith(f"Existing ID: {first['id']}")
    second = contact(hs, email="second@x.com")
    r = hs.patch(f"{CONTACTS}/{second['id']}", json={"properties": {"email": "dup@x.com"}})
    assert_error(r, 409, "CONFLICT")
    assert len(state(hs, token)["contacts"]) == 2


def test_unique_lookups_follow_writes_and_archives(hs: httpx.Client) -> None:
    """The fake's index of unique values (find_value) follows every change of a value."""

    def by_email(email: str) -> int:
        return hs.get(f"{CONTACTS}/{email}", params={"idProperty": "email"}).status_code

    first = contact(hs, email="old@x.com", agency_crm_key="key-a")
    assert by_email("OLD@x.com") == 200
    r = hs.patch(f"{CONTACTS}/{first['id']}", json={"properties": {"email": "new@x.com"}})
    assert r.status_code == 200, r.text
    assert by_email("old@x.com") == 404 and by_email("new@x.com") == 200
    # The old value is free again; the new one is taken.
    taker = contact(hs, email="old@x.com")
    assert assert_error(
        hs.post(CONTACTS, json={"properties": {"email": "NEW@x.com"}}), 409, "CONFLICT"
    )["message"].endswith(f"Existing ID: {first['id']}")
    # Archived: its values are free.
    assert hs.delete(f"{CONTACTS}/{first['id']}").status_code == 204
    assert by_email("new@x.com") == 404
    again = contact(hs, email="new@x.com", agency_crm_key="key-a")
    assert again["id"] not in (first["id"], taker["id"])
    upsert = {"inputs": [{"id": "key-a", "idProperty": "agency_crm_key", "properties": {}}]}
    result = hs.post(f"{CONTACTS}/batch/upsert", json=upsert).json()["results"][0]
    assert result["id"] == again["id"] and result["new"] is False


def test_patch_contact(hs: httpx.Client) -> None:
    created = contact(hs, email="p@x.com")
    r = hs.patch(f"{CONTACTS}/{created['id']}", json={"properties": {"firstname": "Pat"}})
    assert r.status_code == 200
    assert r.json()["properties"]["firstname"] == "Pat"
    r = hs.patch(
        f"{CONTACTS}/p@x.com",
        params={"idProperty": "email"},
        json={"properties": {"lastname": "Q"}},
    )
    assert r.json()["properties"]["lastname"] == "Q"
    assert_error(hs.patch(f"{CONTACTS}/1", json={"properties": {}}), 404, "OBJECT_NOT_FOUND")
    assert_error(
        hs.patch(f"{CONTACTS}/{created['id']}", json={"properties": {"x": 1}}),
        400,
        "VALIDATION_ERROR",
    )


def test_search_contacts(hs: httpx.Client) -> None:
    a = contact(hs, email="s1@x.com", agency_crm_key="ka", firstname="Sam")
    contact(hs, email="s2@x.com", firstname="Sam")
    found = hs.post(f"{CONTACTS}/search", json=eq("email", "S1@x.com")).json()
    assert found["total"] == 1 and found["results"][0]["id"] == a["id"]
    by_key = hs.post(f"{CONTACTS}/search", json=eq("agency_crm_key", "ka")).json()
    assert by_key["results"][0]["properties"]["agency_crm_key"] == "ka"
    page = hs.post(f"{CONTACTS}/search", json={**eq("firstname", "sam"), "limit": 1}).json()
    assert page["total"] == 2 and len(page["results"]) == 1
    after = page["paging"]["next"]["after"]
    rest = hs.post(
        f"{CONTACTS}/search", json={**eq("firstname", "sam"), "limit": 1, "after": after}
    ).json()
    assert len(rest["results"]) == 1 and "paging" not in rest
    none = hs.post(f"{CONTACTS}/search", json=eq("email", "zz@x.com")).json()
    assert none == {"total": 0, "results": []}
    either = {
        "filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "s1@x.com"}]},
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "s2@x.com"}]},
        ]
    }
    assert hs.post(f"{CONTACTS}/search", json=either).json()["total"] == 2
    bad_op = {
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]
    }
    assert_error(hs.post(f"{CONTACTS}/search", json=bad_op), 400, "VALIDATION_ERROR")
    assert_error(hs.post(f"{CONTACTS}/search", json={"limit": 201}), 400, "VALIDATION_ERROR")


def test_search_lag(hs: httpx.Client, token: str) -> None:
    configure(hs, token=token, search_lag_ms=300)
    created = contact(hs, email="lag@x.com")
    assert hs.post(f"{CONTACTS}/search", json=eq("email", "lag@x.com")).json()["total"] == 0
    # Direct reads and unique checks are immediate.
    assert hs.get(f"{CONTACTS}/lag@x.com", params={"idProperty": "email"}).status_code == 200
    assert hs.post(CONTACTS, json={"properties": {"email": "lag@x.com"}}).status_code == 409
    time.sleep(0.35)
    found = hs.post(f"{CONTACTS}/search", json=eq("email", "lag@x.com")).json()
    assert [r["id"] for r in found["results"]] == [created["id"]]
    # An update shows old values in search until the lag has passed.
    hs.patch(f"{CONTACTS}/{created['id']}", json={"properties": {"firstname": "New"}})
    assert hs.post(f"{CONTACTS}/search", json=eq("firstname", "New")).json()["total"] == 0
    time.sleep(0.35)
    assert hs.post(f"{CONTACTS}/search", json=eq("firstname", "New")).json()["total"] == 1


# --------------------------------------------------------------------------- deals


def test_create_deal_with_association(hs: httpx.Client, token: str) -> None:
    owner = hs.get("/crm/v3/owners").json()["results"][0]["id"]
    c = contact(hs, email="d@x.com")
    r = hs.post(
        DEALS,
        json={
            "properties": {
                "dealname": "Big",
                "pipeline": "default",
                "dealstage": "closedwon",
                "amount": "1500.50",
                "hubspot_owner_id": owner,
                "closedate": "2026-03-01",
                "hs_forecast_probability": "0.5",
                "agency_crm_key": "deal-1",
                "description": "from the runner",
            },
            "associations": [
                {
                    "to": {"id": c["id"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}],
                }
            ],
        },
    )
    assert r.status_code == 201, r.text
    props = r.json()["properties"]
    assert props["closedate"] == "2026-03-01T00:00:00.000Z"
    assert props["hs_is_closed_won"] == "true"
    s = state(hs, token)
    assert s["associations"] == [
        {"deal_id": r.json()["id"], "contact_id": c["id"], "associationTypeId": 3}
    ]
    got = hs.get(
        f"{DEALS}/deal-1", params={"idProperty": "agency_crm_key", "associations": "contacts"}
    )
    assert got.json()["associations"]["contacts"]["results"][0]["id"] == c["id"]
    assert got.json()["properties"]["dealstage"] == "closedwon"


@pytest.mark.parametrize(
    "props",
    [
        {"dealstage": "nope"},
        {"pipeline": "other"},
        {"dealstage": ""},
        {"hubspot_owner_id": "123"},
        {"amount": "lots"},
        {"amount": 100},
        {"closedate": "soon"},
        {"hs_forecast_probability": "2"},
    ],
)
def test_deal_validation(hs: httpx.Client, token: str, props: dict[str, Any]) -> None:
    assert_error(deal(hs, **props), 400, "VALIDATION_ERROR")
    assert state(hs, token)["deals"] == []


def test_deal_bad_associations(hs: httpx.Client) -> None:
    spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3}]
    body = {"properties": {"dealname": "x", "dealstage": "closedlost"}}
    r = hs.post(DEALS, json={**body, "associations": [{"to": {"id": "404"}, "types": spec}]})
    assert_error(r, 400, "VALIDATION_ERROR")
    c = contact(hs, email="assoc@x.com")
    wrong = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 5}]
    r = hs.post(DEALS, json={**body, "associations": [{"to": {"id": c["id"]}, "types": wrong}]})
    assert_error(r, 400, "VALIDATION_ERROR")


def test_deal_unique_key_and_patch(hs: httpx.Client) -> None:
    first = deal(hs, agency_crm_key="dk").json()
    assert_error(deal(hs, agency_crm_key="dk"), 409, "CONFLICT")
    r = hs.patch(
        f"{DEALS}/{first['id']}", json={"properties": {"dealstage": "closedlost", "amount": "10"}}
    )
    assert r.status_code == 200
    assert r.json()["properties"]["dealstage"] == "closedlost"
    assert r.json()["properties"]["hs_is_closed"] == "true"
    r = hs.patch(
        f"{DEALS}/dk",
        params={"idProperty": "agency_crm_key"},
        json={"properties": {"dealstage": "bad"}},
    )
    assert_error(r, 400, "VALIDATION_ERROR")
    assert_error(hs.patch(f"{DEALS}/1", json={"properties": {}}), 404, "OBJECT_NOT_FOUND")
    found = hs.post(f"{DEALS}/search", json=eq("agency_crm_key", "dk")).json()
    assert found["total"] == 1 and found["results"][0]["properties"]["dealstage"] == "closedlost"


def test_batch_upsert(hs: httpx.Client, token: str) -> None:
    def upsert(**props: str) -> httpx.Response:
        item = {"id": "up-1", "idProperty": "agency_crm_key", "properties": props}
        return hs.post(f"{DEALS}/batch/upsert", json={"inputs": [item]})

    first = upsert(dealname="Up", dealstage="appointmentscheduled", amount="5")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    (result,) = body["results"]
    assert result["new"] is True and result["properties"]["agency_crm_key"] == "up-1"
    second = upsert(dealstage="contractsent")
    (again,) = second.json()["results"]
    assert again["new"] is False and again["id"] == result["id"]
    assert again["properties"]["dealname"] == "Up"
    assert again["properties"]["dealstage"] == "contractsent"
    deals = state(hs, token)["deals"]
    assert len(deals) == 1 and deals[0]["properties"]["amount"] == "5"


@pytest.mark.parametrize(
    "inputs",
    [
        [{"id": "a", "idProperty": "dealname", "properties": {"dealstage": "closedwon"}}],
        [{"id": "a", "properties": {"dealstage": "closedwon"}}],
        [
            {"id": "a", "idProperty": "agency_crm_key", "properties": {"dealstage": "closedwon"}},
            {"id": "a", "idProperty": "agency_crm_key", "properties": {"dealstage": "closedwon"}},
        ],
        [
            {"id": "a", "idProperty": "agency_crm_key", "properties": {"dealstage": "closedwon"}},
            {"id": "b", "idProperty": "agency_crm_key", "properties": {"dealstage": "nope"}},
        ],
        [],
    ],
)
def test_batch_upsert_errors_write_nothing(hs: httpx.Client, token: str, inputs: list[Any]) -> None:
    r = hs.post(f"{DEALS}/batch/upsert", json={"inputs": inputs})
    assert_error(r, 400, "VALIDATION_ERROR")
    assert state(hs, token)["deals"] == []


def test_association_put_is_idempotent(hs: httpx.Client, token: str) -> None:
    c = contact(hs, email="a1@x.com")
    d = deal(hs).json()
    path = f"/crm/v4/objects/deals/{d['id']}/associations/default/contacts/{c['id']}"
    for _ in range(2):
        r = hs.put(path)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "COMPLETE"
        assert body["results"] == [
            {
                "from": {"id": d["id"]},
                "to": {"id": c["id"]},
                "associationSpec": {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": 3,
                },
            }
        ]
    assert len(state(hs, token)["associations"]) == 1
    listed = hs.get(f"/crm/v4/objects/deals/{d['id']}/associations/contacts").json()
    assert listed["results"][0]["toObjectId"] == int(c["id"])
    missing_contact = f"/crm/v4/objects/deals/{d['id']}/associations/default/contacts/1"
    assert_error(hs.put(missing_contact), 404, "OBJECT_NOT_FOUND")
    missing_deal = f"/crm/v4/objects/deals/1/associations/default/contacts/{c['id']}"
    assert_error(hs.put(missing_deal), 404, "OBJECT_NOT_FOUND")


def test_unknown_route_and_method(hs: httpx.Client) -> None:
    assert hs.get("/crm/v3/objects/widgets").status_code == 404
    assert hs.put(CONTACTS).status_code == 405


# --------------------------------------------------------------------------- path forms


@pytest.mark.parametrize(
    "path",
    ["/crm/v3/owners/", "/crm/v3/pipelines/deals/", f"{CONTACTS}/", "/crm/v3/properties/deals/"],
)
def test_trailing_slash_forms_are_served(hs: httpx.Client, path: str) -> None:
    r = hs.get(path)
    assert r.status_code == 200, r.text
    assert r.json() == hs.get(path.rstrip("/")).json() or "results" in r.json()


def test_trailing_slash_on_writes_and_ids(hs: httpx.Client) -> None:
    created = hs.post(f"{CONTACTS}/", json={"properties": {"email": "s@x.com"}})
    assert created.status_code == 201, created.text
    got = hs.get(f"{CONTACTS}/{created.json()['id']}/")
    assert got.status_code == 200 and got.json()["id"] == created.json()["id"]
    assert hs.get("/crm/v3/nowhere/").status_code == 404


def test_numeric_object_type_ids_are_aliases(hs: httpx.Client) -> None:
    person = hs.post("/crm/v3/objects/0-1", json={"properties": {"email": "n@x.com"}})
    assert person.status_code == 201, person.text
    contact_id = person.json()["id"]
    assert hs.get(f"{CONTACTS}/{contact_id}").status_code == 200
    props = {"dealname": "N", "dealstage": "closedwon", "agency_crm_key": "nk"}
    created = hs.post("/crm/v3/objects/0-3", json={"properties": props, "associations": []})
    assert created.status_code == 201, created.text
    deal_id = created.json()["id"]
    assert hs.get(f"{DEALS}/{deal_id}").json()["properties"]["dealname"] == "N"
    patched = hs.patch(f"/crm/v3/objects/0-3/{deal_id}", json={"properties": {"amount": "5"}})
    assert patched.json()["properties"]["amount"] == "5"
    upsert = {"inputs": [{"id": "nk", "idProperty": "agency_crm_key", "properties": {}}]}
    r = hs.post("/crm/v3/objects/0-3/batch/upsert", json=upsert)
    assert r.json()["results"][0]["id"] == deal_id and r.json()["results"][0]["new"] is False
    found = hs.post("/crm/v3/objects/0-3/search", json=eq("agency_crm_key", "nk")).json()
    assert [d["id"] for d in found["results"]] == [deal_id]
    linked = hs.put(f"/crm/v4/objects/0-3/{deal_id}/associations/default/0-1/{contact_id}")
    assert linked.status_code == 200, linked.text
    back = hs.get(f"/crm/v4/objects/0-1/{contact_id}/associations/deals").json()
    assert [a["toObjectId"] for a in back["results"]] == [int(deal_id)]
    mixed = hs.get(f"/crm/v4/objects/deals/{deal_id}/associations/0-1").json()
    assert [a["toObjectId"] for a in mixed["results"]] == [int(contact_id)]
    assert hs.delete(f"/crm/v3/objects/0-3/{deal_id}").status_code == 204
    assert hs.get(f"{DEALS}/{deal_id}").status_code == 404
    assert hs.get("/crm/v3/objects/0-2").status_code == 404  # companies: not served
