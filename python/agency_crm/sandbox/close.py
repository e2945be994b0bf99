"""Fake Close: leads with nested contacts, contacts, opportunities, pipelines, users, data search.

Shapes follow ``crm-specs/close/close-openapi.yml`` (Lead, Contact, Opportunity schemas) and
the closex fixtures; errors follow https://developer.close.com/api/overview/http-response-codes:
``{"error": "..."}``, or for validation ``{"errors": [...], "field-errors": {...}}``.
Paths end with ``/``; a path without the trailing slash is a 404.

``POST /api/v1/data/search/`` evaluates a subset of Advanced Filtering: ``and``/``or``,
``object_type`` (lead, contact, opportunity), ``field_condition`` on a regular or custom
field with a ``text`` condition in ``exact_value`` mode, and ``has_related`` from contact to
contact_email and from lead to contact/opportunity. Anything else is a 400.
"""

from __future__ import annotations

import base64
import itertools
import re
import secrets
import string
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar

from agency_crm.sandbox.core import (
    AccountBase,
    ApiError,
    Ctx,
    Entity,
    JSONDict,
    RateLimit,
    Request,
    Response,
    Route,
    VendorApp,
    ascii_int,
    decode_cursor,
    encode_cursor,
    iso_micros_offset,
    utcnow,
)

_ALPHABET = string.ascii_letters + string.digits
_ORG_SEQ = itertools.count(1)
#: The seeded pipeline's opportunity statuses: label and type.
STATUSES: tuple[tuple[str, str], ...] = (
    ("Active", "active"),
    ("Demo Completed", "active"),
    ("Won", "won"),
    ("Lost", "lost"),
)
LEAD_STATUSES = ("Potential", "Qualified", "Bad Fit")
VALUE_PERIODS = ("one_time", "monthly", "annual")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$"}


def close_id(prefix: str) -> str:
    """A Close-style id: ``lead_`` + 43 random letters and digits."""
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(43))


def field_errors(errors: Mapping[str, Any]) -> ApiError:
    """Close's 400 validation body."""
    return ApiError(400, {"errors": [], "field-errors": dict(errors)})


def _error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error": message})


def format_value(value: int | None, currency: str | None, period: str) -> str | None:
    """``$500``, ``$50 monthly``, ``€1,234.50 annually`` from cents."""
    if value is None:
        return None
    symbol = CURRENCY_SYMBOLS.get(currency or "USD", f"{currency} ")
    amount = f"{value / 100:,.0f}" if value % 100 == 0 else f"{value / 100:,.2f}"
    suffix = {"monthly": " monthly", "annual": " annually"}.get(period, "")
    return f"{symbol}{amount}{suffix}"


class CloseAccount(AccountBase):
    """One Close organization."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(organization_id)
        stamp = iso_micros_offset(self.created)
        self.organization_name = f"Sandbox Org {next(_ORG_SEQ)}"
        self.users: list[JSONDict] = [
            {
                "id": close_id("user"),
                "email": f"{first.lower()}@{organization_id.lower()}.sandbox.test",
                "first_name": first,
                "last_name": "Sandbox",
                "image": None,
                "organizations": [organization_id],
                "date_created": stamp,
                "date_updated": stamp,
            }
            for first in ("Clara", "Colin")
        ]
        pipeline_id = close_id("pipe")
        self.pipelines: list[JSONDict] = [
            {"id": pipeline_id, "name": "Sales", "organization_id": organization_id}
        ]
        self.statuses: list[JSONDict] = [
            {
                "id": close_id("stat"),
                "label": label,
                "type": kind,
                "pipeline_id": pipeline_id,
                "organization_id": organization_id,
            }
            for label, kind in STATUSES
        ]
        self.lead_statuses: list[JSONDict] = [
            {"id": close_id("stat"), "label": label, "organization_id": organization_id}
            for label in LEAD_STATUSES
        ]
        self.leads: dict[str, Entity] = {}
        self.contacts: dict[str, Entity] = {}
        self.opportunities: dict[str, Entity] = {}
        #: Created custom fields per object type (lead, opportunity), by id.
        self.custom_fields: dict[str, dict[str, JSONDict]] = {"lead": {}, "opportunity": {}}

    def user(self, user_id: str) -> JSONDict | None:
        """A user by id."""
        return next((u for u in self.users if u["id"] == user_id), None)

    def status(self, status_id: str) -> JSONDict | None:
        """An opportunity status by id."""
        return next((s for s in self.statuses if s["id"] == status_id), None)

    def pipeline(self, pipeline_id: str) -> JSONDict | None:
        """A pipeline by id."""
        return next((p for p in self.pipelines if p["id"] == pipeline_id), None)


CUSTOM_FIELD_TYPES = (
    "text",
    "textarea",
    "number",
    "date",
    "datetime",
    "choices",
    "user",
    "contact",
    "hidden",
)


def _custom(
    body: Mapping[str, Any], fields: Mapping[str, JSONDict] | None = None
) -> dict[str, Any]:
    """``custom.cf_...`` keys of a body (other ``custom.`` names are a 400). Values of
    created fields (``fields``) are checked by their type; other ``cf_`` ids are stored as
    given (existing tests and the runner write ``cf_agency_crm_key`` without creating it)."""
    out: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for key, value in body.items():
        if key.startswith("custom."):
            field_id = key[len("custom.") :]
            if not field_id.startswith("cf_"):
                raise field_errors({key: f"Custom field {field_id!r} does not exist."})
            definition = (fields or {}).get(field_id)
            if definition is not None and value is not None:
                problem = _custom_problem(definition, value)
                if problem:
                    errors[key] = problem
                    continue
            out[field_id] = value
    if errors:
        raise field_errors(errors)
    return out


def _custom_problem(definition: Mapping[str, Any], value: Any) -> str | None:
    """Why ``value`` does not fit a created custom field, or None."""
    values = value if definition["accepts_multiple_values"] and isinstance(value, list) else [value]
    for item in values:
        kind = definition["type"]
        if kind == "number":
            if isinstance(item, bool) or not isinstance(item, int | float | str):
                return "A valid number is required."
            try:
                float(item)
            except ValueError:
                return "A valid number is required."
        elif kind == "date":
            if not isinstance(item, str) or not _DATE.fullmatch(item):
                return "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
        elif kind == "datetime":
            try:
                datetime.fromisoformat(str(item).replace("Z", "+00:00"))
            except ValueError:
                return "Datetime has wrong format. Use ISO 8601."
        elif kind == "choices":
            if item not in definition["choices"]:
                return f"{item!r} is not a valid choice."
        elif kind in ("text", "textarea", "user", "contact") and not isinstance(item, str):
            return "Not a valid string."
    return None


def _merge_custom(current: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Custom values after an update (a null value clears the field)."""
    merged = {**current, **new}
    return {k: v for k, v in merged.items() if v is not None}


