"""Errors of the service layer: each carries the HTTP status the API answers with (as RFC 9457
problem details) and a one-line message the CLI prints."""

from __future__ import annotations

from agency_crm.errors import AgencyCrmError


class ServiceError(AgencyCrmError):
    """A refusal or failure a caller can act on.

    ``status`` is the HTTP status, ``code`` a stable machine-readable word (the problem's
    ``type`` ends with it), ``field`` the request field at fault, if one is.
    """

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        code: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        if code is not None:
            self.code = code
        self.field = field


class NotFound(ServiceError):
    """The client, config, pipeline ... does not exist, or is not the caller's to see."""

    status = 404
    code = "not_found"
    title = "Not found"


class Forbidden(ServiceError):
    """The caller is known but may not do this (a client's token on an agency-wide route)."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class Invalid(ServiceError):
    """A request field the CRM or our rules refuse (422, naming the field)."""

    status = 422
    code = "invalid"
    title = "Invalid request"


class Conflict(ServiceError):
    """The request contradicts the current state (a second CRM, a used OAuth state)."""

    status = 409
    code = "conflict"
    title = "Conflict"


class CrmRefused(ServiceError):
    """The CRM refused the credentials or the request (400, with the CRM's reason)."""

    status = 400
    code = "crm_refused"
    title = "The CRM refused the request"


class CrmUnavailable(ServiceError):
    """The CRM could not be asked (timeout, 5xx, 429, unreadable answer): try again later."""

    status = 502
    code = "crm_unavailable"
    title = "The CRM could not be reached"


class NotConfigured(ServiceError):
    """This installation lacks a setting the request needs (HubSpot app credentials)."""

    status = 503
    code = "not_configured"
    title = "Not configured"
