"""Vendor-neutral machinery of the CRM sandbox.

One :class:`VendorApp` per fake CRM holds many independent accounts, routes requests to the
vendor's handlers and applies, in this order, for every API request:

1. authentication (credential -> account; ``sbx_`` credentials auto-provision an account),
2. the injected latency (a sleep outside every lock, so slow requests do not block others),
3. the rolling-window rate limit of the account,
4. the first matching fault rule,
5. the vendor handler (under the app's lock), then rate-limit headers and bookkeeping.

A batch request is one request in all of that: one slot of the rate-limit window, one entry in
the request log and counters, one request-level fault. ``item_error`` rules are the exception:
they never fire for a whole request; a vendor's batch handler asks
:meth:`VendorApp.take_item_fault` about each input, and an input they match fails on its own
(HubSpot: listed in ``errors`` of a 207) while the others are written.

Admin endpoints under ``/_sandbox/`` bypass all of that. The HTTP side is a stdlib
:class:`~http.server.ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import math
import re
import secrets
import socket
import threading
import time
import traceback
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger("agency_crm.sandbox")

JSONDict = dict[str, Any]

#: Prefix of credentials that provision a new account on first use.
AUTO_PREFIX = "sbx_"
#: How many request-log entries each account keeps.
REQUEST_LOG_SIZE = 1000
#: Fault kinds understood by every vendor (``item_error``: by the batch endpoints that have
#: per-input outcomes, HubSpot's).
FAULT_KINDS = frozenset(
    {"status", "rate_limit", "slow", "drop", "drop_after", "malformed", "item_error"}
)
#: The fault kind that fails single inputs of a batch instead of a whole request.
ITEM_ERROR = "item_error"
REDACTED = "<redacted>"


# --------------------------------------------------------------------------- time helpers


def utcnow() -> datetime:
    """The current UTC time (timezone-aware)."""
    return datetime.now(UTC)


def iso_millis_z(when: datetime) -> str:
    """``2024-01-31T12:00:00.123Z`` (HubSpot style)."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds_z(when: datetime) -> str:
    """``2024-01-31T12:00:00Z`` (Pipedrive style)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_micros_offset(when: datetime) -> str:
    """``2024-01-31T12:00:00.123456+00:00`` (Close style)."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- requests, responses


@dataclass
class Request:
    """One HTTP request as the vendor apps see it."""

    method: str
    raw_path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: str = ""

    @property
    def path(self) -> str:
        """The percent-decoded path (no query string)."""
        return unquote(self.raw_path)

    @property
    def segments(self) -> list[str]:
        """Percent-decoded path segments; a leading and trailing slash give empty segments."""
        return [unquote(s) for s in self.raw_path.split("/")]

    def header(self, name: str) -> str | None:
        """A header value by case-insensitive name."""
        return self.headers.get(name.lower())

    def arg(self, name: str) -> str | None:
        """The last value of a query parameter, or None."""
        values = self.query.get(name)
        return values[-1] if values else None

    def args(self, name: str) -> list[str]:
        """All values of a query parameter, comma-separated values split."""
        out: list[str] = []
        for value in self.query.get(name, []):
            out.extend(v for v in value.split(",") if v)
        return out

    def json(self) -> Any:
        """The body parsed as JSON; raises :class:`BadRequestBody` when it is not JSON."""
        if not self.body.strip():
            raise BadRequestBody("request body is empty")
        try:
            return json.loads(self.body, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequestBody(f"request body is not valid JSON: {exc}") from exc

    def form(self) -> dict[str, str]:
        """The body parsed as ``application/x-www-form-urlencoded`` (last value wins)."""
        try:
            parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError as exc:
            raise BadRequestBody("form body is not UTF-8") from exc
        return {k: v[-1] for k, v in parsed.items()}


def _reject_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's parser accepts them; the vendors' do not)."""
    raise ValueError(f"{name} is not a JSON value")


def ascii_int(raw: str) -> int | None:
    """``raw`` as an int when it is ASCII digits (``str.isdigit`` also takes ``²``)."""
    return int(raw) if _ASCII_DIGITS.fullmatch(raw) else None


_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


class BadRequestBody(Exception):
    """The request body could not be parsed; vendors turn this into their 400."""


@dataclass
class Response:
    """What the HTTP layer sends back (or, with ``drop``, the order not to answer at all)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json;charset=utf-8"
    drop: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(payload).encode(), list(headers))

    @classmethod
    def dropped(cls) -> Response:
        """Close the connection without any response."""
        return cls(0, drop=True)

    def header(self, name: str) -> str | None:
        """A response header by case-insensitive name."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class ApiError(Exception):
    """Raised by handlers: respond with this status and vendor-shaped payload."""

    def __init__(self, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.payload = payload
        self.headers = list(headers)


class AdminError(Exception):
    """Raised by admin operations: respond ``{"error": message}`` with this status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RateLimit:
    """At most ``max`` requests in any rolling ``interval_ms`` window."""

    max: int
    interval_ms: int

    @classmethod
    def parse(cls, value: Any) -> RateLimit | None:
        """From ``{"max": N, "interval_ms": M}``, ``"N/SECONDS"`` or None/False (unlimited)."""
        if value is None or value is False:
            return None
        if isinstance(value, str):
            match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", value)
            if not match:
                raise ValueError(f"rate limit {value!r} is not N/SECONDS, e.g. 100/10")
            return cls(int(match[1]), round(float(match[2]) * 1000))
        if isinstance(value, Mapping):
            maximum, interval = value.get("max"), value.get("interval_ms")
            if not isinstance(maximum, int) or not isinstance(interval, int):
                raise ValueError("rate_limit needs integer max and interval_ms")
            if maximum < 1 or interval < 1:
                raise ValueError("rate_limit max and interval_ms must be positive")
            return cls(maximum, interval)
        raise ValueError("rate_limit must be an object {max, interval_ms}, 'N/SECONDS' or null")

    def to_json(self) -> JSONDict:
        """``{"max": .., "interval_ms": ..}``."""
        return {"max": self.max, "interval_ms": self.interval_ms}


