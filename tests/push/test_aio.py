"""push drain's HTTP client (agency_crm.push.aio) over real loopback sockets: it sends what
httpx would send, and every way a call can go wrong surfaces as the httpx failure CrmHttp
classifies (the end-to-end faults against the fake CRMs are in test_faults.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agency_crm.push.aio import USER_AGENT, AioClient
from agency_crm.push.http import transport_failure

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """The request line, headers (lower-case names) and body of one HTTP/1.1 request."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        if field:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


async def answer(
    writer: asyncio.StreamWriter, body: bytes, content_type: str = "application/json"
) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode()
        + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip
    await writer.drain()
    writer.close()


async def serve(handler: Handler, call: Callable[[str], Awaitable[Any]]) -> Any:
    """Run ``call`` with the URL of a loopback server whose every connection ``handler``
    takes."""

    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:  # also when the run ends with the handler still waiting
            writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await call(f"http://127.0.0.1:{port}")
    finally:
        server.close()


def client(timeout: float = 5.0) -> AioClient:
    return AioClient(timeout, 4, ssl.create_default_context())


def test_a_json_request_is_sent_as_httpx_sends_it() -> None:
    seen: list[tuple[str, dict[str, str], bytes]] = []
    payload = {"name": "Zoë «Acme»", "value": 12.5, "tags": [None, True], "nested": {"a": 1}}
    params: dict[str, str | int] = {"term": "Acme & Co+1 é/x", "limit": 2}

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        await answer(writer, b'{"ok": true}')

    async def call(url: str) -> Any:
        http = client()
        try:
            return await http.request(
                "POST", url + "/v1/deals", json=payload, params=params, headers={"X-Key": "k"}
            )
        finally:
            await http.aclose()

    response = asyncio.run(serve(handler, call))
    assert (response.status_code, response.json()) == (200, {"ok": True})
    [(line, headers, body)] = seen
    method, target, _ = line.split(" ")
    expected = httpx.Request("POST", "http://x/v1/deals", json=payload)
    assert method == "POST" and urlsplit(target).path == "/v1/deals"
    assert body == expected.content  # byte for byte, as httpx encodes JSON
    assert headers["content-type"] == "application/json"
    assert headers["x-key"] == "k" and headers["user-agent"] == USER_AGENT
    assert parse_qs(urlsplit(target).query) == {"term": ["Acme & Co+1 é/x"], "limit": ["2"]}


def test_a_body_that_is_not_json_is_refused_before_anything_is_sent() -> None:
    seen: list[Any] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        await answer(writer, b"{}")

    async def call(url: str) -> None:
        http = client()
        try:
            with pytest.raises(ValueError, match="JSON compliant"):
                await http.request("POST", url, json={"value": float("nan")})
        finally:
            await http.aclose()

    asyncio.run(serve(handler, call))
    assert seen == []


def test_an_answer_that_is_not_http_is_a_connection_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await writer.drain()
        writer.close()

    async def call(url: str) -> BaseException:
        http = client()
        try:
            with pytest.raises(httpx.TransportError) as caught:
                await http.request("GET", url + "/v1/users")
            return caught.value
        finally:
            await http.aclose()

    failure = asyncio.run(serve(handler, call))
    code, name = transport_failure(failure)
    assert code == "connection_error"
    assert type(failure.__cause__).__module__.startswith("aiohttp")
    assert name != "RemoteProtocolError"  # the name aiohttp gave the failure


def test_a_server_that_never_answers_is_a_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # no answer: until the client gives up and hangs up
        writer.close()

    async def call(url: str) -> BaseException:
        http = client(timeout=0.2)
        try:
            with pytest.raises(httpx.TimeoutException) as caught:
                await http.request("GET", url + "/v1/users")
            return caught.value
        finally:
            await http.aclose()

    failure = asyncio.run(serve(handler, call))
    assert transport_failure(failure)[0] == "timeout"


def test_a_refused_connection_is_a_connection_error() -> None:
    async def call() -> BaseException:
        # A port nothing listens on: bound, then closed.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        http = client()
        try:
            with pytest.raises(httpx.TransportError) as caught:
                await http.request("GET", f"http://127.0.0.1:{port}/")
            return caught.value
        finally:
            await http.aclose()

    failure = asyncio.run(call())
    assert transport_failure(failure)[0] == "connection_error"


def test_an_unknown_charset_is_read_as_utf8() -> None:
    body = json.dumps({"name": "Zoë"}, ensure_ascii=False).encode()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await answer(writer, body, "application/json; charset=x-no-such-charset")

    async def call(url: str) -> Any:
        http = client()
        try:
            return await http.request("GET", url)
        finally:
            await http.aclose()

    response = asyncio.run(serve(handler, call))
    assert response.text == body.decode() and response.json() == {"name": "Zoë"}


def test_a_proxy_named_by_the_environment_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[str] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line, _, _ = await read_request(reader)
        lines.append(line)
        await answer(writer, b"{}")

    async def call(proxy_url: str) -> None:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy_url)
        monkeypatch.setenv("no_proxy", "localhost")
        http = client()  # reads the environment now
        try:
            await http.request("GET", "http://crm.invalid/v1/users", params={"limit": 1})
            with pytest.raises(httpx.TransportError):  # straight to localhost: nothing there
                await http.request("GET", "http://localhost:9/v1/users")
        finally:
            await http.aclose()

    asyncio.run(serve(proxy, call))
    # The proxy got the request in absolute form, for the CRM; not the one for localhost.
    assert lines == ["GET http://crm.invalid/v1/users?limit=1 HTTP/1.1"]
