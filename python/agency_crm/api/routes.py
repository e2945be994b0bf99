"""The routes of the spec's API Endpoints, under ``/api/v1``: thin, each a call of the service
layer (:class:`~agency_crm.service.crm.CrmService`), which runs every database step as the
``crm_api`` role for the one client of the request.

Who is calling: ``Authorization: Bearer acrm_...``, a token of one client or an agency-wide
one (:mod:`agency_crm.api.auth`). The ``/crm`` routes act for the token's client; an
agency-wide token names it with ``?client_id=``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import HTMLResponse

from agency_crm.api import pages
from agency_crm.api.auth import (
    AgencyCaller,
    CrmClient,
    PathClient,
    Service,
    optional_caller,
)
from agency_crm.api.params import TEXT_PATTERN, Bool, Timestamp, Uuid
from agency_crm.api.problems import problem_responses
from agency_crm.api.routing import PageRoute, ProblemRoute, wants_html
from agency_crm.service import models, reports
from agency_crm.service.tokens import Scope

PREFIX = "/api/v1"
# The largest offset a list takes (more would be a bigint's worth of rows to skip).
MAX_OFFSET = 2**31 - 1
NO_CONFIG = "The client does not exist (or is not the caller's to see), or has no CRM config."
NOT_CONNECTED = "The client's CRM is not connected (disconnected, or never finished)."
STORED_REFUSED = "The CRM refused the stored credentials (its reason in `detail`)."
OTHER_CRM = (
    "Another CRM is connected: a client has one (its name and how to disconnect it in "
    "`detail` and `hint`)."
)

router = APIRouter(prefix=PREFIX, route_class=ProblemRoute)

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page (1 to 200).")]
Offset = Annotated[
    int, Query(ge=0, le=MAX_OFFSET, description="Items to skip: the previous page's next_offset.")
]


@router.get(
    "/clients/{client_id}/meetings",
    operation_id="list_meetings",
    summary="List a client's meetings",
    tags=["meetings"],
    response_model=models.Page[models.Meeting],
    responses=problem_responses(401, 404, 422, 503),
)
async def list_meetings(
    client_id: PathClient,
    service: Service,
    upcoming: Annotated[
        Bool | None,
        Query(
            description="true: scheduled from now on and not cancelled; false: the others; "
            "left out: all."
        ),
    ] = None,
    order: Annotated[
        Literal["next", "newest"] | None,
        Query(
            description="next: soonest first; newest: latest scheduled first. Default: next "
            "with upcoming=true, else newest."
        ),
    ] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> models.Page[models.Meeting]:
    """The client's live meetings, a page at a time (`next_offset` is null on the last)."""
    return await service.meetings(
        client_id,
        upcoming=upcoming,
        next_first=None if order is None else order == "next",
        limit=limit,
        offset=offset,
    )


@router.get(
    "/crm/config",
    operation_id="get_crm_config",
    summary="Get the client's CRM configuration",
    tags=["crm"],
    response_model=models.CrmConfig,
    responses=problem_responses(401, 422, 503, says={404: NO_CONFIG}),
)
async def get_config(client_id: CrmClient, service: Service) -> models.CrmConfig:
    """The client's CRM connection and settings; each secret is `********` when set, null
    when not."""
    return await service.config(client_id)


@router.put(
    "/crm/config",
    operation_id="update_crm_config",
    summary="Change the pipeline, stage, owner or stage map",
    tags=["crm"],
    response_model=models.CrmConfig,
    responses=problem_responses(
        401,
        415,
        502,
        503,
        says={
            400: "The body is not JSON, or the CRM refused the stored credentials.",
            404: NO_CONFIG,
            409: NOT_CONNECTED,
            422: "A field's value is refused, or names an id the CRM does not have; `field` "
            "names it, and nothing was saved.",
        },
    ),
)
async def update_config(
    client_id: CrmClient, service: Service, update: models.ConfigUpdate
) -> models.CrmConfig:
    """Each id given is checked against the CRM first: one it does not know is a 422 naming
    the field, and nothing is saved. A field left out is kept; null clears it."""
    return await service.update_config(client_id, update)


