"""A secret a CRM echoes in its answer is masked before anything is cut to length or
re-encoded: no part of it reaches the audit record or the error a push fails with."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import Config
from agency_crm.push.pipedrive import Pipedrive
from agency_crm.push.redact import REDACTED, Redactor
from agency_crm.push.settings import Settings

# Its distinctive start shows a copy cut short; the space and '+/=' make its encodings
# differ from it.
SECRET = "canary-unit-5f2b9c1e77a4 +/=9d0e"
FILLER = "the request could not be processed as sent; " * 60


def around(at: int, secret: str = SECRET) -> str:
    """Text echoing ``secret`` at offset ``at``."""
    return FILLER[:at] + secret + " " + FILLER


def pipedrive_config(secret: str) -> Config:
    return Config(
        id=uuid.uuid4(),
        client_id=uuid.uuid4(),
        client_name="Echo",
        crm_type="pipedrive",
        api_key=secret,
        oauth_access_token=None,
        oauth_refresh_token=None,
        oauth_expires_at=None,
        pipeline_id=None,
        stage_id=None,
        owner_id=None,
        api_base_url="https://crm.invalid",
        stage_map={},
        external_key_fields={},
    )


def failed_call(answer: httpx.Response, secret: str = SECRET) -> tuple[CrmError, str]:
    """One call through a Pipedrive connection whose key is ``secret``, answered ``answer``:
    the error it raised, and everything its audit record holds, as text."""

    def handler(_request: httpx.Request) -> httpx.Response:
        return answer

    config = pipedrive_config(secret)

    async def call() -> tuple[CrmError, CrmHttp]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            store: Any = None  # a Pipedrive call never touches the database
            connection = Pipedrive(config, client, Settings(), store, asyncio.Semaphore(1))
            http = connection.calls()
            with pytest.raises(CrmError) as info:
                await http.call("update_deal", "PATCH", "/api/v2/deals/1", json_body={})
            return info.value, http

    error, http = asyncio.run(call())
    [record] = http.take_records()
    recorded = json.dumps(
        [record.error_message, record.request_payload, record.response_payload], default=str
    )
    return error, f"{error.describe()}\n{recorded}"


Answer = Callable[[], httpx.Response]
ANSWERS: dict[str, Answer] = {
    # Messages are cut at 500 characters: an echo at 480 was cut, then no longer matched.
    "error message cut at 500": lambda: httpx.Response(500, json={"error": around(480)}),
    "validation errors cut at 500": lambda: httpx.Response(
        400, json={"errors": [around(470)], "field-errors": {}}
    ),
    # An answer that is not JSON: 200 characters in the message, 2000 in the audit row.
    "not JSON, cut at 200": lambda: httpx.Response(200, text="<html>" + around(175)),
    "not JSON, cut at 2000": lambda: httpx.Response(
        503, text=("<html>" + FILLER * 2)[:1985] + SECRET + "</html>"
    ),
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=list(ANSWERS))
def test_an_echoed_secret_cut_at_a_length_limit_leaves_no_part_behind(answer: Answer) -> None:
    error, recorded = failed_call(answer())
    assert "canary-unit" not in recorded, recorded
    assert REDACTED in recorded and error.message


def test_an_echoed_secret_json_encodes_to_is_masked_too() -> None:
    """A message made of a JSON list or object is written out as JSON: a secret with a quote
    or a backslash is escaped there, and must be masked before it is."""
    secret = 'pd-key"with\\quote-7c41e0b2'
    answer = httpx.Response(400, json={"errors": [f"bad token {secret}"], "field-errors": {}})
    error, recorded = failed_call(answer, secret)
    assert "with" not in recorded and "7c41e0b2" not in recorded, recorded
    assert error.status == 400 and REDACTED in error.message


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s,
        quote,  # a path: '/' kept
        lambda s: quote(s, safe=""),
        quote_plus,  # a query value or a form field
        lambda s: base64.b64encode(s.encode()).decode(),
        lambda s: base64.b64encode(f"{s}:".encode()).decode(),  # HTTP basic, Close
        lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
        lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),  # JWT-style
        lambda s: base64.urlsafe_b64encode(f"{s}:".encode()).decode().rstrip("="),
    ],
    ids=[
        "raw",
        "quote",
        "quote-safe-none",
        "quote_plus",
        "base64",
        "basic",
        "base64url",
        "base64url-unpadded",
        "basic-base64url-unpadded",
    ],
)
# The second one's base64 holds '+' and '/', which base64url writes otherwise.
@pytest.mark.parametrize("secret", [SECRET, "canary-unit-??~~??~~"])
def test_every_form_a_secret_travels_in_is_masked(
    encode: Callable[[str], str], secret: str
) -> None:
    redactor = Redactor([secret])
    echoed = {"message": f"GET /oauth/v1/access-tokens/{encode(secret)} refused"}
    assert redactor.value(echoed) == {"message": f"GET /oauth/v1/access-tokens/{REDACTED} refused"}


def test_a_config_shows_no_secret_when_printed() -> None:
    config = pipedrive_config(SECRET)
    config.oauth_access_token = config.oauth_refresh_token = SECRET
    assert "canary-unit" not in repr(config) and "canary-unit" not in str(config)
    assert "client_name='Echo'" in repr(config)
