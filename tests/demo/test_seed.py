"""The demo's data (agency_crm.demo.seed): written through the real tables and triggers, every
lifecycle rule of docs/lifecycle.md exercised (counted from the data), the same data for the
same seed and as_of, and numbers in the analytics that look like a real agency's."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql.executors.noop import NoopExecutor

from agency_crm.demo import seed as demo
from agency_crm.demo.seed import (
    DEMO_CLIENTS,
    LIFECYCLE_RULES,
    LOST_REASONS,
    DemoSeedError,
    SeedSummary,
    create_clients,
    exercised_rules,
)
from tests.conftest import janitor, server_url
from tests.helpers.fixtures import Make

log = logging.getLogger(__name__)

CLIENT_IDS = [c.client_id for c in DEMO_CLIENTS]
# A fixed "now" in the past for the tests that compare runs (the triggers take as_of <= now()).
PAST_AS_OF = datetime(2026, 10, 15, 14, 30, tzinfo=UTC)


@dataclass
class Seeded:
    url: str
    as_of: datetime
    summary: SeedSummary
    counts: dict[str, int]

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url)


@pytest.fixture(scope="module")
def seeded(postgresql_noproc: NoopExecutor) -> Iterator[Seeded]:
    """The demo's data at scale 1.0 as the table owner, committed in a database of its own.
    as_of is fixed (the demo passes now), so these numbers are the same on every run."""
    template = postgresql_noproc.template_dbname
    with janitor(postgresql_noproc, f"acrm_demo_{uuid.uuid4().hex[:10]}", template) as j:
        url = server_url(postgresql_noproc, j.dbname)
        as_of = PAST_AS_OF
        with psycopg.connect(url) as conn:
            clients = create_clients(conn, as_of=as_of)
            summary = demo.seed(conn, clients, as_of=as_of)
            conn.commit()
            counts = exercised_rules(conn, CLIENT_IDS, strict=False)
        log.info("demo seed at scale 1.0: %.2f s, %s", summary.seconds, summary)
        yield Seeded(url, as_of, summary, counts)


def test_every_lifecycle_rule_is_exercised(seeded: Seeded, record_property: Any) -> None:
    record_property("seed_seconds", round(seeded.summary.seconds, 2))
    assert tuple(seeded.counts) == LIFECYCLE_RULES
    assert len(set(LIFECYCLE_RULES)) == len(LIFECYCLE_RULES) >= 45
    not_exercised = [rule for rule, times in seeded.counts.items() if times <= 0]
    assert not_exercised == [], f"rules the demo data never shows: {not_exercised}"
    with seeded.connect() as conn:
        assert exercised_rules(conn, CLIENT_IDS) == seeded.counts  # strict: no raise


def test_the_volumes_fit_the_demo(seeded: Seeded) -> None:
    s = seeded.summary
    assert (s.clients, s.campaigns) == (3, 13)
    assert 2900 <= s.leads <= 3100
    assert 3 * s.leads <= s.activities <= 5 * s.leads  # 1-8 touches, fewer for new leads
    assert 150 * 3 <= s.meetings <= 220 * 3
    assert 120 <= s.deals <= 260
    # Everything live goes to a fake CRM within the demo's minute.
    assert s.live_meetings + s.live_deals <= 800
    assert s.stage_changes > 2 * s.deals and s.reschedules > 30
    with seeded.connect() as conn:
        per_client = conn.execute(
            """
            SELECT c.name, c.default_currency, count(DISTINCT l.id), count(DISTINCT m.id),
                   count(DISTINCT d.currency)
            FROM crm.clients AS c
            JOIN crm.leads AS l ON l.client_id = c.id
            LEFT JOIN crm.meetings AS m ON m.client_id = c.id
            LEFT JOIN crm.deals AS d ON d.client_id = c.id
            GROUP BY c.id ORDER BY c.name
            """
        ).fetchall()
    assert [r[0] for r in per_client] == sorted(c.name for c in DEMO_CLIENTS)
    for name, currency, leads, meetings, currencies in per_client:
        assert 950 <= leads <= 1050, name
        assert 0.13 <= meetings / leads <= 0.24, name  # lead -> meeting, 15-20 %
        assert currencies == 1, f"{name}: the analytics of a client use one currency"
        assert currency == next(c.currency for c in DEMO_CLIENTS if c.name == name)


def test_times_lie_in_the_180_days_before_as_of(seeded: Seeded) -> None:
    """Every time the seed gives is in [as_of - 180 days, as_of]; meetings may be booked up
    to two weeks ahead, and only crm.reopen_deal (which takes no time) writes at now()."""
    start, end = seeded.as_of - timedelta(days=180), seeded.as_of
    with seeded.connect() as conn:
        times = conn.execute(
            """
            SELECT 'lead', min(created_at), max(created_at) FROM crm.leads
            UNION ALL SELECT 'campaign', min(created_at), max(created_at) FROM crm.campaigns
            UNION ALL SELECT 'touch', min(occurred_at), max(occurred_at) FROM crm.activities
            UNION ALL SELECT 'booking', min(booked_at), max(booked_at) FROM crm.meetings
            UNION ALL SELECT 'meeting row', min(created_at), max(created_at) FROM crm.meetings
            UNION ALL
            SELECT 'meeting write', min(least(confirmed_at, reminder_sent_at,
                       showed_up_confirmed_at, outcome_recorded_at, cancelled_at, deleted_at)),
                   max(greatest(confirmed_at, reminder_sent_at, showed_up_confirmed_at,
                       outcome_recorded_at, cancelled_at, deleted_at))
            FROM crm.meetings
            UNION ALL SELECT 'deal', min(created_at), max(created_at) FROM crm.deals
            UNION ALL
            SELECT 'soft delete', min(deleted_at), max(deleted_at)
            FROM (SELECT deleted_at FROM crm.leads UNION ALL SELECT deleted_at FROM crm.activities
                  UNION ALL SELECT deleted_at FROM crm.deals) AS d
            UNION ALL
            SELECT 'stage change', min(h.changed_at), max(h.changed_at)
            FROM crm.deal_stage_history AS h
            WHERE NOT EXISTS (  -- a reopen, and the close after it
                SELECT 1 FROM crm.deal_stage_history AS r
                WHERE r.deal_id = h.deal_id AND r.seq <= h.seq
                  AND r.from_stage IN ('closed_won', 'closed_lost') AND r.reason IS NOT NULL)
            """
        ).fetchall()
        for what, low, high in times:
            assert start <= low <= high <= end, (what, low, high)
        low, high = conn.execute(
            "SELECT min(scheduled_at), max(scheduled_at) FROM crm.meetings"
        ).fetchone() or (None, None)
        assert start <= low and end < high <= end + timedelta(days=14)
        # Upcoming meetings are unresolved: at most cancelled or rescheduled ahead of time.
        upcoming = conn.execute(
            "SELECT meeting_outcome, showed_up, count(*) FROM crm.meetings"
            " WHERE scheduled_at > %s AND deleted_at IS NULL GROUP BY 1, 2 ORDER BY 3 DESC",
            (end,),
        ).fetchall()
        assert upcoming and upcoming[0][:2] == (None, None)
        assert {(o, s) for o, s, _ in upcoming} <= {
            (None, None), ("cancelled", None), ("rescheduled", None), ("rescheduled", False),
        }  # fmt: skip
        reopened = conn.execute(
            "SELECT min(changed_at), max(changed_at) FROM crm.deal_stage_history"
            " WHERE from_stage IN ('closed_won', 'closed_lost') AND reason IS NOT NULL"
        ).fetchone()
        assert reopened is not None and end <= reopened[0] <= reopened[1] <= datetime.now(UTC)


class Drivers:
    """crm.get_show_rate_drivers over the three clients (about 450 resolved meetings)."""

    def __init__(self, conn: psycopg.Connection[Any], as_of: datetime) -> None:
        self.counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for client_id in CLIENT_IDS:
            for dimension, bucket, meetings, held in conn.execute(
                "SELECT dimension, bucket, meetings, held"
                " FROM crm.get_show_rate_drivers(%s, 180, %s)",
                (client_id, as_of),
            ):
                self.counts[(dimension, bucket)][0] += meetings
                self.counts[(dimension, bucket)][1] += held

    def rate(self, dimension: str, *buckets: str) -> float:
        """The show rate of these buckets together, in percent."""
        meetings = sum(self.counts[(dimension, b)][0] for b in buckets)
        return 100 * sum(self.counts[(dimension, b)][1] for b in buckets) / meetings

    def rates(self, dimension: str) -> list[float]:
        return [self.rate(d, b) for d, b in self.counts if d == dimension]


def test_show_rates_differ_by_lead_time_weekday_and_channel(seeded: Seeded) -> None:
    with seeded.connect() as conn:
        drivers = Drivers(conn, seeded.as_of)
        midweek = drivers.rate("weekday", "Tuesday", "Wednesday", "Thursday")
        assert drivers.rate("weekday", "Monday") < midweek - 5
        assert drivers.rate("weekday", "Friday") < midweek - 5
        short = drivers.rate("lead_time", "< 1 day", "1-3 days")
        assert drivers.rate("lead_time", "7-14 days", "14+ days") < short - 5
        assert drivers.rate("lead_time", "14+ days") < short - 10
        channels = drivers.rates("converting_channel")
        assert len(channels) == 6  # the five channels and inbound leads (no touch)
        assert max(channels) - min(channels) >= 8
        for client_id in CLIENT_IDS:
            row = conn.execute(
                "SELECT * FROM crm.get_show_rate_analysis(%s, 180, %s)", (client_id, seeded.as_of)
            ).fetchone()
            assert row is not None
            _, show, no_show, reschedule, confirmed, reminded, unresolved = row
            assert 60 <= show <= 85 and show + no_show == 100
            assert confirmed > show and reminded > show - 3  # confirmed leads turn up more
            assert 5 <= reschedule <= 30 and unresolved >= 1


def test_funnel_rates_are_plausible(seeded: Seeded) -> None:
    with seeded.connect() as conn:
        for client_id in CLIENT_IDS:
            funnel = conn.execute(
                "SELECT total_leads, meetings_booked, deals_won, show_rate, deal_win_rate,"
                " lead_to_meeting_rate, lead_to_win_rate"
                " FROM crm.get_funnel_analytics(%s, 180, %s)",
                (client_id, seeded.as_of),
            ).fetchone()
            assert funnel is not None
            leads, booked, won, show, win, to_meeting, to_win = funnel
            assert leads >= 950 and booked > 100 and won >= 10
            assert 12 <= to_meeting <= 24
            assert 45 <= show <= 85  # leads with a meeting held / leads with one booked
            assert 25 <= win <= 65
            assert 0.5 <= to_win <= 5


def test_every_lost_reason_is_in_each_clients_lost_deals(seeded: Seeded) -> None:
    with seeded.connect() as conn:
        for client_id in CLIENT_IDS:
            lost = conn.execute(
                "SELECT lost_reason::text FROM crm.get_lost_deal_analysis(%s, 180, %s)",
                (client_id, seeded.as_of),
            ).fetchall()
            assert {r[0] for r in lost} == set(LOST_REASONS)
            stages = conn.execute(
                "SELECT count(DISTINCT from_stage) FROM crm.deal_stage_history"
                " WHERE client_id = %s AND to_stage = 'closed_lost'",
                (client_id,),
            ).fetchone()
            assert stages is not None and stages[0] >= 4  # lost from every part of the pipeline


def test_the_pipeline_moves_back_and_forth_and_forecasts_ahead(seeded: Seeded) -> None:
    with seeded.connect() as conn:
        for client_id in CLIENT_IDS:
            months = conn.execute(
                "SELECT expected_close_month, open_deals, weighted_value"
                " FROM crm.get_weighted_forecast(%s, %s)",
                (client_id, seeded.as_of),
            ).fetchall()
            ahead = [m for m in months if m[0] is not None and m[0] > seeded.as_of.date()]
            assert ahead and sum(m[2] for m in ahead) > 0
            stages = conn.execute(
                "SELECT stage::text, deals_entered, regressions"
                " FROM crm.get_stage_conversion(%s, 180, %s, 'any')",
                (client_id, seeded.as_of),
            ).fetchall()
            entered = {s: n for s, n, _ in stages}
            assert entered["qualification"] > entered["proposal"] > entered["closed_won"] > 0
            assert sum(r for _, _, r in stages) >= 1
            velocity = conn.execute(
                "SELECT open_deals, win_rate, avg_cycle_days"
                " FROM crm.get_pipeline_velocity(%s, 180, %s)",
                (client_id, seeded.as_of),
            ).fetchone()
            assert velocity is not None and velocity[0] >= 3 and 10 <= velocity[2] <= 120


def fingerprint(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What two runs must agree on: every row the seed wrote, by its writer-given values
    (auto-created deals by their meeting: their ids are the database's)."""
    queries = {
        "leads": "SELECT md5(string_agg(concat_ws('|', id, email, status, created_at, deleted_at,"
        " meeting_booked_at), ',' ORDER BY id)) FROM crm.leads",
        "touches": "SELECT md5(string_agg(concat_ws('|', id, lead_id, channel, occurred_at,"
        " deleted_at), ',' ORDER BY id)) FROM crm.activities",
        "meetings": "SELECT md5(string_agg(concat_ws('|', id, scheduled_at, booked_at,"
        " meeting_outcome, showed_up, confirmed_at, reminder_sent_at, outcome_recorded_at,"
        " cancelled_at, rescheduled_count, converting_channel, deleted_at, deal_created),"
        " ',' ORDER BY id)) FROM crm.meetings",
        "deals": "SELECT md5(string_agg(concat_ws('|', coalesce(meeting_id, id), lead_id, stage,"
        " value, probability, created_at, lost_reason, expected_close_date, deleted_at),"
        " ',' ORDER BY coalesce(meeting_id, id))) FROM crm.deals",
        "history": "SELECT count(*), sum(value), count(reason) FROM crm.deal_stage_history",
        "reschedules": "SELECT count(*), count(new_scheduled_at) FROM crm.meeting_reschedules",
    }
    return {name: conn.execute(query).fetchone() for name, query in queries.items()}