@router.post(
    "/crm/connect/hubspot",
    operation_id="start_hubspot_connect",
    summary="Start connecting HubSpot (OAuth)",
    tags=["connect"],
    response_model=models.OAuthStart,
    responses=problem_responses(
        400,
        401,
        404,
        415,
        says={
            409: OTHER_CRM,
            422: "A field's value is refused (api_base_url: only where the server allows it).",
            503: "HubSpot OAuth is not configured on this server (AGENCY_CRM_HUBSPOT_CLIENT_ID,"
            " _CLIENT_SECRET, _REDIRECT_URI), or the database is unavailable.",
        },
    ),
)
async def connect_hubspot(
    client_id: CrmClient,
    service: Service,
    start: Annotated[models.HubSpotConnect | None, Body()] = None,
) -> models.OAuthStart:
    """The authorisation URL to send the user to. Its `state` is single-use, bound to the
    client and expires in ten minutes; HubSpot sends the browser back to the callback."""
    return await service.start_hubspot(client_id, start.api_base_url if start else None)


# The optional bearer token of the callback, in the document: either a token or none.
OPTIONAL_AUTH: dict[str, Any] = {"security": [{}]}


async def hubspot_callback(
    request: Request,
    service: Service,
    caller: Annotated[Scope | None, Depends(optional_caller)],
    state: Annotated[
        str,
        Query(
            min_length=1,
            max_length=200,
            pattern=TEXT_PATTERN,
            description="The flow's state parameter (HubSpot sends it back, also with an error).",
        ),
    ],
    code: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=TEXT_PATTERN,
            description="HubSpot's authorisation code; absent when `error` is set.",
        ),
    ] = None,
    error: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=TEXT_PATTERN,
            description="Set by HubSpot when the user declined (access_denied).",
        ),
    ] = None,
    error_description: Annotated[
        str | None, Query(max_length=2000, pattern=TEXT_PATTERN, description="HubSpot's reason.")
    ] = None,
) -> models.ConnectResult | Response:
    """Where HubSpot sends the browser back. The state is checked (unknown, reused, expired
    or another client's: refused), the code exchanged for tokens, which are stored
    encrypted. No token needed; one given must be valid, and a client's token only finishes
    that client's flow. A browser (`Accept: text/html`) gets a page, "Connected" or "Not
    connected: reason", with the same status; anyone else JSON."""
    result = await service.finish_hubspot(
        code=code,
        state=state,
        error=error,
        error_description=error_description,
        client_id=caller.client_id if caller else None,
    )
    if wants_html(request):
        return pages.connected(result)
    return result


router.add_api_route(
    "/crm/callback/hubspot",
    hubspot_callback,
    methods=["GET"],
    operation_id="hubspot_callback",
    summary="HubSpot's OAuth callback",
    tags=["connect"],
    response_model=models.ConnectResult,
    responses={
        200: {"content": {"text/html": {"schema": {"type": "string"}}}},
        **problem_responses(
            401,
            502,
            html=True,
            says={
                400: "The state is unknown, already used or expired; HubSpot reported an error "
                "(access_denied: the user declined); or HubSpot refused the code.",
                404: "The flow's client no longer exists.",
                409: OTHER_CRM,
                422: "The state or the code is missing, or a parameter is refused.",
                503: "HubSpot OAuth is not configured on this server, or the database is "
                "unavailable.",
            },
        ),
    },
    openapi_extra=OPTIONAL_AUTH,
    route_class_override=PageRoute,
)


