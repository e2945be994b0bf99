"""Install and upgrade the agency-crm schema.

Tables are state: they change only through the numbered files of ``sql/migrations/``, each
applied once and recorded with its checksum in ``crm.schema_migrations``. Functions and
triggers are code: every file of ``sql/functions/`` and ``sql/triggers/`` is re-applied
(``CREATE OR REPLACE``) whenever it changed or a migration ran. One upgrade runs in one
transaction under an advisory lock, so it either applies everything or nothing and two
upgrades never interleave.
"""

from __future__ import annotations

import enum
import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import psycopg
from psycopg import sql

from agency_crm import __version__
from agency_crm.errors import AgencyCrmError

MIGRATION_NAME = re.compile(r"^(?P<number>[0-9]{4})_[a-z0-9_]+\.sql$")
# A code file that needs another created first (a LANGUAGE sql BEGIN ATOMIC body is checked
# when created) says so in a comment line: "-- requires: get_channel_revenue_attribution.sql".
REQUIRES = re.compile(r"^-- requires: (?P<names>.+)$", re.MULTILINE)
CODE_DIRS = ("functions", "triggers")
# The roles agency-crm grants (sql/access.sql, docs/security.md), with what each is for.
ROLES: dict[str, str] = {
    "crm_app": "agency-crm app code: reads and writes business rows, no DELETE, no secrets",
    "crm_analyst": "agency-crm analysts: read every client's rows (no secrets), call analytics",
    "crm_runner": "agency-crm push drainer: reads configs and secrets, writes the push queue, "
    "the CRM id map, the push log and config status",
    "crm_client_viewer": "agency-crm client dashboard: read-only, the one client named by "
    "the setting crm.client_id",
    "crm_api": "agency-crm HTTP API: the one client of each request (crm.client_id); connects, "
    "configures and disconnects its CRM",
}
# pg_advisory_xact_lock key shared by every agency-crm upgrade: "acrm" as an int32.
UPGRADE_LOCK_KEY = 0x6163726D
# Seconds a migration (or a trigger being re-created) waits for a table lock before the
# upgrade gives up, so a deploy never stalls the app's writes queued behind it for long.
DEFAULT_LOCK_TIMEOUT = 5.0


class SchemaError(AgencyCrmError):
    """The schema cannot be upgraded as asked; nothing was changed."""


@dataclass(frozen=True)
class SqlFile:
    """One SQL file of the package, with the checksum of its text."""

    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class SqlSource:
    """The package's SQL: bootstrap, ordered migrations and code files."""

    bootstrap: SqlFile
    migrations: tuple[SqlFile, ...]
    code: tuple[SqlFile, ...]
    # sql/access.sql: the grants and row-level security (None: a release before them).
    access: SqlFile | None = None

    @property
    def code_checksum(self) -> str:
        digest = hashlib.sha256()
        for item in self.code:
            digest.update(f"{item.name}\0{item.checksum}\0".encode())
        return digest.hexdigest()

    def migration(self, name: str) -> SqlFile:
        for item in self.migrations:
            if item.name == name:
                return item
        raise SchemaError(
            f"unknown migration {name!r}",
            hint="Run `agency-crm db status` to list the migrations this version knows.",
        )


class MigrationState(enum.StrEnum):
    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class MigrationStatus:
    name: str
    state: MigrationState
    applied_at: str | None = None
    package_version: str | None = None


@dataclass(frozen=True)
class Status:
    """What `db status` reports: each migration's state, whether the code is current, and
    the roles: those missing, and whether the grants are current for those that exist."""

    migrations: tuple[MigrationStatus, ...]
    code_current: bool
    code_applied_at: str | None
    missing_roles: tuple[str, ...] = ()
    access_current: bool = True

    @property
    def pending(self) -> tuple[MigrationStatus, ...]:
        return tuple(m for m in self.migrations if m.state is MigrationState.PENDING)

    @property
    def problems(self) -> tuple[MigrationStatus, ...]:
        bad = (MigrationState.CHANGED, MigrationState.UNKNOWN)
        return tuple(m for m in self.migrations if m.state in bad)

    @property
    def up_to_date(self) -> bool:
        return not self.pending and not self.problems and self.code_current


@dataclass
class UpgradeResult:
    applied: list[str] = field(default_factory=list)
    code_applied: bool = False
    code_checksum: str = ""
    waited_for_lock: bool = False
    created_roles: list[str] = field(default_factory=list)
    # Roles that do not exist and this login may not create (no CREATEROLE).
    missing_roles: list[str] = field(default_factory=list)
    access_applied: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.applied) or self.code_applied or self.access_applied


