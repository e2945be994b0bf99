"""Every bad argument of an analytics function is refused with 22023, a message that names the
function, the argument and the value, and a hint; never a silent empty answer, never a raw
interval or timestamp error. The functions and their arguments are read from the catalog, so a
new function is held to this without anyone remembering."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from tests.analytics.datasets import AS_OF
from tests.analytics.test_contract import AGENCY_WIDE, analytics
from tests.helpers.fixtures import Make, raises_sqlstate


def refused(
    db: psycopg.Connection[Any], name: str, argument: str, value: Any, **others: Any
) -> psycopg.errors.Diagnostic:
    """Call crm.<name> with argument => value (cast to its type) and the others by name; assert
    22023 naming the function and the argument, with a hint."""
    args = {"p_client_id": uuid.uuid4(), **others, argument: value}
    if name in AGENCY_WIDE:  # every client the caller sees: no client argument
        del args["p_client_id"]
    sql = ", ".join(f"{a} => %({a})s" for a in args)
    with raises_sqlstate(db, "22023") as info:
        db.execute(f"SELECT * FROM crm.{name}({sql})".encode(), args)
    diag = info.value.diag
    assert (diag.message_primary or "").startswith(f"{name}: {argument} "), diag.message_primary
    assert diag.message_hint, (name, argument, value)
    return diag


def with_argument(db: psycopg.Connection[Any], argument: str) -> list[str]:
    names = [name for name, args, *_ in analytics(db) if argument in args]
    assert names, f"no analytics function has {argument}"
    return names


def test_every_function_refuses_a_null_client(db: psycopg.Connection[Any]) -> None:
    for name in with_argument(db, "p_client_id"):
        diag = refused(db, name, "p_client_id", None, p_as_of=AS_OF)
        assert "NULL" in (diag.message_primary or "")


@pytest.mark.parametrize(
    "as_of",
    # (mid-year, so that the year shown is the same in any session time zone)
    [None, "infinity", "-infinity", "200000-06-01 00:00+00", "294276-06-01 00:00+00",
     "4713-06-01 00:00+00 BC", "0001-12-31 23:00+00 BC", "10000-06-01 00:00+00"],
)  # fmt: skip
def test_every_function_refuses_an_as_of_that_is_null_infinite_or_absurd(
    db: psycopg.Connection[Any], make: Make, as_of: str | None
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.deal(lead, created_at="2026-01-01 00:00+00")
    for name in with_argument(db, "p_as_of"):
        diag = refused(db, name, "p_as_of", as_of, p_client_id=client["id"])
        if as_of is not None:
            assert as_of.split("-")[0].lstrip("0") in (diag.message_primary or "")


def test_the_years_1_to_9999_are_accepted_as_p_as_of(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.deal(lead, created_at="2026-01-01 00:00+00")
    for as_of in ("0001-01-01 00:00+00", "9999-12-31 23:59:59.999999+00"):
        for name, args, *_ in analytics(db):
            # the longest window, reaching back to 2738 BC from the year 1
            days = ", p_days => 1000000" if "p_days" in args else ""
            client_id = "" if name in AGENCY_WIDE else "p_client_id => %(client)s, "
            db.execute(
                f"SELECT * FROM crm.{name}({client_id}p_as_of => %(as_of)s{days})".encode(),
                {"client": client["id"], "as_of": as_of},
            ).fetchall()


@pytest.mark.parametrize("days", [1_000_001, 3_000_000, 100_000_000, 2_147_483_647])
def test_every_windowed_function_refuses_a_window_longer_than_a_million_days(
    db: psycopg.Connection[Any], days: int
) -> None:
    for name in with_argument(db, "p_days"):
        diag = refused(db, name, "p_days", days, p_as_of=AS_OF)
        assert f"p_days {days} " in (diag.message_primary or "")
        assert "NULL" in (diag.message_hint or "")  # the way to ask for all time


@pytest.mark.parametrize("currency", ["aud", "EURO", "", " AUD", "AU", "A1D", "AUD "])
def test_every_function_refuses_a_currency_that_is_not_an_iso_code(
    db: psycopg.Connection[Any], make: Make, currency: str
) -> None:
    client = make.client()
    lead = make.lead(client)
    make.deal(lead, stage="closed_won", probability=None, created_at="2026-05-01 00:00+00",
              closed_at="2026-05-02 00:00+00")  # fmt: skip
    for name in with_argument(db, "p_currency"):
        diag = refused(db, name, "p_currency", currency, p_client_id=client["id"], p_as_of=AS_OF)
        assert f"'{currency}'" in (diag.message_primary or "")
        assert "'AUD'" in (diag.message_hint or "")


def test_a_well_formed_currency_nobody_uses_gives_zeros(db: psycopg.Connection[Any]) -> None:
    row = db.execute(
        "SELECT deals_created, total_won_value FROM crm.get_funnel_analytics(%s, 90, %s, 'XTS')",
        (uuid.uuid4(), AS_OF),
    ).fetchone()
    assert row == (0, 0)


def test_weighted_forecast_refuses_a_null_as_of(db: psycopg.Connection[Any], make: Make) -> None:
    client = make.client()
    make.deal(make.lead(client))
    with raises_sqlstate(db, "22023") as info:
        db.execute("SELECT * FROM crm.get_weighted_forecast(%s, NULL)", (client["id"],))
    assert info.value.diag.message_primary == "get_weighted_forecast: p_as_of must not be NULL"


@pytest.mark.parametrize(("model", "shown"), [(None, "NULL"), ("", "''"), ("Linear", "'Linear'")])
def test_the_model_and_the_mode_name_the_bad_value(
    db: psycopg.Connection[Any], model: str | None, shown: str
) -> None:
    diag = refused(db, "get_channel_revenue_attribution", "p_model", model, p_as_of=AS_OF)
    assert shown in (diag.message_primary or "")
    diag = refused(db, "get_stage_conversion", "p_mode", model, p_as_of=AS_OF)
    assert shown in (diag.message_primary or "")


def test_comparison_names_itself_for_a_bad_half_life_or_currency(
    db: psycopg.Connection[Any],
) -> None:
    refused(db, "get_attribution_comparison", "p_half_life_days", float("nan"), p_as_of=AS_OF)
    refused(db, "get_attribution_comparison", "p_currency", "usd", p_as_of=AS_OF)
