"""Analytics at scale: one client of 100,000 leads, ~1,000,000 activities, 50,000 meetings and
20,000 deals with full stage history, among 9 other clients of the same size.

    python bench/bench_analytics.py [--clients 10] [--scale 1.0] [--runs 5] [--database-url URL]

Prints, as markdown:
* each spec function's median time for a 365-day window, with 1 client loaded and with all,
  and their ratio (targets: < 250 ms, ratio <= 1.2);
* all five MAM models computed in SQL against fetching the same rows into Python and running
  marketing-attribution-models (MAM) or a NumPy implementation, fetch included;
and writes EXPLAIN (ANALYZE, BUFFERS) of every statement each spec function runs (through
auto_explain) to bench/plans/, flagging any sequential scan of a large table.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from agency_crm import schema
from common import (
    add_client,
    add_database_url,
    bench_database,
    log,
    markdown_header,
    markdown_row,
)

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
PLANS = Path(__file__).with_name("plans")
SPEC_CALLS = {
    "get_show_rate_analysis": "SELECT * FROM crm.get_show_rate_analysis(%(c)s, 365, %(as_of)s)",
    "get_funnel_analytics": "SELECT * FROM crm.get_funnel_analytics(%(c)s, 365, %(as_of)s)",
    "get_channel_revenue_attribution": (
        "SELECT * FROM crm.get_channel_revenue_attribution(%(c)s, 365, 'time_decay', %(as_of)s)"
    ),
    "get_lost_deal_analysis": "SELECT * FROM crm.get_lost_deal_analysis(%(c)s, 365, %(as_of)s)",
}
MODELS = ["first_touch", "last_touch", "linear", "position_based", "time_decay"]
BIG_TABLES = ("leads", "activities", "meetings", "deals", "deal_stage_history")


def seed_client(conn: psycopg.Connection[Any], client: uuid.UUID, scale: float, seed: int) -> None:
    """One client, generated set-based with a fixed random seed."""
    n_leads, n_deal_leads = int(100_000 * scale), int(20_000 * scale)
    n_meetings = int(50_000 * scale)
    p = {
        "c": client,
        "leads": n_leads,
        "deal_leads": n_deal_leads,
        "meetings": n_meetings,
        "as_of": AS_OF,
        "seed": seed / 100.0,
    }
    conn.execute("SELECT setseed(%(seed)s)", p)
    add_client(conn, client, "Bench client")
    conn.execute(
        """
        INSERT INTO crm.leads (client_id, email, status, created_at)
        SELECT %(c)s, 'lead' || g || '@' || %(c)s || '.example', 'contacted',
               %(as_of)s - (30 + random() * 400) * interval '1 day'
        FROM generate_series(1, %(leads)s) AS g
        """,
        p,
    )
    # The first deal_leads leads (by email) get 40 touches each, the others 2 or 3: about
    # 1,000,000 activities at scale 1.
    conn.execute(
        """
        WITH numbered AS (
            SELECT l.id, l.created_at, row_number() OVER (ORDER BY l.email) AS rn
            FROM crm.leads AS l WHERE l.client_id = %(c)s
        )
        INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)
        SELECT %(c)s, n.id,
               (ARRAY['email', 'linkedin', 'sms', 'voice', 'mail']::crm.channel_type[])
                   [1 + floor(random() * 5)::int],
               n.created_at + random() * interval '25 days'
        FROM numbered AS n
        CROSS JOIN LATERAL generate_series(
            1, CASE WHEN n.rn <= %(deal_leads)s THEN 40 ELSE 2 + (n.rn %% 2)::int END
        ) AS k
        """,
        p,
    )
    conn.execute(
        """
        INSERT INTO crm.meetings (client_id, lead_id, booked_at, scheduled_at, meeting_type,
                                  confirmed, confirmed_at, meeting_outcome)
        SELECT %(c)s, l.id, b.booked_at, b.booked_at + (1 + random() * 10) * interval '1 day',
               (ARRAY['discovery', 'demo', 'follow_up'])[1 + floor(random() * 3)::int],
               random() < 0.5, b.booked_at + interval '1 hour',
               (ARRAY['good', 'bad', 'no_show', 'cancelled', 'rescheduled', NULL, 'good'])
                   [1 + floor(random() * 7)::int]
        FROM (
            SELECT l.id, l.created_at FROM crm.leads AS l
            WHERE l.client_id = %(c)s ORDER BY random() LIMIT %(meetings)s
        ) AS l
        CROSS JOIN LATERAL (
            SELECT l.created_at + (20 + random() * 10) * interval '1 day' AS booked_at
        ) AS b
        """,
        p,
    )
    # One deal per deal lead, created after its touches, then moved through the pipeline.
    conn.execute(
        """
        WITH numbered AS (
            SELECT l.id, l.created_at, row_number() OVER (ORDER BY l.email) AS rn
            FROM crm.leads AS l WHERE l.client_id = %(c)s
        )
        INSERT INTO crm.deals (client_id, lead_id, name, value, created_at)
        SELECT %(c)s, n.id, 'Deal ' || n.rn, round((1000 + random() * 49000)::numeric, 2),
               n.created_at + interval '26 days'
        FROM numbered AS n WHERE n.rn <= %(deal_leads)s
        """,
        p,
    )
    for stage, share, days in [
        ("proposal", 0.9, 5),
        ("negotiation", 0.8, 12),
        ("verbal_commit", 0.7, 20),
    ]:
        conn.execute(
            """
            UPDATE crm.deals AS d
            SET stage = %(stage)s::crm.deal_stage_type,
                stage_changed_at = d.created_at + %(days)s * interval '1 day'
            WHERE d.client_id = %(c)s AND random() < %(share)s AND d.stage <> 'qualification'
               OR d.client_id = %(c)s AND %(stage)s = 'proposal' AND random() < %(share)s
            """,
            p | {"stage": stage, "share": share, "days": days},
        )
    conn.execute(
        """
        UPDATE crm.deals AS d
        SET stage = 'closed_won', closed_at = d.created_at + (25 + random() * 30) * interval '1 day'
        WHERE d.client_id = %(c)s AND random() < 0.7
        """,
        p,
    )
    conn.execute(
        """
        UPDATE crm.deals AS d
        SET stage = 'closed_lost',
            lost_reason = (enum_range(NULL::crm.deal_lost_reason_type))[
                1 + floor(random() * 10)::int
            ],
            closed_at = d.created_at + (25 + random() * 30) * interval '1 day'
        WHERE d.client_id = %(c)s AND d.stage <> 'closed_won' AND random() < 0.67
        """,
        p,
    )
    conn.commit()


def timed(conn: psycopg.Connection[Any], query: str, params: dict[str, Any], runs: int) -> float:
    times = []
    conn.execute(query.encode(), params).fetchall()  # warm
    for _ in range(runs):
        started = time.perf_counter()
        conn.execute(query.encode(), params).fetchall()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def explain_all(conn: psycopg.Connection[Any], client: uuid.UUID) -> list[str]:
    """Write each spec function's inner plans to bench/plans/; return the seq-scan warnings."""
    PLANS.mkdir(exist_ok=True)
    warnings = []
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("LOAD 'auto_explain'")
    for setting, value in [
        ("log_min_duration", "0"),
        ("log_nested_statements", "on"),
        ("log_analyze", "on"),
        ("log_buffers", "on"),
        ("log_level", "notice"),
    ]:
        conn.execute(
            sql.SQL("SET auto_explain.{} = {}").format(sql.Identifier(setting), sql.Literal(value))
        )
    for name, query in SPEC_CALLS.items():
        conn.execute("SELECT 'flush'")  # the previous statement's plan is logged when it ends
        notices.clear()
        conn.execute(query.encode(), {"c": client, "as_of": AS_OF}).fetchall()
        conn.execute("SELECT 'flush'")
        text = "\n\n".join(n for n in notices if ("Plan" in n or "->" in n) and "'flush'" not in n)
        (PLANS / f"{name}.txt").write_text(text + "\n")
        for line in text.splitlines():
            if "Seq Scan on" in line and any(f" {t} " in line + " " for t in BIG_TABLES):
                warnings.append(f"{name}: {line.strip()}")
    conn.execute("SET auto_explain.log_min_duration = -1")
    return warnings


