"""crm.get_agency_comparison: every client side by side. Each client's numbers must be exactly
what the per-client functions return; the agency's rates, the Wilson intervals, the flags,
the medians and the ranks are recomputed here independently (the intervals by statsmodels
when the oracle extra is installed, else by the textbook formula written out below)."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from tests.analytics import reference as ref
from tests.analytics.datasets import AS_OF, clients, load
from tests.helpers.fixtures import Make, Row, raises_sqlstate

D = timedelta(days=1)
Z = 1.959963984540054  # the 97.5th percentile of the standard normal distribution
CENT = Decimal("0.01")
# (metric, the column ranked, higher is better, compared within one currency)
METRICS = [
    ("show_rate", "show_rate", True, False),
    ("win_rate", "win_rate", True, False),
    ("pipeline_value", "pipeline_value", True, True),
    ("won_value", "won_value", True, True),
    ("cycle_days", "avg_cycle_days", False, False),
    ("channel_yield", "best_channel_yield", True, True),
]


def agency(
    db: psycopg.Connection[Any],
    days: int | None = 90,
    as_of: datetime = AS_OF,
    currency: str | None = None,
) -> list[Row]:
    with db.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM crm.get_agency_comparison(%s, %s, %s)", (days, as_of, currency)
        ).fetchall()


def one(db: psycopg.Connection[Any], query: str, *args: Any) -> Row:
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(query.encode(), args).fetchone()
    assert row is not None
    return row


# --- the independent oracles ----------------------------------------------------------------


def textbook_wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)."""
    p = k / n
    centre = p + Z * Z / (2 * n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (centre - half) / (1 + Z * Z / n), (centre + half) / (1 + Z * Z / n)


def wilson(k: int, n: int) -> tuple[float, float]:
    """The interval in percent, from statsmodels when it is installed (the oracle extra)."""
    try:
        from statsmodels.stats.proportion import proportion_confint
    except ImportError:  # pragma: no cover - CI installs the oracle extra
        if os.environ.get("CI"):
            raise
        low, high = textbook_wilson(k, n)
    else:
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return 100 * float(low), 100 * float(high)


def assert_interval(low: Decimal | None, high: Decimal | None, k: int, n: int) -> None:
    if n == 0:
        assert (low, high) == (None, None)
        return
    want_low, want_high = wilson(k, n)
    # 2-decimal rounding of the same real number, computed in two floating-point orders
    assert low is not None and abs(float(low) - want_low) <= 0.005 + 1e-9, (low, want_low, k, n)
    assert high is not None and abs(float(high) - want_high) <= 0.005 + 1e-9, (high, k, n)


def half_up(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def median(values: list[Decimal]) -> Decimal | None:
    return half_up(statistics.median(values)) if values else None


def competition_rank(value: Decimal, values: list[Decimal], higher_is_better: bool) -> int:
    better = [v for v in values if (v > value if higher_is_better else v < value)]
    return len(better) + 1


def check_agency_numbers(rows: list[Row]) -> None:
    """What each row says about the agency, recomputed from the rows' own per-client numbers."""
    held = sum(r["held_meetings"] for r in rows)
    resolved = sum(r["meetings"] for r in rows)
    won = sum(r["won_deals"] for r in rows)
    closed = sum(r["closed_deals"] for r in rows)
    for r in rows:
        assert_interval(r["show_rate_ci_low"], r["show_rate_ci_high"], r["held_meetings"],
                        r["meetings"])  # fmt: skip
        assert_interval(r["win_rate_ci_low"], r["win_rate_ci_high"], r["won_deals"],
                        r["closed_deals"])  # fmt: skip
        other_n, other_k = resolved - r["meetings"], held - r["held_meetings"]
        assert r["agency_meetings"] == other_n
        assert r["agency_show_rate"] == ref.rate(other_k, other_n)
        assert_interval(r["agency_show_rate_ci_low"], r["agency_show_rate_ci_high"], other_k,
                        other_n)  # fmt: skip
        other_n, other_k = closed - r["closed_deals"], won - r["won_deals"]
        assert r["agency_closed_deals"] == other_n
        assert r["agency_win_rate"] == ref.rate(other_k, other_n)
        assert_interval(r["agency_win_rate_ci_low"], r["agency_win_rate_ci_high"], other_k,
                        other_n)  # fmt: skip
        assert r["pooled_show_rate"] == ref.rate(held, resolved)
        assert r["pooled_win_rate"] == ref.rate(won, closed)
        for kind in ("show_rate", "win_rate"):
            low, agency_low = r[f"{kind}_ci_high"], r[f"agency_{kind}_ci_low"]
            flagged = low is not None and agency_low is not None and low < agency_low
            assert r[f"{kind}_below_agency"] is flagged, (kind, r)
        assert r["clients"] == len(rows)
        for metric, column, higher, money in METRICS:
            peers = [p[column] for p in rows if not money or p["currency"] == r["currency"]]
            values = [v for v in peers if v is not None]
            assert r[f"median_{'cycle_days' if metric == 'cycle_days' else metric}"] == median(
                values
            ), metric
            assert r[f"{metric}_rank_of"] == len(values), metric
            expected = None if r[column] is None else competition_rank(r[column], values, higher)
            assert r[f"{metric}_rank"] == expected, metric


def resolved_meetings(db: psycopg.Connection[Any], client: Any, days: int | None,
                      as_of: datetime) -> tuple[int, int]:  # fmt: skip
    """(resolved, held) read from the table, as docs/analytics.md defines them."""
    meetings = db.execute(
        "SELECT scheduled_at, showed_up, meeting_outcome, deleted_at FROM crm.meetings"
        " WHERE client_id = %s",
        (client,),
    ).fetchall()
    resolved = held = 0
    for scheduled, showed, outcome, deleted in meetings:
        if deleted is not None or not ref.in_window(scheduled, days, as_of):
            continue
        if outcome in ("cancelled", "rescheduled"):
            continue
        if showed is True:
            resolved, held = resolved + 1, held + 1
        elif showed is False or outcome == "no_show":
            resolved += 1
    return resolved, held


def best_channel(
    db: psycopg.Connection[Any], r: Row, days: int | None, as_of: datetime
) -> tuple[str | None, Decimal | None, int | None]:
    """(best channel, its yield, its leads) from the linear attribution and the touches."""
    credit = {
        channel: value
        for channel, _, value, _, _ in db.execute(
            "SELECT * FROM crm.get_channel_revenue_attribution(%s, %s, 'linear', %s,"
            " p_currency => %s)",
            (r["client_id"], days, as_of, r["currency"]),
        ).fetchall()
    }
    touches = db.execute(
        "SELECT a.channel::text, a.lead_id, a.occurred_at FROM crm.activities AS a"
        " JOIN crm.leads AS l ON l.client_id = a.client_id AND l.id = a.lead_id"
        " WHERE a.client_id = %s AND a.deleted_at IS NULL AND l.deleted_at IS NULL",
        (r["client_id"],),
    ).fetchall()
    leads: dict[str, set[Any]] = {}
    for channel, lead, occurred in touches:
        if ref.in_window(occurred, days, as_of):
            leads.setdefault(channel, set()).add(lead)
    if not leads:
        return None, None, None
    yields = {ch: half_up(credit.get(ch, Decimal(0)) / len(ls)) for ch, ls in leads.items()}
    top = max(yields.values())
    if top == 0:
        return None, Decimal(0), None
    channel = min(ch for ch, y in yields.items() if y == top)
    return channel, top, len(leads[channel])


def check_per_client(
    db: psycopg.Connection[Any], rows: list[Row], days: int | None, as_of: datetime
) -> None:
    """Every per-client number of every row is the per-client function's."""
    for r in rows:
        c, cur = r["client_id"], r["currency"]
        show = one(db, "SELECT * FROM crm.get_show_rate_analysis(%s, %s, %s)", c, days, as_of)
        assert r["show_rate"] == show["show_rate"]
        resolved, held = resolved_meetings(db, c, days, as_of)
        assert (r["meetings"], r["held_meetings"]) == (resolved, held)
        assert r["show_rate"] == ref.rate(held, resolved)
        # the n get_show_rate_drivers reports behind its rates (each meeting in one lead_time)
        drivers = db.execute(
            "SELECT coalesce(sum(meetings), 0), coalesce(sum(held), 0)"
            " FROM crm.get_show_rate_drivers(%s, %s, %s) WHERE dimension = 'lead_time'",
            (c, days, as_of),
        ).fetchone()
        assert drivers == (resolved, held)
        velocity = one(db, "SELECT * FROM crm.get_pipeline_velocity(%s, %s, %s, %s)",
                       c, days, as_of, cur)  # fmt: skip
        assert r["win_rate"] == velocity["win_rate"]
        assert r["avg_cycle_days"] == velocity["avg_cycle_days"]
        assert r["won_deals"] == velocity["won_deals"]
        assert r["closed_deals"] == velocity["won_deals"] + velocity["lost_deals"]
        funnel = one(db, "SELECT * FROM crm.get_funnel_analytics(%s, %s, %s, %s)",
                     c, days, as_of, cur)  # fmt: skip
        assert r["pipeline_value"] == funnel["total_pipeline_value"]
        assert r["won_value"] == funnel["total_won_value"]
        assert (r["best_channel"], r["best_channel_yield"], r["best_channel_leads"]) == (
            best_channel(db, r, days, as_of)
        )


# --- random agencies --------------------------------------------------------------------------

EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.property
@EXAMPLES
@given(
    agencies=st.lists(
        st.tuples(clients, st.sampled_from(["AUD", "AUD", "USD"])), min_size=1, max_size=4
    ),
    days=st.sampled_from([None, 30, 90, 365]),
    back=st.sampled_from([0, 0, 100]),
    reported=st.sampled_from([None, None, "AUD", "USD"]),
)
def test_every_number_is_the_per_client_functions_and_the_agency_adds_up(
    db: psycopg.Connection[Any], agencies: list[Any], days: int | None, back: int,
    reported: str | None,
) -> None:  # fmt: skip
    as_of = AS_OF - back * D
    with db.transaction(force_rollback=True):
        for specs, currency in agencies:
            load(db, specs, currency)
        rows = agency(db, days, as_of, reported)
        expected = [reported or currency for _, currency in agencies]
        assert sorted(r["currency"] for r in rows) == sorted(expected)
        assert len(rows) == len(agencies)
        assert [(r["client_name"], r["client_id"]) for r in rows] == sorted(
            (r["client_name"], r["client_id"]) for r in rows
        )
        check_per_client(db, rows, days, as_of)
        check_agency_numbers(rows)


# --- hand-built agencies ----------------------------------------------------------------------


def client_with(
    make: Make,
    name: str,
    held: int = 0,
    no_show: int = 0,
    won: int = 0,
    lost: int = 0,
    currency: str = "AUD",
    value: int = 1000,
    cycle_days: int = 10,
) -> Row:
    """A client with ``held`` and ``no_show`` meetings and ``won`` and ``lost`` deals (each of
    ``value``, created ``cycle_days`` before closing) in the 90 days before AS_OF."""
    client = make.client(name=name, default_currency=currency)
    lead = make.lead(client, created_at=AS_OF - 80 * D)
    for i in range(held + no_show):
        when = AS_OF - (1 + i % 60) * D
        make.meeting(lead, scheduled_at=when, booked_at=when - 2 * D, showed_up=i < held)
    for i in range(won + lost):
        closed = AS_OF - (1 + i % 40) * D
        stage = "closed_won" if i < won else "closed_lost"
        extra = {} if i < won else {"lost_reason": "no_budget"}
        make.deal(lead, stage=stage, probability=None, value=value, currency=currency,
                  created_at=closed - cycle_days * D, closed_at=closed, **extra)  # fmt: skip
    return client


def by_name(rows: list[Row]) -> dict[str, Row]:
    return {r["client_name"]: r for r in rows}


def test_a_clearly_lower_rate_with_enough_n_is_flagged_a_small_sample_is_not(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client_with(make, "A steady", held=40, no_show=10, won=12, lost=8)
    client_with(make, "B strong", held=45, no_show=5, won=14, lost=6)
    # clearly lower on both, with 40 meetings and 30 closed deals behind it
    client_with(make, "C weak", held=10, no_show=30, won=3, lost=27)
    # as low, but over 3 meetings and 3 deals: the intervals overlap
    client_with(make, "D tiny", held=1, no_show=2, won=0, lost=3)
    # nothing resolved, nothing closed
    client_with(make, "E new")
    rows = agency(db)
    check_agency_numbers(rows)
    got = by_name(rows)
    assert [r["client_name"] for r in rows] == ["A steady", "B strong", "C weak", "D tiny",
                                                "E new"]  # fmt: skip

    weak = got["C weak"]
    assert (weak["meetings"], weak["held_meetings"], weak["show_rate"]) == (40, 10, Decimal("25"))
    # the agency C is compared with is A, B and D pooled: 86 held of 103
    assert (weak["agency_meetings"], weak["agency_show_rate"]) == (103, Decimal("83.50"))
    assert weak["show_rate_ci_high"] < weak["agency_show_rate_ci_low"]
    assert weak["show_rate_below_agency"] and weak["win_rate_below_agency"]
    assert (weak["closed_deals"], weak["agency_closed_deals"]) == (30, 43)

    tiny = got["D tiny"]
    assert tiny["show_rate"] == Decimal("33.33") and tiny["win_rate"] == 0
    assert tiny["show_rate_ci_high"] >= tiny["agency_show_rate_ci_low"]
    assert tiny["win_rate_ci_high"] >= tiny["agency_win_rate_ci_low"]
    assert not tiny["show_rate_below_agency"] and not tiny["win_rate_below_agency"]

    new = got["E new"]
    assert (new["meetings"], new["closed_deals"]) == (0, 0)
    assert new["show_rate"] is new["show_rate_ci_low"] is new["show_rate_ci_high"] is None
    assert new["win_rate"] is new["win_rate_ci_low"] is new["win_rate_ci_high"] is None
    assert new["show_rate_below_agency"] is False and new["win_rate_below_agency"] is False
    assert new["show_rate_rank"] is None and new["show_rate_rank_of"] == 4

    for name in ("A steady", "B strong"):
        assert not got[name]["show_rate_below_agency"], name
        assert not got[name]["win_rate_below_agency"], name


def test_a_lone_client_has_no_agency_to_compare_with(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client_with(make, "Solo", held=1, no_show=30, won=0, lost=30)
    (row,) = agency(db)
    assert (row["agency_meetings"], row["agency_closed_deals"]) == (0, 0)
    assert row["agency_show_rate"] is row["agency_show_rate_ci_low"] is None
    assert row["agency_win_rate"] is row["agency_win_rate_ci_high"] is None
    assert not row["show_rate_below_agency"] and not row["win_rate_below_agency"]
    assert row["pooled_show_rate"] == row["show_rate"] == Decimal("3.23")
    assert (row["clients"], row["show_rate_rank"], row["show_rate_rank_of"]) == (1, 1, 1)
    assert row["median_show_rate"] == row["show_rate"]


def test_medians_and_ranks_with_odd_and_even_counts_ties_and_gaps(
    db: psycopg.Connection[Any], make: Make
) -> None:
    # show rates 50, 75, 100 (odd: the middle one)
    client_with(make, "a", held=1, no_show=1, won=1, lost=1, cycle_days=30, value=100)
    client_with(make, "b", held=3, no_show=1, won=3, lost=1, cycle_days=10, value=200)
    client_with(make, "c", held=2, no_show=0, won=1, lost=0, cycle_days=20, value=300)
    rows = agency(db)
    check_agency_numbers(rows)
    assert [(r["show_rate"], r["show_rate_rank"]) for r in rows] == [
        (Decimal("50"), 3), (Decimal("75"), 2), (Decimal("100"), 1),
    ]  # fmt: skip
    assert {r["median_show_rate"] for r in rows} == {Decimal("75.00")}
    # the shortest cycle is the best
    assert [r["cycle_days_rank"] for r in rows] == [3, 1, 2]
    assert {r["median_cycle_days"] for r in rows} == {Decimal("20.00")}
    # pipeline 200, 800, 300
    assert [r["pipeline_value_rank"] for r in rows] == [3, 1, 2]

    # even, with a tie: 50, 75, 75, 100 -> median 75, ranks 4, 2, 2, 1; and a client with
    # nothing resolved is neither ranked nor in the median
    client_with(make, "d", held=3, no_show=1, won=1, lost=2, cycle_days=15, value=50)
    client_with(make, "e")
    rows = agency(db)
    check_agency_numbers(rows)
    got = by_name(rows)
    assert [got[n]["show_rate_rank"] for n in "abcde"] == [4, 2, 1, 2, None]
    assert {r["show_rate_rank_of"] for r in rows} == {4}
    assert {r["median_show_rate"] for r in rows} == {Decimal("75.00")}
    # win rates 50, 75, 100, 33.33: median (50 + 75) / 2
    assert {r["median_win_rate"] for r in rows} == {Decimal("62.50")}
    assert [got[n]["win_rate_rank"] for n in "abcde"] == [3, 2, 1, 4, None]
    # cycle days 30, 10, 20, 15 -> (15 + 20) / 2 = 17.5
    assert {r["median_cycle_days"] for r in rows} == {Decimal("17.50")}
    # pipeline 200, 800, 300, 150, 0 (a client without deals has 0, ranked last)
    assert [got[n]["pipeline_value_rank"] for n in "abcde"] == [3, 1, 2, 4, 5]
    assert {r["median_pipeline_value"] for r in rows} == {Decimal("200.00")}
    assert {r["clients"] for r in rows} == {5}


def test_money_is_compared_within_one_currency(db: psycopg.Connection[Any], make: Make) -> None:
    client_with(make, "aud 1", won=1, value=100)
    client_with(make, "aud 2", won=1, value=300)
    client_with(make, "usd", won=2, value=5000, currency="USD")
    rows = agency(db)
    check_agency_numbers(rows)
    got = by_name(rows)
    assert [r["currency"] for r in rows] == ["AUD", "AUD", "USD"]
    assert got["usd"]["won_value"] == 10000
    assert (got["usd"]["won_value_rank"], got["usd"]["won_value_rank_of"]) == (1, 1)
    assert got["usd"]["median_won_value"] == 10000
    assert {got[n]["median_won_value"] for n in ("aud 1", "aud 2")} == {Decimal("200.00")}
    assert [got[n]["won_value_rank"] for n in ("aud 1", "aud 2")] == [2, 1]
    # rates are compared across currencies
    assert {r["win_rate_rank_of"] for r in rows} == {3}

    # p_currency reports every client in that currency: the AUD clients have no USD deal
    rows = agency(db, currency="USD")
    check_agency_numbers(rows)
    got = by_name(rows)
    assert {r["currency"] for r in rows} == {"USD"}
    assert [got[n]["won_value"] for n in ("aud 1", "aud 2", "usd")] == [0, 0, 10000]
    assert [got[n]["other_currency_deals"] for n in ("aud 1", "aud 2", "usd")] == [1, 1, 0]
    assert got["aud 1"]["win_rate"] is None
    assert {r["median_won_value"] for r in rows} == {Decimal("0.00")}


def test_a_client_with_deals_in_two_currencies_is_reported_in_its_own(
    db: psycopg.Connection[Any], make: Make
) -> None:
    """The per-client functions refuse to add AUD to USD unless told which; the agency view
    reports each client in its default currency and counts what it leaves out."""
    client = client_with(make, "mixed", won=2, lost=1, value=100)
    lead = make.lead(client, created_at=AS_OF - 70 * D)
    make.deal(lead, stage="closed_won", probability=None, value=900, currency="USD",
              created_at=AS_OF - 20 * D, closed_at=AS_OF - 5 * D)  # fmt: skip
    with raises_sqlstate(db, "22023"):
        db.execute("SELECT * FROM crm.get_funnel_analytics(%s, 90, %s)", (client["id"], AS_OF))
    (row,) = agency(db)
    assert (row["currency"], row["won_value"], row["won_deals"]) == ("AUD", 200, 2)
    assert row["other_currency_deals"] == 1
    check_per_client(db, [row], 90, AS_OF)
    (usd,) = agency(db, currency="USD")
    assert (usd["won_value"], usd["won_deals"], usd["other_currency_deals"]) == (900, 1, 3)
    check_per_client(db, [usd], 90, AS_OF)


def test_the_best_channel_is_the_highest_won_value_per_lead_reached(
    db: psycopg.Connection[Any], make: Make
) -> None:
    client = make.client(name="channels")
    won_lead = make.lead(client, created_at=AS_OF - 80 * D)
    other = make.lead(client, created_at=AS_OF - 80 * D)
    # email reaches both leads, linkedin only the winner: the 1200 won is split 600 / 600
    for lead in (won_lead, other):
        make.activity(lead, channel="email", occurred_at=AS_OF - 60 * D)
    make.activity(won_lead, channel="linkedin", occurred_at=AS_OF - 59 * D)
    # sms reached a lead, but only long before the window: no denominator, no yield
    make.activity(other, channel="sms", occurred_at=AS_OF - 200 * D)
    make.deal(won_lead, stage="closed_won", probability=None, value=1200,
              created_at=AS_OF - 50 * D, closed_at=AS_OF - 10 * D)  # fmt: skip
    (row,) = agency(db)
    assert (row["best_channel"], row["best_channel_yield"], row["best_channel_leads"]) == (
        "linkedin",
        Decimal("600.00"),
        1,
    )
    check_per_client(db, [row], 90, AS_OF)
    # reached leads, won nothing in the window: a yield of 0 and no best channel
    (row,) = agency(db, as_of=AS_OF - 20 * D)
    assert (row["best_channel"], row["best_channel_yield"], row["best_channel_leads"]) == (
        None,
        Decimal(0),
        None,
    )
    # reached no lead in the window: no yield at all
    (row,) = agency(db, days=30, as_of=AS_OF - 100 * D)
    assert row["best_channel"] is row["best_channel_yield"] is None


def test_soft_deleted_clients_and_rows_do_not_count(
    db: psycopg.Connection[Any], make: Make
) -> None:
    live = client_with(make, "live", held=3, no_show=1, won=1, lost=1)
    gone = client_with(make, "gone", held=0, no_show=20, won=0, lost=20)
    db.execute("UPDATE crm.clients SET deleted_at = %s WHERE id = %s", (AS_OF, gone["id"]))
    db.execute(
        "UPDATE crm.meetings SET deleted_at = %s WHERE client_id = %s AND showed_up",
        (AS_OF, live["id"]),
    )
    db.execute(
        "UPDATE crm.deals SET deleted_at = %s WHERE client_id = %s AND stage = 'closed_won'",
        (AS_OF, live["id"]),
    )
    (row,) = agency(db)
    assert row["client_name"] == "live"
    assert (row["meetings"], row["held_meetings"], row["show_rate"]) == (1, 0, Decimal(0))
    assert (row["closed_deals"], row["won_deals"]) == (1, 0)
    assert row["agency_meetings"] == 0 and row["clients"] == 1
    check_per_client(db, [row], 90, AS_OF)


@pytest.fixture
def two_clients(db: psycopg.Connection[Any], make: Make) -> Iterator[tuple[Row, Row]]:
    yield (
        client_with(make, "A viewer's", held=2, no_show=2, won=1, lost=1),
        client_with(make, "B other", held=30, no_show=1, won=10, lost=0, currency="USD"),
    )


@pytest.mark.parametrize("role", ["crm_client_viewer", "crm_api"])
def test_a_one_client_role_sees_its_own_row_compared_with_nobody(
    db: psycopg.Connection[Any], two_clients: tuple[Row, Row], role: str
) -> None:
    a, _ = two_clients
    everyone = by_name(agency(db))
    assert everyone["A viewer's"]["agency_meetings"] == 31
    db.execute("SELECT set_config('crm.client_id', %s, true)", (str(a["id"]),))
    db.execute(f"SET LOCAL ROLE {role}".encode())
    (row,) = agency(db)
    assert row["client_id"] == a["id"]
    # its own numbers, as the owner sees them; nothing of B, not even pooled into the agency
    for column in ("meetings", "show_rate", "show_rate_ci_low", "win_rate", "won_value"):
        assert row[column] == everyone["A viewer's"][column], column
    assert (row["agency_meetings"], row["agency_show_rate"], row["clients"]) == (0, None, 1)
    assert row["median_show_rate"] == row["show_rate"]
    db.execute("SELECT set_config('crm.client_id', '', true)")
    assert agency(db) == []


def test_an_analyst_sees_every_client(
    db: psycopg.Connection[Any], two_clients: tuple[Row, Row]
) -> None:
    owner = agency(db)
    db.execute("SET LOCAL ROLE crm_analyst")
    assert agency(db) == owner
    assert len(owner) == 2


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "as_of", "currency", "argument", "shown"),
    [
        (0, AS_OF, None, "p_days", "0"),
        (-1, AS_OF, None, "p_days", "-1"),
        (1_000_001, AS_OF, None, "p_days", "1000001"),
        (2_147_483_647, AS_OF, None, "p_days", "2147483647"),
        (90, None, None, "p_as_of", "NULL"),
        (90, "infinity", None, "p_as_of", "infinity"),
        (90, "-infinity", None, "p_as_of", "-infinity"),
        (90, "10000-06-01 00:00+00", None, "p_as_of", "10000"),
        (90, AS_OF, "aud", "p_currency", "'aud'"),
        (90, AS_OF, "", "p_currency", "''"),
        (90, AS_OF, "EURO", "p_currency", "'EURO'"),
    ],
)
def test_bad_arguments_are_refused_naming_the_function_and_the_argument(
    db: psycopg.Connection[Any], make: Make, days: int, as_of: Any, currency: str | None,
    argument: str, shown: str,
) -> None:  # fmt: skip
    client_with(make, "someone", held=1, won=1)  # a visible client, so per-client calls run
    for visible in (True, False):
        if not visible:
            db.execute("UPDATE crm.clients SET deleted_at = %s", (AS_OF,))
        with raises_sqlstate(db, "22023") as info:
            agency(db, days, as_of, currency)
        message = info.value.diag.message_primary or ""
        assert message.startswith(f"get_agency_comparison: {argument} "), message
        assert shown in message
        assert info.value.diag.message_hint


def test_all_time_and_the_defaults_are_accepted(db: psycopg.Connection[Any], make: Make) -> None:
    client_with(make, "someone", held=1, won=1)
    assert agency(db, None)[0]["meetings"] == 1
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM crm.get_agency_comparison()").fetchone()
    assert row is not None and row["client_name"] == "someone"
