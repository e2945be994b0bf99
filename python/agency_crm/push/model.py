"""What a push knows: its words (the outcomes and statuses the SQL also spells), the CRM
config, the claimed push and what the CRM must hold after it (read from
``crm.push_target``)."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from agency_crm.crypto import SECRET_COLUMNS, KeyRing, SecretError

CrmType = Literal["hubspot", "pipedrive", "close"]

# The latest ``crm.finish_push`` lets a retried or deferred push wait (its p_retry_at): a
# push is never parked longer than this.
MAX_RETRY_DELAY = timedelta(days=7)


class Outcome(enum.StrEnum):
    """How one attempt ended, as ``crm.finish_push`` records it (its ``p_outcome``); also the
    kind of a :class:`~agency_crm.push.http.CrmError`."""

    DONE = "done"  # the CRM has it
    RETRY = "retry"  # try again later, spending an attempt
    DEFER = "defer"  # wait, without spending an attempt (a create in doubt, search lag)
    FAILED = "failed"  # not retryable
    HELD = "held"  # credentials refused: the client's pushes wait for the config to be fixed


class QueueStatus(enum.StrEnum):
    """``crm.crm_push_queue.status`` (its CHECK constraint lists the same words)."""

    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    DONE = "done"
    FAILED = "failed"
    DEAD = "dead"
    HELD = "held"
    SKIPPED = "skipped"  # never sent: the client disconnected its CRM


class Finished(enum.StrEnum):
    """What ``crm.finish_push`` returns: the push's new status, ``superseded`` (done: a newer
    pending push of the entity sends its current state) or ``lease_lost``."""

    DONE = "done"
    PENDING = "pending"
    FAILED = "failed"
    DEAD = "dead"
    HELD = "held"
    SUPERSEDED = "superseded"
    LEASE_LOST = "lease_lost"


class Reported(enum.StrEnum):
    """How ``push drain`` reports one finished push (its progress lines and summary)."""

    DONE = "done"
    SKIPPED = "skipped"  # done without a CRM call: its lead, meeting or deal is deleted
    SUPERSEDED = "superseded"
    RETRY = "retry"
    DEFERRED = "deferred"
    FAILED = "failed"
    DEAD = "dead"
    HELD = "held"
    LEASE_LOST = "lease_lost"


class LogStatus(enum.StrEnum):
    """``crm.crm_push_log.status`` of one CRM call."""

    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass
class Config:
    """One live CRM config (``crm.client_crm_configs``)."""

    id: uuid.UUID
    client_id: uuid.UUID
    client_name: str
    crm_type: CrmType
    # The decrypted secrets: left out of the repr, so that no log line, exception or
    # assertion that shows a config (or a PushContext holding one) shows them.
    api_key: str | None = field(repr=False)
    oauth_access_token: str | None = field(repr=False)
    oauth_refresh_token: str | None = field(repr=False)
    oauth_expires_at: datetime | None
    pipeline_id: str | None
    stage_id: str | None
    owner_id: str | None
    api_base_url: str | None
    stage_map: dict[str, str]
    external_key_fields: dict[str, str]
    # Why a stored secret cannot be decrypted (its secrets are then None); never a secret.
    secret_error: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], keys: KeyRing) -> Config:
        """A Config from a row of the ``live_configs`` query, its secrets decrypted."""
        maps = {
            name: {str(k): str(v) for k, v in (row[name] or {}).items()}
            for name in ("stage_map", "external_key_fields")
        }
        plain: dict[str, str | None] = {}
        problems: list[str] = []
        for column in SECRET_COLUMNS["client_crm_configs"]:
            stored = row[column]
            plain[column] = None
            if stored is None:
                continue
            try:
                plain[column] = keys.decrypt(stored, client_id=row["client_id"], column=column)
            except SecretError as exc:
                problems.append(exc.one_line())
        config = cls(**{**row, **maps, **plain})
        if problems:
            config.secret_error = "; ".join(problems)
            config.api_key = config.oauth_access_token = config.oauth_refresh_token = None
        return config

    def secrets(self) -> list[str | None]:
        """Every secret this config holds (for redaction)."""
        return [self.api_key, self.oauth_access_token, self.oauth_refresh_token]


@dataclass
class Claimed:
    """A push: claimed under our lease, or (``push drain --dry-run``) only due. ``attempts``
    names the claim: ``crm.finish_push`` finishes only the claim with that number."""

    client_id: uuid.UUID
    id: int
    operation: str
    lead_id: uuid.UUID | None
    meeting_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    attempts: int


@dataclass
class Lead:
    """The lead a push is about (the CRM contact / person / Close lead)."""

    id: uuid.UUID
    key: str  # our stable external key of its CRM contact
    email: str | None
    first_name: str | None
    last_name: str | None
    name: str  # the name the CRM shows
    company: str | None
    title: str | None
    phone: str | None
    org_key: str | None  # our key of the company's organisation; None without a company


@dataclass
class DealState:
    """What the CRM deal (opportunity) should look like now."""

    key: str
    entity_id: uuid.UUID  # the meeting or deal the CRM deal stands for
    deal_id: uuid.UUID | None  # our deal; None for a meeting that has none yet
    name: str
    amount: Decimal
    currency: str
    stage: str | None  # our stage; None for a meeting that has no deal yet
    crm_stage: str | None  # the config's stage_map entry for it, if any
    probability: int | None
    status: Literal["open", "won", "lost"]
    lost_reason: str | None
    close_date: date | None


@dataclass
class ExternalId:
    """A row of ``crm.crm_external_ids``: the CRM id, or a create whose outcome is unknown."""

    crm_id: str | None
    create_sent_at: datetime | None


class IdWrite(NamedTuple):
    """A CRM id a push learnt, for ``crm.record_crm_id`` (create_sent_at: a create not yet
    complete in every step)."""

    entity_type: str
    external_key: str
    entity_id: uuid.UUID | None
    crm_id: str
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
    status: LogStatus
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
