"""Invariants read from pg_catalog, so new tables, constraints and functions are covered
without anyone remembering to add a test."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

# Tables of the upgrade machinery: not tenant data.
MACHINERY = ("schema_migrations", "schema_code", "schema_access")


def tenant_tables(db: psycopg.Connection[Any]) -> list[str]:
    rows = db.execute(
        """
        SELECT relname FROM pg_class
        WHERE relnamespace = 'crm'::regnamespace AND relkind = 'r'
          AND relname <> ALL (%s) AND relname <> 'clients'
        ORDER BY relname
        """,
        (list(MACHINERY),),
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_every_tenant_table_has_a_not_null_client_id_first_in_its_primary_key(
    db: psycopg.Connection[Any],
) -> None:
    tables = tenant_tables(db)
    assert len(tables) >= 10
    for table in tables:
        row = db.execute(
            """
            SELECT a.attnotnull,
                   (SELECT array_agg(k.attname ORDER BY u.ord)
                    FROM pg_constraint AS con,
                         unnest(con.conkey) WITH ORDINALITY AS u (attnum, ord)
                    INNER JOIN pg_attribute AS k ON k.attnum = u.attnum
                    WHERE con.conrelid = a.attrelid AND con.contype = 'p'
                      AND k.attrelid = a.attrelid)
            FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass('crm.' || %s) AND a.attname = 'client_id'
            """,
            (table,),
        ).fetchone()
        assert row is not None, f"crm.{table} has no client_id"
        not_null, pkey = row
        assert not_null, f"crm.{table}.client_id is nullable"
        assert pkey == ["client_id", "id"], f"crm.{table} primary key is {pkey}"


def test_every_unique_key_and_foreign_key_between_tenant_tables_includes_client_id(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT c.relname, i.relname,
               array(SELECT pg_get_indexdef(x.indexrelid, k, true)
                     FROM generate_series(1, x.indnkeyatts) AS k)
        FROM pg_index AS x
        INNER JOIN pg_class AS c ON c.oid = x.indrelid
        INNER JOIN pg_class AS i ON i.oid = x.indexrelid
        WHERE c.relnamespace = 'crm'::regnamespace AND x.indisunique
          AND c.relname <> ALL (%s) AND c.relname <> 'clients'
        """,
        (list(MACHINERY),),
    ).fetchall()
    assert rows
    for table, index, keys in rows:
        assert keys[0] == "client_id", f"unique index {index} on {table} leads with {keys}"
    fks = db.execute(
        """
        SELECT con.conname, con.confrelid::regclass::text,
               array(SELECT attname FROM pg_attribute
                     WHERE attrelid = con.conrelid AND attnum = ANY (con.conkey))
        FROM pg_constraint AS con
        WHERE con.contype = 'f' AND con.connamespace = 'crm'::regnamespace
        """
    ).fetchall()
    assert len(fks) >= 15  # the query finds them (the queue and the log have none, 0006, 0009)
    for name, target, cols in fks:
        assert "client_id" in cols, f"foreign key {name} to {target} lacks client_id: {cols}"
        if target != "crm.clients":
            assert len(cols) == 2, f"{name} should be (client_id, <ref>_id): {cols}"


def test_every_foreign_key_has_an_index_leading_with_its_columns(
    db: psycopg.Connection[Any],
) -> None:
    missing = db.execute(
        """
        SELECT con.conname
        FROM pg_constraint AS con
        WHERE con.contype = 'f' AND con.connamespace = 'crm'::regnamespace
          AND NOT EXISTS (
              SELECT 1 FROM pg_index AS x
              WHERE x.indrelid = con.conrelid
                AND (x.indkey::int2[])[0:cardinality(con.conkey) - 1] @> con.conkey
                AND (x.indkey::int2[])[0:cardinality(con.conkey) - 1] <@ con.conkey
          )
        """
    ).fetchall()
    assert missing == []


def test_every_table_column_constraint_and_unique_index_is_commented(
    db: psycopg.Connection[Any],
) -> None:
    uncommented = db.execute(
        """
        SELECT 'table ' || c.relname
        FROM pg_class AS c
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
          AND obj_description(c.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'column ' || c.relname || '.' || a.attname
        FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r' AND NOT a.attisdropped
          AND col_description(c.oid, a.attnum) IS NULL
        UNION ALL
        SELECT 'constraint ' || con.conname
        FROM pg_constraint AS con
        WHERE con.connamespace = 'crm'::regnamespace AND con.contype IN ('c', 'f', 'u', 'x')
          AND con.conrelid <> ALL (ARRAY[to_regclass('crm.schema_migrations'),
                                         to_regclass('crm.schema_code'),
                                         to_regclass('crm.schema_access')])
          AND obj_description(con.oid, 'pg_constraint') IS NULL
        UNION ALL
        SELECT 'unique index ' || i.relname
        FROM pg_index AS x
        INNER JOIN pg_class AS i ON i.oid = x.indexrelid
        WHERE i.relnamespace = 'crm'::regnamespace AND x.indisunique AND NOT x.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS con WHERE con.conindid = i.oid)
          AND obj_description(i.oid, 'pg_class') IS NULL
        UNION ALL
        SELECT 'type ' || t.typname
        FROM pg_type AS t
        WHERE t.typnamespace = 'crm'::regnamespace AND t.typtype = 'e'
          AND obj_description(t.oid, 'pg_type') IS NULL
        """
    ).fetchall()
    assert uncommented == []