def _list(value: Any) -> list[Any]:
    """``value`` when it is a list, else ``[]`` (the caller reports the type error)."""
    return value if isinstance(value, list) else []


def _with_custom(data: JSONDict, custom: Mapping[str, Any]) -> JSONDict:
    out = dict(data)
    for field_id, value in custom.items():
        if value is not None:
            out[f"custom.{field_id}"] = value
    return out


class CloseApp(VendorApp[CloseAccount]):
    """The fake Close API."""

    vendor: ClassVar[str] = "close"
    #: Per-key limit, one window per account for all endpoint groups: 60 per rolling 1 s.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(60, 1_000)

    # ----------------------------------------------------------------- hooks

    def make_account(self) -> CloseAccount:
        """An organization with two users, one pipeline and four opportunity statuses."""
        return CloseAccount(close_id("orga"))

    def extract_credential(self, req: Request) -> str | None:
        """HTTP Basic with the API key as user name (Bearer OAuth tokens accepted too)."""
        scheme, _, value = (req.header("authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return value.strip() or None
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None

    def auth_error(self, reason: str, token: str | None, expired_for: float = 0.0) -> Response:
        """401 ``{"error": ...}``."""
        message = (
            "Unauthorized: no API key given"
            if reason == "missing"
            else "Unauthorized: the API key is invalid or was revoked"
        )
        return Response.json(401, {"error": message})

    def error_response(self, status: int, message: str | None = None) -> Response:
        """``{"error": ...}`` (400 as ``{"errors", "field-errors"}``)."""
        if status == 429:
            return self.too_many_requests(self.config.rate_limit, 1)
        if status == 400:
            return Response.json(400, {"errors": [message or "Bad request"], "field-errors": {}})
        default = {
            401: "Unauthorized",
            402: "Your plan does not allow this operation; upgrade your plan.",
            403: "You don't have permission to perform this action.",
            404: "Not found",
            405: "Method not allowed",
            409: "Conflict",
        }.get(status, "Internal server error" if status >= 500 else "Error")
        return Response.json(status, {"error": message or default})

    def rate_headers(self, limit: RateLimit, remaining: int, reset_s: int) -> list[tuple[str, str]]:
        """``RateLimit: limit=N, remaining=N, reset=S``."""
        return [("RateLimit", f"limit={limit.max}, remaining={remaining}, reset={reset_s}")]

    def too_many_requests(self, limit: RateLimit | None, retry_after: int) -> Response:
        """429 ``{"error": {"rate_reset", "message", ...}}`` plus ``RateLimit`` and Retry-After."""
        limit = limit or self.default_rate_limit
        body = {
            "error": {
                "rate_reset": retry_after,
                "message": f"API call count exceeded for this {limit.interval_ms / 1000:g} "
                "second window",
                "rate_limit": limit.max,
                "rate_window": limit.interval_ms / 1000,
            }
        }
        headers = [*self.rate_headers(limit, 0, retry_after), ("Retry-After", str(retry_after))]
        return Response.json(429, body, headers)

    def account_summary(self, account: CloseAccount) -> JSONDict:
        """Pipelines with statuses (probability null: Close has none) and users."""
        return {
            "pipelines": [
                {
                    "id": p["id"],
                    "name": p["name"],
                    "stages": [
                        {"id": s["id"], "name": s["label"], "probability": None, "type": s["type"]}
                        for s in account.statuses
                        if s["pipeline_id"] == p["id"]
                    ],
                }
                for p in account.pipelines
            ],
            "users": [{"id": u["id"], "email": u["email"]} for u in account.users],
            "organization_id": account.id,
        }

    def account_state(self, account: CloseAccount, mono: float) -> JSONDict:
        """Leads (with contacts and opportunities nested) and opportunities."""
        return {
            "leads": [self._lead_json(account, e) for e in account.leads.values()],
            "opportunities": [self._opp_json(account, e) for e in account.opportunities.values()],
        }

    # ----------------------------------------------------------------- routes

    def build_routes(self) -> list[Route[CloseAccount]]:
        """All Close endpoints the fake serves."""
        R = Route[CloseAccount]
        return [
            R("GET", "/api/v1/me/", self.me),
            R("GET", "/api/v1/user/", self.list_users),
            R("GET", "/api/v1/user/{id}/", self.get_user),
            R("GET", "/api/v1/pipeline/", self.list_pipelines),
            R("GET", "/api/v1/status/opportunity/", self.list_statuses),
            R("GET", "/api/v1/status/lead/", self.list_lead_statuses),
            R("GET", "/api/v1/lead/", self.list_leads),
            R("POST", "/api/v1/lead/", self.create_lead),
            R("GET", "/api/v1/lead/{id}/", self.get_lead),
            R("PUT", "/api/v1/lead/{id}/", self.update_lead),
            R("POST", "/api/v1/contact/", self.create_contact),
            R("GET", "/api/v1/contact/{id}/", self.get_contact),
            R("PUT", "/api/v1/contact/{id}/", self.update_contact),
            R("GET", "/api/v1/opportunity/", self.list_opportunities),
            R("POST", "/api/v1/opportunity/", self.create_opportunity),
            R("GET", "/api/v1/opportunity/{id}/", self.get_opportunity),
            R("PUT", "/api/v1/opportunity/{id}/", self.update_opportunity),
            R("POST", "/api/v1/data/search/", self.data_search),
            *(
                route
                for kind in ("lead", "opportunity")
                for route in (
                    R("GET", f"/api/v1/custom_field/{kind}/", self._custom_field_lister(kind)),
                    R("POST", f"/api/v1/custom_field/{kind}/", self._custom_field_creator(kind)),
                    R(
                        "GET",
                        f"/api/v1/custom_field/{kind}/{{id}}/",
                        self._custom_field_getter(kind),
                    ),
                )
            ),
        ]

    # ----------------------------------------------------------------- JSON shapes

    def _user_name(self, account: CloseAccount, user_id: str | None) -> str | None:
        user = account.user(user_id) if user_id else None
        return f"{user['first_name']} {user['last_name']}" if user else None

    def _contact_json(self, account: CloseAccount, entity: Entity) -> JSONDict:
        data = dict(entity.data)
        data["created_by_name"] = self._user_name(account, data["created_by"])
        data["updated_by_name"] = self._user_name(account, data["updated_by"])
        return data

    def _opp_json(self, account: CloseAccount, entity: Entity) -> JSONDict:
        data = entity.data
        status = account.status(data["status_id"]) or {}
        pipeline = account.pipeline(status.get("pipeline_id", "")) or {}
        lead = account.leads.get(data["lead_id"])
        contact = account.contacts.get(data["contact_id"] or "")
        value, period, confidence = data["value"], data["value_period"], data["confidence"]
        annualized = None if value is None else value * (12 if period == "monthly" else 1)
        out = {
            **{k: v for k, v in data.items() if k != "custom"},
            "status_label": status.get("label"),
            "status_display_name": status.get("label"),
            "status_type": status.get("type"),
            "pipeline_id": pipeline.get("id"),
            "pipeline_name": pipeline.get("name"),
            "lead_name": lead.data["name"] if lead else None,
            "contact_name": contact.data["name"] if contact else None,
            "user_name": self._user_name(account, data["user_id"]),
            "created_by_name": self._user_name(account, data["created_by"]),
            "updated_by_name": self._user_name(account, data["updated_by"]),
            "value_formatted": format_value(value, data["value_currency"], period),
            "expected_value": None if value is None else value * confidence // 100,
            "annualized_value": annualized,
            "annualized_expected_value": None
            if annualized is None
            else annualized * confidence // 100,
        }
        return _with_custom(out, data["custom"])

    def _lead_json(self, account: CloseAccount, entity: Entity) -> JSONDict:
        data = entity.data
        contacts = [
            self._contact_json(account, c)
            for c in account.contacts.values()
            if c.data["lead_id"] == data["id"]
        ]
        status = next((s for s in account.lead_statuses if s["id"] == data["status_id"]), {})
        emails = [e for c in contacts for e in c["emails"]]
        phones = [p for c in contacts for p in c["phones"]]
        out = {
            **{k: v for k, v in data.items() if k != "custom"},
            "status_label": status.get("label"),
            "display_name": data["name"] or "",
            "contacts": contacts,
            "contact_ids": [c["id"] for c in contacts],
            "opportunities": [
                self._opp_json(account, o)
                for o in account.opportunities.values()
                if o.data["lead_id"] == data["id"]
            ],
            "primary_email": emails[0] if emails else None,
            "primary_phone": phones[0] if phones else None,
            "created_by_name": self._user_name(account, data["created_by"]),
            "updated_by_name": self._user_name(account, data["updated_by"]),
        }
        return _with_custom(out, data["custom"])

    # ----------------------------------------------------------------- users, pipelines

    def me(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/me/``: the first user with their organization."""
        account = ctx.account
        me = dict(account.users[0])
        me["organizations"] = [
            {
                "id": account.id,
                "name": account.organization_name,
                "date_created": me["date_created"],
            }
        ]
        me["memberships"] = [
            {"id": close_id("memb"), "organization_id": account.id, "user_id": me["id"]}
        ]
        return Response.json(200, me)

    @staticmethod
    def _skip_limit(req: Request, items: list[Any]) -> JSONDict:
        skip = ascii_int(req.arg("_skip") or "0")
        limit = ascii_int(req.arg("_limit") or "100")
        if skip is None or limit is None:
            raise field_errors({"_skip": "must be an integer"})
        if skip < 0 or limit < 1:
            raise field_errors({"_limit": "must be positive"})
        return {"data": items[skip : skip + limit], "has_more": skip + limit < len(items)}

    def list_users(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/user/`` with ``_skip``/``_limit``."""
        return Response.json(200, self._skip_limit(ctx.request, ctx.account.users))

    def get_user(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/user/{id}/``."""
        user = ctx.account.user(ctx.params["id"])
        if user is None:
            raise _error(404, "Empty query: User matching query does not exist.")
        return Response.json(200, user)

    def list_pipelines(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/pipeline/``: pipelines with their statuses."""
        account = ctx.account
        data = [
            {
                **p,
                "statuses": [
                    {"id": s["id"], "label": s["label"], "type": s["type"]}
                    for s in account.statuses
                    if s["pipeline_id"] == p["id"]
                ],
            }
            for p in account.pipelines
        ]
        return Response.json(200, {"data": data, "has_more": False})

    def list_statuses(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/status/opportunity/``."""
        return Response.json(200, {"data": ctx.account.statuses, "has_more": False})

    def list_lead_statuses(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/status/lead/``."""
        return Response.json(200, {"data": ctx.account.lead_statuses, "has_more": False})

    # ----------------------------------------------------------------- leads, contacts

    @staticmethod
    def _parse_contact(raw: Any) -> tuple[JSONDict, dict[str, Any]]:
        """Validated contact fields, or field errors."""
        if not isinstance(raw, dict):
            return {}, {"__all__": "must be an object"}
        errors: dict[str, Any] = {}
        name = raw.get("name")
        title = raw.get("title")
        if name is not None and not isinstance(name, str):
            errors["name"] = "Not a valid string."
        if title is not None and not isinstance(title, str):
            errors["title"] = "Not a valid string."
        for key in ("emails", "phones", "urls"):
            if raw.get(key) is not None and not isinstance(raw[key], list):
                errors[key] = "Not a valid list."
        emails: list[JSONDict] = []
        for n, item in enumerate(_list(raw.get("emails"))):
            email = item.get("email") if isinstance(item, dict) else None
            if not isinstance(email, str) or "@" not in email.strip()[1:-1]:
                errors.setdefault("emails", {})[str(n)] = {"email": "Invalid email address."}
                continue
            kind = item.get("type") or "office"
            if not isinstance(kind, str):
                errors.setdefault("emails", {})[str(n)] = {"type": "Not a valid string."}
                continue
            emails.append(
                {
                    "email": email.strip(),
                    "email_lower": email.strip().lower(),
                    "type": kind,
                    "is_unsubscribed": False,
                }
            )
        phones: list[JSONDict] = []
        for n, item in enumerate(_list(raw.get("phones"))):
            phone = item.get("phone") if isinstance(item, dict) else None
            if not isinstance(phone, str) or not any(ch.isdigit() for ch in phone):
                errors.setdefault("phones", {})[str(n)] = {"phone": "Invalid phone number."}
                continue
            kind = item.get("type") or "office"
            if not isinstance(kind, str):
                errors.setdefault("phones", {})[str(n)] = {"type": "Not a valid string."}
                continue
            phones.append(
                {
                    "phone": phone,
                    "phone_formatted": phone,
                    "type": kind,
                    "country": None,
                }
            )
        fields = {"name": name, "title": title, "emails": emails, "phones": phones}
        return fields, errors

    def _new_contact(
        self, ctx: Ctx[CloseAccount], lead_id: str, fields: JSONDict, stamp: str
    ) -> Entity:
        me = ctx.account.users[0]["id"]
        entity = Entity(
            {
                "id": close_id("cont"),
                "lead_id": lead_id,
                "organization_id": ctx.account.id,
                "name": fields["name"],
                "display_name": fields["name"] or "",
                "title": fields["title"],
                "emails": fields["emails"],
                "phones": fields["phones"],
                "urls": [],
                "integration_links": [],
                "created_by": me,
                "updated_by": me,
                "date_created": stamp,
                "date_updated": stamp,
            }
        )
        ctx.account.contacts[entity.data["id"]] = entity
        entity.reindex(ctx.searchable_from())
        return entity

    def _new_lead(
        self,
        ctx: Ctx[CloseAccount],
        name: str | None,
        status_id: str,
        description: str,
        custom: Mapping[str, Any],
        stamp: str,
    ) -> Entity:
        lead_id = close_id("lead")
        me = ctx.account.users[0]["id"]
        entity = Entity(
            {
                "id": lead_id,
                "name": name,
                "status_id": status_id,
                "description": description,
                "url": None,
                "html_url": f"https://app.close.com/lead/{lead_id}/",
                "organization_id": ctx.account.id,
                "source": None,
                "addresses": [],
                "tasks": [],
                "integration_links": [],
                "created_by": me,
                "updated_by": me,
                "date_created": stamp,
                "date_updated": stamp,
                "custom": _merge_custom({}, custom),
            }
        )
        ctx.account.leads[lead_id] = entity
        entity.reindex(ctx.searchable_from())
        return entity

    def create_lead(self, ctx: Ctx[CloseAccount]) -> Response:
        """``POST /api/v1/lead/`` with nested contacts and ``custom.cf_...`` fields."""
        body = ctx.json_object()
        account = ctx.account
        errors: dict[str, Any] = {}
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            errors["name"] = "Not a valid string."
        status_id = body.get("status_id") or account.lead_statuses[0]["id"]
        if "status" in body and "status_id" not in body:
            match = [s for s in account.lead_statuses if s["label"] == body["status"]]
            if not match:
                errors["status"] = "Lead status does not exist."
            else:
                status_id = match[0]["id"]
        if not any(s["id"] == status_id for s in account.lead_statuses):
            errors["status_id"] = "Lead status does not exist."
        raw_contacts = body.get("contacts") or []
        if not isinstance(raw_contacts, list):
            errors["contacts"] = "Not a valid list."
            raw_contacts = []
        parsed: list[JSONDict] = []
        contact_errors: dict[str, Any] = {}
        for n, raw in enumerate(raw_contacts):
            fields, errs = self._parse_contact(raw)
            if errs:
                contact_errors[str(n)] = {"errors": [], "field-errors": errs}
            parsed.append(fields)
        if contact_errors:
            errors["contacts"] = {"errors": [], "field-errors": contact_errors}
        if errors:
            raise field_errors(errors)
        custom = _custom(body, account.custom_fields["lead"])
        stamp = iso_micros_offset(utcnow())
        description = body.get("description") or ""
        lead = self._new_lead(ctx, name, status_id, description, custom, stamp)
        for fields in parsed:
            self._new_contact(ctx, lead.data["id"], fields, stamp)
        return Response.json(200, self._lead_json(account, lead))

    def update_lead(self, ctx: Ctx[CloseAccount]) -> Response:
        """``PUT /api/v1/lead/{id}/``: partial update of name, description, url, status
        (``status_id`` or ``status`` label) and ``custom.cf_...`` (null clears); a 400
        changes nothing. Contacts are changed through the contact API."""
        entity = ctx.account.leads.get(ctx.params["id"])
        if entity is None:
            raise _error(404, "Empty query: Lead matching query does not exist.")
        body = ctx.json_object()
        account = ctx.account
        errors: dict[str, Any] = {}
        data = dict(entity.data)
        for key in ("name", "description", "url"):
            if key in body:
                if body[key] is not None and not isinstance(body[key], str):
                    errors[key] = "Not a valid string."
                else:
                    data[key] = body[key] if key != "description" else body[key] or ""
        if "status_id" in body:
            if not any(s["id"] == body["status_id"] for s in account.lead_statuses):
                errors["status_id"] = "Lead status does not exist."
            else:
                data["status_id"] = body["status_id"]
        elif "status" in body:
            match = [s for s in account.lead_statuses if s["label"] == body["status"]]
            if not match:
                errors["status"] = "Lead status does not exist."
            else:
                data["status_id"] = match[0]["id"]
        if "contacts" in body:
            errors["contacts"] = "Contacts cannot be updated through the lead; use /contact/."
        if errors:
            raise field_errors(errors)
        data["custom"] = _merge_custom(data["custom"], _custom(body, account.custom_fields["lead"]))
        data["updated_by"] = account.users[0]["id"]
        data["date_updated"] = iso_micros_offset(utcnow())
        entity.data = data
        entity.reindex(ctx.searchable_from())
        return Response.json(200, self._lead_json(account, entity))

    def list_leads(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/lead/?query=&_skip=&_limit=`` (the deprecated search syntax, best
        effort: words match name, description, contact names and emails; ``field:value``
        and ``field:"quoted value"`` match name, email, phone, status, description, id,
        ``lead_id`` and ``custom.cf_...``)."""
        account = ctx.account
        leads = [self._lead_json(account, e) for e in account.leads.values()]
        query = ctx.request.arg("query") or ""
        tests = [_lead_term(term) for term in _query_terms(query)]
        hits = [lead for lead in leads if all(test(lead) for test in tests)]
        hits.sort(key=lambda d: d["date_created"], reverse=True)
        page = self._skip_limit(ctx.request, hits)
        page["total_results"] = len(hits)
        return Response.json(200, page)

    def list_opportunities(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/opportunity/`` filtered by ``lead_id``, ``contact_id``, ``user_id``,
        ``status_id``, ``status_type`` (newest first, ``_skip``/``_limit``)."""
        account = ctx.account
        filters = {
            key: ctx.request.arg(key)
            for key in ("lead_id", "contact_id", "user_id", "status_id", "status_type")
            if ctx.request.arg(key) is not None
        }
        opps = [self._opp_json(account, e) for e in account.opportunities.values()]
        hits = [o for o in opps if all(o.get(k) == v for k, v in filters.items())]
        hits.sort(key=lambda d: d["date_created"], reverse=True)
        page = self._skip_limit(ctx.request, hits)
        page["total_results"] = len(hits)
        return Response.json(200, page)

    def get_lead(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/lead/{id}/``."""
        lead = ctx.account.leads.get(ctx.params["id"])
        if lead is None:
            raise _error(404, "Empty query: Lead matching query does not exist.")
        return Response.json(200, self._lead_json(ctx.account, lead))

    def create_contact(self, ctx: Ctx[CloseAccount]) -> Response:
        """``POST /api/v1/contact/`` (without ``lead_id`` a new lead is created)."""
        body = ctx.json_object()
        fields, errors = self._parse_contact(body)
        lead_id = body.get("lead_id")
        if lead_id is not None and (
            not isinstance(lead_id, str) or lead_id not in ctx.account.leads
        ):
            errors["lead_id"] = "Lead does not exist."
        if errors:
            raise field_errors(errors)
        stamp = iso_micros_offset(utcnow())
        if lead_id is None:
            status = ctx.account.lead_statuses[0]["id"]
            lead_id = self._new_lead(ctx, fields["name"], status, "", {}, stamp).data["id"]
        else:
            lead = ctx.account.leads[lead_id]
            lead.data["date_updated"] = stamp
            lead.reindex(ctx.searchable_from())
        contact = self._new_contact(ctx, lead_id, fields, stamp)
        return Response.json(200, self._contact_json(ctx.account, contact))

    def update_contact(self, ctx: Ctx[CloseAccount]) -> Response:
        """``PUT /api/v1/contact/{id}/``: partial update (a given ``emails`` or ``phones``
        list replaces the old one); a 400 changes nothing."""
        entity = ctx.account.contacts.get(ctx.params["id"])
        if entity is None:
            raise _error(404, "Empty query: Contact matching query does not exist.")
        body = ctx.json_object()
        fields, errors = self._parse_contact(body)
        if "lead_id" in body and body["lead_id"] != entity.data["lead_id"]:
            errors["lead_id"] = "A contact cannot be moved to another lead."
        if errors:
            raise field_errors(errors)
        data = dict(entity.data)
        for key in ("name", "title", "emails", "phones"):
            if key in body:
                data[key] = fields[key]
        data["display_name"] = data["name"] or ""
        data["updated_by"] = ctx.account.users[0]["id"]
        data["date_updated"] = iso_micros_offset(utcnow())
        entity.data = data
        entity.reindex(ctx.searchable_from())
        lead = ctx.account.leads[data["lead_id"]]
        lead.reindex(ctx.searchable_from())
        return Response.json(200, self._contact_json(ctx.account, entity))

    # ----------------------------------------------------------------- custom fields

    def _custom_field_lister(self, kind: str) -> Callable[[Ctx[CloseAccount]], Response]:
        def list_fields(ctx: Ctx[CloseAccount]) -> Response:
            """``GET /api/v1/custom_field/{kind}/`` (``_skip``/``_limit``)."""
            fields = list(ctx.account.custom_fields[kind].values())
            return Response.json(200, self._skip_limit(ctx.request, fields))

        return list_fields

    def _custom_field_getter(self, kind: str) -> Callable[[Ctx[CloseAccount]], Response]:
        def get_field(ctx: Ctx[CloseAccount]) -> Response:
            """``GET /api/v1/custom_field/{kind}/{id}/``."""
            found = ctx.account.custom_fields[kind].get(ctx.params["id"])
            if found is None:
                raise _error(404, "Empty query: CustomField matching query does not exist.")
            return Response.json(200, found)

        return get_field

    def _custom_field_creator(self, kind: str) -> Callable[[Ctx[CloseAccount]], Response]:
        def create_field(ctx: Ctx[CloseAccount]) -> Response:
            """``POST /api/v1/custom_field/{kind}/`` -> the field, id ``cf_...``."""
            body = ctx.json_object()
            account = ctx.account
            errors: dict[str, Any] = {}
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                errors["name"] = "This field is required."
            elif any(f["name"] == name for f in account.custom_fields[kind].values()):
                errors["name"] = "A custom field with this name already exists."
            kind_of = body.get("type")
            if kind_of not in CUSTOM_FIELD_TYPES:
                errors["type"] = f"Must be one of {', '.join(CUSTOM_FIELD_TYPES)}."
            choices = body.get("choices", [])
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                errors["choices"] = "Must be a list of strings."
            elif kind_of == "choices" and not choices:
                errors["choices"] = "Choices are required for the choices type."
            multiple = body.get("accepts_multiple_values", False)
            if not isinstance(multiple, bool):
                errors["accepts_multiple_values"] = "Must be a boolean."
            description = body.get("description")
            if description is not None and not isinstance(description, str):
                errors["description"] = "Not a valid string."
            roles = body.get("editable_with_roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                errors["editable_with_roles"] = "Must be a list of role ids."
            if errors:
                raise field_errors(errors)
            stamp = iso_micros_offset(utcnow())
            me = account.users[0]["id"]
            field = {
                "id": close_id("cf"),
                "name": name,
                "description": description,
                "type": kind_of,
                "choices": choices if kind_of == "choices" else [],
                "accepts_multiple_values": multiple,
                "editable_with_roles": roles,
                "is_shared": False,
                "organization_id": account.id,
                "created_by": me,
                "updated_by": me,
                "date_created": stamp,
                "date_updated": stamp,
            }
            account.custom_fields[kind][field["id"]] = field
            return Response.json(200, field)

        return create_field

    def get_contact(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/contact/{id}/``."""
        contact = ctx.account.contacts.get(ctx.params["id"])
        if contact is None:
            raise _error(404, "Empty query: Contact matching query does not exist.")
        return Response.json(200, self._contact_json(ctx.account, contact))

    # ----------------------------------------------------------------- opportunities

    def _apply_opportunity(
        self, account: CloseAccount, body: Mapping[str, Any], data: JSONDict, creating: bool
    ) -> None:
        """Validate ``body`` and apply it to ``data`` (field errors collected into one 400)."""
        errors: dict[str, Any] = {}
        lead_id = body.get("lead_id", data.get("lead_id"))
        if creating and not lead_id:
            errors["lead_id"] = "This field is required."
        elif not isinstance(lead_id, str) or lead_id not in account.leads:
            errors["lead_id"] = "Lead does not exist."
        elif not creating and lead_id != data["lead_id"]:
            errors["lead_id"] = "An opportunity cannot be moved to another lead."
        if "contact_id" in body and body["contact_id"] is not None:
            contact_id = body["contact_id"]
            contact = account.contacts.get(contact_id) if isinstance(contact_id, str) else None
            if contact is None:
                errors["contact_id"] = "Contact does not exist."
            elif contact.data["lead_id"] != lead_id:
                errors["contact_id"] = "Contact does not belong to this lead."
        status_id = body.get("status_id")
        pipeline_id = body.get("pipeline_id")
        status: JSONDict | None = None
        if pipeline_id is not None and account.pipeline(pipeline_id) is None:
            errors["pipeline_id"] = "Pipeline does not exist."
        elif status_id is not None:
            status = account.status(status_id)
            if status is None:
                errors["status_id"] = "Opportunity status does not exist."
            elif pipeline_id is not None and status["pipeline_id"] != pipeline_id:
                errors["status_id"] = "Status does not belong to the given pipeline."
        elif creating or pipeline_id is not None:
            wanted = pipeline_id or account.pipelines[0]["id"]
            status = next(s for s in account.statuses if s["pipeline_id"] == wanted)
        if "user_id" in body and body["user_id"] is not None and not account.user(body["user_id"]):
            errors["user_id"] = "User does not exist."
        if "value" in body:
            value = body["value"]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                errors["value"] = "Value must be an integer (cents)."
        if "value_period" in body and body["value_period"] not in VALUE_PERIODS:
            errors["value_period"] = f"Must be one of {', '.join(VALUE_PERIODS)}."
        if "value_currency" in body and not (
            isinstance(body["value_currency"], str) and len(body["value_currency"]) == 3
        ):
            errors["value_currency"] = "Invalid currency code."
        if "confidence" in body:
            confidence = body["confidence"]
            if (
                isinstance(confidence, bool)
                or not isinstance(confidence, int)
                or not 0 <= confidence <= 100
            ):
                errors["confidence"] = "Confidence must be an integer between 0 and 100."
        if "note" in body and body["note"] is not None and not isinstance(body["note"], str):
            errors["note"] = "Not a valid string."
        if errors:
            raise field_errors(errors)
        custom = _custom(body, account.custom_fields["opportunity"])
        for key in ("lead_id", "contact_id", "user_id", "value", "value_period", "note"):
            if key in body:
                data[key] = body[key]
        if "value_currency" in body:
            data["value_currency"] = body["value_currency"].upper()
        if "confidence" in body:
            data["confidence"] = body["confidence"]
        data["custom"] = _merge_custom(data.get("custom", {}), custom)
        stamp = iso_micros_offset(utcnow())
        if status is not None and status["id"] != data.get("status_id"):
            data["status_id"] = status["id"]
            if status["type"] == "won" and not data.get("date_won"):
                data["date_won"] = stamp[:10]
            if status["type"] == "lost":
                data["date_lost"] = stamp
        if "date_won" in body:
            data["date_won"] = body["date_won"]
        data["date_updated"] = stamp

    def create_opportunity(self, ctx: Ctx[CloseAccount]) -> Response:
        """``POST /api/v1/opportunity/`` (``value`` in integer cents)."""
        body = ctx.json_object()
        account = ctx.account
        me = account.users[0]["id"]
        stamp = iso_micros_offset(utcnow())
        data: JSONDict = {
            "id": close_id("oppo"),
            "organization_id": account.id,
            "lead_id": None,
            "contact_id": None,
            "status_id": None,
            "user_id": me,
            "value": None,
            "value_currency": "USD",
            "value_period": "one_time",
            "confidence": 0,
            "note": "",
            "date_won": None,
            "date_lost": None,
            "is_stalled": False,
            "attachments": [],
            "integration_links": [],
            "created_by": me,
            "updated_by": me,
            "date_created": stamp,
            "date_updated": stamp,
            "custom": {},
        }
        self._apply_opportunity(account, body, data, creating=True)
        entity = Entity(data)
        account.opportunities[data["id"]] = entity
        entity.reindex(ctx.searchable_from())
        return Response.json(200, self._opp_json(account, entity))

    def get_opportunity(self, ctx: Ctx[CloseAccount]) -> Response:
        """``GET /api/v1/opportunity/{id}/``."""
        entity = ctx.account.opportunities.get(ctx.params["id"])
        if entity is None:
            raise _error(404, "Empty query: Opportunity matching query does not exist.")
        return Response.json(200, self._opp_json(ctx.account, entity))

    def update_opportunity(self, ctx: Ctx[CloseAccount]) -> Response:
        """``PUT /api/v1/opportunity/{id}/``: partial update (a 400 changes nothing)."""
        entity = ctx.account.opportunities.get(ctx.params["id"])
        if entity is None:
            raise _error(404, "Empty query: Opportunity matching query does not exist.")
        data = dict(entity.data)
        self._apply_opportunity(ctx.account, ctx.json_object(), data, creating=False)
        data["updated_by"] = ctx.account.users[0]["id"]
        entity.data = data
        entity.reindex(ctx.searchable_from())
        return Response.json(200, self._opp_json(ctx.account, entity))

    # ----------------------------------------------------------------- data search

    def data_search(self, ctx: Ctx[CloseAccount]) -> Response:
        """``POST /api/v1/data/search/`` over the (lagged) search index."""
        body = ctx.json_object()
        query = body.get("query")
        if not isinstance(query, dict):
            raise field_errors({"query": "This field is required."})
        object_type = _object_type(query)
        predicate = _compile(query, object_type)
        limit = body.get("_limit", 10)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 200:
            raise field_errors({"_limit": "Must be an integer between 1 and 200."})
        cursor = body.get("cursor")
        offset = 0
        if cursor:
            decoded = decode_cursor(str(cursor)) if isinstance(cursor, str) else None
            if decoded is None:
                raise field_errors({"cursor": "Invalid cursor."})
            offset = decoded
        fields_spec = body.get("_fields") or {}
        if not isinstance(fields_spec, dict):
            raise field_errors({"_fields": "Must be an object of object type -> field list."})
        wanted = fields_spec.get(object_type) or ["id"]
        view = _SearchView(ctx.account, ctx.mono)
        hits = [snap for snap in view.objects(object_type) if predicate(snap, view)]
        hits.sort(key=lambda s: (s.get("date_created", ""), s["id"]))
        page = hits[offset : offset + limit]
        rows = []
        for snap in page:
            row: JSONDict = {"__object_type": object_type, "id": snap["id"]}
            for name in wanted:
                if name in snap:
                    row[name] = snap[name]
                elif name.startswith("custom.") and name[7:] in snap.get("custom", {}):
                    row[name] = snap["custom"][name[7:]]
            rows.append(row)
        more = offset + limit < len(hits)
        return Response.json(
            200, {"data": rows, "cursor": encode_cursor(offset + limit) if more else None}
        )


# --------------------------------------------------------------------------- lead ?query=

_TERM = re.compile(r'(?:([\w.]+):)?(?:"([^"]*)"|(\S+))')


_LEAD_QUERY_FIELDS = frozenset(
    {
        "name",
        "lead_name",
        "description",
        "email",
        "email_address",
        "phone",
        "phone_number",
        "status",
        "lead_status",
        "id",
        "lead_id",
        "contact_name",
    }
)


def _query_terms(query: str) -> list[tuple[str | None, str]]:
    """``name:"Acme Inc" email:a@b.co word`` -> [(field, value), ...]."""
    return [
        (m[1], (m[2] if m[2] is not None else m[3]).lower())
        for m in _TERM.finditer(query)
        if (m[2] if m[2] is not None else m[3])
    ]


def _lead_term(term: tuple[str | None, str]) -> Callable[[JSONDict], bool]:
    """A predicate on lead JSON for one search term."""
    field, value = term
    if field is not None and not field.startswith("custom.") and field not in _LEAD_QUERY_FIELDS:
        raise field_errors({"query": f"Unsupported search field for this sandbox: {field}"})

    def texts(lead: JSONDict, name: str | None) -> list[str]:
        contacts = lead["contacts"]
        emails = [e["email"] for c in contacts for e in c["emails"]]
        phones = [p["phone"] for c in contacts for p in c["phones"]]
        by_field: dict[str, list[Any]] = {
            "name": [lead["name"]],
            "lead_name": [lead["name"]],
            "description": [lead["description"]],
            "email": emails,
            "email_address": emails,
            "phone": phones,
            "phone_number": phones,
            "status": [lead["status_label"]],
            "lead_status": [lead["status_label"]],
            "id": [lead["id"]],
            "lead_id": [lead["id"]],
            "contact_name": [c["name"] for c in contacts],
        }
        if name is None:
            found = [lead["name"], lead["description"], *emails, *by_field["contact_name"]]
        elif name.startswith("custom."):
            found = [lead.get(name)]
        else:
            found = by_field[name]
        return [str(t).lower() for t in found if t is not None]

    if field is None:
        return lambda lead: any(value in t for t in texts(lead, None))
    return lambda lead: any(value == t or value in t.split() for t in texts(lead, field))


# --------------------------------------------------------------------------- advanced filtering

Predicate = Callable[[JSONDict, "_SearchView"], bool]
SEARCH_TYPES = ("lead", "contact", "opportunity")
_REGULAR_FIELDS = {
    "lead": {"id", "name", "status_id", "description"},
    "contact": {"id", "name", "title", "lead_id"},
    "opportunity": {"id", "lead_id", "contact_id", "status_id", "user_id", "note"},
    "contact_email": {"email", "type"},
}


class _SearchView:
    """Search-index snapshots of one account at one instant."""

    def __init__(self, account: CloseAccount, mono: float) -> None:
        self.account = account
        self.mono = mono

    def objects(self, object_type: str) -> list[JSONDict]:
        store = {
            "lead": self.account.leads,
            "contact": self.account.contacts,
            "opportunity": self.account.opportunities,
        }[object_type]
        return [s for e in store.values() if (s := e.index.view(self.mono)) is not None]


def _unsupported(what: str) -> ApiError:
    return field_errors({"query": f"Unsupported query for this sandbox: {what}"})


def _object_type(query: JSONDict) -> str:
    """The ``object_type`` a top-level query selects."""
    if query.get("type") == "object_type":
        candidates = [query]
    elif query.get("type") == "and" and isinstance(query.get("queries"), list):
        candidates = [
            q for q in query["queries"] if isinstance(q, dict) and q.get("type") == "object_type"
        ]
    else:
        candidates = []
    if len(candidates) != 1 or candidates[0].get("object_type") not in SEARCH_TYPES:
        raise _unsupported(
            "the query must be an 'and' with one object_type of lead/contact/opportunity"
        )
    return str(candidates[0]["object_type"])


def _text_condition(condition: Any) -> Callable[[Any], bool]:
    if not isinstance(condition, dict) or condition.get("type") != "text":
        raise _unsupported("only 'text' conditions")
    if condition.get("mode") != "exact_value" or not isinstance(condition.get("value"), str):
        raise _unsupported("only text mode 'exact_value' with a string value")
    wanted = condition["value"].strip().lower()
    return lambda have: have is not None and str(have).strip().lower() == wanted


def _compile(query: Any, object_type: str) -> Predicate:
    """A predicate over snapshots of ``object_type`` for an Advanced Filtering query node."""
    if not isinstance(query, dict):
        raise _unsupported("query nodes must be objects")
    kind = query.get("type")
    if kind in ("and", "or"):
        subs = query.get("queries")
        if not isinstance(subs, list) or not subs:
            raise _unsupported(f"'{kind}' needs a non-empty queries list")
        parts = [_compile(q, object_type) for q in subs]
        if kind == "and":
            return lambda snap, view: all(p(snap, view) for p in parts)
        return lambda snap, view: any(p(snap, view) for p in parts)
    if kind == "object_type":
        if query.get("object_type") != object_type:
            raise _unsupported("nested object_type must match the searched type")
        return lambda snap, view: True
    if kind == "field_condition":
        return _field_condition(query, object_type)
    if kind == "has_related":
        return _has_related(query, object_type)
    raise _unsupported(f"query type {kind!r}")


def _field_condition(query: JSONDict, object_type: str) -> Predicate:
    field = query.get("field")
    test = _text_condition(query.get("condition"))
    if not isinstance(field, dict):
        raise _unsupported("field_condition needs a field")
    if field.get("type") == "custom_field":
        field_id = field.get("custom_field_id")
        if not isinstance(field_id, str) or not field_id.startswith("cf_"):
            raise _unsupported("custom_field needs a custom_field_id 'cf_...'")
        if object_type not in ("lead", "opportunity"):
            raise _unsupported("custom fields on leads and opportunities only")
        return lambda snap, view: test(snap.get("custom", {}).get(field_id))
    if field.get("type") == "regular_field":
        name = field.get("field_name")
        if (
            field.get("object_type") != object_type
            or not isinstance(name, str)
            or name not in _REGULAR_FIELDS[object_type]
        ):
            raise _unsupported(f"regular_field {field.get('object_type')}.{name}")
        return lambda snap, view: test(snap.get(str(name)))
    raise _unsupported(f"field type {field.get('type')!r}")


def _has_related(query: JSONDict, object_type: str) -> Predicate:
    this, related = query.get("this_object_type"), query.get("related_object_type")
    if this != object_type:
        raise _unsupported("has_related this_object_type must be the searched type")
    inner = query.get("related_query")
    if (this, related) == ("contact", "contact_email"):
        if not isinstance(inner, dict) or inner.get("type") != "field_condition":
            raise _unsupported("contact_email related_query must be a field_condition")
        field = inner.get("field")
        if (
            not isinstance(field, dict)
            or field.get("type") != "regular_field"
            or field.get("object_type") != "contact_email"
        ):
            raise _unsupported("contact_email condition must be on a contact_email regular_field")
        name = field.get("field_name")
        if not isinstance(name, str) or name not in _REGULAR_FIELDS["contact_email"]:
            raise _unsupported(f"contact_email field {name!r}")
        test = _text_condition(inner.get("condition"))
        return lambda snap, view: any(test(e.get(str(name))) for e in snap.get("emails", []))
    if (this, related) in (("lead", "contact"), ("lead", "opportunity")):
        assert isinstance(related, str)
        sub = _compile(inner, related)

        def lead_has(snap: JSONDict, view: _SearchView) -> bool:
            return any(
                other.get("lead_id") == snap["id"] and sub(other, view)
                for other in view.objects(related)
            )

        return lead_has
    raise _unsupported(f"has_related {this} -> {related}")
