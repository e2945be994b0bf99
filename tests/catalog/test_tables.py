"""Every table of the spec exists with the spec's columns and types."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

TIMESTAMPS = {
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
    "deleted_at": "timestamp with time zone",
}

# Column -> type, from ../shared/spec/meetings-and-crm.md and issue #3.
EXPECTED: dict[str, dict[str, str]] = {
    "clients": {
        "id": "uuid",
        "name": "text",
        "default_currency": "text",
        "timezone": "text",
        "auto_create_deals": "boolean",
        **TIMESTAMPS,
    },
    "campaigns": {"id": "uuid", "client_id": "uuid", "name": "text", **TIMESTAMPS},
    "leads": {
        "id": "uuid",
        "client_id": "uuid",
        "email": "text",
        "first_name": "text",
        "last_name": "text",
        "company": "text",
        "title": "text",
        "phone": "text",
        "status": "text",
        "meeting_booked": "boolean",
        "meeting_booked_at": "timestamp with time zone",
        **TIMESTAMPS,
    },
    "activities": {
        "id": "uuid",
        "client_id": "uuid",
        "lead_id": "uuid",
        "campaign_id": "uuid",
        # The spec's channel and lost-reason enum columns are text with a CHECK listing exactly
        # the enum's labels (migration 0013): a bad value then reaches the BEFORE trigger, which
        # names it and the valid words, instead of failing as a bare 22P02 while PostgreSQL
        # reads it. tests/sql/test_vocabularies.py keeps each CHECK equal to its type's labels.
        # The stage columns stay crm.deal_stage_type: the analytics order by it.
        "channel": "text",  # crm.channel_type, as a CHECK (migration 0013)
        "activity_type": "text",
        "occurred_at": "timestamp with time zone",
        **TIMESTAMPS,
    },
    "meetings": {
        "id": "uuid",
        "client_id": "uuid",
        "lead_id": "uuid",
        "campaign_id": "uuid",
        "scheduled_at": "timestamp with time zone",
        "duration_minutes": "integer",
        "meeting_type": "text",
        "booked_by": "text",
        "booking_method": "text",
        "meeting_link": "text",
        "calendar_event_id": "text",
        "confirmed": "boolean",
        "reminder_sent": "boolean",
        "showed_up": "boolean",
        "meeting_outcome": "text",
        "meeting_notes": "text",
        "next_steps": "text",
        "deal_created": "boolean",
        "deal_id": "uuid",
        "converting_activity_id": "uuid",
        "converting_channel": "text",  # crm.channel_type, as a CHECK (migration 0013)
        "touches_before_booking": "integer",
        "days_to_booking": "integer",
        "rescheduled_count": "integer",
        "booked_at": "timestamp with time zone",
        "confirmed_at": "timestamp with time zone",
        "reminder_sent_at": "timestamp with time zone",
        "showed_up_confirmed_at": "timestamp with time zone",
        "outcome_recorded_at": "timestamp with time zone",
        "cancelled_at": "timestamp with time zone",
        "no_show_reason": "text",
        "cancellation_reason": "text",
        **TIMESTAMPS,
    },
    "deals": {
        "id": "uuid",
        "client_id": "uuid",
        "lead_id": "uuid",
        "meeting_id": "uuid",
        "name": "text",
        "value": "numeric",  # the spec's numeric(12,2), as a CHECK (migration 0012)
        "currency": "text",
        "probability": "integer",
        "stage": "crm.deal_stage_type",
        "stage_changed_at": "timestamp with time zone",
        "expected_close_date": "date",
        "closed_at": "timestamp with time zone",
        "won": "boolean",
        "lost_reason": "text",  # crm.deal_lost_reason_type, as a CHECK (migration 0013)
        "lost_notes": "text",
        "days_to_close": "integer",
        "converting_activity_id": "uuid",
        "converting_channel": "text",  # crm.channel_type
        "first_touch_channel": "text",  # crm.channel_type
        "touches_before_deal": "integer",
        "external_crm": "text",
        "external_deal_id": "text",
        **TIMESTAMPS,
    },
    "deal_stage_history": {
        "id": "uuid",
        "client_id": "uuid",
        "deal_id": "uuid",
        "from_stage": "crm.deal_stage_type",
        "to_stage": "crm.deal_stage_type",
        "probability": "integer",
        "value": "numeric",  # likewise
        "changed_at": "timestamp with time zone",
        "time_in_from_stage": "interval",
    },
    "client_crm_configs": {
        "id": "uuid",
        "client_id": "uuid",
        "crm_type": "text",
        "api_key": "text",
        "oauth_access_token": "text",
        "oauth_refresh_token": "text",
        "oauth_expires_at": "timestamp with time zone",
        "hubspot_portal_id": "text",
        "pipeline_id": "text",
        "stage_id": "text",
        "owner_id": "text",
        "is_active": "boolean",
        "connection_status": "text",
        "last_successful_push_at": "timestamp with time zone",
        "last_error": "text",
        **TIMESTAMPS,
    },
    "crm_push_log": {
        "id": "uuid",
        "client_id": "uuid",
        "crm_config_id": "uuid",
        "operation": "text",
        "lead_id": "uuid",
        "meeting_id": "uuid",
        "crm_contact_id": "text",
        "crm_deal_id": "text",
        "crm_org_id": "text",
        "request_payload": "jsonb",
        "response_payload": "jsonb",
        "status": "text",
        "error_code": "text",
        "error_message": "text",
        "duration_ms": "integer",
        **TIMESTAMPS,
    },
    "crm_push_queue": {
        "id": "bigint",
        "client_id": "uuid",
        "operation": "text",
        "lead_id": "uuid",
        "meeting_id": "uuid",
        "deal_id": "uuid",
        "status": "text",
        "attempts": "integer",
        "run_after": "timestamp with time zone",
        "lease_owner": "text",
        "lease_expires_at": "timestamp with time zone",
        "last_error": "text",
        "created_at": "timestamp with time zone",
        "updated_at": "timestamp with time zone",
    },
    "meeting_reschedules": {
        "id": "uuid",
        "client_id": "uuid",
        "meeting_id": "uuid",
        "previous_scheduled_at": "timestamp with time zone",
        "new_scheduled_at": "timestamp with time zone",
        "rescheduled_at": "timestamp with time zone",
    },
    "crm_external_ids": {
        "id": "uuid",
        "client_id": "uuid",
        "crm_config_id": "uuid",
        "entity_type": "text",
        "external_key": "text",
        "entity_id": "uuid",
        "crm_id": "text",
    },
}


def columns(db: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = db.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod)
        FROM pg_catalog.pg_attribute AS a
        WHERE a.attrelid = to_regclass('crm.' || %s) AND a.attnum > 0 AND NOT a.attisdropped
        """,
        (table,),
    ).fetchall()
    return {str(name): str(typ) for name, typ in rows}