def _connect_key(crm_type: Literal["pipedrive", "close"]) -> None:
    vendor = {"pipedrive": "Pipedrive", "close": "Close"}[crm_type]

    async def connect(
        client_id: CrmClient, service: Service, key: models.ApiKeyConnect
    ) -> models.ConnectResult:
        return await service.connect_key(client_id, crm_type, key.api_key, key.api_base_url)

    connect.__doc__ = (
        f"The key is tried against {vendor} (who it acts as, its pipelines and users) and "
        "saved encrypted only when it works; a refused key is a 400 with the CRM's reason. "
        f"{vendor} is set up for duplicate-proof pushing, defaults are proposed from it, and "
        "the client's earlier meetings and deals are queued for it. Connecting again "
        "replaces the key; another CRM connected is a 409."
    )
    router.add_api_route(
        f"/crm/connect/{crm_type}",
        connect,
        methods=["POST"],
        operation_id=f"connect_{crm_type}",
        summary=f"Connect {vendor} with an API key",
        tags=["connect"],
        response_model=models.ConnectResult,
        responses=problem_responses(
            401,
            404,
            415,
            502,
            503,
            says={
                400: "The body is not JSON, or the CRM refused the key (its reason in "
                "`detail`; nothing was saved).",
                409: OTHER_CRM,
                422: "A field's value is refused (api_base_url: only where the server allows it).",
            },
        ),
    )


_connect_key("pipedrive")
_connect_key("close")


@router.delete(
    "/crm/disconnect",
    operation_id="disconnect_crm",
    summary="Disconnect the client's CRM",
    tags=["connect"],
    response_model=models.DisconnectResult,
    responses=problem_responses(401, 422, 503, says={404: NO_CONFIG}),
)
async def disconnect(client_id: CrmClient, service: Service) -> models.DisconnectResult:
    """Soft: the config becomes inactive and `disconnected` and forgets its credentials; its
    pending and held pushes become `skipped`. Connecting again later starts clean."""
    return await service.disconnect(client_id)


@router.post(
    "/crm/test",
    operation_id="test_crm",
    summary="Test the CRM connection",
    tags=["crm"],
    response_model=models.TestResult,
    responses=problem_responses(401, 422, 502, 503, says={404: NO_CONFIG, 409: NOT_CONNECTED}),
)
async def test_connection(client_id: CrmClient, service: Service) -> models.TestResult:
    """The credentials work, and the pipeline, stage, owner and stage map the config names
    exist in the CRM; the outcome is written to the config's status."""
    return await service.test(client_id)


@router.get(
    "/crm/pipelines",
    operation_id="list_pipelines",
    summary="List the CRM's pipelines",
    tags=["crm"],
    response_model=list[models.Pipeline],
    responses=problem_responses(
        401, 422, 502, 503, says={400: STORED_REFUSED, 404: NO_CONFIG, 409: NOT_CONNECTED}
    ),
)
async def pipelines(client_id: CrmClient, service: Service) -> list[models.Pipeline]:
    """The CRM's deal pipelines with their stages (read from the CRM now)."""
    return await service.pipelines(client_id)


@router.get(
    "/crm/stages/{pipeline_id}",
    operation_id="list_stages",
    summary="List a pipeline's stages",
    tags=["crm"],
    response_model=list[models.Stage],
    responses=problem_responses(
        401,
        422,
        502,
        503,
        says={
            400: STORED_REFUSED,
            404: "The client does not exist (or is not the caller's), has no CRM config, or "
            "the CRM has no such pipeline.",
            409: NOT_CONNECTED,
        },
    ),
)
async def stages(
    client_id: CrmClient,
    service: Service,
    pipeline_id: Annotated[
        str, Path(max_length=200, pattern=TEXT_PATTERN, description="A pipeline of the CRM.")
    ],
) -> list[models.Stage]:
    """The stages of one of the CRM's pipelines; 404 for a pipeline it does not have."""
    return await service.stages(client_id, pipeline_id)


@router.get(
    "/crm/users",
    operation_id="list_users",
    summary="List the CRM's users",
    tags=["crm"],
    response_model=list[models.User],
    responses=problem_responses(
        401, 422, 502, 503, says={400: STORED_REFUSED, 404: NO_CONFIG, 409: NOT_CONNECTED}
    ),
)
async def users(client_id: CrmClient, service: Service) -> list[models.User]:
    """The CRM users who can own deals (the owner dropdown)."""
    return await service.users(client_id)


