"""HubSpot in batches (issue 15): a claim's pushes go out as a few batch calls; each push
keeps its own outcome and audit rows, a lost answer is sent again without duplicates, one
lead's pushes never ride in one batch, and the batch and one-push paths leave HubSpot in the
same state."""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter, defaultdict
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import Make
from tests.push.conftest import Crm, connect_crm, run_drain

CONTACTS_UPSERT = "/crm/v3/objects/contacts/batch/upsert"
DEALS_UPSERT = "/crm/v3/objects/deals/batch/upsert"
ASSOCIATE = "/crm/v4/associations/deals/contacts/batch/associate/default"


def log_rows(conn: psycopg.Connection[Any], client_id: Any) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT * FROM crm.crm_push_log WHERE client_id = %s ORDER BY created_at, push_id",
        (client_id,),
    ).fetchall()


def queue(conn: psycopg.Connection[Any], client_id: Any) -> dict[Any, dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        "SELECT * FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id", (client_id,)
    ).fetchall()
    return {r["lead_id"]: r for r in rows}


def requests(crm: Crm) -> Counter[str]:
    return Counter(crm.state()["requests"])


def book(pmake: Make, client: Any, n: int) -> list[Any]:
    leads = [pmake.lead(client, company=f"Company {i}") for i in range(n)]
    for lead in leads:
        pmake.meeting(lead)
    return leads


