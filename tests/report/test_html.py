"""The HTML report, opened as a file in a real headless Chromium with no network: every chart
drew (an inline SVG holding mark elements), nothing was requested off the machine, the page
reads as the report's numbers; a screenshot of the whole page is kept under the test's tmp
directory. A client with nothing renders sentences, not broken charts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers.browser import Browser
from tests.helpers.cli import clean_env
from tests.report.conftest import AS_OF, Clients, report_cli

CLIENT_CHARTS = [
    "show_rate",
    "show_rate_drivers",
    "funnel",
    "attribution",
    "stage_conversion",
    "time_in_stage",
    "lost",
    "forecast",
]
# Per chart: its data-chart, how many mark elements its SVG holds, its drawn area.
DRAWN = """
return Array.from(document.querySelectorAll('figure.chart')).map(figure => {
  const svg = figure.querySelector(':scope > svg');
  if (!svg) { return [figure.dataset.chart, 0, 0]; }
  const marks = svg.querySelectorAll('g.role-mark > *');
  const box = svg.getBoundingClientRect();
  return [figure.dataset.chart, marks.length, Math.round(box.width * box.height)];
});
"""


def write_html(clients: Clients, path: Path, *args: str) -> str:
    done = report_cli(clients, *args, "--format", "html", "--out", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(path)
    return path.read_text(encoding="utf-8")


def self_contained(page: str) -> None:
    """Nothing in the file would be fetched: no script, no stylesheet or font link, no URL."""
    assert page.startswith("<!doctype html>")
    assert "<script" not in page.lower()
    assert not re.search(r"<link\b|@import|@font-face|\bsrc=|url\((?!#)", page, re.IGNORECASE)
    assert not re.search(r"(?:href|src)=\"(?:https?:)?//", page)
    assert "default-src 'none'" in page


def screenshot(browser: Browser, path: Path) -> Path:
    """The whole page, however long."""
    height = browser.driver.execute_script("return document.documentElement.scrollHeight")
    browser.driver.set_window_size(1280, int(height) + 100)
    return browser.screenshot(path)


def open_page(browser: Browser, path: Path) -> list[list[Any]]:
    browser.open(path.resolve().as_uri())
    drawn: list[list[Any]] = browser.driver.execute_script(DRAWN)
    errors = [e for e in browser.driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    return drawn


def test_the_client_report_draws_every_chart_offline(
    clients: Clients, browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "acme.html"
    page = write_html(
        clients, path, "--client", "Acme Dental", "--days", "120", "--as-of", AS_OF.isoformat()
    )
    self_contained(page)
    drawn = open_page(browser, path)
    assert [name for name, *_ in drawn] == CLIENT_CHARTS
    for name, marks, area in drawn:
        assert marks > 0 and area > 10_000, (name, marks, area)
    assert browser.requests_outside_loopback() == []
    shot = screenshot(browser, tmp_path / "acme.png")
    assert shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")
    # the header and the numbers read as the report has them
    assert browser.text("header h1") == "Acme Dental"
    assert "The 120 days up to 2026-06-01 00:00+00:00. Amounts in AUD." in browser.text("header")
    cards = browser.text(".cards")
    assert "75.00 %" in cards and "AUD 16,000.00" in cards and "AUD 190.48" in cards
    funnel = browser.text("#funnel")
    assert "total pipeline value" in funnel and "AUD 30,000.00" in funnel
    assert "Where do leads drop out?" in page and "Which channels bring the revenue?" in page
    assert "20.77-93.85 %" in browser.text("#show_rate_drivers")


def test_an_empty_client_says_so_in_sentences(
    clients: Clients, browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "empty.html"
    page = write_html(clients, path, "--client", "Empty Co")
    self_contained(page)
    assert open_page(browser, path) == []  # no chart drawn empty
    for sentence in (
        "No meeting was scheduled in the window.",
        "No deal was won in the window, so no channel is credited.",
        "No deal was lost in the window.",
        "No deal is open.",
    ):
        assert sentence in browser.text("main")
    assert "Amounts in NZD" in browser.text("header")
    assert browser.requests_outside_loopback() == []
    screenshot(browser, tmp_path / "empty.png")


def test_html_without_out_writes_a_file_named_for_the_client(
    clients: Clients, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agency_crm", "report", "--client", "Acme Dental", "--as-of",
         AS_OF.isoformat(), "--format", "html", "--database-url", clients.url],
        cwd=tmp_path, capture_output=True, text=True, env=clean_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "report-acme-dental-2026-06-01.html"
    assert (tmp_path / done.stdout.strip()).read_text().startswith("<!doctype html>")


def test_the_agency_report_draws_every_chart_offline(
    clients: Clients, browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "agency.html"
    page = write_html(clients, path, "--agency", "--days", "120", "--as-of", AS_OF.isoformat())
    self_contained(page)
    drawn = open_page(browser, path)
    assert [name for name, *_ in drawn] == ["show_rate", "win_rate", "value", "cycle", "channel"]
    for name, marks, area in drawn:
        assert marks > 0 and area > 10_000, (name, marks, area)
    assert browser.requests_outside_loopback() == []
    shot = screenshot(browser, tmp_path / "agency.png")
    print(f"screenshot: {shot}")
    flags = browser.text("#flags")
    assert "Lowshow Ltd: show rate 20.00 %" in flags and "Lowshow Ltd: win rate" in flags
    assert "Highshow" not in flags
    # the flagged client is marked in the tables, and drawn in the flag's colour
    rows = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('tr.flagged td:first-child'))"
        ".map(td => td.textContent)"
    )
    assert set(rows) == {"Lowshow Ltd"}
    assert "#c4372b" in page  # the red of "significantly below the agency"
    assert "Whose show rate is significantly below the rest of the agency?" in page
