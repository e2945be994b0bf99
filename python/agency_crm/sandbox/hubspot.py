"""Fake HubSpot: CRM v3 contacts/deals, v4 default associations, owners, pipelines, OAuth v1.

Shapes follow ``crm-specs/hubspot/v3/*.json``, ``v4/associations.json`` and
``oauth-v1/oauth.json``; error bodies follow what HubSpot sends in practice
(``{status: "error", message, correlationId, category}``; 429 has ``errorType``/``policyName``).

Reads (GET by id, search, batch read) return HubSpot's default properties plus those named in
``properties``; a requested property without a value comes back as ``null``, as HubSpot does.
Writes (create, PATCH, batch upsert and update) return every property the record has.

Batch endpoints (``batch/upsert``, ``batch/update``, ``batch/read`` of contacts and deals, v4
``batch/associate/default`` between them) take at most 100 inputs, refuse duplicate ids and
answer 207 with per-input ``errors`` where HubSpot does; the "batch endpoints" section of
:class:`HubSpotApp` says which input problems fail one input and which fail the call.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

from agency_crm.sandbox.core import (
    AccountBase,
    AdminError,
    ApiError,
    BadRequestBody,
    Ctx,
    JSONDict,
    RateLimit,
    Request,
    Response,
    Route,
    SearchIndex,
    VendorApp,
    ascii_int,
    iso_millis_z,
    json_bool,
    new_correlation_id,
    utcnow,
)

#: OAuth app credentials the fake accepts on ``POST /oauth/v1/token``.
CLIENT_ID = "sbx-client"
CLIENT_SECRET = "sbx-secret"
#: Default lifetime of access tokens made by ``POST /_sandbox/accounts`` and refreshes.
DEFAULT_EXPIRES_IN = 1800
#: Seconds an authorization code from the consent page can be exchanged.
AUTH_CODE_TTL = 300
DEFAULT_SCOPES = ("crm.objects.contacts.write", "crm.objects.deals.write", "oauth")

#: The seeded deal pipeline (id, label) and its stages (id, label, probability, closed).
PIPELINE = ("default", "Sales Pipeline")
STAGES: tuple[tuple[str, str, str, bool], ...] = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
)

_PORTAL_IDS = itertools.count(50_000_001)
_USER_IDS = itertools.count(9_000_001)  # int32, as the owners spec says
DEAL_TO_CONTACT = 3
CONTACT_TO_DEAL = 4
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class ObjectType:
    """A CRM object type the fake knows."""

    name: str  # path name: contacts, deals
    type_id: str  # the spec's numeric object type id, an alias of name in every path
    singular: str
    unique: tuple[str, ...]  # built-in unique identifiers (besides hasUniqueValue properties)
    defaults: tuple[str, ...]  # properties returned by reads when none are requested
    association_type: int  # associationTypeId to the other type
    other: str  # the type it associates with
    group: str  # the default property group
    #: HubSpot-defined properties: (name, label, type, fieldType).
    builtin: tuple[tuple[str, str, str, str], ...] = ()

    @property
    def path_names(self) -> tuple[str, str]:
        """The names paths may use for this type."""
        return (self.name, self.type_id)


_SYSTEM = (
    ("createdate", "Create Date", "datetime", "date"),
    ("hs_object_id", "Record ID", "number", "number"),
    ("hubspot_owner_id", "Owner", "enumeration", "select"),
)
CONTACTS = ObjectType(
    "contacts",
    "0-1",
    "Contact",
    unique=("email",),
    defaults=("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    association_type=CONTACT_TO_DEAL,
    other="deals",
    group="contactinformation",
    builtin=(
        *_SYSTEM,
        ("email", "Email", "string", "text"),
        ("firstname", "First Name", "string", "text"),
        ("lastname", "Last Name", "string", "text"),
        ("phone", "Phone Number", "string", "phonenumber"),
        ("mobilephone", "Mobile Phone Number", "string", "phonenumber"),
        ("company", "Company Name", "string", "text"),
        ("jobtitle", "Job Title", "string", "text"),
        ("website", "Website URL", "string", "text"),
        ("city", "City", "string", "text"),
        ("country", "Country/Region", "string", "text"),
        ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio"),
        ("lastmodifieddate", "Last Modified Date", "datetime", "date"),
    ),
)
DEALS = ObjectType(
    "deals",
    "0-3",
    "Deal",
    unique=(),
    defaults=(
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
    association_type=DEAL_TO_CONTACT,
    other="contacts",
    group="dealinformation",
    builtin=(
        *_SYSTEM,
        ("dealname", "Deal Name", "string", "text"),
        ("amount", "Amount", "number", "number"),
        ("closedate", "Close Date", "datetime", "date"),
        ("dealstage", "Deal Stage", "enumeration", "radio"),
        ("pipeline", "Pipeline", "enumeration", "select"),
        ("dealtype", "Deal Type", "enumeration", "radio"),
        ("description", "Deal Description", "string", "textarea"),
        ("hs_forecast_probability", "Forecast Probability", "number", "number"),
        ("hs_deal_stage_probability", "Deal Stage Probability", "number", "number"),
        ("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox"),
        ("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox"),
        ("closed_lost_reason", "Closed Lost Reason", "string", "textarea"),
        ("closed_won_reason", "Closed Won Reason", "string", "textarea"),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date"),
    ),
)
TYPES = {"contacts": CONTACTS, "deals": DEALS}
#: The property every account has unless made with ``key_property: false``: agency-crm's
#: unique external key (existing tests and the push runner write it without creating it).
KEY_PROPERTY = "agency_crm_key"
PROPERTY_TYPES = {
    "string": {"text", "textarea", "phonenumber", "html", "file", "select", "radio"},
    "number": {"number", "calculation_equation", "select", "radio"},
    "date": {"date"},
    "datetime": {"date"},
    "enumeration": {"select", "radio", "checkbox", "booleancheckbox", "calculation_equation"},
    "bool": {"booleancheckbox", "select", "radio"},
    "phone_number": {"phonenumber"},
}
_PROPERTY_NAME = re.compile(r"[a-z][a-z0-9_]{0,99}")


@dataclass
class Record:
    """One contact or deal."""

    id: str
    type: ObjectType
    properties: dict[str, str]
    created: datetime
    updated: datetime
    archived: bool = False
    index: SearchIndex[JSONDict] = field(default_factory=SearchIndex)

    def to_json(self, properties: Mapping[str, str | None] | None = None) -> JSONDict:
        """SimplePublicObject JSON with all (or the given) properties."""
        return {
            "id": self.id,
            "properties": dict(self.properties if properties is None else properties),
            "createdAt": iso_millis_z(self.created),
            "updatedAt": iso_millis_z(self.updated),
            "archived": self.archived,
        }

    def selected(self, names: list[str]) -> JSONDict:
        """JSON with the type's default properties plus ``names`` (null when unset)."""
        wanted = list(self.type.defaults) + [n for n in names if n not in self.type.defaults]
        return self.to_json({n: self.properties.get(n) for n in wanted})


@dataclass
class AuthCode:
    """An authorization code from the consent page: single use, short-lived, bound."""

    client_id: str
    redirect_uri: str
    account_id: str
    scopes: list[str]
    expires_at: float


class HubSpotAccount(AccountBase):
    """One HubSpot portal."""

    def __init__(self, portal_id: int) -> None:
        super().__init__(str(portal_id))
        self.portal_id = portal_id
        self.owners: list[JSONDict] = [
            {
                "id": str(portal_id * 10 + n),
                "email": f"{name.lower()}@portal{portal_id}.sandbox.test",
                "firstName": name,
                "lastName": "Sandbox",
                "userId": user_id,
                "userIdIncludingInactive": user_id,
                "type": "PERSON",
                "teams": [],
                "archived": False,
                "createdAt": iso_millis_z(self.created),
                "updatedAt": iso_millis_z(self.created),
            }
            for n, (name, user_id) in enumerate(
                (("Olivia", next(_USER_IDS)), ("Oscar", next(_USER_IDS))), start=1
            )
        ]
        self.records: dict[str, dict[str, Record]] = {"contacts": {}, "deals": {}}
        #: (type, property) -> value (folded) -> ids of live records with it: find_value().
        self._values: dict[tuple[str, str], dict[str, set[str]]] = {}
        stamp = iso_millis_z(self.created)
        #: Property definitions per object type, by name (HubSpot's Property JSON).
        self.properties: dict[str, dict[str, JSONDict]] = {
            otype.name: {
                name: property_json(name, label, kind, field_type, otype.group, stamp, True)
                for name, label, kind, field_type in otype.builtin
            }
            for otype in TYPES.values()
        }
        # (deal_id, contact_id)
        self.associations: set[tuple[str, str]] = set()
        self.refresh_tokens: set[str] = set()
        self.expires_in: int | None = DEFAULT_EXPIRES_IN

    def add_key_property(self) -> None:
        """Define ``agency_crm_key`` (unique string) on contacts and deals."""
        stamp = iso_millis_z(self.created)
        for otype in TYPES.values():
            prop = property_json(
                KEY_PROPERTY, "agency-crm key", "string", "text", otype.group, stamp, False
            )
            prop["hasUniqueValue"] = True
            self.properties[otype.name][KEY_PROPERTY] = prop

    def unique_properties(self, otype: ObjectType) -> list[str]:
        """Properties whose values identify one record: built-in ones and hasUniqueValue."""
        declared = [n for n, p in self.properties[otype.name].items() if p["hasUniqueValue"]]
        return [*otype.unique, *declared]

    def owner_ids(self) -> set[str]:
        """Ids valid for ``hubspot_owner_id``."""
        return {o["id"] for o in self.owners}

    def live(self, type_name: str) -> list[Record]:
        """Not-archived records of a type, by id."""
        return [r for r in self.records[type_name].values() if not r.archived]

    def find_value(self, type_name: str, prop: str, value: str) -> Record | None:
        """The first live record (by id) of a type whose ``prop`` is ``value`` (``email``
        without regard to case), through an index of the property's values built at its
        first lookup and kept by :meth:`unindex` and :meth:`reindex`: a scan of every record
        per lookup made a backfill of 50,000 deals quadratic (5 s a batch at 45,000)."""
        index = self._values.get((type_name, prop))
        if index is None:
            index = self._values[(type_name, prop)] = {}
            for record in self.live(type_name):
                have = record.properties.get(prop)
                if have is not None:
                    index.setdefault(_fold(prop, have), set()).add(record.id)
        ids = index.get(_fold(prop, value))
        return self.records[type_name][min(ids, key=int)] if ids else None

    def unindex(self, record: Record) -> None:
        """Take ``record``'s values out of the value indexes (before a write or archive)."""
        for (type_name, prop), index in self._values.items():
            have = record.properties.get(prop)
            if type_name == record.type.name and have is not None:
                ids = index.get(_fold(prop, have))
                if ids is not None:
                    ids.discard(record.id)
                    if not ids:
                        del index[_fold(prop, have)]

    def reindex(self, record: Record) -> None:
        """Put a live ``record``'s values into the value indexes (after a write)."""
        if record.archived:
            return
        for (type_name, prop), index in self._values.items():
            have = record.properties.get(prop)
            if type_name == record.type.name and have is not None:
                index.setdefault(_fold(prop, have), set()).add(record.id)


