"""Fake HubSpot OAuth install: the consent page, its redirects and the code exchange.

The form is submitted the way a browser does (its fields read from the HTML, the clicked
button's name and value added); a Chromium test clicks the real buttons where a browser and
its driver are installed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from agency_crm.sandbox import Sandbox
from tests.sandbox import state

Client = Callable[..., httpx.Client]
REDIRECT = "https://app.example.test/oauth/callback?from=sandbox"
AUTHORIZE = {
    "client_id": "sbx-client",
    "redirect_uri": REDIRECT,
    "scope": "crm.objects.contacts.write crm.objects.deals.write oauth",
    "state": "st-123",
}


class Form(HTMLParser):
    """The consent form's action, fields, select options and submit buttons, by id."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.options: list[str] = []
        self.buttons: dict[str, tuple[str, str]] = {}  # id -> (name, value)
        self.ids: set[str] = set()
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self.fields[a["name"]] = ""
        elif tag == "option":
            self.options.append(a.get("value", ""))
        elif tag == "button":
            self.buttons[a["id"]] = (a["name"], a["value"])

    def submit(self, button_id: str, **overrides: str) -> dict[str, str]:
        name, value = self.buttons[button_id]
        return {**self.fields, **overrides, name: value}


def consent(c: httpx.Client, **params: str) -> Form:
    r = c.get("/oauth/authorize", params={**AUTHORIZE, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return Form(r.text)


def decide(c: httpx.Client, form: Form, button: str, **overrides: str) -> dict[str, list[str]]:
    """Submit the form with ``button``; the redirect's query."""
    r = c.post(form.action, data=form.submit(button, **overrides))
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith("https://app.example.test/oauth/callback?from=sandbox&")
    return parse_qs(urlsplit(location).query)


def exchange(c: httpx.Client, code: str, /, path: str = "/oauth/v1/token", **override: str) -> Any:
    form = {
        "grant_type": "authorization_code",
        "client_id": "sbx-client",
        "client_secret": "sbx-secret",
        "redirect_uri": REDIRECT,
        "code": code,
        **override,
    }
    return c.post(path, data=form)


def test_page_lists_app_scopes_and_portals(client: Client) -> None:
    c = client("hubspot")
    existing = c.post("/_sandbox/accounts", json={}).json()
    r = c.get("/oauth/authorize", params=AUTHORIZE)
    form = Form(r.text)
    assert {"consent-approve", "consent-deny", "consent-title", "consent-scopes"} <= form.ids
    assert "<title>Connect app sbx-client" in r.text
    for scope in AUTHORIZE["scope"].split():
        assert f"<li>{scope}</li>" in r.text
    assert form.action == "/oauth/authorize"
    assert form.fields["state"] == "st-123" and form.fields["redirect_uri"] == REDIRECT
    assert "" in form.options and str(existing["portal_id"]) in form.options
    assert form.buttons["consent-approve"] == ("decision", "approve")
    assert ">Connect app</button>" in r.text and ">Cancel</button>" in r.text


@pytest.mark.parametrize(
    "params",
    [
        {"client_id": "someone-else"},
        {"client_id": ""},
        {"redirect_uri": ""},
        {"redirect_uri": "not a url"},
        {"redirect_uri": "javascript:alert(1)"},
    ],
)
def test_bad_client_or_redirect_is_an_html_400(client: Client, params: dict[str, str]) -> None:
    c = client("hubspot")
    r = c.get("/oauth/authorize", params={**AUTHORIZE, **params})
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="error-message"' in r.text
    posted = c.post("/oauth/authorize", data={**AUTHORIZE, **params, "decision": "approve"})
    assert posted.status_code == 400 and "location" not in posted.headers


def test_approve_into_a_new_portal_and_exchange_the_code(client: Client) -> None:
    c = client("hubspot")
    query = decide(c, consent(c), "consent-approve")
    assert query["state"] == ["st-123"] and query["from"] == ["sandbox"]
    (code,) = query["code"]
    r = exchange(c, code)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["token_use"] == "access_token"
    assert body["expires_in"] == 1800 and body["refresh_token"] and body["hub_id"]
    assert body["scopes"] == AUTHORIZE["scope"].split()
    api = client("hubspot", body["access_token"])
    assert api.get("/crm/v3/owners/").status_code == 200
    info = c.get(f"/oauth/v1/access-tokens/{body['access_token']}").json()
    assert info["hub_id"] == body["hub_id"]
    # The refresh token works like any other, and the code is single use.
    refreshed = c.post(
        "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "sbx-client",
            "client_secret": "sbx-secret",
            "refresh_token": body["refresh_token"],
        },
    )
    assert refreshed.status_code == 200 and refreshed.json()["hub_id"] == body["hub_id"]
    again = exchange(c, code)
    assert again.status_code == 400 and again.json()["status"] == "BAD_AUTH_CODE"
    log = state(c, body["access_token"])["request_log"]
    entry = next(
        e for e in log if e["body"] and e["body"].get("grant_type") == "authorization_code"
    )
    assert entry["body"]["code"] == "<redacted>" and entry["body"]["client_secret"] == "<redacted>"


def test_approve_into_an_existing_portal(client: Client) -> None:
    c = client("hubspot")
    existing = c.post("/_sandbox/accounts", json={}).json()
    portal = str(existing["portal_id"])
    api = client("hubspot", existing["token"])
    assert api.post("/crm/v3/objects/contacts", json={"properties": {"email": "e@x.com"}})
    form = consent(c)
    (code,) = decide(c, form, "consent-approve", portal_id=portal)["code"]
    body = exchange(c, code, path="/oauth/v3/token").json()
    assert body["hub_id"] == existing["portal_id"]
    mine = client("hubspot", body["access_token"]).get(
        "/crm/v3/objects/contacts/e@x.com", params={"idProperty": "email"}
    )
    assert mine.status_code == 200
    unknown = c.post(form.action, data=form.submit("consent-approve", portal_id="1"))
    assert unknown.status_code == 400 and "location" not in unknown.headers


def test_deny(client: Client) -> None:
    c = client("hubspot")
    query = decide(c, consent(c), "consent-deny")
    assert query["error"] == ["access_denied"] and query["state"] == ["st-123"]
    assert query["error_description"] and "code" not in query


@pytest.mark.parametrize(
    ("override", "status"),
    [
        ({"redirect_uri": "https://app.example.test/other"}, "BAD_REDIRECT_URI"),
        ({"redirect_uri": ""}, "BAD_REDIRECT_URI"),
        ({"code": "not-a-code"}, "BAD_AUTH_CODE"),
        ({"code": ""}, "BAD_AUTH_CODE"),
        ({"client_id": "other"}, "BAD_CLIENT_ID"),
        ({"client_secret": "wrong"}, "BAD_CLIENT_SECRET"),
        ({"grant_type": "password"}, "BAD_GRANT_TYPE"),
    ],
)
def test_exchange_errors(client: Client, override: dict[str, str], status: str) -> None:
    c = client("hubspot")
    (code,) = decide(c, consent(c), "consent-approve")["code"]
    r = exchange(c, code, **override)
    assert r.status_code == 400, r.text
    assert r.json()["status"] == status and r.json()["message"] and r.json()["correlationId"]
    # A failed exchange does not use the code up (unless the code itself was wrong).
    assert exchange(c, code).status_code == 200


def test_expired_code(client: Client) -> None:
    c = client("hubspot")
    (code,) = decide(c, consent(c), "consent-approve")["code"]
    assert c.post("/_sandbox/oauth/codes/expire").status_code == 200
    r = exchange(c, code)
    assert r.status_code == 400 and r.json()["status"] == "BAD_AUTH_CODE"


@pytest.mark.parametrize("outcome", ["deny", "error"])
def test_admin_forces_the_next_approval(client: Client, outcome: str) -> None:
    c = client("hubspot")
    assert c.post("/_sandbox/oauth/consent", json={"outcome": outcome}).status_code == 201
    query = decide(c, consent(c), "consent-approve")
    assert query["error"] == ["access_denied" if outcome == "deny" else "server_error"]
    assert "code" not in query
    assert "code" in decide(c, consent(c), "consent-approve")  # only the next one
    assert c.post("/_sandbox/oauth/consent", json={"outcome": "maybe"}).status_code == 400


def test_clicking_through_in_chromium(sandbox: Sandbox) -> None:
    """The same flow in a real headless browser, where one is installed."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not shutil.which("chromedriver") or not (
        shutil.which("chromium") or shutil.which("google-chrome")
    ):
        pytest.skip("chromium and chromedriver are not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    browser = webdriver.Chrome(options=options, service=service)
    base = sandbox.urls["hubspot"]
    # The redirect target is the fake itself, so the browser lands on a page that exists.
    params = httpx.QueryParams({**AUTHORIZE, "redirect_uri": f"{base}/crm/v3/owners"})
    try:
        browser.set_page_load_timeout(20)
        browser.get(f"{base}/oauth/authorize?{params}")
        assert "Connect app" in browser.title
        # click() returns before the form's navigation ends: wait for the redirect.
        browser.find_element(By.ID, "consent-approve").click()
        WebDriverWait(browser, 20).until(lambda b: "code=" in b.current_url)
        query = parse_qs(urlsplit(browser.current_url).query)
        browser.get(f"{base}/oauth/authorize?{params}")
        browser.find_element(By.ID, "consent-deny").click()
        WebDriverWait(browser, 20).until(lambda b: "error=" in b.current_url)
        denied = parse_qs(urlsplit(browser.current_url).query)
    finally:
        browser.quit()
    assert query["state"] == ["st-123"]
    with httpx.Client(base_url=base) as c:
        token = exchange(c, query["code"][0], redirect_uri=f"{base}/crm/v3/owners")
    assert token.status_code == 200, token.text
    assert denied["error"] == ["access_denied"]
