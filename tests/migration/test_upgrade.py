"""Install and upgrade: idempotent, drift-free, refusing what must be refused, atomic."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agency_crm import schema
from agency_crm.devtools import dump_schema, scratch_database

REPO_SQL = Path(__file__).resolve().parents[2] / "sql"


def upgrade(url: str, **kw: Any) -> schema.UpgradeResult:
    with psycopg.connect(url) as conn:
        return schema.upgrade(conn, **kw)


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode()).fetchall()


@pytest.fixture
def sql_copy(tmp_path: Path) -> Path:
    """A private copy of sql/ that a test may edit."""
    copy = tmp_path / "sql"
    shutil.copytree(REPO_SQL, copy)
    return copy


def test_upgrade_from_empty_applies_every_migration_and_the_code(empty_db_url: str) -> None:
    names = list(schema.migration_names())
    assert names[0] == "0001_schemas_and_types.sql"
    result = upgrade(empty_db_url)
    assert result.applied == names
    assert result.code_applied
    recorded = fetch(empty_db_url, "SELECT name, checksum FROM crm.schema_migrations ORDER BY 1")
    source = schema.load_source()
    assert recorded == [(m.name, m.checksum) for m in source.migrations]
    code = fetch(empty_db_url, "SELECT checksum FROM crm.schema_code")
    assert code == [(source.code_checksum,)]


def test_a_second_upgrade_changes_nothing(empty_db_url: str) -> None:
    upgrade(empty_db_url)
    before = dump_schema(empty_db_url)
    stamps = fetch(empty_db_url, "SELECT applied_at FROM crm.schema_code")
    second = upgrade(empty_db_url)
    assert (second.applied, second.code_applied, second.changed) == ([], False, False)
    assert dump_schema(empty_db_url) == before
    assert fetch(empty_db_url, "SELECT applied_at FROM crm.schema_code") == stamps
    with psycopg.connect(empty_db_url) as conn:
        assert schema.status(conn).up_to_date


def test_upgrading_from_every_earlier_migration_step_gives_the_fresh_schema(
    empty_db_url: str, server_admin_url: str
) -> None:
    upgrade(empty_db_url)
    fresh = dump_schema(empty_db_url)
    names = list(schema.migration_names())
    assert len(names) >= 4
    for step in names[:-1]:
        # A database left at `step` by an earlier release (migrations only), upgraded now.
        with scratch_database(server_admin_url) as url:
            partial = upgrade(url, target=step, apply_code=False)
            assert partial.applied == names[: names.index(step) + 1]
            assert not partial.code_applied
            rest = upgrade(url)
            assert rest.applied == names[names.index(step) + 1 :]
            assert dump_schema(url) == fresh, f"schema drifts when upgrading from {step}"


def test_an_applied_migration_that_changed_is_refused_and_nothing_changes(
    empty_db_url: str, sql_copy: Path
) -> None:
    first = sorted((sql_copy / "migrations").iterdir())[0]
    upgrade(empty_db_url, source=schema.load_source(sql_copy))
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    (sql_copy / "migrations" / "0999_new_table.sql").write_text(
        "CREATE TABLE crm.should_not_exist (id int);\n"
    )
    with pytest.raises(schema.SchemaError) as info:
        upgrade(empty_db_url, source=schema.load_source(sql_copy))
    assert f"migration {first.name} was changed after it was applied" in info.value.message
    assert info.value.hint and "new migration" in info.value.hint
    assert fetch(empty_db_url, "SELECT to_regclass('crm.should_not_exist')") == [(None,)]
    with psycopg.connect(empty_db_url) as conn:
        state = schema.status(conn, schema.load_source(sql_copy))
    assert [m.name for m in state.problems] == [first.name]
    assert state.problems[0].state is schema.MigrationState.CHANGED
    assert [m.name for m in state.pending] == ["0999_new_table.sql"]


def test_a_database_with_a_migration_this_package_does_not_know_is_refused(
    empty_db_url: str,
) -> None:
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            """
            INSERT INTO crm.schema_migrations (name, checksum, package_version, duration_ms)
            VALUES ('9000_from_the_future.sql', repeat('a', 64), '9.0.0', 1)
            """
        )
    with pytest.raises(schema.SchemaError) as info:
        upgrade(empty_db_url)
    assert "9000_from_the_future.sql" in info.value.message
    assert info.value.hint and "newer agency-crm" in info.value.hint


def test_a_failing_migration_rolls_back_the_whole_upgrade(
    empty_db_url: str, sql_copy: Path
) -> None:
    (sql_copy / "migrations" / "0999_broken.sql").write_text(
        "CREATE TABLE crm.half_done (id int);\n\nSELEC 1;\n"
    )
    with pytest.raises(schema.SchemaError) as info:
        upgrade(empty_db_url, source=schema.load_source(sql_copy))
    assert "migration 0999_broken.sql failed at line 3" in info.value.message
    assert "42601" in info.value.message
    # Not even the earlier, valid migrations of the same upgrade stayed.
    assert fetch(empty_db_url, "SELECT to_regnamespace('crm')") == [(None,)]


def test_code_is_reapplied_when_a_function_file_changes(empty_db_url: str, sql_copy: Path) -> None:
    upgrade(empty_db_url, source=schema.load_source(sql_copy))
    trigger_file = sql_copy / "triggers" / "_common__updated_at.sql"
    trigger_file.write_text(
        trigger_file.read_text().replace(
            "'Trigger: sets updated_at", "'Trigger (edited): sets updated_at"
        )
    )
    edited = schema.load_source(sql_copy)
    with psycopg.connect(empty_db_url) as conn:
        assert not schema.status(conn, edited).code_current
        result = schema.upgrade(conn, source=edited)
        assert (result.applied, result.code_applied) == ([], True)
        assert schema.status(conn, edited).code_current
    comment = fetch(
        empty_db_url,
        "SELECT obj_description('crm_private.tg__set_updated_at'::regproc, 'pg_proc')",
    )
    assert comment[0][0].startswith("Trigger (edited)")


def test_upgrade_to_a_target_stops_there_and_rejects_unknown_targets(empty_db_url: str) -> None:
    names = list(schema.migration_names())
    result = upgrade(empty_db_url, target=names[1], apply_code=False)
    assert result.applied == names[:2]
    with psycopg.connect(empty_db_url) as conn:
        assert [m.name for m in schema.status(conn).pending] == names[2:]
    with pytest.raises(schema.SchemaError, match=r"unknown migration '0042_nope\.sql'"):
        upgrade(empty_db_url, target="0042_nope.sql")


def test_migration_files_must_be_numbered_once_each(sql_copy: Path) -> None:
    (sql_copy / "migrations" / "0001_duplicate_number.sql").write_text("SELECT 1;\n")
    with pytest.raises(schema.SchemaError, match="share number 0001"):
        schema.load_source(sql_copy)
    (sql_copy / "migrations" / "0001_duplicate_number.sql").unlink()
    (sql_copy / "migrations" / "5_Bad-Name.sql").write_text("SELECT 1;\n")
    with pytest.raises(schema.SchemaError, match=r"is not NNNN_lower_snake_case\.sql"):
        schema.load_source(sql_copy)


def test_the_repository_migrations_are_numbered_without_gaps() -> None:
    numbers = [int(name[:4]) for name in schema.migration_names()]
    assert numbers == list(range(1, len(numbers) + 1))


def test_a_crm_schema_not_created_by_agency_crm_is_refused(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE SCHEMA crm; CREATE TABLE crm.customers (id int)")
    with pytest.raises(schema.SchemaError, match="schema crm already exists"):
        upgrade(empty_db_url)
    assert fetch(empty_db_url, "SELECT to_regclass('crm.schema_migrations')") == [(None,)]


def test_an_upgrade_waits_for_a_concurrent_one_holding_the_lock(empty_db_url: str) -> None:
    messages: list[str] = []
    waiting = threading.Event()
    done: list[schema.UpgradeResult] = []

    def progress(message: str) -> None:
        messages.append(message)
        if message.startswith("waiting"):
            waiting.set()

    with psycopg.connect(empty_db_url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (schema.UPGRADE_LOCK_KEY,))
        worker = threading.Thread(
            target=lambda: done.append(upgrade(empty_db_url, progress=progress))
        )
        worker.start()
        assert waiting.wait(timeout=30), "the second upgrade did not report waiting"
        assert fetch(empty_db_url, "SELECT to_regnamespace('crm')") == [(None,)]
        holder.execute("SELECT pg_advisory_unlock(%s)", (schema.UPGRADE_LOCK_KEY,))
        worker.join(timeout=60)
    assert done and done[0].waited_for_lock and done[0].applied
    assert messages[0].startswith("waiting for another agency-crm upgrade")


def test_two_upgrades_at_once_apply_each_migration_exactly_once(empty_db_url: str) -> None:
    results: list[schema.UpgradeResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            results.append(upgrade(empty_db_url))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    applied = sorted(name for r in results for name in r.applied)
    assert applied == sorted(schema.migration_names())
    assert fetch(empty_db_url, "SELECT count(*) FROM crm.schema_migrations") == [(len(applied),)]


def test_code_files_are_applied_after_the_files_they_require(
    empty_db_url: str, sql_copy: Path
) -> None:
    functions = sql_copy / "functions"
    (functions / "aaa_caller.sql").write_text(
        "-- requires: zzz_callee.sql\n"
        "CREATE OR REPLACE FUNCTION crm_private.aaa_caller() RETURNS integer\n"
        "LANGUAGE sql STABLE SET search_path = '' BEGIN ATOMIC\n"
        "    SELECT crm_private.zzz_callee();\nEND;\n"
    )
    (functions / "zzz_callee.sql").write_text(
        "CREATE OR REPLACE FUNCTION crm_private.zzz_callee() RETURNS integer\n"
        "LANGUAGE sql IMMUTABLE SET search_path = '' RETURN 42;\n"
    )
    source = schema.load_source(sql_copy)
    names = [f.name for f in source.code]
    assert names.index("functions/zzz_callee.sql") < names.index("functions/aaa_caller.sql")
    upgrade(empty_db_url, source=source)
    assert fetch(empty_db_url, "SELECT crm_private.aaa_caller()") == [(42,)]
    (functions / "zzz_callee.sql").write_text("-- requires: aaa_caller.sql\nSELECT 1;\n")
    with pytest.raises(schema.SchemaError, match="cycle"):
        schema.load_source(sql_copy)
    (functions / "zzz_callee.sql").write_text("-- requires: nowhere.sql\nSELECT 1;\n")
    with pytest.raises(schema.SchemaError, match=r"requires nowhere\.sql"):
        schema.load_source(sql_copy)