def test_one_batch_call_per_step_for_many_pushes(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """30 bookings of new leads: one contacts upsert, one deals upsert, one associate call;
    every push has its own audit row of each, naming the one call it rode in."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    before = requests(crm)
    leads = book(pmake, client, 30)
    summary = run_drain(url, per_client=4)
    assert summary.outcomes["done"] == 30
    made = requests(crm) - before
    assert made == Counter(
        {f"POST {CONTACTS_UPSERT}": 1, f"POST {DEALS_UPSERT}": 1, f"POST {ASSOCIATE}": 1}
    ), made
    assert summary.calls == 3  # the calls made, not the pushes that rode in them
    rows = log_rows(conn, client["id"])
    by_push: dict[int, list[str]] = defaultdict(list)
    calls: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        batch = row["request_payload"]["batch"]
        assert batch["inputs"] == 30 and 1 <= batch["position"] <= 30
        assert len(row["request_payload"]["body"]["inputs"]) == 1  # the push's own input
        by_push[row["push_id"]].append(row["operation"])
        calls[row["operation"]].add(batch["call_id"])
    assert all(len(ids) == 1 for ids in calls.values()), calls
    assert len(by_push) == 30
    assert {tuple(ops) for ops in by_push.values()} == {
        ("upsert_contact", "upsert_deal", "associate_deal_contact")
    }
    contacts = {c["email"]: c["id"] for c in crm.contacts()}
    assert set(contacts) == {lead["email"] for lead in leads}
    deals = crm.deals()
    assert len(deals) == 30 and all(d["contact_id"] in contacts.values() for d in deals)
    # A second booking of each lead: its contact is known, so no contact call at all.
    before = requests(crm)
    for lead in leads:
        pmake.meeting(lead)
    run_drain(url, per_client=4)
    made = requests(crm) - before
    assert made == Counter({f"POST {DEALS_UPSERT}": 1, f"POST {ASSOCIATE}": 1}), made


@pytest.mark.parametrize(("status", "final", "attempts"), [(400, "failed", 1), (500, "done", 2)])
def test_a_207_gives_each_push_its_own_outcome(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    sandbox: Sandbox,
    status: int,
    final: str,
    attempts: int,
) -> None:
    """HubSpot answers 207 listing one failed input: that push alone fails (a validation
    error) or is retried (a server error), the other 9 are done, each with its own row."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    leads = book(pmake, client, 10)
    bad = leads[3]
    crm.fault(
        kind="item_error",
        method="POST",
        path=CONTACTS_UPSERT,
        match=bad["email"],
        status=status,
        message=f"Property values were not valid: {bad['email']}",
    )
    summary = run_drain(url)
    pushes = queue(conn, client["id"])
    assert pushes[bad["id"]]["status"] == final
    assert pushes[bad["id"]]["attempts"] == attempts
    others = [p for lead_id, p in pushes.items() if lead_id != bad["id"]]
    assert [(p["status"], p["attempts"]) for p in others] == [("done", 1)] * 9
    rows = log_rows(conn, client["id"])
    [failed] = [r for r in rows if r["status"] == "failed"]
    assert failed["push_id"] == pushes[bad["id"]]["id"]
    assert failed["operation"] == "upsert_contact" and failed["http_status"] == 207
    assert "not valid" in failed["error_message"]
    first_call = failed["request_payload"]["batch"]["call_id"]
    riders = [r for r in rows if r["request_payload"]["batch"]["call_id"] == first_call]
    assert len(riders) == 10 and {r["status"] for r in riders} == {"success", "failed"}
    emails = {c["email"] for c in crm.contacts()}
    expected = {lead["email"] for lead in leads}
    assert emails == (expected if final == "done" else expected - {bad["email"]})
    assert summary.outcomes[final] >= 1


def test_a_whole_batch_refused_is_split_so_one_bad_input_fails_alone(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """A 400 for the whole call: halves are sent again, so one bad lead never fails the
    others; the bad input then fails alone (HubSpot lists it in a 207, by its trace id)."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    leads = [pmake.lead(client) for _ in range(7)]
    # Our database takes this address; HubSpot refuses it (no dot in the domain).
    bad = pmake.lead(client, email="ops@localhost")
    leads.insert(5, bad)
    for lead in leads:
        pmake.meeting(lead)
    crm.fault(kind="status", method="POST", path=CONTACTS_UPSERT, status=400, times=1)
    run_drain(url)
    pushes = queue(conn, client["id"])
    assert pushes[bad["id"]]["status"] == "failed", pushes[bad["id"]]
    assert "invalid" in pushes[bad["id"]]["last_error"].lower()
    assert [p["status"] for lead_id, p in pushes.items() if lead_id != bad["id"]] == ["done"] * 7
    assert len(crm.contacts()) == 7 and len(crm.deals()) == 7
    rows = log_rows(conn, client["id"])
    mine = [r for r in rows if r["push_id"] == pushes[bad["id"]]["id"]]
    # Refused whole with 7 others, then sent in a half of 4, where it alone failed.
    assert [(r["request_payload"]["batch"]["inputs"], r["http_status"]) for r in mine] == [
        (8, 400),
        (4, 207),
    ]


@pytest.mark.parametrize("path", [CONTACTS_UPSERT, DEALS_UPSERT, ASSOCIATE])
def test_a_lost_batch_answer_is_sent_again_without_duplicates(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox, path: str
) -> None:
    """The batch call was carried out but its answer lost (the connection dropped after the
    write): the retry sends it again, and keyed upserts leave one record each."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    leads = book(pmake, client, 12)
    crm.fault(kind="drop_after", method="POST", path=path, times=1)
    run_drain(url)
    pushes = queue(conn, client["id"])
    assert {(p["status"], p["attempts"]) for p in pushes.values()} == {("done", 2)}
    contacts = crm.contacts()
    assert Counter(c["email"] for c in contacts) == Counter(lead["email"] for lead in leads)
    deals = crm.deals()
    assert len(deals) == 12 and len({d["key"] for d in deals}) == 12
    assert len({d["contact_id"] for d in deals}) == 12
    assert all(d["contact_id"] in {c["id"] for c in contacts} for d in deals)


def test_pushes_of_one_lead_never_ride_in_one_batch_and_go_in_order(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    leads = [pmake.lead(client) for _ in range(6)]
    for _ in range(4):
        for lead in leads:
            pmake.meeting(lead)
    run_drain(url)
    rows = log_rows(conn, client["id"])
    per_call: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        per_call[row["request_payload"]["batch"]["call_id"]].append(row["lead_id"])
    assert all(len(ids) == len(set(ids)) for ids in per_call.values()), per_call
    cur = conn.cursor(row_factory=dict_row)
    done = cur.execute(
        "SELECT lead_id, id, finished_at FROM crm.crm_push_queue WHERE client_id = %s"
        " ORDER BY lead_id, id",
        (client["id"],),
    ).fetchall()
    for lead in leads:
        times = [r["finished_at"] for r in done if r["lead_id"] == lead["id"]]
        assert len(times) == 4 and times == sorted(times)
    assert len(crm.deals()) == 24 and len(crm.contacts()) == 6


# --- the batch and one-push paths leave HubSpot in the same state --------------------------

VOLATILE = {"hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def workload(pmake: Make, conn: psycopg.Connection[Any], client: Any, seed: int) -> list[str]:
    """A random mix of bookings, deals and stage changes; the ids made, in order."""
    rng = random.Random(seed)
    made: list[str] = []
    leads = []
    for i in range(rng.randint(8, 14)):
        email = None if rng.random() < 0.2 else f"lead{i}.{seed}@example{rng.randint(1, 3)}.test"
        lead = pmake.lead(
            client,
            email=email,
            first_name=rng.choice(["Ada", "Grace", "Alan", "Edsger"]),
            last_name=f"L{i}",
            company=rng.choice([None, "Acme", "Globex", f"Solo {i}"]),
            phone=rng.choice([None, f"+1555000{i:04d}"]),
        )
        leads.append(lead)
        made.append(str(lead["id"]))
    deals = []
    for lead in leads:
        for _ in range(rng.randint(0, 2)):
            made.append(str(pmake.meeting(lead)["id"]))
        if rng.random() < 0.6:
            deal = pmake.deal(lead, name=f"Deal {len(deals)}", value=rng.randint(1, 90) * 100)
            deals.append(deal)
            made.append(str(deal["id"]))
    return made


def advance(conn: psycopg.Connection[Any], client: Any, seed: int) -> None:
    """Move the client's deals on: stages, values, wins and losses (the same for both)."""
    rng = random.Random(seed * 7)
    cur = conn.cursor(row_factory=dict_row)
    deals = cur.execute(
        "SELECT id FROM crm.deals WHERE client_id = %s ORDER BY created_at, name", (client["id"],)
    ).fetchall()
    for deal in deals:
        roll = rng.random()
        if roll < 0.3:
            conn.execute(
                "UPDATE crm.deals SET stage = 'proposal', value = value + 100 WHERE id = %s",
                (deal["id"],),
            )
        elif roll < 0.5:
            conn.execute("UPDATE crm.deals SET stage = 'closed_won' WHERE id = %s", (deal["id"],))
        elif roll < 0.7:
            conn.execute(
                "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = 'no_budget'"
                " WHERE id = %s",
                (deal["id"],),
            )


def hubspot_state(crm: Crm, made: list[str]) -> dict[str, Any]:
    """What the account holds, with record ids and our ids replaced by their order."""
    order = {uid: f"#{n}" for n, uid in enumerate(made)}
    s = crm.state()

    owner = str(crm.config["owner_id"])

    def norm(value: str) -> str:
        # The account's own owner id (each account has its own) is the config's owner.
        value = "<config owner>" if value == owner else value
        return UUID.sub(lambda m: order.get(m.group(0), "?"), value)

    contacts = {
        c["id"]: {k: norm(v) for k, v in c["properties"].items() if k not in VOLATILE and v}
        for c in s["contacts"]
    }
    deals = {
        d["id"]: {k: norm(v) for k, v in d["properties"].items() if k not in VOLATILE and v}
        for d in s["deals"]
    }

    def name(props: dict[str, str]) -> str:
        return props.get("agency_crm_key") or props.get("email") or "?"

    links = sorted(
        (name(deals[str(a["deal_id"])]), name(contacts[str(a["contact_id"])]))
        for a in s["associations"]
    )
    return {
        "contacts": sorted(map(sorted_items, contacts.values())),
        "deals": sorted(map(sorted_items, deals.values())),
        "associations": links,
    }


def sorted_items(props: dict[str, str]) -> list[tuple[str, str]]:
    return sorted(props.items())


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_and_single_paths_leave_the_same_hubspot_state(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox, seed: int
) -> None:
    conn, url = pushdb
    states = []
    for batches in (True, False):
        client = pmake.client()
        crm = connect_crm(pmake, sandbox, client, "hubspot")
        made = workload(pmake, conn, client, seed)
        run_drain(url, client_ids=[client["id"]], batches=batches)
        advance(conn, client, seed)
        run_drain(url, client_ids=[client["id"]], batches=batches)
        cur = conn.cursor(row_factory=dict_row)
        statuses = cur.execute(
            "SELECT status, count(*) AS n FROM crm.crm_push_queue WHERE client_id = %s"
            " GROUP BY status",
            (client["id"],),
        ).fetchall()
        assert [(r["status"]) for r in statuses] == ["done"], statuses
        state = hubspot_state(crm, made)
        assert state["contacts"] and state["deals"]
        states.append(state)
    batch, single = states
    for part in ("contacts", "deals", "associations"):
        extra = [x for x in batch[part] if x not in single[part]]
        missing = [x for x in single[part] if x not in batch[part]]
        diff = [
            (sorted(set(a) - set(b)), sorted(set(b) - set(a)))
            for a, b in zip(extra, missing, strict=False)
        ]
        assert not extra and not missing, (part, diff, len(extra), len(missing))


def test_an_unknown_uuid_never_matches() -> None:
    """The normaliser above maps only our ids (a guard for the comparison's honesty)."""
    assert UUID.sub("x", str(uuid.uuid4())) == "x"
