"""Who is calling, and for which client.

``Authorization: Bearer acrm_...``: a token of one client, or an agency-wide one. Only the
token's SHA-256 digest reaches the database (``crm.authenticate_api_token``). A missing,
unknown or revoked token is a 401 with ``WWW-Authenticate: Bearer``.

The client a request acts for: the token's own; an agency-wide token names it (the
``client_id`` query parameter of the ``/crm`` routes, the path of ``/clients/{client_id}``).
A client token naming another client gets the 404 a client that does not exist gets, so it
cannot learn whether that client exists.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agency_crm.api.params import Uuid
from agency_crm.api.problems import FieldError, Unauthorized, ValidationProblem
from agency_crm.api.routing import check_query
from agency_crm.service.crm import CrmService
from agency_crm.service.errors import Forbidden, NotFound
from agency_crm.service.tokens import Scope, looks_like_token

# Where create_app (or the agency's own application) keeps the service.
STATE_ATTRIBUTE = "crm_service"

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="acrm_...",
    description="An API token (agency-crm api-token create): one client's, or agency-wide.",
)


def get_service(request: Request) -> CrmService:
    """The service of the application (``app.state.crm_service``); an application may
    instead override this dependency (``app.dependency_overrides[get_service]``)."""
    service = getattr(request.app.state, STATE_ATTRIBUTE, None)
    if not isinstance(service, CrmService):
        raise RuntimeError(
            f"no CrmService at app.state.{STATE_ATTRIBUTE}: open one in the application's "
            "lifespan (agency_crm.api.open_service), or override agency_crm.api.get_service"
        )
    return service


Service = Annotated[CrmService, Depends(get_service)]


def _refused(reason: str) -> Unauthorized:
    return Unauthorized(
        reason,
        hint="send Authorization: Bearer <token>; agency-crm api-token create makes one",
    )


async def _authenticate(token: str, service: CrmService) -> Scope:
    if not looks_like_token(token):
        raise _refused("the bearer token is not an agency-crm API token")
    scope = await service.authenticate(token)
    if scope is None:
        raise _refused("the bearer token is unknown or revoked")
    return scope


async def caller(
    request: Request,
    service: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Scope:
    """The scope of the request's bearer token; 401 without a valid one. Then a query
    parameter the route does not take is a 422 (the route class says which it takes)."""
    if credentials is None:
        raise _refused("this request needs a bearer token")
    scope = await _authenticate(credentials.credentials, service)
    known = getattr(request.state, "known_query", None)
    if known is not None:
        check_query(request, known)
    return scope


async def optional_caller(
    request: Request,
    service: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Scope | None:
    """The scope of the bearer token if the request has an Authorization header (which must
    then be a valid token), else None."""
    if credentials is None:
        if request.headers.get("authorization") is not None:
            raise _refused("the Authorization header is not a bearer token")
        return None
    return await _authenticate(credentials.credentials, service)


Caller = Annotated[Scope, Depends(caller)]


def client_not_found(client_id: uuid.UUID) -> NotFound:
    """What a client that does not exist, or is not the caller's, answers (the service's
    own words for a client that does not exist)."""
    return NotFound(f"client {client_id} does not exist", code="client_not_found")


async def crm_client(
    scope: Caller,
    client_id: Annotated[
        Uuid | None,
        Query(
            description="The client the request acts for: required with an agency-wide "
            "token; a client's token may name its own client."
        ),
    ] = None,
) -> uuid.UUID:
    """The client of a ``/crm`` request."""
    if scope.client_id is None:
        if client_id is None:
            raise ValidationProblem(
                [FieldError(field="query.client_id", message="required with an agency-wide token")]
            )
        return client_id
    if client_id is not None and client_id != scope.client_id:
        raise client_not_found(client_id)
    return scope.client_id


async def path_client(
    scope: Caller,
    client_id: Annotated[Uuid, Path(description="The client.")],
) -> uuid.UUID:
    """The client of a ``/clients/{client_id}`` request."""
    if scope.client_id is not None and client_id != scope.client_id:
        raise client_not_found(client_id)
    return client_id


async def agency_caller(scope: Caller) -> Scope:
    """The caller of an ``/agency`` route, which reads every client: an agency-wide token's
    only (a client's token: 403, as what it asks for is no secret)."""
    if scope.client_id is not None:
        raise Forbidden(
            "this route reads every client: it needs an agency-wide token",
            hint="agency-crm api-token create --agency makes one",
            code="agency_token_required",
        )
    return scope


CrmClient = Annotated[uuid.UUID, Depends(crm_client)]
PathClient = Annotated[uuid.UUID, Depends(path_client)]
AgencyCaller = Annotated[Scope, Depends(agency_caller)]