def create_roles_sql(roles: Iterable[str]) -> str:
    """The statements an administrator runs to create missing roles."""
    return "\n".join(f"CREATE ROLE {role} NOLOGIN;" for role in roles)


Progress = Callable[[str], None]


def _quiet(_message: str) -> None:
    """Default progress callback: say nothing."""


def _read(item: Traversable) -> SqlFile:
    # Normalise line endings so a checkout with CRLF does not look like a changed file.
    text = item.read_text(encoding="utf-8").replace("\r\n", "\n")
    return SqlFile(name=item.name, text=text)


def default_sql_dir() -> Traversable:
    """The SQL shipped with the package (wheel), or the repository's sql/ (editable install)."""
    packaged = resources.files("agency_crm").joinpath("sql")
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "sql"
    if repo.is_dir():
        return repo
    raise SchemaError(
        "cannot find the package's sql/ directory",
        hint="Reinstall agency-crm; the wheel ships its SQL under agency_crm/sql.",
    )


def load_source(sql_dir: Traversable | Path | None = None) -> SqlSource:
    """Read bootstrap, migrations and code from ``sql_dir`` (default: the package's)."""
    root: Traversable = default_sql_dir() if sql_dir is None else sql_dir
    migrations_dir = root.joinpath("migrations")
    migrations: list[SqlFile] = []
    numbers: dict[str, str] = {}
    for item in sorted(migrations_dir.iterdir(), key=lambda t: t.name):
        if not item.name.endswith(".sql"):
            continue
        match = MIGRATION_NAME.match(item.name)
        if match is None:
            raise SchemaError(
                f"migration file name {item.name!r} is not NNNN_lower_snake_case.sql",
                hint="Rename the file, e.g. 0005_add_meeting_reschedules.sql.",
            )
        number = match["number"]
        if number in numbers:
            raise SchemaError(
                f"migrations {numbers[number]!r} and {item.name!r} share number {number}",
                hint="Give every migration its own four-digit number.",
            )
        numbers[number] = item.name
        migrations.append(_read(item))
    code: list[SqlFile] = []
    for sub in CODE_DIRS:
        directory = root.joinpath(sub)
        if not directory.is_dir():
            continue
        files = sorted(
            (i for i in directory.iterdir() if i.name.endswith(".sql")), key=lambda t: t.name
        )
        code.extend(SqlFile(name=f"{sub}/{f.name}", text=_read(f).text) for f in files)
    return SqlSource(
        bootstrap=_read(root.joinpath("bootstrap.sql")),
        migrations=tuple(migrations),
        code=_dependency_order(code),
        access=_read(access) if (access := root.joinpath("access.sql")).is_file() else None,
    )


def _dependency_order(files: list[SqlFile]) -> tuple[SqlFile, ...]:
    """Code files in name order (functions/ before triggers/), except that a file comes after
    the files its "-- requires:" lines name."""
    by_name = {f.name: f for f in files}

    def resolve(requirer: SqlFile, name: str) -> str:
        for candidate in (name, *(f"{sub}/{name}" for sub in CODE_DIRS)):
            if candidate in by_name:
                return candidate
        raise SchemaError(
            f"{requirer.name} requires {name}, which is not a file of sql/functions or"
            " sql/triggers",
            hint="Fix the name in its '-- requires:' line.",
        )

    needs = {
        f.name: [
            resolve(f, n.strip())
            for m in REQUIRES.finditer(f.text)
            for n in m["names"].split(",")
            if n.strip()
        ]
        for f in files
    }
    ordered: list[SqlFile] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in placed:
            return
        if name in visiting:
            raise SchemaError(
                f"code files require each other in a cycle through {name}",
                hint="Break the cycle: one of the functions must not need the other at create.",
            )
        visiting.add(name)
        for required in needs[name]:
            place(required)
        visiting.discard(name)
        placed.add(name)
        ordered.append(by_name[name])

    for f in files:
        place(f.name)
    return tuple(ordered)


