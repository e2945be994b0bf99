"""A channel or lost reason outside its vocabulary is refused naming the field, the value and
the valid words (issue 11, migration 0013). The columns were enums, refused by PostgreSQL with
a bare 22P02 while it read the value, before any trigger; they are text with a CHECK listing
exactly the enum's labels now, and the BEFORE triggers refuse first. The catalog tests at the
bottom keep the CHECKs equal to the enum types, so the two can never drift apart."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from agency_crm import schema
from tests.helpers.fixtures import T0, Make, Row, count, raises_sqlstate

# (table, column) -> (the CHECK listing the words, the enum type whose labels they are)
VOCABULARIES: dict[tuple[str, str], tuple[str, str]] = {
    ("activities", "channel"): ("activities_channel_check", "crm.channel_type"),
    ("meetings", "converting_channel"): (
        "meetings_converting_channel_check",
        "crm.channel_type",
    ),
    ("deals", "converting_channel"): ("deals_converting_channel_check", "crm.channel_type"),
    ("deals", "first_touch_channel"): ("deals_first_touch_channel_check", "crm.channel_type"),
    # deals_lost_reason_check is the older rule "set exactly when the stage is closed_lost".
    ("deals", "lost_reason"): ("deals_lost_reason_vocabulary_check", "crm.deal_lost_reason_type"),
}


def labels(db: psycopg.Connection[Any], type_name: str) -> list[str]:
    row = db.execute(
        sql.SQL("SELECT enum_range(NULL::{})::text[]").format(
            sql.SQL(".").join(map(sql.Identifier, type_name.split(".")))
        )
    ).fetchone()
    assert row is not None
    return list(row[0])


def fetch(db: psycopg.Connection[Any], table: str, row_id: Any) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            sql.SQL("SELECT * FROM crm.{} WHERE id = %s").format(sql.Identifier(table)),
            (row_id,),
        ).fetchone()
    assert row is not None
    return row


def update(db: psycopg.Connection[Any], table: str, row_id: Any, values: Row) -> None:
    db.execute(
        sql.SQL("UPDATE crm.{} SET {} WHERE id = %(id)s").format(
            sql.Identifier(table),
            sql.SQL(", ").join(
                sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder(c)) for c in values
            ),
        ),
        {**values, "id": row_id},
    )


def closed_lost(reason: str) -> Row:
    """The write that closes an open deal as lost with ``reason``."""
    return {"stage": "closed_lost", "lost_reason": reason}


# --- The triggers refuse first ---------------------------------------------------------------


def insert_activity(make: Make, value: str) -> Row:
    return make.activity(make.lead(make.client()), channel=value)


def insert_meeting(make: Make, value: str) -> Row:
    return make.meeting(make.lead(make.client()), converting_channel=value)


def insert_deal(column: str) -> Callable[[Make, str], Row]:
    def insert(make: Make, value: str) -> Row:
        return make.deal(make.lead(make.client()), **{column: value})

    return insert


INSERTS: list[tuple[str, str, Callable[[Make, str], Row]]] = [
    ("activities", "channel", insert_activity),
    ("meetings", "converting_channel", insert_meeting),
    ("deals", "converting_channel", insert_deal("converting_channel")),
    ("deals", "first_touch_channel", insert_deal("first_touch_channel")),
]


def assert_refusal(
    info: pytest.ExceptionInfo[psycopg.Error],
    db: psycopg.Connection[Any],
    table: str,
    column: str,
    value: str,
) -> str:
    """The trigger's refusal: 23514 naming the table, field and value, the rule as DETAIL, and
    a hint listing every valid word; returns the hint."""
    constraint, type_name = VOCABULARIES[(table, column)]
    diag = info.value.diag
    message = diag.message_primary or ""
    assert message.startswith(f"crm.{table} "), message
    assert f": {column} '{value}' is not an accepted value" in message, message
    assert (diag.schema_name, diag.table_name, diag.column_name) == ("crm", table, column)
    assert diag.constraint_name == constraint
    assert (diag.message_detail or "").startswith(f"The rule {constraint}: "), diag.message_detail
    hint = diag.message_hint or ""
    assert hint.startswith(f"Use one of: {', '.join(labels(db, type_name))}."), hint
    return hint


@pytest.mark.parametrize(
    ("table", "column", "insert"), INSERTS, ids=[f"{t}.{c}" for t, c, _ in INSERTS]
)
def test_an_unknown_word_on_insert_is_refused_naming_field_value_and_the_valid_words(
    db: psycopg.Connection[Any],
    make: Make,
    table: str,
    column: str,
    insert: Callable[[Make, str], Row],
) -> None:
    before = count(db, table)
    with raises_sqlstate(db, "23514") as info:
        insert(make, "fax")
    hint = assert_refusal(info, db, table, column, "fax")
    assert "Did you mean" not in hint
    assert count(db, table) == before


def test_an_activity_moved_to_an_unknown_channel_is_refused_and_keeps_its_channel(
    db: psycopg.Connection[Any], make: Make
) -> None:
    activity = make.activity(make.lead(make.client()), channel="sms")
    with raises_sqlstate(db, "23514") as info:
        update(db, "activities", activity["id"], {"channel": "fax"})
    assert_refusal(info, db, "activities", "channel", "fax")
    assert str(info.value.diag.message_primary).startswith(f"crm.activities {activity['id']}: ")
    assert fetch(db, "activities", activity["id"])["channel"] == "sms"


def test_a_meeting_given_an_unknown_converting_channel_is_refused_and_unchanged(
    db: psycopg.Connection[Any], make: Make
) -> None:
    meeting = make.meeting(make.lead(make.client()), converting_channel="voice")
    with raises_sqlstate(db, "23514") as info:
        update(db, "meetings", meeting["id"], {"converting_channel": "fax"})
    assert_refusal(info, db, "meetings", "converting_channel", "fax")
    assert fetch(db, "meetings", meeting["id"])["converting_channel"] == "voice"


def test_a_deal_lost_for_an_unknown_reason_is_refused_and_stays_open(
    db: psycopg.Connection[Any], make: Make
) -> None:
    deal = make.deal(make.lead(make.client()))
    history = count(db, "deal_stage_history")
    with raises_sqlstate(db, "23514") as info:
        update(db, "deals", deal["id"], closed_lost("too_expensive"))
    assert_refusal(info, db, "deals", "lost_reason", "too_expensive")
    after = fetch(db, "deals", deal["id"])
    assert (after["stage"], after["lost_reason"], after["closed_at"]) == (
        "qualification",
        None,
        None,
    )
    assert count(db, "deal_stage_history") == history


def test_a_deal_inserted_lost_for_an_unknown_reason_is_refused(
    db: psycopg.Connection[Any], make: Make
) -> None:
    lead = make.lead(make.client())
    before = count(db, "deals")
    with raises_sqlstate(db, "23514") as info:
        make.deal(lead, stage="closed_lost", lost_reason="too_expensive")
    assert_refusal(info, db, "deals", "lost_reason", "too_expensive")
    assert count(db, "deals") == before


@pytest.mark.parametrize(
    ("table", "column", "value", "meant"),
    [
        ("activities", "channel", "Email", "email"),
        ("activities", "channel", " sms ", "sms"),
        ("meetings", "converting_channel", "LinkedIn", "linkedin"),
        ("deals", "first_touch_channel", "VOICE", "voice"),
        ("deals", "lost_reason", "NO_BUDGET", "no_budget"),
    ],
)
def test_a_near_miss_is_told_the_word_it_meant(
    db: psycopg.Connection[Any], make: Make, table: str, column: str, value: str, meant: str
) -> None:
    lead = make.lead(make.client())
    with raises_sqlstate(db, "23514") as info:
        if table == "activities":
            make.activity(lead, channel=value)
        elif table == "meetings":
            make.meeting(lead, converting_channel=value)
        elif column == "lost_reason":
            update(db, "deals", make.deal(lead)["id"], closed_lost(value))
        else:
            make.deal(lead, **{column: value})
    hint = assert_refusal(info, db, table, column, value)
    assert hint.endswith(f" Did you mean {meant}?"), hint


def test_a_long_bad_value_is_cut_in_the_message(db: psycopg.Connection[Any], make: Make) -> None:
    with raises_sqlstate(db, "23514") as info:
        make.activity(make.lead(make.client()), channel="x" * 500)
    message = info.value.diag.message_primary or ""
    assert "(500 characters)" in message and len(message) < 200, message


# --- The constraints, the last line of defence -----------------------------------------------


@pytest.mark.parametrize(
    ("table", "column"), list(VOCABULARIES), ids=[f"{t}.{c}" for t, c in VOCABULARIES]
)
def test_with_the_triggers_off_the_check_refuses(
    db: psycopg.Connection[Any], make: Make, table: str, column: str
) -> None:
    lead = make.lead(make.client())
    rows = {
        "activities": lambda: make.activity(lead, channel="email"),
        "meetings": lambda: make.meeting(lead),
        "deals": lambda: make.deal(lead),
    }
    row = rows[table]()
    values: Row = {column: "fax"}
    if column == "lost_reason":  # so that only the vocabulary is broken
        values |= {"stage": "closed_lost", "won": False, "closed_at": row["created_at"]}
    db.execute("SET LOCAL session_replication_role = replica")
    with raises_sqlstate(db, "23514") as info:
        update(db, table, row["id"], values)
    assert info.value.diag.constraint_name == VOCABULARIES[(table, column)][0]
    assert fetch(db, table, row["id"])[column] != "fax"


# --- Every word is accepted -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "column"), list(VOCABULARIES), ids=[f"{t}.{c}" for t, c in VOCABULARIES]
)
def test_every_label_of_the_type_is_accepted_and_read_back(
    db: psycopg.Connection[Any], make: Make, table: str, column: str
) -> None:
    words = labels(db, VOCABULARIES[(table, column)][1])
    lead = make.lead(make.client())
    for word in words:
        if table == "activities":
            row = make.activity(lead, channel=word)
        elif table == "meetings":
            row = make.meeting(lead, converting_channel=word)
        elif column == "lost_reason":
            row = make.deal(lead)
            update(db, "deals", row["id"], closed_lost(word))
        else:
            row = make.deal(lead, **{column: word})
        assert fetch(db, table, row["id"])[column] == word


def test_a_channel_given_as_the_enum_type_is_still_accepted(
    db: psycopg.Connection[Any], make: Make
) -> None:
    """Callers that cast to the public types keep working: enum to text is an assignment."""
    lead = make.lead(make.client())
    row = db.execute(
        "INSERT INTO crm.activities (client_id, lead_id, channel)"
        " VALUES (%s, %s, 'voice'::crm.channel_type) RETURNING channel",
        (lead["client_id"], lead["id"]),
    ).fetchone()
    assert row == ("voice",)
    deal = make.deal(lead)
    db.execute(
        "UPDATE crm.deals SET stage = 'closed_lost',"
        " lost_reason = 'went_silent'::crm.deal_lost_reason_type WHERE id = %s",
        (deal["id"],),
    )
    assert fetch(db, "deals", deal["id"])["lost_reason"] == "went_silent"


def test_the_channels_derived_from_the_touches_are_written_as_text(
    db: psycopg.Connection[Any], make: Make
) -> None:
    lead = make.lead(make.client(), created_at=T0 - timedelta(days=30))
    make.activity(lead, channel="linkedin", occurred_at=T0 - timedelta(days=3))
    make.activity(lead, channel="mail", occurred_at=T0 - timedelta(days=2))
    meeting = make.meeting(lead, booked_at=T0 - timedelta(days=1))
    deal = make.deal(lead, created_at=T0)
    assert fetch(db, "meetings", meeting["id"])["converting_channel"] == "mail"
    got = fetch(db, "deals", deal["id"])
    assert (got["first_touch_channel"], got["converting_channel"]) == ("linkedin", "mail")


# --- Reads keep their types and order ---------------------------------------------------------


def test_lost_deal_analysis_still_returns_the_enum_in_its_order(
    db: psycopg.Connection[Any], make: Make
) -> None:
    """Tied reasons come in the type's order (price_too_high before chose_competitor), not the
    alphabet's, and the column is still crm.deal_lost_reason_type."""
    client = make.client()
    lead = make.lead(client, created_at=T0 - timedelta(days=60))
    for reason in ("chose_competitor", "price_too_high"):
        deal = make.deal(lead, created_at=T0 - timedelta(days=30), value=Decimal(500))
        update(db, "deals", deal["id"], closed_lost(reason) | {"closed_at": T0})
    rows = db.execute(
        "SELECT lost_reason::text, pg_typeof(lost_reason)::text"
        " FROM crm.get_lost_deal_analysis(%s, 90, %s)",
        (client["id"], T0 + timedelta(days=1)),
    ).fetchall()
    assert rows == [
        ("price_too_high", "crm.deal_lost_reason_type"),
        ("chose_competitor", "crm.deal_lost_reason_type"),
    ]


