"""Install and upgrade: idempotent, drift-free, refusing what must be refused, atomic."""

from __future__ import annotations

import difflib
import itertools
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from agency_crm import schema
from agency_crm.dev.generate import dump_schema, scratch_database

REPO = Path(__file__).resolve().parents[2]
REPO_SQL = REPO / "sql"


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


# --- Upgrading from the releases in git history -------------------------------------------
#
# A database left at migration step N by an older release holds that release's functions and
# triggers too. Upgrading it must end exactly where a fresh install does: a function that a
# later release deleted from sql/functions without a migration dropping it stays behind, and
# the dump comparison below shows it.


@dataclass(frozen=True)
class Release:
    """The last commit of HEAD's first-parent history whose newest migration was ``step``."""

    step: str
    commit: str
    subject: str

    def __str__(self) -> str:
        return f"{self.commit[:12]} ({self.subject})"


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def git_history_missing() -> str | None:
    """Why the repository's full git history cannot be read here; None when it can."""
    if shutil.which("git") is None:
        return "git is not installed"
    top = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != REPO:
        why = " ".join(top.stderr.split()) or f"its top level is {top.stdout.strip()}"
        return f"{REPO} is not a git checkout ({why})"
    if git("rev-parse", "--is-shallow-repository").strip() != "false":
        return "the clone is shallow (run `git fetch --unshallow`)"
    return None


def require_git_history() -> None:
    """Skip without the history, but fail under CI=true: CI must not silently skip."""
    reason = git_history_missing()
    if reason is None:
        return
    message = f"upgrading from the earlier releases needs the full git history: {reason}"
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(f"{message}; CI must run this test on a full clone", pytrace=False)
    pytest.skip(message)


def commit_adding(migration: str) -> str | None:
    """The oldest commit of HEAD's first-parent history that added ``migration``, if any."""
    path = f"sql/migrations/{migration}"
    added = git("log", "--first-parent", "--diff-filter=A", "--format=%H", "HEAD", "--", path)
    return added.split()[-1] if added.split() else None


def migrations_at(commit: str) -> list[str]:
    listing = git("ls-tree", "--name-only", commit, "--", "sql/migrations/")
    return sorted(Path(line).name for line in listing.splitlines() if line.endswith(".sql"))


def find_releases(names: list[str]) -> tuple[dict[str, Release], dict[str, str]]:
    """The release of every step but the newest (whose release is the current tree), and
    for each step without one, why it has none."""
    releases: dict[str, Release] = {}
    without: dict[str, str] = {}
    for step, successor in itertools.pairwise(names):
        step_added, successor_added = commit_adding(step), commit_adding(successor)
        if step_added is None:
            without[step] = "not committed yet"
            continue
        if successor_added == step_added:
            without[step] = f"added in {step_added[:12]} together with {successor}"
            continue
        # The parent of the commit that added the next migration; HEAD while that one is
        # not committed yet.
        last = f"{successor_added}^1" if successor_added else "HEAD"
        commit = git("rev-parse", "--verify", f"{last}^{{commit}}").strip()
        newest = migrations_at(commit)[-1:]
        assert newest == [step], (
            f"commit {commit[:12]}, before {successor} was added, should have {step} as its"
            f" newest migration, but has {newest}"
        )
        subject = git("log", "-1", "--format=%s", commit).strip()
        releases[step] = Release(step, commit, subject)
    return releases, without


def export_sql(commit: str, dest: Path) -> Path:
    """Write the sql/ tree of ``commit`` (the committed blobs, byte for byte) under ``dest``."""
    entries = [
        line.split("\t", 1) for line in git("ls-tree", "-r", "-z", commit, "--", "sql/").split("\0")
    ]
    blobs = [(meta.split()[2], path) for meta, path in (e for e in entries if len(e) == 2)]
    done = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "--batch"],
        input="".join(f"{oid}\n" for oid, _ in blobs).encode(),
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, f"git cat-file failed: {done.stderr.decode().strip()}"
    batch = done.stdout
    at = 0
    for _, path in blobs:
        header_end = batch.index(b"\n", at)
        size = int(batch[at:header_end].split()[2])
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(batch[header_end + 1 : header_end + 1 + size])
        at = header_end + 1 + size + 1
    return dest / "sql"


