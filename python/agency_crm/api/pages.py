"""The pages a browser sees when HubSpot sends it back to the OAuth callback: "Connected", or
"Not connected" and why. Every value shown is escaped (the reason may quote what HubSpot put
in the URL), the page loads nothing, and no address it came from (the callback URL holds the
code) is sent on as a referrer."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

from agency_crm.api.problems import AUTHENTICATE, Problem
from agency_crm.service import models

HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
VENDOR = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "close": "Close"}


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)} · agency-crm</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;"
        "padding:0 1em;line-height:1.5}h1{font-size:1.6em}.hint{color:#555}</style>"
        f"</head><body>{body}</body></html>\n"
    )


def connected(result: models.ConnectResult) -> HTMLResponse:
    """The page of a connection made."""
    config = result.config
    vendor = VENDOR[config.crm_type]
    portal = f" (portal {escape(config.hubspot_portal_id)})" if config.hubspot_portal_id else ""
    queued = result.backfill.meetings + result.backfill.deals
    body = (
        '<h1 id="outcome">Connected</h1>'
        f"<p>{vendor}{portal} is connected: new meetings and deals go to it from now on"
        f"{f', and {queued} earlier ones are on their way' if queued else ''}.</p>"
        '<p class="hint">You can close this window.</p>'
    )
    return HTMLResponse(_page("Connected", body), headers=HEADERS)


def failure(details: Problem, headers: dict[str, str] | None = None) -> HTMLResponse:
    """The page of a callback that connected nothing, with the problem's status."""
    hint = f'<p class="hint">{escape(details.hint)}</p>' if details.hint else ""
    body = (
        f'<h1 id="outcome">Not connected: {escape(details.detail)}</h1>'
        f'{hint}<p class="hint">code: <code id="code">{escape(details.code)}</code></p>'
    )
    extra = {**HEADERS, **(headers or {})}
    if details.status == 401:
        extra.setdefault("WWW-Authenticate", AUTHENTICATE)
    return HTMLResponse(_page("Not connected", body), status_code=details.status, headers=extra)
