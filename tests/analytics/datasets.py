"""Random client datasets for the analytics tests, loaded through the real tables and triggers
with explicit historical timestamps (as an agency importing its past would), then read back."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row

from tests.analytics.reference import LOST_REASONS, Row

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)
BASE = AS_OF - timedelta(days=420)
CHANNELS = ["email", "sms", "linkedin", "voice", "mail"]
OPEN_STAGES = ["qualification", "proposal", "negotiation", "verbal_commit", "contract_sent"]
# (meeting_outcome, showed_up) pairs a writer can record (the triggers derive the rest).
ATTENDANCE = [
    (None, None), (None, True), (None, False), ("good", None), ("bad", None),
    ("no_show", None), ("pending", None), ("rescheduled", None), ("cancelled", None),
]  # fmt: skip


def at(hours: int) -> datetime:
    return BASE + timedelta(hours=hours)


@dataclass
class MeetingSpec:
    booked: int
    lead_time: int
    attendance: tuple[str | None, bool | None]
    confirmed: int | None  # hours after booking, or None
    reminded: int | None
    rescheduled_count: int
    deleted: bool


@dataclass
class DealSpec:
    created: int
    value_cents: int
    path: list[tuple[str, int]]  # (stage, hours after the previous change)
    ending: str  # open, won, lost
    lost_reason: str
    inserted_closed: bool
    deleted: bool
    expected_close: int | None = None  # days after creation


@dataclass
class LeadSpec:
    created: int
    deleted: bool
    touches: list[tuple[int, str, bool]]  # (hour, channel, deleted)
    meetings: list[MeetingSpec] = field(default_factory=list)
    deals: list[DealSpec] = field(default_factory=list)


HOURS = st.integers(min_value=0, max_value=24 * 440)

meetings = st.builds(
    MeetingSpec,
    booked=HOURS,
    lead_time=st.integers(min_value=0, max_value=24 * 40),
    attendance=st.sampled_from(ATTENDANCE),
    confirmed=st.none() | st.integers(min_value=0, max_value=24 * 45),
    reminded=st.none() | st.integers(min_value=0, max_value=24 * 45),
    rescheduled_count=st.integers(min_value=0, max_value=2),
    deleted=st.sampled_from([False] * 9 + [True]),
)
deals = st.builds(
    DealSpec,
    created=HOURS,
    value_cents=st.integers(min_value=0, max_value=5_000_000),
    path=st.lists(
        st.tuples(st.sampled_from(OPEN_STAGES), st.integers(min_value=0, max_value=24 * 30)),
        max_size=3,
    ),
    ending=st.sampled_from(["open", "won", "won", "lost", "lost"]),
    lost_reason=st.sampled_from(LOST_REASONS),
    inserted_closed=st.booleans(),
    deleted=st.sampled_from([False] * 9 + [True]),
    expected_close=st.none() | st.integers(min_value=0, max_value=200),
)
leads = st.builds(
    LeadSpec,
    created=HOURS,
    deleted=st.sampled_from([False] * 9 + [True]),
    touches=st.lists(
        st.tuples(
            # coarse times (whole days) make ties in time common
            st.integers(min_value=0, max_value=440).map(lambda d: d * 24),
            st.sampled_from(CHANNELS),
            st.sampled_from([False] * 9 + [True]),
        ),
        max_size=8,
    ),
    meetings=st.lists(meetings, max_size=3),
    deals=st.lists(deals, max_size=2),
)
# 1-15 leads with 0-2 deals each: 1-30 deals (a client without any deal is not drawn)
clients = st.lists(leads, min_size=1, max_size=15).filter(lambda ls: any(lead.deals for lead in ls))


@dataclass
class Loaded:
    client_id: uuid.UUID
    leads: list[Row]
    activities: list[Row]
    meetings: list[Row]
    deals: list[Row]
    history: list[Row]


def _insert(conn: psycopg.Connection[Any], table: str, values: Row) -> Any:
    query = sql.SQL("INSERT INTO crm.{} ({}) VALUES ({}) RETURNING id").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, values)),
        sql.SQL(", ").join(map(sql.Placeholder, values)),
    )
    row = conn.execute(query, values).fetchone()
    assert row is not None
    return row[0]


def _load_deal(conn: psycopg.Connection[Any], client: Any, lead: Any, spec: DealSpec) -> None:
    created = at(spec.created)
    value = Decimal(spec.value_cents) / 100
    base = {"client_id": client, "lead_id": lead, "name": "Deal", "value": value}
    if spec.expected_close is not None:
        base["expected_close_date"] = (created + timedelta(days=spec.expected_close)).date()
    times = [created]
    for _, gap in spec.path:
        times.append(times[-1] + timedelta(hours=gap))
    closed_at = times[-1] + timedelta(hours=5)
    final = {"won": "closed_won", "lost": "closed_lost"}.get(spec.ending)
    if spec.inserted_closed and final:
        extra = {"lost_reason": spec.lost_reason} if final == "closed_lost" else {}
        _insert(conn, "deals", base | {"stage": final, "created_at": created,
                                       "closed_at": closed_at, **extra})  # fmt: skip
        deal_id = None
    else:
        deal_id = _insert(conn, "deals", base | {"created_at": created})
        for (stage, _), when in zip(spec.path, times[1:], strict=True):
            conn.execute(
                "UPDATE crm.deals SET stage = %s, stage_changed_at = %s"
                " WHERE id = %s AND stage <> %s",
                (stage, when, deal_id, stage),
            )
        if final == "closed_won":
            conn.execute(
                "UPDATE crm.deals SET stage = 'closed_won', closed_at = %s WHERE id = %s",
                (closed_at, deal_id),
            )
        elif final == "closed_lost":
            conn.execute(
                "UPDATE crm.deals SET stage = 'closed_lost', closed_at = %s, lost_reason = %s"
                " WHERE id = %s",
                (closed_at, spec.lost_reason, deal_id),
            )
    if spec.deleted and deal_id is not None:
        conn.execute("UPDATE crm.deals SET deleted_at = %s WHERE id = %s", (AS_OF, deal_id))


def load(conn: psycopg.Connection[Any], specs: list[LeadSpec], currency: str = "AUD") -> Loaded:
    client = _insert(conn, "clients", {"name": "Client", "default_currency": currency})
    for spec in specs:
        lead = _insert(
            conn,
            "leads",
            {
                "client_id": client,
                "email": f"{uuid.uuid4().hex}@x.io",
                "created_at": at(spec.created),
            },
        )
        for hour, channel, deleted in spec.touches:
            _insert(
                conn,
                "activities",
                {"client_id": client, "lead_id": lead, "channel": channel,
                 "occurred_at": at(hour), "deleted_at": AS_OF if deleted else None},
            )  # fmt: skip
        for m in spec.meetings:
            booked = at(m.booked)
            scheduled = booked + timedelta(hours=m.lead_time)
            outcome, showed = m.attendance
            values: Row = {
                "client_id": client, "lead_id": lead, "booked_at": booked,
                "scheduled_at": scheduled, "meeting_outcome": outcome, "showed_up": showed,
                "rescheduled_count": m.rescheduled_count,
                "deleted_at": AS_OF if m.deleted else None,
            }  # fmt: skip
            if m.confirmed is not None:
                values |= {"confirmed": True, "confirmed_at": booked + timedelta(hours=m.confirmed)}
            if m.reminded is not None:
                values |= {
                    "reminder_sent": True,
                    "reminder_sent_at": booked + timedelta(hours=m.reminded),
                }
            _insert(conn, "meetings", values)
        for d in spec.deals:
            _load_deal(conn, client, lead, d)
        if spec.deleted:
            conn.execute("UPDATE crm.leads SET deleted_at = %s WHERE id = %s", (AS_OF, lead))
    return read_back(conn, client)


def read_back(conn: psycopg.Connection[Any], client: Any) -> Loaded:
    def rows(table: str) -> list[Row]:
        with conn.cursor(row_factory=dict_row) as cur:
            query = sql.SQL("SELECT * FROM crm.{} WHERE client_id = %s").format(
                sql.Identifier(table)
            )
            return cur.execute(query, (client,)).fetchall()

    return Loaded(
        client, rows("leads"), rows("activities"), rows("meetings"), rows("deals"),
        rows("deal_stage_history"),
    )  # fmt: skip