def seed_and_fingerprint(
    conn: psycopg.Connection[Any], seed: int, as_of: datetime = PAST_AS_OF
) -> tuple[SeedSummary, dict[str, Any]]:
    with conn.transaction(force_rollback=True):
        clients = create_clients(conn, as_of=as_of)
        summary = demo.seed(conn, clients, as_of=as_of, seed=seed, scale=0.25)
        return summary, fingerprint(conn)


def test_the_same_seed_and_as_of_make_the_same_data(db: psycopg.Connection[Any]) -> None:
    first, prints = seed_and_fingerprint(db, 14)
    again, prints_again = seed_and_fingerprint(db, 14)
    assert prints_again == prints
    assert {**again.__dict__, "seconds": 0} == {**first.__dict__, "seconds": 0}
    _, other = seed_and_fingerprint(db, 15)
    assert other["meetings"] != prints["meetings"] and other["deals"] != prints["deals"]


def test_app_code_role_writes_it_all(db: psycopg.Connection[Any]) -> None:
    """As crm_app (SET ROLE, as the demo does when it can): no privilege is missing, and the
    stage history records that role as the writer."""
    db.execute("SET ROLE crm_app")
    try:
        calls: list[tuple[str, int, int]] = []
        clients = create_clients(db, as_of=PAST_AS_OF)
        summary = demo.seed(
            db, clients, as_of=PAST_AS_OF, scale=0.25,
            progress=lambda step, done, total: calls.append((step, done, total)),
        )  # fmt: skip
        counts = exercised_rules(db, CLIENT_IDS)
        writers = db.execute("SELECT DISTINCT changed_by FROM crm.deal_stage_history").fetchall()
    finally:
        db.execute("RESET ROLE")
    assert summary.leads > 700 and min(counts.values()) > 0
    assert writers == [("crm_app",)]
    assert [done for _, done, _ in calls] == list(range(1, len(calls) + 1))
    assert calls[-1][1] == calls[-1][2] and len({step for step, _, _ in calls}) == len(calls)


