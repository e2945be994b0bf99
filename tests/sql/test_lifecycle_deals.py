"""Deal pipeline rules and stage history (docs/lifecycle.md), one test per rule."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.helpers.fixtures import T0, Make, Row, count, raises_sqlstate

STAGE_PROBABILITY = {
    "qualification": 20,
    "proposal": 40,
    "negotiation": 60,
    "verbal_commit": 80,
    "contract_sent": 90,
    "closed_won": 100,
    "closed_lost": 0,
}


def deal(db: psycopg.Connection[Any], deal_id: Any) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM crm.deals WHERE id = %s", (deal_id,)).fetchone()
    assert row is not None
    return row


def update(db: psycopg.Connection[Any], deal_id: Any, **values: Any) -> Row:
    sets = ", ".join(f"{column} = %({column})s" for column in values)
    db.execute(f"UPDATE crm.deals SET {sets} WHERE id = %(id)s", {**values, "id": deal_id})
    return deal(db, deal_id)


def history(db: psycopg.Connection[Any], deal_id: Any) -> list[Row]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT from_stage, to_stage, probability, value, changed_at, time_in_from_stage,
                   reason
            FROM crm.deal_stage_history WHERE deal_id = %s ORDER BY seq
            """,
            (deal_id,),
        ).fetchall()


def new_deal(make: Make, **kw: Any) -> Row:
    """A deal with the trigger's defaults (no currency or probability given)."""
    lead = make.lead(make.client(), created_at=T0 - timedelta(days=30))
    return make.deal(lead, **({"currency": None, "probability": None, "created_at": T0} | kw))


@pytest.mark.parametrize(("stage", "probability"), STAGE_PROBABILITY.items())
def test_each_stage_sets_its_default_probability(
    db: Any, make: Make, stage: str, probability: int
) -> None:
    extra: Row = {"lost_reason": "bad_fit"} if stage == "closed_lost" else {}
    assert new_deal(make, stage=stage, **extra)["probability"] == probability
    moved = update(db, new_deal(make)["id"], stage=stage, **extra)
    assert moved["probability"] == probability


def test_a_probability_the_writer_sets_is_kept(db: Any, make: Make) -> None:
    assert new_deal(make, probability=35)["probability"] == 35
    d = new_deal(make)
    assert update(db, d["id"], stage="negotiation", probability=70)["probability"] == 70
    assert update(db, d["id"], probability=65)["probability"] == 65
    assert update(db, d["id"], stage="verbal_commit")["probability"] == 80  # new stage default


def test_currency_defaults_to_the_clients_and_attribution_to_the_leads_touches(
    db: Any, make: Make
) -> None:
    lead = make.lead(make.client(default_currency="EUR"))
    make.activity(lead, channel="linkedin", occurred_at=T0 - timedelta(days=3))
    last = make.activity(lead, channel="email", occurred_at=T0 - timedelta(days=1))
    make.activity(lead, channel="sms", occurred_at=T0 + timedelta(days=1))  # after the deal
    row = make.deal(lead, currency=None, probability=None, created_at=T0)
    assert row["currency"] == "EUR"
    assert (row["first_touch_channel"], row["touches_before_deal"]) == ("linkedin", 2)
    assert (row["converting_activity_id"], row["converting_channel"]) == (last["id"], "email")


def test_stage_changed_at_moves_on_every_stage_change_and_only_then(db: Any, make: Make) -> None:
    d = new_deal(make)
    assert d["stage_changed_at"] == T0
    now = db.execute("SELECT now()").fetchone()[0]
    assert update(db, d["id"], value=500)["stage_changed_at"] == T0
    assert update(db, d["id"], stage="proposal")["stage_changed_at"] == now
    given = T0 + timedelta(days=400)
    assert (
        update(db, d["id"], stage="negotiation", stage_changed_at=given)["stage_changed_at"]
        == given
    )


def test_closing_won(db: Any, make: Make) -> None:
    d = new_deal(make)
    now = db.execute("SELECT now()").fetchone()[0]
    row = update(db, d["id"], stage="closed_won")
    assert (row["won"], row["closed_at"], row["probability"]) == (True, now, 100)
    assert row["days_to_close"] == (now - T0).days
    assert row["stage_changed_at"] == now


def test_closing_lost_needs_a_reason_and_sets_won_false(db: Any, make: Make) -> None:
    d = new_deal(make)
    with raises_sqlstate(db, "23514") as info:
        update(db, d["id"], stage="closed_lost")
    assert "stage closed_lost needs a lost_reason" in info.value.diag.message_primary
    assert "went_silent" in (info.value.diag.message_hint or "")
    assert deal(db, d["id"]) == d
    closed = T0 + timedelta(days=10, hours=5)
    row = update(db, d["id"], stage="closed_lost", lost_reason="no_budget", closed_at=closed)
    assert (row["won"], row["closed_at"], row["probability"], row["days_to_close"]) == (
        False, closed, 0, 10,
    )  # fmt: skip


