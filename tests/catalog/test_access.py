"""Roles, grants and row-level security, read from the system catalogs: a new table, view,
column or function is covered the day it is added (sql/access.sql, docs/security.md)."""

from __future__ import annotations

from typing import Any

import psycopg

from agency_crm import crypto, schema

SCHEMAS = "('crm'::regnamespace, 'crm_private'::regnamespace)"


def test_the_roles_exist_without_login_superuser_or_bypassrls(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT rolname, rolcanlogin, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb,
               rolreplication
        FROM pg_roles WHERE rolname = ANY (%s) ORDER BY 1
        """,
        (list(schema.ROLES),),
    ).fetchall()
    assert [r[0] for r in rows] == sorted(schema.ROLES)
    for name, *powers in rows:
        assert not any(powers), f"{name} has LOGIN, SUPERUSER, BYPASSRLS or another power"


def test_no_role_owns_anything(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        f"""
        SELECT 'relation ' || c.oid::regclass FROM pg_class AS c
        WHERE c.relnamespace IN {SCHEMAS} AND pg_get_userbyid(c.relowner) = ANY (%(roles)s)
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure FROM pg_proc AS p
        WHERE p.pronamespace IN {SCHEMAS} AND pg_get_userbyid(p.proowner) = ANY (%(roles)s)
        UNION ALL
        SELECT 'type ' || t.oid::regtype FROM pg_type AS t
        WHERE t.typnamespace IN {SCHEMAS} AND pg_get_userbyid(t.typowner) = ANY (%(roles)s)
        UNION ALL
        SELECT 'schema ' || n.nspname FROM pg_namespace AS n
        WHERE n.oid IN {SCHEMAS} AND pg_get_userbyid(n.nspowner) = ANY (%(roles)s)
        """,
        {"roles": list(schema.ROLES)},
    ).fetchall()
    assert rows == []


def test_no_role_may_delete_truncate_or_alter_any_table(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        f"""
        SELECT r.rolname, c.oid::regclass::text, p.privilege
        FROM pg_class AS c
        CROSS JOIN pg_roles AS r
        CROSS JOIN unnest(ARRAY['DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(privilege)
        WHERE c.relnamespace IN {SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm')
          AND r.rolname = ANY (%s)
          AND has_table_privilege(r.oid, c.oid, p.privilege)
        """,
        (list(schema.ROLES),),
    ).fetchall()
    assert rows == []


def test_row_level_security_is_enabled_and_forced_with_policies_on_every_tenant_table(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        f"""
        SELECT c.oid::regclass::text, c.relrowsecurity, c.relforcerowsecurity,
               ARRAY(SELECT pol.polname::text || ':' || pol.polpermissive::text || ':'
                            || pol.polcmd::text
                     FROM pg_policy AS pol WHERE pol.polrelid = c.oid ORDER BY 1)
        FROM pg_class AS c
        WHERE c.relnamespace IN {SCHEMAS} AND c.relkind IN ('r', 'p')
          AND (c.oid = 'crm.clients'::regclass
               OR EXISTS (SELECT 1 FROM pg_attribute AS a WHERE a.attrelid = c.oid
                          AND a.attname = 'client_id' AND NOT a.attisdropped))
        ORDER BY 1
        """
    ).fetchall()
    assert len(rows) >= 13
    for table, enabled, forced, policies in rows:
        assert enabled and forced, f"{table}: row-level security not enabled and forced"
        assert "agency_crm_owner:true:*" in policies, (table, policies)
        assert "agency_crm_read:true:r" in policies, (table, policies)
        # The viewer's policy is restrictive: a login that is also a member of another role
        # still sees one client only.
        assert "agency_crm_one_client:false:*" in policies, (table, policies)


def test_the_viewer_policy_names_the_setting_and_fails_closed(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        """
        SELECT pol.polrelid::regclass::text, pg_get_expr(pol.polqual, pol.polrelid),
               pol.polroles::regrole[]::text[]
        FROM pg_policy AS pol WHERE pol.polname = 'agency_crm_one_client'
        """
    ).fetchall()
    assert len(rows) >= 13
    for table, qual, roles in rows:
        assert roles == ["crm_api", "crm_client_viewer"], table
        assert "current_setting('crm.client_id'::text, true)" in qual, (table, qual)
        assert "NULLIF" in qual, (table, qual)  # '' means unset, not an error


def test_every_view_is_security_invoker(db: psycopg.Connection[Any]) -> None:
    rows = db.execute(
        f"""
        SELECT c.oid::regclass::text FROM pg_class AS c
        WHERE c.relnamespace IN {SCHEMAS} AND c.relkind IN ('v', 'm')
          AND NOT coalesce('security_invoker=true' = ANY (c.reloptions), false)
        """
    ).fetchall()
    assert rows == []


def test_the_secret_columns_are_those_crypto_encrypts_and_only_the_runner_reads_them(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        f"""
        SELECT c.relname::text, a.attname::text,
               ARRAY(SELECT r FROM unnest(%s::text[]) AS r
                     WHERE has_column_privilege(r, c.oid, a.attnum, 'SELECT') ORDER BY r),
               col_description(c.oid, a.attnum)
        FROM pg_attribute AS a
        INNER JOIN pg_class AS c ON c.oid = a.attrelid
        WHERE c.relnamespace IN {SCHEMAS} AND a.attnum > 0 AND NOT a.attisdropped
          AND col_description(c.oid, a.attnum) LIKE 'Secret%%'
        ORDER BY c.relname, a.attnum
        """,
        (list(schema.ROLES),),
    ).fetchall()
    found: dict[str, tuple[str, ...]] = {}
    for table, column, readers, comment in rows:
        if comment.startswith("Secret, encrypted."):
            found[table] = (*found.get(table, ()), column)
        else:  # a digest (API tokens, OAuth states): useless to a reader, hidden all the same
            assert comment.startswith("Secret: SHA-256 digest"), (table, column, comment)
        assert readers == ["crm_runner"], (table, column, readers)
    assert found == crypto.SECRET_COLUMNS


def test_only_app_code_and_the_runner_write_and_each_only_its_own_tables(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        f"""
        SELECT r.rolname::text, c.relname::text
        FROM pg_class AS c CROSS JOIN pg_roles AS r
        WHERE c.relnamespace IN {SCHEMAS} AND c.relkind IN ('r', 'p')
          AND r.rolname = ANY (%s)
          AND (has_any_column_privilege(r.oid, c.oid, 'INSERT')
               OR has_any_column_privilege(r.oid, c.oid, 'UPDATE'))
        ORDER BY 1, 2
        """,
        (list(schema.ROLES),),
    ).fetchall()
    writes: dict[str, set[str]] = {}
    for role, table in rows:
        writes.setdefault(role, set()).add(table)
    business = {
        "clients", "campaigns", "leads", "activities", "meetings", "deals",
        "deal_stage_history", "meeting_reschedules", "client_crm_configs",
    }  # fmt: skip
    # The app enqueues pushes through the lifecycle triggers (INSERT, and UPDATE of updated_at
    # only: see test_roles.py); the runner updates a config's status and tokens only; the API
    # writes its client's config, OAuth flows, the log of its CRM calls, backfilled and skipped
    # pushes.
    assert writes == {
        "crm_api": {"client_crm_configs", "crm_push_log", "crm_push_queue", "oauth_states"},
        "crm_app": business | {"crm_push_queue"},
        "crm_runner": {"crm_push_queue", "crm_external_ids", "crm_push_log", "client_crm_configs"},
    }


def test_every_public_function_is_granted_to_some_role_and_the_analytics_to_the_readers(
    db: psycopg.Connection[Any],
) -> None:
    rows = db.execute(
        """
        SELECT p.proname::text,
               ARRAY(SELECT r FROM unnest(%s::text[]) AS r
                     WHERE has_function_privilege(r, p.oid, 'EXECUTE') ORDER BY r)
        FROM pg_proc AS p WHERE p.pronamespace = 'crm'::regnamespace
        """,
        (list(schema.ROLES),),
    ).fetchall()
    assert len(rows) >= 20
    for name, roles in rows:
        assert roles, f"crm.{name} is granted to no role"
        if name.startswith("get_"):
            assert roles == ["crm_analyst", "crm_api", "crm_app", "crm_client_viewer"], (
                name,
                roles,
            )