def test_a_lost_deal_is_pushed_with_its_reasons_label(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    make.crm_config(client)
    deal = make.deal(make.lead(client))
    update(db, "deals", deal["id"], closed_lost("timing_not_right"))
    push_id = db.execute(
        "SELECT max(id) FROM crm.crm_push_queue WHERE client_id = %s AND deal_id = %s",
        (client["id"], deal["id"]),
    ).fetchone()
    assert push_id is not None
    label = db.execute(
        "SELECT deal_lost_reason FROM crm.push_target(%s, %s)", (client["id"], push_id[0])
    ).fetchone()
    assert label == ("Timing not right",)


# --- Upgrading a database that has rows -------------------------------------------------------


def test_0013_keeps_every_value_and_drops_what_blocks_the_type_change(empty_db_url: str) -> None:
    """A database at 0012 with rows in every column is upgraded with its values intact. A
    function with a SQL-standard body reading a column and a trigger whose WHEN names one (as
    the code of release 0012 has: tests/migration upgrades from it) would block the type
    change: 0013 drops them, and the code files create theirs again."""
    with psycopg.connect(empty_db_url) as conn:
        schema.upgrade(conn, target="0012_deal_amounts.sql", apply_code=False)
        conn.execute(
            """
            CREATE FUNCTION crm_private.old_reader() RETURNS bigint LANGUAGE sql
            BEGIN ATOMIC
                SELECT count(*) FROM crm.deals WHERE lost_reason = 'no_decision';
            END;
            CREATE FUNCTION crm_private.old_trigger() RETURNS trigger LANGUAGE plpgsql
            AS 'BEGIN RETURN NULL; END';
            CREATE TRIGGER _600_attribution_update AFTER UPDATE ON crm.activities
            FOR EACH ROW WHEN (old.channel IS DISTINCT FROM new.channel)
            EXECUTE FUNCTION crm_private.old_trigger();
            """
        )
        conn.execute(
            """
            WITH c AS (INSERT INTO crm.clients (name) VALUES ('Old') RETURNING id),
            l AS (INSERT INTO crm.leads (client_id, email) SELECT id, 'a@b.c' FROM c
                  RETURNING client_id, id),
            a AS (INSERT INTO crm.activities (client_id, lead_id, channel)
                  SELECT client_id, id, 'linkedin' FROM l),
            m AS (INSERT INTO crm.meetings (client_id, lead_id, scheduled_at, duration_minutes,
                                            converting_channel, booked_at)
                  SELECT client_id, id, %(t0)s, 30, 'voice', %(t0)s FROM l)
            INSERT INTO crm.deals (client_id, lead_id, name, value, currency, probability,
                                   stage, won, lost_reason, first_touch_channel,
                                   converting_channel, created_at, stage_changed_at, closed_at)
            SELECT client_id, id, 'Old deal', 10, 'AUD', 0, 'closed_lost', FALSE, 'no_decision',
                   'mail', 'sms', %(t0)s, %(t0)s, %(t0)s
            FROM l
            """,
            {"t0": T0},
        )
        conn.commit()
        result = schema.upgrade(conn, target="0013_checked_vocabularies.sql")
        assert result.applied == ["0013_checked_vocabularies.sql"]
        kept = conn.execute(
            """
            SELECT a.channel, m.converting_channel, d.lost_reason, d.first_touch_channel,
                   d.converting_channel
            FROM crm.activities AS a, crm.meetings AS m, crm.deals AS d
            """
        ).fetchall()
        assert kept == [("linkedin", "voice", "no_decision", "mail", "sms")]
        assert conn.execute("SELECT to_regproc('crm_private.old_reader')").fetchone() == (None,)
        trigger = conn.execute(
            "SELECT tgfoid::regproc::text FROM pg_trigger"
            " WHERE tgrelid = 'crm.activities'::regclass AND tgname = '_600_attribution_update'"
        ).fetchall()
        assert trigger == [("crm_private.tg_activities__attribution_update",)]
        lost = conn.execute(
            "SELECT a.lost_reason::text, a.count"
            " FROM crm.clients AS c, crm.get_lost_deal_analysis(c.id, NULL, %s) AS a",
            (T0 + timedelta(days=1),),
        ).fetchall()
        assert lost == [("no_decision", 1)]


# --- The catalog: the CHECKs are the types' labels ---------------------------------------------


def check_words(db: psycopg.Connection[Any], table: str, constraint: str) -> list[str]:
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND conname = %s",
        (f"crm.{table}", constraint),
    ).fetchone()
    assert row is not None, f"no constraint {constraint} on crm.{table}"
    return re.findall(r"'([^']*)'::text", row[0])