def test_open_stages_move_forward_and_back(db: Any, make: Make) -> None:
    d = new_deal(make)
    for stage in ["negotiation", "proposal", "contract_sent", "qualification"]:
        assert update(db, d["id"], stage=stage)["stage"] == stage


@pytest.mark.parametrize("closed", ["closed_won", "closed_lost"])
@pytest.mark.parametrize("target", ["proposal", "closed_won", "closed_lost"])
def test_a_closed_deal_changes_stage_only_by_reopening(
    db: Any, make: Make, closed: str, target: str
) -> None:
    if closed == target:
        return
    d = new_deal(make, stage=closed, lost_reason="bad_fit" if closed == "closed_lost" else None)
    rows = count(db, "deal_stage_history")
    with raises_sqlstate(db, "55000") as info:
        update(db, d["id"], stage=target, lost_reason=None if target != "closed_lost" else "other")
    assert f"stage cannot change from {closed} to {target}" in info.value.diag.message_primary
    assert "crm.reopen_deal" in (info.value.diag.message_hint or "")
    assert deal(db, d["id"]) == d and count(db, "deal_stage_history") == rows


def test_reopen_returns_to_the_stage_it_closed_from_and_is_recorded(db: Any, make: Make) -> None:
    d = new_deal(make)
    update(db, d["id"], stage="negotiation")
    update(db, d["id"], stage="closed_lost", lost_reason="timing_not_right", lost_notes="Q3")
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM crm.reopen_deal(%s, 'budget approved after all')", (d["id"],)
        ).fetchone()
    assert row is not None
    assert (row["stage"], row["probability"], row["won"], row["closed_at"]) == (
        "negotiation", 60, None, None,
    )  # fmt: skip
    assert (row["lost_reason"], row["days_to_close"]) == (None, None)
    last = history(db, d["id"])[-1]
    assert (last["from_stage"], last["to_stage"], last["reason"]) == (
        "closed_lost", "negotiation", "budget approved after all",
    )  # fmt: skip
    # The permission lasted for that one change only.
    update(db, d["id"], stage="closed_won")
    with raises_sqlstate(db, "55000"):
        update(db, d["id"], stage="proposal")


def test_reopen_into_a_chosen_stage(db: Any, make: Make) -> None:
    d = new_deal(make, stage="closed_won")
    row = db.execute(
        "SELECT stage FROM crm.reopen_deal(%s, 'upsell', 'proposal')", (d["id"],)
    ).fetchone()
    assert row == ("proposal",)


@pytest.mark.parametrize(
    ("args", "sqlstate", "message"),
    [
        (("closed", "  ", None), "22023", "p_reason must say why"),
        (("closed", "x", "closed_lost"), "22023", "p_stage closed_lost is not an open stage"),
        (("missing", "x", None), "P0002", "no live deal with id"),
        (("open", "x", None), "55000", "is not closed (stage qualification)"),
    ],
)
def test_reopen_rejections(
    db: Any, make: Make, args: tuple[str, str, str | None], sqlstate: str, message: str
) -> None:
    which, reason, stage = args
    ids = {
        "closed": new_deal(make, stage="closed_won")["id"],
        "open": new_deal(make)["id"],
        "missing": uuid.uuid4(),
    }
    rows = count(db, "deal_stage_history")
    with raises_sqlstate(db, sqlstate) as info:
        db.execute("SELECT crm.reopen_deal(%s, %s, %s)", (ids[which], reason, stage))
    assert message in info.value.diag.message_primary
    assert info.value.diag.message_hint
    assert count(db, "deal_stage_history") == rows


def test_stage_history_has_the_initial_stage_and_one_row_per_change(db: Any, make: Make) -> None:
    d = new_deal(make, value=1000)
    update(db, d["id"], value=1500)  # not a stage change: no row
    update(db, d["id"], stage="proposal", stage_changed_at=T0 + timedelta(days=2))
    update(db, d["id"], stage="closed_won", closed_at=T0 + timedelta(days=5))
    rows = history(db, d["id"])
    assert [(r["from_stage"], r["to_stage"]) for r in rows] == [
        (None, "qualification"), ("qualification", "proposal"), ("proposal", "closed_won"),
    ]  # fmt: skip
    assert [r["changed_at"] for r in rows] == [T0, T0 + timedelta(days=2), T0 + timedelta(days=5)]
    assert [r["time_in_from_stage"] for r in rows] == [None, timedelta(days=2), timedelta(days=3)]
    assert [(r["probability"], r["value"]) for r in rows] == [
        (20, Decimal(1000)), (40, Decimal(1500)), (100, Decimal(1500)),
    ]  # fmt: skip
    assert deal(db, d["id"])["stage_changed_at"] == rows[-1]["changed_at"]