def fetch_touches(conn: psycopg.Connection[Any], client: uuid.UUID) -> list[tuple[Any, ...]]:
    return conn.execute(
        """
        SELECT d.id, d.value::float8, a.channel::text,
               extract(epoch FROM d.created_at - a.occurred_at)::float8 / 3600 AS hours
        FROM crm.deals AS d
        JOIN crm.activities AS a
          ON a.client_id = d.client_id AND a.lead_id = d.lead_id AND a.occurred_at <= d.created_at
        WHERE d.client_id = %s AND d.stage = 'closed_won' AND d.deleted_at IS NULL
          AND a.deleted_at IS NULL AND d.closed_at >= %s - interval '365 days' AND d.closed_at < %s
        ORDER BY d.id, a.occurred_at, a.id
        """,
        (client, AS_OF, AS_OF),
    ).fetchall()


def with_mam(conn: psycopg.Connection[Any], client: uuid.UUID) -> None:
    import polars as pl
    from mam import MAM

    rows = fetch_touches(conn, client)
    journeys: dict[Any, tuple[list[str], list[str], float]] = {}
    for deal, value, channel, hours in rows:
        j = journeys.setdefault(deal, ([], [], value))
        j[0].append(channel)
        j[1].append(repr(hours))
    frame = pl.DataFrame(
        {
            "journey_id": [str(k) for k in journeys],
            "channels": [" > ".join(c) for c, _, _ in journeys.values()],
            "conv": [True] * len(journeys),
            "hours": [" > ".join(h) for _, h, _ in journeys.values()],
            "value": [v for _, _, v in journeys.values()],
        }
    )
    mam = MAM(
        frame,
        format_type="journey",
        channels_colname="channels",
        journey_with_conv_colname="conv",
        time_till_conv_colname="hours",
        conversion_value_colname="value",
    )
    for run in (
        mam.run_first_click,
        mam.run_last_click,
        mam.run_linear,
        mam.run_position_based,
        lambda: mam.run_time_decay(half_life_hours=168.0),
    ):
        run().to_dict()