def property_json(
    name: str,
    label: str,
    kind: str,
    field_type: str,
    group: str,
    stamp: str,
    hubspot_defined: bool,
) -> JSONDict:
    """A Property as ``/crm/v3/properties`` returns it."""
    return {
        "updatedAt": stamp,
        "createdAt": stamp,
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "description": "",
        "groupName": group,
        "options": [],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": False,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": name in ("createdate", "hs_object_id", "lastmodifieddate"),
        },
        "formField": not hubspot_defined,
        "dataSensitivity": "non_sensitive",
        "archived": False,
    }


def stage_by_id(stage_id: str) -> tuple[str, str, str, bool] | None:
    """The seeded stage tuple for an id."""
    return next((s for s in STAGES if s[0] == stage_id), None)


def _error(status: int, category: str, message: str, **extra: Any) -> ApiError:
    payload: JSONDict = {
        "status": "error",
        "message": message,
        "correlationId": new_correlation_id(),
        "category": category,
    }
    payload.update(extra)
    return ApiError(status, payload)


def _invalid_property(name: str, message: str, error: str = "INVALID_OPTION") -> ApiError:
    detail = [{"isValid": False, "message": message, "error": error, "name": name}]
    return _error(
        400,
        "VALIDATION_ERROR",
        f"Property values were not valid: {json.dumps(detail, separators=(',', ':'))}",
        errors=[{"message": message, "code": error, "context": {"propertyName": [name]}}],
    )


def _normalize_date(name: str, value: str) -> str:
    """HubSpot date(time) properties accept YYYY-MM-DD, ISO date-times or epoch millis."""
    if value == "":
        return value
    try:
        if value.isdigit():
            millis = ascii_int(value)
            if millis is None:
                raise ValueError(value)
            when = datetime.fromtimestamp(millis / 1000, UTC)
        elif _DATE.fullmatch(value):
            when = datetime.fromisoformat(value).replace(tzinfo=UTC)
        else:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        # Out-of-range offsets overflow here, not in the parser.
        when = when.astimezone(UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise _invalid_property(
            name, f"{value} was not a valid long or date", "INVALID_DATE"
        ) from exc
    return iso_millis_z(when)


STATUS_CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    402: "PAYMENT_REQUIRED",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITS",
}
STATUS_MESSAGES = {
    400: "Invalid input JSON on line 1",
    401: "Authentication credentials not found.",
    402: "This portal's subscription does not allow this operation.",
    403: "This app hasn't been granted all required scopes to make this call.",
    404: "resource not found",
    405: "HTTP method not allowed for this resource",
    409: "Conflict",
}


