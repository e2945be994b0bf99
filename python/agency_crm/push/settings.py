"""Knobs of the CRM connections, light to import (the CLI reads their defaults)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# Seconds one CRM call may take (push drain and push check --http-timeout).
DEFAULT_HTTP_TIMEOUT = 30.0


@dataclass
class Settings:
    """Knobs of the CRM connections that operators and tests may turn."""

    # A create whose outcome is unknown is not repeated until the CRM's search index has had
    # this long to show the record (Pipedrive and Close search lags behind writes).
    search_lag: timedelta = timedelta(seconds=30)
    # The agency's HubSpot app, to refresh OAuth tokens (AGENCY_CRM_HUBSPOT_CLIENT_ID/_SECRET).
    hubspot_client_id: str | None = None
    hubspot_client_secret: str | None = None
    token_refresh_margin: timedelta = timedelta(minutes=5)
    # Seconds one CRM call may take; a call may still land this long after it was sent.
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    # Send a client's due pushes together through the CRM's batch API where it has one
    # (HubSpot): up to 100 pushes in one call per step. Off: each push on its own.
    batches: bool = True

    @classmethod
    def from_environment(cls, **overrides: Any) -> Settings:
        """Settings with the HubSpot app's credentials from the environment (secrets are
        never command-line options: those show in the process list)."""
        return cls(
            hubspot_client_id=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_ID") or None,
            hubspot_client_secret=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_SECRET") or None,
            **overrides,
        )

    @property
    def unknown_outcome_window(self) -> timedelta:
        """How long after sending a create whose outcome is unknown we wait before creating
        again: the CRM's search lag after the moment we gave up on the call (one timeout),
        plus one more timeout for a CRM that finishes a request after we stopped waiting."""
        return 2 * timedelta(seconds=self.http_timeout) + self.search_lag
