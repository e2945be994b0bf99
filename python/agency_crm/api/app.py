"""The application: :func:`create_app` for ``agency-crm serve`` (and tests), :func:`install`
and :func:`open_service` for the agency's own FastAPI application (docs/api.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from agency_crm import __version__
from agency_crm.api.auth import STATE_ATTRIBUTE
from agency_crm.api.problems import (
    InternalError,
    MethodNotAllowed,
    RouteNotFound,
    finish_document,
    problem,
    respond,
    validation_problem,
)
from agency_crm.api.routes import router
from agency_crm.api.routing import HttpProblem, log_unexpected
from agency_crm.crypto import KeyRing
from agency_crm.push.settings import Settings
from agency_crm.service.crm import CrmService, OAuthSettings

log = logging.getLogger("agency_crm.api")
access = logging.getLogger("agency_crm.api.access")

DESCRIPTION = """\
Connect a client's CRM (HubSpot by OAuth, Pipedrive and Close by API key), configure where its
deals go, and read its meetings and the CRM push log.

Every request but the OAuth callback needs `Authorization: Bearer acrm_...`, a token of one
client or an agency-wide one (`agency-crm api-token create`). The `/crm` routes act for the
token's client; an agency-wide token names it with `?client_id=`. Another client's ids are a
404, as if they did not exist.

Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`, and
`field` naming the request field at fault (`body.api_key`, `query.limit`). No response holds
a secret: a stored key or token reads `********`.
"""


@asynccontextmanager
async def open_service(
    database_url: str | None = None,
    *,
    min_size: int = 1,
    max_size: int = 10,
    **service: Any,
) -> AsyncIterator[CrmService]:
    """A :class:`CrmService` on a connection pool of its own, open for the block: what an
    application's lifespan holds. ``service`` goes to CrmService (keys, settings, oauth,
    http, allow_api_base_url)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url or "",
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"application_name": f"agency-crm {__version__} api"},
    )
    await pool.open(wait=True, timeout=30)
    try:
        crm = CrmService(pool, **service)
        try:
            yield crm
        finally:
            await crm.aclose()
    finally:
        await pool.close()


def install(app: FastAPI) -> None:
    """Add the API to an application: the routes under /api/v1 (errors as problem details
    whatever the application's own handlers do), and the Problem schema they refer to in
    its OpenAPI document. The application keeps a CrmService at ``app.state.crm_service``
    (see :func:`open_service`)."""
    app.include_router(router)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish_document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _NoQueryString(logging.Filter):
    """Uvicorn's access log prints each request's path with its query string, the OAuth
    callback's code and state among them: the query is cut from those lines, whichever
    handler an application attaches to uvicorn.access."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.split("?", 1)[0] if isinstance(arg, str) and arg.startswith("/") else arg
                for arg in record.args
            )
        return True


NO_QUERY_STRING = _NoQueryString()


def create_app(
    database_url: str | None = None,
    *,
    allow_api_base_url: bool = False,
    keys: KeyRing | None = None,
    settings: Settings | None = None,
    oauth: OAuthSettings | None = None,
    http: Callable[[], httpx.AsyncClient] | None = None,
    max_connections: int = 10,
) -> FastAPI:
    """The agency-crm API as an application of its own (``agency-crm serve``).

    The lifespan opens a connection pool to ``database_url`` (empty: libpq's PG* variables)
    and the service; every request runs its database steps as ``crm_api``. ``http`` makes
    the HTTP client the CRMs are called with (tests route it); ``allow_api_base_url`` lets a
    connect call name another API root (a sandbox).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_service(
            database_url,
            max_size=max_connections,
            keys=keys,
            settings=settings,
            oauth=oauth,
            http=http() if http else None,
            allow_api_base_url=allow_api_base_url,
        ) as service:
            setattr(app.state, STATE_ATTRIBUTE, service)
            yield
            delattr(app.state, STATE_ATTRIBUTE)

    app = FastAPI(
        title="agency-crm API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        openapi_tags=[
            {"name": "meetings", "description": "A client's meetings."},
            {"name": "connect", "description": "Connecting and disconnecting the CRM."},
            {"name": "crm", "description": "The connected CRM: settings, catalog, push log."},
            {
                "name": "analytics",
                "description": "A client's analytics and report; every client side by side.",
            },
        ],
    )
    install(app)
    logging.getLogger("uvicorn.access").addFilter(NO_QUERY_STRING)
    app.add_exception_handler(HTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(Exception, _unexpected)
    app.middleware("http")(_access_log)
    return app


async def _http_problem(request: Request, exc: Exception) -> Response:
    """A route that does not exist (404), a method a route does not take (405, with Allow)."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        error: HttpProblem | RouteNotFound | MethodNotAllowed = RouteNotFound(
            f"no route {path}", hint="the API's routes are under /api/v1 (GET /api/v1/docs)"
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{path} does not take {request.method}")
        allowed = allowed_methods(request)
        if allowed:
            # Starlette names the methods of the first route of the path only.
            return respond(problem(error, path), {"Allow": ", ".join(allowed)})
    else:
        error = HttpProblem(exc.status_code, str(exc.detail or ""))
    return respond(problem(error, path), dict(exc.headers or {}))


def allowed_methods(request: Request) -> list[str]:
    """Every method the routes of the request's path take."""
    methods: set[str] = set()
    # The API's routes (FastAPI keeps an included router's routes out of app.router.routes)
    # and the application's own (its documentation).
    for route in [*router.routes, *request.app.router.routes]:
        if not isinstance(route, Route):
            continue
        match, _ = route.matches({**request.scope, "method": "\x00"})
        if match == Match.PARTIAL:
            methods |= set(route.methods or ())
    return sorted(methods)


async def _validation_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return respond(problem(validation_problem(exc), request.url.path))


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Outside a route (the routes answer their own): 500, logged without secrets."""
    log_unexpected(request, exc)
    error = InternalError("an unexpected error occurred; it was logged")
    return respond(problem(error, request.url.path))


async def _access_log(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """One line per request: method, path (never the query: the OAuth callback's holds the
    code), status, milliseconds. Uvicorn's own access log is off (it prints the query)."""
    started = time.perf_counter()
    response = await call_next(request)
    access.info(
        "%s %s %d %.1fms",
        request.method,
        request.url.path,
        response.status_code,
        (time.perf_counter() - started) * 1000,
    )
    return response
