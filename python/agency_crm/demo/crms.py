"""The demo's CRMs: the three fake CRMs on free loopback ports, and one client connected to
each through the real connect path (the service layer the HTTP API and the CLI use).

HubSpot goes through its OAuth flow against the fake: the authorisation URL from
:meth:`~agency_crm.service.crm.CrmService.start_hubspot`, the consent page fetched and
approved as a browser would (a form POST), the redirect's ``code`` and ``state`` handed to
:meth:`~agency_crm.service.crm.CrmService.finish_hubspot`, which checks the state and exchanges
the code. Pipedrive and Close are connected with an API key of a fresh sandbox account.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

from agency_crm.errors import AgencyCrmError

#: The fake CRMs, in the order `agency-crm sandbox` prints them.
VENDORS = ("hubspot", "pipedrive", "close")

if TYPE_CHECKING:
    from agency_crm.service.crm import CrmService
    from agency_crm.service.models import ConnectResult, CrmType

#: The sandbox's HubSpot app (agency_crm.sandbox.hubspot.CLIENT_ID and its secret).
SANDBOX_APP_ID = "sbx-client"
SANDBOX_APP_SECRET = "sbx-secret"
#: Where the consent page sends the browser back. Nothing listens there: the demo plays the
#: browser and reads the redirect instead of following it.
DEMO_REDIRECT_URI = "http://127.0.0.1:9/agency-crm-demo/callback"
#: Requests per second the demo's fake CRMs allow: the vendors' real limits (HubSpot 100 per
#: 10 s) would make the demo wait minutes; the runner learns the limit from the headers.
DEMO_RATE_LIMIT = (2000, 1000)


@dataclass(frozen=True)
class Connected:
    """One client connected to its fake CRM."""

    client_id: uuid.UUID
    crm: str
    account: str  # the sandbox account (HubSpot: the portal id)
    config_id: uuid.UUID
    how: str  # "OAuth consent page" or "API key"
    queued: int  # history queued by the connect (meetings + deals)


class FakeCrms:
    """The three fake CRMs (``agency-crm sandbox``) in a process of their own on free loopback
    ports, so that they do not compete with the push runner for this process's interpreter;
    their admin API (``/_sandbox/...``) creates accounts and reads what they hold."""

    def __init__(self, process: subprocess.Popen[str], urls: dict[str, str]) -> None:
        self.process = process
        self.urls = urls
        self.http = httpx.Client(timeout=30.0)

    @classmethod
    def start(cls, timeout: float = 30.0) -> FakeCrms:
        maximum, interval_ms = DEMO_RATE_LIMIT
        command = [
            sys.executable, "-m", "agency_crm", "sandbox",
            "--hubspot-port", "0", "--pipedrive-port", "0", "--close-port", "0",
            "--rate-limit", f"{maximum}/{interval_ms / 1000:g}",
        ]  # fmt: skip
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        urls: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        assert process.stdout is not None
        while len(urls) < len(VENDORS) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            vendor, _, url = line.strip().partition(" ")
            if vendor in VENDORS and url.strip().startswith("http"):
                urls[vendor] = url.strip()
        if len(urls) < len(VENDORS):
            process.kill()
            _out, err = process.communicate(timeout=5)
            raise AgencyCrmError(
                "the fake CRMs did not start: " + (" ".join(err.split())[-300:] or "no output"),
                hint="run `agency-crm sandbox --hubspot-port 0` to see why; the fake CRMs are "
                "the extra pip install 'agency-crm[demo,sandbox]'",
            )
        return cls(process, urls)

    def create_account(self, vendor: str) -> dict[str, Any]:
        answer = self.http.post(f"{self.urls[vendor]}/_sandbox/accounts", json={})
        answer.raise_for_status()
        return cast(dict[str, Any], answer.json())

    def state(self, vendor: str, account: str) -> dict[str, Any]:
        answer = self.http.get(f"{self.urls[vendor]}/_sandbox/state", params={"account": account})
        answer.raise_for_status()
        return cast(dict[str, Any], answer.json())

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> FakeCrms:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class _Form(HTMLParser):
    """The consent page's form: its action and its hidden and select fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "select" and a.get("name"):
            self.fields.setdefault(a["name"], "")


async def consent(http: httpx.AsyncClient, authorization_url: str) -> tuple[str, str]:
    """Play the browser on HubSpot's consent page: load it, press "Connect app", and return
    the ``(code, state)`` HubSpot's redirect carries."""
    page = await http.get(authorization_url)
    page.raise_for_status()
    form = _Form()
    form.feed(page.text)
    if not form.action:
        raise RuntimeError("the consent page has no form")
    answer = await http.post(
        urljoin(authorization_url, form.action),
        data={**form.fields, "decision": "approve"},
        follow_redirects=False,
    )
    location = answer.headers.get("location", "")
    if answer.status_code != 302 or not location:
        raise RuntimeError(f"the consent page answered {answer.status_code}, not a redirect")
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise RuntimeError(f"the consent page refused: {query['error'][0]}")
    return query["code"][0], query["state"][0]


async def connect_all(
    crm: CrmService,
    sandbox: FakeCrms,
    clients: Sequence[tuple[uuid.UUID, str]],
    on_connected: Callable[[Connected, ConnectResult], None] = lambda _c, _r: None,
) -> list[Connected]:
    """Connect each ``(client_id, crm)`` to its fake CRM; return what was connected."""
    out: list[Connected] = []
    urls: Mapping[str, str] = sandbox.urls
    async with httpx.AsyncClient(timeout=30.0) as browser:
        for client_id, vendor in clients:
            base = urls[vendor]
            if vendor == "hubspot":
                started = await crm.start_hubspot(
                    client_id, base, redirect_uri=DEMO_REDIRECT_URI, trusted=True
                )
                code, state = await consent(browser, started.authorization_url)
                result = await crm.finish_hubspot(code=code, state=state, client_id=client_id)
                account = str(result.config.hubspot_portal_id)
                how = "OAuth consent page"
            else:
                created = sandbox.create_account(vendor)
                result = await crm.connect_key(
                    client_id, cast("CrmType", vendor), str(created["token"]), base, trusted=True
                )
                account = str(created["account"])
                how = "API key"
            connected = Connected(
                client_id=client_id,
                crm=vendor,
                account=account,
                config_id=result.config.id,
                how=how,
                queued=result.backfill.meetings + result.backfill.deals,
            )
            on_connected(connected, result)
            out.append(connected)
    return out
