"""`agency-crm report` through a real process: its JSON is the functions' output for the same
arguments, value by value; its CSV reads back to the same values; its tables show the key
numbers formatted; its errors are one line and an exit code."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm.report import CLIENT_SECTIONS
from agency_crm.report.encode import cell
from tests.cli.conftest import one_line
from tests.report.conftest import AS_OF, Clients, assert_same, functions, report_cli


def parse(text: str) -> dict[str, object]:
    found: dict[str, object] = json.loads(text, parse_float=Decimal)
    return found


@pytest.mark.parametrize("days", [120, 30])
def test_json_equals_the_functions_output(clients: Clients, days: int) -> None:
    done = report_cli(
        clients, "--client", "Acme Dental", "--days", str(days), "--as-of",
        AS_OF.isoformat(), "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = parse(done.stdout)
    assert report["report"] == "client"
    assert report["client"] == {"id": str(clients.acme), "name": "Acme Dental"}
    assert (report["days"], report["as_of"], report["currency"]) == (
        days,
        "2026-06-01T00:00:00+00:00",
        "AUD",
    )
    sections = report["sections"]
    assert isinstance(sections, dict)
    assert list(sections) == [s.key for s in CLIENT_SECTIONS]
    expected = functions(clients.url, clients.acme, days, AS_OF, "AUD")
    assert_same(sections, expected)
    if days == 120:  # the worked example of docs/analytics.md, as written there
        assert sections["funnel"] == [
            {
                "total_leads": 6, "meetings_booked": 6, "meetings_showed": 3,
                "deals_created": 4, "deals_won": 2, "total_pipeline_value": Decimal("30000.00"),
                "total_won_value": Decimal("16000.00"), "show_rate": Decimal("50.00"),
                "deal_win_rate": Decimal("66.67"), "lead_to_meeting_rate": Decimal("100.00"),
                "lead_to_win_rate": Decimal("33.33"),
            }
        ]  # fmt: skip


def test_without_as_of_the_report_says_which_now_it_used(clients: Clients) -> None:
    done = report_cli(clients, "--client", str(clients.acme), "--days", "400", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = parse(done.stdout)
    as_of = datetime.fromisoformat(str(report["as_of"]))
    assert as_of.tzinfo is not None
    sections = report["sections"]
    assert isinstance(sections, dict)
    assert_same(sections, functions(clients.url, clients.acme, 400, as_of, "AUD"))


def test_csv_is_one_file_per_section_and_reads_back(clients: Clients, tmp_path: Path) -> None:
    out = tmp_path / "acme"
    done = report_cli(
        clients, "--client", "Acme Dental", "--days", "120", "--as-of", AS_OF.isoformat(),
        "--format", "csv", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(out / f"{s.key}.csv") for s in CLIENT_SECTIONS]
    expected = functions(clients.url, clients.acme, 120, AS_OF, "AUD")
    for key, rows in expected.items():
        with (out / f"{key}.csv").open(newline="", encoding="utf-8") as handle:
            read = list(csv.reader(handle))
        assert read[0] == list(rows[0]) if rows else read[0], key
        assert read[1:] == [[cell(v) for v in row.values()] for row in rows], key
    # exactly: a Decimal's text, NULL an empty cell
    stages = (out / "stage_conversion.csv").read_text().splitlines()
    assert "verbal_commit,0,0,,0.00,2,0" in stages


def test_one_section_as_csv_on_stdout(clients: Clients) -> None:
    done = report_cli(
        clients, "--client", "Acme Dental", "--days", "120", "--as-of", AS_OF.isoformat(),
        "--format", "csv", "--section", "funnel", "--out", "-",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "total_leads,meetings_booked,meetings_showed,deals_created,deals_won,"
        "total_pipeline_value,total_won_value,show_rate,deal_win_rate,lead_to_meeting_rate,"
        "lead_to_win_rate",
        "6,6,3,4,2,30000.00,16000.00,50.00,66.67,100.00,33.33",
    ]


def test_tables_show_the_key_numbers_formatted(clients: Clients) -> None:
    done = report_cli(
        clients, "--client", "Acme Dental", "--days", "120", "--as-of", AS_OF.isoformat()
    )
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "Acme Dental · the 120 days to 2026-06-01 00:00+00:00 · amounts in AUD" in text
    # money with its currency and thousands separators, percentages, the n beside a rate
    assert "AUD 30,000.00" in text and "AUD 16,000.00" in text
    assert "75.00 %" in text and "66.67 %" in text
    monday = next(line for line in text.splitlines() if "Monday" in line)
    assert monday.split() == ["weekday", "Monday", "3", "2", "66.67", "%", "20.77-93.85", "%"]
    # attribution under every model, Markov beside them
    email = next(line for line in text.splitlines() if line.strip().startswith("email"))
    assert email.split()[1:] == [
        "16,000.00", "12,000.00", "10,000.00", "9,904.76", "11,600.00", "10,600.00",
        "12,600.00", "8,655.74", "100.00", "%",
    ]  # fmt: skip
    for title in (
        "What moves the show rate",
        "Funnel",
        "Lost deals by reason",
        "Stage conversion",
        "Time in stage",
        "Pipeline velocity",
        "Weighted forecast",
    ):
        assert title in text
    assert "AUD 190.48" in text  # velocity per day


def test_an_empty_client_reads_as_sentences(clients: Clients) -> None:
    done = report_cli(clients, "--client", "Empty Co")
    assert done.returncode == 0, done.stderr
    assert "amounts in NZD" in done.stdout
    assert "No deal was lost in the window." in done.stdout
    assert "No deal is open." in done.stdout
    report = parse(report_cli(clients, "--client", "Empty Co", "--format", "json").stdout)
    sections = report["sections"]
    assert isinstance(sections, dict)
    assert sections["lost_deals"] == [] and sections["forecast"] == []
    assert sections["funnel"][0]["total_leads"] == 0


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--client", "Nobody Pty Ltd"), 4, "no client has the id or name 'Nobody Pty Ltd'"),
        (("--client", "Acme Dental", "--days", "0"), 2, "--days '0' is not a window"),
        (("--client", "Acme Dental", "--days", "ninety"), 2, "--days 'ninety' is not a window"),
        (("--client", "Acme Dental", "--as-of", "yesterday"), 2, "--as-of 'yesterday'"),
        (("--client", "Acme Dental", "--format", "pdf"), 2, "--format 'pdf' is not one of"),
        (("--client", "Acme Dental", "--agency"), 2, "give --client CLIENT or --agency"),
        ((), 2, "give --client CLIENT or --agency"),
        (("--client", "Acme Dental", "--section", "weather"), 2, "no section 'weather'"),
        (("--client", "Acme Dental", "--currency", "dollars"), 2, "currency 'DOLLARS'"),
        (("--client", "Two Currencies Ltd"), 2, "carry several currencies (AUD, USD)"),
    ],
)
def test_errors_are_one_line_and_an_exit_code(
    clients: Clients, args: tuple[str, ...], code: int, words: str
) -> None:
    line = one_line(report_cli(clients, *args), code)
    assert words in line, line


def test_several_currencies_are_reported_one_at_a_time(clients: Clients) -> None:
    line = one_line(report_cli(clients, "--client", "Two Currencies Ltd"), 2)
    assert "--currency AUD" in line
    done = report_cli(clients, "--client", "Two Currencies Ltd", "--currency", "usd")
    assert done.returncode == 0, done.stderr
    assert "amounts in USD" in done.stdout


def test_agency_json_equals_the_function_and_tables_flag_the_clients(clients: Clients) -> None:
    done = report_cli(
        clients, "--agency", "--days", "120", "--as-of", AS_OF.isoformat(), "--format", "json"
    )
    assert done.returncode == 0, done.stderr
    report = parse(done.stdout)
    assert (report["report"], report["client"], report["currency"]) == ("agency", None, None)
    with psycopg.connect(clients.url) as conn, conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM crm.get_agency_comparison(%s, %s, NULL)", (120, AS_OF)
        ).fetchall()
    sections = report["sections"]
    assert isinstance(sections, dict)
    assert_same(sections, {"comparison": rows})
    assert {r["client_name"] for r in rows} >= {"Acme Dental", "Highshow Co", "Lowshow Ltd"}
    text = report_cli(clients, "--agency", "--days", "120", "--as-of", AS_OF.isoformat()).stdout
    for title in (
        "Show rate",
        "Win rate",
        "Pipeline and won value",
        "Sales cycle",
        "Channel yield",
    ):
        assert f"\n{title}\n" in text, title
    flagged = text.split("Significantly below the agency")[1]
    assert "Lowshow Ltd: show rate 20.00 % (95 % CI 8.86-39.13 %), n = 25" in flagged
    assert "Lowshow Ltd: win rate 10.00 %" in flagged and "Highshow" not in flagged
    assert "AUD" in text and "1 of" in text  # each client's currency; ranks out of so many


def test_the_agency_takes_no_section(clients: Clients) -> None:
    line = one_line(report_cli(clients, "--agency", "--section", "funnel"), 2)
    assert "--section" in line
