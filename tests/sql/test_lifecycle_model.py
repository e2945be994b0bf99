"""Property test: random sequences of meeting and deal operations, run against the database
and against a small Python model of the rules in docs/lifecycle.md, must agree after every
step: row state, errors (by SQLSTATE), stage history, reschedule history and push queue."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fixtures import T0, Make

pytestmark = pytest.mark.property

PROBABILITY = {
    "qualification": 20, "proposal": 40, "negotiation": 60, "verbal_commit": 80,
    "contract_sent": 90, "closed_won": 100, "closed_lost": 0,
}  # fmt: skip
CLOSED = ("closed_won", "closed_lost")
PAST = [T0 + timedelta(days=d) for d in range(4)]
FUTURE = [datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(2)]
OUTCOMES = [None, "good", "bad", "no_show", "pending", "rescheduled", "cancelled"]


@dataclass
class MeetingModel:
    scheduled_at: datetime = PAST[0]
    outcome: str | None = None
    showed_up: bool | None = None
    rescheduled_count: int = 0
    reschedules: list[list[datetime | None]] = field(default_factory=list)
    cancelled: bool = False
    confirmed: bool = False
    confirmed_ever: bool = False
    deal: bool = False
    outcome_pushed: bool = False

    @property
    def future(self) -> bool:
        return self.scheduled_at > datetime.now(UTC)

    def set_outcome(self, outcome: str | None) -> str | None:
        if outcome == self.outcome:
            return None
        if outcome in ("good", "bad", "no_show", "pending") and self.future:
            return "23514"
        if self.outcome == "good" and self.deal:
            return "55000"  # the deal made from the meeting is open (the model never closes it)
        if self.outcome == "cancelled":
            self.cancelled = False  # un-cancelled: cancelled_at goes
        if outcome in ("good", "bad", "pending"):
            self.showed_up = True
        elif outcome == "no_show":
            self.showed_up = False
        elif outcome == "rescheduled":
            self.rescheduled_count += 1
            self.reschedules.append([self.scheduled_at, None])
        elif outcome == "cancelled":
            self.cancelled = True
            self.showed_up = None  # a cancelled meeting has no attendance
        elif outcome is None:
            self.showed_up = None  # cleared: not recorded
        if outcome == "good":
            self.deal = True  # the client auto-creates deals; never a second one
        if outcome not in (None, "pending"):
            self.outcome_pushed = True
        self.outcome = outcome
        return None

    def set_showed_up(self, showed_up: bool | None) -> str | None:
        if showed_up == self.showed_up:
            return None
        if showed_up is not None and self.future:
            return "23514"
        if (showed_up is True and self.outcome == "no_show") or (
            showed_up is False and self.outcome in ("good", "bad", "pending")
        ):
            return "23514"
        if showed_up is not None and self.outcome == "cancelled":
            return "23514"
        self.showed_up = showed_up
        if showed_up is True and self.outcome is None:
            self.outcome = "pending"
        return None

    def move(self, when: datetime) -> str | None:
        if when == self.scheduled_at:
            return None
        held = self.outcome in ("good", "bad", "no_show", "pending")
        attended = self.showed_up is not None and self.outcome != "rescheduled"
        if when > datetime.now(UTC) and (held or attended):
            return "23514"  # a meeting that took place cannot move to the future
        open_rows = [r for r in self.reschedules if r[1] is None]
        if self.outcome == "rescheduled" and open_rows:
            for row in open_rows:  # completes the reschedule recorded without a time
                row[1] = when
        else:
            self.rescheduled_count += 1
            self.reschedules.append([self.scheduled_at, when])
        self.scheduled_at = when
        return None

    def confirm(self, value: bool) -> str | None:
        self.confirmed = value
        self.confirmed_ever = self.confirmed_ever or value
        return None


@dataclass
class DealModel:
    stage: str = "qualification"
    probability: int = 20
    value: int = 1000
    lost_reason: str | None = None
    history: list[tuple[str | None, str]] = field(default_factory=lambda: [(None, "qualification")])

    def set_stage(self, stage: str, reason: str | None) -> str | None:
        if stage == self.stage:
            if reason is None:
                return None
            if stage != "closed_lost":
                return "23514"
            self.lost_reason = reason
            return None
        if self.stage in CLOSED:
            return "55000"
        new_reason = reason if reason is not None else self.lost_reason
        if (stage == "closed_lost") != (new_reason is not None):
            return "23514"
        self.history.append((self.stage, stage))
        self.stage, self.probability, self.lost_reason = stage, PROBABILITY[stage], new_reason
        return None

    def set_value(self, value: int) -> str | None:
        if value < 0:
            return "23514"
        self.value = value
        return None

    def set_probability(self, probability: int) -> str | None:
        if not 0 <= probability <= 100:
            return "23514"
        if self.stage in CLOSED and probability != PROBABILITY[self.stage]:
            return "23514"
        self.probability = probability
        return None

    def reopen(self) -> str | None:
        if self.stage not in CLOSED:
            return "55000"
        into = [f for f, t in self.history if t == self.stage][-1] or "qualification"
        self.history.append((self.stage, into))
        self.stage, self.probability, self.lost_reason = into, PROBABILITY[into], None
        return None


meeting_ops = st.one_of(
    st.tuples(st.just("outcome"), st.sampled_from(OUTCOMES)),
    st.tuples(st.just("showed_up"), st.sampled_from([None, True, False])),
    st.tuples(st.just("move"), st.sampled_from(PAST + FUTURE)),
    st.tuples(st.just("confirm"), st.booleans()),
)
deal_ops = st.one_of(
    st.tuples(
        st.just("stage"),
        st.sampled_from(list(PROBABILITY)),
        st.sampled_from([None, None, "no_budget", "bad_fit"]),
    ),
    st.tuples(st.just("value"), st.sampled_from([-1, 0, 250, 1000])),
    st.tuples(st.just("probability"), st.sampled_from([-5, 0, 35, 100, 101])),
    st.tuples(st.just("reopen")),
)


def apply(db: psycopg.Connection[Any], ids: dict[str, Any], op: tuple[Any, ...]) -> str | None:
    """Run one operation; return the SQLSTATE it failed with, or None."""
    kind, *args = op
    statements = {
        "outcome": ("UPDATE crm.meetings SET meeting_outcome = %s WHERE id = %s", "meeting"),
        "showed_up": ("UPDATE crm.meetings SET showed_up = %s WHERE id = %s", "meeting"),
        "move": ("UPDATE crm.meetings SET scheduled_at = %s WHERE id = %s", "meeting"),
        "confirm": ("UPDATE crm.meetings SET confirmed = %s WHERE id = %s", "meeting"),
        "value": ("UPDATE crm.deals SET value = %s WHERE id = %s", "deal"),
        "probability": ("UPDATE crm.deals SET probability = %s WHERE id = %s", "deal"),
        "reopen": ("SELECT crm.reopen_deal(%s, 'property test')", "deal"),
    }
    if kind == "stage":
        stage, reason = args
        if reason is None:
            query, params = "UPDATE crm.deals SET stage = %s WHERE id = %s", [stage]
        else:
            query, params = (
                "UPDATE crm.deals SET stage = %s, lost_reason = %s WHERE id = %s",
                [
                    stage,
                    reason,
                ],
            )
        params.append(ids["deal"])
    else:
        query, target = statements[kind]
        params = [*args, ids[target]]
    try:
        with db.transaction():
            db.execute(query.encode(), params)
    except psycopg.Error as exc:
        return exc.sqlstate
    return None


def check(db: psycopg.Connection[Any], ids: dict[str, Any], m: MeetingModel, d: DealModel) -> None:
    row = db.execute(
        """
        SELECT scheduled_at, meeting_outcome, showed_up, rescheduled_count,
               cancelled_at IS NOT NULL, confirmed, confirmed_at IS NOT NULL, deal_id IS NOT NULL,
               showed_up_confirmed_at IS NOT NULL OR showed_up IS NULL
        FROM crm.meetings WHERE id = %s
        """,
        (ids["meeting"],),
    ).fetchone()
    assert row == (
        m.scheduled_at, m.outcome, m.showed_up, m.rescheduled_count, m.cancelled, m.confirmed,
        m.confirmed_ever, m.deal, True,
    )  # fmt: skip
    reschedules = db.execute(
        """
        SELECT previous_scheduled_at, new_scheduled_at FROM crm.meeting_reschedules
        WHERE meeting_id = %s ORDER BY seq
        """,
        (ids["meeting"],),
    ).fetchall()
    assert [list(r) for r in reschedules] == m.reschedules
    deal = db.execute(
        """
        SELECT stage::text, probability, value::integer, lost_reason::text, won,
               closed_at IS NOT NULL, stage_changed_at
        FROM crm.deals WHERE id = %s
        """,
        (ids["deal"],),
    ).fetchone()
    assert deal is not None
    closed = d.stage in CLOSED
    won = (d.stage == "closed_won") if closed else None
    assert deal[:6] == (d.stage, d.probability, d.value, d.lost_reason, won, closed)
    history = db.execute(
        """
        SELECT from_stage::text, to_stage::text, changed_at FROM crm.deal_stage_history
        WHERE deal_id = %s ORDER BY seq
        """,
        (ids["deal"],),
    ).fetchall()
    assert [(f, t) for f, t, _ in history] == d.history
    assert history[-1][2] == deal[6]  # stage_changed_at = the latest change
    pushes = db.execute(
        """
        SELECT operation, count(*) FROM crm.crm_push_queue
        WHERE client_id = %s GROUP BY operation ORDER BY operation
        """,
        (ids["client"],),
    ).fetchall()
    expected = {"meeting_booked": 1, "deal_created": 1 + int(m.deal)}
    if m.outcome_pushed:
        expected["meeting_outcome"] = 1
    assert dict(pushes) == expected


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(st.one_of(meeting_ops, deal_ops), min_size=1, max_size=25))
def test_database_and_model_agree(db: psycopg.Connection[Any], ops: list[tuple[Any, ...]]) -> None:
    with db.transaction(force_rollback=True):
        make = Make(db)
        client = make.client(auto_create_deals=True)
        make.crm_config(client)
        lead = make.lead(client)
        meeting = make.meeting(lead, scheduled_at=PAST[0])
        deal = make.deal(lead, probability=None, value=1000, created_at=T0)
        ids = {"client": client["id"], "meeting": meeting["id"], "deal": deal["id"]}
        m, d = MeetingModel(), DealModel()
        for op in ops:
            model: Any = m if op in meeting_ops_kinds(op) else d
            expected = dispatch(model, op)
            assert apply(db, ids, op) == expected, op
            check(db, ids, m, d)


def meeting_ops_kinds(op: tuple[Any, ...]) -> tuple[tuple[Any, ...], ...]:
    return (op,) if op[0] in ("outcome", "showed_up", "move", "confirm") else ()


def dispatch(model: Any, op: tuple[Any, ...]) -> str | None:
    kind, *args = op
    method = {
        "outcome": "set_outcome", "showed_up": "set_showed_up", "move": "move",
        "confirm": "confirm", "stage": "set_stage", "value": "set_value",
        "probability": "set_probability", "reopen": "reopen",
    }[kind]  # fmt: skip
    return getattr(model, method)(*args)  # type: ignore[no-any-return]
