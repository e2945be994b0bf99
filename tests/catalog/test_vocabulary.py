"""The push's words are spelled once in Python (agency_crm.push.model) and mirror the SQL's:
the queue's and the log's status CHECKs, and what crm.finish_push accepts and returns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from agency_crm.push.model import Finished, LogStatus, Outcome, QueueStatus
from tests.helpers.fixtures import Make, raises_sqlstate


def check_values(db: psycopg.Connection[Any], table: str, constraint: str) -> set[str]:
    """The quoted words of an `x IN (...)` CHECK constraint."""
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND conname = %s",
        (f"crm.{table}", constraint),
    ).fetchone()
    assert row is not None, f"no constraint {constraint} on {table}"
    return set(re.findall(r"'([a-z_]+)'::text", row[0]))


def test_queue_statuses_are_the_queue_status_check(db: psycopg.Connection[Any]) -> None:
    words = check_values(db, "crm_push_queue", "crm_push_queue_status_check")
    assert words == {s.value for s in QueueStatus}


def test_log_statuses_are_the_push_log_status_check(db: psycopg.Connection[Any]) -> None:
    words = check_values(db, "crm_push_log", "crm_push_log_status_check")
    assert words == {s.value for s in LogStatus}


def test_finish_push_accepts_exactly_the_outcomes_and_returns_finished_words(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    make.crm_config(client)
    lead = make.lead(client)
    make.meeting(lead)
    claimed = db.execute(
        "SELECT id FROM crm.claim_pushes(%s, 'runner-1', 10, 300)", (client["id"],)
    ).fetchall()
    assert len(claimed) == 1
    push_id = claimed[0][0]
    finish = "SELECT crm.finish_push(%s, %s, %s, 1, %s, 'why', %s)"
    later = datetime.now(UTC) + timedelta(minutes=1)
    returned: set[str] = set()
    for outcome in Outcome:
        with db.transaction(force_rollback=True):
            if outcome is Outcome.HELD:  # the runner puts the config in error first
                db.execute("SELECT crm.hold_pushes(%s, 'why')", (client["id"],))
            row = db.execute(finish, (client["id"], push_id, "runner-1", outcome, later)).fetchone()
            assert row is not None
            returned.add(row[0])
    with db.transaction(force_rollback=True):
        row = db.execute(finish, (client["id"], push_id, "someone-else", "done", None)).fetchone()
        assert row is not None
        returned.add(row[0])
    assert returned <= {f.value for f in Finished}
    assert {"done", "pending", "failed", "held", "lease_lost"} <= returned
    with raises_sqlstate(db, "22023") as info:
        db.execute(finish, (client["id"], push_id, "runner-1", "auth", later))
    listed = re.search(r"p_outcome must be (.+), got", str(info.value))
    assert listed is not None
    assert set(re.split(r", | or ", listed.group(1))) == {o.value for o in Outcome}


def test_the_api_deal_stages_are_the_deal_stage_type(db: psycopg.Connection[Any]) -> None:
    from typing import get_args

    from agency_crm.service.models import DealStage

    rows = db.execute("SELECT unnest(enum_range(NULL::crm.deal_stage_type))::text").fetchall()
    assert list(get_args(DealStage)) == [r[0] for r in rows]
