"""The schema stays ready for Citus: docs/scaling.md's table map, SQL block, function and trigger
tables hold against the catalog (tests/catalog/colocation.py says exactly what is checked), and
the lint reports each way of breaking co-location by name."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from tests.catalog import colocation
from tests.catalog.colocation import Declarations, TableDecl

DOC_TEXT = colocation.DOC.read_text()


@pytest.fixture
def declared() -> Declarations:
    return colocation.read_declarations(DOC_TEXT)


def with_tables(declared: Declarations, *tables: TableDecl) -> Declarations:
    return Declarations(
        {**declared.tables, **{t.table: t for t in tables}},
        dict(declared.functions),
        dict(declared.triggers),
    )


def keys(conn: psycopg.Connection[Any], declared: Declarations) -> list[str]:
    return colocation.key_findings(colocation.read_catalog(conn), declared.tables)


def test_docs_scaling_md_holds_against_the_catalog(db: psycopg.Connection[Any]) -> None:
    findings = colocation.lint(db)
    assert findings == [], "docs/scaling.md and the schema disagree:\n" + colocation.numbered(
        findings
    )


def test_the_declarations_cover_what_they_should(declared: Declarations) -> None:
    # The parser reads what the page shows: a broken table would silently check nothing.
    kinds = {d.table: d.kind for d in declared.tables.values()}
    assert kinds["crm.crm_push_queue"] == "distributed"
    assert kinds["crm.clients"] == "reference"
    assert kinds["crm.schema_migrations"] == "local"
    assert declared.tables["crm.leads"].column == "client_id"
    assert declared.functions["crm.claim_pushes"] == "single-shard"
    assert declared.functions["crm.save_crm_connection"] == "change"
    assert declared.triggers["crm_private.tg__set_updated_at"] == "unchanged"
    assert declared.triggers["crm_private.tg_meetings__after_insert"] == "change"
    assert declared.problems == []


def test_the_claim_is_single_shard_by_the_lints_reading(db: psycopg.Connection[Any]) -> None:
    catalog = colocation.read_catalog(db)
    linter = colocation.Linter(catalog, colocation.read_declarations(DOC_TEXT).tables)
    [claim] = catalog.functions["crm.claim_pushes"]
    result = linter.shard_local(claim)
    assert result.touches and result.reasons == []
    # It did read them: the three statements on the queue, under four aliases, all tied.
    body = colocation.normalise(claim)
    queue_refs = [
        ref
        for statement in body.split(";")
        for ref in colocation.references(statement)
        if ref.table == "crm.crm_push_queue"
    ]
    assert {ref.alias for ref in queue_refs} == {"q", "p", "u", "e"}
    assert "for update of q skip locked" in body


# --- the lint fails when it should ---------------------------------------------------------------


def test_an_undeclared_table_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(
        "CREATE TABLE crm.scratch (client_id uuid NOT NULL, id uuid, PRIMARY KEY (client_id, id))"
    )
    found = keys(db, declared)
    assert len(found) == 1
    assert found[0].startswith("crm.scratch is in no row of docs/scaling.md's table map")


def test_a_declared_table_that_is_gone_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    ghost = TableDecl("crm.ghost", "reference", None)
    assert keys(db, with_tables(declared, ghost)) == [
        "docs/scaling.md's table map lists crm.ghost, which does not exist: drop the row"
    ]


def test_a_distributed_table_without_its_column_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute("CREATE TABLE crm.scratch (id uuid PRIMARY KEY)")
    found = keys(db, with_tables(declared, TableDecl("crm.scratch", "distributed", "client_id")))
    assert found[0] == (
        "crm.scratch has no column client_id, its declared distribution column: add client_id"
        " (the tenant, NOT NULL, in every key) or declare the table reference"
    )
    # and its primary key, which then cannot include it either
    assert len(found) == 2 and found[1].startswith("primary key scratch_pkey on crm.scratch")


def test_a_nullable_distribution_column_and_a_missing_primary_key_are_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute("CREATE TABLE crm.scratch (client_id uuid, id uuid)")
    found = keys(db, with_tables(declared, TableDecl("crm.scratch", "distributed", "client_id")))
    assert len(found) == 2
    assert found[0].startswith("crm.scratch.client_id is nullable")
    assert found[1].startswith("crm.scratch has no primary key")


@pytest.mark.parametrize(
    ("ddl", "what", "name"),
    [
        ("PRIMARY KEY (id)", "primary key", "scratch_pkey"),
        ("PRIMARY KEY (client_id, id), UNIQUE (email)", "unique constraint", "scratch_email_key"),
    ],
)
def test_a_key_without_the_distribution_column_is_reported(
    db: psycopg.Connection[Any], declared: Declarations, ddl: str, what: str, name: str
) -> None:
    db.execute(f"CREATE TABLE crm.scratch (client_id uuid NOT NULL, id uuid, email text, {ddl})")
    found = keys(db, with_tables(declared, TableDecl("crm.scratch", "distributed", "client_id")))
    assert len(found) == 1
    assert found[0].startswith(
        f"{what} {name} on crm.scratch does not include the distribution column client_id"
    )
    assert "put client_id first in it" in found[0]


def test_a_unique_index_without_the_distribution_column_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    # On an existing tenant table: a global unique email would be an index Citus refuses.
    db.execute("CREATE UNIQUE INDEX leads_email_key ON crm.leads (lower(email))")
    [found] = keys(db, declared)
    assert found.startswith(
        "unique index leads_email_key on crm.leads does not include the distribution column"
        " client_id (CREATE UNIQUE INDEX leads_email_key ON crm.leads USING btree (lower(email)))"
    )
    assert "(client_id, <expression>)" in found


def test_a_foreign_key_that_does_not_map_the_distribution_column_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    # The lead is named with another client's id: the two rows may be on different nodes.
    db.execute(
        """
        CREATE TABLE crm.scratch (
            client_id uuid NOT NULL, id uuid, lead_client_id uuid, lead_id uuid,
            PRIMARY KEY (client_id, id),
            CONSTRAINT scratch_lead_fkey FOREIGN KEY (lead_client_id, lead_id)
                REFERENCES crm.leads (client_id, id)
        )
        """
    )
    [found] = keys(db, with_tables(declared, TableDecl("crm.scratch", "distributed", "client_id")))
    assert found.startswith(
        "foreign key scratch_lead_fkey from crm.scratch to crm.leads (lead_client_id, lead_id) ->"
        " (client_id, id) does not map client_id to client_id"
    )
    assert "make it (client_id, ...) REFERENCES crm.leads (client_id, ...)" in found


def test_a_reference_table_pointing_at_a_distributed_one_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(
        """
        CREATE TABLE crm.scratch (
            id uuid PRIMARY KEY, client_id uuid, lead_id uuid,
            CONSTRAINT scratch_lead_fkey FOREIGN KEY (client_id, lead_id)
                REFERENCES crm.leads (client_id, id)
        )
        """
    )
    [found] = keys(db, with_tables(declared, TableDecl("crm.scratch", "reference", None)))
    assert found.startswith(
        "foreign key scratch_lead_fkey from crm.scratch to crm.leads: a reference table may not"
        " reference a distributed table"
    )


def test_a_small_identity_column_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(
        "CREATE TABLE crm.scratch (client_id uuid NOT NULL, id integer GENERATED ALWAYS AS"
        " IDENTITY, PRIMARY KEY (client_id, id))"
    )
    found = keys(db, with_tables(declared, TableDecl("crm.scratch", "distributed", "client_id")))
    assert found == [
        "crm.scratch.id is a integer identity or serial column: on Citus only bigint ones can be"
        " filled on every node; make it bigint"
    ]


def test_a_function_reading_a_local_table_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(
        """
        CREATE FUNCTION crm.scratch_version() RETURNS text LANGUAGE sql STABLE
        SET search_path = '' RETURN (SELECT max(name) FROM crm.schema_migrations)
        """
    )
    [found] = keys(db, declared)
    assert found.startswith("crm.scratch_version() reads crm.schema_migrations, which is local")


# Functions: the textual reading.

CLIENT_FUNCTION = """
CREATE FUNCTION crm.scratch_touch(p_client_id uuid, p_push_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
    {body}
END;
$$
"""


def function_findings(
    conn: psycopg.Connection[Any], declared: Declarations, body: str
) -> list[str]:
    conn.execute(CLIENT_FUNCTION.format(body=body))
    declared.functions["crm.scratch_touch"] = "single-shard"
    found = colocation.function_findings(colocation.read_catalog(conn), declared)
    return [f for f in found if "scratch_touch" in f]


@pytest.mark.parametrize(
    "body",
    [
        "UPDATE crm.crm_push_queue AS q SET attempts = 0"
        " WHERE q.client_id = p_client_id AND q.id = p_push_id;",
        # tied through a join on client_id, and through a CTE
        "UPDATE crm.crm_push_queue AS q SET attempts = 0 FROM crm.client_crm_configs AS cfg"
        " WHERE cfg.client_id = p_client_id AND q.client_id = cfg.client_id AND q.id = p_push_id;",
        "WITH due AS (SELECT q.client_id, q.id FROM crm.crm_push_queue AS q"
        " WHERE q.client_id = p_client_id) UPDATE crm.crm_push_queue AS u SET attempts = 0"
        " FROM due AS d WHERE u.client_id = d.client_id AND u.id = d.id;",
        "INSERT INTO crm.crm_push_log (client_id, push_id, operation, status)"
        " VALUES (p_client_id, p_push_id, 'noop', 'skipped');",
        "PERFORM crm.hold_pushes(p_client_id, 'paused');",
    ],
)
def test_a_function_confined_to_its_client_passes(
    db: psycopg.Connection[Any], declared: Declarations, body: str
) -> None:
    assert function_findings(db, declared, body) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "UPDATE crm.crm_push_queue AS q SET attempts = 0 WHERE q.id = p_push_id;",
            "reads crm.crm_push_queue (as q) without tying q.client_id to p_client_id",
        ),
        (
            "UPDATE crm.crm_push_queue AS q SET attempts = 0"
            " WHERE (p_client_id IS NULL OR q.client_id = p_client_id);",
            "a NULL p_client_id means every client",
        ),
        (
            "INSERT INTO crm.crm_push_log (client_id, push_id, operation, status)"
            " SELECT q.client_id, q.id, 'noop', 'skipped' FROM crm.crm_push_queue AS q;",
            "inserts into crm.crm_push_log a client_id that is not p_client_id",
        ),
        (
            "UPDATE crm.clients AS c SET name = 'x' WHERE c.id = p_client_id;",
            "writes the reference table crm.clients",
        ),
        (
            "PERFORM crm.hold_pushes(gen_random_uuid(), 'paused');",
            "calls crm.hold_pushes(uuid,text) with gen_random_uuid() first, not p_client_id",
        ),
        (
            "PERFORM crm_private.lock_leads(ARRAY[p_client_id], ARRAY[p_client_id]);",
            "calls crm_private.lock_leads(uuid[],uuid[]), which cannot run on one shard",
        ),
        (
            "PERFORM pg_catalog.current_setting('crm.client_id', true);",
            "reads the setting crm.client_id",
        ),
        ("PERFORM pg_catalog.pg_notify('x', 'y');", "sends NOTIFY"),
    ],
)
def test_a_function_that_reaches_past_its_client_is_reported(
    db: psycopg.Connection[Any], declared: Declarations, body: str, expected: str
) -> None:
    found = function_findings(db, declared, body)
    assert found, "nothing reported"
    assert all(f.startswith("crm.scratch_touch(uuid,bigint)") for f in found), found
    assert any(expected in f for f in found), found


def test_a_single_shard_function_must_take_the_client_first(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(
        "CREATE FUNCTION crm.scratch_touch(p_push_id bigint, p_client_id uuid) RETURNS void"
        " LANGUAGE sql SET search_path = '' RETURN NULL"
    )
    declared.functions["crm.scratch_touch"] = "single-shard"
    found = colocation.function_findings(colocation.read_catalog(db), declared)
    assert found == [
        "crm.scratch_touch(bigint,uuid) is declared single-shard but does not take p_client_id"
        " uuid first: Citus routes a delegated call by that argument"
    ]


def test_a_function_taking_the_client_first_must_be_declared(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    db.execute(CLIENT_FUNCTION.format(body="NULL;"))
    found = colocation.function_findings(colocation.read_catalog(db), declared)
    assert len(found) == 1
    assert found[0].startswith(
        "crm.scratch_touch takes p_client_id first but is in no row of docs/scaling.md's"
        " function table"
    )


# Triggers.


def trigger_findings(
    conn: psycopg.Connection[Any], declared: Declarations, body: str, level: str
) -> list[str]:
    conn.execute(
        f"""
        CREATE FUNCTION crm_private.tg_scratch() RETURNS trigger LANGUAGE plpgsql
        SET search_path = '' AS $$ BEGIN {body} RETURN NULL; END; $$
        """
    )
    transition = "REFERENCING NEW TABLE AS new_rows" if level == "STATEMENT" else ""
    conn.execute(
        f"CREATE TRIGGER _700_scratch AFTER INSERT ON crm.campaigns {transition}"
        f" FOR EACH {level} EXECUTE FUNCTION crm_private.tg_scratch()"
    )
    declared.triggers["crm_private.tg_scratch"] = "unchanged"
    found = colocation.trigger_findings(colocation.read_catalog(conn), declared)
    return [f for f in found if "tg_scratch" in f]


def test_a_row_trigger_confined_to_its_row_passes(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    body = "UPDATE crm.leads AS l SET status = 'new' WHERE l.client_id = NEW.client_id;"
    assert trigger_findings(db, declared, body, "ROW") == []


def test_a_row_trigger_that_reaches_another_client_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    body = "UPDATE crm.leads AS l SET status = 'new' WHERE l.campaign_id = NEW.id;"
    [found] = trigger_findings(db, declared, body, "ROW")
    assert found.startswith("crm_private.tg_scratch (_700_scratch on crm.campaigns): ")
    assert (
        "reads crm.leads (as l) without tying l.client_id to new.client_id or old.client_id"
        in found
    )


def test_a_statement_trigger_touching_tenant_tables_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    body = (
        "UPDATE crm.leads AS l SET status = 'new' FROM new_rows AS n"
        " WHERE l.client_id = n.client_id;"
    )
    found = trigger_findings(db, declared, body, "STATEMENT")
    assert any(
        "is a statement-level trigger that reads or writes distributed tables" in f for f in found
    )


def test_an_undeclared_trigger_function_is_reported(
    db: psycopg.Connection[Any], declared: Declarations
) -> None:
    trigger_findings(db, declared, "NULL;", "ROW")
    del declared.triggers["crm_private.tg_scratch"]
    found = colocation.trigger_findings(colocation.read_catalog(db), declared)
    assert found == [
        "trigger function crm_private.tg_scratch (on crm.campaigns (_700_scratch)) is in no row"
        " of docs/scaling.md's trigger table: say whether it runs unchanged on a shard or needs"
        " a change, and why"
    ]


# The page itself.


def test_a_malformed_row_is_reported() -> None:
    text = DOC_TEXT.replace(
        "| `crm.meetings` | distributed | `client_id` |",
        "| `crm.meetings` | sharded | `client_id` |",
    )
    assert text != DOC_TEXT
    [problem] = colocation.read_declarations(text).problems
    assert problem.startswith("table map row ['`crm.meetings`', 'sharded'")


def test_the_sql_block_must_match_the_map(db: psycopg.Connection[Any]) -> None:
    def findings(text: str) -> list[str]:
        declared = colocation.read_declarations(text)
        return colocation.distribute_findings(text, colocation.read_catalog(db), declared)

    assert findings(DOC_TEXT) == []
    missing = re.sub(r"SELECT create_distributed_table\('crm\.deals'.*\n", "", DOC_TEXT)
    assert findings(missing) == [
        "the SQL block of docs/scaling.md lacks SELECT create_distributed_table('crm.deals',"
        " 'client_id', colocate_with => ...)"
    ]
    elsewhere = DOC_TEXT.replace(
        "('crm.deals', 'client_id', colocate_with => 'crm.campaigns')",
        "('crm.deals', 'client_id', colocate_with => 'none')",
    )
    assert findings(elsewhere) == [
        "the SQL block distributes crm.deals with colocate_with => 'none': use 'crm.campaigns',"
        " so every tenant table is in one co-location group"
    ]
    delegated = DOC_TEXT.replace(
        "create_distributed_function('crm.hold_pushes(uuid,text)'",
        "create_distributed_function('crm.disconnect_crm(uuid,text)'",
    )
    assert findings(delegated) == [
        "the SQL block delegates crm.disconnect_crm(uuid,text), which the function table does"
        " not mark single-shard: a delegated function must name its client in every statement"
    ]
