"""``python -m agency_crm.sandbox``: run the three fake CRMs (same options as the CLI)."""

from __future__ import annotations

import typer

from agency_crm.sandbox.cli import sandbox

typer.run(sandbox)
