"""Errors as RFC 9457 problem details (``application/problem+json``), and what the OpenAPI
document says about them.

Every refusal of the API is one :class:`Problem`: ``type`` is ``urn:agency-crm:problem:`` and
the stable ``code``, ``title`` the kind of problem, ``detail`` the readable message, ``field``
the request field at fault (``body.api_key``, ``query.limit``, ``path.client_id``), ``hint``
what to do. A problem never echoes a request value, so no secret sent in a request comes back.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from agency_crm.service.errors import ServiceError

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:agency-crm:problem:"
# The challenge of a 401 (RFC 6750).
AUTHENTICATE = 'Bearer realm="agency-crm"'
# Where a request field comes from, as FastAPI names it in a validation error's location.
LOCATIONS = ("body", "query", "path", "header", "cookie")


class FieldError(BaseModel):
    """One field a request got wrong."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Where: body.api_key, query.limit, path.client_id ...")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details: what went wrong, in words and as a stable code."""

    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "example": {
                "type": "urn:agency-crm:problem:client_not_found",
                "title": "Not found",
                "status": 404,
                "detail": "client 6f1c0b9e-3d5a-4a8e-9d0f-2b7c4e1a8f35 does not exist",
                "instance": "/api/v1/clients/6f1c0b9e-3d5a-4a8e-9d0f-2b7c4e1a8f35/meetings",
                "code": "client_not_found",
            }
        },
    )

    type: str = Field(description="urn:agency-crm:problem:<code>")
    title: str = Field(description="The kind of problem, the same for every occurrence.")
    status: int = Field(ge=400, le=599, description="The HTTP status.")
    detail: str = Field(description="What went wrong this time, readable.")
    instance: str | None = Field(default=None, description="The request's path.")
    code: str = Field(description="Stable machine-readable word, e.g. client_not_found.")
    field: str | None = Field(default=None, description="The request field at fault, if one.")
    hint: str | None = Field(default=None, description="What to do about it.")
    errors: list[FieldError] | None = Field(
        default=None, description="Every field a request got wrong (422)."
    )


class ApiError(ServiceError):
    """A refusal of the HTTP layer itself (the service layer raises the others)."""


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"
    title = "Unauthorized"


class MalformedBody(ApiError):
    status = 400
    code = "malformed_body"
    title = "Malformed request body"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported media type"


class RouteNotFound(ApiError):
    status = 404
    code = "route_not_found"
    title = "Not found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"
    title = "Method not allowed"


class DatabaseUnavailable(ApiError):
    status = 503
    code = "database_unavailable"
    title = "The database could not be reached"


class InternalError(ApiError):
    status = 500
    code = "internal_error"
    title = "Internal server error"


def problem(exc: ServiceError, instance: str | None, *, field: str | None = None) -> Problem:
    """The problem details of an error (``field``: the error's field as the request has it)."""
    return Problem(
        type=TYPE_PREFIX + exc.code,
        title=exc.title,
        status=exc.status,
        detail=exc.message,
        instance=instance,
        code=exc.code,
        field=field or exc.field,
        hint=exc.hint,
        errors=getattr(exc, "errors", None),
    )


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        if isinstance(content, Problem):
            content = content.model_dump(mode="json", exclude_none=True)
        return super().render(content)


def respond(details: Problem, headers: dict[str, str] | None = None) -> ProblemResponse:
    """The response of a problem (with WWW-Authenticate on a 401)."""
    headers = dict(headers or {})
    if details.status == 401:
        headers.setdefault("WWW-Authenticate", AUTHENTICATE)
    return ProblemResponse(details, status_code=details.status, headers=headers)


# --------------------------------------------------------------------------- validation


def field_name(loc: tuple[int | str, ...]) -> str:
    """A validation error's location as a dotted field: ("body", "api_key") -> body.api_key,
    ("query", "limit") -> query.limit; the whole body: body."""
    return ".".join(str(part) for part in loc) if loc else "request"


class ValidationProblem(ApiError):
    """422: the request is well-formed but a field's value is refused."""

    status = 422
    code = "validation_error"
    title = "Invalid request"

    def __init__(self, errors: list[FieldError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first.field}: {first.message}{more}", field=first.field)
        self.errors = errors


# pydantic's messages that quote the value they refused: said without it, so that a secret
# sent in the wrong field (or too long) never comes back in the answer.
_QUOTING = {"literal_error", "enum", "uuid_parsing", "string_pattern_mismatch"}


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "not a field of this request"
    if kind == "string_pattern_mismatch":
        return "contains characters this field does not take"
    if kind in ("uuid_parsing", "uuid_type"):
        return "not a UUID (expected 8-4-4-4-12 hexadecimal digits)"
    if kind in _QUOTING:
        expected = (error.get("ctx") or {}).get("expected")
        return f"must be {expected}" if expected else "not one of the values this field takes"
    return str(error.get("msg", "invalid"))


def validation_problem(exc: RequestValidationError) -> ServiceError:
    """FastAPI's validation error as a problem: 400 when the body is not JSON at all, else
    422 naming each field."""
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return MalformedBody(
            "the request body is not valid JSON",
            hint="send a JSON object with Content-Type: application/json",
        )
    fields = [
        FieldError(field=field_name(tuple(e.get("loc") or ())), message=_message(e)) for e in errors
    ]
    return ValidationProblem(fields or [FieldError(field="request", message="invalid")])


# --------------------------------------------------------------------------- OpenAPI

_DESCRIPTIONS = {
    400: "The request body is not JSON.",
    401: "No bearer token, or one that is unknown or revoked.",
    403: "The token may not do this: the route needs an agency-wide token.",
    404: "The client does not exist, or is not the caller's to see.",
    409: "The request contradicts the client's state.",
    415: "The request body is not declared as JSON (Content-Type: application/json).",
    422: "A field's value is refused; `field` names it (body.api_key, query.limit ...).",
    500: "A bug: the server logged it (without secrets).",
    502: "The CRM could not be asked (timeout, 5xx, rate limit): try again later.",
    503: "The database is unavailable.",
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(
    *statuses: int, html: bool = False, says: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each status (and 500) with the Problem schema as
    application/problem+json (and a page as text/html, for the OAuth callback), described
    as ``says`` has it for this route, else generally."""
    out: dict[int | str, dict[str, Any]] = {}
    says = says or {}
    for status in sorted({*statuses, *says, 500}):
        content: dict[str, Any] = {MEDIA_TYPE: {"schema": PROBLEM_REF}}
        if html:
            content["text/html"] = {"schema": {"type": "string"}}
        response: dict[str, Any] = {
            "description": says.get(status) or _DESCRIPTIONS[status],
            "content": content,
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": 'Bearer realm="agency-crm"',
                    "schema": {"type": "string"},
                }
            }
        out[status] = response
    return out


def finish_document(document: dict[str, Any]) -> dict[str, Any]:
    """What FastAPI's document lacks or says wrong: the Problem schema the routes refer to,
    and parameters that cannot be null (a query or path parameter is a string or absent; it
    is never JSON null, though FastAPI writes ``anyOf: [..., {type: null}]`` for an optional
    one)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                choices = schema.get("anyOf")
                if isinstance(choices, list) and {"type": "null"} in choices:
                    kept = [c for c in choices if c != {"type": "null"}]
                    del schema["anyOf"]
                    if len(kept) == 1:
                        schema.update(kept[0])
                    else:
                        schema["anyOf"] = kept
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    definition = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in definition.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas["Problem"] = definition
    return document
