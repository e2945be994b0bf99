"""History reaches the CRM once: meetings and deals made before a client's CRM was connected are
queued when it is connected (`crm connect`) or by `agency-crm push backfill`, `push drain`
sends them, and the fake CRM holds each meeting's deal exactly once, however often backfill
runs."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from agency_crm.sandbox import Sandbox
from tests.cli.conftest import Cli, account, one_line, state
from tests.cli.test_crm import connect
from tests.helpers.fixtures import Make, Row


def keys_held(sandbox: Sandbox, vendor: str, token: str) -> Counter[str]:
    """How many deals (opportunities) of the fake CRM carry each of our keys."""
    held = state(sandbox, vendor, token)
    deals = held["deals"] if vendor == "pipedrive" else held["opportunities"]
    found: Counter[str] = Counter()
    for deal in deals:
        text = json.dumps(deal)
        for prefix in ("acrm-meeting-", "acrm-deal-"):
            start = text.find(prefix)
            if start >= 0:
                found[text[start : start + len(prefix) + 36]] += 1
    return found


def queued(conn: psycopg.Connection[Any], client: Row) -> Counter[str]:
    rows = conn.execute(
        "SELECT status FROM crm.crm_push_queue WHERE client_id = %s", (client["id"],)
    ).fetchall()
    return Counter(r[0] for r in rows)


@pytest.mark.parametrize("vendor", ["pipedrive", "close"])
def test_the_history_reaches_the_crm_exactly_once(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox, vendor: str
) -> None:
    client = cmake.client()
    leads = [cmake.lead(client) for _ in range(3)]
    meetings = [cmake.meeting(lead) for lead in leads]
    own_deal = cmake.deal(leads[0], name="Retainer")  # a deal of no meeting
    cmake.deal(leads[1], meeting_id=meetings[1]["id"], name="Pilot")  # travels with its meeting
    assert queued(conn, client) == Counter()  # no CRM yet: nothing queued

    acct = account(sandbox, vendor)
    done = connect(cli, vendor, client, acct["token"], sandbox, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backfill"] == {"meetings": 3, "deals": 1}

    drained = cli("push", "drain")
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["done"] == 4, drained.stdout
    expected = Counter(
        [f"acrm-meeting-{m['id']}" for m in meetings] + [f"acrm-deal-{own_deal['id']}"]
    )
    assert keys_held(sandbox, vendor, acct["token"]) == expected

    # Again: the CRM has it all, nothing is queued; a drain sends nothing new.
    again = cli("push", "backfill", "--client", client["name"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"queued 0 meeting(s) and 0 deal(s) of {client['name']} ({client['id']}) the CRM has"
        " not got"
    )
    as_json = cli("push", "backfill", "--client", str(client["id"]), "--json")
    assert json.loads(as_json.stdout) == {"meetings": 0, "deals": 0}
    assert cli("push", "drain").returncode == 0
    assert keys_held(sandbox, vendor, acct["token"]) == expected


def test_backfill_since_queues_only_what_was_booked_from_then_on(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make, sandbox: Sandbox
) -> None:
    client = cmake.client()
    now = datetime.now(UTC)
    old = cmake.meeting(cmake.lead(client), booked_at=now - timedelta(days=400))
    recent = cmake.meeting(cmake.lead(client), booked_at=now - timedelta(days=3))
    acct = account(sandbox, "pipedrive")
    assert connect(cli, "pipedrive", client, acct["token"], sandbox).returncode == 0
    # The pushes of the connect were lost before they were sent (say, a queue restored from
    # an old backup): the CRM has neither meeting.
    conn.execute(
        "UPDATE crm.crm_push_queue SET status = 'done', finished_at = now() WHERE client_id = %s",
        (client["id"],),
    )
    since = (now - timedelta(days=30)).date().isoformat()
    done = cli("push", "backfill", "--client", client["name"], "--since", since, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"meetings": 1, "deals": 0}
    pending = conn.execute(
        "SELECT meeting_id FROM crm.crm_push_queue WHERE client_id = %s AND status = 'pending'",
        (client["id"],),
    ).fetchall()
    assert pending == [(recent["id"],)]
    everything = cli("push", "backfill", "--client", client["name"])
    assert everything.stdout.startswith("queued 1 meeting(s) and 0 deal(s)")
    assert old["id"] in {
        r[0]
        for r in conn.execute(
            "SELECT meeting_id FROM crm.crm_push_queue WHERE status = 'pending'"
        ).fetchall()
    }


def test_backfill_needs_a_connected_crm_and_a_real_date(cli: Cli, cmake: Make) -> None:
    client = cmake.client()
    none = cli("push", "backfill", "--client", str(client["id"]))
    line = one_line(none, 5)
    assert "has no connected CRM to backfill" in line and "agency-crm crm connect" in line
    bad = cli("push", "backfill", "--client", str(client["id"]), "--since", "last week")
    assert bad.returncode == 2 and "--since" in bad.stderr
    assert "no client has the id or name" in one_line(
        cli("push", "backfill", "--client", "Nobody"), 4
    )
