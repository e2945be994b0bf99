"""The report routes over real HTTP: a client's analytics as JSON equal to the functions'
output, one section at a time or all of them, the HTML report; a token of client A on B's
ids answers the 404 an unknown client does; the agency routes want an agency-wide token;
refused parameters are problems naming the field."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from agency_crm import schema
from agency_crm.report import CLIENT_SECTIONS
from agency_crm.report.model import CLIENT_SLUGS
from tests.api.conftest import Api, Server, Tenant, assert_problem, build_app
from tests.api.test_serve import as_login
from tests.helpers.cli import run
from tests.report.conftest import AS_OF, CALLS, assert_same, functions

EXAMPLE = "00000000-0000-4000-a000-000000000001"
WINDOW = "days=120&as_of=2026-06-01T00:00:00Z"


@pytest.fixture(scope="module")
def acme(api: Api) -> Tenant:
    """The worked example of docs/analytics.md as a client of its own (a fresh id), with a
    token."""
    client = uuid.uuid4()
    path = schema.default_sql_dir().joinpath("examples").joinpath("analytics_example.sql")
    api.seed.execute(path.read_text(encoding="utf-8").replace(EXAMPLE, str(client)).encode())
    [row] = api.rows("SELECT * FROM crm.clients WHERE id = %s", client)
    return Tenant(row, api.token(row))


def parse(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    found: dict[str, Any] = json.loads(response.text, parse_float=Decimal)
    return found


def test_the_client_analytics_are_the_functions_output(api: Api, api_db: str, acme: Tenant) -> None:
    report = parse(api.call("GET", f"/api/v1/clients/{acme.id}/analytics?{WINDOW}", acme.token))
    assert report["report"] == "client"
    assert report["client"] == {"id": acme.id, "name": "Acme Dental"}
    assert (report["days"], report["as_of"], report["currency"]) == (
        120,
        "2026-06-01T00:00:00+00:00",
        "AUD",
    )
    assert list(report["sections"]) == [s.key for s in CLIENT_SECTIONS]
    assert_same(report["sections"], functions(api_db, uuid.UUID(acme.id), 120, AS_OF, "AUD"))


def test_one_section_at_a_time(api: Api, api_db: str, acme: Tenant) -> None:
    assert set(CLIENT_SLUGS) == {s.slug for s in CLIENT_SECTIONS}
    expected = functions(api_db, uuid.UUID(acme.id), 120, AS_OF, "AUD")
    for slug, section in CLIENT_SLUGS.items():
        url = f"/api/v1/clients/{acme.id}/analytics/{slug}?{WINDOW}"
        report = parse(api.call("GET", url, acme.token))
        assert list(report["sections"]) == [section.key]
        assert_same(report["sections"], {section.key: expected[section.key]})
    assert set(CALLS) == {s.key for s in CLIENT_SECTIONS}


def test_the_html_report(api: Api, acme: Tenant) -> None:
    response = api.call("GET", f"/api/v1/clients/{acme.id}/report?{WINDOW}", acme.token)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert page.count('<figure class="chart"') == 8 and "<h1>Acme Dental</h1>" in page


def test_without_as_of_the_answer_says_which_now_it_used(
    api: Api, api_db: str, acme: Tenant
) -> None:
    from datetime import datetime

    report = parse(api.call("GET", f"/api/v1/clients/{acme.id}/analytics/funnel", acme.token))
    assert report["days"] == 90
    as_of = datetime.fromisoformat(report["as_of"])
    expected = functions(api_db, uuid.UUID(acme.id), 90, as_of, "AUD")
    assert_same(report["sections"], {"funnel": expected["funnel"]})


@pytest.mark.parametrize(
    "path", ["analytics", "analytics/funnel", "report"], ids=["all", "section", "html"]
)
def test_a_token_acts_for_its_own_client_only(
    api: Api, acme: Tenant, tenant: Callable[..., Tenant], path: str
) -> None:
    other = tenant()
    url = f"/api/v1/clients/{other.id}/{path}"
    assert_problem(api.call("GET", url, acme.token), 404, "client_not_found")
    assert_problem(api.call("GET", url), 401, "unauthorized")
    # an agency-wide token reads any client, and a client that does not exist is a 404
    agency = api.token(None)
    assert api.call("GET", f"/api/v1/clients/{acme.id}/{path}?{WINDOW}", agency).status_code == 200
    missing = f"/api/v1/clients/{uuid.uuid4()}/{path}"
    assert_problem(api.call("GET", missing, agency), 404, "client_not_found")


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("days=0", "validation_error", "query.days"),
        ("days=ninety", "validation_error", "query.days"),
        ("as_of=yesterday", "validation_error", "query.as_of"),
        ("currency=aud", "validation_error", "query.currency"),
        # a valid RFC 3339 time before the year 1 in UTC: what the analytics refuse
        ("as_of=0001-01-01T00:00:00%2B14:00", "invalid", "query.as_of"),
    ],
)
def test_refused_parameters_name_the_field(
    api: Api, acme: Tenant, query: str, code: str, field: str
) -> None:
    url = f"/api/v1/clients/{acme.id}/analytics?{query}"
    body = assert_problem(api.call("GET", url, acme.token), 422, code, field)
    assert body["detail"].startswith(field) or field.split(".")[1] in body["detail"]


def test_an_unknown_section_is_refused(api: Api, acme: Tenant) -> None:
    url = f"/api/v1/clients/{acme.id}/analytics/weather"
    assert_problem(api.call("GET", url, acme.token), 422, "validation_error", "path.section")


def test_several_currencies_need_one_named(api: Api, tenant: Callable[..., Tenant]) -> None:
    mixed = tenant()
    make = api.make()
    for currency in ("AUD", "USD"):
        make.deal(make.lead(mixed.row), currency=currency)
    url = f"/api/v1/clients/{mixed.id}/analytics/funnel"
    body = assert_problem(api.call("GET", url, mixed.token), 422, "invalid", "query.currency")
    assert "several currencies (AUD, USD)" in body["detail"]
    report = parse(api.call("GET", f"{url}?currency=USD", mixed.token))
    assert report["currency"] == "USD"
    assert report["sections"]["funnel"][0]["deals_created"] == 1


@pytest.mark.parametrize("path", ["/api/v1/agency/report", "/api/v1/agency/analytics/comparison"])
def test_the_agency_routes_want_an_agency_wide_token(api: Api, acme: Tenant, path: str) -> None:
    body = assert_problem(api.call("GET", path, acme.token), 403, "agency_token_required")
    assert "agency-crm api-token create --agency" in body["hint"]
    assert_problem(api.call("GET", path), 401, "unauthorized")


def test_without_crm_analyst_the_agency_routes_say_which_grant(api: Api, api_db: str) -> None:
    """A login that may act as crm_api only: the client routes work, the agency routes
    answer 503 naming the grant, and `serve` says so when it starts."""
    login = f"reports_{uuid.uuid4().hex[:8]}"
    api.seed.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE crm_api").format(sql.Identifier(login)))
    try:
        url = as_login(api_db, login)
        agency = api.token(None)
        with Server(build_app(url)) as server, httpx.Client(timeout=30) as http:
            headers = {"Authorization": f"Bearer {agency}"}
            answer = http.get(f"{server.url}/api/v1/agency/analytics/comparison", headers=headers)
            assert answer.status_code == 503, answer.text
            body = answer.json()
            assert body["code"] == "database_privileges"
            assert "GRANT crm_analyst TO <login>" in body["hint"]
        with socket.socket() as busy:  # serve prints its notes, then cannot listen
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            done = run("serve", "--port", str(busy.getsockname()[1]), "--database-url", url)
    finally:
        api.seed.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
    assert done.returncode != 0  # the port is taken
    assert "may not act as crm_analyst" in done.stderr
    assert f"GRANT crm_analyst TO {login};" in done.stderr


def test_the_agency_comparison_is_the_functions_output(api: Api, api_db: str, acme: Tenant) -> None:
    agency = api.token(None)
    url = f"/api/v1/agency/analytics/comparison?{WINDOW}"
    report = parse(api.call("GET", url, agency))
    assert report["report"] == "agency" and report["client"] is None
    assert (report["days"], report["as_of"], report["currency"]) == (
        120,
        "2026-06-01T00:00:00+00:00",
        None,
    )
    with psycopg.connect(api_db) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET ROLE crm_analyst")  # what the route reads as: every client
        rows = cur.execute(
            "SELECT * FROM crm.get_agency_comparison(%s, %s, NULL)", (120, AS_OF)
        ).fetchall()
    assert any(r["client_id"] == uuid.UUID(acme.id) for r in rows)
    assert_same(report["sections"], {"comparison": rows})
    page = api.call("GET", f"/api/v1/agency/report?{WINDOW}", agency)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Acme Dental" in page.text and "<script" not in page.text