class LockWatch:
    """Notes which lock the upgrade's backend is waiting for, so that a lock timeout can say
    which table and which sessions held it (the error itself names neither). Polls from a
    side connection only while a wait lasts longer than one poll interval."""

    QUERY = """
        SELECT
            l.mode,
            coalesce(l.relation::regclass::text, l.locktype) AS object,
            (
                SELECT string_agg(
                    format(
                        'pid %%s (%%s, %%s since %%s)',
                        a.pid,
                        coalesce(nullif(a.application_name, ''), 'no application_name'),
                        a.state,
                        to_char(a.state_change, 'HH24:MI:SS')
                    ),
                    '; '
                )
                FROM pg_catalog.pg_stat_activity AS a
                WHERE a.pid = ANY(pg_catalog.pg_blocking_pids(l.pid))
            ) AS holders
        FROM pg_catalog.pg_locks AS l
        WHERE l.pid = %(pid)s AND NOT l.granted
    """

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]], timeout: float) -> None:
        self.conn = conn
        self.timeout = timeout
        self.interval = min(0.25, max(timeout / 4, 0.01))
        self.waiting: str | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        """Watch while the block runs (one file of the upgrade)."""
        self.waiting = None
        stop = threading.Event()
        thread = threading.Thread(target=self._watch, args=(stop,), name="lock-watch")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def _watch(self, stop: threading.Event) -> None:
        info = self.conn.info
        pid = info.backend_pid
        side: psycopg.Connection[tuple[object, ...]] | None = None
        try:
            while not stop.wait(self.interval):
                if side is None:
                    side = psycopg.connect(
                        info.dsn, password=info.password, autocommit=True, connect_timeout=5
                    )
                row = side.execute(self.QUERY, {"pid": pid}).fetchone()
                if row is not None:
                    mode, obj, holders = row
                    self.waiting = f"{mode} on {obj}, held by {holders or 'another session'}"
        except psycopg.Error:
            return  # best effort: the error message then says less
        finally:
            if side is not None:
                side.close()


def _execute_file(
    conn: psycopg.Connection[tuple[object, ...]],
    item: SqlFile,
    what: str,
    watch: LockWatch | None = None,
) -> None:
    """Run a whole SQL file (simple query protocol) and name the file in any error."""
    try:
        # bytes: the text is our own file, not a query assembled from input.
        conn.execute(item.text.encode())
    except psycopg.errors.LockNotAvailable as exc:
        within = f" within {watch.timeout:g} s" if watch else ""
        raise SchemaError(
            f"{what} {item.name} could not get a lock{within}:"
            f" {(watch.waiting if watch else None) or exc.diag.message_primary}",
            hint="Nothing was applied. Run the upgrade again when those transactions have"
            " ended (or end them); --lock-timeout sets how long it waits for a lock.",
        ) from exc
    except psycopg.Error as exc:
        diag = exc.diag
        where = ""
        if diag.statement_position:
            line = item.text.count("\n", 0, int(diag.statement_position) - 1) + 1
            where = f" at line {line}"
        raise SchemaError(
            f"{what} {item.name} failed{where}: {diag.message_primary or exc}"
            f" (SQLSTATE {exc.sqlstate})",
            hint=diag.message_hint
            or "Nothing was applied: the upgrade runs in one transaction and was rolled back.",
        ) from exc


def _run_file(
    conn: psycopg.Connection[tuple[object, ...]],
    item: SqlFile,
    what: str,
    watch: LockWatch | None,
) -> None:
    """_execute_file, with the lock watch running while the file does."""
    if watch is None:
        _execute_file(conn, item, what)
        return
    with watch.running():
        _execute_file(conn, item, what, watch)


