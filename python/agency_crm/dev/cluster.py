"""A throwaway PostgreSQL cluster, for the test suite, the docs generator and the demo.

Started from the installed PostgreSQL binaries on a tmpfs directory (``/dev/shm`` when it
exists) with fsync off (``fsync=True`` keeps PostgreSQL's durable defaults: fsync,
synchronous_commit and full_page_writes on), listening on 127.0.0.1 only, trust
authentication. ``initdb`` refuses to run as root, so as root the cluster runs as the
``postgres`` OS user via ``runuser``.

The server writes its log to :attr:`TempCluster.log_file`; ``settings`` adds server settings
(``-c name=value``), e.g. ``TempCluster(settings={"log_statement": "all"})`` for a test that
reads every statement the server ran.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from psycopg import conninfo

from agency_crm.errors import AgencyCrmError

SUPERUSER = "postgres"


class ClusterError(AgencyCrmError):
    """The throwaway cluster could not be started."""


def find_bindir() -> Path:
    """Directory of initdb/pg_ctl: $PG_BINDIR, then `pg_config --bindir`, then PATH."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    raise ClusterError(
        "cannot find the PostgreSQL server binaries (initdb, pg_ctl)",
        hint="Install postgresql-15 (apt-get install postgresql-15) or set PG_BINDIR.",
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempCluster:
    """Start with ``with TempCluster() as cluster:``; ``cluster.url`` is a superuser URL."""

    def __init__(
        self,
        base_dir: str | None = None,
        fsync: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.fsync = fsync
        # Extra server settings, given to postgres as -c name=value (they win over ours).
        self.settings = dict(settings or {})
        shm = Path("/dev/shm")
        self.base_dir = base_dir or (str(shm) if shm.is_dir() else None)
        self.bindir = find_bindir()
        self.port = 0
        self.directory: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return conninfo.make_conninfo(
            host=self.host, port=self.port, user=SUPERUSER, dbname="postgres"
        )

    @property
    def log_file(self) -> Path:
        """The server's log (its stderr), readable while the cluster runs."""
        if self.directory is None:
            raise ClusterError("the cluster is not started: it has no log yet")
        return self.directory / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def _check(self, what: str, done: subprocess.CompletedProcess[str]) -> None:
        if done.returncode != 0:
            output = " ".join((done.stderr or done.stdout).split())[-400:]
            raise ClusterError(f"{what} failed (exit {done.returncode}): {output}")

    def start(self) -> TempCluster:
        if self._as_postgres:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise ClusterError(
                    f"running as root needs an OS user {SUPERUSER!r} to run PostgreSQL",
                    hint="Install the postgresql package, which creates it, or run as a"
                    " non-root user.",
                ) from None
        self.directory = Path(tempfile.mkdtemp(prefix="agency-crm-pg-", dir=self.base_dir))
        if self._as_postgres:
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        data = self.directory / "data"
        self._check(
            "initdb",
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
        )
        for _attempt in range(5):
            self.port = free_port()
            options = (
                f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
                " -c max_connections=200"
            )
            if not self.fsync:
                options += " -F -c full_page_writes=off -c synchronous_commit=off"
            # pg_ctl hands the options to a shell: each setting is quoted as one word.
            for name, value in self.settings.items():
                options += " -c " + shlex.quote(f"{name}={value}")
            done = self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
            if done.returncode == 0:
                return self
            time.sleep(0.2)  # most likely the port was taken meanwhile: try another
        self._check("pg_ctl start", done)
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        data = self.directory / "data"
        if (data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
