"""The route class every route of the API uses: whatever a route raises becomes a problem
response, whichever application the router is included in (FastAPI's exception handlers are
the application's, and the agency's own application has its own).

A request body is JSON or nothing: another media type is a 415, JSON that does not parse a
400 (FastAPI would answer 422 for both). A field the service layer names (``api_key``,
``state``) is named as the request has it (``body.api_key``, ``query.state``).
"""

from __future__ import annotations

import contextlib
import email.message
import http
import json
import logging
import traceback
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import psycopg
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from agency_crm.api import pages
from agency_crm.api.problems import (
    LOCATIONS,
    ApiError,
    DatabaseUnavailable,
    FieldError,
    InternalError,
    UnsupportedMediaType,
    ValidationProblem,
    problem,
    respond,
    validation_problem,
)
from agency_crm.push.redact import Redactor
from agency_crm.service.errors import ServiceError

log = logging.getLogger("agency_crm.api")


class HttpProblem(ApiError):
    """A refusal Starlette raised (a route not found, a method not allowed ...)."""

    def __init__(self, status: int, message: str) -> None:
        phrase = http.HTTPStatus(status).phrase
        super().__init__(message or phrase)
        self.status = status
        self.title = phrase
        self.code = phrase.lower().replace(" ", "_").replace("-", "_")


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _walk(sub)


def parameter_locations(dependant: Dependant) -> dict[str, str]:
    """Each query and path parameter of a route (its dependencies' too) -> where it is."""
    found: dict[str, str] = {}
    for part in _walk(dependant):
        for location, params in (("query", part.query_params), ("path", part.path_params)):
            for param in params:
                found[param.alias] = location
    return found


def check_query(request: Request, known: set[str]) -> None:
    """A query parameter the route does not take, or one given twice, is a 422 naming it
    (FastAPI would ignore the first and take the last of the second: a typo such as
    ``?upcomming=true`` would quietly list everything)."""
    errors: list[FieldError] = []
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name not in known:
            errors.append(
                FieldError(field=f"query.{name}", message="not a parameter of this route")
            )
        elif name in seen:
            errors.append(FieldError(field=f"query.{name}", message="given more than once"))
        seen.add(name)
    if errors:
        raise ValidationProblem(errors)


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def wants_html(request: Request) -> bool:
    """Whether the caller prefers a page to JSON (a browser does: text/html, then */*;q=0.8)."""
    best = {"html": -1.0, "json": -1.0}
    for item in request.headers.get("accept", "").split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in ("text/html", "text/*", "application/xhtml+xml"):
            best["html"] = max(best["html"], q)
        if media in ("application/json", "application/problem+json", "application/*"):
            best["json"] = max(best["json"], q)
        if media == "*/*":
            best["html"] = max(best["html"], q)
            best["json"] = max(best["json"], q)
    return best["html"] > 0 and best["html"] > best["json"]


def request_secrets(request: Request) -> Redactor:
    """What a request carries that is a secret (its bearer token, an API key in its body, the
    OAuth code and state), to mask in what the server logs of it."""
    found: list[str | None] = []
    authorization = request.headers.get("authorization", "")
    found.append(authorization.partition(" ")[2] or authorization)
    found += [request.query_params.get("code"), request.query_params.get("state")]
    body = getattr(request, "_body", b"")
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            found.append(body.decode(errors="replace"))
        else:
            if isinstance(parsed, dict):
                found += [v for v in parsed.values() if isinstance(v, str)]
    return Redactor(found)


def log_unexpected(request: Request, exc: BaseException) -> None:
    """Log a bug with its traceback, every secret of the request masked; the query string is
    left out (the OAuth callback's holds the code)."""
    text = "".join(traceback.format_exception(exc))
    log.error(
        "unhandled %s in %s %s\n%s",
        type(exc).__name__,
        request.method,
        request.url.path,
        request_secrets(request).text(text),
    )


def as_problem(request: Request, exc: Exception) -> ServiceError:
    """Whatever a route raised, as the error its problem response shows."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, RequestValidationError):
        return validation_problem(exc)
    if isinstance(exc, HTTPException):
        return HttpProblem(exc.status_code, str(exc.detail or ""))
    if isinstance(exc, psycopg.OperationalError):
        log.warning(
            "database unavailable in %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return DatabaseUnavailable("the database could not be reached", hint="try again shortly")
    log_unexpected(request, exc)
    return InternalError("an unexpected error occurred; it was logged", hint="try again later")


class ProblemRoute(APIRoute):
    """A route whose errors are problem details (``application/problem+json``)."""

    # Routes a browser lands on (the OAuth callback) show a page to one that asks for HTML,
    # and ignore query parameters they do not know (RFC 6749: a client ignores unrecognised
    # response parameters); the others refuse them.
    pages = False

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        locations = parameter_locations(self.dependant)
        has_body = self.body_field is not None
        query = {name for name, where in locations.items() if where == "query"}

        async def run(request: Request) -> Response:
            try:
                # Checked once the caller is known (auth.caller): a 401 comes first.
                request.state.known_query = None if self.pages else query
                if (
                    has_body
                    and await request.body()
                    and not is_json(request.headers.get("content-type"))
                ):
                    raise UnsupportedMediaType(
                        "the request body must be JSON",
                        hint="send it with Content-Type: application/json",
                    )
                return await handler(request)
            except Exception as exc:
                if not isinstance(exc, ServiceError | RequestValidationError | HTTPException):
                    # Read now if the route did not: its secrets are masked in the log line.
                    with contextlib.suppress(Exception):
                        await request.body()
                error = as_problem(request, exc)
                return self.render(request, error, locations, has_body, exc)

        return run

    def render(
        self,
        request: Request,
        error: ServiceError,
        locations: dict[str, str],
        has_body: bool,
        exc: Exception,
    ) -> Response:
        field = error.field
        if field and field.split(".")[0] not in LOCATIONS:
            where = locations.get(field.split(".")[0]) or ("body" if has_body else None)
            field = f"{where}.{field}" if where else field
        details = problem(error, request.url.path, field=field)
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        if self.pages and wants_html(request):
            return pages.failure(details, headers)
        return respond(details, headers)


class PageRoute(ProblemRoute):
    """A route a browser lands on: a page for a browser, JSON for anyone else."""

    pages = True
