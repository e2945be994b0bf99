"""docs/reports.md stays true: each `agency-crm report` line parses, each shown run prints what
the page shows (against the worked example of docs/analytics.md), and its tables of sections
and routes are the report's and the API's."""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path

import pytest

from agency_crm.report import CLIENT_SECTIONS
from tests.cli.test_docs_push import resolve
from tests.cli.test_secrets import doc_blocks
from tests.report.conftest import Clients, report_cli

REPORTS_MD = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def commands() -> list[str]:
    """Every `agency-crm report` line of the page's shell and console blocks."""
    found = []
    for block in doc_blocks(REPORTS_MD, "sh") + doc_blocks(REPORTS_MD, "console"):
        for line in block.splitlines():
            line = line.removeprefix("$ ").split("#")[0].split(">")[0].strip()
            if line.startswith("agency-crm report"):
                found.append(line)
    return found


def runs() -> list[tuple[str, list[str]]]:
    """The console blocks: each command and the lines it prints."""
    shown = []
    for block in doc_blocks(REPORTS_MD, "console"):
        first, *output = block.rstrip("\n").splitlines()
        assert first.startswith("$ agency-crm report "), first
        shown.append((first[2:], output))
    return shown


@pytest.mark.parametrize("line", commands())
def test_each_documented_command_parses(line: str) -> None:
    words = shlex.split(re.sub(r"<[^>]*>", str(uuid.uuid4()), line))
    command, args = resolve(words)
    command.make_context(words[-1], args)


@pytest.mark.parametrize(("line", "output"), runs(), ids=[line for line, _ in runs()])
def test_each_shown_run_prints_what_the_page_shows(
    clients: Clients, line: str, output: list[str]
) -> None:
    done = report_cli(clients, *shlex.split(line)[2:], env={"COLUMNS": "100"})
    assert done.returncode == 0, done.stderr
    assert [row.rstrip() for row in done.stdout.rstrip().splitlines()] == output


def test_the_sections_table_is_the_reports() -> None:
    text = REPORTS_MD.read_text()
    rows = re.findall(r"^\| `([a-z_]+)` \| `([a-z-]+)` \| `(crm\.[a-z_]+)` \|", text, re.MULTILINE)
    assert rows == [(s.key, s.slug, s.function) for s in CLIENT_SECTIONS]


def test_the_routes_table_is_the_apis() -> None:
    from agency_crm.api import create_app

    routes = {
        path
        for path, item in create_app().openapi()["paths"].items()
        if any("analytics" in op.get("tags", []) for op in item.values())
    }
    text = REPORTS_MD.read_text()
    assert set(re.findall(r"^\| `GET (/api/v1/[^`]+)` \|", text, re.MULTILINE)) == routes
