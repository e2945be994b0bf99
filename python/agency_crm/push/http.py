"""One CRM call: rate limit, concurrency bound, timing, error classification and audit record."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

import httpx

from agency_crm.push import crashpoints
from agency_crm.push.model import CallRecord, IdWrite, LogStatus, Outcome

if TYPE_CHECKING:
    from agency_crm.push.aio import AioResponse
    from agency_crm.push.connection import Connection

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}


class CrmError(Exception):
    """A CRM call (or a push) that did not succeed, classified by the outcome it asks
    ``crm.finish_push`` to record: retry (try again later), defer (wait without spending an
    attempt), failed (not retryable) or held (credentials refused: hold the client's pushes).
    """

    def __init__(
        self,
        kind: Outcome,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.status = status
        self.retry_after = retry_after

    def describe(self) -> str:
        """One line for last_error."""
        prefix = f"{self.status} " if self.status else ""
        return f"{prefix}{self.code}: {self.message}"


@dataclass
class Response:
    """A CRM response the caller accepted (2xx, or a status it allowed such as 404)."""

    status: int
    body: Any
    headers: Mapping[str, str]


def retry_after_seconds(headers: Mapping[str, str], body: Any) -> float | None:
    """Seconds to wait from Retry-After (seconds or HTTP date), or Close's rate_reset: never
    negative (a past time means now), and None where the value is no number of seconds
    (NaN, which Python's JSON reads from a body, included)."""
    value = headers.get("retry-after")
    if value:
        try:
            return _wait(float(value))
        except ValueError:
            try:
                return _wait(parsedate_to_datetime(value).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        reset = body["error"].get("rate_reset")
        if isinstance(reset, int | float) and not isinstance(reset, bool):
            return _wait(float(reset))
    return None


def _wait(seconds: float) -> float | None:
    return None if math.isnan(seconds) else max(0.0, seconds)


def error_message(body: Any, text: str) -> str:
    """The vendor's error text: HubSpot message, Pipedrive error, Close error/field-errors."""
    if isinstance(body, dict):
        for key in ("message", "error", "error_info", "errors", "field-errors"):
            value = body.get(key)
            if value:
                if isinstance(value, dict):
                    value = value.get("message") or json.dumps(value, sort_keys=True)
                elif not isinstance(value, str):
                    value = json.dumps(value, sort_keys=True)
                return str(value)[:500]
    return text[:500] or "no response body"


def transport_failure(failure: BaseException | None) -> tuple[str, str]:
    """The error code (timeout or connection_error) and the name of the failure of a call
    that got no response. push drain's client (agency_crm.push.aio) raises httpx exceptions
    chained to aiohttp's: the aiohttp error they came from decides."""
    cause = failure.__cause__ if failure is not None else None
    if cause is not None and type(cause).__module__.startswith("aiohttp"):
        code = "timeout" if isinstance(cause, TimeoutError) else "connection_error"
        return code, type(cause).__name__
    code = "timeout" if isinstance(failure, httpx.TimeoutException) else "connection_error"
    return code, type(failure).__name__


class CrmHttp:
    """The calls of one push (or one check) through a connection: every call passes the
    connection's rate limiter and the run's concurrency bound, and leaves a redacted
    CallRecord in ``records``."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.redactor = connection.redactor
        self.records: list[CallRecord] = []
        # CRM ids learnt and not yet written, by (entity type, key): the push's next
        # statement writes them (Ids.record).
        self.ids: dict[tuple[str, str], IdWrite] = {}
        self._started_at = datetime.now(UTC)
        self.calls = 0
        self.rate_limited = 0

    def take_records(self) -> list[CallRecord]:
        """The records not yet written, handed over to be written."""
        records, self.records = self.records, []
        return records

    def take_ids(self) -> list[IdWrite]:
        """The CRM ids not yet written, handed over to be written."""
        ids, self.ids = list(self.ids.values()), {}
        return ids

    async def call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        form: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
        authenticated: bool = True,
    ) -> Response:
        """Send one request; return the accepted response or raise CrmError."""
        conn = self.connection
        url = conn.base_url + path
        headers = await conn.headers(self) if authenticated else {}
        request_payload: dict[str, Any] = {"method": method, "path": path}
        if params:
            request_payload["query"] = dict(params)
        if json_body is not None:
            request_payload["body"] = json_body
        if form is not None:
            request_payload["body"] = dict(form)
        request_payload = self.redactor.value(request_payload)

        await conn.limiter.acquire()
        self._started_at = datetime.now(UTC)
        response: httpx.Response | AioResponse | None = None
        failure: BaseException | None = None
        start = time.perf_counter()
        try:
            async with conn.slots:
                start = time.perf_counter()
                if method != "GET":
                    crashpoints.arm_send()
                response = await conn.client.request(
                    method,
                    url,
                    json=json_body,
                    params=params,
                    data=form,
                    headers=headers,
                )
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            failure = exc
        finally:
            duration_ms = int((time.perf_counter() - start) * 1000)
            self.calls += 1
            if response is None:
                await conn.limiter.release(None)
        assert response is not None or failure is not None

        if response is None:
            code, name = transport_failure(failure)
            message = f"{name}: {failure}" if str(failure) else name
            message = self.redactor.text(message)
            self._record(
                operation, LogStatus.FAILED, request_payload, None, None, code, message, duration_ms
            )
            raise CrmError(Outcome.RETRY, code, message)

        text = response.text
        body: Any = None
        malformed = False
        try:
            body = response.json() if text.strip() else None
        except ValueError:
            malformed = True
        status = response.status_code
        retry_after = retry_after_seconds(response.headers, body) if status == 429 else None
        await conn.limiter.release(response.headers, retry_after)
        kept_headers = {
            k: v
            for k, v in response.headers.items()
            if "ratelimit" in k.lower() or k.lower() == "retry-after"
        }
        # Secrets the CRM echoes are masked before anything is cut to length or written out as
        # JSON: a cut secret, or one JSON-escaped, no longer matches the secret to mask.
        redacted_text = self.redactor.text(text)
        redacted_body: Any = (
            {"unparsed_body": redacted_text[:2000]} if malformed else self.redactor.value(body)
        )
        response_payload: Any = redacted_body
        if kept_headers:
            response_payload = {"body": response_payload, "headers": kept_headers}

        if 200 <= status < 300 and not malformed:
            if method != "GET":
                crashpoints.reached("after_2xx")
            self._record(
                operation,
                LogStatus.SUCCESS,
                request_payload,
                response_payload,
                status,
                None,
                None,
                duration_ms,
            )
            return Response(status, body, response.headers)
        if status in allow and not malformed:
            code = ERROR_CODES.get(status, f"http_{status}")
            self._record(
                operation,
                LogStatus.SUCCESS,
                request_payload,
                response_payload,
                status,
                code,
                None,
                duration_ms,
            )
            return Response(status, body, response.headers)

        message = error_message(redacted_body, redacted_text)
        if malformed:
            code = "malformed_response"
            kind = Outcome.RETRY
            message = f"response is not JSON: {redacted_text[:200]!r}"
        elif status == 401:
            code, kind = "unauthorized", Outcome.HELD
        elif status in RETRYABLE_STATUS:
            code = "rate_limited" if status == 429 else ERROR_CODES.get(status, "server_error")
            kind = Outcome.RETRY
            if status == 429:
                self.rate_limited += 1
                if retry_after is not None:
                    # The CRM did no work and said when to come back: the push waits until
                    # then without spending an attempt (several drainers sharing a client's
                    # limit must not run its pushes out of attempts).
                    kind = Outcome.DEFER
        else:
            code, kind = ERROR_CODES.get(status, f"http_{status}"), Outcome.FAILED
        self._record(
            operation,
            LogStatus.FAILED,
            request_payload,
            response_payload,
            status,
            code,
            message,
            duration_ms,
        )
        raise CrmError(kind, code, message, status=status, retry_after=retry_after)

    def _record(
        self,
        operation: str,
        status: LogStatus,
        request_payload: dict[str, Any],
        response_payload: Any,
        http_status: int | None,
        error_code: str | None,
        error_message_: str | None,
        duration_ms: int,
    ) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            # Method and path from the redacted request: a secret never reaches the log.
            logger.debug(
                "%s %s %s %s -> %s in %d ms",
                self.connection.config.crm_type,
                operation,
                request_payload.get("method"),
                request_payload.get("path"),
                http_status or error_code,
                duration_ms,
            )
        self.records.append(
            CallRecord(
                operation=operation,
                status=status,
                request_payload=request_payload,
                response_payload=response_payload,
                http_status=http_status,
                error_code=error_code,
                error_message=error_message_,
                duration_ms=duration_ms,
                at=self._started_at,
            )
        )

    def tag_last(self, **ids: str | None) -> None:
        """Put CRM ids learned from the last call onto its audit record."""
        if self.records:
            for name, value in ids.items():
                if value is not None:
                    setattr(self.records[-1], name, value)