_UNSET: Any = object()


@dataclass
class Config:
    """Behaviour knobs; server-wide defaults, optionally overridden per account."""

    latency_ms: float = 0.0
    rate_limit: RateLimit | None = None
    search_lag_ms: float = 0.0

    def to_json(self) -> JSONDict:
        """JSON form as the admin API shows it."""
        return {
            "latency_ms": self.latency_ms,
            "rate_limit": self.rate_limit.to_json() if self.rate_limit else None,
            "search_lag_ms": self.search_lag_ms,
        }


@dataclass
class ConfigOverride:
    """Per-account overrides; ``_UNSET`` fields fall back to the server-wide config."""

    latency_ms: Any = _UNSET
    rate_limit: Any = _UNSET
    search_lag_ms: Any = _UNSET

    def apply(self, base: Config) -> Config:
        """The effective config for an account."""
        return Config(
            latency_ms=base.latency_ms if self.latency_ms is _UNSET else self.latency_ms,
            rate_limit=base.rate_limit if self.rate_limit is _UNSET else self.rate_limit,
            search_lag_ms=base.search_lag_ms
            if self.search_lag_ms is _UNSET
            else self.search_lag_ms,
        )


def parse_config_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the knobs of a ``POST /_sandbox/config`` body; returns the ones present."""
    out: dict[str, Any] = {}
    for key in ("latency_ms", "search_lag_ms"):
        if key in body:
            value = body[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise AdminError(400, f"{key} must be a number >= 0")
            out[key] = float(value)
    if "rate_limit" in body:
        try:
            out["rate_limit"] = RateLimit.parse(body["rate_limit"])
        except ValueError as exc:
            raise AdminError(400, str(exc)) from exc
    unknown = set(body) - {"latency_ms", "search_lag_ms", "rate_limit", "token", "account"}
    if unknown:
        raise AdminError(400, f"unknown config keys: {sorted(unknown)}")
    return out


# --------------------------------------------------------------------------- search index


T = TypeVar("T")


class SearchIndex(Generic[T]):
    """Eventually consistent copy of one record for search endpoints.

    ``put`` schedules a snapshot to become visible at ``ready_at`` (monotonic seconds);
    ``view`` returns the newest snapshot that is ready, so an updated record keeps showing
    its old values in search until the lag has passed, and a new one is not found at all.
    """

    __slots__ = ("_pending", "_visible")

    def __init__(self) -> None:
        self._pending: list[tuple[float, T | None]] = []
        self._visible: T | None = None

    def put(self, snapshot: T | None, ready_at: float) -> None:
        """Schedule ``snapshot`` (None = deleted) to be searchable from ``ready_at``."""
        self._pending.append((ready_at, snapshot))

    def view(self, now: float) -> T | None:
        """The snapshot search sees at ``now`` (None = not searchable)."""
        if self._pending:
            still: list[tuple[float, T | None]] = []
            for ready_at, snapshot in self._pending:
                if ready_at <= now:
                    self._visible = snapshot
                else:
                    still.append((ready_at, snapshot))
            self._pending = still
        return self._visible


@dataclass
class Entity:
    """A stored record as its vendor JSON, plus its search-index copy."""

    data: JSONDict
    index: SearchIndex[JSONDict] = field(default_factory=SearchIndex)

    def reindex(self, ready_at: float) -> None:
        """Schedule the current data (a deep copy) to become searchable at ``ready_at``."""
        self.index.put(copy.deepcopy(self.data), ready_at)


# --------------------------------------------------------------------------- faults


@dataclass
class FaultRule:
    """One injected fault; see :func:`parse_fault` for the JSON syntax."""

    id: int
    kind: str
    method: str | None = None
    path: str | None = None
    path_regex: re.Pattern[str] | None = None
    token: str | None = None
    account: str | None = None
    times: int = 1
    status: int | None = None
    retry_after: int = 1
    delay_ms: float = 1000.0
    # ``status``: the error message of the vendor's error body; ``malformed``: the whole
    # body sent instead of the JSON. What a vendor that echoes a request would answer.
    # ``item_error``: the message of the failing input's error.
    message: str | None = None
    # ``item_error``: the input value (an id, an email, an idProperty value) that fails.
    match: str | None = None
    fired: int = 0

    def matches(self, req: Request, account: AccountBase | None) -> bool:
        """Whether this rule applies to ``req`` made by ``account``."""
        if self.times == 0:
            return False
        if self.method and self.method != req.method:
            return False
        if self.path is not None and match_template(self.path.split("/"), req.segments) is None:
            return False
        if self.path_regex is not None and not self.path_regex.fullmatch(req.path):
            return False
        if self.token is not None and (account is None or self.token not in account.tokens):
            return False
        return not (self.account is not None and (account is None or account.id != self.account))

    def fire(self) -> None:
        """Count one use."""
        self.fired += 1
        if self.times > 0:
            self.times -= 1

    def to_json(self) -> JSONDict:
        """The rule as the admin API lists it (``times`` = remaining, -1 = forever)."""
        out: JSONDict = {"id": self.id, "kind": self.kind, "times": self.times, "fired": self.fired}
        for key in ("method", "path", "token", "account", "status", "message", "match"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.path_regex is not None:
            out["path_regex"] = self.path_regex.pattern
        if self.kind == "rate_limit":
            out["retry_after"] = self.retry_after
        if self.kind == "slow":
            out["delay_ms"] = self.delay_ms
        return out


def match_template(parts: list[str], segments: list[str]) -> dict[str, str] | None:
    """The path parameters when ``segments`` fit a template split at its slashes: an exact
    match where a ``{name}`` part matches any one non-empty segment (and captures it)."""
    if len(segments) != len(parts):
        return None
    params: dict[str, str] = {}
    for part, seg in zip(parts, segments, strict=True):
        if part.startswith("{") and part.endswith("}"):
            if not seg:
                return None
            params[part[1:-1]] = seg
        elif part != seg:
            return None
    return params


def parse_fault(raw: Any, rule_id: int) -> FaultRule:
    """Validate one fault rule object of ``POST /_sandbox/faults``."""
    if not isinstance(raw, Mapping):
        raise AdminError(400, "each fault must be an object")
    known = {
        "kind",
        "method",
        "path",
        "path_regex",
        "token",
        "account",
        "times",
        "status",
        "retry_after",
        "delay_ms",
        "message",
        "match",
    }
    unknown = set(raw) - known
    if unknown:
        raise AdminError(400, f"unknown fault keys: {sorted(unknown)}")
    kind = raw.get("kind")
    if kind not in FAULT_KINDS:
        raise AdminError(400, f"fault kind must be one of {sorted(FAULT_KINDS)}")
    rule = FaultRule(id=rule_id, kind=kind)
    method = raw.get("method")
    if method is not None:
        if not isinstance(method, str):
            raise AdminError(400, "method must be a string")
        rule.method = method.upper()
    path = raw.get("path")
    if path is not None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise AdminError(400, "path must be a string starting with /")
        rule.path = path
    regex = raw.get("path_regex")
    if regex is not None:
        try:
            rule.path_regex = re.compile(str(regex))
        except re.error as exc:
            raise AdminError(400, f"bad path_regex: {exc}") from exc
    for key in ("token", "account"):
        value = raw.get(key)
        if value is not None:
            setattr(rule, key, str(value))
    times = raw.get("times", 1)
    if isinstance(times, bool) or not isinstance(times, int) or times < -1 or times == 0:
        raise AdminError(400, "times must be a positive integer or -1 (forever)")
    rule.times = times
    if kind == "status" or (kind == ITEM_ERROR and "status" in raw):
        status = raw.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise AdminError(400, f"kind {kind!r} needs an integer status 400..599")
        rule.status = status
    if kind == ITEM_ERROR:
        match = raw.get("match")
        if not isinstance(match, str) or not match:
            raise AdminError(400, "kind 'item_error' needs match: the input's id (or email) value")
        rule.match = match
    elif "match" in raw:
        raise AdminError(400, "match is for kind 'item_error'")
    if "retry_after" in raw:
        retry = raw["retry_after"]
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise AdminError(400, "retry_after must be an integer >= 0 (seconds)")
        rule.retry_after = retry
    if "delay_ms" in raw:
        delay = raw["delay_ms"]
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise AdminError(400, "delay_ms must be a number >= 0")
        rule.delay_ms = float(delay)
    if "message" in raw:
        message = raw["message"]
        if kind not in ("status", "malformed", ITEM_ERROR) or not isinstance(message, str):
            raise AdminError(
                400, "message is a string, for kinds 'status', 'malformed' and 'item_error'"
            )
        rule.message = message
    return rule


# --------------------------------------------------------------------------- accounts


@dataclass
class TokenInfo:
    """A credential: which account it belongs to and, for OAuth tokens, when it expires."""

    account_id: str
    expires_at: float | None = None  # wall-clock seconds; None = never
    revoked: bool = False


class AccountBase:
    """State every vendor account has: tokens, rate window, counters, request log."""

    def __init__(self, account_id: str) -> None:
        self.id = account_id
        self.tokens: set[str] = set()
        self.override = ConfigOverride()
        self.window: deque[float] = deque()
        self.requests: Counter[str] = Counter()
        self.status_counts: Counter[str] = Counter()
        self.request_log: deque[JSONDict] = deque(maxlen=REQUEST_LOG_SIZE)
        self._next_id = 0
        self.created = utcnow()

    def next_id(self) -> int:
        """A fresh integer id, unique within the account across all record types."""
        self._next_id += 1
        return self._next_id


A = TypeVar("A", bound=AccountBase)


@dataclass
class Ctx(Generic[A]):
    """What a route handler gets: the request, path params and the (authenticated) account."""

    request: Request
    params: dict[str, str]
    account: A
    token: str
    mono: float  # time.monotonic() when the handler runs
    config: Config

    def json_object(self) -> JSONDict:
        """The body as a JSON object (BadRequestBody otherwise)."""
        body = self.request.json()
        if not isinstance(body, dict):
            raise BadRequestBody("request body must be a JSON object")
        return body

    def searchable_from(self) -> float:
        """Monotonic time from which a record written now shows up in search."""
        return self.mono + self.config.search_lag_ms / 1000.0


@dataclass
class Route(Generic[A]):
    """A method + path template (``{name}`` segments capture) and its handler."""

    method: str
    template: str
    func: Callable[[Ctx[A]], Response] | None = None
    #: Routes without header auth (the OAuth token endpoints) use ``public`` instead of
    #: ``func``, and ``resolver`` to attribute the request to an account, if any. They are
    #: not rate limited (but latency and faults apply).
    public: Callable[[Request], Response] | None = None
    resolver: Callable[[Request], A | None] | None = None
    parts: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.parts = self.template.split("/")

    @property
    def literal_count(self) -> int:
        """How many literal segments (more = more specific)."""
        return sum(not (p.startswith("{") and p.endswith("}")) for p in self.parts)

    def match(self, segments: list[str]) -> dict[str, str] | None:
        """Path parameters when ``segments`` fit the template."""
        return match_template(self.parts, segments)


def new_correlation_id() -> str:
    """A UUID string (HubSpot correlation ids are UUIDs)."""
    return str(uuid.uuid4())


def encode_cursor(offset: int) -> str:
    """Opaque cursor for an offset."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int | None:
    """The offset in a cursor made by :func:`encode_cursor`, or None when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = data["offset"]
    except (ValueError, KeyError, TypeError):
        return None
    return offset if isinstance(offset, int) and offset >= 0 else None


# --------------------------------------------------------------------------- vendor app


class VendorApp(Generic[A]):
    """Base of the three fakes. Subclasses provide routes, auth parsing and error shapes."""

    vendor: ClassVar[str]
    #: Rate limit used when neither the Sandbox nor an admin call sets one.
    default_rate_limit: ClassVar[RateLimit]
    #: Request headers whose values are credentials (redacted in the request log).
    credential_headers: ClassVar[frozenset[str]] = frozenset({"authorization"})
    #: Query parameters whose values are credentials.
    credential_query: ClassVar[frozenset[str]] = frozenset()
    #: Form/JSON body fields whose values are secrets.
    credential_body_fields: ClassVar[frozenset[str]] = frozenset()
    #: Whether ``/path/`` also reaches the route ``/path`` (HubSpot: yes; Close's paths all
    #: end with ``/`` and the bare form is a 404).
    optional_trailing_slash: ClassVar[bool] = False

    def __init__(self, defaults: Config | None = None) -> None:
        self.lock = threading.RLock()
        self._initial = defaults or Config(rate_limit=self.default_rate_limit)
        self.routes: list[Route[A]] = self.build_routes()
        self._methods = {route.method for route in self.routes} | {"HEAD"}
        self.accounts: dict[str, A] = {}
        self.tokens: dict[str, TokenInfo] = {}
        self.faults: list[FaultRule] = []
        self.config = Config(**vars(self._initial))
        self._fault_seq = 0
        #: Unexpected exceptions in handlers (each answered with the vendor's JSON 500);
        #: ``GET /_sandbox/errors`` shows them and tests assert there are none.
        self.internal_errors: deque[JSONDict] = deque(maxlen=100)

    # ----------------------------------------------------------------- subclass hooks

    def build_routes(self) -> list[Route[A]]:
        """The vendor's API routes."""
        raise NotImplementedError

    def make_account(self) -> A:
        """A new account with seeded pipelines, stages and users."""
        raise NotImplementedError

    def extract_credential(self, req: Request) -> str | None:
        """The credential the request carries, or None."""
        raise NotImplementedError

    def auth_error(self, reason: str, token: str | None, expired_for: float = 0.0) -> Response:
        """The vendor's 401 (reason: missing, invalid, revoked, expired)."""
        raise NotImplementedError

    def error_response(self, status: int, message: str | None = None) -> Response:
        """Vendor-shaped error for ``status`` (used by status faults and generic errors)."""
        raise NotImplementedError

    def bad_body_response(self, message: str) -> Response:
        """Vendor-shaped 400 for an unparseable body."""
        return self.error_response(400, message)

    def rate_headers(self, limit: RateLimit, remaining: int, reset_s: int) -> list[tuple[str, str]]:
        """The vendor's rate-limit headers."""
        raise NotImplementedError

    def too_many_requests(self, limit: RateLimit | None, retry_after: int) -> Response:
        """The vendor's 429 (headers show 0 remaining, plus Retry-After)."""
        raise NotImplementedError

    def malformed_body(self) -> bytes:
        """A body that is not valid JSON (for the ``malformed`` fault)."""
        return b'{"id": "1", "properties": {"truncated": '

    def account_summary(self, account: A) -> JSONDict:
        """Pipelines and users of an account as ``POST /_sandbox/accounts`` returns them."""
        raise NotImplementedError

    def account_state(self, account: A, mono: float) -> JSONDict:
        """Records of an account for ``GET /_sandbox/state``."""
        raise NotImplementedError

    def admin_extra(self, req: Request, action: str) -> Response | None:
        """Vendor-specific admin endpoints (``/_sandbox/<action>``); None = not handled."""
        return None

    def check_account_options(self, options: Mapping[str, Any]) -> None:
        """Validate ``POST /_sandbox/accounts`` options before anything is created."""
        if options:
            raise AdminError(400, f"unknown account options: {sorted(options)}")

    def on_account_created(self, account: A, token: str, options: Mapping[str, Any]) -> JSONDict:
        """Hook after ``POST /_sandbox/accounts`` (``options``: body without ``token``).

        Returns extra response fields.
        """
        return {}

    # ----------------------------------------------------------------- accounts and tokens

    def generate_token(self) -> str:
        """A fresh ``sbx_`` credential."""
        return f"{AUTO_PREFIX}{self.vendor}_{secrets.token_hex(12)}"

    def register_token(self, account: A, token: str, expires_at: float | None = None) -> None:
        """Make ``token`` a credential of ``account``."""
        self.tokens[token] = TokenInfo(account.id, expires_at)
        account.tokens.add(token)

    def provision(self, token: str | None = None) -> tuple[A, str]:
        """Create an account, with ``token`` (or a generated one) as its credential."""
        with self.lock:
            token = token or self.generate_token()
            if token in self.tokens:
                raise AdminError(409, "token already belongs to an account")
            account = self.make_account()
            self.accounts[account.id] = account
            self.register_token(account, token)
            return account, token

    def account_for_token(self, token: str, provision: bool = False) -> A | None:
        """The account owning ``token`` (auto-provisioned for ``sbx_`` tokens if asked)."""
        with self.lock:
            info = self.tokens.get(token)
            if info is None:
                if provision and token.startswith(AUTO_PREFIX):
                    return self.provision(token)[0]
                return None
            return self.accounts.get(info.account_id)

    def find_account(self, token: str | None, account_id: str | None) -> A:
        """An account by token or id, for admin calls (404 when unknown)."""
        if token:
            account = self.account_for_token(token)
        elif account_id:
            account = self.accounts.get(str(account_id))
        else:
            raise AdminError(400, "give token or account")
        if account is None:
            raise AdminError(404, "no such account")
        return account

    def effective_config(self, account: A | None) -> Config:
        """Server-wide config with the account's overrides applied."""
        return account.override.apply(self.config) if account else self.config

    # ----------------------------------------------------------------- admin API (Python)

    def create_account(self, token: str | None = None, **options: Any) -> JSONDict:
        """``POST /_sandbox/accounts`` as a method."""
        with self.lock:
            self.check_account_options(options)
            account, token = self.provision(token)
            out: JSONDict = {"account": account.id, "token": token}
            out.update(self.account_summary(account))
            out.update(self.on_account_created(account, token, options))
            return out

    def set_revoked(self, token: str, revoked: bool) -> None:
        """Revoke (401 from now on) or restore a credential."""
        with self.lock:
            if token not in self.tokens:
                if not token.startswith(AUTO_PREFIX):
                    raise AdminError(404, "unknown token")
                self.provision(token)
            self.tokens[token].revoked = revoked

    def state(self, token: str | None = None, account_id: str | None = None) -> JSONDict:
        """``GET /_sandbox/state`` as a method."""
        with self.lock:
            account = self.find_account(token, account_id)
            out: JSONDict = {"account": account.id}
            out.update(self.account_state(account, time.monotonic()))
            out["requests"] = dict(account.requests)
            out["status_counts"] = dict(account.status_counts)
            out["request_log"] = list(account.request_log)
            return out

    def add_faults(self, faults: Iterable[Any]) -> list[JSONDict]:
        """Append fault rules (all or none); returns all rules."""
        with self.lock:
            new: list[FaultRule] = []
            for raw in faults:
                self._fault_seq += 1
                new.append(parse_fault(raw, self._fault_seq))
            self.faults.extend(new)
            return [rule.to_json() for rule in self.faults]

    def clear_faults(self) -> None:
        """Forget all fault rules."""
        with self.lock:
            self.faults.clear()

    def configure(
        self, token: str | None = None, account: str | None = None, **knobs: Any
    ) -> JSONDict:
        """``POST /_sandbox/config`` as a method; returns the effective config."""
        with self.lock:
            values = parse_config_body(knobs)
            if token or account:
                if token and account is None:
                    self.account_for_token(token, provision=True)
                target = self.find_account(token, account)
                for key, value in values.items():
                    setattr(target.override, key, value)
                return self.effective_config(target).to_json()
            for key, value in values.items():
                setattr(self.config, key, value)
            return self.config.to_json()

    def reset(self) -> None:
        """Forget all accounts, tokens, faults and config changes."""
        with self.lock:
            self.accounts.clear()
            self.tokens.clear()
            self.faults.clear()
            self.config = Config(**vars(self._initial))
            self.internal_errors.clear()

    def record_internal_error(self, req: Request, exc: BaseException) -> Response:
        """Log an unexpected handler exception and answer the vendor's JSON 500."""
        log.error(
            "sandbox %s: unhandled error in %s %s", self.vendor, req.method, req.path, exc_info=exc
        )
        with self.lock:
            self.internal_errors.append(
                {
                    "time": iso_millis_z(utcnow()),
                    "method": req.method,
                    "path": req.path,
                    "error": f"{type(exc).__name__}: {exc}",
                    "traceback": "".join(traceback.format_exception(exc)[-3:]),
                }
            )
        return self.error_response(500, None)

    # ----------------------------------------------------------------- admin API (HTTP)

    def handle_admin(self, req: Request) -> Response:
        """Dispatch ``/_sandbox/...`` requests."""
        action = req.path[len("/_sandbox/") :].rstrip("/")
        try:
            body: JSONDict = {}
            if req.method in ("POST", "PUT", "PATCH") and req.body.strip():
                parsed = req.json()
                if not isinstance(parsed, dict):
                    raise AdminError(400, "body must be a JSON object")
                body = parsed
            key = (req.method, action)
            if key == ("POST", "accounts"):
                token = body.pop("token", None)
                return Response.json(201, self.create_account(token, **body))
            if key in (("POST", "accounts/revoke"), ("POST", "accounts/restore")):
                token = body.get("token")
                if not isinstance(token, str) or not token:
                    raise AdminError(400, "body needs a token")
                self.set_revoked(token, action.endswith("revoke"))
                return Response.json(200, {"token": token, "revoked": action.endswith("revoke")})
            if key == ("GET", "state"):
                return Response.json(200, self.state(req.arg("token"), req.arg("account")))
            if key == ("GET", "faults"):
                with self.lock:
                    return Response.json(200, {"faults": [f.to_json() for f in self.faults]})
            if key == ("POST", "faults"):
                faults = body.get("faults")
                if not isinstance(faults, list):
                    raise AdminError(400, 'body must be {"faults": [...]}')
                return Response.json(201, {"faults": self.add_faults(faults)})
            if key == ("DELETE", "faults"):
                self.clear_faults()
                return Response.json(200, {"faults": []})
            if key == ("GET", "config"):
                with self.lock:
                    if req.arg("token") or req.arg("account"):
                        account = self.find_account(req.arg("token"), req.arg("account"))
                        return Response.json(200, self.effective_config(account).to_json())
                    return Response.json(200, self.config.to_json())
            if key == ("POST", "config"):
                token, account_id = body.get("token"), body.get("account")
                knobs = {k: v for k, v in body.items() if k not in ("token", "account")}
                return Response.json(200, self.configure(token, account_id, **knobs))
            if key == ("POST", "reset"):
                self.reset()
                return Response.json(200, {"reset": True})
            if key == ("GET", "errors"):
                with self.lock:
                    return Response.json(200, {"errors": list(self.internal_errors)})
            if key == ("DELETE", "errors"):
                with self.lock:
                    self.internal_errors.clear()
                return Response.json(200, {"errors": []})
            extra = self.admin_extra(req, action)
            if extra is not None:
                return extra
            raise AdminError(404, f"no admin endpoint {req.method} /_sandbox/{action}")
        except AdminError as exc:
            return Response.json(exc.status, {"error": exc.message})
        except BadRequestBody as exc:
            return Response.json(400, {"error": str(exc)})

    # ----------------------------------------------------------------- request pipeline

    def match_route(self, req: Request) -> tuple[Route[A] | None, dict[str, str], set[str]]:
        """(route, params, allowed): the most specific route for method and path, and the
        methods the path allows (empty when no route has the path). HEAD is served by the GET
        route; with :attr:`optional_trailing_slash`, ``/path/`` also matches ``/path``."""
        candidates = [req.segments]
        if self.optional_trailing_slash and len(candidates[0]) > 2 and candidates[0][-1] == "":
            candidates.append(candidates[0][:-1])
        method = "GET" if req.method == "HEAD" else req.method
        for segments in candidates:
            best: tuple[Route[A], dict[str, str]] | None = None
            allowed: set[str] = set()
            for route in self.routes:
                params = route.match(segments)
                if params is None:
                    continue
                allowed.add(route.method)
                if route.method != method:
                    continue
                if best is None or route.literal_count > best[0].literal_count:
                    best = (route, params)
            if best is not None:
                return best[0], best[1], allowed
            if allowed:
                if "GET" in allowed:
                    allowed.add("HEAD")
                return None, {}, allowed
        return None, {}, set()

    def method_not_allowed(self, allowed: set[str]) -> Response:
        """The vendor's 405, with an ``Allow`` header when the path is known."""
        resp = self.error_response(405)
        if allowed:
            resp.headers.append(("Allow", ", ".join(sorted(allowed))))
        return resp

    def authenticate(self, req: Request) -> tuple[A | None, str | None, Response | None]:
        """(account, credential, error response) for header-authenticated routes."""
        token = self.extract_credential(req)
        if not token:
            return None, None, self.auth_error("missing", None)
        with self.lock:
            account = self.account_for_token(token, provision=True)
            if account is None:
                return None, token, self.auth_error("invalid", token)
            info = self.tokens[token]
            if info.revoked:
                return account, token, self.auth_error("revoked", token)
            if info.expires_at is not None:
                now = time.time()
                if now >= info.expires_at:
                    return account, token, self.auth_error("expired", token, now - info.expires_at)
            return account, token, None

    def _take_fault(self, req: Request, account: A | None) -> FaultRule | None:
        for rule in self.faults:
            if rule.kind != ITEM_ERROR and rule.matches(req, account):
                rule.fire()
                return rule
        return None

    def take_item_fault(
        self, req: Request, account: A | None, values: Iterable[str]
    ) -> FaultRule | None:
        """The first ``item_error`` rule for ``req`` whose ``match`` is one of ``values`` (the
        identifying values of one batch input), fired; None when the input is not to fail.
        Batch handlers call it once per input they would otherwise write."""
        wanted = set(values)
        with self.lock:
            for rule in self.faults:
                if rule.kind == ITEM_ERROR and rule.match in wanted and rule.matches(req, account):
                    rule.fire()
                    return rule
        return None

    def _check_rate(self, account: A, limit: RateLimit | None, mono: float) -> int | None:
        """Admit one request into the account's rolling window; Retry-After seconds if full."""
        if limit is None:
            return None
        window = account.window
        horizon = mono - limit.interval_ms / 1000.0
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= limit.max:
            free_at = window[len(window) - limit.max] + limit.interval_ms / 1000.0
            return max(1, math.ceil(free_at - mono))
        window.append(mono)
        return None

    def _rate_state(self, account: A, limit: RateLimit, mono: float) -> tuple[int, int]:
        """(remaining, reset seconds) of the account's window."""
        window = account.window
        horizon = mono - limit.interval_ms / 1000.0
        while window and window[0] <= horizon:
            window.popleft()
        remaining = max(0, limit.max - len(window))
        if window:
            reset = max(1, math.ceil(window[0] + limit.interval_ms / 1000.0 - mono))
        else:
            reset = max(1, math.ceil(limit.interval_ms / 1000.0))
        return remaining, reset

    def handle(self, req: Request) -> Response:
        """Serve one request (called from the HTTP handler threads)."""
        if req.path.startswith("/_sandbox/"):
            return self.handle_admin(req)
        started = time.monotonic()
        route, params, allowed = self.match_route(req)
        account: A | None
        token: str | None
        error: Response | None = None
        if route is None and req.method not in self._methods:
            # A method no route uses (OPTIONS, TRACE, ...): refused before authentication.
            token, account = None, None
            error = self.method_not_allowed(allowed)
        elif route is not None and route.public is not None:
            token = None
            with self.lock:
                account = route.resolver(req) if route.resolver else None
        else:
            account, token, error = self.authenticate(req)
            if error is None and route is None:
                error = self.method_not_allowed(allowed) if allowed else self.error_response(404)
        config = self.effective_config(account)
        if config.latency_ms:
            time.sleep(config.latency_ms / 1000.0)
        template = f"{req.method} {route.template if route else req.path}"
        if error is not None:
            return self._finish(req, account, template, error, started, None)
        fault: FaultRule | None
        with self.lock:
            mono = time.monotonic()
            if route is not None and route.public is None and account is not None:
                retry = self._check_rate(account, config.rate_limit, mono)
                if retry is not None:
                    resp = self.too_many_requests(config.rate_limit, retry)
                    return self._finish(req, account, template, resp, started, None)
            fault = self._take_fault(req, account)
        if fault is not None:
            if fault.kind == "slow":
                time.sleep(fault.delay_ms / 1000.0)
            elif fault.kind == "drop":
                return self._finish(req, account, template, Response.dropped(), started, fault)
            elif fault.kind == "status":
                resp = self.error_response(fault.status or 500, fault.message)
                return self._finish(req, account, template, resp, started, fault)
            elif fault.kind == "rate_limit":
                resp = self.too_many_requests(config.rate_limit, fault.retry_after)
                return self._finish(req, account, template, resp, started, fault)
        assert route is not None
        with self.lock:
            resp = self._run(route, req, params, account, token, config)
            limit = config.rate_limit
            if account is not None and route.public is None and limit is not None:
                remaining, reset = self._rate_state(account, limit, time.monotonic())
                resp.headers.extend(self.rate_headers(limit, remaining, reset))
        if fault is not None and fault.kind == "drop_after":
            resp = Response.dropped()
        elif fault is not None and fault.kind == "malformed" and resp.status < 300:
            resp.body = self.malformed_body() if fault.message is None else fault.message.encode()
        return self._finish(req, account, template, resp, started, fault)

    def _run(
        self,
        route: Route[A],
        req: Request,
        params: dict[str, str],
        account: A | None,
        token: str | None,
        config: Config,
    ) -> Response:
        try:
            if route.public is not None:
                return route.public(req)
            if account is None or token is None or route.func is None:
                return self.auth_error("missing", None)
            return route.func(Ctx(req, params, account, token, time.monotonic(), config))
        except ApiError as exc:
            return Response.json(exc.status, exc.payload, exc.headers)
        except BadRequestBody as exc:
            return self.bad_body_response(str(exc))
        except Exception as exc:
            return self.record_internal_error(req, exc)

    def _finish(
        self,
        req: Request,
        account: A | None,
        template: str,
        resp: Response,
        started: float,
        fault: FaultRule | None,
    ) -> Response:
        if account is not None:
            with self.lock:
                account.requests[template] += 1
                status_key = "dropped" if resp.drop else str(resp.status)
                account.status_counts[status_key] += 1
                account.request_log.append(
                    {
                        "time": iso_millis_z(utcnow()),
                        "method": req.method,
                        "path": req.path,
                        "template": template.split(" ", 1)[1],
                        "query": self._redacted_query(req),
                        "status": None if resp.drop else resp.status,
                        "fault": fault.kind if fault else None,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                        "headers": self._redacted_headers(req),
                        "body": self._logged_body(req),
                    }
                )
        return resp

    def _redacted_headers(self, req: Request) -> dict[str, str]:
        return {
            k: (REDACTED if k in self.credential_headers else v) for k, v in req.headers.items()
        }

    def _redacted_query(self, req: Request) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {}
        for key, values in req.query.items():
            shown = [REDACTED if key in self.credential_query else v for v in values]
            out[key] = shown[0] if len(shown) == 1 else shown
        return out

    def _logged_body(self, req: Request) -> Any:
        if not req.body:
            return None
        ctype = (req.header("content-type") or "").lower()
        if "x-www-form-urlencoded" in ctype:
            try:
                form = req.form()
            except BadRequestBody:
                return req.body.decode("utf-8", "replace")
            return {
                k: (REDACTED if k in self.credential_body_fields else v) for k, v in form.items()
            }
        try:
            return json.loads(req.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return req.body.decode("utf-8", "replace")


# --------------------------------------------------------------------------- HTTP server


class _Handler(BaseHTTPRequestHandler):
    """Turns HTTP/1.1 requests into :class:`Request` objects for the server's app."""

    protocol_version = "HTTP/1.1"
    server: SandboxHTTPServer
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    #: Buffer writes so headers and body leave in one segment (no Nagle/delayed-ACK stall).
    wbufsize = 64 * 1024

    def setup(self) -> None:
        """Disable Nagle on the connection, then set up the streams."""
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the account request log records API traffic."""
        log.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError:
            self.send_error(400, "bad request body")
            return
        req = Request(
            method=self.command,
            raw_path=split.path or "/",
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            client=self.client_address[0],
        )
        try:
            resp = self.server.app.handle(req)
        except Exception as exc:
            resp = self.server.app.record_internal_error(req, exc)
        if resp.drop:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for key, value in resp.headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def __getattr__(self, name: str) -> Any:
        """Every other method (OPTIONS, TRACE, anything) goes to the app too, which answers
        the vendor's JSON 405 instead of the stdlib's HTML 501."""
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, header too long, bad body framing) in the
        vendor's JSON error shape, never the stdlib's HTML page."""
        try:
            resp = self.server.app.error_response(code, message)
        except Exception:
            resp = Response.json(code, {"error": message or "error"})
        self.log_error("code %d, message %s", code, message)
        # A request line the stdlib could not parse leaves it in HTTP/0.9 mode, where it would
        # send a bare body without status line and headers; answer as HTTP/1.1 instead.
        self.request_version = self.protocol_version
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.close_connection = True
        body = b"" if code < 200 or code in (204, 304) else resp.body
        if body:
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to one vendor app; tracks connections to close on stop."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: VendorApp[Any]) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it in a thread."""
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection and close it."""
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up are normal here; anything else goes to the log."""
        log.debug("sandbox %s: connection error from %s", self.app.vendor, client_address)

    def close_connections(self) -> None:
        """Shut down every open keep-alive connection (their threads then end)."""
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def json_bool(value: str | None) -> bool | None:
    """``true``/``1`` -> True, ``false``/``0`` -> False, None -> None (query flags)."""
    if value is None:
        return None
    return value.strip().lower() in ("1", "true", "yes")
