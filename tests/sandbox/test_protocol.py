"""HTTP-level behaviour shared by the three fakes: unknown methods, HEAD, protocol errors and
unexpected handler exceptions all answer in the vendor's JSON, never the stdlib's HTML."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from agency_crm.sandbox import Sandbox
from agency_crm.sandbox.core import Ctx, Response, Route

Client = Callable[..., httpx.Client]
#: A path every fake serves with GET, per vendor.
KNOWN = {"hubspot": "/crm/v3/owners", "pipedrive": "/v1/users", "close": "/api/v1/user/"}
VENDORS = tuple(KNOWN)


def assert_vendor_error(vendor: str, r: httpx.Response, status: int) -> dict[str, Any]:
    """``r`` is a JSON error of ``vendor``'s shape with ``status``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body: dict[str, Any] = r.json()
    if vendor == "hubspot":
        assert body["status"] == "error" and body["message"] and body["correlationId"]
    elif vendor == "pipedrive":
        assert body["success"] is False and body["error"]
    else:
        assert body.get("error") or body.get("errors") is not None
    return body


def raw_exchange(url: str, payload: bytes) -> bytes:
    """Send raw bytes to the server and read its answer until it closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "PROPFIND", "FOO"])
def test_unknown_methods_get_the_vendors_json_405(
    client: Client, token: str, vendor: str, method: str
) -> None:
    for c in (client(vendor, token), client(vendor)):  # with and without credentials
        r = c.request(method, KNOWN[vendor])
        assert_vendor_error(vendor, r, 405)
        assert "GET" in r.headers["allow"]
        assert_vendor_error(vendor, c.request(method, "/nowhere"), 405)


@pytest.mark.parametrize("vendor", VENDORS)
def test_wrong_method_on_a_known_path_is_405_with_allow(
    client: Client, token: str, vendor: str
) -> None:
    r = client(vendor, token).delete(KNOWN[vendor])
    assert_vendor_error(vendor, r, 405)
    assert r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("vendor", VENDORS)
def test_head_is_served_by_the_get_route(client: Client, token: str, vendor: str) -> None:
    c = client(vendor, token)
    got = c.get(KNOWN[vendor])
    head = c.head(KNOWN[vendor])
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == got.headers["content-length"]


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /x HTTP/9.9\r\nHost: x\r\n\r\n", 505),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ],
)
def test_protocol_errors_are_vendor_json(
    sandbox: Sandbox, vendor: str, payload: bytes, status: int
) -> None:
    answer = raw_exchange(sandbox.urls[vendor], payload)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert b"<html" not in body.lower() and body.strip().startswith(b"{"), body[:200]


@pytest.mark.parametrize("vendor", VENDORS)
def test_unexpected_handler_exception_is_the_vendors_json_500(
    sandbox: Sandbox, client: Client, token: str, vendor: str
) -> None:
    app = sandbox.admin(vendor)

    def boom(ctx: Ctx[Any]) -> Response:
        raise RuntimeError("a bug in the fake")

    route: Route[Any] = Route("GET", "/_test_boom", boom)
    app.routes.append(route)
    try:
        r = client(vendor, token).get("/_test_boom")
    finally:
        app.routes.remove(route)
    body = assert_vendor_error(vendor, r, 500)
    assert "<html" not in r.text.lower() and body
    errors = client(vendor).get("/_sandbox/errors").json()["errors"]
    assert [e["path"] for e in errors] == ["/_test_boom"]
    assert "RuntimeError: a bug in the fake" in errors[0]["error"]
    assert client(vendor).delete("/_sandbox/errors").json() == {"errors": []}
    assert app.internal_errors == type(app.internal_errors)()
