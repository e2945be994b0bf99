"""Cost of the meeting lifecycle triggers: booking N meetings with all triggers, against the
same rows inserted with the same lead updates and queue inserts written by hand in plain SQL.

    python bench/bench_lifecycle.py [--meetings 50000] [--runs 3] [--database-url URL]

Both sides run on clones of one seeded database (one client with an active CRM config, N
leads with three touches each), with the same foreign keys and CHECKs; the hand-written side
has the lifecycle triggers of crm.meetings dropped and does their work itself. Two shapes:

* bulk: one INSERT ... SELECT of N meetings (triggers) against three set-based statements;
* per row: N single-row INSERTs (triggers) against N x three statements, both pipelined.

Each run checks that both sides end with the same meetings, leads and queue rows. Prints a
markdown table of median seconds and the median of the paired ratios triggers / hand-written,
with their range (target <= 1.3; exits 1 above it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from agency_crm import schema
from common import (
    add_client,
    add_database_url,
    add_leads,
    bench_database,
    database,
    log,
    markdown_header,
    markdown_row,
)

CLIENT = uuid.UUID("00000000-0000-4000-8000-000000000001")
CAMPAIGN = uuid.UUID("00000000-0000-4000-8000-000000000002")
TYPES = ["discovery", "demo", "follow_up", "close", "onboarding", "other"]
DURATION = "CASE {t} WHEN 'demo' THEN 45 WHEN 'onboarding' THEN 60 ELSE 30 END"
TOUCHES = """
    SELECT
        count(*)::integer AS n,
        min(a.occurred_at) AS first_at,
        (array_agg(a.id ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_id,
        (array_agg(a.channel ORDER BY a.occurred_at DESC, a.id DESC))[1] AS last_channel
    FROM crm.activities AS a
    WHERE a.client_id = {client} AND a.lead_id = {lead} AND a.deleted_at IS NULL
      AND a.occurred_at <= now()
"""
LEAD_UPDATE_SET = """
    meeting_booked = true,
    meeting_booked_at = least(l.meeting_booked_at, now()),
    status = CASE WHEN l.status IN ('qualified', 'customer') THEN l.status
        ELSE 'meeting_booked' END
"""
LEAD_NEEDS_UPDATE = """
    (NOT l.meeting_booked OR l.meeting_booked_at > now()
     OR l.status NOT IN ('meeting_booked', 'qualified', 'customer'))
"""
HAS_CONFIG = """
    EXISTS (SELECT 1 FROM crm.client_crm_configs AS cfg
            WHERE cfg.client_id = {client} AND cfg.deleted_at IS NULL AND cfg.is_active)
"""
COLLAPSE = """
    ON CONFLICT (client_id, operation, (coalesce(deal_id, meeting_id, lead_id)))
    WHERE status = 'pending' DO UPDATE SET updated_at = now()
"""


def seed(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        schema.upgrade(conn)
        add_client(conn, CLIENT, "Bench", crm_api_key="k")
        conn.execute(
            "INSERT INTO crm.campaigns (id, client_id, name) VALUES (%s, %s, 'Q')",
            (CAMPAIGN, CLIENT),
        )
        add_leads(
            conn,
            CLIENT,
            n,
            campaign_id=sql.Literal(CAMPAIGN),
            status=sql.Literal("contacted"),
            created_at=sql.SQL("now() - interval '60 days'"),
        )
        conn.execute(
            """
            INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)
            SELECT l.client_id, l.id,
                   (ARRAY['email', 'linkedin', 'sms']::crm.channel_type[])[k],
                   now() - (40 - 10 * k) * interval '1 day' - random() * interval '12 hours'
            FROM crm.leads AS l CROSS JOIN generate_series(1, 3) AS k
            """
        )
        # Only the seeded tables: statistics saying meetings and the queue are empty would
        # make the cached foreign-key check plans scan them (quadratic over a long import).
        conn.execute("ANALYZE crm.clients, crm.campaigns, crm.leads, crm.activities")


def drop_lifecycle_triggers(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "DROP TRIGGER _200_lifecycle ON crm.meetings;"
        " DROP TRIGGER _500_after_insert ON crm.meetings"
    )
    conn.commit()


def bookings(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT client_id, id, campaign_id FROM crm.leads ORDER BY email"
    ).fetchall()
    return [
        (uuid.uuid4(), c, lead, camp, TYPES[i % len(TYPES)])
        for i, (c, lead, camp) in enumerate(rows)
    ]


# -- bulk ------------------------------------------------------------------------------------

BULK_SOURCE = """
    SELECT l.client_id, l.id AS lead_id, l.campaign_id,
           now() + (row_number() OVER (ORDER BY l.email)) * interval '1 minute' AS scheduled_at,
           (%(types)s::text[])[1 + (row_number() OVER (ORDER BY l.email) - 1) %% 6] AS meeting_type
    FROM crm.leads AS l
"""


def bulk_triggers(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"""
        INSERT INTO crm.meetings (client_id, lead_id, campaign_id, scheduled_at, meeting_type)
        SELECT client_id, lead_id, campaign_id, scheduled_at, meeting_type FROM ({BULK_SOURCE}) AS s
        """.encode(),
        {"types": TYPES},
    )
    conn.commit()


def bulk_by_hand(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        f"""
        INSERT INTO crm.meetings (
            client_id, lead_id, campaign_id, scheduled_at, meeting_type, duration_minutes,
            booked_at, converting_activity_id, converting_channel, touches_before_booking,
            days_to_booking
        )
        SELECT s.client_id, s.lead_id, s.campaign_id, s.scheduled_at, s.meeting_type,
               {DURATION.format(t="s.meeting_type")}, now(), t.last_id, t.last_channel, t.n,
               floor(extract(epoch FROM now() - t.first_at) / 86400)::integer
        FROM ({BULK_SOURCE}) AS s
        LEFT JOIN LATERAL ({TOUCHES.format(client="s.client_id", lead="s.lead_id")}) AS t ON true
        """.encode(),
        {"types": TYPES},
    )
    conn.execute(
        f"""
        UPDATE crm.leads AS l SET {LEAD_UPDATE_SET}
        FROM (SELECT DISTINCT client_id, lead_id FROM crm.meetings) AS b
        WHERE l.client_id = b.client_id AND l.id = b.lead_id AND {LEAD_NEEDS_UPDATE}
        """.encode()
    )
    conn.execute(
        f"""
        INSERT INTO crm.crm_push_queue (client_id, operation, lead_id, meeting_id)
        SELECT m.client_id, 'meeting_booked', m.lead_id, m.id FROM crm.meetings AS m
        WHERE {HAS_CONFIG.format(client="m.client_id")}
        ORDER BY m.client_id, m.id
        {COLLAPSE}
        """.encode()
    )
    conn.commit()


# -- per row ---------------------------------------------------------------------------------


def rows_triggers(conn: psycopg.Connection[Any], todo: list[tuple[Any, ...]]) -> None:
    with conn.pipeline(), conn.cursor() as cur:
        for i, (mid, client, lead, campaign, mtype) in enumerate(todo):
            cur.execute(
                """
                INSERT INTO crm.meetings (id, client_id, lead_id, campaign_id, scheduled_at,
                                          meeting_type)
                VALUES (%s, %s, %s, %s, now() + %s * interval '1 minute', %s)
                """,
                (mid, client, lead, campaign, i + 1, mtype),
            )
    conn.commit()


def rows_by_hand(conn: psycopg.Connection[Any], todo: list[tuple[Any, ...]]) -> None:
    insert = f"""
        INSERT INTO crm.meetings (
            id, client_id, lead_id, campaign_id, scheduled_at, meeting_type, duration_minutes,
            booked_at, converting_activity_id, converting_channel, touches_before_booking,
            days_to_booking
        )
        SELECT %(id)s, %(client)s, %(lead)s, %(campaign)s, now() + %(i)s * interval '1 minute',
               %(type)s, {DURATION.format(t="%(type)s")}, now(), t.last_id, t.last_channel, t.n,
               floor(extract(epoch FROM now() - t.first_at) / 86400)::integer
        FROM ({TOUCHES.format(client="%(client)s", lead="%(lead)s")}) AS t
    """
    lead_update = f"""
        UPDATE crm.leads AS l SET {LEAD_UPDATE_SET}
        WHERE l.client_id = %(client)s AND l.id = %(lead)s AND {LEAD_NEEDS_UPDATE}
    """
    enqueue = f"""
        INSERT INTO crm.crm_push_queue (client_id, operation, lead_id, meeting_id)
        SELECT %(client)s, 'meeting_booked', %(lead)s, %(id)s
        WHERE {HAS_CONFIG.format(client="%(client)s")}
        {COLLAPSE}
    """
    with conn.pipeline(), conn.cursor() as cur:
        for i, (mid, client, lead, campaign, mtype) in enumerate(todo):
            p = {"id": mid, "client": client, "lead": lead, "campaign": campaign, "i": i + 1,
                 "type": mtype}  # fmt: skip
            cur.execute(insert.encode(), p)
            cur.execute(lead_update.encode(), p)
            cur.execute(enqueue.encode(), p)
    conn.commit()


# -- harness ---------------------------------------------------------------------------------


def outcome(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    meetings = conn.execute(
        """
        SELECT md5(string_agg(concat_ws('|', lead_id, campaign_id, meeting_type, duration_minutes,
                   converting_activity_id, converting_channel, touches_before_booking,
                   days_to_booking, showed_up, meeting_outcome), ',' ORDER BY lead_id)),
               count(*)
        FROM crm.meetings
        """
    ).fetchone()
    leads = conn.execute(
        "SELECT count(*) FILTER (WHERE meeting_booked AND status = 'meeting_booked') FROM crm.leads"
    ).fetchone()
    queue = conn.execute(
        "SELECT count(*), count(DISTINCT meeting_id) FROM crm.crm_push_queue"
    ).fetchone()
    return (meetings, leads, queue)


def measure(
    server: str, template: str, run: Callable[[psycopg.Connection[Any]], None], hand: bool
) -> tuple[float, tuple[Any, ...]]:
    with database(server, "bench", template=template) as (_, url), psycopg.connect(url) as conn:
        if hand:
            drop_lifecycle_triggers(conn)
        conn.execute("CHECKPOINT")
        started = time.perf_counter()
        run(conn)
        elapsed = time.perf_counter() - started
        return elapsed, outcome(conn)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meetings", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--shape", choices=["all", "bulk", "per-row"], default="all", help="which shape to time"
    )
    add_database_url(parser)
    args = parser.parse_args(argv)

    with bench_database(args.database_url, "bench_template") as (server, template):
        log(f"seeding {args.meetings} leads with 3 touches each ...")
        seed(template.url, args.meetings)
        with psycopg.connect(template.url) as conn:
            todo = bookings(conn)
        shapes: dict[str, tuple[Callable[..., None], Callable[..., None]]] = {
            "bulk: one INSERT ... SELECT": (bulk_triggers, bulk_by_hand),
            "per row: single-row INSERTs, pipelined": (
                lambda c: rows_triggers(c, todo),
                lambda c: rows_by_hand(c, todo),
            ),
        }
        if args.shape != "all":
            shapes = {k: v for k, v in shapes.items() if k.startswith(args.shape.replace("-", " "))}
        print(
            markdown_header(
                f"{args.meetings} meetings", "triggers (s)", "hand-written SQL (s)", "ratio (range)"
            )
        )
        worst = 0.0
        for shape, (with_triggers, by_hand) in shapes.items():
            t_times: list[float] = []
            h_times: list[float] = []
            for r in range(args.runs):
                log(f"  {shape}: run {r + 1}/{args.runs}")
                t, t_out = measure(server, template.name, with_triggers, hand=False)
                h, h_out = measure(server, template.name, by_hand, hand=True)
                if t_out != h_out:
                    log(f"MISMATCH {shape}: triggers {t_out} != by hand {h_out}")
                    return 1
                t_times.append(t)
                h_times.append(h)
            t_median, h_median = statistics.median(t_times), statistics.median(h_times)
            # Each run measures both sides in turn: the ratio of a pair is what the machine's
            # noise affects least, so the median pair ratio is the figure, with its spread.
            pairs = sorted(t / h for t, h in zip(t_times, h_times, strict=True))
            ratio = statistics.median(pairs)
            worst = max(worst, ratio)
            print(
                markdown_row(
                    shape,
                    f"{t_median:.2f}",
                    f"{h_median:.2f}",
                    f"{ratio:.2f}x ({pairs[0]:.2f}-{pairs[-1]:.2f})",
                )
            )
        print(
            f"\n{args.runs} paired runs each; ratio: the median of the pairs' ratios (their range)."
            f" Target <= 1.3 (worst here {worst:.2f})"
        )
        return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