def release_source(release: Release, current: schema.SqlSource, tmp_path: Path) -> schema.SqlSource:
    """What a database upgraded by ``release`` holds: its migrations (which must be today's
    files, unchanged), its bootstrap, and its functions and triggers."""
    old = schema.load_source(export_sql(release.commit, tmp_path / release.commit[:12]))
    names = [m.name for m in current.migrations]
    released = [m.name for m in old.migrations]
    assert released == names[: names.index(release.step) + 1], (
        f"release {release} has the migrations {released}; today's sql/migrations has"
        f" {names[: names.index(release.step) + 1]} up to {release.step}: a database upgraded"
        " by that release must find its migrations unchanged and in the same order"
    )
    for before, now in zip(old.migrations, current.migrations, strict=False):
        # The text the checksum in crm.schema_migrations covers (line endings normalised).
        assert before.text == now.text, (
            f"migration {before.name} was edited after release {release}: databases upgraded"
            " by it hold the old text and `db upgrade` refuses them; restore the file and put"
            " the change in a new migration"
        )
    # The old bootstrap, as that release ran it: upgrade re-runs today's, which creates only
    # what is missing, so a bootstrap change that old databases would not get shows here.
    return schema.SqlSource(
        bootstrap=old.bootstrap,
        migrations=current.migrations[: len(old.migrations)],
        code=old.code,
    )


def dump_after_upgrading_from(
    server_admin_url: str, old: schema.SqlSource | None, step: str, current: schema.SqlSource
) -> str:
    """Bring a scratch database to ``step`` with ``old`` (None: today's migrations and no
    code), upgrade it to ``current`` and return its schema dump."""
    names = [m.name for m in current.migrations]
    done = names[: names.index(step) + 1]
    with scratch_database(server_admin_url) as url:
        first = upgrade(url, source=old or current, target=step, apply_code=old is not None)
        assert first.applied == done
        assert first.code_applied is (old is not None)
        if old is not None:
            assert fetch(url, "SELECT checksum FROM crm.schema_code") == [(old.code_checksum,)]
        rest = upgrade(url, source=current)
        assert rest.applied == names[len(done) :]
        assert rest.code_applied
        assert fetch(url, "SELECT checksum FROM crm.schema_code") == [(current.code_checksum,)]
        return dump_schema(url)


DUMP_OBJECT = re.compile(r"^--\n-- (Name: .*); Owner: -\n--\n", re.MULTILINE)


def dump_objects(dump: str) -> dict[str, str]:
    """A pg_dump's objects, by their header ("Name: ...; Type: ...; Schema: ...")."""
    parts = DUMP_OBJECT.split(dump)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def schema_diff(fresh: str, upgraded: str, limit: int = 60) -> list[str]:
    """How the upgraded dump differs from the fresh one, object by object: pg_dump orders
    objects by their dependencies, so one object too many can move others in a line diff."""
    before, after = dump_objects(fresh), dump_objects(upgraded)
    lines = [f"only after the upgrade: {name}" for name in after if name not in before]
    lines += [f"only in a fresh install: {name}" for name in before if name not in after]
    changed = [n for n in before if n in after and before[n] != after[n]]
    texts = [(before[n], after[n]) for n in changed] if changed or lines else [(fresh, upgraded)]
    for was, got in texts:
        lines += difflib.unified_diff(
            was.splitlines(), got.splitlines(), "fresh install", "upgraded", lineterm=""
        )
    if len(lines) > limit:
        return [*lines[:limit], f"... {len(lines) - limit} more lines"]
    return lines


def test_upgrading_from_every_earlier_migration_step_gives_the_fresh_schema(
    empty_db_url: str, server_admin_url: str, tmp_path: Path
) -> None:
    require_git_history()
    current = schema.load_source(REPO_SQL)
    upgrade(empty_db_url, source=current)
    fresh = dump_schema(empty_db_url)
    names = [m.name for m in current.migrations]
    assert len(names) >= 4
    releases, without = find_releases(names)
    # A step that no commit had as its newest migration (0001-0003: 0001-0004 were added in
    # one commit) had no release and so no code of its own: it is upgraded from its
    # migrations alone. Every other step but the newest (its release is the current tree,
    # installed fresh above) starts from its release's functions and triggers.
    assert releases, f"no step has a release in git history: {without}"
    old_code: set[str] = set()
    for step in names[:-1]:
        release = releases.get(step)
        old = None if release is None else release_source(release, current, tmp_path)
        if old is not None:
            old_code.add(old.code_checksum)
        upgraded = dump_after_upgrading_from(server_admin_url, old, step, current)
        origin = f"by release {release}" if release else f"(migrations only: {without[step]})"
        assert upgraded == fresh, (
            f"a database left at {step} {origin} and upgraded to today's sql/ differs from a"
            " fresh install (a function or trigger deleted from sql/ needs a migration that"
            " drops it):\n" + "\n".join(schema_diff(fresh, upgraded))
        )
    assert old_code - {current.code_checksum}, "every release had today's code: nothing tested"