class HubSpotApp(VendorApp[HubSpotAccount]):
    """The fake HubSpot API."""

    vendor: ClassVar[str] = "hubspot"
    #: Public-app (OAuth) burst limit: 100 requests per rolling 10 s per account.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(100, 10_000)
    credential_body_fields: ClassVar[frozenset[str]] = frozenset(
        {"client_secret", "refresh_token", "code"}
    )
    #: HubSpot serves ``/crm/v3/owners/`` like ``/crm/v3/owners`` (the official client
    #: sends the slash).
    optional_trailing_slash: ClassVar[bool] = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> account id
        self.revoked_refresh: set[str] = set()
        self.auth_codes: dict[str, AuthCode] = {}
        #: Outcomes forced on the next approvals of the consent page (admin API).
        self.consent_outcomes: list[str] = []
        super().__init__(*args, **kwargs)

    # ----------------------------------------------------------------- hooks

    def make_account(self) -> HubSpotAccount:
        """A portal with two owners, the default deal pipeline and the built-in properties
        plus ``agency_crm_key`` (``POST /_sandbox/accounts {"key_property": false}`` leaves
        that one out, for a connect flow that creates it)."""
        account = HubSpotAccount(next(_PORTAL_IDS))
        account.add_key_property()
        return account

    def extract_credential(self, req: Request) -> str | None:
        """``Authorization: Bearer <token>``."""
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def auth_error(self, reason: str, token: str | None, expired_for: float = 0.0) -> Response:
        """401 INVALID_AUTHENTICATION, or EXPIRED_AUTHENTICATION for expired OAuth tokens."""
        if reason == "expired":
            err = _error(
                401,
                "EXPIRED_AUTHENTICATION",
                f"The OAuth token used to make this call expired {int(expired_for)} second(s) ago.",
            )
        elif reason == "missing":
            err = _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
            )
        else:
            err = _error(
                401,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found or not valid for this portal.",
            )
        return Response.json(err.status, err.payload)

    def error_response(self, status: int, message: str | None = None) -> Response:
        """``{status: "error", message, correlationId, category}``."""
        if status == 429:
            return self.too_many_requests(self.config.rate_limit, 1)
        category = STATUS_CATEGORIES.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
        text = message or STATUS_MESSAGES.get(status, "internal error")
        err = _error(status, category, text)
        return Response.json(err.status, err.payload)

    def rate_headers(self, limit: RateLimit, remaining: int, reset_s: int) -> list[tuple[str, str]]:
        """``X-HubSpot-RateLimit-Max/-Remaining/-Interval-Milliseconds``."""
        return [
            ("X-HubSpot-RateLimit-Max", str(limit.max)),
            ("X-HubSpot-RateLimit-Remaining", str(remaining)),
            ("X-HubSpot-RateLimit-Interval-Milliseconds", str(limit.interval_ms)),
        ]

    def too_many_requests(self, limit: RateLimit | None, retry_after: int) -> Response:
        """HubSpot's 429: ``errorType: RATE_LIMIT``, ``policyName: TEN_SECONDLY_ROLLING``."""
        limit = limit or self.default_rate_limit
        body = {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": new_correlation_id(),
            "policyName": "TEN_SECONDLY_ROLLING",
            "requestId": secrets.token_hex(16),
        }
        headers = [*self.rate_headers(limit, 0, 0), ("Retry-After", str(retry_after))]
        return Response.json(429, body, headers)

    def account_summary(self, account: HubSpotAccount) -> JSONDict:
        """Pipelines (probability as a float 0..1) and owners."""
        return {
            "pipelines": [
                {
                    "id": PIPELINE[0],
                    "name": PIPELINE[1],
                    "stages": [
                        {"id": sid, "name": label, "probability": float(prob)}
                        for sid, label, prob, _ in STAGES
                    ],
                }
            ],
            "users": [{"id": o["id"], "email": o["email"]} for o in account.owners],
        }

    def check_account_options(self, options: Mapping[str, Any]) -> None:
        """HubSpot accounts take ``expires_in`` (seconds; null = access token never expires)
        and ``refresh_token`` (the account's refresh token; default a generated ``sbx_``
        one), so a test can choose every credential, e.g. a canary it then looks for."""
        unknown = set(options) - {"expires_in", "refresh_token", "key_property"}
        if not isinstance(options.get("key_property", True), bool):
            raise AdminError(400, "key_property must be a boolean")
        if unknown:
            raise AdminError(400, f"unknown account options: {sorted(unknown)}")
        if "refresh_token" in options:
            refresh = options["refresh_token"]
            if not isinstance(refresh, str) or not refresh.strip():
                raise AdminError(400, "refresh_token must be a non-empty string")
            if refresh in self.refresh_tokens or refresh in self.tokens:
                raise AdminError(409, "refresh_token already belongs to an account")
        expires_in = options.get("expires_in", DEFAULT_EXPIRES_IN)
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
        ):
            raise AdminError(400, "expires_in must be a number of seconds or null")

    def on_account_created(
        self, account: HubSpotAccount, token: str, options: Mapping[str, Any]
    ) -> JSONDict:
        """Make the token an expiring OAuth access token and add a refresh token."""
        if not options.get("key_property", True):
            for props in account.properties.values():
                props.pop(KEY_PROPERTY, None)
        expires_in = options.get("expires_in", DEFAULT_EXPIRES_IN)
        account.expires_in = expires_in
        if expires_in is not None:
            self.tokens[token].expires_at = time.time() + expires_in
        refresh = options.get("refresh_token") or f"sbx_hubspot_rt_{secrets.token_hex(12)}"
        self.refresh_tokens[refresh] = account.id
        account.refresh_tokens.add(refresh)
        return {
            "refresh_token": refresh,
            "expires_in": expires_in,
            "portal_id": account.portal_id,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }

    def set_revoked(self, token: str, revoked: bool) -> None:
        """Refresh tokens can be revoked too (then refreshing gives 400 BAD_REFRESH_TOKEN)."""
        with self.lock:
            if token in self.refresh_tokens:
                if revoked:
                    self.revoked_refresh.add(token)
                else:
                    self.revoked_refresh.discard(token)
                return
        super().set_revoked(token, revoked)

    def reset(self) -> None:
        """Also forget refresh tokens, authorization codes and forced consent outcomes."""
        with self.lock:
            super().reset()
            self.refresh_tokens.clear()
            self.revoked_refresh.clear()
            self.auth_codes.clear()
            self.consent_outcomes.clear()

    def admin_extra(self, req: Request, action: str) -> Response | None:
        """``POST /_sandbox/accounts/expire {"token"}``: expire an access token now.
        ``POST /_sandbox/oauth/consent {"outcome": "deny"|"error"}``: the next approval on
        the consent page redirects as if the user cancelled, or with ``error=server_error``.
        ``POST /_sandbox/oauth/codes/expire``: expire every authorization code now."""
        if (req.method, action) == ("POST", "oauth/consent"):
            body = req.json() if req.body.strip() else {}
            outcome = body.get("outcome") if isinstance(body, dict) else None
            if outcome not in ("deny", "error"):
                raise AdminError(400, 'body must be {"outcome": "deny" | "error"}')
            with self.lock:
                self.consent_outcomes.append(outcome)
                return Response.json(201, {"outcomes": list(self.consent_outcomes)})
        if (req.method, action) == ("POST", "oauth/codes/expire"):
            with self.lock:
                for code in self.auth_codes.values():
                    code.expires_at = 0.0
                return Response.json(200, {"expired": len(self.auth_codes)})
        if (req.method, action) != ("POST", "accounts/expire"):
            return None
        body = req.json() if req.body.strip() else {}
        token = body.get("token") if isinstance(body, dict) else None
        with self.lock:
            if not isinstance(token, str) or token not in self.tokens:
                raise AdminError(404, "unknown token")
            self.tokens[token].expires_at = time.time() - 1
        return Response.json(200, {"token": token, "expired": True})

    def account_state(self, account: HubSpotAccount, mono: float) -> JSONDict:
        """Contacts, deals (all properties) and deal->contact associations."""
        return {
            "portal_id": account.portal_id,
            "contacts": [r.to_json() for r in account.records["contacts"].values()],
            "deals": [r.to_json() for r in account.records["deals"].values()],
            "associations": [
                {"deal_id": d, "contact_id": c, "associationTypeId": DEAL_TO_CONTACT}
                for d, c in sorted(account.associations, key=lambda p: (int(p[0]), int(p[1])))
            ],
        }

    # ----------------------------------------------------------------- routes

    def build_routes(self) -> list[Route[HubSpotAccount]]:
        """All HubSpot endpoints the fake serves."""
        R = Route[HubSpotAccount]
        routes: list[Route[HubSpotAccount]] = [
            R("POST", "/oauth/v1/token", public=self.oauth_token, resolver=self._token_owner),
            R("POST", "/oauth/v3/token", public=self.oauth_token, resolver=self._token_owner),
            R("GET", "/oauth/v1/access-tokens/{token}", public=self.token_info),
            R("GET", "/oauth/authorize", public=self.consent_page),
            R("POST", "/oauth/authorize", public=self.consent_decision),
            R("GET", "/crm/v3/owners", self.list_owners),
            R("GET", "/crm/v3/owners/{ownerId}", self.get_owner),
            R("GET", "/crm/v3/pipelines/deals", self.list_pipelines),
            R("GET", "/crm/v3/pipelines/deals/{pipelineId}", self.get_pipeline),
            R("GET", "/crm/v3/pipelines/deals/{pipelineId}/stages", self.list_stages),
        ]
        for otype in (CONTACTS, DEALS):
            other = TYPES[otype.other]
            for name in otype.path_names:  # contacts and 0-1, deals and 0-3
                base = f"/crm/v3/objects/{name}"
                props = f"/crm/v3/properties/{name}"
                routes += [
                    R("POST", base, self._bind(self.create, otype)),
                    R("GET", base, self._bind(self.list_objects, otype)),
                    R("POST", f"{base}/search", self._bind(self.search, otype)),
                    R("POST", f"{base}/batch/upsert", self._bind(self.batch_upsert, otype)),
                    R("POST", f"{base}/batch/update", self._bind(self.batch_update, otype)),
                    R("POST", f"{base}/batch/read", self._bind(self.batch_read, otype)),
                    R("GET", f"{base}/{{id}}", self._bind(self.get_object, otype)),
                    R("PATCH", f"{base}/{{id}}", self._bind(self.update, otype)),
                    R("DELETE", f"{base}/{{id}}", self._bind(self.archive, otype)),
                    R("GET", props, self._bind(self.list_properties, otype)),
                    R("POST", props, self._bind(self.create_property, otype)),
                    R("GET", f"{props}/{{propertyName}}", self._bind(self.get_property, otype)),
                ]
                v4 = f"/crm/v4/objects/{name}/{{fromId}}/associations"
                for to in other.path_names:
                    batch = f"/crm/v4/associations/{name}/{to}/batch/associate/default"
                    routes += [
                        R("PUT", f"{v4}/default/{to}/{{toId}}", self._bind(self.associate, otype)),
                        R("GET", f"{v4}/{to}", self._bind(self.list_associations, otype)),
                        R("POST", batch, self._bind(self.batch_associate_default, otype)),
                    ]
        return routes

    @staticmethod
    def _bind(
        func: Callable[[Ctx[HubSpotAccount], ObjectType], Response], otype: ObjectType
    ) -> Callable[[Ctx[HubSpotAccount]], Response]:
        return lambda ctx: func(ctx, otype)

    # ----------------------------------------------------------------- OAuth

    def _token_owner(self, req: Request) -> HubSpotAccount | None:
        try:
            form = req.form()
        except BadRequestBody:
            return None
        account_id = self.refresh_tokens.get(form.get("refresh_token", ""))
        code = self.auth_codes.get(form.get("code", ""))
        if account_id is None and code is not None:
            account_id = code.account_id
        return self.accounts.get(account_id) if account_id else None

    @staticmethod
    def _oauth_error(status: str, message: str) -> Response:
        return Response.json(
            400,
            {
                "status": status,
                "message": message,
                "correlationId": new_correlation_id(),
                "category": "VALIDATION_ERROR",
            },
        )

    def oauth_token(self, req: Request) -> Response:
        """``POST /oauth/v1/token`` with ``grant_type=refresh_token`` (form-encoded)."""
        if "x-www-form-urlencoded" not in (req.header("content-type") or "").lower():
            return self._oauth_error(
                "BAD_REQUEST", "Content-Type must be application/x-www-form-urlencoded"
            )
        form = req.form()
        grant = form.get("grant_type")
        if grant not in ("refresh_token", "authorization_code"):
            return self._oauth_error("BAD_GRANT_TYPE", "missing or unknown grant type")
        if form.get("client_id") != CLIENT_ID:
            return self._oauth_error("BAD_CLIENT_ID", "missing or invalid client id")
        if form.get("client_secret") != CLIENT_SECRET:
            return self._oauth_error("BAD_CLIENT_SECRET", "missing or invalid client secret")
        if grant == "authorization_code":
            return self._exchange_code(form)
        refresh = form.get("refresh_token", "")
        account_id = self.refresh_tokens.get(refresh)
        account = self.accounts.get(account_id) if account_id else None
        if account is None or refresh in self.revoked_refresh:
            return self._oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
        return self._token_response(account, refresh)

    def _exchange_code(self, form: Mapping[str, str]) -> Response:
        """``grant_type=authorization_code``: the code is single use, expires after
        :data:`AUTH_CODE_TTL` seconds and is bound to the client and the redirect_uri."""
        code = self.auth_codes.get(form.get("code", ""))
        if code is None or code.expires_at <= time.time() or code.client_id != CLIENT_ID:
            return self._oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
        if form.get("redirect_uri") != code.redirect_uri:
            return self._oauth_error(
                "BAD_REDIRECT_URI", "redirect_uri does not match the one given to authorize"
            )
        del self.auth_codes[form["code"]]
        account = self.accounts.get(code.account_id)
        if account is None:
            return self._oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
        refresh = f"sbx_hubspot_rt_{secrets.token_hex(12)}"
        self.refresh_tokens[refresh] = account.id
        account.refresh_tokens.add(refresh)
        return self._token_response(account, refresh, code.scopes)

    def _token_response(
        self, account: HubSpotAccount, refresh: str, scopes: list[str] | None = None
    ) -> Response:
        access = f"sbx_hubspot_at_{secrets.token_hex(16)}"
        expires_in = account.expires_in if account.expires_in is not None else DEFAULT_EXPIRES_IN
        self.register_token(account, access, time.time() + expires_in)
        return Response.json(
            200,
            {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": int(expires_in),
                "token_type": "bearer",
                "token_use": "access_token",
                "hub_id": account.portal_id,
                "user_id": account.owners[0]["userId"],
                "scopes": scopes or list(DEFAULT_SCOPES),
            },
        )

    # ----------------------------------------------------------------- OAuth consent page

    def _consent_target(self, fields: Mapping[str, str]) -> tuple[str, str] | Response:
        """(client_id, redirect_uri), or the HTML 400 page when they are not usable."""
        client_id = fields.get("client_id", "")
        redirect_uri = fields.get("redirect_uri", "")
        if client_id != CLIENT_ID:
            return html_page(
                400,
                "Authorization failed",
                f"Unknown app: no app has the client_id {client_id!r}. "
                f"(The sandbox's app is {CLIENT_ID}.)",
            )
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return html_page(
                400,
                "Authorization failed",
                "The redirect_uri is missing or is not an absolute http(s) URL.",
            )
        return client_id, redirect_uri

    def consent_page(self, req: Request) -> Response:
        """``GET /oauth/authorize``: the HTML consent form (HubSpot serves it at
        ``https://app.hubspot.com/oauth/authorize``)."""
        fields = {k: req.arg(k) or "" for k in ("client_id", "redirect_uri", "scope", "state")}
        target = self._consent_target(fields)
        if isinstance(target, Response):
            return target
        scopes = _scopes(fields["scope"])
        with self.lock:
            portals = sorted(self.accounts.values(), key=lambda a: a.created, reverse=True)[:50]
        options = "".join(
            f'<option value="{a.portal_id}">Portal {a.portal_id}</option>' for a in portals
        )
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{escape(v)}">' for k, v in fields.items()
        )
        items = "".join(f"<li>{escape(s)}</li>" for s in scopes) or "<li>(no scopes)</li>"
        body = f"""
<h1 id="consent-title">Connect app {escape(fields["client_id"])}</h1>
<p>App <code id="consent-client-id">{escape(fields["client_id"])}</code> asks for access to
your HubSpot account. It will be able to:</p>
<ul id="consent-scopes">{items}</ul>
<form method="post" action="/oauth/authorize" id="consent-form">
{hidden}
<label for="consent-portal">Install into</label>
<select name="portal_id" id="consent-portal">
<option value="" selected>A new sandbox portal</option>{options}
</select>
<p>
<button type="submit" name="decision" value="approve" id="consent-approve">Connect app</button>
<button type="submit" name="decision" value="deny" id="consent-deny">Cancel</button>
</p>
</form>"""
        return html_page(200, f"Connect app {fields['client_id']} - HubSpot sandbox", body)

    def consent_decision(self, req: Request) -> Response:
        """``POST /oauth/authorize`` (the consent form): 302 back to the redirect_uri with
        ``code`` and ``state``, or ``error=access_denied`` when the user cancelled."""
        try:
            form = req.form()
        except BadRequestBody:
            return html_page(400, "Authorization failed", "The form could not be read.")
        target = self._consent_target(form)
        if isinstance(target, Response):
            return target
        client_id, redirect_uri = target
        state = form.get("state", "")
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            return html_page(400, "Authorization failed", "Choose Connect app or Cancel.")
        with self.lock:
            forced = (
                self.consent_outcomes.pop(0)
                if decision == "approve" and (self.consent_outcomes)
                else None
            )
        if decision == "deny" or forced == "deny":
            return _redirect(
                redirect_uri,
                error="access_denied",
                error_description="The user declined to connect the app",
                state=state,
            )
        if forced == "error":
            return _redirect(
                redirect_uri,
                error="server_error",
                error_description="The app could not be installed; try again",
                state=state,
            )
        portal = form.get("portal_id", "")
        with self.lock:
            if portal:
                account = self.accounts.get(portal)
                if account is None:
                    return html_page(
                        400, "Authorization failed", f"There is no portal {escape(portal)}."
                    )
            else:
                account = self.provision()[0]
            code = secrets.token_urlsafe(24)
            self.auth_codes[code] = AuthCode(
                client_id,
                redirect_uri,
                account.id,
                _scopes(form.get("scope", "")),
                time.time() + AUTH_CODE_TTL,
            )
        return _redirect(redirect_uri, code=code, state=state)

    def token_info(self, req: Request) -> Response:
        """``GET /oauth/v1/access-tokens/{token}``: hub id, scopes, seconds left."""
        token = req.segments[-1]
        info = self.tokens.get(token)
        account = self.accounts.get(info.account_id) if info else None
        if info is None or account is None or info.revoked:
            err = _error(404, "OBJECT_NOT_FOUND", "token not found")
            return Response.json(404, err.payload)
        left = 86_400 * 365 if info.expires_at is None else int(info.expires_at - time.time())
        if left <= 0:
            err = _error(404, "OBJECT_NOT_FOUND", "token expired")
            return Response.json(404, err.payload)
        owner = account.owners[0]
        return Response.json(
            200,
            {
                "token": token,
                "user": owner["email"],
                "hub_domain": f"portal{account.portal_id}.sandbox.test",
                "scopes": list(DEFAULT_SCOPES),
                "hub_id": account.portal_id,
                "app_id": 1,
                "expires_in": left,
                "user_id": owner["userId"],
                "token_type": "access",
            },
        )

    # ----------------------------------------------------------------- owners, pipelines

    def list_owners(self, ctx: Ctx[HubSpotAccount]) -> Response:
        """``GET /crm/v3/owners`` with ``limit``/``after``/``email``."""
        owners = ctx.account.owners
        email = ctx.request.arg("email")
        if email:
            owners = [o for o in owners if o["email"].lower() == email.lower()]
        limit = _int_arg(ctx.request.arg("limit"), 100, "limit", 1, 500)
        offset = _int_arg(ctx.request.arg("after"), 0, "after", 0, None)
        page = owners[offset : offset + limit]
        out: JSONDict = {"results": page}
        if offset + limit < len(owners):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return Response.json(200, out)

    def get_owner(self, ctx: Ctx[HubSpotAccount]) -> Response:
        """``GET /crm/v3/owners/{ownerId}``."""
        owner = next((o for o in ctx.account.owners if o["id"] == ctx.params["ownerId"]), None)
        if owner is None:
            raise _error(404, "OBJECT_NOT_FOUND", "Owner not found")
        return Response.json(200, owner)

    def _pipeline_json(self, account: HubSpotAccount) -> JSONDict:
        created = iso_millis_z(account.created)
        return {
            "id": PIPELINE[0],
            "label": PIPELINE[1],
            "displayOrder": 0,
            "archived": False,
            "createdAt": created,
            "updatedAt": created,
            "stages": [
                {
                    "id": sid,
                    "label": label,
                    "displayOrder": n,
                    "metadata": {"isClosed": "true" if closed else "false", "probability": prob},
                    "archived": False,
                    "createdAt": created,
                    "updatedAt": created,
                    "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                }
                for n, (sid, label, prob, closed) in enumerate(STAGES)
            ],
        }

    def list_pipelines(self, ctx: Ctx[HubSpotAccount]) -> Response:
        """``GET /crm/v3/pipelines/deals``."""
        return Response.json(200, {"results": [self._pipeline_json(ctx.account)]})

    def get_pipeline(self, ctx: Ctx[HubSpotAccount]) -> Response:
        """``GET /crm/v3/pipelines/deals/{pipelineId}``."""
        if ctx.params["pipelineId"] != PIPELINE[0]:
            raise _error(404, "OBJECT_NOT_FOUND", "Pipeline not found")
        return Response.json(200, self._pipeline_json(ctx.account))

    def list_stages(self, ctx: Ctx[HubSpotAccount]) -> Response:
        """``GET /crm/v3/pipelines/deals/{pipelineId}/stages``."""
        if ctx.params["pipelineId"] != PIPELINE[0]:
            raise _error(404, "OBJECT_NOT_FOUND", "Pipeline not found")
        return Response.json(200, {"results": self._pipeline_json(ctx.account)["stages"]})

    # ----------------------------------------------------------------- properties

    def list_properties(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``GET /crm/v3/properties/{objectType}`` (``archived=true``: none are archived)."""
        if ctx.request.arg("archived") == "true":
            return Response.json(200, {"results": []})
        names = set(ctx.request.args("properties"))
        results = [
            p
            for p in ctx.account.properties[otype.name].values()
            if not names or p["name"] in names
        ]
        return Response.json(200, {"results": results})

    def get_property(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``GET /crm/v3/properties/{objectType}/{propertyName}`` (404 when missing)."""
        name = ctx.params["propertyName"]
        found = ctx.account.properties[otype.name].get(name)
        if found is None:
            raise _error(
                404,
                "OBJECT_NOT_FOUND",
                f"Unable to find property with name {name} for object type {otype.type_id}",
                context={"propertyName": [name]},
            )
        return Response.json(200, found)

    def create_property(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/properties/{objectType}`` -> 201; 409 when the name is taken."""
        body = ctx.json_object()
        missing = [
            k
            for k in ("name", "label", "type", "fieldType", "groupName")
            if not isinstance(body.get(k), str) or not body[k]
        ]
        if missing:
            raise _error(
                400,
                "VALIDATION_ERROR",
                f"Property create is missing or has invalid required fields: {', '.join(missing)}",
                errors=[
                    {"message": f"{k} is required and must be a string", "code": "REQUIRED"}
                    for k in missing
                ],
            )
        name, kind, field_type = body["name"], body["type"], body["fieldType"]
        if not _PROPERTY_NAME.fullmatch(name):
            raise _error(
                400,
                "VALIDATION_ERROR",
                f"Property name {name!r} must start with a lowercase letter and contain only "
                "lowercase letters, digits and underscores (at most 100 characters)",
            )
        if kind not in PROPERTY_TYPES:
            raise _error(
                400, "VALIDATION_ERROR", f"type must be one of {sorted(PROPERTY_TYPES)}; got {kind}"
            )
        if field_type not in PROPERTY_TYPES[kind]:
            raise _error(
                400,
                "VALIDATION_ERROR",
                f"fieldType {field_type} is not valid for type {kind}; "
                f"use one of {sorted(PROPERTY_TYPES[kind])}",
            )
        flags: JSONDict = {}
        for key in ("hasUniqueValue", "hidden", "formField", "externalOptions"):
            if key in body:
                if not isinstance(body[key], bool):
                    raise _error(400, "VALIDATION_ERROR", f"{key} must be a boolean")
                flags[key] = body[key]
        if flags.get("hasUniqueValue") and kind not in ("string", "number"):
            raise _error(
                400, "VALIDATION_ERROR", "Only string and number properties can have unique values"
            )
        for key in ("description", "label"):
            if key in body and not isinstance(body[key], str):
                raise _error(400, "VALIDATION_ERROR", f"{key} must be a string")
        display = body.get("displayOrder", -1)
        if isinstance(display, bool) or not isinstance(display, int):
            raise _error(400, "VALIDATION_ERROR", "displayOrder must be an integer")
        options = _property_options(body.get("options"), kind)
        catalog = ctx.account.properties[otype.name]
        if name in catalog:
            raise _error(
                409,
                "OBJECT_ALREADY_EXISTS",
                f"Property named '{name}' already exists.",
                subCategory="PropertyValidationError.PROPERTY_ALREADY_EXISTS",
                context={"propertyName": [name]},
            )
        stamp = iso_millis_z(utcnow())
        prop = property_json(name, body["label"], kind, field_type, body["groupName"], stamp, False)
        prop.update(flags)
        prop.update(
            description=body.get("description", ""),
            displayOrder=display,
            options=options,
            createdUserId=str(ctx.account.owners[0]["userId"]),
            updatedUserId=str(ctx.account.owners[0]["userId"]),
        )
        catalog[name] = prop
        return Response.json(201, prop)

    # ----------------------------------------------------------------- object helpers

    def _lookup(
        self, ctx: Ctx[HubSpotAccount], otype: ObjectType, key: str, id_property: str | None
    ) -> Record:
        """A live record by id or by a unique property (404 when absent)."""
        records = ctx.account.records[otype.name]
        found: Record | None = None
        if id_property in (None, "", "hs_object_id"):
            found = records.get(key)
        else:
            assert id_property is not None
            if id_property not in ctx.account.unique_properties(otype):
                raise _error(
                    400,
                    "VALIDATION_ERROR",
                    f"Property {id_property} is not a unique identifier property for {otype.name}.",
                )
            found = self._find_unique(ctx.account, otype, id_property, key)
        if found is None or found.archived:
            raise _error(
                404,
                "OBJECT_NOT_FOUND",
                "Object not found.  objectId are usually numeric.",
                context={"id": [key]},
            )
        return found

    @staticmethod
    def _find_unique(
        account: HubSpotAccount, otype: ObjectType, prop: str, value: str
    ) -> Record | None:
        return account.find_value(otype.name, prop, value)

    @staticmethod
    def _check_strings(raw: Any) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise _error(400, "VALIDATION_ERROR", "properties must be an object")
        for name, value in raw.items():
            if not isinstance(value, str):
                raise _invalid_property(
                    name,
                    f'Property "{name}" must be a string, got {json.dumps(value)}',
                    "INVALID_PROPERTY_TYPE",
                )
        return dict(raw)

    def _validate(
        self,
        account: HubSpotAccount,
        otype: ObjectType,
        props: dict[str, str],
        current: Record | None,
    ) -> dict[str, str]:
        """Check and normalize written properties (merged onto ``current`` if given)."""
        props = dict(props)
        for system in ("hs_object_id", "createdate", "lastmodifieddate", "hs_lastmodifieddate"):
            props.pop(system, None)
        owner = props.get("hubspot_owner_id")
        if owner and owner not in account.owner_ids():
            raise _invalid_property(
                "hubspot_owner_id", f"{owner} is not a valid owner id", "INVALID_OWNER_ID"
            )
        if otype is CONTACTS and props.get("email"):
            email = props["email"].strip().lower()
            if not _EMAIL.fullmatch(email):
                raise _invalid_property(
                    "email", f"Email address {email} is invalid", "INVALID_EMAIL"
                )
            props["email"] = email
        if otype is DEALS:
            merged = {**(current.properties if current else {}), **props}
            pipeline = merged.get("pipeline") or PIPELINE[0]
            if pipeline != PIPELINE[0]:
                raise _invalid_property(
                    "pipeline", f"{pipeline} was not one of the allowed options"
                )
            if current is None or "pipeline" in props:
                props["pipeline"] = pipeline
            stage = merged.get("dealstage")
            if current is None and not stage:
                raise _invalid_property("dealstage", "dealstage is required", "REQUIRED")
            if stage is not None and stage_by_id(stage) is None:
                raise _invalid_property(
                    "dealstage",
                    f"{stage} was not one of the allowed options: "
                    f"{[s[0] for s in STAGES]} for pipeline {pipeline}",
                )
            for name in ("amount", "hs_forecast_probability"):
                value = props.get(name)
                if value:
                    try:
                        number = float(value)
                    except ValueError:
                        raise _invalid_property(
                            name, f"{value} was not a valid number", "INVALID_DOUBLE"
                        ) from None
                    if name == "hs_forecast_probability" and not 0 <= number <= 1:
                        raise _invalid_property(
                            name, f"{value} is not between 0 and 1", "INVALID_DOUBLE"
                        )
            if "closedate" in props:
                props["closedate"] = _normalize_date("closedate", props["closedate"])
        catalog = account.properties[otype.name]
        for name, value in props.items():
            definition = catalog.get(name)
            if definition is not None and not definition["hubspotDefined"] and value != "":
                props[name] = _typed_value(definition, value)
        return props

    def _check_unique(
        self,
        account: HubSpotAccount,
        otype: ObjectType,
        props: Mapping[str, str],
        me: str | None,
        batch: bool = False,
    ) -> None:
        """409 CONFLICT when a unique value of ``props`` belongs to another record (in a
        batch, with ``context.existingId`` as HubSpot's multi-status conflicts have)."""
        for prop in account.unique_properties(otype):
            value = props.get(prop)
            if not value:
                continue
            other = self._find_unique(account, otype, prop, value)
            if other is not None and other.id != me:
                if otype is CONTACTS and prop == "email":
                    message = f"Contact already exists. Existing ID: {other.id}"
                else:
                    message = (
                        f"A {otype.singular.lower()} with {prop}={value} already exists. "
                        f"Existing ID: {other.id}"
                    )
                if batch:
                    raise _error(409, "CONFLICT", message, context={"existingId": [other.id]})
                raise _error(409, "CONFLICT", message)

    def _write(
        self,
        ctx: Ctx[HubSpotAccount],
        otype: ObjectType,
        props: dict[str, str],
        record: Record | None,
    ) -> Record:
        """Store validated properties as a new record (``record`` None) or an update."""
        now = utcnow()
        stamp = iso_millis_z(now)
        if record is None:
            new_id = str(ctx.account.next_id() + ctx.account.portal_id * 1000)
            record = Record(new_id, otype, {}, now, now)
            record.properties.update(hs_object_id=new_id, createdate=stamp)
            ctx.account.records[otype.name][new_id] = record
        ctx.account.unindex(record)
        record.properties.update(props)
        record.properties.update(lastmodifieddate=stamp, hs_lastmodifieddate=stamp)
        record.updated = now
        if otype is DEALS:
            stage = stage_by_id(record.properties.get("dealstage", ""))
            if stage is not None:
                record.properties["hs_deal_stage_probability"] = stage[2]
                record.properties["hs_is_closed"] = "true" if stage[3] else "false"
                record.properties["hs_is_closed_won"] = (
                    "true" if stage[0] == "closedwon" else "false"
                )
        ctx.account.reindex(record)
        record.index.put(record.to_json(), ctx.searchable_from())
        return record

    def _parse_associations(
        self, ctx: Ctx[HubSpotAccount], otype: ObjectType, raw: Any
    ) -> list[str]:
        """Ids of records in ``otype.other`` to associate a new record with."""
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _error(400, "VALIDATION_ERROR", "associations must be an array")
        targets: list[str] = []
        for item in raw:
            to = item.get("to") if isinstance(item, dict) else None
            types = item.get("types") if isinstance(item, dict) else None
            to_id = str(to.get("id")) if isinstance(to, dict) and to.get("id") is not None else ""
            if not to_id or not isinstance(types, list) or not types:
                raise _error(
                    400, "VALIDATION_ERROR", "Each association needs to.id and a non-empty types"
                )
            for spec in types:
                if not isinstance(spec, dict) or spec.get("associationCategory") not in (
                    "HUBSPOT_DEFINED",
                    "USER_DEFINED",
                    "INTEGRATOR_DEFINED",
                ):
                    raise _error(400, "VALIDATION_ERROR", "Invalid associationCategory")
                if spec.get("associationTypeId") != otype.association_type:
                    raise _error(
                        400,
                        "VALIDATION_ERROR",
                        f"associationTypeId {spec.get('associationTypeId')} is not valid from "
                        f"{otype.name}; this sandbox supports {otype.association_type} "
                        f"({otype.name} to {otype.other})",
                    )
            target = ctx.account.records[otype.other].get(to_id)
            if target is None or target.archived:
                raise _error(
                    400,
                    "VALIDATION_ERROR",
                    f"One or more associations are invalid: {otype.other} {to_id} does not exist",
                )
            targets.append(to_id)
        return targets

    def _link(self, account: HubSpotAccount, otype: ObjectType, a: str, b: str) -> None:
        account.associations.add((a, b) if otype is DEALS else (b, a))

    # ----------------------------------------------------------------- object endpoints

    def create(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/objects/{type}`` -> 201."""
        body = ctx.json_object()
        props = self._validate(
            ctx.account, otype, self._check_strings(body.get("properties")), None
        )
        self._check_unique(ctx.account, otype, props, None)
        targets = self._parse_associations(ctx, otype, body.get("associations"))
        record = self._write(ctx, otype, props, None)
        for target in targets:
            self._link(ctx.account, otype, record.id, target)
        return Response.json(201, record.to_json())

    def list_objects(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``GET /crm/v3/objects/{type}`` (``limit``/``after`` paging)."""
        records = sorted(ctx.account.live(otype.name), key=lambda r: int(r.id))
        limit = _int_arg(ctx.request.arg("limit"), 10, "limit", 1, 100)
        offset = _int_arg(ctx.request.arg("after"), 0, "after", 0, None)
        names = ctx.request.args("properties")
        out: JSONDict = {"results": [r.selected(names) for r in records[offset : offset + limit]]}
        if offset + limit < len(records):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return Response.json(200, out)

    def get_object(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``GET /crm/v3/objects/{type}/{id}`` (``idProperty``/``properties``/``associations``)."""
        record = self._lookup(ctx, otype, ctx.params["id"], ctx.request.arg("idProperty"))
        out = record.selected(ctx.request.args("properties"))
        if otype.other in ctx.request.args("associations"):
            linked = self._linked(ctx.account, otype, record.id)
            kind = "deal_to_contact" if otype is DEALS else "contact_to_deal"
            out["associations"] = {
                otype.other: {"results": [{"id": i, "type": kind} for i in linked]}
            }
        return Response.json(200, out)

    def update(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``PATCH /crm/v3/objects/{type}/{id}`` (``idProperty`` optional)."""
        record = self._lookup(ctx, otype, ctx.params["id"], ctx.request.arg("idProperty"))
        body = ctx.json_object()
        props = self._validate(
            ctx.account, otype, self._check_strings(body.get("properties")), record
        )
        self._check_unique(ctx.account, otype, props, record.id)
        self._write(ctx, otype, props, record)
        return Response.json(200, record.to_json())

    def archive(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``DELETE /crm/v3/objects/{type}/{id}`` -> 204 (archives)."""
        record = ctx.account.records[otype.name].get(ctx.params["id"])
        if record is not None and not record.archived:
            ctx.account.unindex(record)
            record.archived = True
            record.updated = utcnow()
            record.index.put(None, ctx.searchable_from())
        return Response(204, content_type="application/json")

    def search(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/objects/{type}/search`` over the (lagged) search index."""
        body = ctx.json_object()
        groups = body.get("filterGroups") or []
        if not isinstance(groups, list) or len(groups) > 6:
            raise _error(400, "VALIDATION_ERROR", "filterGroups must be an array of at most 6")
        matchers = [self._group_matcher(g) for g in groups]
        limit = body.get("limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 200:
            raise _error(400, "VALIDATION_ERROR", "limit must be an integer between 0 and 200")
        after = body.get("after") or "0"
        valid = isinstance(after, str | int) and not isinstance(after, bool)
        offset = ascii_int(str(after)) if valid else None
        if offset is None:
            raise _error(400, "VALIDATION_ERROR", f"after {after!r} is not a valid paging token")
        names = body.get("properties") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _error(400, "VALIDATION_ERROR", "properties must be an array of strings")
        query = body.get("query")
        hits: list[JSONDict] = []
        for record in ctx.account.records[otype.name].values():
            snap = record.index.view(ctx.mono)
            if snap is None:
                continue
            props: dict[str, str] = snap["properties"]
            if matchers and not any(m(props) for m in matchers):
                continue
            if (
                isinstance(query, str)
                and query
                and not any(query.lower() in v.lower() for v in props.values())
            ):
                continue
            hits.append(snap)
        hits.sort(key=lambda s: int(s["id"]))
        wanted = list(otype.defaults) + [n for n in names if n not in otype.defaults]
        page = [
            {**snap, "properties": {n: snap["properties"].get(n) for n in wanted}}
            for snap in hits[offset : offset + limit]
        ]
        out: JSONDict = {"total": len(hits), "results": page}
        if offset + limit < len(hits):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return Response.json(200, out)

    @staticmethod
    def _group_matcher(group: Any) -> Callable[[Mapping[str, str]], bool]:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise _error(400, "VALIDATION_ERROR", "each filterGroup needs a filters array")
        checks = [_filter_matcher(f) for f in filters]
        return lambda props: all(check(props) for check in checks)

    # ----------------------------------------------------------------- associations

    def _linked(self, account: HubSpotAccount, otype: ObjectType, record_id: str) -> list[str]:
        if otype is DEALS:
            ids = [c for d, c in account.associations if d == record_id]
        else:
            ids = [d for d, c in account.associations if c == record_id]
        return sorted(ids, key=int)

    def associate(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``PUT /crm/v4/objects/{from}/{fromId}/associations/default/{to}/{toId}`` (idempotent)."""
        started = iso_millis_z(utcnow())
        from_id, to_id = ctx.params["fromId"], ctx.params["toId"]
        for type_name, key in ((otype.name, from_id), (otype.other, to_id)):
            record = ctx.account.records[type_name].get(key)
            if record is None or record.archived:
                raise _error(
                    404,
                    "OBJECT_NOT_FOUND",
                    f"No {type_name[:-1]} with id {key} exists",
                    context={"id": [key]},
                )
        self._link(ctx.account, otype, from_id, to_id)
        return Response.json(
            200,
            {
                "status": "COMPLETE",
                "results": [
                    {
                        "from": {"id": from_id},
                        "to": {"id": to_id},
                        "associationSpec": {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": otype.association_type,
                        },
                    }
                ],
                "startedAt": started,
                "completedAt": iso_millis_z(utcnow()),
            },
        )

    def list_associations(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``GET /crm/v4/objects/{from}/{fromId}/associations/{to}``."""
        record = ctx.account.records[otype.name].get(ctx.params["fromId"])
        if record is None or record.archived:
            raise _error(404, "OBJECT_NOT_FOUND", "Object not found")
        return Response.json(
            200,
            {
                "results": [
                    {
                        "toObjectId": int(i),
                        "associationTypes": [
                            {
                                "category": "HUBSPOT_DEFINED",
                                "typeId": otype.association_type,
                                "label": None,
                            }
                        ],
                    }
                    for i in self._linked(ctx.account, otype, record.id)
                ]
            },
        )

    # ----------------------------------------------------------------- batch endpoints
    #
    # What fails one input (listed in ``errors``, the others written) and what fails the
    # whole call (400/409, nothing written), after what HubSpot answers:
    #
    # * The whole call: a body that is not ``{"inputs": [...]}``, no inputs, more than 100
    #   (HubSpot's 400 wording, as recorded from a live batch/read of 107 inputs), an input
    #   that is not an object or has no id, an ``idProperty`` that is not a unique property
    #   ("Unable to perform update/upsert by non-unique 0-3 property ...", also for
    #   hs_object_id), and the same id twice ("Duplicate IDs found in batch input: [..].
    #   IDs must be unique", ``context.ids``: HubSpot's recorded 400 of batch/update and
    #   batch/upsert, with or without trace ids). Two inputs that reach one record by
    #   different ids (an email and a key) are duplicates too.
    # * A property value HubSpot refuses (dealstage, email, owner, number, date) or a unique
    #   value another record holds (409 CONFLICT): the whole call when the input has no
    #   ``objectWriteTraceId``, that input alone when it has one (``context``:
    #   ``objectWriteTraceId``, and ``existingId`` for a conflict). HubSpot documents
    #   multi-status (207) for batch create with a unique objectWriteTraceId per input
    #   (developers.hubspot.com/docs/api-reference/error-handling, "Multi-status errors");
    #   live probes of batch/upsert reported the same: without trace ids one invalid record
    #   rejects the request and nothing is written, with them a 207 that writes the rest.
    # * An id of batch/update or batch/read that names no record (or an archived one):
    #   per input always, one OBJECT_NOT_FOUND error whose ``context.ids`` lists them all,
    #   worded as HubSpot's recorded 207 of batch/update.
    # * ``item_error`` faults (admin API): per input always, trace id or not.
    #
    # Objects answer 200 when every input succeeded, else 207 with ``results`` (the
    # successes, in input order), ``errors`` and ``numErrors`` (the spec's ...WithErrors
    # schemas; HubSpot's changelog: batch/update answers 200, or 207 when one fails). The v4
    # batch/associate/default declares only a 200, whose schema carries ``errors`` and
    # ``numErrors``: pairs naming a missing record are reported there, in a 200.

    def _not_unique(self, account: HubSpotAccount, otype: ObjectType, id_property: Any) -> ApiError:
        unique = ", ".join(account.unique_properties(otype))
        return _error(
            400,
            "VALIDATION_ERROR",
            f"Unable to perform update/upsert by non-unique {otype.type_id} property "
            f"{id_property} in portal ID {account.portal_id} (unique: {unique})",
        )

    def _item_fault(
        self, ctx: Ctx[HubSpotAccount], values: set[str], context: dict[str, list[str]]
    ) -> JSONDict | None:
        """The per-input error of an ``item_error`` fault matching ``values``, if any."""
        rule = self.take_item_fault(ctx.request, ctx.account, values)
        if rule is None:
            return None
        status = rule.status or 400
        category = STATUS_CATEGORIES.get(status, "INTERNAL_ERROR" if status >= 500 else "ERROR")
        message = rule.message or f"{category}: this input was not processed (injected fault)"
        return _item_error(category, message, context)

    def _write_inputs(
        self,
        ctx: Ctx[HubSpotAccount],
        otype: ObjectType,
        entries: list[_BatchEntry],
        upsert: bool,
    ) -> tuple[list[JSONDict], list[JSONDict]]:
        """Validate every entry (raising the first error of an entry without a trace id),
        then write those that pass and no fault fails. (results, errors) in input order."""
        account = ctx.account
        failed: dict[int, JSONDict] = {}
        claimed: dict[tuple[str, str], int] = {}
        unique = account.unique_properties(otype)
        for n, entry in enumerate(entries):
            if entry.record is None and not upsert:
                continue
            try:
                props = self._check_strings(entry.item.get("properties"))
                if upsert:
                    assert entry.id_property is not None
                    props[entry.id_property] = entry.key
                props = self._validate(account, otype, props, entry.record)
                me = entry.record.id if entry.record else None
                self._check_unique(account, otype, props, me, batch=True)
                for prop in unique:
                    value = props.get(prop)
                    if not value:
                        continue
                    slot = (prop, value.lower() if prop == "email" else value)
                    if claimed.setdefault(slot, n) != n:
                        raise _error(
                            409,
                            "CONFLICT",
                            f"Another input of this batch also sets {prop}={value}",
                            context={"ids": [entries[claimed[slot]].key, entry.key]},
                        )
                entry.props = props
            except ApiError as exc:
                if entry.trace is None:
                    raise
                failed[n] = _item_error_from(exc, {"objectWriteTraceId": [entry.trace]})
        results: list[JSONDict] = []
        errors: list[JSONDict] = []
        missing = [e.key for e in entries if e.record is None and not upsert]
        if missing:
            errors.append(
                _item_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {otype.singular.upper()} objects, they may be deleted "
                    "or not exist. Check that ids are valid.",
                    {"ids": missing},
                )
            )
        for n, entry in enumerate(entries):
            if n in failed:
                errors.append(failed[n])
                continue
            if entry.props is None:
                continue
            context = {"ids": [entry.key]}
            if entry.trace is not None:
                context["objectWriteTraceId"] = [entry.trace]
            fault = self._item_fault(ctx, entry.match_values(), context)
            if fault is not None:
                errors.append(fault)
                continue
            existed = entry.record is not None
            record = self._write(ctx, otype, entry.props, entry.record)
            result = record.to_json()
            if upsert:
                result["new"] = not existed
            if entry.trace is not None:
                result["objectWriteTraceId"] = entry.trace
            results.append(result)
        return results, errors

    def _entries(
        self, ctx: Ctx[HubSpotAccount], otype: ObjectType, inputs: list[JSONDict], upsert: bool
    ) -> list[_BatchEntry]:
        """The inputs of batch/upsert or batch/update, parsed and resolved to records, with the
        whole-call checks (ids, idProperty, trace ids, duplicates) done."""
        account = ctx.account
        unique = account.unique_properties(otype)
        entries: list[_BatchEntry] = []
        for n, item in enumerate(inputs):
            key = _input_id(item.get("id"), f"inputs[{n}].id")
            id_property = item.get("idProperty")
            if upsert or id_property is not None:
                if not isinstance(id_property, str) or id_property not in unique:
                    raise self._not_unique(account, otype, id_property)
            entries.append(_BatchEntry(item, key, id_property, _trace_id(item, n)))
        _refuse_duplicates(entries)
        traces = [e.trace for e in entries if e.trace is not None]
        if len(set(traces)) != len(traces):
            raise _error(400, "VALIDATION_ERROR", "objectWriteTraceId values must be unique")
        targets: dict[str, _BatchEntry] = {}
        for entry in entries:
            if entry.id_property is None:
                record = account.records[otype.name].get(entry.key)
                entry.record = None if record is None or record.archived else record
            else:
                entry.record = self._find_unique(account, otype, entry.id_property, entry.key)
            if entry.record is None:
                continue
            first = targets.setdefault(entry.record.id, entry)
            if first is not entry:
                raise _duplicate_ids([first.key, entry.key])
        return entries

    def batch_upsert(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/objects/{type}/batch/upsert``: inputs ``{id, idProperty, properties,
        objectWriteTraceId?}``; ``idProperty`` is a unique property (contacts: ``email``,
        matched without regard to case as HubSpot does, or a ``hasUniqueValue`` one such as
        ``agency_crm_key``). Results are SimplePublicUpsertObjects (``new``: created now).
        200, or 207 with per-input errors; see the section comment for what fails what."""
        started = iso_millis_z(utcnow())
        inputs = _batch_inputs(ctx.json_object())
        entries = self._entries(ctx, otype, inputs, upsert=True)
        results, errors = self._write_inputs(ctx, otype, entries, upsert=True)
        return _batch_response(started, results, errors)

    def batch_update(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/objects/{type}/batch/update``: inputs ``{id, properties, idProperty?,
        objectWriteTraceId?}`` (``id`` the record id unless ``idProperty`` names a unique
        property). Ids naming no record are one OBJECT_NOT_FOUND error in a 207, the others
        are written; results are SimplePublicObjects."""
        started = iso_millis_z(utcnow())
        inputs = _batch_inputs(ctx.json_object())
        entries = self._entries(ctx, otype, inputs, upsert=False)
        results, errors = self._write_inputs(ctx, otype, entries, upsert=False)
        return _batch_response(started, results, errors)

    def batch_read(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v3/objects/{type}/batch/read``: ``{inputs: [{id}], properties,
        propertiesWithHistory, idProperty?}`` (``?archived=true``: archived records only).
        Records come back once each with the default properties plus ``properties``; ids
        naming no record are one OBJECT_NOT_FOUND error in a 207. With
        ``propertiesWithHistory`` HubSpot takes at most 50 inputs; the fake keeps no history,
        so each such property lists its current value only."""
        started = iso_millis_z(utcnow())
        body = ctx.json_object()
        names = _string_list(body.get("properties"), "properties")
        history = _string_list(body.get("propertiesWithHistory"), "propertiesWithHistory")
        inputs = _batch_inputs(body, HISTORY_BATCH_LIMIT if history else BATCH_LIMIT)
        id_property = body.get("idProperty")
        if id_property in ("", "hs_object_id"):
            id_property = None
        account = ctx.account
        if id_property is not None and (
            not isinstance(id_property, str) or id_property not in account.unique_properties(otype)
        ):
            raise self._not_unique(account, otype, id_property)
        archived = bool(json_bool(ctx.request.arg("archived")))
        keys = [_input_id(item.get("id"), f"inputs[{n}].id") for n, item in enumerate(inputs)]
        results: list[JSONDict] = []
        errors: list[JSONDict] = []
        missing: list[str] = []
        seen: set[str] = set()
        records = account.records[otype.name]
        for key in keys:
            record: Record | None = None
            if id_property is None:
                record = records.get(key)
            else:
                wanted = _fold(id_property, key)
                record = next(
                    (
                        r
                        for r in records.values()
                        if r.archived == archived
                        and _fold(id_property, r.properties.get(id_property) or "") == wanted
                    ),
                    None,
                )
            if record is None or record.archived != archived:
                if key not in missing:
                    missing.append(key)
                continue
            if record.id in seen:
                continue
            seen.add(record.id)
            fault = self._item_fault(ctx, {key, record.id}, {"ids": [key]})
            if fault is not None:
                errors.append(fault)
                continue
            out = record.selected(names)
            if history:
                stamp = iso_millis_z(record.updated)
                out["propertiesWithHistory"] = {
                    n: [{"value": v, "timestamp": stamp, "sourceType": "API"}]
                    for n in history
                    if (v := record.properties.get(n)) is not None
                }
            results.append(out)
        if missing:
            errors.insert(
                0,
                _item_error(
                    "OBJECT_NOT_FOUND",
                    f"Could not get some {otype.singular.upper()} objects, they may be deleted "
                    "or not exist. Check that ids are valid.",
                    {"ids": missing},
                ),
            )
        return _batch_response(started, results, errors)

    def batch_associate_default(self, ctx: Ctx[HubSpotAccount], otype: ObjectType) -> Response:
        """``POST /crm/v4/associations/{from}/{to}/batch/associate/default``: inputs
        ``{from: {id}, to: {id}}`` (``otype`` is the from type; deals->contacts and
        contacts->deals). Idempotent like the PUT: a pair already associated, or given twice,
        is one association and one result. A pair naming a missing (or archived) record is
        an OBJECT_NOT_FOUND error whose ``context`` is ``{fromObjectId: [..], toObjectId:
        [..]}``; the spec declares only 200 for this endpoint, with ``errors`` and
        ``numErrors`` in its schema, so such pairs are reported in a 200 and the others are
        associated. HubSpot's behaviour for missing records and repeated pairs here is not
        documented: callers should read ``numErrors`` on any 2xx and not repeat pairs."""
        started = iso_millis_z(utcnow())
        inputs = _batch_inputs(ctx.json_object())
        pairs: list[tuple[str, str]] = []
        for n, item in enumerate(inputs):
            ends = []
            for side in ("from", "to"):
                end = item.get(side)
                if not isinstance(end, dict):
                    raise _error(400, "VALIDATION_ERROR", f"inputs[{n}].{side} must be {{id}}")
                ends.append(_input_id(end.get("id"), f"inputs[{n}].{side}.id"))
            pairs.append((ends[0], ends[1]))
        account = ctx.account
        results: list[JSONDict] = []
        errors: list[JSONDict] = []
        seen: set[tuple[str, str]] = set()
        for from_id, to_id in pairs:
            if (from_id, to_id) in seen:
                continue
            seen.add((from_id, to_id))
            context = {"fromObjectId": [from_id], "toObjectId": [to_id]}
            absent = [
                f"No {type_name[:-1]} with id {key} exists"
                for type_name, key in ((otype.name, from_id), (otype.other, to_id))
                if (found := account.records[type_name].get(key)) is None or found.archived
            ]
            if absent:
                errors.append(_item_error("OBJECT_NOT_FOUND", "; ".join(absent), context))
                continue
            fault = self._item_fault(ctx, {from_id, to_id}, context)
            if fault is not None:
                errors.append(fault)
                continue
            self._link(account, otype, from_id, to_id)
            results.append(
                {
                    "from": {"id": from_id},
                    "to": {"id": to_id},
                    "associationSpec": {
                        "associationCategory": "HUBSPOT_DEFINED",
                        "associationTypeId": otype.association_type,
                    },
                }
            )
        return _batch_response(started, results, errors, partial_status=200)


# --------------------------------------------------------------------------- batch helpers

#: Most inputs a batch call takes; more is HubSpot's 400 (same wording).
BATCH_LIMIT = 100
#: Most inputs of a batch/read that asks for ``propertiesWithHistory``.
HISTORY_BATCH_LIMIT = 50


@dataclass
class _BatchEntry:
    """One input of batch/upsert or batch/update while the call is checked and written."""

    item: JSONDict
    key: str  # the input's id: a record id or the idProperty's value
    id_property: str | None
    trace: str | None  # objectWriteTraceId
    record: Record | None = None  # the record it names (None: to create, or missing)
    props: dict[str, str] | None = None  # validated properties (None: not to be written)

    def fold(self, value: str) -> str:
        """``value`` as compared for this input's idProperty (emails without case)."""
        return _fold(self.id_property, value)

    def match_values(self) -> set[str]:
        """Values an ``item_error`` fault's ``match`` may name this input by."""
        values = {self.key, self.fold(self.key)}
        if self.record is not None:
            values.add(self.record.id)
        return values


def _fold(id_property: str | None, value: str) -> str:
    return value.lower() if id_property == "email" else value


def _batch_inputs(body: JSONDict, limit: int = BATCH_LIMIT) -> list[JSONDict]:
    """``body["inputs"]``: a non-empty array of at most ``limit`` objects (400 otherwise)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _error(400, "VALIDATION_ERROR", "inputs must be a non-empty array")
    if len(inputs) > limit:
        scope = "" if limit == BATCH_LIMIT else " request for property histories"
        raise _error(
            400,
            "VALIDATION_ERROR",
            f"The maximum number of inputs supported in a batch{scope} is {limit}. "
            "Please reduce the number of items and try again",
        )
    for n, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise _error(400, "VALIDATION_ERROR", f"inputs[{n}] must be an object")
    return inputs


def _input_id(raw: Any, where: str) -> str:
    """An input's id: a non-empty string (or an integer, which HubSpot's parser coerces)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, str) or not raw:
        raise _error(400, "VALIDATION_ERROR", f"{where} must be a non-empty string")
    return raw


def _trace_id(item: JSONDict, n: int) -> str | None:
    trace = item.get("objectWriteTraceId")
    if trace is None:
        return None
    if not isinstance(trace, str) or not trace:
        raise _error(
            400, "VALIDATION_ERROR", f"inputs[{n}].objectWriteTraceId must be a non-empty string"
        )
    return trace


def _string_list(raw: Any, name: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise _error(400, "VALIDATION_ERROR", f"{name} must be an array of strings")
    return raw


def _duplicate_ids(keys: list[str]) -> ApiError:
    """HubSpot's 400 for a batch naming a record twice."""
    return _error(
        400,
        "VALIDATION_ERROR",
        f"Duplicate IDs found in batch input: [{', '.join(keys)}]. IDs must be unique",
        context={"ids": keys},
    )


def _refuse_duplicates(entries: list[_BatchEntry]) -> None:
    seen: set[tuple[str, str]] = set()
    duplicated: list[str] = []
    for entry in entries:
        slot = (entry.id_property or "", entry.fold(entry.key))
        if slot not in seen:
            seen.add(slot)
        elif entry.key not in duplicated:
            duplicated.append(entry.key)
    if duplicated:
        raise _duplicate_ids(duplicated)


def _item_error(
    category: str,
    message: str,
    context: Mapping[str, list[str]],
    details: list[JSONDict] | None = None,
) -> JSONDict:
    """One entry of a batch response's ``errors``: HubSpot's per-input error (``status``
    is the word "error"), with the ``errors`` and ``links`` the spec's StandardError
    requires (HubSpot itself often leaves them out)."""
    return {
        "status": "error",
        "category": category,
        "message": message,
        "context": dict(context),
        "errors": list(details or []),
        "links": {},
    }


def _item_error_from(exc: ApiError, context: Mapping[str, list[str]]) -> JSONDict:
    """The per-input form of an error that would otherwise fail the whole call."""
    payload: JSONDict = exc.payload
    merged = {**(payload.get("context") or {}), **context}
    return _item_error(payload["category"], payload["message"], merged, payload.get("errors"))


def _batch_response(
    started: str, results: list[JSONDict], errors: list[JSONDict], partial_status: int = 207
) -> Response:
    """200 ``{status: COMPLETE, results, startedAt, completedAt}``; with errors also
    ``numErrors`` and ``errors``, answered with ``partial_status``."""
    body: JSONDict = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": started,
        "completedAt": iso_millis_z(utcnow()),
    }
    if not errors:
        return Response.json(200, body)
    body["numErrors"] = len(errors)
    body["errors"] = errors
    return Response.json(partial_status, body)


def _scopes(raw: str) -> list[str]:
    """Scopes from a space- (or ``+``/comma-) separated ``scope`` parameter."""
    return [s for s in re.split(r"[\s+,]+", raw) if s]


def _redirect(uri: str, **params: str) -> Response:
    """302 to ``uri`` with ``params`` added to its query (empty ones left out)."""
    query = urlencode({k: v for k, v in params.items() if v})
    location = uri + ("&" if urlsplit(uri).query else "?") + query if query else uri
    return Response(302, b"", [("Location", location)], content_type="text/html;charset=utf-8")


def html_page(status: int, title: str, body: str) -> Response:
    """A small HTML page (the consent form and its error pages)."""
    if not body.lstrip().startswith("<"):
        body = f'<h1 id="error-title">{escape(title)}</h1><p id="error-message">{escape(body)}</p>'
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body>{body}</body></html>\n"
    )
    return Response(status, page.encode(), content_type="text/html;charset=utf-8")


def _property_options(raw: Any, kind: str) -> list[JSONDict]:
    """The ``options`` of a property create (required, non-empty, for enumerations)."""
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise _error(400, "VALIDATION_ERROR", "options must be an array")
    out: list[JSONDict] = []
    for n, item in enumerate(raw):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("label"), str)
            or not isinstance(item.get("value"), str)
        ):
            raise _error(400, "VALIDATION_ERROR", f"options[{n}] needs string label and value")
        order = item.get("displayOrder", n)
        hidden = item.get("hidden", False)
        if isinstance(order, bool) or not isinstance(order, int) or not isinstance(hidden, bool):
            raise _error(400, "VALIDATION_ERROR", f"options[{n}]: bad displayOrder or hidden")
        out.append(
            {
                "label": item["label"],
                "value": item["value"],
                "description": str(item.get("description") or ""),
                "displayOrder": order,
                "hidden": hidden,
            }
        )
    if kind == "enumeration" and not out:
        raise _error(400, "VALIDATION_ERROR", "enumeration properties need options")
    return out


def _typed_value(definition: Mapping[str, Any], value: str) -> str:
    """A value written to a created property, checked and normalized by its type."""
    name, kind = definition["name"], definition["type"]
    if kind == "number":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _invalid_property(name, f"{value} was not a valid number", "INVALID_DOUBLE")
        return value.strip()
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            raise _invalid_property(name, f"{value} was not a valid boolean", "INVALID_BOOLEAN")
        return value.lower()
    if kind in ("date", "datetime"):
        normalized = _normalize_date(name, value)
        return normalized[:10] if kind == "date" else normalized
    if kind == "enumeration":
        allowed = {o["value"] for o in definition["options"]}
        for part in value.split(";"):
            if part not in allowed:
                raise _invalid_property(
                    name, f"{part} was not one of the allowed options: {sorted(allowed)}"
                )
    return value


def _int_arg(raw: str | None, default: int, name: str, low: int, high: int | None) -> int:
    if raw is None or raw == "":
        return default
    value = ascii_int(raw)
    if value is None:
        raise _error(400, "VALIDATION_ERROR", f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        raise _error(400, "VALIDATION_ERROR", f"{name} must be between {low} and {high}")
    return value


def _as_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _filter_matcher(raw: Any) -> Callable[[Mapping[str, str]], bool]:
    """One search filter as a predicate on a property map (string comparisons ignore case)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("propertyName"), str):
        raise _error(400, "VALIDATION_ERROR", "each filter needs propertyName and operator")
    name: str = raw["propertyName"]
    op = raw.get("operator")
    value = raw.get("value")
    value_s = str(value).lower() if value is not None else None
    raw_values = raw.get("values")
    if raw_values is not None and not isinstance(raw_values, list):
        raise _error(400, "VALIDATION_ERROR", f"values of a filter on {name} must be an array")
    values = [str(v).lower() for v in raw_values or []]
    if op in ("IN", "NOT_IN") and not values:
        raise _error(400, "VALIDATION_ERROR", f"operator {op} needs a non-empty values array")

    def have(props: Mapping[str, str]) -> str | None:
        got = props.get(name)
        return got.lower() if got not in (None, "") else None

    def compare(props: Mapping[str, str], test: Callable[[float, float], bool]) -> bool:
        mine, theirs = _as_number(have(props)), _as_number(value_s)
        return mine is not None and theirs is not None and test(mine, theirs)

    if op in ("EQ", "NEQ", "GT", "GTE", "LT", "LTE", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        if value is None:
            raise _error(400, "VALIDATION_ERROR", f"operator {op} needs a value")
    if op == "EQ":
        return lambda p: have(p) == value_s
    if op == "NEQ":
        return lambda p: have(p) != value_s
    if op == "IN":
        return lambda p: have(p) in values
    if op == "NOT_IN":
        return lambda p: have(p) not in values
    if op == "HAS_PROPERTY":
        return lambda p: have(p) is not None
    if op == "NOT_HAS_PROPERTY":
        return lambda p: have(p) is None
    if op == "CONTAINS_TOKEN":
        token = (value_s or "").strip("*")
        return lambda p: token in (have(p) or "")
    if op == "NOT_CONTAINS_TOKEN":
        token = (value_s or "").strip("*")
        return lambda p: token not in (have(p) or "")
    if op == "GT":
        return lambda p: compare(p, lambda a, b: a > b)
    if op == "GTE":
        return lambda p: compare(p, lambda a, b: a >= b)
    if op == "LT":
        return lambda p: compare(p, lambda a, b: a < b)
    if op == "LTE":
        return lambda p: compare(p, lambda a, b: a <= b)
    raise _error(400, "VALIDATION_ERROR", f"Unsupported filter operator {op!r}")