@router.get(
    "/crm/logs",
    operation_id="list_crm_logs",
    summary="The client's CRM push audit log",
    tags=["crm"],
    response_model=models.Page[models.PushLog],
    responses=problem_responses(401, 404, 422, 503),
)
async def logs(
    client_id: CrmClient,
    service: Service,
    status: Annotated[Literal["success", "failed", "skipped"] | None, Query()] = None,
    operation: Annotated[
        str | None,
        Query(pattern=r"^[a-z][a-z0-9_]{0,62}$", description="e.g. create_deal, get_me."),
    ] = None,
    push_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    lead_id: Annotated[Uuid | None, Query()] = None,
    meeting_id: Annotated[Uuid | None, Query()] = None,
    deal_id: Annotated[Uuid | None, Query()] = None,
    since: Annotated[Timestamp | None, Query(description="From this moment (RFC 3339).")] = None,
    until: Annotated[Timestamp | None, Query(description="Before this moment.")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> models.Page[models.PushLog]:
    """Every call made to the CRM, newest first, filtered; payloads were redacted before
    they were stored."""
    return await service.logs(
        client_id,
        status=status,
        operation=operation,
        push_id=push_id,
        lead_id=lead_id,
        meeting_id=meeting_id,
        deal_id=deal_id,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


# --------------------------------------------------------------------------- reports

# The sections of a client's report, as its path names them (agency_crm.report.CLIENT_SECTIONS).
SectionSlug = Literal[
    "show-rate",
    "show-rate-by-week",
    "show-rate-drivers",
    "funnel",
    "attribution",
    "markov",
    "lost-deals",
    "lost-reasons-by-stage",
    "stage-conversion",
    "time-in-stage",
    "velocity",
    "forecast",
]
Days = Annotated[
    int,
    Query(
        ge=1,
        le=1_000_000,
        description="The window: the days up to `as_of` (1 to 1,000,000; default 90).",
    ),
]
AsOf = Annotated[
    Timestamp | None,
    Query(description="The end of the window (RFC 3339, with its offset). Default: now."),
]
Currency = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Z]{3}$",
        description="Only the deals in this currency (ISO 4217). Default: the one the "
        "client's deals carry; needed when they carry several.",
    ),
]
_VALUE = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "null"}]}
REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["report", "client", "currency", "days", "as_of", "sections"],
    "properties": {
        "report": {"type": "string", "enum": ["client", "agency"]},
        "client": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["id", "name"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                    },
                },
                {"type": "null"},
            ]
        },
        "currency": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "days": {"type": "integer"},
        "as_of": {"type": "string", "format": "date-time"},
        "sections": {
            "type": "object",
            "description": "Each section's rows as its function returned them: numbers exact "
            "(numeric as its decimal text), dates and times ISO 8601, NULL null.",
            "additionalProperties": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": _VALUE},
            },
        },
    },
}
REPORT_JSON: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report: its arguments and each section's rows.",
        "content": {"application/json": {"schema": REPORT_SCHEMA}},
    }
}
REPORT_PAGE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "One self-contained HTML page: charts inlined as SVG, no script, "
        "nothing loaded.",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }
}
REPORT_422 = (
    "A parameter is refused (`field` names it), or the client's deals carry several "
    "currencies and `currency` is not given."
)
AGENCY_503 = (
    "The database is unavailable, or the server's login may not read as crm_analyst, the role "
    "agency reports read every client as."
)


class ReportJson(Response):
    """A report as JSON, its numbers exact (:func:`agency_crm.report.to_json`)."""

    media_type = "application/json"


def _json(report: Any) -> ReportJson:
    from agency_crm.report import to_json

    return ReportJson(to_json(report), headers={"Cache-Control": "no-store"})


async def _page(report: Any) -> HTMLResponse:
    from agency_crm.report.html import POLICY

    headers = {**pages.HEADERS, "Content-Security-Policy": POLICY}
    return HTMLResponse(await reports.page(report), headers=headers)


