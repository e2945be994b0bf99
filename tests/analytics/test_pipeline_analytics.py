"""The pipeline analytics beyond the spec, against the Python reference (and, for the Markov
model, against MAM's removal effects) on random clients loaded through the real tables."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings

from tests.analytics import reference as ref
from tests.analytics.datasets import AS_OF, Loaded, clients, load
from tests.analytics.oracle import load as load_oracle
from tests.analytics.test_against_oracles import WINDOWS

pytestmark = pytest.mark.property

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def close(got: Any, expected: Any, tolerance: float = 0.0051) -> bool:
    """Equal, or both numbers within tolerance (2-decimal rounding of float arithmetic)."""
    if got is None or expected is None:
        return got is expected
    if isinstance(expected, float):
        return abs(float(got) - expected) <= tolerance
    return bool(got == expected)


def rows_close(got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]]) -> None:
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected, strict=True):
        assert len(g) == len(e)
        assert all(close(a, b) for a, b in zip(g, e, strict=True)), (g, e)


def check_pipeline(db: Any, data: Loaded, days: int | None) -> None:
    c = data.client_id
    for mode in ("strict", "any"):
        got = db.execute(
            "SELECT stage::text, deals_entered, deals_moved_on, next_step_rate, cumulative_rate,"
            " deals_skipped, regressions FROM crm.get_stage_conversion(%s, %s, %s, %s)",
            (c, days, AS_OF, mode),
        ).fetchall()
        assert got == ref.stage_conversion(data.deals, data.history, days, AS_OF, mode), mode
        rates = [r for row in got for r in row[3:5] if r is not None]
        assert all(0 <= r <= 100 for r in rates)
        if mode == "strict":
            entered = [row[1] for row in got]
            assert entered == sorted(entered, reverse=True)  # a strict funnel never widens
    rows_close(
        db.execute(
            "SELECT stage::text, deals, median_days_latest, p90_days_latest, mean_days_latest,"
            " median_days_cumulative, p90_days_cumulative, mean_days_cumulative, open_deals,"
            " median_days_open FROM crm.get_time_in_stage(%s, %s, %s)",
            (c, days, AS_OF),
        ).fetchall(),
        ref.time_in_stage(data.deals, data.history, days, AS_OF),
    )
    velocity = db.execute(
        "SELECT * FROM crm.get_pipeline_velocity(%s, %s, %s)", (c, days, AS_OF)
    ).fetchall()
    rows_close(velocity, [ref.pipeline_velocity(data.deals, days, AS_OF)])
    forecast = db.execute("SELECT * FROM crm.get_weighted_forecast(%s, %s)", (c, AS_OF)).fetchall()
    assert forecast == ref.weighted_forecast(data.deals, data.history, AS_OF)
    drivers = db.execute(
        "SELECT * FROM crm.get_show_rate_drivers(%s, %s, %s)", (c, days, AS_OF)
    ).fetchall()
    rows_close(drivers, ref.show_rate_drivers(data.meetings, days, AS_OF))
    assert all(r[5] <= r[4] <= r[6] for r in drivers)


def mam_removal_effects(db: Any, data: Loaded, days: int | None) -> dict[str, float]:
    """MAM's removal effects on the same paths the SQL builds (crm_private.markov_paths)."""
    oracle = load_oracle()
    assert oracle is not None
    MAM, pl = oracle
    start = None if days is None else AS_OF - timedelta(days=days)
    steps = db.execute(
        "SELECT path_id, channel, converted FROM crm_private.markov_paths(%s, %s, %s, NULL)"
        " ORDER BY path_id, pos",
        (data.client_id, start or "-infinity", AS_OF),
    ).fetchall()
    paths: dict[int, tuple[list[str], bool]] = {}
    for path_id, channel, converted in steps:
        paths.setdefault(path_id, ([], converted))[0].append(channel)
    if not any(converted for _, converted in paths.values()):
        return {}
    frame = pl.DataFrame(
        {
            "journey_id": [str(p) for p in paths],
            "channels": [" > ".join(chs) for chs, _ in paths.values()],
            "conv": [conv for _, conv in paths.values()],
            "hours": [" > ".join("0.0" for _ in chs) for chs, _ in paths.values()],
        }
    )
    markov = MAM(
        frame, format_type="journey", channels_colname="channels",
        journey_with_conv_colname="conv", time_till_conv_colname="hours",
    ).run_markov(transition_to_same_state=False)  # fmt: skip
    effects = markov.metadata["removal_effect"]
    return {
        str(ch): float(v) for ch, v in zip(effects.index, effects["removal_effect"], strict=True)
    }


def check_markov(db: Any, data: Loaded, days: int | None) -> None:
    rows = db.execute(
        "SELECT * FROM crm.get_markov_attribution(%s, %s, %s)", (data.client_id, days, AS_OF)
    ).fetchall()
    won = ref.won_in_window(data.deals, days, AS_OF, None)
    assert abs(sum(float(r[2]) for r in rows) - len(won)) <= 1e-5
    if rows and sum(d["value"] for d in won) > 0:
        assert abs(sum(float(r[4]) for r in rows) - 100) <= 0.01 * len(rows)
    if load_oracle() is not None:
        ours = {r[0]: float(r[1]) for r in rows if r[0] != "unattributed"}
        oracle = mam_removal_effects(db, data, days)
        assert ours.keys() == oracle.keys() or not oracle
        for channel, effect in oracle.items():
            assert abs(ours[channel] - effect) <= 1e-6, channel


def check_comparison(db: Any, data: Loaded, days: int | None) -> None:
    table = db.execute(
        "SELECT * FROM crm.get_attribution_comparison(%s, %s, %s)", (data.client_id, days, AS_OF)
    ).fetchall()
    for column, model in enumerate(ref.MODELS, start=1):
        single = {
            r[0]: r[2]
            for r in db.execute(
                "SELECT * FROM crm.get_channel_revenue_attribution(%s, %s, %s, %s)",
                (data.client_id, days, model, AS_OF),
            ).fetchall()
        }
        assert {r[0]: r[column] for r in table if r[column] != 0} == {
            k: v for k, v in single.items() if v != 0
        }, model


@EXAMPLES
@given(specs=clients, days=WINDOWS)
def test_pipeline_analytics_agree_with_the_reference(
    db: psycopg.Connection[Any], specs: list[Any], days: int | None
) -> None:
    with db.transaction(force_rollback=True):
        data = load(db, specs)
        check_pipeline(db, data, days)
        check_markov(db, data, days)
        check_comparison(db, data, days)