def test_historical_import_as_the_analytics_issue_pins_it(db: Any) -> None:
    c, lead = uuid.uuid4(), uuid.uuid4()
    t0, t1, t2, t3 = (T0 + timedelta(days=d) for d in (0, 1, 2, 9))
    db.execute("INSERT INTO crm.clients (id, name) VALUES (%s, 'Acme')", (c,))
    db.execute(
        "INSERT INTO crm.leads (id, client_id, email, created_at) VALUES (%s, %s, 'a@x.io', %s)",
        (lead, c, t0),
    )
    db.execute(
        "INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)"
        " VALUES (%s, %s, 'email', %s)",
        (c, lead, t1),
    )
    db.execute(
        "INSERT INTO crm.deals (client_id, lead_id, name, value, stage, created_at, closed_at)"
        " VALUES (%s, %s, 'Deal', 1000, 'closed_won', %s, %s)",
        (c, lead, t2, t3),
    )
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM crm.deals WHERE client_id = %s", (c,)).fetchone()
    assert row is not None
    assert (row["created_at"], row["closed_at"], row["won"], row["probability"]) == (
        t2, t3, True, 100,
    )  # fmt: skip
    assert (row["days_to_close"], row["currency"], row["first_touch_channel"]) == (
        7,
        "AUD",
        "email",
    )
    assert [(h["from_stage"], h["to_stage"], h["changed_at"]) for h in history(db, row["id"])] == [
        (None, "closed_won", t3)
    ]


@pytest.mark.parametrize(
    ("values", "sqlstate", "message"),
    [
        ({"probability": 150}, "23514", "probability 150 must be between 0 and 100"),
        ({"value": -1}, "23514", "value -1.00 must not be negative"),
        ({"lost_reason": "other"}, "23514", "lost_reason other is only for stage closed_lost"),
        ({"won": True}, "23514", "won true and closed_at <NULL> need a closed stage"),
        ({"stage": "closed_won", "probability": 50}, "23514",
         "probability 50 contradicts stage closed_won"),
        ({"stage": "closed_won", "won": False}, "23514", "won false contradicts stage closed_won"),
        ({"stage": "closed_won", "closed_at": T0 - timedelta(days=1)}, "23514",
         "is before created_at"),
        ({"stage": "proposal", "stage_changed_at": T0 - timedelta(days=1)}, "23514",
         "is before the previous stage change"),
    ],
)  # fmt: skip
def test_impossible_deal_states_are_rejected_and_nothing_changes(
    db: Any, make: Make, values: Row, sqlstate: str, message: str
) -> None:
    d = new_deal(make)
    rows = count(db, "deal_stage_history"), count(db, "crm_push_queue")
    with raises_sqlstate(db, sqlstate) as info:
        update(db, d["id"], **values)
    assert message in info.value.diag.message_primary
    assert info.value.diag.message_hint
    assert deal(db, d["id"]) == d
    assert (count(db, "deal_stage_history"), count(db, "crm_push_queue")) == rows


@pytest.mark.parametrize("column", ["lead_id", "meeting_id"])
def test_a_lead_or_meeting_of_another_client_is_rejected(db: Any, make: Make, column: str) -> None:
    other_lead = make.lead(make.client())
    refs = {"lead_id": other_lead["id"], "meeting_id": make.meeting(other_lead)["id"]}
    mine = make.lead(make.client())
    before = count(db, "deals")
    with raises_sqlstate(db, "23503") as info:
        make.deal(mine, **{column: refs[column]})
    assert f"deal {column} {refs[column]} is not a" in info.value.diag.message_primary
    assert info.value.diag.constraint_name == f"deals_client_id_{column}_fkey"
    assert count(db, "deals") == before


def test_a_given_value_equal_to_the_old_one_still_counts_as_given(db: Any, make: Make) -> None:
    # Found by the analytics tests: a stage change imported at the same instant as the previous
    # one, or a probability kept while the stage moves, looked like "not given".
    d = new_deal(make)
    moved = update(db, d["id"], stage="proposal", stage_changed_at=T0, probability=20)
    assert (moved["stage_changed_at"], moved["probability"]) == (T0, 20)
    # The note is for that statement only: the next stage change without them gets defaults.
    now = db.execute("SELECT now()").fetchone()[0]
    again = update(db, d["id"], stage="negotiation")
    assert (again["stage_changed_at"], again["probability"]) == (now, 60)
    rows = history(db, d["id"])
    assert [r["time_in_from_stage"] for r in rows[1:]] == [timedelta(0), now - T0]
