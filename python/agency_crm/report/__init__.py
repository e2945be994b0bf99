"""Reports: a client's analytics, or every client side by side, as the SQL functions return
them, rendered as JSON, CSV or one self-contained HTML page (terminal tables: the CLI's
:mod:`agency_crm.cli.report`).

Each section is ONE call of an analytics function with the report's arguments (client, days,
as-of, currency): nothing here computes a number. ::

    from agency_crm.report import client_report, snapshot, to_json

    with snapshot(conn):
        report = client_report(conn, client_id, days=90)
    print(to_json(report, indent=2))

The HTML renderer (:mod:`agency_crm.report.html`) loads altair and vl-convert only when used.
"""

from __future__ import annotations

from agency_crm.report.collect import (
    aagency_report,
    aclient_report,
    agency_report,
    asnapshot,
    client_report,
    client_sections,
    snapshot,
)
from agency_crm.report.encode import dumps, to_csv, to_json, write_csv
from agency_crm.report.model import (
    AGENCY_SECTIONS,
    CLIENT_SECTIONS,
    DEFAULT_DAYS,
    MAX_DAYS,
    Report,
    Section,
    Table,
)

__all__ = [
    "AGENCY_SECTIONS",
    "CLIENT_SECTIONS",
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "Report",
    "Section",
    "Table",
    "aagency_report",
    "aclient_report",
    "agency_report",
    "asnapshot",
    "client_report",
    "client_sections",
    "dumps",
    "snapshot",
    "to_csv",
    "to_json",
    "write_csv",
]
