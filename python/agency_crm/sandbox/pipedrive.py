"""Fake Pipedrive: API v2 persons, organizations, deals, pipelines, stages and search; v1 users.

Shapes follow ``crm-specs/pipedrive/v2.yaml`` and ``v1.yaml``. Error bodies follow
https://pipedrive.readme.io/docs/core-api-concepts-responses:
``{success: false, error, error_info, data: null, additional_data: null}``; validation errors
add ``code: "ERR_SCHEMA_VALIDATION_FAILED"``. Request bodies are checked strictly: unknown
fields give 400, as API v2 does.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
from collections.abc import Callable, Mapping
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
    iso_seconds_z,
    json_bool,
    utcnow,
)

ERROR_INFO = "Please check developers.pipedrive.com"
#: The seeded pipeline's stages: name and deal probability (percent).
STAGES: tuple[tuple[str, int], ...] = (
    ("Qualified", 10),
    ("Contact Made", 20),
    ("Demo Scheduled", 40),
    ("Proposal Made", 60),
    ("Negotiations Started", 80),
)
_COMPANY_IDS = itertools.count(7_000_001)
_SEED_IDS = itertools.count(1)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")

_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}Z?")
VISIBLE_TO = (1, 3, 5, 7)
MARKETING_STATUSES = ("no_consent", "unsubscribed", "subscribed", "archived")

# The request-body fields the v2 spec declares (POST and PATCH take the same ones).
PERSON_FIELDS = frozenset(
    {
        "name",
        "owner_id",
        "org_id",
        "add_time",
        "emails",
        "phones",
        "visible_to",
        "label_ids",
        "postal_address",
        "notes",
        "im",
        "birthday",
        "job_title",
        "marketing_status",
        "custom_fields",
    }
)
ORG_FIELDS = frozenset(
    {
        "name",
        "owner_id",
        "add_time",
        "visible_to",
        "label_ids",
        "address",
        "website",
        "linkedin",
        "industry",
        "annual_revenue",
        "employee_count",
        "custom_fields",
    }
)
DEAL_FIELDS = frozenset(
    {
        "title",
        "owner_id",
        "person_id",
        "org_id",
        "pipeline_id",
        "stage_id",
        "value",
        "currency",
        "status",
        "probability",
        "lost_reason",
        "visible_to",
        "expected_close_date",
        "label_ids",
        "custom_fields",
        "won_time",
        "lost_time",
        "close_time",
        "is_archived",
        "is_deleted",
        "archive_time",
    }
)
#: Field types a custom field can be created with (``POST /v1/dealFields`` etc.).
FIELD_TYPES = (
    "address",
    "date",
    "daterange",
    "double",
    "enum",
    "monetary",
    "org",
    "people",
    "phone",
    "set",
    "text",
    "time",
    "timerange",
    "user",
    "varchar",
    "varchar_auto",
    "visible_to",
)
#: Each entity's built-in fields in ``GET /v1/{kind}Fields``: key, name, field_type.
BUILTIN_FIELDS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "deal": (
        ("title", "Title", "varchar"),
        ("value", "Value", "monetary"),
        ("currency", "Currency", "varchar"),
        ("person_id", "Contact person", "people"),
        ("org_id", "Organization", "org"),
        ("pipeline_id", "Pipeline", "enum"),
        ("stage_id", "Stage", "enum"),
        ("status", "Status", "enum"),
        ("user_id", "Owner", "user"),
        ("expected_close_date", "Expected close date", "date"),
        ("probability", "Probability", "double"),
        ("lost_reason", "Lost reason", "varchar"),
        ("visible_to", "Visible to", "visible_to"),
        ("add_time", "Deal created", "date"),
        ("update_time", "Update time", "date"),
    ),
    "person": (
        ("name", "Name", "varchar"),
        ("first_name", "First name", "varchar"),
        ("last_name", "Last name", "varchar"),
        ("org_id", "Organization", "org"),
        ("email", "Email", "varchar"),
        ("phone", "Phone", "phone"),
        ("owner_id", "Owner", "user"),
        ("job_title", "Job title", "varchar"),
        ("birthday", "Birthday", "date"),
        ("postal_address", "Postal address", "address"),
        ("notes", "Notes", "text"),
        ("marketing_status", "Marketing status", "enum"),
        ("visible_to", "Visible to", "visible_to"),
        ("add_time", "Person created", "date"),
        ("update_time", "Update time", "date"),
    ),
    "organization": (
        ("name", "Name", "varchar"),
        ("owner_id", "Owner", "user"),
        ("address", "Address", "address"),
        ("website", "Website", "varchar"),
        ("linkedin", "LinkedIn profile", "varchar"),
        ("industry", "Industry", "enum"),
        ("annual_revenue", "Annual revenue", "monetary"),
        ("employee_count", "Number of employees", "double"),
        ("visible_to", "Visible to", "visible_to"),
        ("add_time", "Organization created", "date"),
        ("update_time", "Update time", "date"),
    ),
}


class PipedriveAccount(AccountBase):
    """One Pipedrive company."""

    def __init__(self, company_id: int) -> None:
        super().__init__(str(company_id))
        self.company_id = company_id
        stamp = iso_seconds_z(self.created)
        self.users: list[JSONDict] = [
            {
                "id": company_id * 10 + n,
                "name": f"{name} Sandbox",
                "email": f"{name.lower()}@company{company_id}.sandbox.test",
                "default_currency": "USD",
                "locale": "en_US",
                "lang": 1,
                "phone": None,
                "activated": True,
                "last_login": self.created.strftime("%Y-%m-%d %H:%M:%S"),
                "created": self.created.strftime("%Y-%m-%d %H:%M:%S"),
                "modified": None,
                "has_created_company": n == 1,
                "access": [{"app": "sales", "admin": n == 1, "permission_set_id": "sbx"}],
                "active_flag": True,
                "timezone_name": "UTC",
                "timezone_offset": "+00:00",
                "role_id": 1,
                "icon_url": None,
                "is_deleted": False,
            }
            for n, name in enumerate(("Paula", "Peter"), start=1)
        ]
        pipeline_id = next(_SEED_IDS)
        self.pipelines: list[JSONDict] = [
            {
                "id": pipeline_id,
                "name": "Sales pipeline",
                "order_nr": 1,
                "is_deleted": False,
                "is_deal_probability_enabled": True,
                "add_time": stamp,
                "update_time": stamp,
            }
        ]
        self.stages: list[JSONDict] = [
            {
                "id": next(_SEED_IDS),
                "order_nr": n,
                "name": name,
                "is_deleted": False,
                "deal_probability": probability,
                "pipeline_id": pipeline_id,
                "is_deal_rot_enabled": False,
                "days_to_rotten": None,
                "add_time": stamp,
                "update_time": stamp,
            }
            for n, (name, probability) in enumerate(STAGES, start=1)
        ]
        self.persons: dict[int, Entity] = {}
        self.organizations: dict[int, Entity] = {}
        self.deals: dict[int, Entity] = {}
        added = self.created.strftime("%Y-%m-%d %H:%M:%S")
        #: Field definitions per entity kind (deal, person, organization), v1 Field JSON.
        self.fields: dict[str, list[JSONDict]] = {
            kind: [
                field_json(n, key, name, field_type, added, custom=False)
                for n, (key, name, field_type) in enumerate(builtin, start=1)
            ]
            for kind, builtin in BUILTIN_FIELDS.items()
        }

    def custom_field(self, kind: str, key: str) -> JSONDict | None:
        """A created (custom) field of ``kind`` by its key."""
        return next((f for f in self.fields[kind] if f["key"] == key and f["edit_flag"]), None)

    def user_ids(self) -> set[int]:
        """Valid owner ids."""
        return {u["id"] for u in self.users}

    def stage(self, stage_id: int) -> JSONDict | None:
        """A stage by id."""
        return next((s for s in self.stages if s["id"] == stage_id), None)


def field_json(
    field_id: int, key: str, name: str, field_type: str, added: str, custom: bool
) -> JSONDict:
    """A field as ``GET /v1/dealFields`` lists it."""
    return {
        "id": field_id,
        "key": key,
        "name": name,
        "order_nr": field_id,
        "field_type": field_type,
        "add_time": added,
        "update_time": added,
        "last_updated_by_user_id": None,
        "created_by_user_id": None,
        "active_flag": True,
        "edit_flag": custom,
        "index_visible_flag": True,
        "details_visible_flag": True,
        "add_visible_flag": True,
        "important_flag": False,
        "bulk_edit_allowed": True,
        "searchable_flag": custom,
        "filtering_allowed": True,
        "sortable_flag": True,
        "mandatory_flag": key in ("title", "name"),
        "options": None,
    }


def _string(value: Any, name: str, limit: int) -> str | None:
    """A nullable string field of at most ``limit`` characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{name}: must be string")
    if len(value) > limit:
        raise _invalid(f"{name}: must NOT have more than {limit} characters")
    return value