def with_numpy(conn: psycopg.Connection[Any], client: uuid.UUID) -> None:
    import numpy as np

    rows = fetch_touches(conn, client)
    deal_ids = np.array([hash(r[0]) for r in rows])
    value = np.array([r[1] for r in rows])
    channels, channel_idx = np.unique(np.array([r[2] for r in rows]), return_inverse=True)
    hours = np.array([r[3] for r in rows])
    starts = np.r_[True, deal_ids[1:] != deal_ids[:-1]]
    group = np.cumsum(starts) - 1
    n = np.bincount(group)[group]
    pos = np.arange(len(rows)) - np.flatnonzero(starts)[group]
    first, last = pos == 0, pos == n - 1
    decay = 0.5 ** (hours / 168.0)
    weights = {
        "first_touch": first.astype(float),
        "last_touch": last.astype(float),
        "linear": 1.0 / n,
        "position_based": np.where(
            n == 1,
            1.0,
            np.where(n == 2, 0.5, np.where(first | last, 0.4, 0.2 / np.maximum(n - 2, 1))),
        ),
        "time_decay": decay / np.bincount(group, decay)[group],
    }
    for w in weights.values():
        np.bincount(channel_idx, w * value, minlength=len(channels))


def with_sql(conn: psycopg.Connection[Any], client: uuid.UUID) -> None:
    for model in MODELS:
        conn.execute(
            "SELECT * FROM crm.get_channel_revenue_attribution(%s, 365, %s, %s)",
            (client, model, AS_OF),
        ).fetchall()


