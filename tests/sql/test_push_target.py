"""crm.push_target: what one push must make the client's CRM hold, decided in SQL (the runner
and `push drain --dry-run` only read it), and the CRM-id functions the runner writes with."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.fixtures import Make, Row, raises_sqlstate, wait_until_blocked

STAGE_MAP = {"proposal": "crm-proposal", "closed_won": "crm-won", "closed_lost": "crm-lost"}


def target(db: psycopg.Connection[Any], client_id: uuid.UUID, push_id: int) -> dict[str, Any]:
    rows = (
        db.cursor(row_factory=dict_row)
        .execute("SELECT * FROM crm.push_target(%s, %s)", (client_id, push_id))
        .fetchall()
    )
    assert len(rows) == 1, rows
    return rows[0]


def push_of(db: psycopg.Connection[Any], entity: str, entity_id: uuid.UUID) -> int:
    row = db.execute(
        f"SELECT max(id) FROM crm.crm_push_queue WHERE {entity}_id = %s", (entity_id,)
    ).fetchone()
    assert row is not None and row[0] is not None, f"no push for {entity} {entity_id}"
    return int(row[0])


@pytest.fixture
def client(make: Make) -> Row:
    c = make.client(timezone="Australia/Sydney", default_currency="AUD")
    c["config"] = make.crm_config(c, stage_map=Jsonb(STAGE_MAP))
    return c


def test_a_booked_meeting_opens_a_deal_named_after_the_lead_and_its_local_day(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(
        client,
        first_name="Ada",
        last_name="Lovelace",
        company="  Analytical   ENGINES ",
        title="CTO",
    )
    # 23:30 UTC on 11 January is 10:30 on 12 January in Sydney.
    meeting = make.meeting(
        lead, scheduled_at=datetime(2026, 1, 11, 23, 30, tzinfo=UTC), meeting_type="demo"
    )
    t = target(db, client["id"], push_of(db, "meeting", meeting["id"]))
    assert (t["action"], t["reason"], t["operation"]) == ("send", None, "meeting_booked")
    assert t["crm_config_id"] == client["config"]["id"]
    assert t["contact_key"] == f"acrm-lead-{lead['id']}"
    assert (t["contact_name"], t["email"], t["title"]) == ("Ada Lovelace", lead["email"], "CTO")
    assert t["org_key"] == "acrm-org-analytical engines"
    assert t["deal_key"] == f"acrm-meeting-{meeting['id']}"
    assert (t["deal_entity_id"], t["deal_id"]) == (meeting["id"], None)
    assert t["deal_name"] == "Ada Lovelace (  Analytical   ENGINES ): demo meeting 2026-01-12"
    assert (t["deal_amount"], t["deal_currency"], t["deal_status"]) == (0, "AUD", "open")
    assert (t["deal_stage"], t["deal_crm_stage"], t["deal_lost_reason"]) == (None, None, None)
    assert all(t[f"{p}_crm_id"] is None for p in ("lead", "contact", "org", "deal"))


@pytest.mark.parametrize(
    ("outcome", "label"), [("cancelled", "Meeting cancelled"), ("bad", "Meeting outcome: bad")]
)
def test_a_cancelled_or_bad_meeting_is_a_lost_deal_in_the_mapped_lost_stage(
    db: psycopg.Connection[Any], make: Make, client: Row, outcome: str, label: str
) -> None:
    meeting = make.meeting(make.lead(client))
    db.execute(
        "UPDATE crm.meetings SET meeting_outcome = %s WHERE id = %s", (outcome, meeting["id"])
    )
    t = target(db, client["id"], push_of(db, "meeting", meeting["id"]))
    assert (t["deal_status"], t["deal_lost_reason"], t["deal_crm_stage"]) == (
        "lost",
        label,
        "crm-lost",
    )


def test_a_deal_carries_its_own_fields_stage_and_mapped_stage(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(client)
    deal = make.deal(lead, name="Pilot", value=1234.5, currency="USD")
    db.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))
    t = target(db, client["id"], push_of(db, "deal", deal["id"]))
    assert t["deal_key"] == f"acrm-deal-{deal['id']}"
    assert (t["deal_id"], t["deal_entity_id"]) == (deal["id"], deal["id"])
    assert (t["deal_name"], t["deal_amount"], t["deal_currency"]) == ("Pilot", 1234.5, "USD")
    assert (t["deal_stage"], t["deal_crm_stage"], t["deal_probability"]) == (
        "proposal",
        "crm-proposal",
        40,
    )
    assert t["deal_status"] == "open"


def test_a_deal_from_a_meeting_keeps_the_meetings_crm_deal(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(client)
    meeting = make.meeting(lead)
    deal = make.deal(lead, meeting_id=meeting["id"])
    t = target(db, client["id"], push_of(db, "deal", deal["id"]))
    assert t["deal_key"] == f"acrm-meeting-{meeting['id']}"
    # The meeting's own push now sends the deal too (its live deal).
    m = target(db, client["id"], push_of(db, "meeting", meeting["id"]))
    assert (m["deal_key"], m["deal_id"], m["deal_name"]) == (t["deal_key"], deal["id"], "Pilot")


def test_closed_deals_say_won_or_lost_with_the_reason_label_and_the_local_close_day(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(client)
    won, lost = make.deal(lead), make.deal(lead)
    db.execute("UPDATE crm.deals SET stage = 'closed_won' WHERE id = %s", (won["id"],))
    db.execute(
        "UPDATE crm.deals SET stage = 'closed_lost', lost_reason = 'no_budget' WHERE id = %s",
        (lost["id"],),
    )
    w = target(db, client["id"], push_of(db, "deal", won["id"]))
    l_ = target(db, client["id"], push_of(db, "deal", lost["id"]))
    assert (w["deal_status"], w["deal_crm_stage"], w["deal_lost_reason"]) == (
        "won",
        "crm-won",
        None,
    )
    assert (l_["deal_status"], l_["deal_crm_stage"], l_["deal_lost_reason"]) == (
        "lost",
        "crm-lost",
        "No budget",
    )
    closed_at = db.execute(
        "SELECT (closed_at AT TIME ZONE 'Australia/Sydney')::date FROM crm.deals WHERE id = %s",
        (won["id"],),
    ).fetchone()
    assert closed_at is not None and w["deal_close_date"] == closed_at[0]


def test_an_unmapped_stage_is_null_so_the_crm_keeps_its_own(
    db: psycopg.Connection[Any], make: Make
) -> None:
    c = make.client()
    make.crm_config(c)  # no stage_map
    deal = make.deal(make.lead(c))
    db.execute("UPDATE crm.deals SET stage = 'closed_won' WHERE id = %s", (deal["id"],))
    t = target(db, c["id"], push_of(db, "deal", deal["id"]))
    assert (t["deal_status"], t["deal_crm_stage"]) == ("won", None)


def test_every_lost_reason_has_a_label(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "SELECT r, crm_private.lost_reason_label(r) "
        "FROM unnest(enum_range(NULL::crm.deal_lost_reason_type)) AS r"
    ).fetchall()
    assert len(rows) == 10 and all(label for _, label in rows), rows
    assert len({label for _, label in rows}) == len(rows)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"first_name": None, "last_name": "Byron"}, "Byron"),
        ({"first_name": "", "last_name": None}, "{email}"),
        ({"first_name": None, "last_name": None, "email": None}, "Analytical Engines"),
        ({"first_name": None, "last_name": None, "email": None, "company": None}, "Lead {id8}"),
    ],
)
def test_the_contact_name_falls_back_to_email_company_then_the_lead_id(
    db: psycopg.Connection[Any], make: Make, client: Row, fields: dict[str, Any], name: str
) -> None:
    lead = make.lead(client, **fields)
    meeting = make.meeting(lead)
    t = target(db, client["id"], push_of(db, "meeting", meeting["id"]))
    assert t["contact_name"] == name.format(email=lead["email"], id8=str(lead["id"])[:8])


def test_a_long_company_name_gets_a_hashed_key_that_fits(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    long_name = "Very Long Company " * 15
    a = make.lead(client, company=long_name)
    b = make.lead(client, company=long_name.upper().replace(" ", "  "))
    keys = [
        target(db, client["id"], push_of(db, "meeting", make.meeting(lead)["id"]))["org_key"]
        for lead in (a, b)
    ]
    assert keys[0] == keys[1] and keys[0].startswith("acrm-org-sha256-")
    assert len(keys[0]) <= 200
    blank = make.lead(client, company="   ")
    t = target(db, client["id"], push_of(db, "meeting", make.meeting(blank)["id"]))
    assert t["org_key"] is None


def test_deleted_entities_are_skipped_and_missing_ones_fail(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(client)
    meeting = make.meeting(lead)
    deal = make.deal(lead)
    push_meeting = push_of(db, "meeting", meeting["id"])
    push_deal = push_of(db, "deal", deal["id"])
    db.execute("UPDATE crm.deals SET deleted_at = now() WHERE id = %s", (deal["id"],))
    assert pick_action(db, client, push_deal) == ("skip", f"deal {deal['id']} is deleted")
    db.execute("UPDATE crm.meetings SET deleted_at = now() WHERE id = %s", (meeting["id"],))
    assert pick_action(db, client, push_meeting) == ("skip", f"meeting {meeting['id']} is deleted")
    db.execute("UPDATE crm.leads SET deleted_at = now() WHERE id = %s", (lead["id"],))
    assert pick_action(db, client, push_meeting) == ("skip", f"lead {lead['id']} is deleted")

    ghost = uuid.uuid4()
    other = make.lead(client)
    orphan = make.push(other, operation="deal_updated", deal_id=ghost)
    assert pick_action(db, client, orphan["id"]) == (
        "fail",
        f"deal {ghost} of push {orphan['id']} does not exist",
    )
    nobody = make.push(other, operation="meeting_outcome", lead_id=ghost)
    assert pick_action(db, client, nobody["id"]) == (
        "fail",
        f"lead {ghost} of push {nobody['id']} does not exist",
    )


def pick_action(db: psycopg.Connection[Any], client: Row, push_id: int) -> tuple[str, str]:
    t = target(db, client["id"], push_id)
    return t["action"], t["reason"]


def test_known_crm_ids_come_from_the_live_config_of_the_same_client_only(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    lead = make.lead(client, company="Acme")
    meeting = make.meeting(lead)
    cfg = client["config"]
    key = f"acrm-lead-{lead['id']}"
    sent = datetime.now(UTC) - timedelta(seconds=5)
    make.external_id(cfg, entity_type="lead", external_key=key, crm_id="L1")
    make.external_id(cfg, entity_type="contact", external_key=key, crm_id="C1")
    make.external_id(cfg, entity_type="organisation", external_key="acrm-org-acme", crm_id="O1")
    make.external_id(
        cfg,
        entity_type="deal",
        external_key=f"acrm-meeting-{meeting['id']}",
        crm_id=None,
        create_sent_at=sent,
    )
    # Another client's ids under the same keys are never read.
    other = make.client()
    other_cfg = make.crm_config(other)
    make.external_id(other_cfg, entity_type="lead", external_key=key, crm_id="NOT-OURS")
    push_id = push_of(db, "meeting", meeting["id"])
    t = target(db, client["id"], push_id)
    assert (t["lead_crm_id"], t["contact_crm_id"], t["org_crm_id"]) == ("L1", "C1", "O1")
    assert (t["deal_crm_id"], t["deal_create_sent_at"]) == (None, sent)
    # The push of one client asked for under another client's id: nothing.
    assert db.execute(
        "SELECT count(*) FROM crm.push_target(%s, %s)", (other["id"], push_id)
    ).fetchone() == (0,)


def test_a_push_that_does_not_exist_gives_no_row(db: psycopg.Connection[Any], client: Row) -> None:
    assert db.execute("SELECT * FROM crm.push_target(%s, -1)", (client["id"],)).fetchall() == []


# --- the CRM id map: claim a create, record the id, release a refused create ---------------


def ids_args(config: Row, key: str = "acrm-lead-x") -> dict[str, Any]:
    return {"c": config["client_id"], "cfg": config["id"], "t": "lead", "k": key}


CLAIM = "SELECT * FROM crm.claim_crm_create(%(c)s, %(cfg)s, %(t)s, %(k)s, NULL, %(w)s)"


def test_a_create_is_claimed_once_per_window_and_a_recorded_id_ends_it(
    db: psycopg.Connection[Any], make: Make, client: Row
) -> None:
    args = {**ids_args(client["config"]), "w": timedelta(seconds=60)}
    first = db.execute(CLAIM, args).fetchone()
    assert first is not None and first[0] is True and first[1] is None and first[2] is not None
    second = db.execute(CLAIM, args).fetchone()
    assert second == (False, None, first[2])  # another create may still land
    assert db.execute(CLAIM, {**args, "w": timedelta(0)}).fetchone()[0] is True  # type: ignore[index]
    db.execute(
        "SELECT crm.record_crm_id(%(c)s, %(cfg)s, %(t)s, %(k)s, NULL, '99')",
        ids_args(client["config"]),
    )
    assert db.execute(CLAIM, {**args, "w": timedelta(0)}).fetchone() == (False, "99", None)
    # A NULL never overwrites a known id; release does nothing once the id is known.
    db.execute(
        "SELECT crm.record_crm_id(%(c)s, %(cfg)s, %(t)s, %(k)s, NULL, NULL)",
        ids_args(client["config"]),
    )
    released = db.execute(
        "SELECT crm.release_crm_create(%(c)s, %(cfg)s, %(t)s, %(k)s)", ids_args(client["config"])
    ).fetchone()
    assert released == (False,)
    assert db.execute(CLAIM, {**args, "w": timedelta(0)}).fetchone() == (False, "99", None)


def test_a_refused_create_is_released_and_may_be_claimed_again_at_once(
    db: psycopg.Connection[Any], client: Row
) -> None:
    args = {**ids_args(client["config"], "acrm-lead-y"), "w": timedelta(hours=1)}
    assert db.execute(CLAIM, args).fetchone()[0] is True  # type: ignore[index]
    released = db.execute(
        "SELECT crm.release_crm_create(%(c)s, %(cfg)s, %(t)s, %(k)s)", args
    ).fetchone()
    assert released == (True,)
    assert db.execute(CLAIM, args).fetchone()[0] is True  # type: ignore[index]


def test_a_negative_or_null_window_is_refused(db: psycopg.Connection[Any], client: Row) -> None:
    for window in (timedelta(seconds=-1), None):
        with raises_sqlstate(db, "22023") as info:
            db.execute(CLAIM, {**ids_args(client["config"]), "w": window})
        assert "p_window" in str(info.value)


def test_two_runners_claiming_one_create_at_once_get_it_once(
    fresh_db: psycopg.Connection[Any],
) -> None:
    make = Make(fresh_db)
    c = make.client()
    config = make.crm_config(c)
    fresh_db.commit()
    args = {**ids_args(config, "acrm-lead-race"), "w": timedelta(minutes=5)}
    info = fresh_db.info
    url = f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"
    with psycopg.connect(url) as a, psycopg.connect(url) as b:
        # A claims and holds its transaction open; B's claim of the same key must wait.
        assert a.execute(CLAIM, args).fetchone()[0] is True  # type: ignore[index]
        result: list[Any] = []
        waiting = threading.Thread(target=lambda: result.append(b.execute(CLAIM, args).fetchone()))
        waiting.start()
        wait_until_blocked(url, b.info.backend_pid)
        a.commit()
        waiting.join(timeout=30)
        b.commit()
    assert result and result[0][0] is False and result[0][2] is not None
