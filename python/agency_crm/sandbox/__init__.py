"""CRM sandbox: fake HubSpot, Pipedrive and Close HTTP servers for tests and local runs.

Usage::

    from agency_crm.sandbox import Sandbox

    with Sandbox(hubspot_port=0, pipedrive_port=0, close_port=0) as sb:
        sb.urls["hubspot"]          # "http://127.0.0.1:PORT"
        acct = sb.admin("hubspot").create_account()
        ...

Each vendor runs its own :class:`~http.server.ThreadingHTTPServer` (HTTP/1.1, keep-alive) in
a daemon thread on loopback. Every server also answers the admin API under ``/_sandbox/``
(accounts, state, faults, config, reset); ``sb.admin(vendor)`` offers the same operations
in-process. :mod:`agency_crm.sandbox.core` describes the steps every API request goes
through (auth, latency, rate limit, faults, handler).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from agency_crm.sandbox.close import CloseApp
from agency_crm.sandbox.core import Config, RateLimit, SandboxHTTPServer, VendorApp
from agency_crm.sandbox.hubspot import HubSpotApp
from agency_crm.sandbox.pipedrive import PipedriveApp

__all__ = [
    "VENDORS",
    "CloseApp",
    "HubSpotApp",
    "PipedriveApp",
    "RateLimit",
    "Sandbox",
]

#: Vendor names, in start order.
VENDORS = ("hubspot", "pipedrive", "close")
_APPS: dict[str, type[VendorApp[Any]]] = {
    "hubspot": HubSpotApp,
    "pipedrive": PipedriveApp,
    "close": CloseApp,
}


class Sandbox:
    """The three fake CRMs, started and stopped together.

    ``latency_ms`` and ``search_lag_ms`` set the server-wide defaults of all three;
    ``rate_limit`` (if given) replaces every vendor's default rate limit. Port 0 picks a free
    port; :attr:`urls` tells which.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        hubspot_port: int = 0,
        pipedrive_port: int = 0,
        close_port: int = 0,
        *,
        latency_ms: float = 0.0,
        rate_limit: RateLimit | None = None,
        search_lag_ms: float = 0.0,
    ) -> None:
        self.host = host
        self.ports = {"hubspot": hubspot_port, "pipedrive": pipedrive_port, "close": close_port}
        self.apps: dict[str, VendorApp[Any]] = {
            vendor: cls(
                Config(
                    latency_ms=latency_ms,
                    rate_limit=rate_limit or cls.default_rate_limit,
                    search_lag_ms=search_lag_ms,
                )
            )
            for vendor, cls in _APPS.items()
        }
        self._servers: dict[str, SandboxHTTPServer] = {}
        self._threads: list[threading.Thread] = []

    @property
    def urls(self) -> dict[str, str]:
        """Base URL of each running server (``http://host:port``)."""
        out = {}
        for vendor, server in self._servers.items():
            host, port = server.server_address[:2]
            shown = host if isinstance(host, str) else host.decode()
            if ":" in shown:
                shown = f"[{shown}]"
            out[vendor] = f"http://{shown}:{port}"
        return out

    def admin(self, vendor: str) -> VendorApp[Any]:
        """The vendor app; its methods are the admin API in-process.

        ``create_account(token=None, **options)``, ``state(token=None, account_id=None)``,
        ``set_revoked(token, bool)``, ``add_faults([...])``, ``clear_faults()``,
        ``configure(token=None, account=None, **knobs)``, ``reset()``.
        """
        try:
            return self.apps[vendor]
        except KeyError:
            raise ValueError(f"unknown vendor {vendor!r}; one of {', '.join(VENDORS)}") from None

    def start(self) -> Sandbox:
        """Bind all three servers and serve each from a daemon thread."""
        if self._servers:
            return self
        try:
            for vendor in VENDORS:
                address = (self.host, self.ports[vendor])
                try:
                    server = SandboxHTTPServer(address, self.apps[vendor])
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"cannot bind {vendor} to {address[0]}:{address[1]}: {exc.strerror or exc}",
                    ) from exc
                self._servers[vendor] = server
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name=f"sandbox-{vendor}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the ports."""
        for server in self._servers.values():
            server.shutdown()
            server.close_connections()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def reset(self) -> None:
        """Forget all accounts, faults and config changes on all three servers."""
        for app in self.apps.values():
            app.reset()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
