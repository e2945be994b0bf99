"""Options every agency-crm command shares."""

from __future__ import annotations

from typing import Annotated

import typer

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar=["AGENCY_CRM_DATABASE_URL", "DATABASE_URL"],
        show_envvar=True,
        help="PostgreSQL URL or key=value string. Without it, libpq's PG* variables apply.",
    ),
]
JsonOutput = Annotated[
    bool,
    typer.Option("--json", envvar="AGENCY_CRM_JSON", show_envvar=True, help="Print JSON."),
]