def _crm_schema_is_foreign(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """True when a schema named crm exists, holds objects, and is not ours."""
    row = conn.execute(
        """
        SELECT
            to_regclass('crm.schema_migrations') IS NULL
            AND EXISTS (
                SELECT 1
                FROM pg_catalog.pg_class AS c
                WHERE c.relnamespace = n.oid
            )
        FROM pg_catalog.pg_namespace AS n
        WHERE n.nspname = 'crm'
        """
    ).fetchone()
    return bool(row and row[0])


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> dict[str, tuple[str, str, str]]:
    if conn.execute("SELECT to_regclass('crm.schema_migrations') IS NOT NULL").fetchone() != (
        True,
    ):
        return {}
    rows = conn.execute(
        """
        SELECT name, checksum, applied_at::text, package_version
        FROM crm.schema_migrations
        ORDER BY name
        """
    ).fetchall()
    return {str(r[0]): (str(r[1]), str(r[2]), str(r[3])) for r in rows}


def _code_row(conn: psycopg.Connection[tuple[object, ...]]) -> tuple[str, str] | None:
    if conn.execute("SELECT to_regclass('crm.schema_code') IS NOT NULL").fetchone() != (True,):
        return None
    row = conn.execute("SELECT checksum, applied_at::text FROM crm.schema_code").fetchone()
    return (str(row[0]), str(row[1])) if row else None


def _classify(
    source: SqlSource, applied: dict[str, tuple[str, str, str]]
) -> tuple[MigrationStatus, ...]:
    known = {m.name for m in source.migrations}
    result: list[MigrationStatus] = []
    for item in source.migrations:
        if item.name not in applied:
            result.append(MigrationStatus(item.name, MigrationState.PENDING))
            continue
        checksum, applied_at, version = applied[item.name]
        state = MigrationState.APPLIED if checksum == item.checksum else MigrationState.CHANGED
        result.append(MigrationStatus(item.name, state, applied_at, version))
    for name in sorted(set(applied) - known):
        _, applied_at, version = applied[name]
        result.append(MigrationStatus(name, MigrationState.UNKNOWN, applied_at, version))
    return tuple(sorted(result, key=lambda m: m.name))


def _existing_roles(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY (%s) ORDER BY 1",
        (list(ROLES),),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _access_checksum(
    conn: psycopg.Connection[tuple[object, ...]], source: SqlSource, roles: Sequence[str]
) -> str:
    """What the grants depend on beyond the schema: the file, the roles, the owners."""
    access = source.access.checksum if source.access else ""
    row = conn.execute(
        """
        SELECT coalesce(string_agg(DISTINCT pg_catalog.pg_get_userbyid(c.relowner)::text, ','),
                        '')
        FROM pg_catalog.pg_class AS c
        INNER JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname IN ('crm', 'crm_private') AND c.relkind IN ('r', 'p')
        """
    ).fetchone()
    owners = str(row[0]) if row else ""
    text = f"{access}\0{','.join(roles)}\0{owners}"
    return hashlib.sha256(text.encode()).hexdigest()


def _access_row(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    if conn.execute("SELECT to_regclass('crm.schema_access')").fetchone() in (None, (None,)):
        return None
    row = conn.execute("SELECT checksum FROM crm.schema_access").fetchone()
    return str(row[0]) if row else None


def status(conn: psycopg.Connection[tuple[object, ...]], source: SqlSource | None = None) -> Status:
    """Report applied, pending, changed and unknown migrations, and the roles; read-only."""
    source = source or load_source()
    with conn.transaction():
        migrations = _classify(source, _applied(conn))
        code = _code_row(conn)
        roles = _existing_roles(conn)
        access = _access_row(conn)
        access_current = access is not None and access == _access_checksum(conn, source, roles)
    return Status(
        migrations=migrations,
        code_current=code is not None and code[0] == source.code_checksum,
        code_applied_at=code[1] if code else None,
        missing_roles=tuple(r for r in ROLES if r not in roles),
        access_current=access_current,
    )


def require_current(
    conn: psycopg.Connection[tuple[object, ...]], where: str, source: SqlSource | None = None
) -> None:
    """Raise SchemaError, saying what to run, unless the database holds this package's schema
    with nothing pending (commands that use the schema call this first)."""
    source = source or load_source()
    state = status(conn, source)
    if state.up_to_date:
        return
    if state.code_applied_at is None and not any(
        m.state is not MigrationState.PENDING for m in state.migrations
    ):
        raise SchemaError(
            f"database {where} has no agency-crm schema",
            hint="Run `agency-crm db upgrade` to install it (or point --database-url at the"
            " database that has it).",
        )
    _refuse_problems(state.problems, source)
    what = (
        f"{len(state.pending)} migration(s) pending"
        if state.pending
        else "its functions and triggers are not this version's"
    )
    raise SchemaError(
        f"the agency-crm schema of {where} is not current for agency-crm {__version__}: {what}",
        hint="Run `agency-crm db upgrade` (at every deploy, before the new version runs).",
    )


def _refuse_problems(migrations: Iterable[MigrationStatus], source: SqlSource) -> None:
    for item in migrations:
        if item.state is MigrationState.CHANGED:
            raise SchemaError(
                f"migration {item.name} was changed after it was applied"
                f" (applied {item.applied_at} by agency-crm {item.package_version})",
                hint="Applied migrations must never be edited: restore the file and put the"
                " change in a new migration.",
            )
        if item.state is MigrationState.UNKNOWN:
            newest = source.migrations[-1].name if source.migrations else "none"
            raise SchemaError(
                f"the database has migration {item.name}, which this agency-crm"
                f" ({__version__}, newest {newest}) does not know",
                hint="The database was upgraded by a newer agency-crm: upgrade the package.",
            )


def _encrypt_plaintext_secrets(conn: psycopg.Connection[tuple[object, ...]]) -> str | None:
    """Before 0014_encrypted_secrets.sql: encrypt the secrets stored in plaintext under the
    first key of AGENCY_CRM_SECRET_KEYS (bind parameters only: a secret never appears in a
    statement's text). Refuses, so nothing is applied, when there are some and no key."""
    from agency_crm import crypto

    columns = crypto.SECRET_COLUMNS["client_crm_configs"]
    # What is plaintext is decided by crypto.is_envelope, the CHECK's own shape: a value that
    # only starts like an envelope is a plaintext the CHECK would refuse.
    stored = conn.execute(
        f"SELECT client_id, id, {', '.join(columns)} FROM crm.client_crm_configs"
        f" WHERE num_nonnulls({', '.join(columns)}) > 0 ORDER BY client_id, id FOR UPDATE"
    ).fetchall()
    rows = [
        r for r in stored if any(v is not None and not crypto.is_envelope(str(v)) for v in r[2:])
    ]
    if not rows:
        return None
    keys = crypto.KeyRing.from_environment()
    if not keys.keys:
        raise SchemaError(
            f"migration 0014_encrypted_secrets.sql encrypts the CRM secrets stored in plaintext"
            f" ({len(rows)} CRM config(s) hold some), and no encryption key is configured"
            f" ({crypto.ENV_VAR} is unset or empty)",
            hint=f"Nothing was applied. {crypto.GENERATE_HINT}: set it where agency-crm runs"
            " (keep it safe: without it the secrets cannot be read), then upgrade again.",
        )
    # The credentials do not change, only how they are stored: the trigger that sets a
    # config in error back to pending on new credentials must not fire.
    trigger = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_trigger"
        " WHERE tgrelid = 'crm.client_crm_configs'::regclass AND tgname = '_400_credentials'"
    ).fetchone()
    if trigger:
        conn.execute("ALTER TABLE crm.client_crm_configs DISABLE TRIGGER _400_credentials")
    for client_id, config_id, *values in rows:
        # A secret already encrypted stays as it is (every column is written below).
        sealed = [
            v
            if v is None or crypto.is_envelope(str(v))
            else keys.encrypt(str(v), client_id=str(client_id), column=c)
            for c, v in zip(columns, values, strict=True)
        ]
        conn.execute(
            "UPDATE crm.client_crm_configs SET "
            + ", ".join(f"{c} = %s" for c in columns)
            + " WHERE client_id = %s AND id = %s",
            [*sealed, client_id, config_id],
        )
    if trigger:
        conn.execute("ALTER TABLE crm.client_crm_configs ENABLE TRIGGER _400_credentials")
    return f"encrypted the secrets of {len(rows)} CRM config(s) under key {keys.primary}"


# Work a migration needs done in Python first, in the same transaction (it returns what it
# did, for the progress output, or None when there was nothing to do).
BEFORE_MIGRATION: dict[str, Callable[[psycopg.Connection[tuple[object, ...]]], str | None]] = {
    "0014_encrypted_secrets.sql": _encrypt_plaintext_secrets,
}


def upgrade(
    conn: psycopg.Connection[tuple[object, ...]],
    *,
    source: SqlSource | None = None,
    target: str | None = None,
    apply_code: bool = True,
    reapply_code: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    progress: Progress = _quiet,
) -> UpgradeResult:
    """Apply pending migrations (up to ``target``), then the functions and triggers.

    Everything happens in one transaction under an advisory lock. Refuses, changing
    nothing, when an applied migration's file changed or the database knows a migration
    this package does not. Each statement waits at most ``lock_timeout`` seconds for a
    table lock (None or 0: as long as it takes); past it the upgrade is rolled back with an
    error naming the lock and who held it. ``apply_code=False`` stops after the migrations
    (tests use it to stand in for an older release).
    """
    source = source or load_source()
    if target is not None:
        source.migration(target)  # raises on an unknown name
    result = UpgradeResult(code_checksum=source.code_checksum)
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (UPGRADE_LOCK_KEY,))
        if got.fetchone() != (True,):
            result.waited_for_lock = True
            progress("waiting for another agency-crm upgrade of this database to finish")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (UPGRADE_LOCK_KEY,))
        # Only now: the wait for a concurrent upgrade above is not a table lock.
        conn.execute(
            "SELECT set_config('lock_timeout', %(ms)s, true)",
            {"ms": f"{round((lock_timeout or 0) * 1000)}ms"},
        )
        watch = LockWatch(conn, lock_timeout) if lock_timeout else None
        if _crm_schema_is_foreign(conn):
            raise SchemaError(
                "schema crm already exists and was not created by agency-crm",
                hint="Install into a database without a crm schema, or rename the existing"
                " schema first.",
            )
        _execute_file(conn, source.bootstrap, "bootstrap")
        classified = _classify(source, _applied(conn))
        _refuse_problems(classified, source)
        pending = {m.name for m in classified if m.state is MigrationState.PENDING}
        for item in source.migrations:
            if target is not None and item.name > target:
                break
            if item.name not in pending:
                continue
            started = time.perf_counter()
            before = BEFORE_MIGRATION.get(item.name)
            if before is not None:
                done = before(conn)
                if done:
                    progress(done)
            _run_file(conn, item, "migration", watch)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            conn.execute(
                """
                INSERT INTO crm.schema_migrations (name, checksum, package_version, duration_ms)
                VALUES (%(name)s, %(checksum)s, %(version)s, %(ms)s)
                """,
                {
                    "name": item.name,
                    "checksum": item.checksum,
                    "version": __version__,
                    "ms": elapsed_ms,
                },
            )
            result.applied.append(item.name)
            progress(f"applied migration {item.name} ({elapsed_ms} ms)")
        if not apply_code:
            return result
        code = _code_row(conn)
        stale = code is None or code[0] != source.code_checksum
        if result.applied or stale or reapply_code:
            started = time.perf_counter()
            for item in source.code:
                _run_file(conn, item, "code file", watch)
            conn.execute(
                """
                INSERT INTO crm.schema_code (singleton, checksum, package_version)
                VALUES (true, %(checksum)s, %(version)s)
                ON CONFLICT (singleton) DO UPDATE
                SET checksum = excluded.checksum,
                    package_version = excluded.package_version,
                    applied_at = now()
                """,
                {"checksum": source.code_checksum, "version": __version__},
            )
            result.code_applied = True
            elapsed_ms = round((time.perf_counter() - started) * 1000)
            progress(f"applied {len(source.code)} function and trigger files ({elapsed_ms} ms)")
        _apply_access(conn, source, result, reapply_code, watch, progress)
    return result


