"""Every refusal speaks (issue 11). A write that breaks a rule of clients, campaigns, leads,
activities, client_crm_configs, crm_external_ids or meeting_reschedules is refused by the
table's validate trigger before any constraint sees it: a specific SQLSTATE, a message naming
the table, the field and its value, a hint, the rule as DETAIL, and COLUMN, TABLE, SCHEMA and
CONSTRAINT set. Times outside crm_private.timestamp_window() and NaN amounts are refused; the
constraints stay as the last line of defence. The catalog tests at the bottom read
pg_constraint and pg_attribute, so a new rule of these tables is covered without anyone
remembering."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from agency_crm import schema
from tests.helpers.fixtures import T0, Make, Row, count, insert, raises_sqlstate, seal
from tests.sql.test_constraints import build_graph, valid_row

# The tables whose writes go through a validate trigger (meetings, deals and their history
# have the lifecycle triggers; the push queue and log are written by the runner alone).
VALIDATED = [
    "activities", "campaigns", "client_crm_configs", "clients", "crm_external_ids", "leads",
    "meeting_reschedules",
]  # fmt: skip
# Every table whose timestamptz columns must lie in the window (all tenant tables but the
# push queue and its log).
WINDOWED = [*VALIDATED, "deal_stage_history", "deals", "meetings"]
# A column that may only be set together with another one.
COMPANIONS: dict[tuple[str, str], Row] = {
    ("leads", "meeting_booked_at"): {"meeting_booked": True},
    ("client_crm_configs", "oauth_expires_at"): {"crm_type": "hubspot"},
    # closed_at needs a closed stage and must not precede created_at.
    ("deals", "closed_at"): {
        "stage": "closed_won",
        "won": True,
        "probability": 100,
        "created_at": "-infinity",
    },
}


def assert_spoken(
    info: pytest.ExceptionInfo[psycopg.Error],
    table: str,
    column: str,
    value: str | None,
    constraint: str | None,
) -> None:
    """The refusal is the trigger's, not PostgreSQL's: it names table, field and value, has a
    hint, and sets the fields a caller branches on."""
    diag = info.value.diag
    message = diag.message_primary or ""
    assert message.startswith(f"crm.{table} "), message
    assert f": {column} " in message, message
    if value is not None:
        assert value in message, message
    assert "violates" not in message, message
    assert "Failing row" not in (diag.message_detail or "")
    assert diag.message_hint, message
    assert (diag.schema_name, diag.table_name, diag.column_name) == ("crm", table, column)
    assert diag.constraint_name == constraint
    if constraint is not None:
        assert (diag.message_detail or "").startswith(f"The rule {constraint}: ")


def refused_insert(
    db: psycopg.Connection[Any], table: str, values: Row, sqlstate: str
) -> pytest.ExceptionInfo[psycopg.Error]:
    """Insert a row that must be refused; nothing of it may remain."""
    before = count(db, table)
    with raises_sqlstate(db, sqlstate) as info:
        insert(db, table, values)
    assert count(db, table) == before
    return info


def update(db: psycopg.Connection[Any], table: str, row_id: Any, **values: Any) -> None:
    query = sql.SQL("UPDATE crm.{} SET {} WHERE id = %(id)s").format(
        sql.Identifier(table),
        sql.SQL(", ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values
        ),
    )
    db.execute(query, {**values, "id": row_id})


def row_of(db: psycopg.Connection[Any], table: str, row_id: Any) -> tuple[Any, ...]:
    query = sql.SQL("SELECT t.* FROM crm.{} AS t WHERE t.id = %s").format(sql.Identifier(table))
    row = db.execute(query, (row_id,)).fetchone()
    assert row is not None
    return tuple(row)


# --- one refusal of each kind, per table ---------------------------------------------------

# (table, overrides of a valid row, SQLSTATE, column, text the message must quote, constraint,
# text the hint must hold)
INSERTS: list[tuple[str, Row, str, str, str | None, str | None, str]] = [
    ("clients", {"timezone": "Mars/Olympus"}, "23514", "timezone", "'Mars/Olympus'",
     "clients_timezone_check", "Australia/Sydney"),
    ("clients", {"default_currency": "usd"}, "23514", "default_currency", "'usd'",
     "clients_default_currency_check", "Did you mean USD?"),
    ("clients", {"name": "   "}, "23514", "name", "'   ' is blank", "clients_name_check",
     "1 to 200"),
    ("clients", {"name": "x" * 300}, "23514", "name", "... (300 characters)",
     "clients_name_check", "1 to 200"),
    ("clients", {"created_at": "-infinity"}, "23514", "created_at", "'-infinity'",
     "clients_timestamps_check", "1900-01-01 00:00 UTC"),
    ("clients", {"name": None}, "23502", "name", "name is NULL", None, "Display name"),
    ("campaigns", {"name": ""}, "23514", "name", "'' is blank", "campaigns_name_check",
     "1 to 200"),
    ("campaigns", {"client_id": uuid.UUID(int=1)}, "23503", "client_id",
     "'00000000-0000-0000-0000-000000000001' is not a client", "campaigns_client_id_fkey",
     "crm.clients"),
    ("campaigns", {"deleted_at": "infinity"}, "23514", "deleted_at", "'infinity'",
     "campaigns_timestamps_check", "Leave deleted_at NULL"),
    ("leads", {"email": "ada at example.com"}, "23514", "email",
     "'ada at example.com' is not an email address", "leads_email_check", "name@domain"),
    ("leads", {"email": "a" * 320 + "@x.io"}, "23514", "email", "is 325 characters long",
     "leads_email_check", "320"),
    ("leads", {"status": "vip"}, "23514", "status", "'vip'", "leads_status_check",
     "new, contacted, engaged, meeting_booked, qualified, disqualified, customer, "
     "unsubscribed, bounced"),
    ("leads", {"status": "New"}, "23514", "status", "'New'", "leads_status_check",
     "Did you mean new?"),
    ("leads", {"meeting_booked": True}, "23514", "meeting_booked", "'true'",
     "leads_meeting_booked_at_check", "set both, or neither"),
    ("leads", {"meeting_booked_at": T0}, "23514", "meeting_booked_at",
     "is set, but meeting_booked is false", "leads_meeting_booked_at_check", "set both"),
    ("leads", {"created_at": "275000-01-01 00:00+00"}, "23514", "created_at",
     "'275000-01-01 00:00:00+00'", "leads_timestamps_check", "2200-01-01 00:00 UTC"),
    ("leads", {"status": None}, "23502", "status", "status is NULL", None, "'new'::text"),
    ("activities", {"channel": None}, "23502", "channel", "channel is NULL", None,
     "Channel of the touch"),
    ("activities", {"activity_type": "Email Sent"}, "23514", "activity_type",
     "'Email Sent' is not lower snake_case", "activities_activity_type_check",
     "Did you mean email_sent?"),
    ("activities", {"occurred_at": "-infinity"}, "23514", "occurred_at", "'-infinity'",
     "activities_timestamps_check", "infinity and -infinity are not accepted"),
    ("activities", {"occurred_at": "1899-12-31 23:59:59.999999+00"}, "23514", "occurred_at",
     "'1899-12-31 23:59:59.999999+00'", "activities_timestamps_check", "1900-01-01"),
    ("client_crm_configs", {"crm_type": "HubSpot"}, "23514", "crm_type", "'HubSpot'",
     "client_crm_configs_crm_type_check", "hubspot, pipedrive, close. Did you mean hubspot?"),
    ("client_crm_configs", {"connection_status": "ok"}, "23514", "connection_status", "'ok'",
     "client_crm_configs_connection_status_check", "pending, connected, error, disconnected"),
    ("client_crm_configs", {"hubspot_portal_id": "123"}, "23514", "hubspot_portal_id",
     "'123' is set, but crm_type is 'close'", "client_crm_configs_hubspot_portal_id_check",
     "HubSpot account"),
    ("client_crm_configs", {"api_base_url": "ftp://crm.example"}, "23514", "api_base_url",
     "'ftp://crm.example'", "client_crm_configs_api_base_url_check", "https://api.hubapi.com"),
    ("client_crm_configs", {"stage_map": Jsonb([])}, "23514", "stage_map",
     "'[]' is a JSON array, not an object", "client_crm_configs_stage_map_check",
     '{"proposal": "presentationscheduled"}'),
    ("client_crm_configs", {"external_key_fields": Jsonb("deal")}, "23514",
     "external_key_fields", "is a JSON string, not an object",
     "client_crm_configs_external_key_fields_check", '{"deal": "agency_crm_key"}'),
    ("client_crm_configs", {"max_attempts": 0}, "23514", "max_attempts",
     "'0' is not between 1 and 100", "client_crm_configs_max_attempts_check", "1 to 100"),
    ("client_crm_configs", {"crm_type": "hubspot", "oauth_expires_at": "infinity"}, "23514",
     "oauth_expires_at", "'infinity'", "client_crm_configs_timestamps_check", "1900-01-01"),
    ("crm_external_ids", {"entity_type": "company"}, "23514", "entity_type", "'company'",
     "crm_external_ids_entity_type_check", "lead, contact, deal, organisation"),
    ("crm_external_ids", {"external_key": ""}, "23514", "external_key", "'' is empty",
     "crm_external_ids_external_key_check", "1 to 200"),
    ("crm_external_ids", {"crm_id": "9" * 201}, "23514", "crm_id", "is 201 characters long",
     "crm_external_ids_crm_id_check", "1 to 200"),
    ("crm_external_ids", {"create_sent_at": "-infinity"}, "23514", "create_sent_at",
     "'-infinity'", "crm_external_ids_timestamps_check", "1900-01-01"),
    ("meeting_reschedules", {"new_scheduled_at": "infinity"}, "23514", "new_scheduled_at",
     "'infinity'", "meeting_reschedules_timestamps_check", "2200-01-01"),
    ("meeting_reschedules", {"meeting_id": None}, "23502", "meeting_id", "meeting_id is NULL",
     None, "Meeting that was rescheduled"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("table", "overrides", "sqlstate", "column", "quoted", "constraint", "hint"),
    INSERTS,
    ids=[f"{t}-{s}-{c}" for t, _, s, c, *_ in INSERTS],
)
def test_a_bad_insert_is_refused_naming_table_field_and_value(
    db: psycopg.Connection[Any],
    make: Make,
    table: str,
    overrides: Row,
    sqlstate: str,
    column: str,
    quoted: str | None,
    constraint: str | None,
    hint: str,
) -> None:
    info = refused_insert(db, table, valid_row(table, build_graph(make)) | overrides, sqlstate)
    assert_spoken(info, table, column, quoted, constraint)
    assert hint in (info.value.diag.message_hint or "")


# (table, which row of the graph, the update, SQLSTATE, column, quoted, constraint)
UPDATES: list[tuple[str, str, Row, str, str, str, str]] = [
    ("clients", "client", {"timezone": "Europe/Atlantis"}, "23514", "timezone",
     "'Europe/Atlantis'", "clients_timezone_check"),
    ("campaigns", "campaign", {"name": " " * 3}, "23514", "name", "'   '",
     "campaigns_name_check"),
    ("leads", "lead", {"status": "vip"}, "23514", "status", "'vip'", "leads_status_check"),
    ("leads", "lead", {"campaign_id": uuid.UUID(int=2)}, "23503", "campaign_id",
     "'00000000-0000-0000-0000-000000000002'", "leads_client_id_campaign_id_fkey"),
    ("activities", "activity", {"occurred_at": "-infinity"}, "23514", "occurred_at",
     "'-infinity'", "activities_timestamps_check"),
    ("activities", "activity", {"lead_id": uuid.UUID(int=3)}, "23503", "lead_id",
     "'00000000-0000-0000-0000-000000000003'", "activities_client_id_lead_id_fkey"),
    ("client_crm_configs", "config", {"max_attempts": 1000}, "23514", "max_attempts",
     "'1000'", "client_crm_configs_max_attempts_check"),
    ("client_crm_configs", "config", {"last_successful_push_at": "infinity"}, "23514",
     "last_successful_push_at", "'infinity'", "client_crm_configs_timestamps_check"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("table", "which", "values", "sqlstate", "column", "quoted", "constraint"),
    UPDATES,
    ids=[f"{t}-{s}-{c}" for t, _, _, s, c, *_ in UPDATES],
)
def test_a_bad_update_is_refused_and_changes_nothing(
    db: psycopg.Connection[Any],
    make: Make,
    table: str,
    which: str,
    values: Row,
    sqlstate: str,
    column: str,
    quoted: str,
    constraint: str,
) -> None:
    row_id = getattr(build_graph(make), which)["id"]
    before = row_of(db, table, row_id)
    with raises_sqlstate(db, sqlstate) as info:
        update(db, table, row_id, **values)
    assert_spoken(info, table, column, quoted, constraint)
    assert row_of(db, table, row_id) == before


def test_a_multi_row_insert_with_one_bad_row_leaves_nothing(
    db: psycopg.Connection[Any], make: Make
) -> None:
    lead = make.lead(make.client())
    before = count(db, "activities")
    with raises_sqlstate(db, "23514") as info:
        db.execute(
            "INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)"
            " VALUES (%(c)s, %(l)s, 'email', now()), (%(c)s, %(l)s, 'sms', '-infinity')",
            {"c": lead["client_id"], "l": lead["id"]},
        )
    assert_spoken(info, "activities", "occurred_at", "'-infinity'", "activities_timestamps_check")
    assert count(db, "activities") == before


def test_a_campaign_of_another_client_is_refused_naming_the_client(
    db: psycopg.Connection[Any], make: Make
) -> None:
    mine, theirs = build_graph(make), build_graph(make)
    values = valid_row("leads", mine) | {"campaign_id": theirs.campaign["id"]}
    info = refused_insert(db, "leads", values, "23503")
    assert_spoken(
        info, "leads", "campaign_id", str(theirs.campaign["id"]), "leads_client_id_campaign_id_fkey"
    )
    assert f"is not a campaign of client {mine.client['id']}" in str(
        info.value.diag.message_primary
    )


def test_a_second_live_lead_with_the_same_email_is_refused_naming_the_first(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    first = make.lead(client, email="Ada@Example.com")
    info = refused_insert(
        db, "leads", {"client_id": client["id"], "email": "ada@example.COM"}, "23505"
    )
    assert_spoken(info, "leads", "email", "'ada@example.COM'", "leads_client_id_email_key")
    assert str(first["id"]) in str(info.value.diag.message_primary)
    assert f"WHERE id = '{first['id']}'" in str(info.value.diag.message_hint)
    # Restoring a soft-deleted lead whose email was taken meanwhile: refused the same way.
    db.execute("UPDATE crm.leads SET deleted_at = now() WHERE id = %s", (first["id"],))
    second = make.lead(client, email="ADA@example.com")
    with raises_sqlstate(db, "23505") as info:
        update(db, "leads", first["id"], deleted_at=None)
    assert_spoken(info, "leads", "email", "'Ada@Example.com'", "leads_client_id_email_key")
    assert str(second["id"]) in str(info.value.diag.message_primary)


def test_a_second_live_crm_config_is_refused_naming_the_first(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    first = make.crm_config(client)
    values = {
        "client_id": client["id"],
        "crm_type": "close",
        "api_key": seal(client["id"], "api_key", "k"),
    }
    info = refused_insert(db, "client_crm_configs", values, "23505")
    assert_spoken(
        info, "client_crm_configs", "client_id", str(client["id"]),
        "client_crm_configs_client_id_key",
    )  # fmt: skip
    assert f"already has a live CRM config, {first['id']} (pipedrive)" in str(
        info.value.diag.message_primary
    )


def test_an_oauth_token_on_a_config_that_is_not_hubspot_is_refused_without_showing_it(
    db: psycopg.Connection[Any], make: Make
) -> None:
    values = valid_row("client_crm_configs", build_graph(make)) | {
        "oauth_access_token": "secret-token-123",
        "api_key": "secret-key-456",
    }
    info = refused_insert(db, "client_crm_configs", values, "23514")
    assert_spoken(
        info, "client_crm_configs", "oauth_access_token", None, "client_crm_configs_oauth_check"
    )
    shown = " ".join(
        str(part)
        for part in (
            info.value.diag.message_primary,
            info.value.diag.message_detail,
            info.value.diag.message_hint,
        )
    )
    assert "secret" not in shown
    assert "is set, but OAuth is for crm_type hubspot and crm_type is 'close'" in shown


@pytest.mark.parametrize("column", ["api_key", "oauth_access_token", "oauth_refresh_token"])
def test_a_plaintext_secret_is_refused_without_showing_it(
    db: psycopg.Connection[Any], make: Make, column: str
) -> None:
    graph = build_graph(make)
    values = valid_row("client_crm_configs", graph) | {
        "crm_type": "hubspot",
        "api_key": None,
        column: "canary-secret-0451",
    }
    info = refused_insert(db, "client_crm_configs", values, "23514")
    assert_spoken(info, "client_crm_configs", column, None, f"client_crm_configs_{column}_check")
    diag = info.value.diag
    shown = " ".join(str(p) for p in (diag.message_primary, diag.message_detail, diag.message_hint))
    assert "canary-secret-0451" not in shown
    assert "is not an encrypted secret" in shown and "AGENCY_CRM_SECRET_KEYS" in shown
    # The same secret, encrypted by agency-crm, is accepted.
    row = insert(
        db,
        "client_crm_configs",
        values | {column: seal(values["client_id"], column, "canary-secret-0451")},
    )
    assert row[column].startswith("acrm:v1:test:")


def test_crm_external_ids_refuse_bad_values_but_leave_duplicates_to_the_upserts(
    db: psycopg.Connection[Any], make: Make
) -> None:
    config = make.crm_config(make.client())
    args = (config["client_id"], config["id"], "deal", "deal:1", None)
    db.execute("SELECT crm.record_crm_id(%s, %s, %s, %s, %s, 'd-1', NULL)", args)
    # The runner's functions write through the same trigger: a bad time is refused there too.
    with raises_sqlstate(db, "23514") as info:
        db.execute("SELECT crm.record_crm_id(%s, %s, %s, %s, %s, 'd-1', '-infinity')", args)
    assert_spoken(
        info, "crm_external_ids", "create_sent_at", "'-infinity'",
        "crm_external_ids_timestamps_check",
    )  # fmt: skip
    # The key is theirs to upsert on: INSERT ... ON CONFLICT still finds the row.
    db.execute("SELECT crm.record_crm_id(%s, %s, %s, %s, %s, 'd-2', NULL)", args)
    claimed = db.execute(
        "SELECT claimed, crm_id FROM crm.claim_crm_create(%s, %s, %s, %s, %s, interval '1 s')",
        args,
    ).fetchone()
    assert claimed == (False, "d-2")
    assert count(db, "crm_external_ids") == 1


def test_truncate_and_delete_of_crm_external_ids_hint_at_what_the_table_offers(
    db: psycopg.Connection[Any], make: Make
) -> None:
    make.external_id(make.crm_config(make.client()))
    for statement in ("DELETE FROM crm.crm_external_ids", "TRUNCATE crm.crm_external_ids"):
        with raises_sqlstate(db, "0A000") as info:
            db.execute(statement.encode())
        hint = info.value.diag.message_hint or ""
        assert "deleted_at = now()" not in hint
        assert "crm_external_ids has no deleted_at" in hint
        assert "is_active = false" in hint
    assert count(db, "crm_external_ids") == 1
    # Tables with deleted_at keep their hint.
    with raises_sqlstate(db, "0A000") as info:
        db.execute(b"TRUNCATE crm.leads CASCADE")
    assert "UPDATE crm.leads SET deleted_at = now()" in (info.value.diag.message_hint or "")


# --- the window --------------------------------------------------------------------------


def window_bounds(db: psycopg.Connection[Any]) -> tuple[datetime, datetime]:
    row = db.execute(
        "SELECT lower(w), upper(w), lower_inc(w), upper_inc(w)"
        " FROM crm_private.timestamp_window() AS w"
    ).fetchone()
    assert row is not None
    assert (row[2], row[3]) == (True, False)
    return row[0], row[1]


def test_the_window_is_1900_to_2200_utc_and_twenty_years_ago_is_inside(
    db: psycopg.Connection[Any], make: Make
) -> None:
    assert window_bounds(db) == (datetime(1900, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
    lead = make.lead(make.client())
    edges = {
        "1900-01-01 00:00+00": True,
        "2199-12-31 23:59:59.999999+00": True,
        "1899-12-31 23:59:59.999999+00": False,
        "2200-01-01 00:00+00": False,
        "infinity": False,
        "-infinity": False,
    }
    for value, accepted in edges.items():
        row = db.execute(
            "SELECT %s::timestamptz <@ crm_private.timestamp_window()", (value,)
        ).fetchone()
        assert row == (accepted,), value
        if accepted:
            assert make.activity(lead, occurred_at=value)["occurred_at"]
        else:
            with raises_sqlstate(db, "23514"):
                make.activity(lead, occurred_at=value)
    twenty_years_ago = datetime.now(UTC) - timedelta(days=20 * 366)
    assert make.activity(lead, occurred_at=twenty_years_ago)["occurred_at"] == twenty_years_ago


def test_every_timestamptz_column_has_the_windows_check_with_the_functions_bounds(
    db: psycopg.Connection[Any],
) -> None:
    low, high = window_bounds(db)
    rows = db.execute(
        """
        SELECT c.relname, array_agg(a.attname::text ORDER BY a.attnum),
               (SELECT pg_get_constraintdef(con.oid) FROM pg_constraint AS con
                WHERE con.conrelid = c.oid AND con.conname = c.relname || '_timestamps_check'
                  AND con.convalidated)
        FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
          AND a.atttypid = 'timestamptz'::regtype AND NOT a.attisdropped
          AND c.relname NOT IN ('schema_migrations', 'schema_code', 'schema_access')
        GROUP BY c.oid, c.relname
        ORDER BY 1
        """
    ).fetchall()
    windowed = {table: (columns, definition) for table, columns, definition in rows}
    # The push queue and log hold the runner's own clock readings; they are not windowed.
    assert sorted(windowed) == sorted([*WINDOWED, "crm_push_log", "crm_push_queue"])
    bounds = (
        f">= ('{low:%Y-%m-%d %H:%M:%S}'::timestamp without time zone AT TIME ZONE 'UTC'::text)",
        f"< ('{high:%Y-%m-%d %H:%M:%S}'::timestamp without time zone AT TIME ZONE 'UTC'::text)",
    )
    for table in WINDOWED:
        columns, definition = windowed[table]
        assert definition is not None, f"crm.{table} has no validated {table}_timestamps_check"
        listed = ", ".join(columns)
        assert f"LEAST({listed}) {bounds[0]}" in definition, (table, definition)
        assert f"GREATEST({listed}) {bounds[1]}" in definition, (table, definition)


@pytest.mark.parametrize("table", WINDOWED)
def test_each_windowed_column_is_refused_by_the_constraint_when_the_triggers_are_off(
    db: psycopg.Connection[Any], make: Make, table: str
) -> None:
    graph = build_graph(make)
    columns = db.execute(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass"
        " AND atttypid = 'timestamptz'::regtype AND NOT attisdropped ORDER BY attnum",
        (f"crm.{table}",),
    ).fetchall()
    assert columns
    # As a replication apply or a bulk load with triggers disabled would write.
    db.execute("SET LOCAL session_replication_role = replica")
    for (column,) in columns:
        for value in ("-infinity", "2200-01-01 00:00+00"):
            values = valid_row(table, graph) | COMPANIONS.get((table, column), {})
            with raises_sqlstate(db, "23514") as info:
                insert(db, table, values | {column: value})
            assert info.value.diag.constraint_name == f"{table}_timestamps_check", (column, value)


@pytest.mark.parametrize(
    ("table", "constraint"),
    [("deals", "deals_value_check"), ("deal_stage_history", "deal_stage_history_value_check")],
)
def test_a_nan_amount_is_refused_by_the_value_check(
    db: psycopg.Connection[Any], make: Make, table: str, constraint: str
) -> None:
    values = valid_row(table, build_graph(make)) | {"value": Decimal("NaN")}
    db.execute("SET LOCAL session_replication_role = replica")
    info = refused_insert(db, table, values, "23514")
    assert info.value.diag.constraint_name == constraint
    assert insert(db, table, values | {"value": Decimal("9999999999.99")})["value"]


# --- upgrading a database that has rows ------------------------------------------------------


def upgrade_to_before_0011(url: str) -> None:
    names = list(schema.migration_names())
    with psycopg.connect(url) as conn:
        schema.upgrade(conn, target=names[names.index("0011_refusals.sql") - 1], apply_code=False)


def seed(url: str, occurred_at: str, value: str) -> None:
    """One client with a lead, a touch and a deal, written as an older release would have."""
    with psycopg.connect(url) as conn:
        conn.execute(
            """
            WITH c AS (INSERT INTO crm.clients (name) VALUES ('Old') RETURNING id),
            l AS (INSERT INTO crm.leads (client_id, email) SELECT id, 'a@b.c' FROM c
                  RETURNING client_id, id),
            a AS (INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)
                  SELECT client_id, id, 'email', %(occurred_at)s::timestamptz FROM l)
            INSERT INTO crm.deals (client_id, lead_id, name, value, currency, probability,
                                   stage_changed_at)
            SELECT client_id, id, 'Old deal', %(value)s::numeric, 'AUD', 20, now() FROM l
            """,
            {"occurred_at": occurred_at, "value": value},
        )


def test_0011_upgrades_a_database_with_rows(empty_db_url: str) -> None:
    upgrade_to_before_0011(empty_db_url)
    seed(empty_db_url, "2006-03-01 10:00+00", "1500.50")
    with psycopg.connect(empty_db_url) as conn:
        result = schema.upgrade(conn)
        assert "0011_refusals.sql" in result.applied
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE NOT convalidated), count(*) FROM pg_constraint"
            " WHERE connamespace = 'crm'::regnamespace AND conname LIKE '%timestamps_check'"
        ).fetchone()
        assert row == (0, len(WINDOWED))
        kept = conn.execute(
            "SELECT a.occurred_at, d.value FROM crm.activities AS a, crm.deals AS d"
        ).fetchone()
    assert kept == (datetime(2006, 3, 1, 10, tzinfo=UTC), Decimal("1500.50"))


@pytest.mark.parametrize(
    ("occurred_at", "value", "rule"),
    [
        ("-infinity", "10", "activities_timestamps_check"),
        ("2006-03-01 10:00+00", "NaN", "deals_value_check"),
    ],
)
def test_0011_refuses_to_upgrade_over_rows_that_break_a_new_rule_naming_them(
    empty_db_url: str, occurred_at: str, value: str, rule: str
) -> None:
    upgrade_to_before_0011(empty_db_url)
    seed(empty_db_url, occurred_at, value)
    with psycopg.connect(empty_db_url) as conn:
        table = rule.split("_")[0]
        bad = conn.execute(f"SELECT id FROM crm.{table}".encode()).fetchone()
        assert bad is not None
        with pytest.raises(schema.SchemaError) as info:
            schema.upgrade(conn)
        applied = conn.execute(
            "SELECT count(*) FROM crm.schema_migrations WHERE name = '0011_refusals.sql'"
        ).fetchone()
    assert f"1 row(s) of crm.{table} break the new rule {rule} (ids: {bad[0]})" in (
        info.value.message
    )
    assert info.value.hint and "nothing was applied" in info.value.hint
    assert applied == (0,)


# --- the catalog: no rule of the validated tables is missed ------------------------------

# CHECKs whose violation cannot be generated from their definition (IN lists and the window
# are generated below): a violating row for each.
EXPLICIT_CHECKS: dict[str, Row] = {
    "clients_name_check": {"name": " "},
    "clients_default_currency_check": {"default_currency": "AUDX"},
    "clients_timezone_check": {"timezone": "Mars/Olympus_Mons"},
    "campaigns_name_check": {"name": "n" * 201},
    "leads_email_check": {"email": "a@b@c"},
    "leads_meeting_booked_at_check": {"meeting_booked": True},
    "activities_activity_type_check": {"activity_type": "9lives"},
    "client_crm_configs_oauth_check": {"oauth_refresh_token": "r"},
    "client_crm_configs_hubspot_portal_id_check": {"hubspot_portal_id": "1"},
    "client_crm_configs_api_base_url_check": {"api_base_url": "https://has space.example"},
    "client_crm_configs_stage_map_check": {"stage_map": Jsonb(1)},
    "client_crm_configs_external_key_fields_check": {"external_key_fields": Jsonb([])},
    "client_crm_configs_max_attempts_check": {"max_attempts": 101},
    "client_crm_configs_api_key_check": {"api_key": "plain-key"},
    "client_crm_configs_oauth_access_token_check": {
        "oauth_access_token": "plain-token",
        "crm_type": "hubspot",
    },
    "client_crm_configs_oauth_refresh_token_check": {
        "oauth_refresh_token": "acrm:v1:not-an-envelope",
        "crm_type": "hubspot",
    },
    "crm_external_ids_external_key_check": {"external_key": "k" * 201},
    "crm_external_ids_crm_id_check": {"crm_id": ""},
}
IN_LIST = re.compile(r"^CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)$")


def checks_of_validated_tables(db: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    rows = db.execute(
        """
        SELECT c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
        FROM pg_constraint AS con
        INNER JOIN pg_class AS c ON c.oid = con.conrelid
        WHERE con.connamespace = 'crm'::regnamespace AND con.contype = 'c'
          AND c.relname = ANY (%s)
        ORDER BY 1, 2
        """,
        (VALIDATED,),
    ).fetchall()
    return [(str(t), str(n), str(d)) for t, n, d in rows]


def violations(
    db: psycopg.Connection[Any], table: str, name: str, definition: str
) -> list[tuple[str, Row]]:
    """(column named in the refusal, overrides) for rows that break the CHECK ``name``."""
    listed = IN_LIST.match(definition)
    if listed:
        return [(listed[1], {listed[1]: "not_" + re.findall(r"'(\w+)'", listed[2])[0]})]
    if name == f"{table}_timestamps_check":
        columns = db.execute(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = %s::regclass"
            " AND atttypid = 'timestamptz'::regtype AND NOT attisdropped",
            (f"crm.{table}",),
        ).fetchall()
        return [
            (c, COMPANIONS.get((table, c), {}) | {c: value})
            for (c,) in columns
            for value in ("-infinity", "infinity", "1800-06-01 00:00+00", "2500-06-01 00:00+00")
        ]
    if name in EXPLICIT_CHECKS:
        overrides = EXPLICIT_CHECKS[name]
        return [(next(iter(overrides)), overrides)]
    return []


def test_catalog_every_check_of_the_validated_tables_is_refused_by_the_trigger_first(
    db: psycopg.Connection[Any], make: Make
) -> None:
    checks = checks_of_validated_tables(db)
    assert len(checks) >= 25
    graph = build_graph(make)
    missing = []
    for table, name, definition in checks:
        cases = violations(db, table, name, definition)
        if not cases:
            missing.append(name)
        for column, overrides in cases:
            info = refused_insert(db, table, valid_row(table, graph) | overrides, "23514")
            assert_spoken(info, table, column, None, name)
    assert missing == [], f"add a violating row for these CHECKs to EXPLICIT_CHECKS: {missing}"
    assert set(EXPLICIT_CHECKS) <= {name for _, name, _ in checks}


def test_catalog_the_triggers_accept_exactly_the_words_of_each_in_list_check(
    db: psycopg.Connection[Any], make: Make
) -> None:
    graph = build_graph(make)
    words = 0
    for table, name, definition in checks_of_validated_tables(db):
        listed = IN_LIST.match(definition)
        if not listed:
            continue
        column = listed[1]
        for word in re.findall(r"'(\w+)'", listed[2]):
            with db.transaction(force_rollback=True):
                values = valid_row(table, graph) | {column: word}
                if table == "client_crm_configs" and word == "hubspot":
                    values["oauth_access_token"] = seal(
                        values["client_id"], "oauth_access_token", "t"
                    )
                assert insert(db, table, values)[column] == word
            words += 1
            # The same word with a character more is the trigger's to refuse.
            info = refused_insert(
                db, table, valid_row(table, graph) | {column: word + "s"}, "23514"
            )
            assert_spoken(info, table, column, f"'{word}s'", name)
    assert words >= 20


def test_catalog_every_foreign_key_of_the_validated_tables_is_refused_by_the_trigger_first(
    db: psycopg.Connection[Any], make: Make
) -> None:
    rows = db.execute(
        """
        SELECT c.relname::text, con.conname::text,
               array(SELECT attname::text FROM pg_attribute
                     WHERE attrelid = con.conrelid AND attnum = ANY (con.conkey)
                       AND attname <> 'client_id')
        FROM pg_constraint AS con
        INNER JOIN pg_class AS c ON c.oid = con.conrelid
        WHERE con.connamespace = 'crm'::regnamespace AND con.contype = 'f'
          AND c.relname = ANY (%s)
        ORDER BY 1, 2
        """,
        (VALIDATED,),
    ).fetchall()
    assert len(rows) == 8
    graph = build_graph(make)
    for table, name, columns in rows:
        column = columns[0] if columns else "client_id"
        nowhere = uuid.uuid4()
        info = refused_insert(db, table, valid_row(table, graph) | {column: nowhere}, "23503")
        assert_spoken(info, table, column, f"'{nowhere}'", name)


def test_catalog_every_required_column_of_the_validated_tables_is_refused_when_null(
    db: psycopg.Connection[Any], make: Make
) -> None:
    rows = db.execute(
        """
        SELECT c.relname::text, a.attname::text
        FROM pg_attribute AS a
        INNER JOIN pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relname = ANY (%s)
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND a.attidentity = ''
        ORDER BY 1, a.attnum
        """,
        (VALIDATED,),
    ).fetchall()
    assert len(rows) >= 40
    graph = build_graph(make)
    for table, column in rows:
        info = refused_insert(db, table, valid_row(table, graph) | {column: None}, "23502")
        assert_spoken(info, table, column, None, None)
        assert f"{column} is NULL, but it is required" in str(info.value.diag.message_primary)


# Unique keys (other than primary keys) the triggers refuse first: the column they name.
UNIQUE_REFUSED_BY_THE_TRIGGERS = {
    "leads_client_id_email_key": "email",
    "client_crm_configs_client_id_key": "client_id",
}
# Unique keys left to PostgreSQL, and why.
UNIQUE_LEFT_TO_THE_CONSTRAINT = {
    # The push runner upserts on it (INSERT ... ON CONFLICT in crm.claim_crm_create and
    # crm.record_crm_id); a BEFORE INSERT trigger cannot tell an upsert from an INSERT.
    "crm_external_ids_entity_key",
}


def test_catalog_every_unique_key_of_the_validated_tables_is_refused_or_left_on_purpose(
    db: psycopg.Connection[Any], make: Make
) -> None:
    rows = db.execute(
        """
        SELECT c.relname::text, i.relname::text
        FROM pg_index AS x
        INNER JOIN pg_class AS i ON i.oid = x.indexrelid
        INNER JOIN pg_class AS c ON c.oid = x.indrelid
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relname = ANY (%s)
          AND x.indisunique AND NOT x.indisprimary
        ORDER BY 1, 2
        """,
        (VALIDATED,),
    ).fetchall()
    keys = {key for _, key in rows}
    assert keys == set(UNIQUE_REFUSED_BY_THE_TRIGGERS) | UNIQUE_LEFT_TO_THE_CONSTRAINT
    graph = build_graph(make)
    for table, key in rows:
        # The same row twice (new ids): its unique key is the only thing they share.
        values = valid_row(table, graph)
        insert(db, table, values)
        info = refused_insert(db, table, values, "23505")
        assert info.value.diag.constraint_name == key
        if key in UNIQUE_REFUSED_BY_THE_TRIGGERS:
            assert_spoken(info, table, UNIQUE_REFUSED_BY_THE_TRIGGERS[key], None, key)
        else:
            assert "duplicate key value" in str(info.value.diag.message_primary)


# BEFORE row triggers that may run before _080_validate: they only refuse, never fill in.
REFUSING_ONLY = {"_010_refuse_key_change"}


def test_catalog_the_validate_trigger_runs_first_on_every_validated_table(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT c.relname::text, t.tgname::text, t.tgtype
        FROM pg_trigger AS t
        INNER JOIN pg_class AS c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'crm'::regnamespace AND NOT t.tgisinternal
          AND c.relname = ANY (%s)
        ORDER BY 1, 2
        """,
        (VALIDATED,),
    ).fetchall()
    row, before, insert_, update_ = 1, 2, 4, 16
    for table in VALIDATED:
        mine = [tgtype for t, name, tgtype in rows if t == table and name == "_080_validate"]
        assert mine == [row | before | insert_ | update_], table
        earlier = [
            name
            for t, name, tgtype in rows
            if t == table
            and name < "_080_validate"
            and tgtype & (row | before) == row | before
            and tgtype & (insert_ | update_)
        ]
        assert set(earlier) <= REFUSING_ONLY, (table, earlier)
