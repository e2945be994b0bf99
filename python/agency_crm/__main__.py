from __future__ import annotations

from agency_crm.cli import main

main()
