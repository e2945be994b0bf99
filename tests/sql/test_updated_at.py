"""updated_at is maintained on every update that changes a row, on every table that has it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.helpers.fixtures import T0, Make
from tests.sql.test_constraints import build_graph

# table -> (graph row, a column to change, its new value)
CHANGES = {
    "clients": ("client", "name", "Renamed"),
    "campaigns": ("campaign", "name", "Renamed"),
    "leads": ("lead", "title", "CTO"),
    "activities": ("activity", "activity_type", "call"),
    "meetings": ("meeting", "meeting_notes", "notes"),
    "deals": ("deal", "value", 1234),
    "client_crm_configs": ("config", "owner_id", "42"),
}


@pytest.mark.parametrize("table", sorted(CHANGES))
def test_updated_at_moves_on_a_change_only(
    db: psycopg.Connection[Any], make: Make, table: str
) -> None:
    attr, column, value = CHANGES[table]
    row_id = getattr(build_graph(make), attr)["id"]
    ident = sql.Identifier(table)

    def set_(col: str, val: Any) -> Any:
        query = sql.SQL("UPDATE crm.{t} SET {c} = %s WHERE id = %s RETURNING updated_at").format(
            t=ident, c=sql.Identifier(col)
        )
        row = db.execute(query, (val, row_id)).fetchone()
        assert row is not None
        return row[0]

    now = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    assert set_("updated_at", T0) == T0  # a writer's own value is kept
    assert set_("updated_at", T0) == T0  # an update that changes nothing leaves it
    assert set_(column, value) == now


def test_every_table_with_updated_at_is_covered(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT c.relname FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'updated_at'
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
        """
    ).fetchall()
    # The log, queue and id map are written by the runner; the trigger on them is the same
    # function, checked by tests/catalog.
    assert {r[0] for r in rows} - {"crm_push_log", "crm_push_queue", "crm_external_ids"} == set(
        CHANGES
    )
