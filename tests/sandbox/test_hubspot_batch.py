"""Fake HubSpot batch endpoints over real HTTP: upsert, update, read, v4 associate/default.

What the push runner will rely on: the 100-input limit, duplicate ids refused, 207 with
per-input errors (natural ones with trace ids, missing ids, injected ``item_error`` faults),
idempotent resends after a lost answer, and a batch costing one call of the rate limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.sandbox import add_faults, base, configure, state

Client = Callable[..., httpx.Client]
CONTACTS = "/crm/v3/objects/contacts"
DEALS = "/crm/v3/objects/deals"
DEALS_TO_CONTACTS = "/crm/v4/associations/deals/contacts/batch/associate/default"
CONTACTS_TO_DEALS = "/crm/v4/associations/contacts/deals/batch/associate/default"
KEY = "agency_crm_key"
TOO_MANY = (
    "The maximum number of inputs supported in a batch is 100. "
    "Please reduce the number of items and try again"
)


def deal_input(key: str, trace: str | None = None, **props: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": key,
        "idProperty": KEY,
        "properties": {"dealname": f"Deal {key}", "dealstage": "qualifiedtobuy", **props},
    }
    if trace is not None:
        item["objectWriteTraceId"] = trace
    return item


def upsert_deals(hs: httpx.Client, *inputs: dict[str, Any]) -> httpx.Response:
    return hs.post(f"{DEALS}/batch/upsert", json={"inputs": list(inputs)})


def made_deals(hs: httpx.Client, n: int) -> list[str]:
    """Ids of ``n`` new deals (keys d0, d1, ...), made in one upsert."""
    r = upsert_deals(hs, *(deal_input(f"d{i}") for i in range(n)))
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["results"]]


def made_contact(hs: httpx.Client, email: str) -> str:
    r = hs.post(CONTACTS, json={"properties": {"email": email}, "associations": []})
    assert r.status_code == 201, r.text
    contact_id: str = r.json()["id"]
    return contact_id


def assert_400(r: httpx.Response, message: str | None = None) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
    assert body["correlationId"]
    if message is not None:
        assert body["message"] == message
    return body


def assert_complete(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "COMPLETE" and body["startedAt"] and body["completedAt"]
    if status == 200 and "associations" not in str(r.request.url):
        assert "errors" not in body and "numErrors" not in body
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    assert body["numErrors"] == 1 and len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    assert error["status"] == "error" and error["message"]
    return error


# --------------------------------------------------------------------------- upsert


def test_contact_upsert_by_email_creates_then_updates_ignoring_case(
    hs: httpx.Client, token: str
) -> None:
    def upsert(email: str, **props: str) -> httpx.Response:
        item = {"id": email, "idProperty": "email", "properties": props}
        return hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": [item]})

    first = assert_complete(upsert("Jane.Doe@Example.com", firstname="Jane"), 200)
    (created,) = first["results"]
    assert created["new"] is True
    assert created["properties"]["email"] == "jane.doe@example.com"
    again = assert_complete(upsert("JANE.DOE@example.COM", lastname="Doe"), 200)
    (updated,) = again["results"]
    assert updated["new"] is False and updated["id"] == created["id"]
    assert updated["properties"]["firstname"] == "Jane"
    assert updated["properties"]["lastname"] == "Doe"
    # A contact made by a plain create is found by an upsert in another case, too.
    other = made_contact(hs, "sam@example.com")
    (found,) = assert_complete(upsert("Sam@EXAMPLE.com", firstname="Sam"), 200)["results"]
    assert found["id"] == other and found["new"] is False
    contacts = state(hs, token)["contacts"]
    assert sorted(c["properties"]["email"] for c in contacts) == [
        "jane.doe@example.com",
        "sam@example.com",
    ]


def test_contact_upsert_by_key_for_leads_without_email(hs: httpx.Client, token: str) -> None:
    item = {"id": "lead-7", "idProperty": KEY, "properties": {"firstname": "No", "phone": "+1"}}
    body = {"inputs": [item]}
    first = assert_complete(hs.post(f"{CONTACTS}/batch/upsert", json=body), 200)
    again = assert_complete(hs.post(f"{CONTACTS}/batch/upsert", json=body), 200)
    assert first["results"][0]["new"] is True and again["results"][0]["new"] is False
    assert first["results"][0]["properties"][KEY] == "lead-7"
    assert len(state(hs, token)["contacts"]) == 1


def test_upsert_mixes_creates_and_updates_in_input_order(hs: httpx.Client, token: str) -> None:
    (old,) = made_deals(hs, 1)  # key d0
    body = assert_complete(
        upsert_deals(hs, deal_input("new-1"), deal_input("d0", dealstage="closedwon")), 200
    )
    assert [(r["new"], r["properties"][KEY]) for r in body["results"]] == [
        (True, "new-1"),
        (False, "d0"),
    ]
    assert body["results"][1]["id"] == old
    assert body["results"][1]["properties"]["hs_is_closed_won"] == "true"
    assert len(state(hs, token)["deals"]) == 2


@pytest.mark.parametrize(
    ("inputs", "ids"),
    [
        ([deal_input("a"), deal_input("b"), deal_input("a")], ["a"]),
        ([deal_input("a"), deal_input("a"), deal_input("b"), deal_input("b")], ["a", "b"]),
    ],
)
def test_upsert_refuses_duplicate_ids(
    hs: httpx.Client, token: str, inputs: list[dict[str, Any]], ids: list[str]
) -> None:
    message = f"Duplicate IDs found in batch input: [{', '.join(ids)}]. IDs must be unique"
    body = assert_400(upsert_deals(hs, *inputs), message)
    assert body["context"] == {"ids": ids}
    assert state(hs, token)["deals"] == []


def test_upsert_refuses_emails_differing_only_in_case(hs: httpx.Client, token: str) -> None:
    inputs = [
        {"id": "a@x.com", "idProperty": "email", "properties": {}},
        {"id": "A@X.com", "idProperty": "email", "properties": {}},
    ]
    body = assert_400(hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs}))
    assert body["message"].startswith("Duplicate IDs found in batch input")
    assert body["context"] == {"ids": ["A@X.com"]}
    assert state(hs, token)["contacts"] == []


def test_upsert_refuses_two_inputs_reaching_one_record(hs: httpx.Client, token: str) -> None:
    made = hs.post(CONTACTS, json={"properties": {"email": "one@x.com", KEY: "k1"}})
    assert made.status_code == 201
    inputs = [
        {"id": "one@x.com", "idProperty": "email", "properties": {"firstname": "A"}},
        {"id": "k1", "idProperty": KEY, "properties": {"firstname": "B"}},
    ]
    body = assert_400(hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs}))
    assert body["context"] == {"ids": ["one@x.com", "k1"]}
    assert "firstname" not in state(hs, token)["contacts"][0]["properties"]


@pytest.mark.parametrize("id_property", ["hs_object_id", "dealname", None, 7])
def test_upsert_needs_a_unique_id_property(hs: httpx.Client, id_property: Any) -> None:
    item = {"id": "x", "properties": {"dealstage": "closedwon"}, "idProperty": id_property}
    body = assert_400(upsert_deals(hs, item))
    assert body["message"].startswith("Unable to perform update/upsert by non-unique 0-3 property")


def test_upsert_without_trace_ids_fails_whole_on_one_bad_input(
    hs: httpx.Client, token: str
) -> None:
    r = upsert_deals(hs, deal_input("ok"), deal_input("bad", dealstage="nope"))
    assert_400(r)
    assert "dealstage" in r.json()["message"]
    assert state(hs, token)["deals"] == []


def test_upsert_with_trace_ids_is_207_per_input(hs: httpx.Client, token: str) -> None:
    r = upsert_deals(
        hs,
        deal_input("ok", trace="t1"),
        deal_input("bad", trace="t2", dealstage="nope"),
        deal_input("ok2", trace="t3", amount="12"),
    )
    body = assert_complete(r, 207)
    assert [(x["objectWriteTraceId"], x["new"]) for x in body["results"]] == [
        ("t1", True),
        ("t3", True),
    ]
    error = only_error(body)
    assert error["category"] == "VALIDATION_ERROR" and "dealstage" in error["message"]
    assert error["context"] == {"objectWriteTraceId": ["t2"]}
    assert error["errors"][0]["code"] == "INVALID_OPTION"
    keys = sorted(d["properties"][KEY] for d in state(hs, token)["deals"])
    assert keys == ["ok", "ok2"]


def test_upsert_conflict_is_per_input_with_trace_ids(hs: httpx.Client, token: str) -> None:
    taken = made_contact(hs, "taken@x.com")
    inputs = [
        {"id": "k-a", "idProperty": KEY, "properties": {"email": "TAKEN@x.com"}},
        {"id": "k-b", "idProperty": KEY, "properties": {"email": "free@x.com"}},
    ]
    r = hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs})
    assert r.status_code == 409 and r.json()["category"] == "CONFLICT"
    assert len(state(hs, token)["contacts"]) == 1
    for n, item in enumerate(inputs):
        item["objectWriteTraceId"] = str(n)
    body = assert_complete(hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs}), 207)
    error = only_error(body)
    assert error["category"] == "CONFLICT"
    assert error["message"] == f"Contact already exists. Existing ID: {taken}"
    assert error["context"] == {"existingId": [taken], "objectWriteTraceId": ["0"]}
    assert [x["properties"][KEY] for x in body["results"]] == ["k-b"]


def test_two_inputs_setting_one_unique_value_conflict(hs: httpx.Client, token: str) -> None:
    inputs = [
        {"id": "k-a", "idProperty": KEY, "properties": {"email": "same@x.com"}},
        {"id": "k-b", "idProperty": KEY, "properties": {"email": "Same@x.com"}},
    ]
    r = hs.post(f"{CONTACTS}/batch/upsert", json={"inputs": inputs})
    assert r.status_code == 409, r.text
    assert state(hs, token)["contacts"] == []


# --------------------------------------------------------------------------- limits


def many(endpoint: str, hs: httpx.Client, n: int) -> tuple[str, dict[str, Any]]:
    """(path, body) of a call of ``endpoint`` with ``n`` inputs (records made as needed)."""
    if endpoint == "upsert":
        return f"{DEALS}/batch/upsert", {"inputs": [deal_input(f"k{i}") for i in range(n)]}
    ids = made_deals(hs, min(n, 100))
    ids += ids[: n - len(ids)] if endpoint == "associate" else [str(i) for i in range(n - 100)]
    if endpoint == "update":
        inputs = [{"id": i, "properties": {"amount": "1"}} for i in ids]
        return f"{DEALS}/batch/update", {"inputs": inputs}
    if endpoint == "read":
        body = {"inputs": [{"id": i} for i in ids], "properties": [], "propertiesWithHistory": []}
        return f"{DEALS}/batch/read", body
    contact_id = made_contact(hs, f"many-{n}@x.com")
    if n > 100:  # distinct pairs: a second contact for the repeated deals
        other = made_contact(hs, "more@x.com")
        pairs = [(d, contact_id if k < 100 else other) for k, d in enumerate(ids)]
    else:
        pairs = [(d, contact_id) for d in ids]
    inputs = [{"from": {"id": d}, "to": {"id": c}} for d, c in pairs]
    return DEALS_TO_CONTACTS, {"inputs": inputs}


@pytest.mark.parametrize("endpoint", ["upsert", "update", "read", "associate"])
def test_100_inputs_pass_and_101_are_400(hs: httpx.Client, token: str, endpoint: str) -> None:
    path, body = many(endpoint, hs, 100)
    ok = assert_complete(hs.post(path, json=body), 200)
    assert len(ok["results"]) == 100
    path, body = many(endpoint, hs, 101)
    before = state(hs, token)
    assert_400(hs.post(path, json=body), TOO_MANY)
    after = state(hs, token)
    assert after["deals"] == before["deals"]
    assert after["associations"] == before["associations"]


def test_read_with_history_takes_at_most_50(hs: httpx.Client) -> None:
    ids = made_deals(hs, 51)
    body = {"inputs": [{"id": i} for i in ids], "properties": [], "propertiesWithHistory": [KEY]}
    r = hs.post(f"{DEALS}/batch/read", json=body)
    assert_400(r)
    assert "property histories is 50" in r.json()["message"]
    body["inputs"] = body["inputs"][:50]
    ok = assert_complete(hs.post(f"{DEALS}/batch/read", json=body), 200)
    history = ok["results"][0]["propertiesWithHistory"][KEY]
    assert history[0]["value"] == "d0" and history[0]["sourceType"] == "API"


@pytest.mark.parametrize(
    "path",
    [f"{DEALS}/batch/upsert", f"{DEALS}/batch/update", f"{CONTACTS}/batch/read", CONTACTS_TO_DEALS],
)
@pytest.mark.parametrize("body", [{"inputs": []}, {}, {"inputs": {}}, {"inputs": [7]}, []])
def test_empty_or_malformed_inputs_are_400(hs: httpx.Client, path: str, body: Any) -> None:
    assert_400(hs.post(path, json=body))


# --------------------------------------------------------------------------- update


def test_update_by_id_and_missing_ids_are_207(hs: httpx.Client, token: str) -> None:
    first, second, gone = made_deals(hs, 3)
    assert hs.delete(f"{DEALS}/{gone}").status_code == 204
    inputs = [
        {"id": first, "properties": {"dealstage": "closedwon"}},
        {"id": "999999", "properties": {"dealstage": "closedwon"}},
        {"id": second, "properties": {"amount": "7"}},
        {"id": gone, "properties": {"amount": "8"}},
    ]
    body = assert_complete(hs.post(f"{DEALS}/batch/update", json={"inputs": inputs}), 207)
    assert [r["id"] for r in body["results"]] == [first, second]
    assert "new" not in body["results"][0]
    error = only_error(body)
    assert error["category"] == "OBJECT_NOT_FOUND"
    assert error["message"] == (
        "Could not get some DEAL objects, they may be deleted or not exist. "
        "Check that ids are valid."
    )
    assert error["context"] == {"ids": ["999999", gone]}
    deals = {d["id"]: d["properties"] for d in state(hs, token)["deals"]}
    assert deals[first]["dealstage"] == "closedwon" and deals[second]["amount"] == "7"
    assert "amount" not in deals[gone]


def test_update_all_missing_is_207_with_no_results(hs: httpx.Client) -> None:
    inputs = [{"id": "1", "properties": {}}, {"id": "2", "properties": {}}]
    body = assert_complete(hs.post(f"{CONTACTS}/batch/update", json={"inputs": inputs}), 207)
    assert body["results"] == []
    assert only_error(body)["context"] == {"ids": ["1", "2"]}


def test_update_by_unique_property(hs: httpx.Client, token: str) -> None:
    contact_id = made_contact(hs, "up@x.com")
    inputs = [{"id": "UP@x.com", "idProperty": "email", "properties": {"firstname": "U"}}]
    body = assert_complete(hs.post(f"{CONTACTS}/batch/update", json={"inputs": inputs}), 200)
    assert body["results"][0]["id"] == contact_id
    assert state(hs, token)["contacts"][0]["properties"]["firstname"] == "U"
    inputs[0]["idProperty"] = "hs_object_id"
    assert_400(hs.post(f"{CONTACTS}/batch/update", json={"inputs": inputs}))


def test_update_refuses_duplicates_and_bad_values(hs: httpx.Client, token: str) -> None:
    (deal_id,) = made_deals(hs, 1)
    dup = [{"id": deal_id, "properties": {"amount": "1"}}] * 2
    body = assert_400(hs.post(f"{DEALS}/batch/update", json={"inputs": dup}))
    assert body["message"] == f"Duplicate IDs found in batch input: [{deal_id}]. IDs must be unique"
    same_record = [
        {"id": deal_id, "properties": {"amount": "1"}},
        {"id": "d0", "idProperty": KEY, "properties": {"amount": "2"}},
    ]
    assert_400(hs.post(f"{DEALS}/batch/update", json={"inputs": same_record}))
    bad = [{"id": deal_id, "properties": {"amount": "lots"}}]
    assert_400(hs.post(f"{DEALS}/batch/update", json={"inputs": bad}))
    bad[0]["objectWriteTraceId"] = "t"
    body = assert_complete(hs.post(f"{DEALS}/batch/update", json={"inputs": bad}), 207)
    assert only_error(body)["context"] == {"objectWriteTraceId": ["t"]}
    assert "amount" not in state(hs, token)["deals"][0]["properties"]


# --------------------------------------------------------------------------- read


def test_read_by_ids_and_by_email(hs: httpx.Client) -> None:
    first, second = made_deals(hs, 2)
    body = {
        "inputs": [{"id": second}, {"id": "404"}, {"id": first}, {"id": first}],
        "properties": [KEY],
        "propertiesWithHistory": [],
    }
    out = assert_complete(hs.post(f"{DEALS}/batch/read", json=body), 207)
    assert [(r["id"], r["properties"][KEY]) for r in out["results"]] == [
        (second, "d1"),
        (first, "d0"),
    ]
    assert "dealstage" in out["results"][0]["properties"]  # a default property
    assert only_error(out)["context"] == {"ids": ["404"]}
    contact_id = made_contact(hs, "read@x.com")
    by_email = {
        "inputs": [{"id": "READ@x.com"}],
        "idProperty": "email",
        "properties": ["email"],
        "propertiesWithHistory": [],
    }
    found = assert_complete(hs.post(f"{CONTACTS}/batch/read", json=by_email), 200)
    assert found["results"][0]["id"] == contact_id


def test_read_archived(hs: httpx.Client) -> None:
    live, gone = made_deals(hs, 2)
    assert hs.delete(f"{DEALS}/{gone}").status_code == 204
    body = {"inputs": [{"id": live}, {"id": gone}], "properties": [], "propertiesWithHistory": []}
    default = assert_complete(hs.post(f"{DEALS}/batch/read", json=body), 207)
    assert [r["id"] for r in default["results"]] == [live]
    archived = hs.post(f"{DEALS}/batch/read", params={"archived": "true"}, json=body)
    out = assert_complete(archived, 207)
    assert [(r["id"], r["archived"]) for r in out["results"]] == [(gone, True)]


# --------------------------------------------------------------------------- associations


def test_associate_default_both_directions(hs: httpx.Client, token: str) -> None:
    d1, d2 = made_deals(hs, 2)
    c1, c2 = made_contact(hs, "c1@x.com"), made_contact(hs, "c2@x.com")
    inputs = [{"from": {"id": d1}, "to": {"id": c1}}, {"from": {"id": d2}, "to": {"id": c1}}]
    body = assert_complete(hs.post(DEALS_TO_CONTACTS, json={"inputs": inputs}), 200)
    assert body["results"][0] == {
        "from": {"id": d1},
        "to": {"id": c1},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3},
    }
    assert "errors" not in body
    back = [{"from": {"id": c2}, "to": {"id": d1}}]
    body = assert_complete(hs.post(CONTACTS_TO_DEALS, json={"inputs": back}), 200)
    assert body["results"][0]["associationSpec"]["associationTypeId"] == 4
    pairs = {(a["deal_id"], a["contact_id"]) for a in state(hs, token)["associations"]}
    assert pairs == {(d1, c1), (d2, c1), (d1, c2)}
    listed = hs.get(f"/crm/v4/objects/deals/{d1}/associations/contacts").json()["results"]
    assert sorted(str(a["toObjectId"]) for a in listed) == sorted([c1, c2])
    # Again, with a pair given twice and numeric aliases: idempotent, one result per pair.
    twice = [{"from": {"id": d1}, "to": {"id": c1}}] * 2
    again = hs.post("/crm/v4/associations/0-3/0-1/batch/associate/default", json={"inputs": twice})
    assert len(assert_complete(again, 200)["results"]) == 1
    assert len(state(hs, token)["associations"]) == 3


def test_associate_default_reports_missing_records(hs: httpx.Client, token: str) -> None:
    (deal_id,) = made_deals(hs, 1)
    contact_id = made_contact(hs, "here@x.com")
    inputs = [
        {"from": {"id": deal_id}, "to": {"id": "123"}},
        {"from": {"id": deal_id}, "to": {"id": contact_id}},
        {"from": {"id": "456"}, "to": {"id": contact_id}},
    ]
    r = hs.post(DEALS_TO_CONTACTS, json={"inputs": inputs})
    body = assert_complete(r, 200)  # the spec's only status for this endpoint
    assert [(x["from"]["id"], x["to"]["id"]) for x in body["results"]] == [(deal_id, contact_id)]
    assert body["numErrors"] == 2
    first, second = body["errors"]
    assert first["category"] == "OBJECT_NOT_FOUND" == second["category"]
    assert first["message"] == "No contact with id 123 exists"
    assert first["context"] == {"fromObjectId": [deal_id], "toObjectId": ["123"]}
    assert second["context"] == {"fromObjectId": ["456"], "toObjectId": [contact_id]}
    assert len(state(hs, token)["associations"]) == 1


def test_associate_default_needs_from_and_to(hs: httpx.Client) -> None:
    for bad in ({"from": {"id": "1"}}, {"from": "1", "to": {"id": "2"}}, {"from": {}, "to": {}}):
        assert_400(hs.post(DEALS_TO_CONTACTS, json={"inputs": [bad]}))
    assert hs.post("/crm/v4/associations/deals/deals/batch/associate/default").status_code == 404


# --------------------------------------------------------------------------- faults


def item_fault(match: str, **rule: Any) -> dict[str, Any]:
    return {"kind": "item_error", "match": match, **rule}


def test_item_error_fails_the_chosen_input_only(hs: httpx.Client, token: str) -> None:
    add_faults(hs, item_fault("k2", status=500, message="boom", path=f"{DEALS}/batch/upsert"))
    inputs = [deal_input("k1"), deal_input("k2"), deal_input("k3")]
    body = assert_complete(upsert_deals(hs, *inputs), 207)
    assert [r["properties"][KEY] for r in body["results"]] == ["k1", "k3"]
    assert only_error(body) == {
        "status": "error",
        "category": "INTERNAL_ERROR",
        "message": "boom",
        "context": {"ids": ["k2"]},
        "errors": [],
        "links": {},
    }
    assert sorted(d["properties"][KEY] for d in state(hs, token)["deals"]) == ["k1", "k3"]
    (rule,) = hs.get(base(hs) + "/_sandbox/faults").json()["faults"]
    assert rule == {
        "id": rule["id"],
        "kind": "item_error",
        "times": 0,
        "fired": 1,
        "path": f"{DEALS}/batch/upsert",
        "status": 500,
        "message": "boom",
        "match": "k2",
    }
    # The resend (the fault is used up) writes k2 and updates the others: no duplicates.
    again = assert_complete(upsert_deals(hs, *inputs), 200)
    assert [r["new"] for r in again["results"]] == [False, True, False]
    assert len(state(hs, token)["deals"]) == 3


def test_item_error_with_a_trace_id_names_it(hs: httpx.Client) -> None:
    add_faults(hs, item_fault("k1", status=409, message="taken"))
    body = assert_complete(upsert_deals(hs, deal_input("k1", trace="t-1")), 207)
    assert body["results"] == []
    error = only_error(body)
    assert error["category"] == "CONFLICT" and error["message"] == "taken"
    assert error["context"] == {"ids": ["k1"], "objectWriteTraceId": ["t-1"]}


def test_item_error_on_update_read_and_associate(hs: httpx.Client, token: str) -> None:
    first, second = made_deals(hs, 2)
    contact_id = made_contact(hs, "f@x.com")
    add_faults(hs, item_fault(second, times=-1))
    update = [{"id": i, "properties": {"amount": "3"}} for i in (first, second)]
    body = assert_complete(hs.post(f"{DEALS}/batch/update", json={"inputs": update}), 207)
    assert [r["id"] for r in body["results"]] == [first]
    error = only_error(body)
    assert error["category"] == "VALIDATION_ERROR" and error["context"] == {"ids": [second]}
    read = {
        "inputs": [{"id": first}, {"id": second}],
        "properties": [],
        "propertiesWithHistory": [],
    }
    body = assert_complete(hs.post(f"{DEALS}/batch/read", json=read), 207)
    assert [r["id"] for r in body["results"]] == [first]
    pairs = [{"from": {"id": d}, "to": {"id": contact_id}} for d in (first, second)]
    body = assert_complete(hs.post(DEALS_TO_CONTACTS, json={"inputs": pairs}), 200)
    assert only_error(body)["context"] == {"fromObjectId": [second], "toObjectId": [contact_id]}
    assert [a["deal_id"] for a in state(hs, token)["associations"]] == [first]
    # A deal upserted by its key is also matched by its HubSpot id.
    body = assert_complete(upsert_deals(hs, deal_input("d1")), 207)
    assert only_error(body)["context"] == {"ids": ["d1"]}


@pytest.mark.parametrize("path", [f"{DEALS}/batch/upsert", DEALS_TO_CONTACTS])
def test_drop_after_on_a_batch_writes_and_a_resend_is_idempotent(
    hs: httpx.Client, token: str, path: str
) -> None:
    if path == DEALS_TO_CONTACTS:
        deals = made_deals(hs, 2)
        contact_id = made_contact(hs, "drop@x.com")
        body: dict[str, Any] = {
            "inputs": [{"from": {"id": d}, "to": {"id": contact_id}} for d in deals]
        }
    else:
        body = {"inputs": [deal_input("k1"), deal_input("k2")]}
    add_faults(hs, {"method": "POST", "path": path, "kind": "drop_after"})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        hs.post(path, json=body)
    written = state(hs, token)
    assert len(written["deals"]) == 2
    assert len(written["associations"]) == (2 if path == DEALS_TO_CONTACTS else 0)
    assert written["request_log"][-1]["fault"] == "drop_after"
    assert written["request_log"][-1]["status"] is None
    again = assert_complete(hs.post(path, json=body), 200)
    assert len(again["results"]) == 2
    after = state(hs, token)
    assert [d["id"] for d in after["deals"]] == [d["id"] for d in written["deals"]]
    assert after["associations"] == written["associations"]
    if path != DEALS_TO_CONTACTS:
        assert [r["new"] for r in again["results"]] == [False, False]


@pytest.mark.parametrize(
    ("fault", "status"), [({"kind": "status", "status": 502}, 502), ({"kind": "drop"}, None)]
)
def test_failing_faults_on_a_batch_write_nothing(
    hs: httpx.Client, token: str, fault: dict[str, Any], status: int | None
) -> None:
    add_faults(hs, {"path": f"{DEALS}/batch/upsert", **fault})
    if status is None:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            upsert_deals(hs, deal_input("k1"))
    else:
        assert upsert_deals(hs, deal_input("k1")).status_code == status
    assert state(hs, token)["deals"] == []


def test_rate_limit_slow_and_malformed_faults_on_a_batch(hs: httpx.Client, token: str) -> None:
    path = f"{DEALS}/batch/update"
    add_faults(
        hs,
        {"path": path, "kind": "rate_limit", "retry_after": 3},
        {"path": path, "kind": "slow", "delay_ms": 50},
        {"path": path, "kind": "malformed"},
    )
    (deal_id,) = made_deals(hs, 1)
    inputs = {
        "inputs": [{"id": deal_id, "properties": {"amount": "1"}}, {"id": "9", "properties": {}}]
    }
    limited = hs.post(path, json=inputs)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert "amount" not in state(hs, token)["deals"][0]["properties"]
    assert hs.post(path, json=inputs).status_code == 207  # slow, then done
    garbage = hs.post(path, json=inputs)
    assert garbage.status_code == 207  # a 207 is a success: malformed applies
    with pytest.raises(ValueError):
        garbage.json()


# --------------------------------------------------------------------------- accounting


def test_a_batch_is_one_call(hs: httpx.Client, token: str) -> None:
    configure(hs, token=token, rate_limit={"max": 3, "interval_ms": 60_000})
    path, body = f"{DEALS}/batch/upsert", {"inputs": [deal_input(f"k{i}") for i in range(100)]}
    r = hs.post(path, json=body)
    assert r.status_code == 200
    assert r.headers["X-HubSpot-RateLimit-Remaining"] == "2"
    s = state(hs, token)
    assert len(s["deals"]) == 100
    assert s["requests"] == {f"POST {path}": 1}
    assert s["status_counts"] == {"200": 1}
    (logged,) = s["request_log"]
    assert logged["path"] == path and len(logged["body"]["inputs"]) == 100
    assert hs.post(path, json=body).headers["X-HubSpot-RateLimit-Remaining"] == "1"
    assert hs.post(path, json=body).headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert hs.post(path, json=body).status_code == 429
    assert len(state(hs, token)["deals"]) == 100