def test_a_connected_crm_gets_its_pushes_queued(db: psycopg.Connection[Any], make: Make) -> None:
    """A client with a CRM connected while the seed runs: the triggers queue its pushes in the
    seed's transaction (the other clients' none), one per entity and operation (a deal's
    updates ride on its pending deal_created), and nothing is refused."""
    clients = create_clients(db, as_of=PAST_AS_OF)
    connected = clients[1]
    make.crm_config({"id": connected.client_id}, crm_type=connected.crm, api_key="pd-key")
    demo.seed(db, clients, as_of=PAST_AS_OF, scale=0.1)
    queued = db.execute(
        "SELECT client_id, operation, count(*) FROM crm.crm_push_queue GROUP BY 1, 2"
    ).fetchall()
    assert {c for c, _, _ in queued} == {connected.client_id}
    by_operation = {op: n for _, op, n in queued}
    assert set(by_operation) == {"meeting_booked", "meeting_outcome", "deal_created"}
    made = db.execute(
        "SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FROM crm.meetings"
        " WHERE client_id = %(c)s"
        " UNION ALL SELECT count(*) FILTER (WHERE deleted_at IS NULL), count(*) FROM crm.deals"
        " WHERE client_id = %(c)s",
        {"c": connected.client_id},
    ).fetchall()
    # every live one, and those soft-deleted after they were queued (the runner skips them)
    assert made[0][0] <= by_operation["meeting_booked"] < made[0][1]
    assert made[1][0] <= by_operation["deal_created"] <= made[1][1]


