"""crm_private.deal_attribution, kept current by triggers, always equals the attribution
computed from scratch, whatever happens to deals and touches after they are written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.analytics.datasets import CHANNELS, Loaded, at, clients, load, read_back

pytestmark = pytest.mark.property

COLUMNS = (
    "deal_id, channel, touches, first_touch, last_touch, linear, time_decay, position_based,"
    " j_shaped, inverse_j"
)

mutations = st.lists(
    st.one_of(
        st.tuples(st.just("add_touch"), st.integers(0, 99), st.integers(-60, 10),
                  st.sampled_from(CHANNELS)),
        st.tuples(st.just("delete_touch"), st.integers(0, 99)),
        st.tuples(st.just("restore_touch"), st.integers(0, 99)),
        st.tuples(st.just("move_touch_in_time"), st.integers(0, 99), st.integers(-30, 30)),
        st.tuples(st.just("rechannel_touch"), st.integers(0, 99), st.sampled_from(CHANNELS)),
        st.tuples(st.just("move_touch_to_lead"), st.integers(0, 99), st.integers(0, 99)),
        st.tuples(st.just("move_deal_in_time"), st.integers(0, 99), st.integers(-30, 30)),
        st.tuples(st.just("add_deal"), st.integers(0, 99), st.integers(0, 400)),
    ),
    max_size=12,
)  # fmt: skip


def pick(rows: list[dict[str, Any]], i: int) -> dict[str, Any] | None:
    return rows[i % len(rows)] if rows else None


def mutate(db: psycopg.Connection[Any], data: Loaded, op: tuple[Any, ...]) -> None:
    kind, *args = op
    live_leads = [lead for lead in data.leads if lead["deleted_at"] is None]
    touch, deal, lead = (
        pick(data.activities, args[0]),
        pick(data.deals, args[0]),
        pick(live_leads, args[0]),
    )
    c = data.client_id
    if kind == "add_touch" and deal:
        db.execute(
            "INSERT INTO crm.activities (client_id, lead_id, channel, occurred_at)"
            " VALUES (%s, %s, %s, %s)",
            (c, deal["lead_id"], args[2], deal["created_at"] + timedelta(days=args[1])),
        )
    elif kind == "delete_touch" and touch:
        db.execute("UPDATE crm.activities SET deleted_at = now() WHERE id = %s", (touch["id"],))
    elif kind == "restore_touch" and touch:
        db.execute("UPDATE crm.activities SET deleted_at = NULL WHERE id = %s", (touch["id"],))
    elif kind == "move_touch_in_time" and touch:
        db.execute(
            "UPDATE crm.activities SET occurred_at = occurred_at + %s WHERE id = %s",
            (timedelta(days=args[1]), touch["id"]),
        )
    elif kind == "rechannel_touch" and touch:
        db.execute("UPDATE crm.activities SET channel = %s WHERE id = %s", (args[1], touch["id"]))
    elif kind == "move_touch_to_lead" and touch and data.leads:
        target = pick(data.leads, args[1])
        assert target is not None
        db.execute(
            "UPDATE crm.activities SET lead_id = %s WHERE id = %s", (target["id"], touch["id"])
        )
    elif kind == "move_deal_in_time" and deal:
        # created_at may not pass its stage history (nor so closed_at): keep it before
        db.execute(
            "UPDATE crm.deals AS d SET created_at = least(d.created_at + %s, ("
            " SELECT min(h.changed_at) FROM crm.deal_stage_history AS h"
            " WHERE h.client_id = d.client_id AND h.deal_id = d.id)) WHERE d.id = %s",
            (timedelta(days=args[1]), deal["id"]),
        )
    elif kind == "add_deal" and lead:
        db.execute(
            "INSERT INTO crm.deals (client_id, lead_id, name, value, created_at)"
            " VALUES (%s, %s, 'Added', 500, %s)",
            (c, lead["id"], at(24 * args[1])),
        )


def check(db: psycopg.Connection[Any], client: Any) -> None:
    kept = db.execute(
        f"SELECT {COLUMNS} FROM crm_private.deal_attribution WHERE client_id = %s"
        " ORDER BY deal_id, channel",
        (client,),
    ).fetchall()
    fresh = db.execute(
        f"SELECT {COLUMNS} FROM crm_private.compute_deal_attribution("
        "%s, ARRAY(SELECT id FROM crm.deals WHERE client_id = %s)) ORDER BY deal_id, channel",
        (client, client),
    ).fetchall()
    assert [r[:3] for r in kept] == [r[:3] for r in fresh]
    for k, f in zip(kept, fresh, strict=True):
        assert all(abs(a - b) <= 1e-12 for a, b in zip(k[3:], f[3:], strict=True)), (k, f)
    # Under every model the shares of one deal sum to 1.
    sums = db.execute(
        """
        SELECT deal_id, sum(first_touch), sum(last_touch), sum(linear), sum(time_decay),
               sum(position_based), sum(j_shaped), sum(inverse_j)
        FROM crm_private.deal_attribution WHERE client_id = %s GROUP BY deal_id
        """,
        (client,),
    ).fetchall()
    assert all(abs(s - 1) <= 1e-9 for row in sums for s in row[1:])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=clients, ops=mutations)
def test_kept_credits_equal_credits_computed_from_scratch(
    db: psycopg.Connection[Any], specs: list[Any], ops: list[tuple[Any, ...]]
) -> None:
    with db.transaction(force_rollback=True):
        data = load(db, specs)
        check(db, data.client_id)
        for op in ops:
            mutate(db, data, op)
            data = read_back(db, data.client_id)
            check(db, data.client_id)
