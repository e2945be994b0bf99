"""The shapes the HTTP API answers and accepts, and ``--json`` prints (one schema for both).

Request bodies are strict (a boolean refuses ``0``, a string refuses ``5``) and refuse unknown
fields, so a typo is a 422 naming the field rather than a silent no-op."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Final, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agency_crm.service.errors import Invalid

CrmType = Literal["hubspot", "pipedrive", "close"]
ConnectionStatus = Literal["pending", "connected", "error", "disconnected"]
# Our deal stages (crm.deal_stage_type): the keys of a config's stage map.
DealStage = Literal[
    "qualification",
    "proposal",
    "negotiation",
    "verbal_commit",
    "contract_sent",
    "closed_won",
    "closed_lost",
]
# An id of the CRM's (pipeline, stage, user): any text without control characters, which
# neither a CRM nor a PostgreSQL text value (NUL) takes.
CrmId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
# An API key or token travels in an HTTP header: visible ASCII only.
ApiKey = Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[!-~]+$")]
BaseUrl = Annotated[str, Field(min_length=8, max_length=500, pattern=r"^https?://[!-~]+$")]
# What a set secret reads as: never the secret, nor a piece of it.
MASK: Final = "********"

T = TypeVar("T")


class Answer(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


class Body(BaseModel):
    """A request body: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Credentials(Answer):
    """Which secrets the config holds, masked: ``********`` when set, null when not."""

    api_key: Literal["********"] | None = Field(
        description="API key or HubSpot private-app token (masked)."
    )
    oauth_access_token: Literal["********"] | None = Field(
        description="HubSpot OAuth access token (masked)."
    )
    oauth_refresh_token: Literal["********"] | None = Field(
        description="HubSpot OAuth refresh token (masked)."
    )
    oauth_expires_at: datetime | None = Field(description="When the access token expires.")


class CrmConfig(Answer):
    """A client's CRM connection (``crm.client_crm_configs``), secrets masked."""

    id: uuid.UUID
    client_id: uuid.UUID
    crm_type: CrmType
    is_active: bool
    connection_status: ConnectionStatus
    pipeline_id: str | None = Field(description="Pipeline new deals go into.")
    stage_id: str | None = Field(description="Stage new deals start in.")
    owner_id: str | None = Field(description="CRM user who owns new deals.")
    stage_map: dict[str, str] = Field(description="Our deal stage -> the CRM's stage id.")
    hubspot_portal_id: str | None
    api_base_url: str | None = Field(description="API root; null: the vendor's own.")
    external_key_fields: dict[str, str] = Field(
        description="CRM entity -> the property or custom field holding our key."
    )
    last_successful_push_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    credentials: Credentials


class ConfigUpdate(Body):
    """``PUT /crm/config``: the fields to change (a field left out is kept; null clears it).
    Each id is checked against the CRM before anything is saved."""

    pipeline_id: CrmId | None = Field(default=None, description="Pipeline new deals go into.")
    stage_id: CrmId | None = Field(default=None, description="Stage new deals start in.")
    owner_id: CrmId | None = Field(default=None, description="CRM user who owns new deals.")
    stage_map: dict[DealStage, CrmId] | None = Field(
        default=None,
        description="Our deal stage -> the CRM's stage id (of the config's pipeline); "
        "replaces the whole map.",
    )


class ApiKeyConnect(Body):
    """``POST /crm/connect/pipedrive`` and ``/crm/connect/close``."""

    api_key: ApiKey = Field(description="The CRM API key; tested against the CRM, saved encrypted.")
    api_base_url: BaseUrl | None = Field(
        default=None,
        description="API root instead of the vendor's (the sandbox); only where the server "
        "allows it (agency-crm serve --allow-api-base-url).",
    )


