"""Keep secrets out of the audit log: payloads are copied with secret-named keys replaced and
every known secret value (the config's tokens and keys) masked wherever it appears, also in
the forms it travels in: URL-encoded, base64, and base64 of ``secret:`` (HTTP basic, Close)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|authorization|auth|credential|cookie)",
    re.IGNORECASE,
)


@lru_cache(maxsize=4096)
def secret_key(name: str) -> bool:
    """Whether a JSON key names a secret (its value is replaced whatever it is); the same few
    hundred key names come back in every payload, so the answer is kept."""
    return _SECRET_KEY.search(name) is not None


def forms(secret: str) -> set[str]:
    """A secret and the encodings it travels in: URL-encoded as a path keeps '/' (urllib's
    default), as a query value or a form field encodes it, base64 and base64url."""
    found = {secret, quote(secret), quote(secret, safe=""), quote_plus(secret)}
    for raw in (secret, f"{secret}:"):
        for encoded in (base64.b64encode(raw.encode()), base64.urlsafe_b64encode(raw.encode())):
            found |= {encoded.decode(), encoded.decode().rstrip("=")}
    return found


class Redactor:
    """Redacts one config's secrets (and anything under a secret-looking key)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        """Also mask ``secret`` from now on (e.g. a freshly refreshed token)."""
        if not secret or len(secret) < 4:
            return
        fresh = forms(secret) - set(self._secrets)
        if fresh:
            self._secrets.extend(fresh)
            self._secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        """Mask every known secret inside ``value``."""
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: Any) -> Any:
        """A deep copy of a JSON-like value with secrets masked."""
        if isinstance(value, dict):
            return {
                str(k): (REDACTED if secret_key(str(k)) else self.value(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value
