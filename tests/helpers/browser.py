"""A real headless Chromium for tests: Debian's ``chromium`` driven by its ``chromedriver``.

Selenium, not Playwright: Debian builds chromium and chromium-driver from one source at one
version, so the driver always speaks the browser's protocol, while Playwright supports only
the Chromium build it downloads itself (which cannot be fetched here).

Nothing leaves the machine. Chromium sends every request but loopback (its proxy bypass
list implicitly holds localhost, *.localhost, 127.0.0.0/8 and [::1]) to a proxy on a port
this process holds bound but never listens on, so it fails at once with
net::ERR_PROXY_CONNECTION_FAILED; WebRTC may not send UDP around that proxy. Every URL a page
asks for is still recorded (Chrome's performance log), so a test can assert that none would
have left: ``assert browser.requests_outside_loopback() == []``. The log is the window's:
requests of web workers and of windows the page opens are refused but not listed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

WINDOW = (1280, 800)
TIMEOUT = 10.0
POLL = 0.05  # seconds between checks of a wait: each is one local round trip
# Schemes that never reach a network: inline data, this browser's own pages, local files.
LOCAL_SCHEMES = {"data", "blob", "about", "file", "chrome", "chrome-untrusted", "devtools"}


def is_loopback(url: str) -> bool:
    """Whether fetching ``url`` stays on this machine."""
    parts = urlsplit(url)
    if parts.scheme in LOCAL_SCHEMES:
        return True
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Browser:
    """One headless Chromium window, with waits built into every step."""

    def __init__(self, driver: webdriver.Chrome, startup_seconds: float) -> None:
        self.driver = driver  # for anything the wrapper does not cover
        self.startup_seconds = startup_seconds
        self._requests: list[str] = []
        self._ids: dict[str, str] = {}
        self.failed: dict[str, str] = {}  # URL -> Chromium's net error, filled by `requests`

    @property
    def current_url(self) -> str:
        return self.driver.current_url

    def open(self, url: str) -> None:
        self.driver.get(url)

    def click(self, css: str, timeout: float = TIMEOUT) -> None:
        self._wait(ec.element_to_be_clickable((By.CSS_SELECTOR, css)), timeout, css).click()

    def fill(self, css: str, text: str, timeout: float = TIMEOUT) -> None:
        field = self._wait(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, css)
        field.clear()
        field.send_keys(text)

    def text(self, css: str, timeout: float = TIMEOUT) -> str:
        found = self._wait(ec.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, css)
        return str(found.text)

    def wait_for_url(self, expected: str | Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """The current URL once it contains ``expected`` (or ``expected(url)`` is true)."""
        matches = expected if callable(expected) else lambda url: expected in url
        try:
            self._until(lambda driver: matches(driver.current_url), timeout)
        except TimeoutException:
            raise AssertionError(
                f"after {timeout} s the URL is {self.current_url!r}, not one matching {expected!r}"
            ) from None
        return self.current_url

    def screenshot(self, path: Path) -> Path:
        """Save the window as a PNG at ``path`` (give one under ``tmp_path``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.driver.get_screenshot_as_png())
        return path

    @property
    def requests(self) -> list[str]:
        """Every URL the pages asked for since the browser started, in order (blocked too)."""
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message["params"]
            if method == "Network.requestWillBeSent":
                self._requests.append(params["request"]["url"])
                self._ids[params["requestId"]] = params["request"]["url"]
            elif method == "Network.webSocketCreated":
                self._requests.append(params["url"])
            elif method == "Network.loadingFailed" and params["requestId"] in self._ids:
                self.failed[self._ids[params["requestId"]]] = params["errorText"]
        return list(self._requests)

    def requests_outside_loopback(self) -> list[str]:
        """The recorded URLs that are not on this machine (all of them were refused)."""
        return [url for url in self.requests if not is_loopback(url)]

    def clear_requests(self) -> None:
        """Forget the URLs recorded so far (say, those of a test's set-up)."""
        self.requests  # noqa: B018 - drains the log
        self._requests.clear()
        self.failed.clear()

    def _until(self, condition: Callable[[Any], Any], timeout: float) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=POLL).until(condition)

    def _wait(self, condition: Callable[[Any], Any], timeout: float, css: str) -> WebElement:
        try:
            found: WebElement = self._until(condition, timeout)
            return found
        except TimeoutException:
            raise AssertionError(
                f"after {timeout} s no element matches {css!r} on {self.current_url}"
            ) from None


@contextmanager
def launch(chromium: str, chromedriver: str) -> Iterator[Browser]:
    """Start headless Chromium on a fresh profile; quit it on the way out, whatever happened."""
    with (
        tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile,
        closing(socket.socket()) as dead_end,
    ):
        dead_end.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (
            "--headless=new",
            f"--user-data-dir={profile}",
            "--window-size={},{}".format(*WINDOW),
            f"--proxy-server=http://127.0.0.1:{dead_end.getsockname()[1]}",
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            *(["--no-sandbox"] if os.geteuid() == 0 else []),  # Chromium's sandbox refuses root
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True})
        started = time.perf_counter()
        driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        try:
            browser = Browser(driver, time.perf_counter() - started)
            browser.clear_requests()  # the start page's own loads are not the test's
            yield browser
        finally:
            driver.quit()