def side_by_side(conn: psycopg.Connection[Any], client: uuid.UUID, runs: int) -> list[str]:
    results: dict[str, tuple[float, float]] = {}
    contenders: dict[str, Callable[..., None]] = {
        "SQL (crm.get_channel_revenue_attribution x 5)": with_sql,
        "NumPy, fetch included": with_numpy,
        "MAM 2.1.1, fetch included": with_mam,
    }
    for label, run in contenders.items():
        times, grown = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            run(conn, client)
            times.append(time.perf_counter() - started)
            grown.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
        results[label] = (statistics.median(times), max(grown) / 1024)
    base = results["SQL (crm.get_channel_revenue_attribution x 5)"][0]
    lines = [
        markdown_header("five models, 365 days", "median s", "x SQL", "client peak RSS growth MB")
    ]
    for label, (t, mb) in results.items():
        lines.append(markdown_row(label, f"{t:.2f}", f"{t / base:.1f}x", f"{mb:.0f}"))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    add_database_url(parser)
    args = parser.parse_args(argv)
    with (
        bench_database(args.database_url, "bench_analytics") as (_, db),
        psycopg.connect(db.url) as conn,
    ):
        schema.upgrade(conn)
        conn.commit()
        clients = [uuid.UUID(int=i + 1) for i in range(args.clients)]
        started = time.perf_counter()
        seed_client(conn, clients[0], args.scale, 1)
        conn.commit()  # VACUUM runs outside a transaction: end the one the reads opened
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        counts = conn.execute(
            """
            SELECT (SELECT count(*) FROM crm.leads), (SELECT count(*) FROM crm.activities),
                   (SELECT count(*) FROM crm.meetings), (SELECT count(*) FROM crm.deals),
                   (SELECT count(*) FROM crm.deals WHERE stage = 'closed_won'),
                   (SELECT count(*) FROM crm.deal_stage_history)
            """
        ).fetchone()
        log(f"client 1 loaded in {time.perf_counter() - started:.0f} s: {counts}")
        p = {"c": clients[0], "as_of": AS_OF}
        one = {fn: timed(conn, q, p, args.runs) for fn, q in SPEC_CALLS.items()}
        for i, client in enumerate(clients[1:], start=2):
            seed_client(conn, client, args.scale, i)
            log(f"client {i} loaded ({time.perf_counter() - started:.0f} s)")
        conn.commit()  # VACUUM runs outside a transaction: end the one the reads opened
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        conn.autocommit = False
        total = conn.execute(
            "SELECT (SELECT count(*) FROM crm.leads) + (SELECT count(*) FROM crm.activities)"
            " + (SELECT count(*) FROM crm.meetings) + (SELECT count(*) FROM crm.deals)"
            " + (SELECT count(*) FROM crm.deal_stage_history)"
        ).fetchone()
        many = {fn: timed(conn, q, p, args.runs) for fn, q in SPEC_CALLS.items()}
        print(
            f"One client: {counts[0]:,} leads, {counts[1]:,} activities, {counts[2]:,}"
            f" meetings, {counts[3]:,} deals ({counts[4]:,} won), {counts[5]:,} stage"
            f" history rows; {args.clients} clients, {total[0]:,} rows in all.\n"
        )
        print(
            markdown_header(
                "365-day window", "1 client (ms)", f"{args.clients} clients (ms)", "ratio"
            )
        )
        for fn in SPEC_CALLS:
            print(
                markdown_row(
                    f"`{fn}`",
                    f"{one[fn] * 1000:.0f}",
                    f"{many[fn] * 1000:.0f}",
                    f"{many[fn] / one[fn]:.2f}",
                )
            )
        print(f"\nmedian of {args.runs} warm runs; targets: < 250 ms, ratio <= 1.2\n")
        print("\n".join(side_by_side(conn, clients[0], 3)))
        warnings = explain_all(conn, clients[0])
        print(
            f"\nplans written to {PLANS}/; sequential scans of large tables: "
            f"{'none' if not warnings else ''}"
        )
        for w in warnings:
            print(f"- {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
