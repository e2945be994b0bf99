"""What the CLI tests that connect CRMs share: a committed database of their own (the CLI runs
in another process), the CRM sandbox over real HTTP, and a runner naming the database."""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest

from agency_crm.sandbox import Sandbox
from tests.helpers.cli import run, spawn
from tests.helpers.fixtures import TLS, Make
from tests.push.conftest import pmake, pushdb, sandbox  # noqa: F401  (fixtures used here)

ERROR = re.compile(r"^agency-crm: error: .+$")


def one_line(done: subprocess.CompletedProcess[str], code: int) -> str:
    """The single error line of a command that failed with ``code``."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and ERROR.match(lines[0]), done.stderr
    return lines[0]


@dataclass
class Cli:
    """`agency-crm ...` against one database."""

    url: str

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run(*args, "--database-url", self.url, input=input, env=env)

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return spawn(*args, "--database-url", self.url, env=env)


@pytest.fixture
def cli(pushdb: tuple[psycopg.Connection[Any], str]) -> Cli:  # noqa: F811  (the fixture)
    return Cli(pushdb[1])


@pytest.fixture
def conn(pushdb: tuple[psycopg.Connection[Any], str]) -> psycopg.Connection[Any]:  # noqa: F811
    return pushdb[0]


@pytest.fixture
def cmake(pmake: Make) -> Make:  # noqa: F811  (the fixture)
    """Row factories writing committed rows."""
    return pmake


def account(sandbox: Sandbox, vendor: str) -> dict[str, Any]:  # noqa: F811
    """A new account of the fake CRM: its token, pipelines with stages, users."""
    token = f"sbx_{vendor}_{uuid.uuid4().hex[:12]}"
    response = httpx.post(
        sandbox.urls[vendor] + "/_sandbox/accounts", json={"token": token}, timeout=10, verify=TLS
    )
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def admin(sandbox: Sandbox, vendor: str, method: str, path: str, **kw: Any) -> Any:  # noqa: F811
    response = httpx.request(method, sandbox.urls[vendor] + path, timeout=10, verify=TLS, **kw)
    response.raise_for_status()
    return response.json() if response.content else None


def state(sandbox: Sandbox, vendor: str, token: str) -> dict[str, Any]:  # noqa: F811
    """What the fake CRM holds for an account."""
    return admin(sandbox, vendor, "GET", "/_sandbox/state", params={"token": token})  # type: ignore[no-any-return]