@router.get(
    "/clients/{client_id}/analytics",
    operation_id="get_client_analytics",
    summary="A client's analytics, every section",
    tags=["analytics"],
    response_class=ReportJson,
    responses={**REPORT_JSON, **problem_responses(401, 404, 503, says={422: REPORT_422})},
)
async def client_analytics(
    client_id: PathClient,
    service: Service,
    days: Days = 90,
    as_of: AsOf = None,
    currency: Currency = None,
) -> ReportJson:
    """Every section of the client's report: each one analytics function's rows for the window
    of `days` up to `as_of`, as `agency-crm report --format json` prints them."""
    report = await reports.client_report(
        service, client_id, days=days, as_of=as_of, currency=currency
    )
    return _json(report)


@router.get(
    "/clients/{client_id}/analytics/{section}",
    operation_id="get_client_analytics_section",
    summary="One section of a client's analytics",
    tags=["analytics"],
    response_class=ReportJson,
    responses={**REPORT_JSON, **problem_responses(401, 404, 503, says={422: REPORT_422})},
)
async def client_analytics_section(
    client_id: PathClient,
    service: Service,
    section: Annotated[
        SectionSlug, Path(description="The section: which analytics function (docs/reports.md).")
    ],
    days: Days = 90,
    as_of: AsOf = None,
    currency: Currency = None,
) -> ReportJson:
    """One section of the client's report (show-rate: crm.get_show_rate_analysis, funnel:
    crm.get_funnel_analytics, ...): the function's rows, in the report's JSON."""
    report = await reports.client_report(
        service, client_id, days=days, as_of=as_of, currency=currency, sections=[section]
    )
    return _json(report)


@router.get(
    "/clients/{client_id}/report",
    operation_id="get_client_report",
    summary="A client's report as one HTML page",
    tags=["analytics"],
    response_class=HTMLResponse,
    responses={**REPORT_PAGE, **problem_responses(401, 404, 503, says={422: REPORT_422})},
)
async def client_report_page(
    client_id: PathClient,
    service: Service,
    days: Days = 90,
    as_of: AsOf = None,
    currency: Currency = None,
) -> HTMLResponse:
    """The client's report as `agency-crm report --format html` writes it: charts and key
    numbers of every section, one file that opens offline."""
    report = await reports.client_report(
        service, client_id, days=days, as_of=as_of, currency=currency
    )
    return await _page(report)


@router.get(
    "/agency/analytics/comparison",
    operation_id="get_agency_comparison",
    summary="Every client side by side",
    tags=["analytics"],
    response_class=ReportJson,
    responses={
        **REPORT_JSON,
        **problem_responses(401, 403, says={422: REPORT_422, 503: AGENCY_503}),
    },
)
async def agency_comparison(
    caller: AgencyCaller,
    service: Service,
    days: Days = 90,
    as_of: AsOf = None,
    currency: Currency = None,
) -> ReportJson:
    """crm.get_agency_comparison's rows: every client with the agency's figures and medians,
    and the clients whose show or win rate is significantly below the agency's. An agency-wide
    token only."""
    report = await reports.agency_report(service, days=days, as_of=as_of, currency=currency)
    return _json(report)


@router.get(
    "/agency/report",
    operation_id="get_agency_report",
    summary="Every client side by side, as one HTML page",
    tags=["analytics"],
    response_class=HTMLResponse,
    responses={
        **REPORT_PAGE,
        **problem_responses(401, 403, says={422: REPORT_422, 503: AGENCY_503}),
    },
)
async def agency_report_page(
    caller: AgencyCaller,
    service: Service,
    days: Days = 90,
    as_of: AsOf = None,
    currency: Currency = None,
) -> HTMLResponse:
    """The agency's report as `agency-crm report --agency --format html` writes it. An
    agency-wide token only."""
    report = await reports.agency_report(service, days=days, as_of=as_of, currency=currency)
    return await _page(report)