class HubSpotConnect(Body):
    """``POST /crm/connect/hubspot``: start the OAuth flow."""

    api_base_url: BaseUrl | None = Field(
        default=None,
        description="HubSpot root instead of HubSpot's own (the sandbox); only where the server "
        "allows it.",
    )


class OAuthStart(Answer):
    """Where to send the user to consent, and until when the flow may finish."""

    authorization_url: str
    expires_at: datetime


class Backfill(Answer):
    """Pushes queued so the CRM gets the client's history."""

    meetings: int
    deals: int


class Proposed(Answer):
    """Defaults read from the CRM, used for the settings the config did not have."""

    pipeline_id: str | None
    stage_id: str | None
    owner_id: str | None


class ConnectResult(Answer):
    """A connection saved: the config, whether it replaced the credentials of the same CRM,
    the defaults proposed from the CRM, and the history queued for it."""

    config: CrmConfig
    replaced: bool
    proposed: Proposed
    backfill: Backfill


class DisconnectResult(Answer):
    """The config, now inactive and disconnected, and how many pushes were skipped."""

    config: CrmConfig
    skipped_pushes: int


class TestResult(Answer):
    """``POST /crm/test``: the credentials work and the configured ids exist in the CRM."""

    __test__ = False  # not a pytest test class

    ok: bool
    connection_status: ConnectionStatus
    problems: list[str]
    pipelines: int
    users: int


class Stage(Answer):
    """A stage of a CRM pipeline."""

    id: str
    label: str


class Pipeline(Answer):
    """A deal pipeline of the CRM with its stages."""

    id: str
    label: str
    stages: list[Stage]


class User(Answer):
    """A CRM user who can own deals."""

    id: str
    name: str


class Meeting(Answer):
    """A booked meeting (``crm.meetings``)."""

    id: uuid.UUID
    client_id: uuid.UUID
    lead_id: uuid.UUID
    campaign_id: uuid.UUID | None
    scheduled_at: datetime
    duration_minutes: int
    meeting_type: str
    booked_at: datetime
    booked_by: str | None
    booking_method: str | None
    meeting_link: str | None
    confirmed: bool
    reminder_sent: bool
    showed_up: bool | None
    meeting_outcome: str | None
    rescheduled_count: int
    cancelled_at: datetime | None
    deal_id: uuid.UUID | None
    converting_channel: str | None
    created_at: datetime
    updated_at: datetime


class PushLog(Answer):
    """One CRM call of the audit log (``crm.crm_push_log``), payloads redacted."""

    id: uuid.UUID
    created_at: datetime
    push_id: int | None
    operation: str
    status: Literal["success", "failed", "skipped"]
    http_status: int | None
    error_code: str | None
    error_message: str | None
    duration_ms: int | None
    lead_id: uuid.UUID | None
    meeting_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    crm_contact_id: str | None
    crm_deal_id: str | None
    crm_org_id: str | None
    request_payload: dict[str, object] | list[object] | None
    response_payload: dict[str, object] | list[object] | str | None


class Page(Answer, Generic[T]):
    """One page of a list: ``next_offset`` is null on the last page."""

    items: list[T]
    limit: int
    offset: int
    next_offset: int | None


def config_update(changes: dict[str, Any]) -> ConfigUpdate:
    """A :class:`ConfigUpdate` from a caller that is not the API (the CLI), whose refusal is
    the service's :class:`~agency_crm.service.errors.Invalid` naming the field, as the API's
    422 does."""
    try:
        return ConfigUpdate.model_validate(changes)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = error["loc"]
        if len(loc) == 3 and loc[0] == "stage_map" and loc[2] == "[key]":
            raise Invalid(
                f"stage_map.{loc[1]}: {loc[1]!r} is not one of our deal stages",
                hint="the keys are our stages: " + ", ".join(get_args(DealStage)),
                field=f"stage_map.{loc[1]}",
            ) from None
        field = ".".join(str(part) for part in loc)
        raise Invalid(f"{field}: {error['msg']}", field=field) from None
