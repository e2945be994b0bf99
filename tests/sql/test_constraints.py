"""Every CHECK and every foreign key rejects bad rows with its own SQLSTATE and name, and
leaves nothing behind. The catalog tests at the bottom make sure no constraint is missed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers.fixtures import (
    T0,
    Make,
    Row,
    count,
    insert,
    raises_sqlstate,
    revealed,
    seal,
    sealed,
)


@dataclass
class Graph:
    """One client with one row of every kind."""

    client: Row
    campaign: Row
    lead: Row
    activity: Row
    meeting: Row
    deal: Row
    config: Row
    spare_client: Row  # another client of the same agency, without a CRM config


def build_graph(make: Make) -> Graph:
    client = make.client()
    campaign = make.campaign(client)
    lead = make.lead(client, campaign_id=campaign["id"])
    activity = make.activity(lead, campaign_id=campaign["id"])
    meeting = make.meeting(lead)
    deal = make.deal(lead)
    config = make.crm_config(client)
    return Graph(client, campaign, lead, activity, meeting, deal, config, make.client())


def valid_row(table: str, g: Graph) -> Row:
    """Values of a valid new row of ``table`` for the client of ``g``."""
    c = g.client["id"]
    rows: dict[str, Row] = {
        "clients": {"name": "Acme"},
        "campaigns": {"client_id": c, "name": "Spring"},
        "leads": {"client_id": c, "email": f"{uuid.uuid4().hex}@acme.io"},
        "activities": {"client_id": c, "lead_id": g.lead["id"], "channel": "sms"},
        "meetings": {
            "client_id": c,
            "lead_id": g.lead["id"],
            "scheduled_at": T0,
            "duration_minutes": 45,
            "booked_at": T0 - timedelta(days=3),
        },
        "deals": {
            "client_id": c,
            "lead_id": g.lead["id"],
            "name": "Retainer",
            "currency": "USD",
            "probability": 40,
            "stage_changed_at": T0,
        },
        "deal_stage_history": {
            "client_id": c,
            "deal_id": g.deal["id"],
            "to_stage": "qualification",
            "probability": 20,
            "value": 0,
        },
        "meeting_reschedules": {
            "client_id": c,
            "meeting_id": g.meeting["id"],
            "previous_scheduled_at": T0,
        },
        "client_crm_configs": {
            "client_id": g.spare_client["id"],
            "crm_type": "close",
            "api_key": seal(g.spare_client["id"], "api_key", "k"),
        },
        "crm_external_ids": {
            "client_id": c,
            "crm_config_id": g.config["id"],
            "entity_type": "deal",
            "external_key": f"deal:{uuid.uuid4()}",
            "crm_id": "d-1",
        },
        "crm_push_queue": {"client_id": c, "operation": "deal_created", "deal_id": g.deal["id"]},
        "crm_push_log": {"client_id": c, "operation": "find_contact", "status": "skipped"},
    }
    return dict(rows[table])


# (table, column, which row of the other client it points at); "client" means the column
# is client_id itself and points at no client at all.
FOREIGN_KEYS: list[tuple[str, str, str]] = [
    ("campaigns", "client_id", "client"),
    ("leads", "client_id", "client"),
    ("leads", "campaign_id", "campaign"),
    ("activities", "lead_id", "lead"),
    ("activities", "campaign_id", "campaign"),
    ("meetings", "lead_id", "lead"),
    ("meetings", "campaign_id", "campaign"),
    ("meetings", "converting_activity_id", "activity"),
    ("meetings", "deal_id", "deal"),
    ("deals", "lead_id", "lead"),
    ("deals", "meeting_id", "meeting"),
    ("deals", "converting_activity_id", "activity"),
    ("deal_stage_history", "deal_id", "deal"),
    ("meeting_reschedules", "meeting_id", "meeting"),
    ("client_crm_configs", "client_id", "client"),
    ("crm_external_ids", "crm_config_id", "config"),
    ("crm_push_queue", "client_id", "client"),
    # crm_push_log has no foreign keys (migration 0009): the audit rows are written by the
    # push runner alone, from the queue row and config it holds.
]


def fk_name(table: str, column: str) -> str:
    return (
        f"{table}_client_id_fkey" if column == "client_id" else f"{table}_client_id_{column}_fkey"
    )


@pytest.mark.parametrize(
    ("table", "column", "target"), FOREIGN_KEYS, ids=[f"{t}.{c}" for t, c, _ in FOREIGN_KEYS]
)
def test_a_row_cannot_reference_another_clients_row(
    db: psycopg.Connection[Any], make: Make, table: str, column: str, target: str
) -> None:
    mine, theirs = build_graph(make), build_graph(make)
    values = valid_row(table, mine)
    if target == "client":
        values[column] = uuid.uuid4()  # no such client
    else:
        values[column] = getattr(theirs, target)["id"]
    before = count(db, table)
    with raises_sqlstate(db, "23503") as info:
        insert(db, table, values)
    assert info.value.diag.constraint_name == fk_name(table, column)
    assert count(db, table) == before
    if target != "client":
        # The same row pointing at the client's own row is accepted: the client_id pairing
        # is what was refused.
        values[column] = getattr(mine, target)["id"]
        assert insert(db, table, values)[column] == values[column]


# (table, overrides of a valid row, constraint expected to reject it)
CHECKS: list[tuple[str, Row, str]] = [
    ("clients", {"name": "   "}, "clients_name_check"),
    ("clients", {"default_currency": "aud"}, "clients_default_currency_check"),
    ("clients", {"default_currency": "AUDX"}, "clients_default_currency_check"),
    ("clients", {"timezone": "Mars/Olympus_Mons"}, "clients_timezone_check"),
    ("campaigns", {"name": ""}, "campaigns_name_check"),
    ("leads", {"email": "ada at example.com"}, "leads_email_check"),
    ("leads", {"email": "a@b@c"}, "leads_email_check"),
    ("leads", {"status": "vip"}, "leads_status_check"),
    ("leads", {"meeting_booked": True}, "leads_meeting_booked_at_check"),
    ("leads", {"meeting_booked_at": T0}, "leads_meeting_booked_at_check"),
    ("activities", {"activity_type": "Email Sent"}, "activities_activity_type_check"),
    ("meetings", {"duration_minutes": 0}, "meetings_duration_minutes_check"),
    ("meetings", {"duration_minutes": 1441}, "meetings_duration_minutes_check"),
    ("meetings", {"meeting_type": "lunch"}, "meetings_meeting_type_check"),
    ("meetings", {"booked_by": "robot"}, "meetings_booked_by_check"),
    ("meetings", {"booking_method": "email"}, "meetings_booking_method_check"),
    ("meetings", {"meeting_outcome": "great"}, "meetings_meeting_outcome_check"),
    (
        "meetings",
        {"showed_up": True, "meeting_outcome": "no_show"},
        "meetings_showed_up_check",
    ),
    ("meetings", {"showed_up": False, "meeting_outcome": "good"}, "meetings_showed_up_check"),
    ("meetings", {"deal_created": True}, "meetings_deal_created_check"),
    ("meetings", {"touches_before_booking": -1}, "meetings_touches_before_booking_check"),
    ("meetings", {"days_to_booking": -1}, "meetings_days_to_booking_check"),
    ("meetings", {"rescheduled_count": -1}, "meetings_rescheduled_count_check"),
    ("deals", {"name": ""}, "deals_name_check"),
    ("deals", {"value": -0.01}, "deals_value_check"),
    ("deals", {"currency": "usd"}, "deals_currency_check"),
    ("deals", {"probability": 101}, "deals_probability_check"),
    ("deals", {"probability": -1}, "deals_probability_check"),
    ("deals", {"lost_reason": "no_budget"}, "deals_lost_reason_check"),
    (
        "deals",
        {"stage": "closed_lost", "won": False, "closed_at": T0, "created_at": T0},
        "deals_lost_reason_check",
    ),
    ("deals", {"stage": "closed_won", "won": True}, "deals_closed_at_check"),
    ("deals", {"closed_at": T0}, "deals_closed_at_check"),
    (
        "deals",
        {
            "stage": "closed_won",
            "won": True,
            "created_at": T0,
            "closed_at": T0 - timedelta(days=1),
        },
        "deals_closed_at_check",
    ),
    ("deals", {"won": True}, "deals_won_check"),
    (
        "deals",
        {"stage": "closed_won", "won": False, "created_at": T0, "closed_at": T0},
        "deals_won_check",
    ),
    ("deals", {"days_to_close": -1}, "deals_days_to_close_check"),
    ("deals", {"touches_before_deal": -1}, "deals_touches_before_deal_check"),
    ("deals", {"external_crm": "salesforce"}, "deals_external_crm_check"),
    (
        "deal_stage_history",
        {"from_stage": "proposal", "to_stage": "proposal", "time_in_from_stage": timedelta(0)},
        "deal_stage_history_to_stage_check",
    ),
    ("deal_stage_history", {"probability": 150}, "deal_stage_history_probability_check"),
    ("deal_stage_history", {"value": -5}, "deal_stage_history_value_check"),
    (
        "deal_stage_history",
        {"time_in_from_stage": timedelta(days=1)},
        "deal_stage_history_time_in_from_stage_check",
    ),
    (
        "deal_stage_history",
        {"from_stage": "qualification", "to_stage": "proposal"},
        "deal_stage_history_time_in_from_stage_check",
    ),
    (
        "deal_stage_history",
        {
            "from_stage": "qualification",
            "to_stage": "proposal",
            "time_in_from_stage": timedelta(hours=-1),
        },
        "deal_stage_history_time_in_from_stage_check",
    ),
    ("client_crm_configs", {"crm_type": "salesforce"}, "client_crm_configs_crm_type_check"),
    (
        "client_crm_configs",
        {"connection_status": "ok"},
        "client_crm_configs_connection_status_check",
    ),
    ("client_crm_configs", {"oauth_access_token": "t"}, "client_crm_configs_oauth_check"),
    ("client_crm_configs", {"api_key": "plain-key"}, "client_crm_configs_api_key_check"),
    (
        "client_crm_configs",
        {"crm_type": "hubspot", "oauth_access_token": "plain-access"},
        "client_crm_configs_oauth_access_token_check",
    ),
    (
        "client_crm_configs",
        {"crm_type": "hubspot", "oauth_refresh_token": "acrm:v1:k:short:x"},
        "client_crm_configs_oauth_refresh_token_check",
    ),
    (
        "client_crm_configs",
        {"hubspot_portal_id": "123"},
        "client_crm_configs_hubspot_portal_id_check",
    ),
    (
        "client_crm_configs",
        {"api_base_url": "ftp://crm.example"},
        "client_crm_configs_api_base_url_check",
    ),
    (
        "client_crm_configs",
        {"api_base_url": "https://has space.example"},
        "client_crm_configs_api_base_url_check",
    ),
    ("client_crm_configs", {"stage_map": Jsonb([])}, "client_crm_configs_stage_map_check"),
    (
        "client_crm_configs",
        {"external_key_fields": Jsonb("deal")},
        "client_crm_configs_external_key_fields_check",
    ),
    ("client_crm_configs", {"max_attempts": 0}, "client_crm_configs_max_attempts_check"),
    ("client_crm_configs", {"max_attempts": 101}, "client_crm_configs_max_attempts_check"),
    ("crm_external_ids", {"entity_type": "company"}, "crm_external_ids_entity_type_check"),
    ("crm_external_ids", {"external_key": ""}, "crm_external_ids_external_key_check"),
    ("crm_external_ids", {"crm_id": ""}, "crm_external_ids_crm_id_check"),
    ("crm_push_queue", {"operation": "sync"}, "crm_push_queue_operation_check"),
    ("crm_push_queue", {"deal_id": None}, "crm_push_queue_entity_check"),
    ("crm_push_queue", {"status": "queued"}, "crm_push_queue_status_check"),
    ("crm_push_queue", {"attempts": -1}, "crm_push_queue_attempts_check"),
    ("crm_push_queue", {"attempts_base": 1}, "crm_push_queue_attempts_base_check"),
    ("crm_push_queue", {"attempts_base": -1}, "crm_push_queue_attempts_base_check"),
    ("crm_push_queue", {"status": "in_flight"}, "crm_push_queue_lease_check"),
    ("crm_push_queue", {"status": "done"}, "crm_push_queue_finished_at_check"),
    ("crm_push_queue", {"finished_at": T0}, "crm_push_queue_finished_at_check"),
    ("crm_push_log", {"operation": "Create Deal"}, "crm_push_log_operation_check"),
    ("crm_push_log", {"status": "error"}, "crm_push_log_status_check"),
    ("crm_push_log", {"http_status": 99}, "crm_push_log_http_status_check"),
    ("crm_push_log", {"http_status": 600}, "crm_push_log_http_status_check"),
    ("crm_push_log", {"duration_ms": -1}, "crm_push_log_duration_ms_check"),
    # Migration 0011: times in crm_private.timestamp_window(), no NaN amounts.
    ("clients", {"created_at": "-infinity"}, "clients_timestamps_check"),
    ("campaigns", {"deleted_at": "infinity"}, "campaigns_timestamps_check"),
    ("leads", {"created_at": "2200-01-01 00:00+00"}, "leads_timestamps_check"),
    ("activities", {"occurred_at": "-infinity"}, "activities_timestamps_check"),
    ("meetings", {"scheduled_at": "infinity"}, "meetings_timestamps_check"),
    (
        "meeting_reschedules",
        {"previous_scheduled_at": "-infinity"},
        "meeting_reschedules_timestamps_check",
    ),
    ("deals", {"stage_changed_at": "1899-12-31 00:00+00"}, "deals_timestamps_check"),
    ("deals", {"value": Decimal("NaN")}, "deals_value_check"),
    ("deal_stage_history", {"changed_at": "infinity"}, "deal_stage_history_timestamps_check"),
    ("deal_stage_history", {"value": Decimal("NaN")}, "deal_stage_history_value_check"),
    (
        "client_crm_configs",
        {"last_successful_push_at": "infinity"},
        "client_crm_configs_timestamps_check",
    ),
    ("crm_external_ids", {"create_sent_at": "-infinity"}, "crm_external_ids_timestamps_check"),
    # Migration 0012: amounts in cents up to 9,999,999,999.99; expected close dates bounded.
    ("deals", {"value": Decimal("10000000000")}, "deals_value_range_check"),
    ("deals", {"value": Decimal("1.005")}, "deals_value_range_check"),
    ("deal_stage_history", {"value": Decimal("1e12")}, "deal_stage_history_value_range_check"),
    ("deals", {"expected_close_date": "infinity"}, "deals_expected_close_date_check"),
    ("deals", {"expected_close_date": "1899-12-31"}, "deals_expected_close_date_check"),
    # Migration 0013: the channel and lost-reason columns are text checked against the enums'
    # labels (tests/sql/test_vocabularies.py has the triggers' refusals).
    ("activities", {"channel": "fax"}, "activities_channel_check"),
    ("meetings", {"converting_channel": "fax"}, "meetings_converting_channel_check"),
    ("deals", {"converting_channel": "fax"}, "deals_converting_channel_check"),
    ("deals", {"first_touch_channel": "Email"}, "deals_first_touch_channel_check"),
    (
        "deals",
        {
            "stage": "closed_lost",
            "won": False,
            "created_at": T0,
            "closed_at": T0,
            "lost_reason": "too_expensive",
        },
        "deals_lost_reason_vocabulary_check",
    ),
]


SECRET_CHECKS = {
    "client_crm_configs_api_key_check",
    "client_crm_configs_oauth_access_token_check",
    "client_crm_configs_oauth_refresh_token_check",
}


@pytest.mark.parametrize(
    ("table", "overrides", "constraint"),
    CHECKS,
    ids=[f"{c}-{'-'.join(map(str, o.values()))}" for _, o, c in CHECKS],
)
def test_check_rejects_a_bad_value_naming_the_rule(
    db: psycopg.Connection[Any], make: Make, table: str, overrides: Row, constraint: str
) -> None:
    values = valid_row(table, build_graph(make)) | overrides
    if constraint not in SECRET_CHECKS:  # those are about the plaintext itself
        values = sealed(table, values)
    # The constraint itself, the last line of defence: with triggers off, as a replication
    # apply or a bulk load with triggers disabled would write. The lifecycle triggers catch
    # most of these earlier with their own messages (tests/sql/test_lifecycle_*.py).
    db.execute("SET LOCAL session_replication_role = replica")
    before = count(db, table)
    with raises_sqlstate(db, "23514") as info:
        insert(db, table, values)
    assert info.value.diag.constraint_name == constraint
    assert constraint in (info.value.diag.message_primary or "")
    assert count(db, table) == before
    # The documented rule (COMMENT ON CONSTRAINT, shown in docs/sql-api.md) names a field
    # the bad row set.
    rule = db.execute(
        """
        SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint
        WHERE conname = %s AND connamespace = 'crm'::regnamespace
        """,
        (constraint,),
    ).fetchone()
    assert rule is not None and rule[0]
    assert any(column in rule[0] for column in overrides), rule[0]


@pytest.mark.parametrize("table", sorted({t for t, _, _ in CHECKS}))
def test_the_valid_rows_used_above_are_accepted(
    db: psycopg.Connection[Any], make: Make, table: str
) -> None:
    row = insert(db, table, valid_row(table, build_graph(make)))
    assert row["id"] is not None


@pytest.mark.parametrize(
    ("table", "overrides"),
    [
        ("clients", {"timezone": "Australia/Sydney", "default_currency": "NZD"}),
        ("meetings", {"duration_minutes": 1}),
        ("meetings", {"duration_minutes": 1440}),
        ("meetings", {"showed_up": False, "meeting_outcome": "no_show"}),
        ("deals", {"probability": 0, "value": 0}),
        ("deals", {"probability": 100, "value": Decimal("9999999999.99")}),
        (
            "deals",
            {
                "stage": "closed_lost",
                "won": False,
                "probability": 0,
                "lost_reason": "went_silent",
                "created_at": T0,
                "closed_at": T0,
            },
        ),
        ("client_crm_configs", {"crm_type": "hubspot", "oauth_access_token": "t"}),
        ("crm_push_log", {"http_status": 429, "duration_ms": 0}),
    ],
)
def test_boundary_values_are_accepted(
    db: psycopg.Connection[Any], make: Make, table: str, overrides: Row
) -> None:
    row = insert(db, table, sealed(table, valid_row(table, build_graph(make)) | overrides))
    assert all(revealed(table, row)[k] == v for k, v in overrides.items())


def test_one_live_lead_per_client_and_normalised_email(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client, other = make.client(), make.client()
    first = make.lead(client, email="Ada@Example.com")
    with raises_sqlstate(db, "23505") as info:
        make.lead(client, email="ada@example.COM")
    assert info.value.diag.constraint_name == "leads_client_id_email_key"
    assert make.lead(other, email="ada@example.com")["client_id"] == other["id"]
    db.execute("UPDATE crm.leads SET deleted_at = now() WHERE id = %s", (first["id"],))
    assert make.lead(client, email="ada@example.com")["deleted_at"] is None


def test_one_live_crm_config_per_client(db: psycopg.Connection[Any], make: Make) -> None:
    client = make.client()
    first = make.crm_config(client)
    with raises_sqlstate(db, "23505") as info:
        make.crm_config(client, crm_type="close")
    assert info.value.diag.constraint_name == "client_crm_configs_client_id_key"
    db.execute("UPDATE crm.client_crm_configs SET deleted_at = now() WHERE id = %s", (first["id"],))
    assert make.crm_config(client, crm_type="close")["crm_type"] == "close"


def test_one_crm_id_per_config_entity_type_and_external_key(
    db: psycopg.Connection[Any], make: Make
) -> None:
    config = make.crm_config(make.client())
    make.external_id(config, external_key="lead:1")
    with raises_sqlstate(db, "23505") as info:
        make.external_id(config, external_key="lead:1", crm_id="456")
    assert info.value.diag.constraint_name == "crm_external_ids_entity_key"
    assert make.external_id(config, external_key="lead:1", entity_type="contact")["crm_id"]


def test_catalog_every_check_constraint_has_a_rejection_case(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT con.conname FROM pg_constraint AS con
        WHERE con.connamespace = 'crm'::regnamespace AND con.contype = 'c'
          AND con.conrelid <> ALL (ARRAY[to_regclass('crm.schema_migrations'),
                                         to_regclass('crm.schema_code'),
                                         to_regclass('crm.schema_access')])
        """
    ).fetchall()
    assert {r[0] for r in rows} == {c for _, _, c in CHECKS}


def test_catalog_every_foreign_key_has_a_cross_client_case(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT con.conname FROM pg_constraint AS con
        WHERE con.connamespace = 'crm'::regnamespace AND con.contype = 'f'
        """
    ).fetchall()
    assert {r[0] for r in rows} == {fk_name(t, c) for t, c, _ in FOREIGN_KEYS}
