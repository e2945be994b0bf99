"""docs/api.md shows real requests and their real answers: the page's worked requests are made
again against a running server and must come back as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_worked_requests_of_docs_api_md_answer_as_written(server_admin_url: str) -> None:
    # A process of its own: the sandbox numbers its ids across the process, and the page's
    # are those of a sandbox that has served nothing else.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = server_admin_url
    done = subprocess.run(
        [sys.executable, "-m", "agency_crm.dev", "api-examples", "--check", "docs/api.md"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_every_route_of_the_document_has_a_worked_request() -> None:
    from agency_crm.api import create_app

    page = (ROOT / "docs" / "api.md").read_text()
    worked = page[page.index("<!-- api-examples:begin") :]
    for path, item in create_app().openapi()["paths"].items():
        for method in item:
            url = "https://crm.example.com" + path.replace(
                "{client_id}", "00000000-0000-4000-a000-000000000001"
            ).replace("{pipeline_id}", "1").replace("{section}", "funnel")
            command = "$ curl -s" + ("" if method == "get" else f" -X {method.upper()}")
            assert f"{command} {url}" in worked or f"{command} '{url}" in worked, (method, path)
            # ... and it is in the table of routes.
            assert f"`{method.upper()} {path.removeprefix('/api/v1')}`" in page, (method, path)