def test_constraint_and_index_names_follow_the_postgres_scheme(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT c.relname, con.conname, con.contype
        FROM pg_constraint AS con
        INNER JOIN pg_class AS c ON c.oid = con.conrelid
        WHERE con.connamespace = 'crm'::regnamespace
        UNION ALL
        SELECT c.relname, i.relname, 'i'
        FROM pg_index AS x
        INNER JOIN pg_class AS c ON c.oid = x.indrelid
        INNER JOIN pg_class AS i ON i.oid = x.indexrelid
        WHERE c.relnamespace = 'crm'::regnamespace
          AND NOT EXISTS (SELECT 1 FROM pg_constraint AS con WHERE con.conindid = i.oid)
        """
    ).fetchall()
    suffix = {"p": "pkey", "f": "fkey", "u": "key", "c": "check", "x": "excl", "i": "(idx|key)"}
    suffix["n"] = "not_null"  # PostgreSQL 18 lists NOT NULL in pg_constraint
    bad = [
        (table, name)
        for table, name, kind in rows
        if not re.fullmatch(rf"{table}_([a-z0-9_]+_)?{suffix[kind]}", name)
    ]
    assert bad == []


# Each SECURITY DEFINER function runs with the owner's rights: reviewed, and listed here.
REVIEWED_DEFINERS = {
    # crm_app keeps the attribution credits through its writes, but may not delete them.
    "crm_private.refresh_deal_attribution(uuid,uuid[])",
    # crm_app fixing a config's credentials releases its held pushes (a status it may not set).
    "crm_private.tg_client_crm_configs__release_held()",
    # The API authenticates a bearer token before it knows the client (digest in, scope out).
    "crm.authenticate_api_token(bytea)",
    # The OAuth callback learns its client from the state (single use; another client's is
    # unknown to a caller acting for a client).
    "crm.consume_oauth_state(bytea,uuid)",
    # The API reads the CRM credentials of the one client of its transaction, no other.
    "crm.scoped_crm_config()",
}


def test_every_function_pins_search_path_has_a_comment_and_only_reviewed_ones_are_definer(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT p.oid::regprocedure::text, p.proconfig, p.prosecdef,
               obj_description(p.oid, 'pg_proc'),
               has_function_privilege('public', p.oid, 'EXECUTE')
        FROM pg_proc AS p
        WHERE p.pronamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
        """
    ).fetchall()
    assert rows
    definers = set()
    for signature, config, definer, comment, public in rows:
        assert config and 'search_path=""' in config, f"{signature}: search_path not pinned"
        assert comment, f"{signature} has no COMMENT"
        if definer:
            definers.add(signature)
            assert not public, f"{signature} is SECURITY DEFINER and executable by PUBLIC"
            assert "SECURITY DEFINER" in comment, f"{signature}: the comment must say why"
    assert definers == REVIEWED_DEFINERS


def test_nothing_is_executable_by_public(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT p.oid::regprocedure::text
        FROM pg_proc AS p
        WHERE p.pronamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
          AND has_function_privilege('public', p.oid, 'EXECUTE')
        """
    ).fetchall()
    # The roles of sql/access.sql are granted what they call (CHECK helpers included).
    assert [r[0] for r in rows] == []


def test_every_table_with_updated_at_maintains_it_by_trigger(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT c.relname,
               EXISTS (SELECT 1 FROM pg_trigger AS t
                       WHERE t.tgrelid = c.oid AND t.tgname = '_100_set_updated_at')
        FROM pg_class AS c
        INNER JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attname = 'updated_at'
        WHERE c.relnamespace = 'crm'::regnamespace AND c.relkind = 'r'
        """
    ).fetchall()
    assert len(rows) >= 10
    assert [table for table, has in rows if not has] == []


def test_plpgsql_check_finds_no_errors_or_warnings(db: psycopg.Connection[Any]) -> None:
    try:
        with db.transaction():
            db.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
    except psycopg.errors.UndefinedFile:
        pytest.fail(
            "plpgsql_check is not installed on the test server:"
            " apt-get install postgresql-15-plpgsql-check (bash .ci/run does it)"
        )
    functions = db.execute(
        """
        SELECT count(*) FROM pg_proc AS p
        WHERE p.pronamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
          AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
        """
    ).fetchone()
    assert functions is not None and functions[0] >= 2
    findings = db.execute(
        """
        SELECT p.oid::regprocedure::text, t.tgrelid::regclass::text, r.level, r.message,
               r.lineno
        FROM pg_proc AS p
        LEFT JOIN pg_trigger AS t ON t.tgfoid = p.oid
        CROSS JOIN LATERAL plpgsql_check_function_tb(
            p.oid,
            coalesce(t.tgrelid, 0),
            extra_warnings => true,
            oldtable => t.tgoldtable,
            newtable => t.tgnewtable
        ) AS r
        WHERE p.pronamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
          AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'plpgsql')
        """
    ).fetchall()
    assert findings == []
