"""Keep secrets out of the audit log: payloads are copied with secret-named keys replaced and
every known secret value (the config's tokens and keys) masked wherever it appears."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|api[_-]?key|authorization|auth|credential|cookie)",
    re.IGNORECASE,
)


class Redactor:
    """Redacts one config's secrets (and anything under a secret-looking key)."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        """Also mask ``secret`` from now on (e.g. a freshly refreshed token)."""
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
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
                str(k): (REDACTED if _SECRET_KEY.search(str(k)) else self.value(v))
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value
