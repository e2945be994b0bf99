"""Calls per push into Pipedrive and Close: exactly the calls the id map cannot make
unnecessary (docs/push.md, "Calls per push"). A known person, organisation, lead or deal is
never looked up again, an organisation is matched once per company per run, and a search is
made only for a create whose earlier answer was lost, which then ends in no duplicate."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import Make, Row
from tests.push.conftest import Crm, connect_crm, run_drain
from tests.push.test_end_to_end import create_contact_directly

# Each push's calls, in order: the push log's operation and the request, ids as {id}.
EXPECTED: dict[str, dict[str, list[str]]] = {
    "pipedrive": {
        "new lead, new company": [
            "create_org POST /api/v2/organizations",
            "create_contact POST /api/v2/persons",
            "create_deal POST /api/v2/deals",
        ],
        "known lead books again": ["create_deal POST /api/v2/deals"],
        "known deal changes stage": ["update_deal PATCH /api/v2/deals/{id}"],
        "new lead, known company": [
            "create_contact POST /api/v2/persons",
            "create_deal POST /api/v2/deals",
        ],
    },
    "close": {
        "new lead, new company": [
            "create_contact POST /api/v1/lead/",
            "create_deal POST /api/v1/opportunity/",
        ],
        "known lead books again": ["create_deal POST /api/v1/opportunity/"],
        "known deal changes stage": ["update_deal PUT /api/v1/opportunity/{id}/"],
        "new lead, known company": [
            "create_contact POST /api/v1/lead/",
            "create_deal POST /api/v1/opportunity/",
        ],
    },
}
VENDORS = tuple(EXPECTED)

# Where each create goes, and the search by our key that a lost answer to it leads to.
CREATES = [
    ("pipedrive", "organisation", "POST", "/api/v2/organizations", "find_org_by_key"),
    ("pipedrive", "person", "POST", "/api/v2/persons", "find_contact_by_key"),
    ("pipedrive", "deal", "POST", "/api/v2/deals", "find_deal_by_key"),
    ("close", "lead", "POST", "/api/v1/lead/", "find_lead_by_key"),
    ("close", "opportunity", "POST", "/api/v1/opportunity/", "find_deal_by_key"),
]

_ID_SEGMENT = re.compile(r"/(\d+|[a-z]+_[A-Za-z0-9]+)(?=/|$)")


def calls_of_last_push(conn: psycopg.Connection[Any], client_id: Any) -> list[str]:
    """The CRM calls of the client's latest push, as 'operation METHOD /path'."""
    rows = conn.execute(
        "SELECT operation, request_payload->>'method', request_payload->>'path'"
        " FROM crm.crm_push_log"
        " WHERE push_id = (SELECT max(id) FROM crm.crm_push_queue WHERE client_id = %s)"
        " ORDER BY created_at, id",
        (client_id,),
    ).fetchall()
    return [f"{op} {method} {_ID_SEGMENT.sub('/{id}', path)}" for op, method, path in rows]


def drain_one(conn: psycopg.Connection[Any], url: str, client: Row) -> list[str]:
    """Drain; exactly one push was due and is done. Its calls."""
    summary = run_drain(url)
    assert summary.pushes == 1 and summary.outcomes["done"] == 1, summary
    return calls_of_last_push(conn, client["id"])


@pytest.mark.parametrize("vendor", VENDORS)
def test_each_push_makes_only_the_calls_the_id_map_cannot_spare(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, vendor)
    expected = EXPECTED[vendor]
    calls: dict[str, list[str]] = {}

    lead = pmake.lead(client, email="ada@engines.example", company="Analytical Engines")
    meeting = pmake.meeting(lead)
    calls["new lead, new company"] = drain_one(conn, url, client)

    pmake.meeting(lead)
    calls["known lead books again"] = drain_one(conn, url, client)

    deal = pmake.deal(lead, meeting_id=meeting["id"], name="Pilot")
    drain_one(conn, url, client)  # the deal takes over the meeting's CRM deal
    conn.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))
    calls["known deal changes stage"] = drain_one(conn, url, client)

    # Another run: the organisation's id comes from our map, spelled differently or not.
    colleague = pmake.lead(client, email="charles@engines.example", company=" analytical  ENGINES")
    pmake.meeting(colleague)
    calls["new lead, known company"] = drain_one(conn, url, client)

    assert calls == expected
    assert len(crm.contacts()) == 2 and len(crm.deals()) == 3
    if vendor == "pipedrive":
        [org] = crm.state()["organizations"]
        assert {p["org_id"] for p in crm.contacts()} == {org["id"]}


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_company_is_matched_once_per_run(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, vendor)
    leads = [pmake.lead(client, company="Difference Engines") for _ in range(6)]
    for lead in leads:
        pmake.meeting(lead)

    summary = run_drain(url, per_client=4)

    assert summary.outcomes["done"] == 6, summary
    ops = [
        r[0]
        for r in conn.execute(
            "SELECT operation FROM crm.crm_push_log WHERE client_id = %s", (client["id"],)
        )
    ]
    per_lead = len(EXPECTED[vendor]["new lead, known company"])
    if vendor == "pipedrive":
        # Four pushes at once wanted the organisation: one created it, the others waited
        # for it (key_lock) and took it from the run's cache.
        assert ops.count("create_org") == 1
        assert len(crm.state()["organizations"]) == 1
        assert len(ops) == 1 + 6 * per_lead
    else:
        assert len(ops) == 6 * per_lead
    assert not [op for op in ops if op.startswith("find_")]