def _apply_access(
    conn: psycopg.Connection[tuple[object, ...]],
    source: SqlSource,
    result: UpgradeResult,
    force: bool,
    watch: LockWatch | None,
    progress: Progress,
) -> None:
    """Create the missing roles where this login may, then (when anything they depend on
    changed) the grants and row-level security of sql/access.sql."""
    if source.access is None:
        return
    roles = _existing_roles(conn)
    missing = [r for r in ROLES if r not in roles]
    if missing:
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user"
        ).fetchone()
        if row == (True,):
            for role in missing:
                try:
                    # Roles belong to the cluster: an upgrade of another database may create
                    # the same one at the same moment (its advisory lock is not ours).
                    with conn.transaction():
                        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                        conn.execute(
                            sql.SQL("COMMENT ON ROLE {} IS {}").format(
                                sql.Identifier(role), sql.Literal(ROLES[role])
                            )
                        )
                except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    continue
                result.created_roles.append(role)
            if result.created_roles:
                progress(f"created roles {', '.join(result.created_roles)}")
            roles = _existing_roles(conn)
        else:
            result.missing_roles = missing
    checksum = _access_checksum(conn, source, roles)
    if not (result.applied or result.code_applied or force or _access_row(conn) != checksum):
        return
    started = time.perf_counter()
    _run_file(conn, source.access, "grants file", watch)
    conn.execute(
        """
        INSERT INTO crm.schema_access (singleton, checksum, roles)
        VALUES (true, %(checksum)s, %(roles)s)
        ON CONFLICT (singleton) DO UPDATE
        SET checksum = excluded.checksum, roles = excluded.roles, applied_at = now()
        """,
        {"checksum": checksum, "roles": roles},
    )
    result.access_applied = True
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    granted = ", ".join(roles) if roles else "no role (none exists yet)"
    progress(f"applied grants and row-level security for {granted} ({elapsed_ms} ms)")


def migration_names(source: SqlSource | None = None) -> Sequence[str]:
    """Names of the package's migrations, in order."""
    return [m.name for m in (source or load_source()).migrations]
