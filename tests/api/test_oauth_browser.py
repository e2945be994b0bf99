"""The HubSpot OAuth flow in a real headless Chromium: the connect URL, the sandbox HubSpot's
consent page, the API's callback page; and each way a flow is refused (declined, a state
used twice, expired, or not the one issued). Screenshots of the consent page and of each
outcome are saved under the test's tmp directory."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agency_crm.crypto import is_envelope
from tests.api.conftest import Api, Tenant
from tests.api.test_connect import configs, start_hubspot
from tests.helpers.browser import Browser
from tests.helpers.fixtures import unseal

CALLBACK = "/api/v1/crm/callback/hubspot"


def consent_in(browser: Browser, api: Api, url: str, button: str, shots: Path) -> str:
    """Open the authorisation URL, answer the consent page; the outcome the callback shows."""
    browser.open(url)
    assert browser.text("#consent-title").startswith("Connect app")
    browser.screenshot(shots / "consent.png")
    browser.click(button)
    browser.wait_for_url(lambda u: u.startswith(api.url + CALLBACK))
    return browser.text("#outcome")


def test_consenting_connects_hubspot(
    browser: Browser, api: Api, tenant: Callable[..., Tenant], tmp_path: Path
) -> None:
    a = tenant()
    url, query = start_hubspot(api, a)
    assert consent_in(browser, api, url, "#consent-approve", tmp_path) == "Connected"
    browser.screenshot(tmp_path / "connected.png")
    [config] = configs(api, a.row["id"])
    assert (config["crm_type"], config["connection_status"], config["is_active"]) == (
        "hubspot",
        "connected",
        True,
    )
    assert config["hubspot_portal_id"] and config["oauth_expires_at"]
    for column in ("oauth_access_token", "oauth_refresh_token"):
        assert is_envelope(config[column]), column
        assert unseal(a.row["id"], column, config[column])
    # Back to the same callback (a reload, the back button): the state was used.
    callback = browser.current_url
    assert query["state"] in callback
    browser.open(callback)
    assert browser.text("#outcome") == "Not connected: the OAuth state was already used"
    browser.screenshot(tmp_path / "reused.png")
    assert [c["id"] for c in configs(api, a.row["id"])] == [config["id"]]
    assert browser.requests_outside_loopback() == []


def test_declining_is_reported(
    browser: Browser, api: Api, tenant: Callable[..., Tenant], tmp_path: Path
) -> None:
    a = tenant()
    url, _ = start_hubspot(api, a)
    outcome = consent_in(browser, api, url, "#consent-deny", tmp_path)
    browser.screenshot(tmp_path / "declined.png")
    assert outcome.startswith("Not connected: HubSpot did not grant access: access_denied")
    assert browser.text("#code") == "oauth_denied"
    assert configs(api, a.row["id"]) == []


def test_an_expired_or_unknown_state_is_refused(
    browser: Browser, api: Api, tenant: Callable[..., Tenant], tmp_path: Path
) -> None:
    a = tenant()
    url, query = start_hubspot(api, a)
    api.rows(
        "UPDATE crm_private.oauth_states SET created_at = now() - interval '11 minutes',"
        " expires_at = now() - interval '1 minute' WHERE state_hash = %s RETURNING id",
        hashlib.sha256(query["state"].encode()).digest(),
    )
    outcome = consent_in(browser, api, url, "#consent-approve", tmp_path)
    browser.screenshot(tmp_path / "expired.png")
    assert outcome == "Not connected: the OAuth state has expired (a flow has ten minutes)"
    # A state that is not the one issued (changed on the way): unknown.
    url, query = start_hubspot(api, a)
    forged = url.replace(query["state"], query["state"][:-4] + "AAAA")
    outcome = consent_in(browser, api, forged, "#consent-approve", tmp_path)
    browser.screenshot(tmp_path / "unknown.png")
    assert outcome.startswith("Not connected: the OAuth state is unknown")
    assert configs(api, a.row["id"]) == []
    shots: list[Any] = sorted(p.name for p in tmp_path.iterdir())
    assert shots == ["consent.png", "expired.png", "unknown.png"]
