"""Tests of the CRM sandbox (fake HubSpot, Pipedrive and Close servers) over real HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def new_token() -> str:
    """A fresh auto-provisioning credential."""
    return f"sbx_test_{uuid.uuid4().hex}"


def auth_kwargs(vendor: str, token: str) -> dict[str, Any]:
    """httpx.Client keyword arguments that authenticate as ``token`` with ``vendor``."""
    if vendor == "hubspot":
        return {"headers": {"Authorization": f"Bearer {token}"}}
    if vendor == "pipedrive":
        return {"headers": {"x-api-token": token}}
    return {"auth": (token, "")}


def base(c: httpx.Client) -> str:
    """The client's base URL without a trailing slash."""
    return str(c.base_url).rstrip("/")


def state(c: httpx.Client, token: str) -> dict[str, Any]:
    """``GET /_sandbox/state?token=`` of the client's server."""
    r = c.get("/_sandbox/state", params={"token": token})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def post_admin(c: httpx.Client, path: str, body: Any) -> httpx.Response:
    """POST to an admin endpoint of the client's server (admin endpoints ignore credentials)."""
    return c.post(path, json=body)


def add_faults(c: httpx.Client, *faults: dict[str, Any]) -> None:
    """Append fault rules on the client's server."""
    r = post_admin(c, "/_sandbox/faults", {"faults": list(faults)})
    assert r.status_code == 201, r.text


def configure(c: httpx.Client, **body: Any) -> dict[str, Any]:
    """``POST /_sandbox/config`` on the client's server."""
    r = post_admin(c, "/_sandbox/config", body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out
