"""Differential tests: the SQL analytics against independent implementations on hundreds of
random clients loaded through the real tables and triggers.

* Attribution: marketing-attribution-models (MAM, an independent open-source library) for
  first/last touch, linear, position-based and time decay; the Python reference for all seven.
* Show rate, funnel and lost deals: the Python reference of docs/analytics.md.
* Invariants on every dataset: rates in [0, 100], a non-increasing funnel, attribution shares
  summing to 100 % and to the won deals, another client's rows never changing a result.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.analytics import reference as ref
from tests.analytics.datasets import AS_OF, Loaded, clients, load
from tests.analytics.oracle import load as load_oracle

pytestmark = pytest.mark.property

MAM_MODELS = {
    "first_touch": lambda m: m.run_first_click(),
    "last_touch": lambda m: m.run_last_click(),
    "linear": lambda m: m.run_linear(),
    "position_based": lambda m: m.run_position_based(),
    "time_decay": lambda m: m.run_time_decay(half_life_hours=7 * 24),
}
WINDOWS = st.sampled_from([None, 30, 90, 180, 365])


def sql_attribution(db: Any, data: Loaded, days: int | None, model: str) -> list[tuple[Any, ...]]:
    return db.execute(  # type: ignore[no-any-return]
        "SELECT * FROM crm.get_channel_revenue_attribution(%s, %s, %s, %s)",
        (data.client_id, days, model, AS_OF),
    ).fetchall()


def mam_attribution(data: Loaded, days: int | None, model: str) -> dict[str, float]:
    """What MAM credits each channel with, from the same won deals and eligible touches."""
    oracle = load_oracle()
    assert oracle is not None
    MAM, pl = oracle
    journeys, hours, values = [], [], []
    for deal in ref.won_in_window(data.deals, days, AS_OF, None):
        touches = ref.eligible_touches(deal, data.activities)
        if touches:
            journeys.append(" > ".join(str(t["channel"]) for t in touches))
            hours.append(
                " > ".join(
                    repr((deal["created_at"] - t["occurred_at"]).total_seconds() / 3600)
                    for t in touches
                )
            )
        else:
            journeys.append("unattributed")
            hours.append("0.0")
        values.append(float(deal["value"]))
    if not journeys:
        return {}
    frame = pl.DataFrame(
        {
            "journey_id": [str(i) for i in range(len(journeys))],
            "channels": journeys,
            "conv": [True] * len(journeys),
            "hours": hours,
            "value": values,
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
    result = MAM_MODELS[model](mam).to_dict()
    return {
        str(ch): float(v) for ch, v in zip(result["channels"], result["attribution"], strict=True)
    }


def check_attribution(db: Any, data: Loaded, days: int | None) -> None:
    won = ref.won_in_window(data.deals, days, AS_OF, None)
    total = float(sum((d["value"] for d in won), Decimal(0)))
    tolerance = 1e-6 * max(total, 1.0) + 1e-6  # + the 6-decimal rounding of the output
    for model in ref.MODELS:
        rows = sql_attribution(db, data, days, model)
        got = {r[0]: (float(r[1]), float(r[2])) for r in rows}
        expected = ref.attribution(data.deals, data.activities, days, AS_OF, model)
        assert got.keys() == expected.keys(), model
        for channel, (deals_exp, value_exp) in expected.items():
            assert abs(got[channel][0] - deals_exp) <= 1e-6, (model, channel)
            assert abs(got[channel][1] - value_exp) <= tolerance, (model, channel)
        # Invariants: shares sum to the won deals and to 100 %, rows in the documented order.
        assert abs(sum(d for d, _ in got.values()) - len(won)) <= 1e-5
        if total > 0:
            assert abs(sum(float(r[4]) for r in rows) - 100) <= 0.01 * len(rows)
        assert [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
        if load_oracle() is not None and model in MAM_MODELS:
            # Channels with a vanishing share (time decay of year-old touches) may be a row of
            # 0 on one side and missing on the other: compare every channel either side names.
            oracle = mam_attribution(data, days, model)
            for channel in oracle.keys() | got.keys():
                ours = got[channel][1] if channel in got else 0.0
                assert abs(ours - oracle.get(channel, 0.0)) <= tolerance, (model, channel)


def check_custom_half_life(db: Any, data: Loaded, days: int | None) -> None:
    """Another half-life takes the computed-on-the-fly path rather than the kept credits."""
    rows = db.execute(
        "SELECT channel, deals_attributed, total_value FROM crm.get_channel_revenue_attribution("
        "%s, %s, 'time_decay', %s, p_half_life_days => 2.5)",
        (data.client_id, days, AS_OF),
    ).fetchall()
    expected = ref.attribution(data.deals, data.activities, days, AS_OF, "time_decay", 2.5)
    assert {r[0] for r in rows} == expected.keys()
    total = float(sum((d["value"] for d in ref.won_in_window(data.deals, days, AS_OF, None)), 0))
    for channel, deals, value in rows:
        assert abs(float(deals) - expected[channel][0]) <= 1e-6
        assert abs(float(value) - expected[channel][1]) <= 1e-6 * max(total, 1.0) + 1e-6


def check_the_rest(db: Any, data: Loaded, days: int | None) -> None:
    c = data.client_id
    show = db.execute(
        "SELECT * FROM crm.get_show_rate_analysis(%s, %s, %s)", (c, days, AS_OF)
    ).fetchone()
    assert show == ref.show_rate(data.meetings, days, AS_OF)
    funnel = db.execute(
        "SELECT * FROM crm.get_funnel_analytics(%s, %s, %s)", (c, days, AS_OF)
    ).fetchone()
    assert funnel == ref.funnel(data.leads, data.meetings, data.deals, days, AS_OF)
    lost = db.execute(
        "SELECT lost_reason::text, count, total_lost_value, avg_days_in_pipeline,"
        " common_stage_lost::text FROM crm.get_lost_deal_analysis(%s, %s, %s)",
        (c, days, AS_OF),
    ).fetchall()
    assert lost == ref.lost_deals(data.deals, data.history, days, AS_OF)
    # Invariants
    assert all(r is None or 0 <= r <= 100 for r in (*show[1:6], *funnel[7:]))
    total_leads, booked, showed, created, won = funnel[:5]
    assert total_leads >= booked >= showed and created >= won
    if show[1] is not None:
        assert show[1] + show[2] == 100


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=clients, noise=clients, days=WINDOWS)
def test_analytics_agree_with_the_oracles(
    db: psycopg.Connection[Any], specs: list[Any], noise: list[Any], days: int | None
) -> None:
    with db.transaction(force_rollback=True):
        data = load(db, specs)
        before = {
            "attribution": sql_attribution(db, data, days, "time_decay"),
            "lost": db.execute(
                "SELECT * FROM crm.get_lost_deal_analysis(%s, %s, %s)",
                (data.client_id, days, AS_OF),
            ).fetchall(),
        }
        load(db, noise)  # another client of the same agency
        check_attribution(db, data, days)
        check_custom_half_life(db, data, days)
        check_the_rest(db, data, days)
        assert sql_attribution(db, data, days, "time_decay") == before["attribution"]
        assert (
            db.execute(
                "SELECT * FROM crm.get_lost_deal_analysis(%s, %s, %s)",
                (data.client_id, days, AS_OF),
            ).fetchall()
            == before["lost"]
        )


def test_the_attribution_oracle_is_installed() -> None:
    if load_oracle() is None:
        pytest.fail("marketing-attribution-models is missing: make install installs [oracle]")
