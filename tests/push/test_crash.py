"""Crash safety: the runner is SIGKILLed at each named point (after claim, after sending,
after the CRM's 2xx before our commit, after commit) over more than 1,000 pushes spread over
the three fake CRMs, restarted each time, and in the end every meeting and lead exists exactly
once in its CRM. Four runners draining at once also create no duplicate."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from agency_crm.push.crashpoints import POINTS
from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import Make
from tests.push.conftest import CRMS, Crm, connect_crm

pytestmark = pytest.mark.crash

LEASE_SECONDS = 2
CLIENTS_PER_CRM = 2


def runner(
    url: str, crash_at: str | None = None, crash_after: int = 1, lease: int = LEASE_SECONDS
) -> subprocess.Popen[str]:
    """`agency-crm push drain --once` in its own process."""
    env = {
        **os.environ,
        "AGENCY_CRM_HUBSPOT_CLIENT_ID": "sbx-client",
        "AGENCY_CRM_HUBSPOT_CLIENT_SECRET": "sbx-secret",
    }
    env.pop("AGENCY_CRM_CRASH_AT", None)
    if crash_at:
        env["AGENCY_CRM_CRASH_AT"] = crash_at
        env["AGENCY_CRM_CRASH_AFTER"] = str(crash_after)
        env["AGENCY_CRM_CRASH_SEND_DELAY"] = "0.005"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agency_crm",
            "push",
            "drain",
            "--once",
            "--database-url",
            url,
            "--progress",
            "log",
            "--lease-seconds",
            str(lease),
            "--http-timeout",
            "2",
            "--search-lag",
            "0.5",
            "--retry-horizon",
            "10",
            "--max-seconds",
            "120",
            "--concurrency",
            "16",
            "--per-client",
            "6",
            # Claims of 12: HubSpot's pushes go out as batch calls of up to 12 inputs, and
            # every point is reached many times before the queue is drained.
            "--batch-size",
            "12",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def seed(pmake: Make, sandbox: Sandbox, meetings_per_client: int) -> list[tuple[Crm, Any]]:
    """Clients on each CRM, each with leads and booked meetings (a third of the leads book
    twice, so pushes of one lead queue behind each other)."""
    crms = []
    for vendor in CRMS:
        for _ in range(CLIENTS_PER_CRM):
            client = pmake.client()
            crm = connect_crm(pmake, sandbox, client, vendor)
            crm.configure(latency_ms=15, rate_limit={"max": 100000, "interval_ms": 1000})
            leads = [pmake.lead(client) for _ in range(meetings_per_client * 3 // 4)]
            for lead in leads:
                pmake.meeting(lead)
            for lead in leads[: meetings_per_client - len(leads)]:
                pmake.meeting(lead)
            crms.append((crm, client))
    return crms


def unfinished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM crm.crm_push_queue WHERE status <> 'done'").fetchone()
    assert row is not None
    return int(row[0])


def assert_each_entity_once(conn: psycopg.Connection[Any], crms: list[tuple[Crm, Any]]) -> None:
    """0 lost and 0 duplicates: per client, one CRM contact per lead and one CRM deal per
    meeting, each carrying our key, and our map pointing at them."""
    for crm, client in crms:
        leads = {
            r[0]
            for r in conn.execute(
                "SELECT email FROM crm.leads WHERE client_id = %s", (client["id"],)
            )
        }
        meetings = {
            f"acrm-meeting-{r[0]}"
            for r in conn.execute(
                "SELECT id FROM crm.meetings WHERE client_id = %s", (client["id"],)
            )
        }
        contacts = crm.contacts()
        emails = Counter(c["email"] for c in contacts)
        assert set(emails) == leads, f"{crm.vendor}: lost or foreign contacts"
        assert max(emails.values()) == 1, (
            f"{crm.vendor}: duplicate contacts {emails.most_common(3)}"
        )
        deals = crm.deals()
        keys = Counter(d["key"] for d in deals)
        assert set(keys) == meetings, f"{crm.vendor}: lost deals"
        assert max(keys.values()) == 1, f"{crm.vendor}: duplicate deals {keys.most_common(3)}"
        contact_ids = {c["id"] for c in contacts}
        assert all(d["contact_id"] in contact_ids for d in deals)
        mapped = conn.execute(
            "SELECT count(*) FROM crm.crm_external_ids WHERE client_id = %s "
            "AND entity_type = 'deal' AND crm_id IS NOT NULL AND create_sent_at IS NULL",
            (client["id"],),
        ).fetchone()
        assert mapped == (len(meetings),)
        if crm.vendor == "pipedrive":
            orgs = Counter(o["name"] for o in crm.state()["organizations"])
            assert max(orgs.values()) == 1, f"duplicate organisations {orgs.most_common(3)}"


def test_sigkill_at_every_point_loses_and_doubles_nothing(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    crms = seed(pmake, sandbox, meetings_per_client=172)
    total = conn.execute("SELECT count(*) FROM crm.crm_push_queue").fetchone()
    assert total is not None and total[0] >= 1000

    rng = random.Random(20261125)
    kills: Counter[str] = Counter()
    points = itertools.cycle(POINTS)
    runs = 0
    while unfinished(conn) and runs < 80:
        point = next(points)
        proc = runner(url, point, crash_after=rng.randint(2, 15))
        _, err = proc.communicate(timeout=180)
        runs += 1
        if proc.returncode == -signal.SIGKILL:
            kills[point] += 1
            time.sleep(LEASE_SECONDS + 0.2)  # the dead runner's leases lapse
        else:
            assert proc.returncode == 0, err
        if runs >= 2 * len(POINTS) and min(kills[p] for p in POINTS) >= 2:
            break
    # Then an undisturbed runner finishes the work.
    for _ in range(5):
        if not unfinished(conn):
            break
        proc = runner(url)
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        time.sleep(0.2)

    assert {p: kills[p] >= 2 for p in POINTS} == dict.fromkeys(POINTS, True), kills
    assert unfinished(conn) == 0
    assert_each_entity_once(conn, crms)
    print(f"crash test: {total[0]} pushes, {runs} killed or clean runs, kills {dict(kills)}")


def test_four_runners_at_once_create_no_duplicate(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    crms = seed(pmake, sandbox, meetings_per_client=60)
    procs = [runner(url, lease=60) for _ in range(4)]
    shares = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        shares.append(summary["done"])
    assert sum(shares) >= 360 and sum(1 for s in shares if s) >= 2, shares
    assert unfinished(conn) == 0
    assert_each_entity_once(conn, crms)
    # Every push was sent once: one successful deal create per meeting in the audit log.
    creates = conn.execute(
        "SELECT crm_deal_id, count(*) FROM crm.crm_push_log "
        "WHERE operation IN ('create_deal', 'upsert_deal') AND status = 'success' "
        "GROUP BY crm_deal_id HAVING count(*) > 1"
    ).fetchall()
    assert creates == []
