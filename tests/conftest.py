"""Test harness: a real PostgreSQL for every test.

With TEST_DATABASE_URL set, the suite uses that server. Otherwise (the normal case: no
server runs on these machines) it starts a throwaway cluster on /dev/shm with fsync off
(as the postgres OS user when run as root) and stops it at the end. The schema is
installed once into a template database; each test then gets either

* ``db``: a connection to a shared clone, inside a transaction rolled back after the test
  (about a quarter of a millisecond), or
* ``fresh_db``: a connection to its own clone of the template, for tests that commit or use
  several sessions, or
* ``empty_db_url``: the URL of an empty database, for install and upgrade tests.

Pages are tested in a real headless Chromium: the ``browser`` fixture (tests/helpers/browser.py).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from psycopg import conninfo
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from agency_crm import crypto, schema
from agency_crm.dev.cluster import TempCluster

if TYPE_CHECKING:
    from tests.helpers.browser import Browser

pytest_plugins = ["tests.helpers.fixtures"]

_cluster: TempCluster | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _cluster
    # The CRM secrets are stored encrypted: the suite (and the CLI runs it starts) use a
    # throwaway key unless one is given.
    os.environ.setdefault(crypto.ENV_VAR, crypto.generate_entry("test"))
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        params = conninfo.conninfo_to_dict(url)
        config.option.postgresql_host = str(params.get("host") or "127.0.0.1")
        config.option.postgresql_port = str(params.get("port") or "5432")
        config.option.postgresql_user = str(params.get("user") or "postgres")
        config.option.postgresql_password = params.get("password")
        config.option.postgresql_maintenance_dbname = str(params.get("dbname") or "postgres")
        # A run that died may have left its template behind on a long-lived server.
        config.option.postgresql_drop_test_database = True
        return
    if config.getoption("postgresql_port"):
        return  # --postgresql-port given: use that server.
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return  # the pytest-xdist controller runs no test: each worker starts its own cluster
    _cluster = TempCluster().start()
    config.option.postgresql_host = _cluster.host
    config.option.postgresql_port = str(_cluster.port)
    config.option.postgresql_user = "postgres"


def pytest_unconfigure(config: pytest.Config) -> None:
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


def load_schema(
    host: str, port: int, user: str, dbname: str, password: str | None, **_: Any
) -> None:
    """Template loader: install the schema exactly as `agency-crm db upgrade` does."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password) as conn:
        schema.upgrade(conn)


postgresql_noproc = factories.postgresql_noproc(load=[load_schema])
fresh_db = factories.postgresql("postgresql_noproc")


def server_url(server: NoopExecutor, dbname: str) -> str:
    return conninfo.make_conninfo(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password or None,
        dbname=dbname,
    )


def janitor(server: NoopExecutor, dbname: str, template: str | None = None) -> DatabaseJanitor:
    """Creates the database on enter (from ``template`` if given), drops it on exit."""
    return DatabaseJanitor(
        user=server.user,
        host=server.host,
        port=server.port,
        password=server.password,
        dbname=dbname,
        template_dbname=template,
        maintenance_dbname=server.maintenance_dbname,
    )


@pytest.fixture(scope="session")
def _shared_db(postgresql_noproc: NoopExecutor) -> Iterator[psycopg.Connection[Any]]:
    """One clone of the template for the whole session, behind the rolled-back `db`."""
    template = postgresql_noproc.template_dbname
    shared = janitor(postgresql_noproc, f"{template}_shared", template)
    shared.drop()
    with shared:
        with psycopg.connect(server_url(postgresql_noproc, shared.dbname)) as conn:
            yield conn


@pytest.fixture
def db(_shared_db: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection with the schema installed; everything the test does is rolled back."""
    with _shared_db.transaction(force_rollback=True):
        yield _shared_db


@pytest.fixture
def empty_db_url(postgresql_noproc: NoopExecutor) -> Iterator[str]:
    """URL of a new, empty database (no schema), dropped after the test."""
    with janitor(postgresql_noproc, f"agency_crm_empty_{uuid.uuid4().hex[:10]}") as empty:
        yield server_url(postgresql_noproc, empty.dbname)


@pytest.fixture
def server_admin_url(postgresql_noproc: NoopExecutor) -> str:
    """URL of the maintenance database, for tests that create databases themselves."""
    return server_url(postgresql_noproc, postgresql_noproc.maintenance_dbname)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless Chromium on a fresh profile, quit after the test; requests off loopback are
    refused and recorded. Skipped without chromium, chromedriver or selenium, except under
    CI=true, where that fails the test."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver and importlib.util.find_spec("selenium")):
        message = (
            "headless Chromium needs `apt-get install -y chromium chromium-driver` and selenium"
            " (`make install`)"
        )
        if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
            pytest.fail(f"{message}; CI must run the browser tests", pytrace=False)
        pytest.skip(message)
    from tests.helpers.browser import launch  # selenium is imported only when it is there

    with launch(chromium, chromedriver) as started:
        yield started
