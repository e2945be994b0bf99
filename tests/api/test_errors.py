"""Every refusal is a problem (RFC 9457) with a readable message, naming the field at fault;
none is a traceback or echoes a value sent. Also: the routes inside the agency's own FastAPI
application, whose own handlers do not change what they answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException

import agency_crm.api
from agency_crm.api import create_app
from agency_crm.api.routing import ProblemRoute
from agency_crm.service.crm import OAuthSettings
from tests.api.conftest import Api, Server, Tenant, assert_problem
from tests.helpers.fixtures import TLS

SECRET_KEY = "sbx_pipedrive_secret-in-a-body-0123456789"


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"api_key": ', "application/json", 400, "malformed_body"),
        (b"api_key=" + SECRET_KEY.encode(), "application/json", 400, "malformed_body"),
        (b"\xff\xfe", "application/json", 400, "malformed_body"),
        (
            b'{"api_key": "' + SECRET_KEY.encode() + b'"}',
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            b"api_key=" + SECRET_KEY.encode(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (b'{"api_key": "x"}', None, 415, "unsupported_media_type"),
    ],
)
def test_a_body_that_is_not_json_is_a_400_one_not_declared_json_a_415(
    api: Api,
    tenant: Callable[..., Tenant],
    content: bytes,
    content_type: str | None,
    status: int,
    code: str,
) -> None:
    a = tenant()
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.call(
        "POST", "/api/v1/crm/connect/pipedrive", a.token, content=content, headers=headers
    )
    if content_type is None:  # httpx sends none: the header is removed
        assert "content-type" not in response.request.headers
    assert_problem(response, status, code)
    assert SECRET_KEY not in response.text


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "body.api_key", "required"),
        ({"api_key": 5}, "body.api_key", "string"),
        ({"api_key": ""}, "body.api_key", "at least 1"),
        ({"api_key": f"{SECRET_KEY} x"}, "body.api_key", "characters"),
        ({"api_key": "x" * 1001 + SECRET_KEY}, "body.api_key", "at most 1000"),
        ({"api_key": "k", "apikey": SECRET_KEY}, "body.apikey", "not a field"),
        ({"api_key": "k", "api_base_url": SECRET_KEY}, "body.api_base_url", "characters"),
        ({"api_key": "k", "api_base_url": False}, "body.api_base_url", "string"),
        (None, "body", "required"),
    ],
)
def test_a_refused_field_is_a_422_naming_it_without_echoing_it(
    api: Api, tenant: Callable[..., Tenant], body: Any, field: str, message: str
) -> None:
    a = tenant()
    response = api.call("POST", "/api/v1/crm/connect/close", a.token, json=body)
    problem = assert_problem(response, 422, "validation_error", field)
    assert message in problem["errors"][0]["message"], problem
    assert SECRET_KEY not in response.text


def test_api_base_url_only_where_the_server_allows_it(api: Api, api_db: str) -> None:
    client = api.make().client()
    token = api.token(client)
    # As `agency-crm serve` runs by default, and without the HubSpot app's settings.
    with Server(lambda url: create_app(api_db, oauth=OAuthSettings())) as strict:
        refused = httpx.post(
            f"{strict.url}/api/v1/crm/connect/pipedrive",
            json={"api_key": "sbx_pipedrive_x", "api_base_url": api.sandbox.urls["pipedrive"]},
            headers={"Authorization": f"Bearer {token}"},
            verify=TLS,
        )
        body = assert_problem(refused, 422, "invalid", "body.api_base_url")
        assert "--allow-api-base-url" in body["hint"]
        # HubSpot OAuth without the app's settings: a 503 saying which.
        unset = httpx.post(
            f"{strict.url}/api/v1/crm/connect/hubspot",
            headers={"Authorization": f"Bearer {token}"},
            verify=TLS,
        )
        body = assert_problem(unset, 503, "not_configured")
        assert "AGENCY_CRM_HUBSPOT_CLIENT_ID" in body["hint"]
    for bad in ("ftp://example.com", "http://[", "http://h:99999", "http://h/?q=1"):
        response = api.call(
            "POST",
            "/api/v1/crm/connect/pipedrive",
            token,
            json={"api_key": "sbx_pipedrive_x", "api_base_url": bad},
        )
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["field"] == "body.api_base_url"


def test_unknown_routes_and_methods(api: Api, tenant: Callable[..., Tenant]) -> None:
    a = tenant()
    assert_problem(api.call("GET", "/api/v1/crm/nope", a.token), 404, "route_not_found")
    assert_problem(api.call("GET", "/", a.token), 404, "route_not_found")
    for method, path, allow in (
        ("PATCH", "/api/v1/crm/config", "GET, PUT"),
        ("POST", "/api/v1/crm/logs", "GET"),
        ("GET", "/api/v1/crm/disconnect", "DELETE"),
        ("TRACE", "/api/v1/crm/test", "POST"),
        ("OPTIONS", f"/api/v1/clients/{a.id}/meetings", "GET"),
    ):
        response = api.call(method, path, a.token)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == allow, (method, path)


@pytest.fixture(scope="module")
def host(api_db: str) -> Iterator[str]:
    """The agency's own application with the API installed, its own routes and handlers
    beside it, and a route of ours that fails, as a bug would."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with agency_crm.api.open_service(api_db) as service:
            app.state.crm_service = service
            yield

    def build(_: str) -> FastAPI:
        app = FastAPI(lifespan=lifespan)

        @app.exception_handler(HTTPException)
        async def plain(request: Any, exc: HTTPException) -> PlainTextResponse:
            return PlainTextResponse(f"host says {exc.status_code}", status_code=exc.status_code)

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        agency_crm.api.install(app)

        async def broken(client_id: agency_crm.api.auth.CrmClient) -> None:
            raise RuntimeError(f"boom for {client_id} with {SECRET_KEY}")

        app.router.add_api_route(
            "/api/v1/crm/broken", broken, methods=["POST"], route_class_override=ProblemRoute
        )
        return app

    with Server(build) as server:
        yield server.url