@pytest.mark.parametrize(
    ("vendor", "record", "method", "path", "search"),
    CREATES,
    ids=[f"{c[0]}-{c[1]}" for c in CREATES],
)
@pytest.mark.parametrize("search_lag_ms", [0, 600], ids=["searchable", "search-lag"])
def test_a_lost_answer_to_a_create_is_found_by_its_key_not_created_again(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    sandbox: Sandbox,
    vendor: str,
    record: str,
    method: str,
    path: str,
    search: str,
    search_lag_ms: int,
) -> None:
    """The CRM does the create and the connection drops before its answer (``drop_after``):
    the retry searches for the record by our key (waiting while it may not be searchable
    yet) and adopts it, and a later push of the lead needs no search at all."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, vendor)
    crm.configure(search_lag_ms=search_lag_ms)
    lead = pmake.lead(client, company="Analytical Engines")
    pmake.meeting(lead)
    crm.fault(method=method, path=path, times=1, kind="drop_after")

    summary = run_drain(url, http_timeout=0.5, search_lag=timedelta(seconds=0.8))

    assert summary.outcomes["done"] == 1, summary
    rows = conn.execute(
        "SELECT operation, status, error_code FROM crm.crm_push_log WHERE client_id = %s"
        " ORDER BY created_at, id",
        (client["id"],),
    ).fetchall()
    failed = [r for r in rows if r[1] == "failed"]
    assert [r[2] for r in failed] == ["connection_error"], rows
    lost = failed[0][0]
    assert [r[0] for r in rows].count(lost) == 1, f"{lost} sent again: {rows}"
    assert (search, "success", None) in rows
    assert held(crm) == {
        "contacts": 1,
        "deals": 1,
        "organisations": 1 if vendor == "pipedrive" else 0,
    }
    in_doubt = conn.execute(
        "SELECT count(*) FROM crm.crm_external_ids WHERE client_id = %s"
        " AND (crm_id IS NULL OR create_sent_at IS NOT NULL)",
        (client["id"],),
    ).fetchone()
    assert in_doubt == (0,)

    # The ids are all recorded: the lead's next booking is one call.
    pmake.meeting(lead)
    assert len(drain_one(conn, url, client)) == 1
    assert held(crm)["deals"] == 2


def held(crm: Crm) -> dict[str, int]:
    """How many contacts (persons; Close leads' contacts), deals and organisations (Close:
    leads besides those of contacts) the fake CRM holds."""
    state = crm.state()
    orgs = len(state["organizations"]) if crm.vendor == "pipedrive" else 0
    if crm.vendor == "close":
        assert len(state["leads"]) == len(crm.contacts()), "a Close lead without its contact"
    return {"contacts": len(crm.contacts()), "deals": len(crm.deals()), "organisations": orgs}


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_person_made_by_hand_is_not_searched_for(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    """The trade-off of searching only for creates in doubt (docs/push.md, "Calls per push"):
    a person the client made in Pipedrive or Close by hand, with the lead's email, is not
    adopted; the lead gets a person of its own, carrying our key."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, vendor)
    email = "grace@navy.example"
    create_contact_directly(crm, email)
    lead = pmake.lead(client, email=email, company=None)
    pmake.meeting(lead)

    calls = drain_one(conn, url, client)

    assert [c.split()[0] for c in calls] == ["create_contact", "create_deal"]
    assert [c["email"] for c in crm.contacts()] == [email, email]
