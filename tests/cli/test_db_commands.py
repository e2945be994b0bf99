"""`agency-crm db upgrade` and `db status`, run as a user runs them: a real process."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import conninfo

from agency_crm import schema
from tests.helpers.cli import run

MIGRATIONS = list(schema.migration_names())


def test_upgrade_twice_on_an_empty_database_the_second_is_a_no_op(empty_db_url: str) -> None:
    first = run("db", "upgrade", env={"DATABASE_URL": empty_db_url})
    assert first.returncode == 0, first.stderr
    assert "applied migration 0001_schemas_and_types.sql" in first.stdout
    n = len(MIGRATIONS)
    assert f"upgraded: {n} migration(s) applied now, {n} in all" in first.stdout
    second = run("db", "upgrade", env={"DATABASE_URL": empty_db_url})
    assert second.returncode == 0, second.stderr
    assert "applied migration" not in second.stdout
    assert f"already up to date: {n} migration(s) applied" in second.stdout
    assert "nothing changed" in second.stdout


def test_status_lists_pending_then_applied(empty_db_url: str) -> None:
    before = run("db", "status", "--json", "--database-url", empty_db_url)
    assert before.returncode == 0, before.stderr
    state = json.loads(before.stdout)
    assert {m["state"] for m in state["migrations"]} == {"pending"}
    assert state["up_to_date"] is False
    assert run("db", "status", "--check", "--database-url", empty_db_url).returncode == 3

    assert run("db", "upgrade", "--database-url", empty_db_url).returncode == 0
    after = run("db", "status", "--database-url", empty_db_url)
    assert after.returncode == 0
    assert f"applied  {MIGRATIONS[-1]} " in after.stdout
    assert "functions and triggers: current" in after.stdout
    assert after.stdout.rstrip().endswith("up to date")
    assert run("db", "status", "--check", "--database-url", empty_db_url).returncode == 0


def test_upgrade_json_output(empty_db_url: str) -> None:
    done = run("db", "upgrade", "--json", env={"AGENCY_CRM_DATABASE_URL": empty_db_url})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["applied"][0] == "0001_schemas_and_types.sql"
    assert report["code_applied"] is True and report["up_to_date"] is True


def test_libpq_environment_variables_are_the_fallback(empty_db_url: str) -> None:
    params: dict[str, Any] = conninfo.conninfo_to_dict(empty_db_url)
    env = {
        "PGHOST": str(params["host"]),
        "PGPORT": str(params["port"]),
        "PGUSER": str(params["user"]),
        "PGDATABASE": str(params["dbname"]),
    }
    done = run("db", "upgrade", env=env)
    assert done.returncode == 0, done.stderr
    assert f"/{params['dbname']}" in done.stdout


def test_unreachable_database_is_one_line_without_the_password() -> None:
    url = "postgresql://agency:s3cret-canary@127.0.0.1:1/nowhere"
    done = run("db", "upgrade", "--database-url", url)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agency-crm: error: cannot connect to agency@127.0.0.1:1/nowhere")
    assert "hint:" in lines[0]
    assert "s3cret-canary" not in done.stderr


def test_a_refused_upgrade_is_one_line_with_a_hint_and_exit_1(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE SCHEMA crm; CREATE TABLE crm.customers (id int)")
    done = run("db", "upgrade", "--database-url", empty_db_url)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "schema crm already exists and was not created by agency-crm" in done.stderr
    assert "(hint: " in done.stderr


def test_help_names_the_environment_variables() -> None:
    done = run("db", "upgrade", "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0
    assert "AGENCY_CRM_DATABASE_URL" in done.stdout and "DATABASE_URL" in done.stdout


def test_version() -> None:
    from agency_crm import __version__

    done = run("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"agency-crm {__version__}")
