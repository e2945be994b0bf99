"""The headless Chromium harness (tests/helpers/browser.py) against pages served on loopback."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from tests.helpers.browser import Browser

EXTERNAL_IMAGE = "https://example.com/x.png"
PAGES = {
    "/form": """<!doctype html><title>form</title>
        <form action="/done"><input name="name"><button id="go">Go</button></form>""",
    "/external": f"""<!doctype html><title>external</title>
        <img src="{EXTERNAL_IMAGE}" onerror="location.hash = 'img-failed'">
        <img src="/local.png">""",
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/done":
            name = parse_qs(url.query).get("name", [""])[0]
            body = f'<!doctype html><title>done</title><p id="hello">Hello, {escape(name)}</p>'
        elif url.path in PAGES:
            body = PAGES[url.path]
        else:
            self.send_error(404)
            return
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The base URL of PAGES, served on a free loopback port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_form_is_filled_and_its_button_navigates(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    browser.open(f"{site}/form")
    browser.fill("input[name=name]", "Ada & co")
    browser.click("#go")
    assert browser.wait_for_url("/done?") == f"{site}/done?name=Ada+%26+co"
    assert browser.current_url.startswith(site)
    assert browser.text("#hello") == "Hello, Ada & co"
    png = browser.screenshot(tmp_path / "shots" / "done.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    assert int.from_bytes(png[16:20], "big") == 1280  # the IHDR width: the fixed window's
    assert browser.requests_outside_loopback() == []
    assert f"{site}/form" in browser.requests


def test_a_request_off_the_machine_is_recorded_and_refused(browser: Browser, site: str) -> None:
    browser.open(f"{site}/external")
    browser.wait_for_url(lambda url: url.endswith("#img-failed"))
    assert browser.requests_outside_loopback() == [EXTERNAL_IMAGE]
    assert f"{site}/local.png" in browser.requests
    # Refused by the dead-end proxy before any DNS look-up or connection, not merely offline.
    assert browser.failed[EXTERNAL_IMAGE] == "net::ERR_PROXY_CONNECTION_FAILED"


def test_waiting_in_vain_names_what_was_awaited(browser: Browser, site: str) -> None:
    browser.open(f"{site}/form")
    with pytest.raises(AssertionError, match=r"no element matches '#nope' on http://127"):
        browser.click("#nope", timeout=0.2)
    with pytest.raises(AssertionError, match=r"URL is '.*/form', not one matching '/done'"):
        browser.wait_for_url("/done", timeout=0.2)


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("http://127.8.9.10/", True),
        ("http://[::1]:5000/", True),
        ("http://localhost/", True),
        ("http://app.localhost/", True),
        ("data:image/png;base64,AAAA", True),
        ("about:blank", True),
        ("blob:http://127.0.0.1/1234", True),
        ("file:///tmp/report.html", True),
        ("https://example.com/x.png", False),
        ("http://localhost.example.com/", False),
        ("http://127.0.0.1.nip.io/", False),
        ("http://10.0.0.1/", False),
        ("ws://api.hubapi.com/socket", False),
    ],
)
def test_loopback_is_told_from_the_outside(url: str, local: bool) -> None:
    from tests.helpers.browser import is_loopback  # imports selenium: see the browser fixture

    assert is_loopback(url) is local


@pytest.mark.parametrize("ci", ["true", ""])
def test_without_chromium_the_fixture_skips_but_fails_under_ci(
    ci: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(outcome, match="apt-get install -y chromium chromium-driver"):
        request.getfixturevalue("browser")
