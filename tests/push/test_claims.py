"""A push drain against a fake CRM, end to end: a claim whose lease lapsed under a slow CRM
never finishes the claim that took the push over, and a deal change committed while the drain
runs always reaches the CRM."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm.push.http import CrmError, retry_after_seconds
from agency_crm.push.model import MAX_RETRY_DELAY, Outcome, Reported
from agency_crm.push.runner import (
    LONGEST_WAIT,
    RATE_LIMITED_MIN_WAIT,
    Drainer,
    DrainSettings,
    PushEvent,
    backoff,
    deferral,
)
from agency_crm.push.store import Store
from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import TLS, Make
from tests.push.conftest import connect_crm, fast_settings, run_drain

ASSOCIATE = r"/crm/v4/objects/deals/[^/]+/associations/default/contacts/{}"


def hubspot_contact(url: str, token: str, email: str) -> str:
    """A contact made in the fake HubSpot beforehand: a push then finds it by email, so its
    first call is a quick lookup and its contact id is known in advance."""
    r = httpx.post(
        url + "/crm/v3/objects/contacts",
        headers={"Authorization": f"Bearer {token}"},
        json={"properties": {"email": email}, "associations": []},
        timeout=10,
        verify=TLS,
    )
    r.raise_for_status()
    return str(r.json()["id"])


def test_a_lease_shorter_than_a_slow_crm_never_lets_the_lapsed_claim_finish_the_push(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """Issue 11. One drain, a 2 s lease. Push P's first attempt hangs on the CRM (its
    association call times out after 3.4 s); push Q ends after 2.4 s, so the lane claims
    again, finds P's lease lapsed and claims P itself: attempt 2, same runner, whose own
    association takes 2 s. Attempt 1's late finish (a retry) comes while attempt 2 is
    sending. It must change nothing: not finish the push, not return it to pending for a third
    claim to send it again. Attempt 2 finishes it, once.

    Every delay is a lower bound the fake CRM keeps; the run's own work adds about 0.1 s
    where up to a second would still fit."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    p_email, q_email = "p@slow.example", "q@slow.example"
    p_contact = hubspot_contact(crm.url, crm.token, p_email)
    q_contact = hubspot_contact(crm.url, crm.token, q_email)
    p_meeting = pmake.meeting(pmake.lead(client, email=p_email))
    pmake.meeting(pmake.lead(client, email=q_email))
    crm.admin(
        "POST",
        "/_sandbox/faults",
        json={
            "faults": [
                # P, attempt 1: hangs past the HTTP timeout. P, attempt 2: slow, within it.
                {"token": crm.token, "kind": "slow", "delay_ms": 8000, "method": "PUT"}
                | {"path_regex": ASSOCIATE.format(p_contact)},
                {"token": crm.token, "kind": "slow", "delay_ms": 2000, "method": "PUT"}
                | {"path_regex": ASSOCIATE.format(p_contact)},
                # Q: ends after P's lease lapsed, so the lane claims again.
                {"token": crm.token, "kind": "slow", "delay_ms": 2400, "method": "PUT"}
                | {"path_regex": ASSOCIATE.format(q_contact)},
            ]
        },
    )
    p_push = conn.execute(
        "SELECT id FROM crm.crm_push_queue WHERE meeting_id = %s", (p_meeting["id"],)
    ).fetchone()
    assert p_push is not None
    events: list[PushEvent] = []
    # Each push on its own (no batch calls), so that P's and Q's calls can be told apart.
    settings = fast_settings(url, lease_seconds=2, http_timeout=3.4, per_client=4, batches=False)
    summary = asyncio.run(Drainer(settings, events.append).run())

    p_events = [(e.attempt, e.outcome) for e in events if e.push_id == p_push[0]]
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        "SELECT status, attempts FROM crm.crm_push_queue WHERE id = %s", p_push
    ).fetchone()
    assert row == {"status": "done", "attempts": 2}, (row, p_events)
    assert p_events == [(1, Reported.LEASE_LOST), (2, Reported.DONE)]
    assert summary.outcomes[Reported.DONE] == 2  # P and Q, each finished once
    # Sent by the two attempts, never by a third: one deal upsert each.
    key = f"acrm-meeting-{p_meeting['id']}"
    upserts = [
        r
        for r in crm.state()["request_log"]
        if r["path"] == "/crm/v3/objects/deals/batch/upsert" and key in json.dumps(r["body"])
    ]
    assert len(upserts) == 2
    assert len([d for d in crm.deals() if d["key"] == key]) == 1
    # The timeout of attempt 1 is in the audit log; the push's last word is attempt 2's.
    timeouts = cur.execute(
        "SELECT count(*) AS n FROM crm.crm_push_log WHERE push_id = %s AND error_code = 'timeout'",
        p_push,
    ).fetchone()
    assert timeouts == {"n": 1}
    assert run_drain(url).pushes == 0