@pytest.mark.parametrize(
    ("table", "column"), list(VOCABULARIES), ids=[f"{t}.{c}" for t, c in VOCABULARIES]
)
def test_catalog_each_check_lists_exactly_its_types_labels_in_order(
    db: psycopg.Connection[Any], table: str, column: str
) -> None:
    constraint, type_name = VOCABULARIES[(table, column)]
    assert check_words(db, table, constraint) == labels(db, type_name)
    row = db.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attname = %s",
        (f"crm.{table}", column),
    ).fetchone()
    assert row == ("text",)


def test_catalog_no_table_column_has_a_checked_vocabulary_type_any_more(
    db: psycopg.Connection[Any],
) -> None:
    """A new column of these types would fail as a bare 22P02 again: make it text with a
    CHECK and add it to VOCABULARIES."""
    rows = db.execute(
        """
        SELECT c.relname::text, a.attname::text, format_type(a.atttypid, NULL)
        FROM pg_attribute AS a
        INNER JOIN pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
          AND c.relkind IN ('r', 'p', 'v', 'm')
          AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid IN ('crm.channel_type'::regtype, 'crm.deal_lost_reason_type'::regtype)
        """
    ).fetchall()
    assert rows == []


def test_catalog_the_stage_columns_stay_the_ordered_enum(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT c.relname::text, a.attname::text
        FROM pg_attribute AS a
        INNER JOIN pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
          AND a.attnum > 0 AND NOT a.attisdropped
          AND a.atttypid = 'crm.deal_stage_type'::regtype
        ORDER BY 1, 2
        """
    ).fetchall()
    assert rows == [
        ("deal_stage_history", "from_stage"),
        ("deal_stage_history", "to_stage"),
        ("deals", "stage"),
    ]
