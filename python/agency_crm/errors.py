"""Errors agency-crm reports to its users."""

from __future__ import annotations


class AgencyCrmError(Exception):
    """An error with a one-line message and an optional hint on what to do."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """Message and hint on one line, as the CLI prints it."""
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message
