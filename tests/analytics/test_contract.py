"""The common contract of every analytics function, read from the catalog so a new function
is held to it without anyone remembering."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.analytics.datasets import AS_OF
from tests.helpers.fixtures import raises_sqlstate


def analytics(db: psycopg.Connection[Any]) -> list[tuple[str, list[str], list[str], str]]:
    return [
        (str(name), list(args), list(types), str(volatility))
        for name, args, types, volatility in db.execute(
            """
            SELECT p.proname, p.proargnames[1:p.pronargs],
                   ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t),
                   p.provolatile
            FROM pg_proc AS p
            WHERE p.pronamespace = 'crm'::regnamespace AND p.proname LIKE 'get\\_%'
            ORDER BY p.proname
            """
        ).fetchall()
    ]


def test_there_are_the_spec_functions_and_the_pipeline_ones(db: psycopg.Connection[Any]) -> None:
    assert [name for name, *_ in analytics(db)] == [
        "get_agency_comparison", "get_attribution_comparison", "get_channel_revenue_attribution",
        "get_funnel_analytics", "get_lost_deal_analysis", "get_lost_reasons_by_stage",
        "get_markov_attribution", "get_pipeline_velocity", "get_show_rate_analysis",
        "get_show_rate_by_week", "get_show_rate_drivers", "get_stage_conversion",
        "get_time_in_stage", "get_weighted_forecast",
    ]  # fmt: skip


# The functions over every client the caller may see, rather than one client.
AGENCY_WIDE = {"get_agency_comparison"}


def test_signatures_follow_the_contract(db: psycopg.Connection[Any]) -> None:
    for name, args, types, volatility in analytics(db):
        assert volatility == "s", f"{name} must be STABLE"
        assert types[args.index("p_as_of")] == "timestamp with time zone", name
        if name in AGENCY_WIDE:  # every visible client: no client argument, then as below
            assert "p_client_id" not in args, name
            args, types = ["p_client_id", *args], ["uuid", *types]
        assert (args[0], types[0]) == ("p_client_id", "uuid"), name
        if name != "get_weighted_forecast":  # a snapshot at p_as_of: no window
            assert (args[1], types[1]) == ("p_days", "integer"), name


@pytest.mark.parametrize("days", [0, -1])
def test_every_windowed_function_refuses_a_non_positive_p_days(
    db: psycopg.Connection[Any], days: int
) -> None:
    for name, args, *_ in analytics(db):
        if "p_days" not in args:
            continue
        client = "p_client_id => %(client)s, " if "p_client_id" in args else ""
        with raises_sqlstate(db, "22023") as info:
            db.execute(
                f"SELECT * FROM crm.{name}({client}p_days => %(days)s)".encode(),
                {"client": uuid.uuid4(), "days": days},
            )
        assert f"{name}: p_days {days}" in info.value.diag.message_primary


def test_an_unknown_client_gets_no_rows_or_zero_counts(db: psycopg.Connection[Any]) -> None:
    for name, args, *_ in analytics(db):
        if "p_client_id" not in args:
            continue
        rows = db.execute(
            f"SELECT * FROM crm.{name}(p_client_id => %s, p_as_of => %s)".encode(),
            (uuid.uuid4(), AS_OF),
        ).fetchall()
        for row in rows:
            numbers = [v for v in row if isinstance(v, int) and not isinstance(v, bool)]
            assert all(v == 0 for v in numbers), (name, row)


def test_stage_conversion_refuses_an_unknown_mode(db: psycopg.Connection[Any]) -> None:
    with raises_sqlstate(db, "22023") as info:
        db.execute(
            "SELECT * FROM crm.get_stage_conversion(%s, 90, now(), 'sideways')", (uuid.uuid4(),)
        )
    assert "p_mode 'sideways' is not one of strict, any" in info.value.diag.message_primary