def test_the_demo_clients_are_made_once(db: psycopg.Connection[Any]) -> None:
    clients = create_clients(db, as_of=PAST_AS_OF)
    assert [c.client_id for c in clients] == CLIENT_IDS
    assert {c.crm for c in clients} == {"hubspot", "pipedrive", "close"}
    rows = db.execute(
        "SELECT id, name, default_currency, timezone, auto_create_deals FROM crm.clients"
        " WHERE id = ANY(%s) ORDER BY name",
        (CLIENT_IDS,),
    ).fetchall()
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == sorted(
        (c.name, c.currency, c.timezone, True) for c in DEMO_CLIENTS
    )
    with pytest.raises(DemoSeedError, match=r"exist already.*Northwind Observability"):
        create_clients(db, as_of=PAST_AS_OF)


def test_seed_refuses_an_as_of_the_triggers_would_refuse(db: psycopg.Connection[Any]) -> None:
    clients = create_clients(db, as_of=PAST_AS_OF)
    with pytest.raises(DemoSeedError, match="after the database's now") as info:
        demo.seed(db, clients, as_of=datetime.now(UTC) + timedelta(days=1))
    assert info.value.hint and "as_of <=" in info.value.hint
    with pytest.raises(DemoSeedError, match="no time zone"):
        demo.seed(db, clients, as_of=datetime(2026, 1, 1))
    assert db.execute("SELECT count(*) FROM crm.leads").fetchone() == (0,)


def test_a_rule_not_exercised_is_named(db: psycopg.Connection[Any]) -> None:
    create_clients(db, as_of=PAST_AS_OF)
    counts = exercised_rules(db, CLIENT_IDS, strict=False)
    assert set(counts.values()) == {0}
    with pytest.raises(DemoSeedError, match=r"\d+ lifecycle rule\(s\) not exercised") as info:
        exercised_rules(db, CLIENT_IDS)
    assert all(rule in str(info.value) for rule in LIFECYCLE_RULES)


def test_every_named_query_is_used() -> None:
    source = Path(demo.__file__).read_text()
    unused = [name for name in demo.DEMO if f'"{name}"' not in source]
    assert unused == []