@pytest.mark.parametrize("table", sorted(EXPECTED))
def test_table_has_the_spec_columns_with_their_types(
    db: psycopg.Connection[Any], table: str
) -> None:
    actual = columns(db, table)
    assert actual, f"table crm.{table} does not exist"
    missing = sorted(set(EXPECTED[table]) - set(actual))
    assert not missing, f"crm.{table} lacks {missing}"
    wrong = {c: (t, actual[c]) for c, t in EXPECTED[table].items() if actual[c] != t}
    assert not wrong, f"crm.{table} column types (expected, actual): {wrong}"


def test_no_unexpected_tables(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'crm'::regnamespace AND relkind = 'r'"
    ).fetchall()
    machinery = {"schema_migrations", "schema_code", "schema_access"}
    assert {r[0] for r in rows} - machinery == set(EXPECTED)


def test_ids_are_uuids_with_a_default_and_queue_ids_bigint_identity(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT c.relname, format_type(a.atttypid, a.atttypmod), a.attidentity,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'id'
        LEFT JOIN pg_attrdef AS d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
        """
    ).fetchall()
    assert len(rows) == len(EXPECTED)
    for table, typ, identity, default in rows:
        if table == "crm_push_queue":
            assert (typ, identity) == ("bigint", "a"), table
        else:
            assert (typ, default) == ("uuid", "gen_random_uuid()"), table


@pytest.mark.parametrize(
    ("type_name", "labels"),
    [
        ("channel_type", ["email", "sms", "linkedin", "voice", "mail"]),
        (
            "deal_stage_type",
            [
                "qualification",
                "proposal",
                "negotiation",
                "verbal_commit",
                "contract_sent",
                "closed_won",
                "closed_lost",
            ],
        ),
        (
            "deal_lost_reason_type",
            [
                "price_too_high",
                "chose_competitor",
                "no_budget",
                "timing_not_right",
                "no_decision",
                "champion_left",
                "project_cancelled",
                "went_silent",
                "bad_fit",
                "other",
            ],
        ),
    ],
)
def test_enum_types_have_the_spec_values_in_order(
    db: psycopg.Connection[Any], type_name: str, labels: list[str]
) -> None:
    rows = db.execute(
        """
        SELECT e.enumlabel
        FROM pg_enum AS e
        WHERE e.enumtypid = to_regtype('crm.' || %s)
        ORDER BY e.enumsortorder
        """,
        (type_name,),
    ).fetchall()
    assert [r[0] for r in rows] == labels
