"""Logins that are members of each agency-crm role, to test the grants and row-level security
as a deployment uses them: connected as a member of a role, never as the owner."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.executors.noop import NoopExecutor

from agency_crm import schema
from tests.conftest import server_url
from tests.push.conftest import pmake, pushdb, sandbox  # noqa: F401  (fixtures used here too)

PASSWORD = "acrm-test-login"


@pytest.fixture(scope="session")
def logins(postgresql_noproc: NoopExecutor) -> Iterator[dict[str, str]]:
    """role -> the name of a LOGIN role that is a member of it (and of nothing else); dropped
    at the end (roles belong to the server, which may be long-lived: TEST_DATABASE_URL)."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
    made = {role: f"acrm_t_{role.removeprefix('crm_')}_{suffix}" for role in schema.ROLES}
    admin = server_url(postgresql_noproc, postgresql_noproc.maintenance_dbname)
    with psycopg.connect(admin, autocommit=True) as conn:
        for role, login in made.items():
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(login), sql.Literal(PASSWORD), sql.Identifier(role)
                )
            )
    yield made
    with psycopg.connect(admin, autocommit=True) as conn:
        for login in made.values():
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


def connect_as(url: str, login: str, **kw: Any) -> psycopg.Connection[Any]:
    """A connection to the database of ``url`` as ``login``."""
    return psycopg.connect(url, user=login, password=PASSWORD, **kw)


def login_url(url: str, login: str) -> str:
    """``url`` with another user (for the CLI and the runner)."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params.update(user=login, password=PASSWORD)
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]
