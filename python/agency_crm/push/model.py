"""What a push knows: the CRM config, the claimed push, the lead and the desired CRM deal."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

CrmType = Literal["hubspot", "pipedrive", "close"]

DEFAULT_BASE_URLS: dict[str, str] = {
    "hubspot": "https://api.hubapi.com",
    "pipedrive": "https://api.pipedrive.com",
    "close": "https://api.close.com",
}

# Where our external key is written in each CRM when the config does not say.
DEFAULT_KEY_FIELDS: dict[str, dict[str, str]] = {
    "hubspot": {"contact": "agency_crm_key", "deal": "agency_crm_key"},
    "pipedrive": {
        "person": "agency_crm_key",
        "deal": "agency_crm_key",
        "organization": "agency_crm_key",
    },
    "close": {"lead": "cf_agency_crm_key", "opportunity": "cf_agency_crm_key"},
}

LOST_REASONS: dict[str, str] = {
    "price_too_high": "Price too high",
    "chose_competitor": "Chose a competitor",
    "no_budget": "No budget",
    "timing_not_right": "Timing not right",
    "no_decision": "No decision",
    "champion_left": "Champion left",
    "went_silent": "Went silent",
    "project_cancelled": "Project cancelled",
    "bad_fit": "Bad fit",
    "other": "Other",
}


@dataclass
class Config:
    """One live CRM config (``crm.client_crm_configs``)."""

    id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    crm_type: CrmType
    api_key: str | None
    oauth_access_token: str | None
    oauth_refresh_token: str | None
    oauth_expires_at: datetime | None
    pipeline_id: str | None
    stage_id: str | None
    owner_id: str | None
    api_base_url: str | None
    stage_map: dict[str, str]
    external_key_fields: dict[str, str]
    max_attempts: int

    @property
    def base_url(self) -> str:
        """The API root: the config's own, else the vendor's public one."""
        return (self.api_base_url or DEFAULT_BASE_URLS[self.crm_type]).rstrip("/")

    def key_field(self, entity: str) -> str:
        """Where our external key goes for a CRM entity (contact, deal, person, lead, ...)."""
        return self.external_key_fields.get(entity) or DEFAULT_KEY_FIELDS[self.crm_type][entity]

    def secrets(self) -> list[str | None]:
        """Every secret this config holds (for redaction)."""
        return [self.api_key, self.oauth_access_token, self.oauth_refresh_token]


@dataclass
class Claimed:
    """A push claimed under our lease."""

    client_id: uuid.UUID
    id: int
    operation: str
    lead_id: uuid.UUID | None
    meeting_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    attempts: int
    crm_config_id: uuid.UUID


@dataclass
class Lead:
    """The lead a push is about (the CRM contact / person / Close lead)."""

    id: uuid.UUID
    email: str | None
    first_name: str | None
    last_name: str | None
    company: str | None
    title: str | None
    phone: str | None

    @property
    def key(self) -> str:
        """Our stable external key of the lead's CRM contact."""
        return f"acrm-lead-{self.id}"

    @property
    def display_name(self) -> str:
        """A name for the CRM: the person's name, else the email, else the company."""
        name = " ".join(p for p in (self.first_name, self.last_name) if p)
        return name or self.email or self.company or f"Lead {str(self.id)[:8]}"


@dataclass
class DealState:
    """What the CRM deal (opportunity) should look like now."""

    key: str
    entity_id: uuid.UUID
    name: str
    amount: Decimal
    currency: str
    stage: str | None  # our stage; None for a meeting that has no deal yet
    probability: int | None
    status: Literal["open", "won", "lost"]
    lost_reason: str | None
    close_date: date | None


@dataclass
class ExternalId:
    """A row of ``crm.crm_external_ids``: the CRM id, or a create whose outcome is unknown."""

    crm_id: str | None
    create_sent_at: datetime | None


@dataclass
class PushContext:
    """Everything one push needs, read in one query when the push starts."""

    push: Claimed
    config: Config
    lead: Lead
    deal: DealState | None
    skip_reason: str | None = None
    ids: dict[tuple[str, str], ExternalId] = field(default_factory=dict)


@dataclass
class CallRecord:
    """One CRM call, as it goes into ``crm.crm_push_log`` (payloads already redacted)."""

    operation: str
    status: Literal["success", "failed", "skipped"]
    request_payload: dict[str, Any] | None
    response_payload: Any
    http_status: int | None
    error_code: str | None
    error_message: str | None
    duration_ms: int
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    crm_contact_id: str | None = None
    crm_deal_id: str | None = None
    crm_org_id: str | None = None


def org_key(company: str) -> str:
    """Our stable key of an organisation: its normalised name (hashed when long)."""
    name = " ".join(company.lower().split())
    if len(name) <= 180:
        return f"acrm-org-{name}"
    return "acrm-org-sha1-" + hashlib.sha1(name.encode()).hexdigest()
