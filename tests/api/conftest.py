"""The HTTP API over real HTTP: uvicorn on a loopback port in a thread, serving a committed
database of its own, calling the CRM sandbox; httpx as the client.

The server is shared by the module's tests; each test makes its own clients (a client, its
rows and its tokens are the test's alone), so tests do not see each other's data.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from psycopg.rows import dict_row
from pytest_postgresql.executors.noop import NoopExecutor

from agency_crm.api import create_app
from agency_crm.push.settings import Settings
from agency_crm.sandbox import Sandbox
from agency_crm.service import tokens
from agency_crm.service.crm import OAuthSettings, digest
from tests.conftest import janitor, server_url
from tests.helpers.fixtures import TLS, Make, Row

# The sandbox's HubSpot OAuth app.
APP_ID, APP_SECRET = "sbx-client", "sbx-secret"


class Server:
    """An ASGI application served by uvicorn from a thread, on a loopback port of its own."""

    def __init__(self, build: Callable[[str], Any]) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(
            build(self.url), log_level="warning", access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.socket]},
            daemon=True,
            name="api-server",
        )

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "the API server did not start"
            assert time.monotonic() < deadline, "the API server did not start in 30 s"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="session")
def api_db(postgresql_noproc: NoopExecutor) -> Iterator[str]:
    """URL of a committed database of the API tests' own (a clone of the template)."""
    template = postgresql_noproc.template_dbname
    with janitor(postgresql_noproc, f"{template}_api_{uuid.uuid4().hex[:6]}", template) as made:
        yield server_url(postgresql_noproc, made.dbname)


@pytest.fixture(scope="session")
def seed(api_db: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the API's database, as its owner: what the tests write,
    the server reads."""
    with psycopg.connect(api_db, autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


def build_app(database_url: str, *, allow_api_base_url: bool = True, **kw: Any) -> Any:
    """The API as `agency-crm serve --allow-api-base-url` runs it, with the sandbox's
    HubSpot app and short CRM timeouts."""

    def build(url: str) -> Any:
        oauth = OAuthSettings(
            client_id=APP_ID,
            client_secret=APP_SECRET,
            redirect_uri=f"{url}/api/v1/crm/callback/hubspot",
        )
        settings = Settings(
            hubspot_client_id=APP_ID,
            hubspot_client_secret=APP_SECRET,
            http_timeout=5,
            search_lag=timedelta(seconds=0.3),
        )
        return create_app(
            database_url,
            allow_api_base_url=allow_api_base_url,
            oauth=oauth,
            settings=settings,
            max_connections=4,
            **kw,
        )

    return build


@dataclass
class Api:
    """The running API and what a test needs to call it."""

    url: str
    seed: psycopg.Connection[Any]
    sandbox: Sandbox
    http: httpx.Client
    made: list[Row] = field(default_factory=list)

    def make(self) -> Make:
        return Make(self.seed)

    def token(self, client: Row | None, name: str = "test") -> str:
        """A new API token of the client (None: agency-wide)."""
        token, _ = tokens.create(self.seed, client["id"] if client else None, name)
        return token

    def revoke(self, token: str) -> None:
        [row] = self.rows(
            "UPDATE crm_private.api_tokens SET revoked_at = now() WHERE token_hash = %s"
            " RETURNING id",
            digest(token),
        )
        assert row["id"]

    def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.request(method, self.url + path, headers=headers, **kw)

    def rows(self, query: str, *params: Any) -> list[Row]:
        with self.seed.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def api_server(api_db: str) -> Iterator[Server]:
    with Server(build_app(api_db)) as server:
        yield server


@pytest.fixture(scope="session")
def api(api_server: Server, seed: psycopg.Connection[Any], sandbox: Sandbox) -> Iterator[Api]:
    with httpx.Client(timeout=30, verify=TLS) as http:
        yield Api(api_server.url, seed, sandbox, http)


@dataclass
class Tenant:
    """A client of the API's database with a token of its own."""

    row: Row
    token: str

    @property
    def id(self) -> str:
        return str(self.row["id"])


@pytest.fixture
def tenant(api: Api) -> Callable[..., Tenant]:
    """Make a client (its name and other columns overridable) and a token of its own."""

    def make(**kw: Any) -> Tenant:
        client = api.make().client(**kw)
        return Tenant(client, api.token(client))

    return make


PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "code", "field", "hint", "errors"}


def assert_problem(
    response: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status and code (naming ``field``), with
    the request's path as its instance; returns it."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/problem+json", response.headers
    body: dict[str, Any] = response.json()
    assert set(body) <= PROBLEM_KEYS, body
    assert body["type"] == f"urn:agency-crm:problem:{code}", body
    assert (body["status"], body["code"]) == (status, code), body
    assert body["title"] and body["detail"], body
    assert body["instance"] == response.request.url.path, body
    assert body.get("field") == field, body
    assert "Traceback" not in response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer"), response.headers
    return body
