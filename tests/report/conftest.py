"""What the report tests share: a committed database of their own (the CLI runs in another
process, the API in a thread) holding the worked example of docs/analytics.md (Acme Dental),
a client with nothing at all, and a client whose deals carry two currencies; and the SQL
functions called directly, to compare the report with."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from pytest_postgresql.executors.noop import NoopExecutor

from agency_crm import schema
from tests.conftest import janitor, server_url
from tests.helpers.cli import run
from tests.helpers.fixtures import Make

ACME = uuid.UUID("00000000-0000-4000-a000-000000000001")
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
# Each section of a client's report and the call a reader would type for it, independent of
# the report's own named queries: client, days, as_of, currency.
CALLS = {
    "show_rate": "crm.get_show_rate_analysis(%(c)s, %(d)s, %(a)s)",
    "show_rate_by_week": "crm.get_show_rate_by_week(%(c)s, %(d)s, %(a)s)",
    "show_rate_drivers": "crm.get_show_rate_drivers(%(c)s, %(d)s, %(a)s)",
    "funnel": "crm.get_funnel_analytics(%(c)s, %(d)s, %(a)s, %(m)s)",
    "attribution": "crm.get_attribution_comparison(%(c)s, %(d)s, %(a)s, p_currency => %(m)s)",
    "markov": "crm.get_markov_attribution(%(c)s, %(d)s, %(a)s, %(m)s)",
    "lost_deals": "crm.get_lost_deal_analysis(%(c)s, %(d)s, %(a)s, %(m)s)",
    "lost_reasons_by_stage": "crm.get_lost_reasons_by_stage(%(c)s, %(d)s, %(a)s, %(m)s)",
    "stage_conversion": "crm.get_stage_conversion(%(c)s, %(d)s, %(a)s)",
    "time_in_stage": "crm.get_time_in_stage(%(c)s, %(d)s, %(a)s)",
    "velocity": "crm.get_pipeline_velocity(%(c)s, %(d)s, %(a)s, %(m)s)",
    "forecast": "crm.get_weighted_forecast(%(c)s, %(a)s, %(m)s)",
}


@dataclass
class Clients:
    """The report database and its clients."""

    url: str
    acme: uuid.UUID
    empty: dict[str, Any]
    mixed: dict[str, Any]


def as_json(value: Any) -> Any:
    """A value of a function's row as the report's JSON must hold it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def functions(
    url: str, client: uuid.UUID, days: int, as_of: Any, currency: str | None
) -> dict[str, list[dict[str, Any]]]:
    """Each section's function called directly with the report's arguments."""
    out = {}
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        for key, call in CALLS.items():
            cur.execute(
                f"SELECT * FROM {call}".encode(),
                {"c": client, "d": days, "a": as_of, "m": currency},
            )
            out[key] = cur.fetchall()
    return out


def assert_same(report: dict[str, Any], expected: dict[str, list[dict[str, Any]]]) -> None:
    """The report's sections hold the functions' rows, value by value: the same columns in
    the same order, numbers equal to the digit (a Decimal's text too)."""
    assert list(report) == list(expected)
    for key, rows in expected.items():
        got = report[key]
        assert len(got) == len(rows), key
        for mine, theirs in zip(got, rows, strict=True):
            assert list(mine) == list(theirs), key
            for column, value in theirs.items():
                shown = mine[column]
                assert shown == as_json(value), (key, column, shown, value)
                if isinstance(value, Decimal):
                    # its very digits (a numeric without a fraction, 0, reads back as an int)
                    assert isinstance(shown, Decimal | int), (key, column)
                    assert str(Decimal(shown)) == str(value), (key, column)
                elif isinstance(value, int):
                    assert type(shown) is type(value), (key, column)  # int, or bool


def load_clients(conn: psycopg.Connection[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    example = schema.default_sql_dir().joinpath("examples").joinpath("analytics_example.sql")
    conn.execute(example.read_text(encoding="utf-8").encode())
    make = Make(conn)
    empty = make.client(name="Empty Co", default_currency="NZD")
    mixed = make.client(name="Two Currencies Ltd")
    for currency in ("AUD", "USD"):
        make.deal(make.lead(mixed), currency=currency, created_at=AS_OF - timedelta(days=10))
    load_agency(make)
    return empty, mixed


def load_agency(make: Make) -> None:
    """Two clients far apart for the agency view: Highshow Co (27 of 30 meetings held, 10 of
    12 deals won) and Lowshow Ltd (5 of 25 held, 1 of 10 won), whose show and win rates are
    significantly below the other clients'."""
    for name, held, no_show, won, lost in (
        ("Highshow Co", 27, 3, 10, 2),
        ("Lowshow Ltd", 5, 20, 1, 9),
    ):
        client = make.client(name=name, auto_create_deals=False)
        for i in range(held + no_show):
            when = AS_OF - timedelta(days=5 + i)
            lead = make.lead(client, created_at=when - timedelta(days=20))
            make.activity(
                lead, channel=("email", "linkedin")[i % 2], occurred_at=when - timedelta(days=9)
            )
            make.meeting(
                lead,
                booked_at=when - timedelta(days=3),
                scheduled_at=when,
                showed_up=i < held,
            )
            if i < won + lost:
                values = (
                    {"stage": "closed_won", "probability": 100}
                    if i < won
                    else {"stage": "closed_lost", "probability": 0, "lost_reason": "no_budget"}
                )
                make.deal(
                    lead,
                    value=Decimal(1000 + 100 * i),
                    created_at=when - timedelta(days=8),
                    closed_at=when - timedelta(days=1),
                    **values,
                )


@pytest.fixture(scope="session")
def clients(postgresql_noproc: NoopExecutor) -> Iterator[Clients]:
    template = postgresql_noproc.template_dbname
    name = f"{template}_report_{uuid.uuid4().hex[:6]}"
    with janitor(postgresql_noproc, name, template) as made:
        url = server_url(postgresql_noproc, made.dbname)
        with psycopg.connect(url, autocommit=True) as conn:
            empty, mixed = load_clients(conn)
        yield Clients(url, ACME, empty, mixed)


def report_cli(
    clients: Clients, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`agency-crm report ARGS` against the report database, in a wide terminal."""
    return run(
        "report", *args, "--database-url", clients.url, env={"COLUMNS": "200", **(env or {})}
    )
