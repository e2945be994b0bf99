"""Many app workers writing one client's shared leads at once, for a few seconds: touches,
bookings, outcomes, deal stage moves, values and reopenings. Afterwards no write failed that a
user would not expect, the kept attribution credits equal a from-scratch computation, every
stage history chain is continuous and in time order, and no meeting has two live deals.

READ COMMITTED, as app code runs. The only refusals a worker may meet are the lifecycle rules
it can race into (55000: a deal another worker closed meanwhile, or leaving a good outcome
while its deal is open): anything else, a deadlock, a duplicate key or a spurious check
violation, fails the test."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers.fixtures import T0, Make

pytestmark = pytest.mark.stress

WORKERS = 6
SECONDS = 4.0
LEADS = 5
EXPECTED = {"55000"}
CHANNELS = ["email", "sms", "linkedin", "voice", "mail"]
OPEN = ["qualification", "proposal", "negotiation", "verbal_commit", "contract_sent"]


def seed(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    make = Make(conn)
    client = make.client(auto_create_deals=True)
    make.crm_config(client)
    leads = [make.lead(client, created_at=T0 - timedelta(days=60)) for _ in range(LEADS)]
    for lead in leads:
        make.activity(lead, channel="email", occurred_at=T0 - timedelta(days=30))
        make.deal(lead, created_at=T0, probability=None)
        make.meeting(lead, scheduled_at=T0 + timedelta(days=1), booked_at=T0 - timedelta(days=1))
    conn.commit()
    return {"client": client["id"], "leads": [lead["id"] for lead in leads]}


def one_op(
    conn: psycopg.Connection[Any],
    rng: random.Random,
    ids: dict[str, Any],
    lead: Any = None,
    kind: str | None = None,
) -> str:
    client, lead = ids["client"], lead or rng.choice(ids["leads"])
    kind = kind or rng.choice(
        ["touch", "touch", "touch", "book", "outcome", "stage", "stage", "value", "deal", "reopen"]
    )
    if kind == "touch":
        conn.execute(
            "INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)"
            " VALUES (%s, %s, %s, %s)",
            (client, lead, rng.choice(CHANNELS), T0 - timedelta(hours=rng.randint(0, 2000))),
        )
    elif kind == "book":
        conn.execute(
            "INSERT INTO crm.meetings (client_id, lead_id, scheduled_at, booked_at)"
            " VALUES (%s, %s, %s, %s)",
            (client, lead, T0 + timedelta(hours=rng.randint(1, 500)), T0),
        )
    elif kind == "outcome":
        conn.execute(
            """
            UPDATE crm.meetings SET meeting_outcome = %s
            WHERE id = (
                SELECT id FROM crm.meetings WHERE client_id = %s AND lead_id = %s
                ORDER BY random() LIMIT 1
            )
            """,
            (rng.choice(["good", "good", "bad", "no_show", "pending", "cancelled"]), client, lead),
        )
    elif kind in ("stage", "value", "reopen"):
        row = conn.execute(
            "SELECT id, stage::text FROM crm.deals WHERE client_id = %s AND lead_id = %s"
            " ORDER BY random() LIMIT 1",
            (client, lead),
        ).fetchone()
        assert row is not None
        deal, stage = row
        if kind == "value":
            conn.execute(
                "UPDATE crm.deals SET value = %s WHERE id = %s", (rng.randint(0, 90000), deal)
            )
        elif kind == "reopen" or stage in ("closed_won", "closed_lost"):
            if stage in ("closed_won", "closed_lost"):
                conn.execute("SELECT crm.reopen_deal(%s, 'stress')", (deal,))
        else:
            target = rng.choice([*OPEN, "closed_won", "closed_lost"])
            if target != stage:
                conn.execute(
                    "UPDATE crm.deals SET stage = %s, lost_reason = %s WHERE id = %s",
                    (target, "no_budget" if target == "closed_lost" else None, deal),
                )
    else:
        conn.execute(
            "INSERT INTO crm.deals (client_id, lead_id, name, created_at)"
            " VALUES (%s, %s, 'More', %s)",
            (client, lead, T0 + timedelta(hours=rng.randint(0, 100))),
        )
    return kind


def worker(dsn: str, seed_: int, ids: dict[str, Any], deadline: float, out: Counter[str]) -> None:
    rng = random.Random(seed_)
    with psycopg.connect(dsn) as conn:
        while time.monotonic() < deadline:
            try:
                if rng.random() < 0.3:
                    # Several touches of one lead in one transaction (an import batch). Writes
                    # of several leads, or a touch and then a good outcome, in one transaction
                    # take row locks in an order another transaction can reverse (see
                    # docs/lifecycle.md, "Concurrency"): app code writes one lead at a time.
                    lead = rng.choice(ids["leads"])
                    for _ in range(rng.randint(2, 4)):
                        kind = one_op(conn, rng, ids, lead, "touch")
                else:
                    kind = one_op(conn, rng, ids)
                conn.commit()
                out[f"ok {kind}"] += 1
            except psycopg.Error as exc:
                conn.rollback()
                out[f"{exc.sqlstate} {exc.diag.message_primary}"] += 1


def test_concurrent_app_writers_lose_nothing(fresh_db: psycopg.Connection[Any]) -> None:
    ids = seed(fresh_db)
    deadline = time.monotonic() + SECONDS
    results: list[Counter[str]] = [Counter() for _ in range(WORKERS)]
    threads = [
        threading.Thread(target=worker, args=(fresh_db.info.dsn, n, ids, deadline, results[n]))
        for n in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    total = sum(results, Counter())
    unexpected = {
        k: v for k, v in total.items() if not k.startswith("ok") and k[:5] not in EXPECTED
    }
    assert not unexpected, unexpected
    done = sum(v for k, v in total.items() if k.startswith("ok"))
    assert done >= 100, total

    client = ids["client"]
    mismatched = fresh_db.execute(
        """
        WITH kept AS (
            SELECT deal_id, channel, touches, round(linear::numeric, 9) AS linear,
                   round(time_decay::numeric, 9) AS decay, round(first_touch::numeric, 9) AS ft
            FROM crm_private.deal_attribution WHERE client_id = %(c)s
        ), fresh AS (
            SELECT deal_id, channel, touches, round(linear::numeric, 9),
                   round(time_decay::numeric, 9), round(first_touch::numeric, 9)
            FROM crm_private.compute_deal_attribution(
                %(c)s, ARRAY(SELECT id FROM crm.deals WHERE client_id = %(c)s)
            )
        )
        SELECT count(*) FROM (
            (TABLE kept EXCEPT TABLE fresh) UNION ALL (TABLE fresh EXCEPT TABLE kept)
        ) AS x
        """,
        {"c": client},
    ).fetchone()
    assert mismatched == (0,)

    broken = fresh_db.execute(
        """
        WITH h AS (
            SELECT deal_id, from_stage, to_stage, changed_at,
                   lag(to_stage) OVER w AS prev_stage, lag(changed_at) OVER w AS prev_at,
                   row_number() OVER w AS n,
                   row_number() OVER (PARTITION BY deal_id ORDER BY seq DESC) AS from_end
            FROM crm.deal_stage_history WHERE client_id = %(c)s
            WINDOW w AS (PARTITION BY deal_id ORDER BY seq)
        )
        SELECT count(*) FROM h JOIN crm.deals AS d ON d.id = h.deal_id
        WHERE (h.n = 1 AND h.from_stage IS NOT NULL)
           OR (h.n > 1 AND h.from_stage IS DISTINCT FROM h.prev_stage)
           OR h.changed_at < h.prev_at
           OR (h.from_end = 1 AND (h.to_stage <> d.stage OR h.changed_at <> d.stage_changed_at))
        """,
        {"c": client},
    ).fetchone()
    assert broken == (0,)

    doubled = fresh_db.execute(
        """
        SELECT count(*) FROM (
            SELECT meeting_id FROM crm.deals
            WHERE client_id = %(c)s AND meeting_id IS NOT NULL AND deleted_at IS NULL
            GROUP BY meeting_id HAVING count(*) > 1
        ) AS x
        """,
        {"c": client},
    ).fetchone()
    assert doubled == (0,)
    unlinked = fresh_db.execute(
        """
        SELECT count(*) FROM crm.meetings AS m
        WHERE m.client_id = %(c)s AND m.meeting_outcome = 'good' AND m.deal_id IS NULL
        """,
        {"c": client},
    ).fetchone()
    assert unlinked == (0,), "every good meeting of an auto-creating client has its deal"
