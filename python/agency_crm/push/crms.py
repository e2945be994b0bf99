"""The CRMs agency-crm pushes into, by ``client_crm_configs.crm_type``."""

from __future__ import annotations

import asyncio
import ssl
from functools import cache
from typing import TYPE_CHECKING

import httpx

from agency_crm.push.close import Close
from agency_crm.push.connection import Connection
from agency_crm.push.hubspot import HubSpot
from agency_crm.push.model import Config
from agency_crm.push.pipedrive import Pipedrive
from agency_crm.push.settings import Settings
from agency_crm.push.store import Store

if TYPE_CHECKING:
    from agency_crm.push.aio import AioClient

CONNECTIONS: dict[str, type[Connection]] = {
    cls.crm_type: cls for cls in (HubSpot, Pipedrive, Close)
}


def connect(
    config: Config,
    client: httpx.AsyncClient | AioClient,
    settings: Settings,
    store: Store,
    slots: asyncio.Semaphore,
) -> Connection:
    """The connection to a config's CRM (no call is made until one is needed)."""
    return CONNECTIONS[config.crm_type](config, client, settings, store, slots)


@cache
def tls_context() -> ssl.SSLContext:
    """The TLS settings of every CRM call: certificates verified against certifi's bundle,
    loaded once per process (loading it costs about 50 ms of CPU)."""
    return httpx.create_ssl_context()


def http_client(settings: Settings, concurrency: int = 4) -> httpx.AsyncClient:
    """The HTTP client of the CLI's checks and the HTTP API: the timeout of every CRM call
    and keep-alive connections for ``concurrency`` calls at once."""
    limits = httpx.Limits(
        max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout), limits=limits, verify=tls_context()
    )


def drain_client(settings: Settings, concurrency: int = 4) -> AioClient:
    """push drain's HTTP client for one lane (agency_crm.push.aio): the same timeout and
    connections as http_client(), at a fraction of its CPU per call."""
    from agency_crm.push.aio import AioClient

    return AioClient(settings.http_timeout, concurrency * 2, tls_context())
