"""What a report is: its arguments and its sections, each the rows one analytics function
returned for them. Plain data: the renderers (JSON, CSV, HTML here; terminal tables in the CLI)
read it, none computes a number."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Row = dict[str, Any]
# The default window, as the analytics functions have it.
DEFAULT_DAYS = 90
# The longest window the functions take (crm_private.analytics_window_start).
MAX_DAYS = 1_000_000


@dataclass(frozen=True)
class Section:
    """One section of a report: one call of one analytics function.

    ``key`` names the section in the JSON (``sections.funnel``), the CSV file (``funnel.csv``)
    and the named query of ``sql/queries/report.sql`` that calls the function; ``slug`` names
    it in the API's path (``/analytics/show-rate``)."""

    key: str
    title: str
    function: str

    @property
    def slug(self) -> str:
        return self.key.replace("_", "-")


# A client's report, in the order it is shown.
CLIENT_SECTIONS: tuple[Section, ...] = (
    Section("show_rate", "Show rate", "crm.get_show_rate_analysis"),
    Section("show_rate_by_week", "Show rate by week", "crm.get_show_rate_by_week"),
    Section("show_rate_drivers", "Show-rate drivers", "crm.get_show_rate_drivers"),
    Section("funnel", "Funnel", "crm.get_funnel_analytics"),
    Section("attribution", "Revenue by channel, every model", "crm.get_attribution_comparison"),
    Section("markov", "Markov attribution", "crm.get_markov_attribution"),
    Section("lost_deals", "Lost deals", "crm.get_lost_deal_analysis"),
    Section("lost_reasons_by_stage", "Lost reasons by stage", "crm.get_lost_reasons_by_stage"),
    Section("stage_conversion", "Stage conversion", "crm.get_stage_conversion"),
    Section("time_in_stage", "Time in stage", "crm.get_time_in_stage"),
    Section("velocity", "Pipeline velocity", "crm.get_pipeline_velocity"),
    Section("forecast", "Weighted forecast", "crm.get_weighted_forecast"),
)
# The agency's report: every client side by side.
AGENCY_SECTIONS: tuple[Section, ...] = (
    Section("comparison", "Clients side by side", "crm.get_agency_comparison"),
)
BY_KEY = {s.key: s for s in (*CLIENT_SECTIONS, *AGENCY_SECTIONS)}
CLIENT_SLUGS = {s.slug: s for s in CLIENT_SECTIONS}


@dataclass(frozen=True)
class Table:
    """A section's result: its columns in the function's order, and its rows keyed by them."""

    columns: tuple[str, ...]
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    """A client's report (``kind`` client, with its id and name) or the agency's.

    ``currency`` is the currency of every amount (passed to each function that takes one;
    None for an agency report given none: each client's amounts are in its own).
    ``as_of`` is the end of the window every function was called with, ``days`` its length."""

    kind: Literal["client", "agency"]
    days: int
    as_of: datetime
    currency: str | None
    sections: dict[str, Table]
    client_id: uuid.UUID | None = None
    client_name: str | None = None

    def rows(self, key: str) -> list[Row]:
        """The rows of a section (none when the report left it out)."""
        table = self.sections.get(key)
        return table.rows if table else []

    def document(self) -> dict[str, Any]:
        """The report as the JSON shows it (values still Python's: Decimal, date, UUID ...)."""
        return {
            "report": self.kind,
            "client": (
                {"id": self.client_id, "name": self.client_name} if self.kind == "client" else None
            ),
            "currency": self.currency,
            "days": self.days,
            "as_of": self.as_of,
            "sections": {key: table.rows for key, table in self.sections.items()},
        }