_ADDRESS_PARTS = (
    "value",
    "country",
    "admin_area_level_1",
    "admin_area_level_2",
    "locality",
    "sublocality",
    "route",
    "street_number",
    "subpremise",
    "postal_code",
)


def _address(value: Any, name: str) -> JSONDict | None:
    """A v2 address object (every part a string), or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid(f"{name}: must be object")
    unknown = sorted(set(value) - set(_ADDRESS_PARTS))
    if unknown:
        raise _invalid(f"{name}: must NOT have additional properties: {', '.join(unknown)}")
    for part, item in value.items():
        if item is not None and not isinstance(item, str):
            raise _invalid(f"{name}/{part}: must be string")
    return {part: value.get(part) for part in _ADDRESS_PARTS}


def _custom_value(definition: Mapping[str, Any], value: Any) -> Any:
    """A value written to a created custom field, checked by its field_type."""
    key, kind = definition["key"], definition["field_type"]
    where = f"custom_fields/{key}"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    option_ids = {o["id"] for o in definition.get("options") or []}
    if kind in ("varchar", "varchar_auto", "phone", "text"):
        limit = 65_535 if kind == "text" else 255
        if not isinstance(value, str) or len(value) > limit:
            raise _invalid(f"{where}: must be string of at most {limit} characters")
    elif kind == "double":
        if not number:
            raise _invalid(f"{where}: must be number")
    elif kind == "monetary":
        if number:
            return {"value": value, "currency": "USD"}
        if (
            not isinstance(value, dict)
            or not isinstance(value.get("value"), int | float)
            or isinstance(value.get("value"), bool)
            or not isinstance(value.get("currency"), str)
            or not _CURRENCY.fullmatch(value["currency"])
        ):
            raise _invalid(f"{where}: must be number or object with value and currency")
        return {"value": value["value"], "currency": value["currency"]}
    elif kind == "date":
        if not isinstance(value, str) or not _DATE.fullmatch(value):
            raise _invalid(f"{where}: must match format YYYY-MM-DD")
    elif kind == "time":
        if not isinstance(value, str) or not re.fullmatch(r"\d{2}:\d{2}(:\d{2})?", value):
            raise _invalid(f"{where}: must match format HH:MM:SS")
    elif kind == "enum":
        if value not in option_ids or isinstance(value, bool):
            raise _invalid(f"{where}: must be one of the option ids {sorted(option_ids)}")
    elif kind == "set":
        if not isinstance(value, list) or any(
            v not in option_ids or isinstance(v, bool) for v in value
        ):
            raise _invalid(f"{where}: must be an array of option ids {sorted(option_ids)}")
    elif kind in ("user", "org", "people"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _invalid(f"{where}: must be integer")
    elif kind == "address":
        return _address(value, where)
    return value


def _error(status: int, message: str, code: str | None = None) -> ApiError:
    payload: JSONDict = {
        "success": False,
        "error": message,
        "error_info": ERROR_INFO,
        "data": None,
        "additional_data": None,
    }
    if code:
        payload["code"] = code
    return ApiError(status, payload)


def _invalid(message: str) -> ApiError:
    return _error(400, f"Validation failed: {message}", "ERR_SCHEMA_VALIDATION_FAILED")


def _int_field(body: Mapping[str, Any], name: str, nullable: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if not nullable and name in body:
            raise _invalid(f"{name}: must be integer")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(f"{name}: must be integer")
    return value


def _ok(data: Any, additional: Any = None, status: int = 200) -> Response:
    body: JSONDict = {"success": True, "data": data}
    if additional is not None:
        body["additional_data"] = additional
    return Response.json(status, body)


def _query_int(req: Request, name: str) -> int | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    value = ascii_int(raw.removeprefix("-"))
    if value is None:
        raise _invalid(f"{name}: must be integer")
    return -value if raw.startswith("-") else value


def _page(req: Request, items: list[Any]) -> tuple[list[Any], JSONDict]:
    """v2 cursor pagination: (page, additional_data with next_cursor)."""
    limit = _query_int(req, "limit") or 100
    if not 1 <= limit <= 500:
        raise _invalid("limit: must be <= 500")
    cursor = req.arg("cursor")
    offset = 0
    if cursor:
        decoded = decode_cursor(cursor)
        if decoded is None:
            raise _error(400, "Invalid cursor", "ERR_INVALID_CURSOR")
        offset = decoded
    page = items[offset : offset + limit]
    more = offset + limit < len(items)
    return page, {"next_cursor": encode_cursor(offset + limit) if more else None}


class PipedriveApp(VendorApp[PipedriveAccount]):
    """The fake Pipedrive API."""

    vendor: ClassVar[str] = "pipedrive"
    #: Burst limit of a Professional plan: 80 requests per rolling 2 s per token.
    default_rate_limit: ClassVar[RateLimit] = RateLimit(80, 2_000)
    credential_headers: ClassVar[frozenset[str]] = frozenset({"x-api-token", "authorization"})
    credential_query: ClassVar[frozenset[str]] = frozenset({"api_token"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._ids = itertools.count(1001)
        super().__init__(*args, **kwargs)

    # ----------------------------------------------------------------- hooks

    def make_account(self) -> PipedriveAccount:
        """A company with two users and one pipeline of five stages."""
        return PipedriveAccount(next(_COMPANY_IDS))

    def extract_credential(self, req: Request) -> str | None:
        """``x-api-token`` header, else the legacy ``api_token`` query parameter."""
        return req.header("x-api-token") or req.arg("api_token") or None

    def auth_error(self, reason: str, token: str | None, expired_for: float = 0.0) -> Response:
        """``{success: false, error: "unauthorized access", errorCode: 401, error_info}``."""
        return Response.json(
            401,
            {
                "success": False,
                "error": "unauthorized access",
                "errorCode": 401,
                "error_info": ERROR_INFO,
            },
        )

    def error_response(self, status: int, message: str | None = None) -> Response:
        """The documented error envelope (``errorCode`` added for 401/402/403/429)."""
        if status == 401:
            return self.auth_error("invalid", None)
        if status == 429:
            return self.too_many_requests(self.config.rate_limit, 1)
        default = {
            400: "Bad request",
            402: "Payment required",
            403: "You do not have permission to perform this action",
            404: "Unknown method .",
            405: "Method not allowed",
            409: "Conflict",
            410: "Gone",
        }.get(status, "Internal server error" if status >= 500 else "Error")
        err = _error(status, message or default)
        if status in (402, 403):
            err.payload["errorCode"] = status
        return Response.json(status, err.payload)

    def bad_body_response(self, message: str) -> Response:
        """400 for an unparseable body."""
        err = _invalid(message)
        return Response.json(400, err.payload)

    def rate_headers(self, limit: RateLimit, remaining: int, reset_s: int) -> list[tuple[str, str]]:
        """``x-ratelimit-limit/-remaining/-reset`` (reset in seconds)."""
        return [
            ("x-ratelimit-limit", str(limit.max)),
            ("x-ratelimit-remaining", str(remaining)),
            ("x-ratelimit-reset", str(reset_s)),
        ]

    def too_many_requests(self, limit: RateLimit | None, retry_after: int) -> Response:
        """``{success: false, error: "Request over limit", errorCode: 429, ...}``."""
        limit = limit or self.default_rate_limit
        body = {
            "success": False,
            "error": "Request over limit",
            "errorCode": 429,
            "error_info": ERROR_INFO,
            "data": None,
            "additional_data": None,
        }
        headers = [*self.rate_headers(limit, 0, retry_after), ("Retry-After", str(retry_after))]
        return Response.json(429, body, headers)

    def account_summary(self, account: PipedriveAccount) -> JSONDict:
        """Pipelines with stages (probability as a float 0..1) and users."""
        return {
            "pipelines": [
                {
                    "id": p["id"],
                    "name": p["name"],
                    "stages": [
                        {
                            "id": s["id"],
                            "name": s["name"],
                            "probability": s["deal_probability"] / 100,
                        }
                        for s in account.stages
                        if s["pipeline_id"] == p["id"]
                    ],
                }
                for p in account.pipelines
            ],
            "users": [{"id": u["id"], "email": u["email"]} for u in account.users],
            "company_id": account.company_id,
        }

    def account_state(self, account: PipedriveAccount, mono: float) -> JSONDict:
        """Persons, organizations and deals in API v2 shapes."""
        return {
            "persons": [e.data for e in account.persons.values()],
            "organizations": [e.data for e in account.organizations.values()],
            "deals": [e.data for e in account.deals.values()],
        }

    # ----------------------------------------------------------------- routes

    def build_routes(self) -> list[Route[PipedriveAccount]]:
        """All Pipedrive endpoints the fake serves."""
        R = Route[PipedriveAccount]
        # The v1 routes under /v1 (api.pipedrive.com) and /api/v1 (company-domain URLs).
        v1: list[Route[PipedriveAccount]] = []
        for prefix in ("/v1", "/api/v1"):
            v1 += [
                R("GET", f"{prefix}/users/me", self.users_me),
                R("GET", f"{prefix}/users", self.list_users),
            ]
            for kind in BUILTIN_FIELDS:
                v1 += [
                    R("GET", f"{prefix}/{kind}Fields", self._fields_lister(kind)),
                    R("POST", f"{prefix}/{kind}Fields", self._fields_creator(kind)),
                    R("GET", f"{prefix}/{kind}Fields/{{id}}", self._field_getter(kind)),
                ]
        return [
            *v1,
            R("GET", "/api/v2/pipelines", self.list_pipelines),
            R("GET", "/api/v2/pipelines/{id}", self.get_pipeline),
            R("GET", "/api/v2/stages", self.list_stages),
            R("GET", "/api/v2/stages/{id}", self.get_stage),
            R("GET", "/api/v2/persons/search", self.search_persons),
            R("GET", "/api/v2/organizations/search", self.search_organizations),
            R("GET", "/api/v2/deals/search", self.search_deals),
            R("POST", "/api/v2/persons", self.create_person),
            R("GET", "/api/v2/persons/{id}", self._getter("persons", "Person")),
            R(
                "PATCH",
                "/api/v2/persons/{id}",
                self._updater("persons", "Person", self._apply_person),
            ),
            R("POST", "/api/v2/organizations", self.create_organization),
            R("GET", "/api/v2/organizations/{id}", self._getter("organizations", "Organization")),
            R(
                "PATCH",
                "/api/v2/organizations/{id}",
                self._updater("organizations", "Organization", self._apply_organization),
            ),
            R("POST", "/api/v2/deals", self.create_deal),
            R("GET", "/api/v2/deals/{id}", self._getter("deals", "Deal")),
            R("PATCH", "/api/v2/deals/{id}", self._updater("deals", "Deal", self._apply_deal)),
        ]

    # ----------------------------------------------------------------- fields (v1)

    def _fields_lister(self, kind: str) -> Callable[[Ctx[PipedriveAccount]], Response]:
        def list_fields(ctx: Ctx[PipedriveAccount]) -> Response:
            """``GET /v1/{kind}Fields`` with v1 ``start``/``limit`` pagination."""
            start = _query_int(ctx.request, "start") or 0
            limit = _query_int(ctx.request, "limit") or 100
            if start < 0 or not 1 <= limit <= 500:
                raise _invalid("start must be >= 0 and limit between 1 and 500")
            fields = ctx.account.fields[kind]
            more = start + limit < len(fields)
            pagination: JSONDict = {
                "start": start,
                "limit": limit,
                "more_items_in_collection": more,
            }
            if more:
                pagination["next_start"] = start + limit
            return _ok(fields[start : start + limit], {"pagination": pagination})

        return list_fields

    def _field_getter(self, kind: str) -> Callable[[Ctx[PipedriveAccount]], Response]:
        def get_field(ctx: Ctx[PipedriveAccount]) -> Response:
            """``GET /v1/{kind}Fields/{id}``."""
            wanted = self._path_id(ctx)
            found = next((f for f in ctx.account.fields[kind] if f["id"] == wanted), None)
            if found is None:
                raise _error(404, "Field not found")
            return _ok(found)

        return get_field

    def _fields_creator(self, kind: str) -> Callable[[Ctx[PipedriveAccount]], Response]:
        def create_field(ctx: Ctx[PipedriveAccount]) -> Response:
            """``POST /v1/{kind}Fields``: a custom field with a generated 40-hex ``key``."""
            body = ctx.json_object()
            name = body.get("name")
            if not isinstance(name, str) or not name.strip():
                raise _invalid("name: required, must be non-empty string")
            field_type = body.get("field_type")
            if field_type not in FIELD_TYPES:
                raise _invalid(
                    "field_type: must be equal to one of the allowed values: "
                    + ", ".join(FIELD_TYPES)
                )
            raw_options = body.get("options")
            options: list[JSONDict] | None = None
            if field_type in ("enum", "set"):
                if not isinstance(raw_options, list) or not raw_options:
                    raise _invalid(f"options: required for field_type {field_type}")
                options = []
                for n, option in enumerate(raw_options):
                    if not isinstance(option, dict) or not isinstance(option.get("label"), str):
                        raise _invalid(f"options/{n}: must be object with a string label")
                    options.append({"id": next(self._ids), "label": option["label"]})
            elif raw_options is not None and not isinstance(raw_options, list):
                raise _invalid("options: must be array")
            add_visible = body.get("add_visible_flag", True)
            if not isinstance(add_visible, bool):
                raise _invalid("add_visible_flag: must be boolean")
            fields = ctx.account.fields[kind]
            field = field_json(
                max(f["id"] for f in fields) + 1,
                secrets.token_hex(20),
                name,
                field_type,
                utcnow().strftime("%Y-%m-%d %H:%M:%S"),
                custom=True,
            )
            me = ctx.account.users[0]["id"]
            field.update(
                options=options,
                add_visible_flag=add_visible,
                created_by_user_id=me,
                last_updated_by_user_id=me,
            )
            fields.append(field)
            return _ok(field)

        return create_field

    # ----------------------------------------------------------------- users, pipelines

    def users_me(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /v1/users/me``: the first user plus company fields."""
        account = ctx.account
        me = dict(account.users[0])
        me.update(
            is_you=True,
            company_id=account.company_id,
            company_name=f"Sandbox Company {account.company_id}",
            company_domain=f"sandbox-{account.company_id}",
            company_country="US",
            company_industry="Software",
            language={"language_code": "en", "country_code": "US"},
        )
        return _ok(me)

    def list_users(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /v1/users`` with v1 ``start``/``limit`` pagination."""
        start = _query_int(ctx.request, "start") or 0
        limit = _query_int(ctx.request, "limit") or 100
        if start < 0 or not 1 <= limit <= 500:
            raise _invalid("start must be >= 0 and limit between 1 and 500")
        users = [dict(u, is_you=n == 0) for n, u in enumerate(ctx.account.users)]
        page = users[start : start + limit]
        more = start + limit < len(users)
        pagination: JSONDict = {"start": start, "limit": limit, "more_items_in_collection": more}
        if more:
            pagination["next_start"] = start + limit
        return _ok(page, {"pagination": pagination})

    def list_pipelines(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/pipelines`` (cursor pagination)."""
        page, extra = _page(ctx.request, ctx.account.pipelines)
        return _ok(page, extra)

    def get_pipeline(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/pipelines/{id}``."""
        wanted = self._path_id(ctx)
        found = next((p for p in ctx.account.pipelines if p["id"] == wanted), None)
        if found is None:
            raise _error(404, "Pipeline not found")
        return _ok(found)

    def list_stages(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/stages?pipeline_id=`` (cursor pagination)."""
        pipeline_id = _query_int(ctx.request, "pipeline_id")
        stages = [
            s for s in ctx.account.stages if pipeline_id is None or s["pipeline_id"] == pipeline_id
        ]
        page, extra = _page(ctx.request, stages)
        return _ok(page, extra)

    def get_stage(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/stages/{id}``."""
        stage = ctx.account.stage(self._path_id(ctx))
        if stage is None:
            raise _error(404, "Stage not found")
        return _ok(stage)

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _path_id(ctx: Ctx[PipedriveAccount]) -> int:
        value = ascii_int(ctx.params["id"])
        if value is None:
            raise _invalid("id: must be integer")
        return value

    def _getter(self, attr: str, label: str) -> Callable[[Ctx[PipedriveAccount]], Response]:
        def get(ctx: Ctx[PipedriveAccount]) -> Response:
            entity = getattr(ctx.account, attr).get(self._path_id(ctx))
            if entity is None:
                raise _error(404, f"{label} not found")
            return _ok(entity.data)

        return get

    @staticmethod
    def _check_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise _invalid(f"must NOT have additional properties: {', '.join(unknown)}")

    @staticmethod
    def _custom_fields(
        account: PipedriveAccount, kind: str, raw: Any, current: Mapping[str, Any] | None
    ) -> JSONDict:
        """``custom_fields`` merged onto ``current`` (null removes a value). Values of
        created fields are checked by their field_type; other keys are stored as given
        (existing tests and the runner write ``agency_crm_key`` without creating it)."""
        if raw is None:
            return dict(current or {})
        if not isinstance(raw, dict):
            raise _invalid("custom_fields: must be object")
        merged = dict(current or {})
        for key, value in raw.items():
            if value is None:
                merged.pop(key, None)
                continue
            definition = account.custom_field(kind, key)
            if definition is not None:
                value = _custom_value(definition, value)
            merged[key] = value
        return merged

    def _owner(self, account: PipedriveAccount, body: Mapping[str, Any]) -> int | None:
        owner = _int_field(body, "owner_id")
        if owner is not None and owner not in account.user_ids():
            raise _error(400, f"User with id {owner} not found", "ERR_USER_NOT_FOUND")
        return owner

    def _ref(self, store: Mapping[int, Entity], body: Mapping[str, Any], name: str) -> int | None:
        ref = _int_field(body, name)
        if ref is not None and ref not in store:
            label = "Organization" if name == "org_id" else "Person"
            raise _error(400, f"{label} with id {ref} not found", "ERR_ENTITY_NOT_FOUND")
        return ref

    @staticmethod
    def _contact_list(raw: Any, name: str) -> list[JSONDict]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise _invalid(f"{name}: must be array")
        out: list[JSONDict] = []
        for n, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                raise _invalid(f"{name}/{n}: must be object with a string value")
            primary = item.get("primary", n == 0)
            label = item.get("label", "work")
            if not isinstance(primary, bool) or not isinstance(label, str):
                raise _invalid(f"{name}/{n}: primary must be boolean, label string")
            out.append({"value": item["value"], "primary": primary, "label": label})
        return out

    @staticmethod
    def _name_parts(name: str) -> tuple[str, str]:
        first, _, last = name.strip().partition(" ")
        return first, last

    # ----------------------------------------------------------------- persons, organizations

    def _apply_common(
        self, ctx: Ctx[PipedriveAccount], kind: str, body: Mapping[str, Any], data: JSONDict
    ) -> None:
        """The fields persons, organizations and deals share: owner, visibility, labels,
        add_time and custom fields."""
        if "owner_id" in body:
            data["owner_id"] = self._owner(ctx.account, body) or data["owner_id"]
        if "visible_to" in body:
            visible = body["visible_to"]
            if visible not in VISIBLE_TO or isinstance(visible, bool):
                raise _invalid("visible_to: must be equal to one of the allowed values: 1, 3, 5, 7")
            data["visible_to"] = visible
        if "label_ids" in body:
            labels = body["label_ids"]
            if not isinstance(labels, list) or not all(
                isinstance(n, int) and not isinstance(n, bool) for n in labels
            ):
                raise _invalid("label_ids: must be array of integers")
            data["label_ids"] = labels
        if "add_time" in body:
            added = body["add_time"]
            if not isinstance(added, str) or not _DATETIME.fullmatch(added):
                raise _invalid("add_time: must match format YYYY-MM-DD HH:MM:SS or RFC 3339")
            data["add_time"] = added.replace(" ", "T") + ("" if added.endswith("Z") else "Z")
        if "custom_fields" in body:
            data["custom_fields"] = self._custom_fields(
                ctx.account, kind, body["custom_fields"], data.get("custom_fields")
            )

    def _apply_person(
        self, ctx: Ctx[PipedriveAccount], body: Mapping[str, Any], person: JSONDict
    ) -> None:
        """Validate ``body`` and apply it to ``person`` (new or a copy of an existing one)."""
        self._check_keys(body, PERSON_FIELDS)
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip():
                raise _invalid("name: must be non-empty string")
            person["name"] = name
            person["first_name"], person["last_name"] = self._name_parts(name)
        if "org_id" in body:
            person["org_id"] = self._ref(ctx.account.organizations, body, "org_id")
        for key in ("emails", "phones", "im"):
            if key in body:
                person[key] = self._contact_list(body[key], key)
        if "postal_address" in body:
            person["postal_address"] = _address(body["postal_address"], "postal_address")
        for key, limit in (("notes", 10_000), ("job_title", 255)):
            if key in body:
                person[key] = _string(body[key], key, limit)
        if "birthday" in body:
            birthday = body["birthday"]
            if birthday is not None and (
                not isinstance(birthday, str) or not _DATE.fullmatch(birthday)
            ):
                raise _invalid("birthday: must match format YYYY-MM-DD")
            person["birthday"] = birthday
        if "marketing_status" in body:
            status = body["marketing_status"]
            if status not in MARKETING_STATUSES:
                raise _invalid(
                    "marketing_status: must be equal to one of the allowed values: "
                    + ", ".join(MARKETING_STATUSES)
                )
            person["marketing_status"] = status
        self._apply_common(ctx, "person", body, person)
        person["update_time"] = iso_seconds_z(utcnow())

    def _apply_organization(
        self, ctx: Ctx[PipedriveAccount], body: Mapping[str, Any], org: JSONDict
    ) -> None:
        """Validate ``body`` and apply it to ``org`` (new or a copy of an existing one)."""
        self._check_keys(body, ORG_FIELDS)
        if "name" in body:
            name = body["name"]
            if not isinstance(name, str) or not name.strip():
                raise _invalid("name: must be non-empty string")
            org["name"] = name
        if "address" in body:
            org["address"] = _address(body["address"], "address")
        for key in ("website", "linkedin"):
            if key in body:
                org[key] = _string(body[key], key, 2048)
        for key in ("industry", "annual_revenue", "employee_count"):
            if key in body:
                value = _int_field(body, key)
                if value is not None and value < 0:
                    raise _invalid(f"{key}: must be >= 0")
                org[key] = value
        self._apply_common(ctx, "organization", body, org)
        org["update_time"] = iso_seconds_z(utcnow())

    def create_person(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``POST /api/v2/persons`` (``name`` required)."""
        body = ctx.json_object()
        self._check_keys(body, PERSON_FIELDS)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("name: required, must be non-empty string")
        account = ctx.account
        stamp = iso_seconds_z(utcnow())
        person: JSONDict = {
            "id": 0,
            "name": name,
            "first_name": "",
            "last_name": "",
            "owner_id": account.users[0]["id"],
            "org_id": None,
            "add_time": stamp,
            "update_time": stamp,
            "emails": [],
            "phones": [],
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
            "postal_address": None,
            "notes": None,
            "im": [],
            "birthday": None,
            "job_title": None,
            "marketing_status": None,
            "custom_fields": {},
        }
        self._apply_person(ctx, body, person)
        person["id"] = next(self._ids)
        entity = Entity(person)
        account.persons[person["id"]] = entity
        entity.reindex(ctx.searchable_from())
        return _ok(entity.data)

    def create_organization(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``POST /api/v2/organizations`` (``name`` required)."""
        body = ctx.json_object()
        self._check_keys(body, ORG_FIELDS)
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("name: required, must be non-empty string")
        account = ctx.account
        stamp = iso_seconds_z(utcnow())
        org: JSONDict = {
            "id": 0,
            "name": name,
            "owner_id": account.users[0]["id"],
            "add_time": stamp,
            "update_time": stamp,
            "address": None,
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "website": None,
            "linkedin": None,
            "industry": None,
            "annual_revenue": None,
            "employee_count": None,
            "custom_fields": {},
        }
        self._apply_organization(ctx, body, org)
        org["id"] = next(self._ids)
        entity = Entity(org)
        account.organizations[org["id"]] = entity
        entity.reindex(ctx.searchable_from())
        return _ok(entity.data)

    def _updater(
        self,
        attr: str,
        label: str,
        apply: Callable[[Ctx[PipedriveAccount], JSONDict, JSONDict], None],
    ) -> Callable[[Ctx[PipedriveAccount]], Response]:
        """``PATCH /api/v2/{persons,organizations,deals}/{id}``: validated on a copy, so a
        400 changes nothing."""

        def update(ctx: Ctx[PipedriveAccount]) -> Response:
            entity = getattr(ctx.account, attr).get(self._path_id(ctx))
            if entity is None:
                raise _error(404, f"{label} not found")
            updated = copy.deepcopy(entity.data)
            apply(ctx, ctx.json_object(), updated)
            entity.data = updated
            entity.reindex(ctx.searchable_from())
            return _ok(updated)

        return update

    # ----------------------------------------------------------------- deals

    def _apply_deal(
        self, ctx: Ctx[PipedriveAccount], body: Mapping[str, Any], deal: JSONDict
    ) -> None:
        """Validate ``body`` and apply it to ``deal`` (a new or existing deal's data)."""
        account = ctx.account
        self._check_keys(body, DEAL_FIELDS)
        stamp = iso_seconds_z(utcnow())
        if "title" in body:
            title = body["title"]
            if not isinstance(title, str) or not title.strip():
                raise _invalid("title: must be non-empty string")
            deal["title"] = title
        if "person_id" in body:
            deal["person_id"] = self._ref(account.persons, body, "person_id")
        if "org_id" in body:
            deal["org_id"] = self._ref(account.organizations, body, "org_id")
        if "value" in body:
            value = body["value"]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid("value: must be number")
            deal["value"] = value
        if "currency" in body:
            currency = body["currency"]
            if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
                raise _invalid("currency: must be a 3-letter currency code")
            deal["currency"] = currency
        self._apply_stage(account, body, deal, stamp)
        if "probability" in body:
            probability = body["probability"]
            if probability is not None and (
                isinstance(probability, bool)
                or not isinstance(probability, int | float)
                or not 0 <= probability <= 100
            ):
                raise _invalid("probability: must be a number between 0 and 100, or null")
            deal["probability"] = probability
        if "expected_close_date" in body:
            date = body["expected_close_date"]
            if date is not None and (not isinstance(date, str) or not _DATE.fullmatch(date)):
                raise _invalid("expected_close_date: must match format YYYY-MM-DD")
            deal["expected_close_date"] = date
        for key in ("is_archived", "is_deleted"):
            if key in body:
                if not isinstance(body[key], bool):
                    raise _invalid(f"{key}: must be boolean")
                deal[key] = body[key]
        if "archive_time" in body:
            deal["archive_time"] = _string(body["archive_time"], "archive_time", 64)
        self._apply_common(ctx, "deal", body, deal)
        self._apply_status(body, deal, stamp)
        deal["update_time"] = stamp

    @staticmethod
    def _apply_stage(
        account: PipedriveAccount, body: Mapping[str, Any], deal: JSONDict, stamp: str
    ) -> None:
        pipeline_id = _int_field(body, "pipeline_id")
        stage_id = _int_field(body, "stage_id")
        if pipeline_id is not None and not any(p["id"] == pipeline_id for p in account.pipelines):
            raise _error(400, f"Pipeline with id {pipeline_id} not found", "ERR_PIPELINE_NOT_FOUND")
        if stage_id is not None:
            stage = account.stage(stage_id)
            if stage is None:
                raise _error(400, f"Stage with id {stage_id} not found", "ERR_STAGE_NOT_FOUND")
            if pipeline_id is not None and stage["pipeline_id"] != pipeline_id:
                raise _invalid(f"stage_id: stage {stage_id} is not in pipeline {pipeline_id}")
        elif pipeline_id is not None and pipeline_id != deal.get("pipeline_id"):
            stage = min(
                (s for s in account.stages if s["pipeline_id"] == pipeline_id),
                key=lambda s: s["order_nr"],
            )
        elif deal.get("stage_id") is None:
            stage = account.stages[0]
        else:
            return
        if stage["id"] != deal.get("stage_id"):
            deal["stage_change_time"] = stamp if deal.get("stage_id") is not None else None
        deal["stage_id"] = stage["id"]
        deal["pipeline_id"] = stage["pipeline_id"]

    @staticmethod
    def _apply_status(body: Mapping[str, Any], deal: JSONDict, stamp: str) -> None:
        status = body.get("status", deal["status"])
        if status not in ("open", "won", "lost"):
            raise _invalid("status: must be equal to one of the allowed values: open, won, lost")
        if "lost_reason" in body and body["lost_reason"] is not None:
            if status != "lost":
                raise _invalid("lost_reason: can only be set if deal status is lost")
            if not isinstance(body["lost_reason"], str):
                raise _invalid("lost_reason: must be string")
        for key, needed in (("won_time", "won"), ("lost_time", "lost")):
            if key in body and status != needed:
                raise _invalid(f"{key}: can only be set if deal status is {needed}")
        if status != deal["status"]:
            deal.update(won_time=None, lost_time=None, close_time=None, lost_reason=None)
            if status == "won":
                deal.update(won_time=stamp, close_time=stamp)
            elif status == "lost":
                deal.update(lost_time=stamp, close_time=stamp)
            deal["status"] = status
        if status == "lost" and "lost_reason" in body:
            deal["lost_reason"] = body["lost_reason"]
        for key in ("won_time", "lost_time", "close_time"):
            if key in body:
                deal[key] = body[key]

    def create_deal(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``POST /api/v2/deals`` (``title`` required)."""
        body = ctx.json_object()
        if not isinstance(body.get("title"), str) or not body["title"].strip():
            raise _invalid("title: required, must be non-empty string")
        stamp = iso_seconds_z(utcnow())
        me = ctx.account.users[0]["id"]
        deal: JSONDict = {
            "id": 0,
            "title": "",
            "creator_user_id": me,
            "owner_id": me,
            "value": 0,
            "person_id": None,
            "org_id": None,
            "stage_id": None,
            "pipeline_id": None,
            "currency": ctx.account.users[0]["default_currency"],
            "add_time": stamp,
            "update_time": stamp,
            "stage_change_time": None,
            "status": "open",
            "is_archived": False,
            "archive_time": None,
            "is_deleted": False,
            "probability": None,
            "lost_reason": None,
            "visible_to": 3,
            "close_time": None,
            "won_time": None,
            "lost_time": None,
            "expected_close_date": None,
            "label_ids": [],
            "origin": "API",
            "origin_id": None,
            "channel": None,
            "channel_id": None,
            "custom_fields": {},
        }
        self._apply_deal(ctx, body, deal)
        deal["id"] = next(self._ids)
        entity = Entity(deal)
        ctx.account.deals[deal["id"]] = entity
        entity.reindex(ctx.searchable_from())
        return _ok(deal)

    # ----------------------------------------------------------------- search

    def _search(
        self,
        ctx: Ctx[PipedriveAccount],
        store: Mapping[int, Entity],
        allowed_fields: dict[str, Callable[[JSONDict], list[str]]],
        item: Callable[[JSONDict, list[str]], JSONDict],
        keep: Callable[[JSONDict], bool] = lambda d: True,
    ) -> Response:
        req = ctx.request
        term = req.arg("term")
        exact = bool(json_bool(req.arg("exact_match")))
        if term is None or len(term.strip()) < (1 if exact else 2):
            raise _invalid("term: must NOT have fewer than 2 characters (1 with exact_match)")
        fields = req.args("fields") or list(allowed_fields)
        bad = [f for f in fields if f not in allowed_fields]
        if bad:
            raise _invalid(f"fields: must be equal to one of the allowed values: {bad[0]}")
        needle = term.strip().lower()
        scored: list[tuple[float, JSONDict, list[str]]] = []
        for entity in store.values():
            snap = entity.index.view(ctx.mono)
            if snap is None or not keep(snap):
                continue
            hit_score = 0.0
            custom_hits: list[str] = []
            for name in fields:
                for value in allowed_fields[name](snap):
                    low = value.lower()
                    if low == needle or (not exact and needle in low):
                        hit_score = max(hit_score, 1.0 if low == needle else 0.5)
                        if name == "custom_fields":
                            custom_hits.append(value)
            if hit_score:
                scored.append((hit_score, snap, custom_hits))
        scored.sort(key=lambda t: (-t[0], t[1]["id"]))
        results = [{"result_score": s, "item": item(snap, hits)} for s, snap, hits in scored]
        page, extra = _page(req, results)
        return _ok({"items": page}, extra)

    @staticmethod
    def _custom_values(data: JSONDict) -> list[str]:
        out: list[str] = []
        for value in data.get("custom_fields", {}).values():
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                out.append(str(value))
            elif isinstance(value, dict) and "value" in value:
                out.append(str(value["value"]))
        return out

    def _org_ref(self, account: PipedriveAccount, org_id: int | None) -> JSONDict | None:
        org = account.organizations.get(org_id) if org_id is not None else None
        if org is None:
            return None
        return {"id": org.data["id"], "name": org.data["name"], "address": None}

    def search_persons(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/persons/search`` (fields: name, email, phone, custom_fields, notes)."""
        org_filter = _query_int(ctx.request, "organization_id")

        def item(data: JSONDict, custom: list[str]) -> JSONDict:
            return {
                "id": data["id"],
                "type": "person",
                "name": data["name"],
                "phones": [p["value"] for p in data["phones"]],
                "emails": [e["value"] for e in data["emails"]],
                "visible_to": data["visible_to"],
                "owner": {"id": data["owner_id"]},
                "organization": self._org_ref(ctx.account, data["org_id"]),
                "custom_fields": custom,
                "notes": [],
            }

        return self._search(
            ctx,
            ctx.account.persons,
            {
                "name": lambda d: [d["name"]],
                "email": lambda d: [e["value"] for e in d["emails"]],
                "phone": lambda d: [p["value"] for p in d["phones"]],
                "custom_fields": self._custom_values,
                "notes": lambda d: [],
            },
            item,
            lambda d: org_filter is None or d["org_id"] == org_filter,
        )

    def search_organizations(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/organizations/search`` (fields: name, custom_fields, address, notes)."""

        def item(data: JSONDict, custom: list[str]) -> JSONDict:
            return {
                "id": data["id"],
                "type": "organization",
                "name": data["name"],
                "address": None,
                "visible_to": data["visible_to"],
                "owner": {"id": data["owner_id"]},
                "custom_fields": custom,
                "notes": [],
            }

        return self._search(
            ctx,
            ctx.account.organizations,
            {
                "name": lambda d: [d["name"]],
                "custom_fields": self._custom_values,
                "address": lambda d: [str(d["address"])] if d.get("address") else [],
                "notes": lambda d: [],
            },
            item,
        )

    def search_deals(self, ctx: Ctx[PipedriveAccount]) -> Response:
        """``GET /api/v2/deals/search`` (fields: title, custom_fields, notes)."""
        account = ctx.account
        person_filter = _query_int(ctx.request, "person_id")
        org_filter = _query_int(ctx.request, "organization_id")
        status_filter = ctx.request.arg("status")

        def item(data: JSONDict, custom: list[str]) -> JSONDict:
            stage = account.stage(data["stage_id"]) or {}
            person = account.persons.get(data["person_id"]) if data["person_id"] else None
            org = self._org_ref(account, data["org_id"])
            return {
                "id": data["id"],
                "type": "deal",
                "title": data["title"],
                "value": data["value"],
                "currency": data["currency"],
                "status": data["status"],
                "visible_to": data["visible_to"],
                "owner": {"id": data["owner_id"]},
                "stage": {"id": stage.get("id"), "name": stage.get("name")},
                "person": {"id": person.data["id"], "name": person.data["name"]}
                if person
                else None,
                "organization": {"id": org["id"], "name": org["name"]} if org else None,
                "custom_fields": custom,
                "notes": [],
                "is_archived": data["is_archived"],
            }

        def keep(data: JSONDict) -> bool:
            return (
                (person_filter is None or data["person_id"] == person_filter)
                and (org_filter is None or data["org_id"] == org_filter)
                and (status_filter is None or data["status"] == status_filter)
            )

        return self._search(
            ctx,
            account.deals,
            {
                "title": lambda d: [d["title"]],
                "custom_fields": self._custom_values,
                "notes": lambda d: [],
            },
            item,
            keep,
        )