def test_the_routes_in_the_agency_s_own_application(
    host: str, api: Api, tenant: Callable[..., Tenant], caplog: pytest.LogCaptureFixture
) -> None:
    a = tenant()
    headers = {"Authorization": f"Bearer {a.token}"}
    with httpx.Client(base_url=host, headers=headers, verify=TLS) as http:
        assert http.get("/health").json() == {"status": "ok"}
        assert http.get("/nope").text == "host says 404"  # the host's own handler
        meetings = http.get(f"/api/v1/clients/{a.id}/meetings")
        assert meetings.status_code == 200, meetings.text
        # Our routes answer problems whatever the host's handlers do.
        assert_problem(http.get("/api/v1/crm/config"), 404, "no_crm_config")
        assert_problem(
            http.get("/api/v1/crm/logs", headers={"Authorization": ""}), 401, "unauthorized"
        )
        assert_problem(http.get("/api/v1/crm/logs?limit=0"), 422, "validation_error", "query.limit")
        with caplog.at_level(logging.ERROR, logger="agency_crm.api"):
            broken = http.post(
                "/api/v1/crm/broken", json={"api_key": SECRET_KEY}, headers={"X-Trace": "1"}
            )
        body = assert_problem(broken, 500, "internal_error")
        assert "boom" not in broken.text and SECRET_KEY not in broken.text
        # The host's document describes our problems.
        document = http.get("/openapi.json").json()
        assert "Problem" in document["components"]["schemas"]
        assert "/api/v1/crm/config" in document["paths"]
    [record] = [r for r in caplog.records if r.name == "agency_crm.api"]
    logged = record.getMessage()
    assert "RuntimeError" in logged and "boom for" in logged and "Traceback" in logged
    assert SECRET_KEY not in logged and a.token not in logged, "a secret reached the log"
    assert body["detail"] == "an unexpected error occurred; it was logged"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_log_lines_hold_no_query_string_and_no_token_in_a_path() -> None:
    """Uvicorn's access line (if an application turns it on) loses its query; httpx's line of
    HubSpot's token-info call loses the token in its path. (A handler on each logger: uvicorn
    stops its loggers propagating once a server has started.)"""
    import agency_crm.push.hubspot  # noqa: F401  (installs the httpx filter)

    create_app()  # installs the uvicorn.access filter
    collect = _Collect()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "httpx")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(collect)
        lg.setLevel(logging.INFO)
    try:
        loggers[0].info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/api/v1/crm/callback/hubspot?code=c0de-42&state=st4te-42",
            "1.1",
            200,
        )
        loggers[1].info(
            'HTTP Request: %s %s "%s %d %s"',
            "GET",
            httpx.URL("http://127.0.0.1:1/oauth/v1/access-tokens/t0ken%2B42?x=1"),
            "HTTP/1.1",
            200,
            "OK",
        )
    finally:
        for lg, level in zip(loggers, saved, strict=True):
            lg.removeHandler(collect)
            lg.setLevel(level)
    text = "\n".join(collect.lines)
    assert "GET /api/v1/crm/callback/hubspot HTTP/1.1" in text
    assert "/oauth/v1/access-tokens/[redacted]" in text
    for secret in ("c0de-42", "st4te-42", "t0ken"):
        assert secret not in text
