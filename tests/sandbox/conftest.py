"""Fixtures: one Sandbox for the whole session, reset after every test; httpx clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import TLS
from tests.sandbox import auth_kwargs, new_token


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """All three fakes on free loopback ports."""
    with Sandbox() as sb:
        yield sb


@pytest.fixture(autouse=True)
def _reset_sandbox(sandbox: Sandbox) -> Iterator[None]:
    """Reset after every test, and fail the test if a handler raised an unexpected exception
    (the fakes answer those with a JSON 500, which a test could otherwise take for a fault)."""
    yield
    errors = sorted(
        {
            f"{vendor} {e['method']} {e['path']}: {e['error']}\n{e['traceback']}"
            for vendor, app in sandbox.apps.items()
            for e in app.internal_errors
        }
    )
    sandbox.reset()
    assert not errors, "sandbox handlers raised:\n" + "\n".join(errors[:5])


@pytest.fixture
def token() -> str:
    """A fresh ``sbx_`` credential (its account is created on first use)."""
    return new_token()


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[Callable[..., httpx.Client]]:
    """Factory: ``client(vendor, token=None)`` -> httpx.Client (closed after the test)."""
    made: list[httpx.Client] = []

    def make(vendor: str, token: str | None = None, **kwargs: Any) -> httpx.Client:
        options: dict[str, Any] = {"base_url": sandbox.urls[vendor], "timeout": 5.0, "verify": TLS}
        if token is not None:
            options.update(auth_kwargs(vendor, token))
        options.update(kwargs)
        c = httpx.Client(**options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def hs(client: Callable[..., httpx.Client], token: str) -> httpx.Client:
    """HubSpot client for a fresh account."""
    return client("hubspot", token)


@pytest.fixture
def pd(client: Callable[..., httpx.Client], token: str) -> httpx.Client:
    """Pipedrive client for a fresh account."""
    return client("pipedrive", token)


@pytest.fixture
def cl(client: Callable[..., httpx.Client], token: str) -> httpx.Client:
    """Close client for a fresh account."""
    return client("close", token)