def test_a_deal_change_committed_while_the_drain_runs_reaches_the_crm(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """Issue 11: the change collapses into the deal's pending deal_created; a drain that ran
    while the change was not committed must not have sent that push without it."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "pipedrive")
    deal = pmake.deal(pmake.lead(client), value=0)

    with psycopg.connect(url) as writer:
        writer.execute(
            "UPDATE crm.deals SET stage = 'proposal', value = 5000 WHERE id = %s", (deal["id"],)
        )
        # push drain --once while the writer's transaction is open (retry_horizon 0: it tries
        # what is due once, and does not wait for what it could not claim).
        first = run_drain(url, retry_horizon=0.0)
        writer.commit()
    second = run_drain(url)

    [crm_deal] = crm.deals()
    assert (crm_deal["stage"], crm_deal["amount"]) == (
        str(crm.config["stage_map"]["proposal"]),
        5000,
    )
    assert (first.pushes, second.outcomes[Reported.DONE]) == (0, 1)
    statuses = conn.execute(
        "SELECT status FROM crm.crm_push_queue WHERE client_id = %s", (client["id"],)
    ).fetchall()
    assert statuses == [("done",)]
    assert run_drain(url).pushes == 0


def test_backoff_never_waits_longer_than_finish_push_accepts() -> None:
    settings = DrainSettings(database_url="")
    huge = CrmError(Outcome.RETRY, "rate_limited", "429", status=429, retry_after=1e15)
    later = backoff(huge, 1, settings)
    slow = CrmError(Outcome.RETRY, "server_error", "503", status=503, retry_after=1e15)
    for when in (later, backoff(slow, 10_000, settings)):
        wait = when - when.now(when.tzinfo)
        assert timedelta(days=6) < wait < MAX_RETRY_DELAY


def test_a_stopped_drain_gives_back_the_pushes_it_claimed_and_did_not_start(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """A lane claims 20 pushes at once but runs one at a time; the drain stops (its
    --max-seconds) after the first few: the pushes it never started are pending again at
    once, their attempt given back, not left in flight until their lease lapses."""
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "pipedrive")
    crm.configure(latency_ms=150)
    for _ in range(20):
        pmake.meeting(pmake.lead(client, company=None))
    settings = fast_settings(url, per_client=1, batch_size=20, max_seconds=0.8, http_timeout=5)
    summary = asyncio.run(Drainer(settings).run())
    cur = conn.cursor(row_factory=dict_row)
    pushes = cur.execute(
        "SELECT status, attempts, lease_owner, last_error, run_after <= now() AS due"
        " FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id",
        (client["id"],),
    ).fetchall()
    done = [p for p in pushes if p["status"] == "done"]
    given_back = [p for p in pushes if p["status"] == "pending"]
    assert done and given_back, pushes
    assert len(done) + len(given_back) == 20  # nothing left in flight
    assert len(done) == summary.outcomes["done"]
    for push in given_back:
        assert push["attempts"] == 0 and push["lease_owner"] is None and push["due"]
        assert "drain stopped" in push["last_error"]
    # The next drain sends them.
    run_drain(url)
    assert conn.execute(
        "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND status = 'done'",
        (client["id"],),
    ).fetchone() == (20,)


def test_an_idle_lane_asks_less_and_less_often_for_pushes_another_process_holds_up(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lead's second push is due, but another process is still sending its first: the lane
    can claim nothing. It asks again after 50 ms, then 100, 200, 400 ms (not every 50 ms for
    as long as the other process takes), and takes the push soon after the first is done."""
    conn, url = pushdb
    client = pmake.client()
    connect_crm(pmake, sandbox, client, "pipedrive")
    lead = pmake.lead(client)
    pmake.meeting(lead)
    second = pmake.meeting(lead)
    first = conn.execute(
        "SELECT p.id, p.attempts FROM crm.claim_pushes(%s, 'other-process', 1, 300) AS p",
        (client["id"],),
    ).fetchone()
    assert first is not None

    claims: list[float] = []
    real_claim = Store.claim

    async def claim(self: Store, *args: Any, **kwargs: Any) -> Any:
        claimed = await real_claim(self, *args, **kwargs)
        claims.append(time.monotonic())
        if len(claims) == 5:
            # The other process finishes its push now: right after the 5th claim found none.
            assert claimed == []
            await asyncio.to_thread(
                conn.execute,
                "SELECT crm.finish_push(%s, %s, 'other-process', %s, 'done', NULL, NULL)",
                (client["id"], first[0], first[1]),
            )
        return claimed

    monkeypatch.setattr(Store, "claim", claim)
    summary = asyncio.run(Drainer(fast_settings(url, batches=False)).run())

    assert summary.outcomes[Reported.DONE] == 1
    row = conn.execute(
        "SELECT status FROM crm.crm_push_queue WHERE meeting_id = %s", (second["id"],)
    ).fetchone()
    assert row == ("done",)
    gaps = [b - a for a, b in itertools.pairwise(claims[:5])]
    # Each wait is a lower bound (10 ms of slack for the clock).
    assert [g >= 0.05 * 2**i - 0.01 for i, g in enumerate(gaps)] == [True] * 4, gaps
    # Once unblocked, the push is taken by the next claim, at most a second later.
    assert claims[5] - claims[4] < 1.5, claims


def test_a_deferred_429_waits_as_told_within_bounds() -> None:
    """A 429's Retry-After, whatever it says, defers its push by at least
    RATE_LIMITED_MIN_WAIT (no busy loop on "come back now"), at most LONGEST_WAIT (never
    parked for good), with up to 250 ms of jitter; a deferral without a time waits 1 s."""

    def wait(retry_after: float | None, code: str = "rate_limited") -> float:
        before = datetime.now(UTC)
        exc = CrmError(Outcome.DEFER, code, "429", status=429, retry_after=retry_after)
        return (deferral(exc) - before).total_seconds()

    for told in (0.0, 0.1):
        assert RATE_LIMITED_MIN_WAIT <= wait(told) <= RATE_LIMITED_MIN_WAIT + 0.3
    assert 7.0 <= wait(7.0) <= 7.3
    for huge in (1e15, float("inf")):
        assert wait(huge) <= LONGEST_WAIT.total_seconds() + 0.05
    assert 0.95 <= wait(None) <= 1.05
    assert 2.0 <= wait(2.0, code="create_in_doubt") <= 2.05  # no jitter, no floor


def test_a_wait_a_crm_gives_is_a_number_of_seconds_or_none() -> None:
    """Retry-After and Close's rate_reset, however odd: NaN (a header, or a JSON body, which
    Python reads NaN from) is no time at all; a past or negative time is now; infinity stays
    infinite (the deferral clamps it); a boolean is no number."""
    body = json.loads('{"error": {"rate_reset": NaN}}')
    assert retry_after_seconds({"retry-after": "nan"}, None) is None
    assert retry_after_seconds({}, body) is None
    assert retry_after_seconds({}, {"error": {"rate_reset": True}}) is None
    assert retry_after_seconds({"retry-after": "-3"}, None) == 0.0
    assert retry_after_seconds({}, {"error": {"rate_reset": -2}}) == 0.0
    assert retry_after_seconds({"retry-after": "Mon, 01 Jan 2001 00:00:00 GMT"}, None) == 0.0
    assert retry_after_seconds({"retry-after": "2.5"}, None) == 2.5
    assert retry_after_seconds({"retry-after": "inf"}, None) == float("inf")
    limited = CrmError(Outcome.DEFER, "rate_limited", "429", status=429, retry_after=float("inf"))
    assert deferral(limited) - datetime.now(UTC) <= LONGEST_WAIT
