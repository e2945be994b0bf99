"""Soft deletes only: DELETE and TRUNCATE are refused everywhere, history is append-only,
soft-deleted rows are never pushed."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers.fixtures import T0, Make, count, raises_sqlstate
from tests.sql.test_constraints import build_graph


def tables_with(db: psycopg.Connection[Any], kind: str) -> list[str]:
    rows = db.execute(
        """
        SELECT DISTINCT c.relname
        FROM pg_trigger AS t
        INNER JOIN pg_class AS c ON c.oid = t.tgrelid
        WHERE t.tgname = '_050_refuse_delete'
          AND encode(t.tgargs, 'escape') = %s || '\\000'
        ORDER BY 1
        """,
        (kind,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_catalog_every_table_with_deleted_at_refuses_hard_deletes(
    db: psycopg.Connection[Any],
) -> None:
    with_deleted_at = db.execute(
        """
        SELECT c.relname FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'deleted_at'
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r' ORDER BY 1
        """
    ).fetchall()
    soft = set(tables_with(db, "soft"))
    assert {str(r[0]) for r in with_deleted_at} <= soft
    assert "crm_external_ids" in soft
    assert tables_with(db, "append-only") == ["deal_stage_history", "meeting_reschedules"]


SOFT_TABLES = [
    "activities", "campaigns", "client_crm_configs", "clients", "crm_external_ids",
    "crm_push_log", "deals", "leads", "meetings",
]  # fmt: skip


@pytest.mark.parametrize("table", SOFT_TABLES)
def test_delete_is_refused_with_a_hint_to_set_deleted_at(
    db: psycopg.Connection[Any], make: Make, table: str
) -> None:
    graph = build_graph(make)
    make.external_id(graph.config)
    make.push_log(graph.client)
    before = count(db, table)
    assert before > 0
    with raises_sqlstate(db, "0A000") as info:
        db.execute(sql.SQL("DELETE FROM crm.{}").format(sql.Identifier(table)))
    assert info.value.diag.message_primary == (
        f"DELETE on crm.{table} is not allowed: agency-crm only soft-deletes"
    )
    hint = info.value.diag.message_hint or ""
    if table == "crm_external_ids":  # no deleted_at: the hint says what to do instead
        assert "crm_external_ids has no deleted_at" in hint
    else:
        assert f"UPDATE crm.{table} SET deleted_at = now()" in hint
    with raises_sqlstate(db, "0A000"):
        db.execute(sql.SQL("TRUNCATE crm.{} CASCADE").format(sql.Identifier(table)))
    assert count(db, table) == before


@pytest.mark.parametrize("statement", ["UPDATE {} SET reason = 'x'", "DELETE FROM {}"])
def test_stage_history_is_append_only(
    db: psycopg.Connection[Any], make: Make, statement: str
) -> None:
    build_graph(make)
    rows = count(db, "deal_stage_history")
    assert rows > 0
    with raises_sqlstate(db, "0A000") as info:
        db.execute(statement.format("crm.deal_stage_history").encode())
    assert "append-only history" in info.value.diag.message_primary
    assert count(db, "deal_stage_history") == rows


def test_soft_deleted_rows_are_never_pushed(db: psycopg.Connection[Any], make: Make) -> None:
    client = make.client()
    make.crm_config(client)
    lead = make.lead(client)
    gone = make.meeting(lead, deleted_at=T0)
    make.deal(lead, deleted_at=T0)
    assert count(db, "crm_push_queue") == 0
    db.execute("UPDATE crm.meetings SET meeting_outcome = 'bad' WHERE id = %s", (gone["id"],))
    assert count(db, "crm_push_queue") == 0
    # A soft-deleted meeting does not mark its lead as booked either.
    row = db.execute("SELECT meeting_booked FROM crm.leads WHERE id = %s", (lead["id"],))
    assert row.fetchone() == (False,)
