"""The loopback redirect of ``agency-crm crm connect hubspot`` (as ``gh auth login`` does it):
a one-shot HTTP listener on 127.0.0.1 that the consenting browser is sent back to.

The listener hands over the first callback that carries the state of the flow the command
started (others get a 400 page and change nothing), then keeps the browser waiting until the
command says how the connection went, and answers with a small HTML page saying so.
"""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CALLBACK_PATH = "/callback"
# How long the browser's request waits for the command to finish the connection.
ANSWER_WAIT_S = 300.0


@dataclass(frozen=True)
class Callback:
    """What the browser brought back from the consent page."""

    code: str | None
    state: str
    error: str | None
    error_description: str | None


@dataclass(frozen=True)
class Outcome:
    """What the browser is told."""

    ok: bool
    title: str
    message: str


def page(outcome: Outcome) -> bytes:
    """The HTML the browser shows (ids for tests: #result, #message)."""
    colour = "#1a7f37" if outcome.ok else "#b42318"
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>agency-crm: {escape(outcome.title)}</title>"
        "<meta name=viewport content='width=device-width'></head>"
        "<body style='font-family:system-ui,sans-serif;max-width:40em;margin:4em auto'>"
        f"<h1 id=result data-ok={'true' if outcome.ok else 'false'} style='color:{colour}'>"
        f"{escape(outcome.title)}</h1>"
        f"<p id=message>{escape(outcome.message)}</p>"
        "<p>You can close this tab and go back to the terminal.</p>"
        "</body></html>\n"
    ).encode()


class Listener:
    """Listens on 127.0.0.1:``port`` (0: a free port) for the OAuth redirect."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.expected: str | None = None
        self._lock = threading.Lock()
        self._callback: Callback | None = None
        self._outcome: Outcome | None = None
        self._decided = threading.Event()
        self._answered = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-loopback", daemon=True
        )

    @property
    def redirect_uri(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{CALLBACK_PATH}"

    def start(self) -> Listener:
        self._thread.start()
        return self

    def expect(self, state: str) -> None:
        """The state of the flow started: only a callback carrying it is taken."""
        self.expected = state

    def received(self) -> Callback | None:
        """The callback of the flow, once the browser brought it."""
        with self._lock:
            return self._callback

    def answer(self, outcome: Outcome, wait: float = 5.0) -> None:
        """Tell the waiting browser how it went; return once the page was sent (or ``wait``
        seconds passed)."""
        self._outcome = outcome
        self._decided.set()
        if self.received() is not None:
            self._answered.wait(wait)

    def close(self) -> None:
        self._decided.set()  # a browser still waiting gets its answer (or a generic one)
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Listener:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # what the handler calls ---------------------------------------------------------

    def take(self, query: dict[str, list[str]]) -> tuple[int, Outcome, bool]:
        """The status and page for one request to the callback path, and whether it is the
        flow's callback (the one the command is finishing)."""

        def first(name: str) -> str | None:
            values = query.get(name)
            return values[0] if values else None

        state = first("state") or ""
        expected = self.expected
        if expected is None or not hmac.compare_digest(state.encode(), expected.encode()):
            refused = Outcome(
                False,
                "Not this sign-in",
                "This page does not carry the state of the connection agency-crm is waiting "
                "for (an old tab, or another flow): nothing was changed. Use the URL the "
                "command printed.",
            )
            return 400, refused, False
        with self._lock:
            if self._callback is not None:
                again = Outcome(
                    False,
                    "Already answered",
                    "agency-crm already received this sign-in; see the terminal.",
                )
                return 409, again, False
            self._callback = Callback(
                code=first("code"),
                state=state,
                error=first("error"),
                error_description=first("error_description"),
            )
        self._decided.wait(ANSWER_WAIT_S)
        outcome = self._outcome or Outcome(
            False, "Not finished", "agency-crm stopped before it finished; see the terminal."
        )
        return (200 if outcome.ok else 400), outcome, True

    def answered(self) -> None:
        """The flow's page was sent."""
        self._answered.set()


def _handler(listener: Listener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "agency-crm"
        sys_version = ""

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != CALLBACK_PATH:
                self._send(
                    404,
                    Outcome(
                        False,
                        "Not found",
                        f"agency-crm waits for HubSpot's redirect at {CALLBACK_PATH} only.",
                    ),
                )
                return
            status, outcome, flow = listener.take(parse_qs(parts.query))
            try:
                self._send(status, outcome)
            finally:
                if flow:
                    listener.answered()

        def _send(self, status: int, outcome: Outcome) -> None:
            body = page(outcome)
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the query holds the authorisation code."""

    return Handler