FORGOTTEN = """\
CREATE OR REPLACE FUNCTION crm_private.forgotten_by_a_later_release()
RETURNS integer
LANGUAGE sql IMMUTABLE SET search_path = ''
RETURN 1;
"""


def test_a_function_deleted_without_a_migration_dropping_it_makes_the_upgrade_drift(
    empty_db_url: str, server_admin_url: str, sql_copy: Path
) -> None:
    # The check above, fed an "old release" that is today's sql/ plus one function file:
    # today's code lacks the file and no migration drops the function, so it must fail.
    (sql_copy / "functions" / "forgotten.sql").write_text(FORGOTTEN)
    old = schema.load_source(sql_copy)
    current = schema.load_source(REPO_SQL)
    step = current.migrations[-1].name
    upgrade(empty_db_url, source=current)
    fresh = dump_schema(empty_db_url)
    upgraded = dump_after_upgrading_from(server_admin_url, old, step, current)
    assert upgraded != fresh
    assert schema_diff(fresh, upgraded) == [
        "only after the upgrade: Name: forgotten_by_a_later_release(); Type: FUNCTION;"
        " Schema: crm_private",
        # sql/access.sql revokes every function from PUBLIC, the forgotten one too.
        "only after the upgrade: Name: FUNCTION forgotten_by_a_later_release(); Type: ACL;"
        " Schema: crm_private",
    ]
    # The migration that should have been written makes the same upgrade clean (a fresh
    # install with it dumps as `fresh`: dropping what does not exist leaves nothing behind).
    dropping = schema.SqlFile(
        f"{len(current.migrations) + 1:04d}_drop_forgotten.sql",
        "DROP FUNCTION IF EXISTS crm_private.forgotten_by_a_later_release();\n",
    )
    fixed = schema.SqlSource(
        current.bootstrap, (*current.migrations, dropping), current.code, current.access
    )
    assert dump_after_upgrading_from(server_admin_url, old, step, fixed) == fresh


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


def test_a_migration_that_cannot_get_its_lock_in_time_names_it_and_changes_nothing(
    empty_db_url: str, sql_copy: Path
) -> None:
    upgrade(empty_db_url, source=schema.load_source(sql_copy))
    (sql_copy / "migrations" / "0999_add_a_column.sql").write_text(
        "ALTER TABLE crm.meetings ADD COLUMN room text;\n"
    )
    source = schema.load_source(sql_copy)
    with psycopg.connect(empty_db_url) as app:
        app.execute("SET application_name = 'app-worker-7'")
        # An app transaction that holds crm.meetings (any lock conflicts with ALTER TABLE).
        app.execute("SELECT count(*) FROM crm.meetings")
        started = time.monotonic()
        with pytest.raises(schema.SchemaError) as info:
            upgrade(empty_db_url, source=source, lock_timeout=0.5)
        waited = time.monotonic() - started
        app.rollback()
    message = info.value.message
    assert message.startswith(
        "migration 0999_add_a_column.sql could not get a lock within 0.5 s: "
        "AccessExclusiveLock on crm.meetings, held by pid "
    ), message
    assert "app-worker-7" in message
    assert info.value.hint and "--lock-timeout" in info.value.hint
    assert 0.5 <= waited < 10
    with psycopg.connect(empty_db_url) as conn:
        assert [m.name for m in schema.status(conn, source).pending] == ["0999_add_a_column.sql"]
    assert fetch(
        empty_db_url,
        "SELECT count(*) FROM information_schema.columns WHERE column_name = 'room'",
    ) == [(0,)]
    # Once the app's transaction ended, the same upgrade goes through.
    assert upgrade(empty_db_url, source=source, lock_timeout=0.5).applied == [
        "0999_add_a_column.sql"
    ]


def test_reapplying_a_trigger_waits_for_writers_only_as_long_as_the_lock_timeout(
    empty_db_url: str,
) -> None:
    upgrade(empty_db_url)
    with psycopg.connect(empty_db_url) as app:
        client = app.execute("INSERT INTO crm.clients (name) VALUES ('c') RETURNING id").fetchone()
        assert client is not None
        app.execute(
            "INSERT INTO crm.leads (client_id, email) VALUES (%s, 'a@b.example')", (client[0],)
        )
        with pytest.raises(schema.SchemaError) as info:
            upgrade(empty_db_url, reapply_code=True, lock_timeout=0.3)
        app.rollback()
    assert "could not get a lock within 0.3 s" in info.value.message
    assert " on crm." in info.value.message
    # No lock timeout: the wait is not capped (nothing holds a lock now, so it just runs).
    assert upgrade(empty_db_url, reapply_code=True, lock_timeout=None).code_applied
