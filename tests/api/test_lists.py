"""The two lists: a client's meetings and its CRM push log, a page at a time, filtered, and
the query parameters as strict as the document says."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.api.conftest import Api, Tenant, assert_problem
from tests.api.seeding import seed_history


def pages(api: Api, url: str, token: str, limit: int) -> list[dict[str, Any]]:
    """Every page of a list, following next_offset; each page checked."""
    found: list[dict[str, Any]] = []
    offset: int | None = 0
    sep = "&" if "?" in url else "?"
    while offset is not None:
        response = api.call("GET", f"{url}{sep}limit={limit}&offset={offset}", token)
        assert response.status_code == 200, response.text
        page = response.json()
        assert (page["limit"], page["offset"]) == (limit, offset)
        assert len(page["items"]) <= limit
        if page["next_offset"] is not None:
            assert len(page["items"]) == limit and page["next_offset"] == offset + limit
        found += page["items"]
        offset = page["next_offset"]
    return found


def test_meetings_page_by_page_newest_first_by_default(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    history = seed_history(api.make(), a.row, meetings=7, logs=0)
    url = f"/api/v1/clients/{a.id}/meetings"
    listed = pages(api, url, a.token, limit=3)
    assert [m["id"] for m in listed] == [
        str(m["id"]) for m in sorted(history.meetings, key=lambda m: m["scheduled_at"])[::-1]
    ]
    assert pages(api, url, a.token, limit=7) == listed
    assert pages(api, url, a.token, limit=200) == listed
    beyond = api.call("GET", f"{url}?offset=100", a.token).json()
    assert beyond == {"items": [], "limit": 50, "offset": 100, "next_offset": None}
    assert listed[0]["client_id"] == a.id and listed[0]["duration_minutes"] == 30


def test_upcoming_meetings_next_first_and_past_ones(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    history = seed_history(api.make(), a.row, meetings=6, logs=0)  # two past, four to come
    now = datetime.now(UTC)
    cancelled = history.meetings[-1]
    api.rows(
        "UPDATE crm.meetings SET cancelled_at = now() WHERE id = %s RETURNING id", cancelled["id"]
    )
    url = f"/api/v1/clients/{a.id}/meetings"
    upcoming = pages(api, f"{url}?upcoming=true", a.token, limit=2)
    expected = sorted(
        (m for m in history.meetings if m["scheduled_at"] > now and m is not cancelled),
        key=lambda m: m["scheduled_at"],
    )
    assert [m["id"] for m in upcoming] == [str(m["id"]) for m in expected]
    newest = pages(api, f"{url}?upcoming=true&order=newest", a.token, limit=2)
    assert newest == upcoming[::-1]
    past = pages(api, f"{url}?upcoming=false", a.token, limit=2)
    assert {m["id"] for m in past} == {
        str(m["id"]) for m in history.meetings if m["scheduled_at"] < now or m is cancelled
    }
    assert [m["scheduled_at"] for m in past] == sorted(
        (m["scheduled_at"] for m in past), reverse=True
    )
    first = pages(api, f"{url}?upcoming=false&order=next", a.token, limit=5)
    assert first == past[::-1]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("upcoming=0", "query.upcoming"),
        ("upcoming=yes", "query.upcoming"),
        ("upcoming=True", "query.upcoming"),
        ("order=oldest", "query.order"),
        ("limit=0", "query.limit"),
        ("limit=201", "query.limit"),
        ("limit=1.5", "query.limit"),
        ("offset=-1", "query.offset"),
        ("offset=2147483648", "query.offset"),
        ("upcomming=true", "query.upcomming"),
        ("limit=5&limit=6", "query.limit"),
    ],
)
def test_meeting_parameters_take_exactly_what_the_document_says(
    api: Api, tenant: Callable[..., Tenant], query: str, field: str
) -> None:
    a = tenant()
    response = api.call("GET", f"/api/v1/clients/{a.id}/meetings?{query}", a.token)
    body = assert_problem(response, 422, "validation_error", field)
    assert body["errors"][0]["field"] == field
    assert field in body["detail"]


def test_a_path_that_is_not_a_uuid_is_a_422_naming_it(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    for bad in ("nope", a.id.replace("-", ""), "{" + a.id + "}", f"urn:uuid:{a.id}"):
        response = api.call("GET", f"/api/v1/clients/{bad}/meetings", a.token)
        assert_problem(response, 422, "validation_error", "path.client_id")


def test_the_push_log_newest_first_filtered_and_paged(
    api: Api, tenant: Callable[..., Tenant]
) -> None:
    a = tenant()
    history = seed_history(api.make(), a.row, meetings=2, logs=7)
    logs = pages(api, "/api/v1/crm/logs", a.token, limit=3)
    assert [row["id"] for row in logs] == [
        str(r["id"]) for r in sorted(history.logs, key=lambda r: r["created_at"], reverse=True)
    ]
    assert logs[0]["request_payload"] == {"properties": {"email": "ada@example.com"}}

    def ids(query: str) -> set[str]:
        return {row["id"] for row in pages(api, f"/api/v1/crm/logs?{query}", a.token, 2)}

    def expected(keep: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {str(r["id"]) for r in history.logs if keep(r)}

    assert ids("status=failed") == expected(lambda r: r["status"] == "failed")
    assert ids("operation=create_deal") == expected(lambda r: r["operation"] == "create_deal")
    lead = history.leads[0]["id"]
    assert ids(f"lead_id={lead}") == expected(lambda r: r["lead_id"] == lead)
    middle = sorted(r["created_at"] for r in history.logs)[3]
    since = middle.isoformat().replace("+00:00", "Z")
    assert ids(f"since={since}") == expected(lambda r: r["created_at"] >= middle)
    assert ids(f"until={since}") == expected(lambda r: r["created_at"] < middle)
    assert ids("status=failed&operation=get_me") == set()
    assert ids(f"meeting_id={history.meetings[0]['id']}") == set()
    assert ids("push_id=9223372036854775807") == set()
    # The same moment written at +10:00 (the '+' URL-encoded, as a query string needs).
    sydney = middle.astimezone(timezone(timedelta(hours=10))).isoformat()
    assert sydney.endswith("+10:00")
    assert ids(f"since={sydney.replace('+', '%2B')}") == expected(
        lambda r: r["created_at"] >= middle
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=ok", "query.status"),
        ("operation=Create%20deal", "query.operation"),
        ("push_id=0", "query.push_id"),
        ("push_id=9223372036854775808", "query.push_id"),
        ("lead_id=42", "query.lead_id"),
        ("since=0", "query.since"),
        ("since=1700000000", "query.since"),
        ("since=2026-05-01", "query.since"),
        ("since=2026-05-01T09:00:00", "query.since"),
        ("until=2024-01-01T12:99:00Z", "query.until"),
        ("client_id=42", "query.client_id"),
        ("limit=500", "query.limit"),
    ],
)
def test_log_filters_take_exactly_what_the_document_says(
    api: Api, tenant: Callable[..., Tenant], query: str, field: str
) -> None:
    a = tenant()
    response = api.call("GET", f"/api/v1/crm/logs?{query}", a.token)
    assert_problem(response, 422, "validation_error", field)
