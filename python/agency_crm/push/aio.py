"""push drain's HTTP client: the part of httpx.AsyncClient that CrmHttp.call uses, sent
through aiohttp.

Measured on this project's 2-core machine against a local server: httpx cost about 1.3 ms of
CPU per request (2.7 ms with 16 connections in its pool), httpx over aiohttp's transport
0.5 ms, aiohttp alone 0.15-0.19 ms. push drain makes every CRM call through this client; the
CLI's checks and the HTTP API keep httpx. Failures surface as httpx's exceptions, each
chained to the aiohttp error it came from (CrmHttp.call classifies by that).
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx

from agency_crm import __version__

USER_AGENT = f"agency-crm/{__version__}"


class AioResponse:
    """A whole response, read: what CrmHttp.call reads of an httpx.Response."""

    __slots__ = ("headers", "status_code", "text")

    def __init__(self, status_code: int, headers: Mapping[str, str], text: str) -> None:
        self.status_code = status_code
        self.headers = headers
        self.text = text

    def json(self) -> Any:
        return json.loads(self.text)


class AioClient:
    """Keep-alive connections to one CRM for ``connections`` calls at once, every phase of a
    call (waiting for a connection, connecting, each read) bounded by ``timeout`` seconds,
    as httpx.Timeout(timeout) bounds them. Proxies come from the environment (HTTPS_PROXY,
    HTTP_PROXY, ALL_PROXY, NO_PROXY), as httpx takes them: read once, when the client is made
    (aiohttp's own trust_env reads the environment and ~/.netrc again on every request, in
    a thread: a tenth of the drain's CPU). Open it in the event loop that uses it; close it
    with aclose()."""

    def __init__(self, timeout: float, connections: int, tls: ssl.SSLContext) -> None:
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        self.connections = connections
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._proxies = urllib.request.getproxies_environment()
        self._proxy_for: dict[tuple[str, str], str | None] = {}

    def proxy(self, url: str) -> str | None:
        """The proxy the environment names for ``url`` (None: straight to the CRM)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._proxy_for:
            proxy = self._proxies.get(parts.scheme) or self._proxies.get("all")
            if proxy and urllib.request.proxy_bypass(parts.hostname or ""):  # NO_PROXY
                proxy = None
            self._proxy_for[key] = proxy
        return self._proxy_for[key]

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, ssl=self.tls),
                timeout=self.timeout,
                headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AioResponse:
        """Send one request and read its whole answer (redirects are not followed)."""
        sent_headers = dict(headers or {})
        body: bytes | Mapping[str, str] | None = data
        if json is not None:
            # As httpx encodes a JSON body: compact, UTF-8, NaN refused.
            body = _dumps(json).encode()
            sent_headers["Content-Type"] = "application/json"
        try:
            async with self.session().request(
                method,
                url,
                params=params,
                data=body,
                headers=sent_headers,
                allow_redirects=False,
                proxy=self.proxy(url) if self._proxies else None,
            ) as response:
                raw = await response.read()
                try:
                    text = raw.decode(response.charset or "utf-8", errors="replace")
                except LookupError:  # a charset Python does not know
                    text = raw.decode("utf-8", errors="replace")
                return AioResponse(response.status, response.headers, text)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
