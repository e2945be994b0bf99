"""The push drainer as a deployment runs it: a LOGIN role that is a member of crm_runner, not
the owner, drains the three fake CRMs end to end (a HubSpot token refresh included) and checks
the connections. Its grants are the whole of what it needs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from agency_crm.sandbox import Sandbox
from tests.helpers.cli import run
from tests.helpers.fixtures import Make, unseal
from tests.push.conftest import CRMS, connect_crm, run_drain
from tests.security.conftest import login_url


def test_a_runner_login_drains_every_crm_and_refreshes_a_token(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    sandbox: Sandbox,
    logins: dict[str, str],
) -> None:
    conn, owner_url = pushdb
    url = login_url(owner_url, logins["crm_runner"])
    crms = {}
    for vendor in CRMS:
        client = pmake.client()
        extra: dict[str, Any] = {}
        if vendor == "hubspot":  # near expiry: the runner refreshes it and stores the new one
            extra["oauth_expires_at"] = datetime.now(UTC) + timedelta(minutes=2)
        crms[vendor] = (client, connect_crm(pmake, sandbox, client, vendor, **extra))
        lead = pmake.lead(client, company="Engines Ltd")
        pmake.meeting(lead)
        deal = pmake.deal(lead, value=1200)
        conn.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))

    summary = run_drain(url)

    assert summary.outcomes.get("done", 0) >= 3 * 2, summary
    statuses = conn.execute("SELECT DISTINCT status FROM crm.crm_push_queue").fetchall()
    assert statuses == [("done",)]
    for vendor, (client, crm) in crms.items():
        assert crm.contacts(), vendor
        assert len(crm.deals()) == 2, vendor
        row = conn.execute(
            "SELECT connection_status, last_successful_push_at IS NOT NULL,"
            " oauth_access_token FROM crm.client_crm_configs WHERE client_id = %s",
            (client["id"],),
        ).fetchone()
        assert row is not None and row[1], vendor
        if vendor == "hubspot":
            assert unseal(client["id"], "oauth_access_token", row[2]) != crm.token
    logged = conn.execute(
        "SELECT count(*) FILTER (WHERE operation = 'refresh_token'), count(*) FROM crm.crm_push_log"
    ).fetchone()
    assert logged is not None and logged[0] == 1 and logged[1] > 6

    # push check and push status through the CLI, as the runner login.
    checked = run("push", "check", env={"DATABASE_URL": url})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    status = run("push", "status", env={"DATABASE_URL": url})
    assert status.returncode == 0, status.stdout + status.stderr


def test_a_login_without_a_role_sees_nothing(
    pushdb: tuple[psycopg.Connection[Any], str], logins: dict[str, str]
) -> None:
    conn, owner_url = pushdb
    name = f"{logins['crm_runner']}_none"
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'acrm-test-login'")
    try:
        with psycopg.connect(login_url(owner_url, name)) as other:
            for statement in (
                "SELECT count(*) FROM crm.leads",
                "SELECT * FROM crm.get_funnel_analytics(gen_random_uuid(), 90)",
            ):
                with other.transaction(), pytest.raises(psycopg.errors.InsufficientPrivilege):
                    other.execute(statement)
    finally:
        conn.execute(f"DROP ROLE {name}")
