"""Every function of schema crm, read from pg_proc (so a new one is covered without anyone
remembering), called with NULLs, extremes and malformed values of each of its argument types
against a small realistic client, returns or raises a documented SQLSTATE.

Documented means listed in the "Errors" table of the docs (ERRORS_DOC): the codes a caller can
branch on. Never an internal error (XX000), an out-of-range number or time (22003, 22008), a
division by zero (22012), an input cast failing inside a function (22P02), a bare RAISE (P0001)
or a timeout (57014: every call has STATEMENT_TIMEOUT). Results never hold NaN, and a rate or
percentage is within 0-100.

Each argument is varied over its type's values while the others keep a good value (the
deterministic enumeration, in SHARDS tests so that xdist spreads them), then every argument is
NULL at once; Hypothesis mixes values of every argument at random (marked property). Each call
runs in its own savepoint, rolled back even when it succeeds, so calls never see each other."""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from tests.helpers.fixtures import Make

ROOT = Path(__file__).resolve().parents[2]
ERRORS_DOC = ROOT / "docs" / "analytics.md"
STATEMENT_TIMEOUT = "10s"
SHARDS = 4
AS_OF = "2026-06-01 00:00:00+00"
# Codes no function may ever leak, whatever the docs say.
NEVER = {"XX000", "22003", "22008", "22012", "22P02", "P0001", "57014"}

# Cases of functions being fixed by others that still raise an undocumented SQLSTATE:
# (function, argument, value as passed) -> SQLSTATE. Empty it as the fixes land: an entry that
# no longer happens fails the test, so the list never outlives its reason.
KNOWN_UNDOCUMENTED: dict[tuple[str, str, str], str] = {}

# Result columns that are percentages (0-100) and fractions (0-1): read from the functions'
# definitions (docs/analytics.md and the push functions).
PERCENT = re.compile(r"(_rate|_pct|percentage|percentage_of_revenue|_share|probability)$|^ci_")
FRACTION = re.compile(r"^removal_effect$")


# --- the argument values, per type ------------------------------------------------------------

LONG_TEXT = "x" * 100_000
ODD_TEXT = [
    "", " ", "NULL", "null", "0", "-1", "NaN", "infinity", "AUD", "aud", "EURO", "\t\n",
    "'; SELECT pg_sleep(60); --", "%s %I %L %%", '"quoted"', "back\\slash", "ünïcödé 🦄",
    "done", "dead", "lead", "deal", "closed_won", LONG_TEXT,
]  # fmt: skip
INTEGERS = ["0", "-1", "1", "2147483647", "-2147483648"]
BIGINTS = ["0", "-1", "1", "9223372036854775807", "-9223372036854775808"]
SMALLINTS = ["0", "-1", "1", "32767", "-32768"]
FLOATS = ["NaN", "Infinity", "-Infinity", "1e308", "1.7976931348623157e308", "5e-324", "-0",
          "0", "-1", "0.5"]  # fmt: skip
NUMERICS = ["NaN", "Infinity", "-Infinity", "1e308", "5e-324", "-0", "0", "-1",
            "99999999999999999999.99"]  # fmt: skip
TIMES = ["-infinity", "infinity", "4713-01-01 00:00:00+00 BC", "294276-12-31 00:00:00+00",
         "0001-01-01 00:00:00+00", "9999-12-31 23:59:59+00", "epoch", AS_OF]  # fmt: skip
DATES = ["-infinity", "infinity", "4713-01-01 BC", "5874897-12-31", "2026-06-01"]
# bytea in hex: empty, one byte, digests' length (zeros, ones), one byte too long, 100 kB.
BYTEAS = ["\\x", "\\x00", "\\x" + "00" * 32, "\\x" + "ff" * 32, "\\x" + "ab" * 33,
          "\\x" + "5a" * 100_000]  # fmt: skip
INTERVALS = ["0", "-1 day", "1 microsecond", "178000000 years", "-178000000 years",
             "2147483647 days", "-2147483648 months"]  # fmt: skip

SCALARS: dict[str, list[str]] = {
    "integer": INTEGERS,
    "bigint": BIGINTS,
    "smallint": SMALLINTS,
    "double precision": FLOATS,
    "real": ["NaN", "Infinity", "-Infinity", "3.4e38", "1e-45", "-0", "0", "-1"],
    "numeric": NUMERICS,
    "text": ODD_TEXT,
    "character varying": ODD_TEXT,
    "timestamp with time zone": TIMES,
    "timestamp without time zone": [t.replace("+00", "") for t in TIMES],
    "date": DATES,
    "interval": INTERVALS,
    "boolean": ["true", "false"],
    "jsonb": ["{}", "[]", "null", '{"a": [1, null]}', '"' + "x" * 10_000 + '"'],
    "json": ["{}", "[]", "null"],
    "bytea": BYTEAS,
}


def array_literal(elements: list[str]) -> str:
    quoted = (
        '"' + e.replace("\\", "\\\\").replace('"', '\\"') + '"' for e in elements if len(e) < 1000
    )
    return "{" + ",".join(quoted) + "}"


@dataclass
class Dataset:
    client: Any
    other_client: Any
    # argument name -> good values for the seeded client: the first is the baseline, the others
    # (the choices of an argument that picks a mode) are baselines too, so that every other
    # argument is varied under each of them (finish_push's p_retry_at under retry and defer)
    good: dict[str, list[str]]
    uuids: list[str]  # a random id, another client's ids, an id of the wrong kind
    # digests stored for either client (an OAuth state, an API token), as bytea in hex
    digests: list[str] = field(default_factory=list)

    def values(self, db: psycopg.Connection[Any], typ: str) -> list[str | None]:
        """NULL, then the extreme and malformed values of a type (fails for a type it does not
        know: add its values above rather than leave a function out)."""
        if typ == "uuid":
            return [None, *self.uuids]
        if typ == "bytea":
            return [None, *SCALARS[typ], *self.digests]
        if typ in SCALARS:
            return [None, *SCALARS[typ]]
        if typ.endswith("[]"):
            element = typ[:-2]
            inner = [v for v in self.values(db, element) if v is not None]
            big = array_literal(inner[:3] * 3000)
            return [None, "{}", "{NULL}", array_literal(inner), "{NULL," + array_literal(inner)[1:],
                    big]  # fmt: skip
        labels = db.execute(
            "SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum AS e"
            " WHERE e.enumtypid = %s::regtype",
            (typ,),
        ).fetchone()
        if labels and labels[0]:
            return [None, *labels[0]]
        pytest.fail(f"the fuzz has no values for type {typ}: add them to SCALARS")


# --- the client the functions run against -----------------------------------------------------

REDIRECT_URI = "https://agency.example/api/v1/crm/callback/hubspot"


def digest(value: str) -> bytes:
    """SHA-256, as the API stores OAuth states and tokens."""
    return hashlib.sha256(value.encode()).digest()


def hex_bytea(value: bytes) -> str:
    return "\\x" + value.hex()


def seed(db: psycopg.Connection[Any]) -> Dataset:
    """Two clients of one agency: leads with touches, meetings in every state, deals through
    stages (won, lost, open), a CRM config, pushes queued and claimed, a CRM id."""
    make = Make(db)
    d = timedelta(days=1)
    as_of = db.execute("SELECT %s::timestamptz", (AS_OF,)).fetchone()[0]  # type: ignore[index]
    now = db.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    clients = [make.client(auto_create_deals=True), make.client()]
    entities: list[dict[str, Any]] = []
    for client in clients:
        config = make.crm_config(client)
        leads = [make.lead(client, created_at=as_of - (60 - 5 * i) * d) for i in range(6)]
        for i, lead in enumerate(leads):
            for j, channel in enumerate(["email", "linkedin", "sms", "voice", "mail"][: i + 1]):
                make.activity(lead, channel=channel, occurred_at=as_of - (50 - 4 * i - j) * d)
        outcomes = [("good", None), (None, True), ("no_show", None), ("cancelled", None),
                    ("rescheduled", None), (None, None)]  # fmt: skip
        for lead, (outcome, showed) in zip(leads, outcomes, strict=True):
            make.meeting(lead, booked_at=as_of - 40 * d, scheduled_at=as_of - 30 * d,
                         meeting_outcome=outcome, showed_up=showed, confirmed=True,
                         confirmed_at=as_of - 35 * d, meeting_type="discovery")  # fmt: skip
        make.meeting(leads[0], booked_at=now - 2 * d, scheduled_at=now + 5 * d)  # upcoming
        deals = []
        for i, lead in enumerate(leads[:5]):
            deal = make.deal(
                lead,
                value=1000 * (i + 1),
                probability=None,
                created_at=as_of - 25 * d,
                expected_close_date=as_of.date() + i * d,
            )
            deals.append(deal)
        for stage, when in (("proposal", 20), ("negotiation", 15)):
            db.execute(
                "UPDATE crm.deals SET stage = %s, stage_changed_at = %s WHERE id = ANY(%s)",
                (stage, as_of - when * d, [x["id"] for x in deals[:4]]),
            )
        db.execute(
            "UPDATE crm.deals SET stage = 'closed_won', closed_at = %s WHERE id = ANY(%s)",
            (as_of - 10 * d, [deals[0]["id"], deals[1]["id"]]),
        )
        db.execute(
            "UPDATE crm.deals SET stage = 'closed_lost', closed_at = %s, lost_reason = 'no_budget'"
            " WHERE id = %s",
            (as_of - 8 * d, deals[2]["id"]),
        )
        make.deal(leads[5], stage="closed_lost", lost_reason="went_silent", probability=None,
                  created_at=as_of - 9 * d, closed_at=as_of - 7 * d)  # fmt: skip
        make.external_id(config, entity_type="lead", external_key=f"lead:{leads[0]['id']}",
                         entity_id=leads[0]["id"])  # fmt: skip
        # An OAuth flow begun and an API token, of each client (stored as digests).
        db.execute(
            "SELECT crm.begin_oauth_state(%s, %s, %s)",
            (client["id"], digest(f"state-{client['id']}"), REDIRECT_URI),
        )
        db.execute(
            "INSERT INTO crm_private.api_tokens (client_id, name, token_hash, token_prefix)"
            " VALUES (%s, 'fuzz', %s, 'acrm_fuzz')",
            (client["id"], digest(f"token-{client['id']}")),
        )
        entities.append({"config": config, "leads": leads, "deals": deals})
    client, other = clients
    claimed = db.execute(
        "SELECT id, attempts FROM crm.claim_pushes(%s, 'fuzz-runner', 3, 300) ORDER BY id",
        (client["id"],),
    ).fetchall()
    assert claimed, "the seeded client has no push to claim"
    pending = db.execute(
        "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s AND status = 'pending'",
        (client["id"],),
    ).fetchone()
    assert pending and pending[0] > 0, "the seeded client has no push left pending"
    mine, theirs = entities
    good: dict[str, list[str]] = {
        "p_client_id": [str(client["id"])],
        "p_days": ["90"],
        "p_as_of": [AS_OF],
        "p_model": ["time_decay", "first_touch", "last_touch", "linear", "position_based",
                    "j_shaped", "inverse_j"],
        "p_mode": ["any", "strict"],
        "p_half_life_days": ["7", "2.5"],
        "p_currency": ["AUD"],
        "p_lease_owner": ["fuzz-runner"],
        "p_limit": ["2"],
        "p_lease_seconds": ["300"],
        "p_push_id": [str(claimed[0][0])],
        "p_attempt": [str(claimed[0][1])],
        "p_push_ids": ["{" + ",".join(str(r[0]) for r in claimed) + "}"],
        "p_attempts": ["{" + ",".join(str(r[1]) for r in claimed) + "}"],
        "p_outcome": ["done", "retry", "defer", "failed", "held"],
        # write_push_log: one audit row of a call made with the client's config
        "p_rows": [
            json.dumps(
                [{"crm_config_id": str(mine["config"]["id"]), "operation": "fuzz_call",
                  "status": "success"}]
            )
        ],
        # finish_pushes: one entry per claimed push (done all, or retry all)
        "p_outcomes": ["{" + ",".join(o for _ in claimed) + "}" for o in ("done", "retry")],
        "p_errors": ["{" + ",".join('"CRM said no"' for _ in claimed) + "}"],
        "p_retry_ats": ["{" + ",".join(f'"{now + timedelta(minutes=5)}"' for _ in claimed) + "}"],
        "p_error": ["CRM said no"],
        "p_retry_at": [str(now + timedelta(minutes=5))],
        "p_log_status": ["success", "skipped"],
        "p_statuses": ["{dead,failed,held}"],
        "p_crm_config_id": [str(mine["config"]["id"])],
        "p_entity_type": ["lead", "contact", "deal", "organisation"],
        "p_external_key": [f"lead:{mine['leads'][1]['id']}"],
        "p_entity_id": [str(mine["leads"][1]["id"])],
        "p_crm_id": ["4242"],
        "p_create_sent_at": [str(now)],
        "p_window": ["5 minutes"],
        "p_deal_id": [str(mine["deals"][0]["id"])],  # won: reopen_deal can reopen it
        "p_reason": ["the client came back"],
        "p_stage": ["proposal", "qualification"],
        "p_crm_type": ["pipedrive"],  # the one connected: saving it again replaces its key
        "p_redirect_uri": [REDIRECT_URI],
        "p_state_hash": [hex_bytea(digest("a state never stored"))],  # begin_oauth_state stores it
        "p_token_hash": [hex_bytea(digest(f"token-{client['id']}"))],
    }  # fmt: skip
    uuids = [
        str(uuid.UUID(int=0)),
        str(uuid.uuid4()),
        str(other["id"]),
        str(theirs["config"]["id"]),
        str(theirs["deals"][0]["id"]),
        str(theirs["leads"][0]["id"]),
        str(mine["leads"][0]["id"]),  # an id of the wrong kind for most arguments
        str(mine["deals"][2]["id"]),  # a lost deal
    ]
    digests = [
        hex_bytea(digest(f"{kind}-{owner['id']}"))
        for kind in ("state", "token")
        for owner in (client, other)
    ]
    return Dataset(client, other, good, uuids, digests)


# --- calling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    name: str
    args: tuple[str, ...]
    types: tuple[str, ...]
    defaults: int  # trailing arguments with a default

    def has_default(self, i: int) -> bool:
        return i >= len(self.args) - self.defaults


def functions(db: psycopg.Connection[Any]) -> list[Function]:
    rows = db.execute(
        """
        SELECT p.proname, p.proargnames[1:p.pronargs],
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t),
               p.pronargdefaults, p.oid::regprocedure::text
        FROM pg_proc AS p
        WHERE p.pronamespace = 'crm'::regnamespace
        ORDER BY p.oid::regprocedure::text
        """
    ).fetchall()
    found = []
    for name, args, types, defaults, signature in rows:
        assert args is None or all(args), f"{signature}: every argument needs a name to be fuzzed"
        found.append(Function(name, tuple(args or ()), tuple(types), defaults))
    assert len(found) >= 20, "schema crm has fewer functions than expected"
    return found


def shown(value: str | None) -> str:
    """A value as KNOWN_UNDOCUMENTED spells it: NULL, or its first 60 characters."""
    return "NULL" if value is None else value[:60]


@dataclass
class Outcome:
    function: str
    argument: str
    value: str | None
    sqlstate: str | None
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.function, self.argument, shown(self.value))

    def __str__(self) -> str:
        value = "NULL" if self.value is None else repr(self.value[:60])
        return f"crm.{self.function}({self.argument} => {value}): {self.sqlstate} {self.message}"


def call(
    db: psycopg.Connection[Any],
    fn: Function,
    values: dict[str, str | None],
    schema: str = "crm",
) -> list[Any]:
    """SELECT * FROM <schema>.<fn>(arg => value::type, ...) in a savepoint that is rolled
    back."""
    types = dict(zip(fn.args, fn.types, strict=True))
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}::{}").format(sql.Identifier(a), sql.Placeholder(a), sql.SQL(types[a]))
        for a in values
    )
    query = sql.SQL("SELECT * FROM {}.{}({})").format(
        sql.Identifier(schema), sql.Identifier(fn.name), named
    )
    with db.transaction(force_rollback=True), db.cursor() as cur:
        cur.execute(query, values)
        names = [c.name for c in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def result_problems(rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    for row in rows:
        for column, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                problems.append(f"{column} is NaN")
            elif isinstance(value, Decimal) and value.is_nan():
                problems.append(f"{column} is NaN")
            elif isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
                if PERCENT.search(column) and not 0 <= value <= 100:
                    problems.append(f"{column} = {value} is not a percentage")
                if FRACTION.search(column) and not 0 <= value <= 1:
                    problems.append(f"{column} = {value} is not a fraction")
    return problems


def run(
    db: psycopg.Connection[Any], fn: Function, values: dict[str, str | None], argument: str
) -> Outcome:
    value = values[argument] if argument in values else "(several)"
    try:
        rows = call(db, fn, values)
    except psycopg.Error as exc:
        return Outcome(fn.name, argument, value, exc.sqlstate, exc.diag.message_primary or "")
    problems = result_problems(rows)
    return Outcome(fn.name, argument, value, "result" if problems else None, "; ".join(problems))


def documented_sqlstates() -> dict[str, str]:
    """The Errors table of the docs: | `SQLSTATE` | condition | when |."""
    text = ERRORS_DOC.read_text(encoding="utf-8")
    section = text.split("\n## Errors", 1)
    assert len(section) == 2, f"{ERRORS_DOC} has no '## Errors' section"
    body = section[1].split("\n## ", 1)[0]
    codes = re.findall(r"^\| `([0-9A-Z]{5})` \| `?([a-z_0-9]+)`? \|", body, flags=re.MULTILINE)
    assert codes, f"the Errors section of {ERRORS_DOC} lists no SQLSTATE"
    return dict(codes)


def cases(
    db: psycopg.Connection[Any], data: Dataset, fn: Function
) -> Iterator[tuple[str, dict[str, str | None]]]:
    """The baseline (good values; arguments with a default left out), every argument over its
    type's values with the others at a baseline (each good value of a mode argument is one),
    and every argument NULL at once."""
    base: dict[str, str | None] = {}
    for i, (arg, typ) in enumerate(zip(fn.args, fn.types, strict=True)):
        if arg in data.good:
            base[arg] = data.good[arg][0]
        elif not fn.has_default(i):
            base[arg] = next(v for v in data.values(db, typ) if v is not None)
    yield "(baseline)", base
    baselines = [base] + [
        {**base, arg: alternative} for arg in fn.args for alternative in data.good.get(arg, [])[1:]
    ]
    for baseline in baselines:
        for arg, typ in zip(fn.args, fn.types, strict=True):
            if baseline is not base and baseline[arg] != base.get(arg):
                continue  # the argument this baseline is about: varied under the first
            for value in data.values(db, typ):
                yield arg, {**baseline, arg: value}
    if fn.args:
        yield "(all NULL)", dict.fromkeys(fn.args)


def undocumented(outcomes: list[Outcome], known: dict[tuple[str, str, str], str]) -> list[str]:
    """The outcomes that are neither fine, nor a documented SQLSTATE, nor a known case."""
    allowed = set(documented_sqlstates()) - NEVER
    return [
        str(o)
        for o in outcomes
        if o.sqlstate is not None
        and (o.sqlstate == "result" or o.sqlstate not in allowed)
        and known.get(o.key) != o.sqlstate
    ]


@pytest.fixture
def seeded(db: psycopg.Connection[Any]) -> Dataset:
    db.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
    return seed(db)


@pytest.mark.parametrize("shard", range(SHARDS))
def test_every_function_returns_or_raises_a_documented_sqlstate(
    db: psycopg.Connection[Any], seeded: Dataset, shard: int
) -> None:
    mine = functions(db)[shard::SHARDS]
    outcomes = [run(db, fn, values, arg) for fn in mine for arg, values in cases(db, seeded, fn)]
    bad = list(dict.fromkeys(undocumented(outcomes, KNOWN_UNDOCUMENTED)))  # each case once
    assert not bad, f"{len(bad)} undocumented outcome(s):\n" + "\n".join(bad[:80])
    happened = {o.key for o in outcomes if KNOWN_UNDOCUMENTED.get(o.key) == o.sqlstate}
    names = {fn.name for fn in mine}
    stale = [k for k in KNOWN_UNDOCUMENTED if k[0] in names and k not in happened]
    assert not stale, f"fixed since: remove from KNOWN_UNDOCUMENTED: {stale}"
    # The baselines are real calls: they return, or are refused by design (0A000: an overload
    # kept only to say what replaced it).
    baselines = [o for o in outcomes if o.argument == "(baseline)"]
    assert all(o.sqlstate in (None, "0A000") for o in baselines), [str(o) for o in baselines]


def test_every_value_is_valid_input_of_its_type(
    db: psycopg.Connection[Any], seeded: Dataset
) -> None:
    """A 22P02 can only come from inside a function: every value the fuzz passes casts."""
    for typ in sorted({t for fn in functions(db) for t in fn.types}):
        for value in seeded.values(db, typ):
            with db.transaction():
                db.execute(sql.SQL("SELECT %s::{}").format(sql.SQL(typ)), (value,))


def test_the_errors_table_lists_the_codes_callers_branch_on() -> None:
    documented = documented_sqlstates()
    assert {"22023", "22004", "23502", "23503", "23505", "23514", "55000", "0A000", "P0002"} <= (
        documented.keys()
    )
    assert not documented.keys() & NEVER, "these codes are bugs, not documented behaviour"


@pytest.mark.property
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(draw=st.data())
def test_random_mixes_of_values_return_or_raise_a_documented_sqlstate(
    db: psycopg.Connection[Any], seeded: Dataset, draw: st.DataObject
) -> None:
    fn = draw.draw(st.sampled_from(functions(db)), label="function")
    values: dict[str, str | None] = {}
    for arg, typ in zip(fn.args, fn.types, strict=True):
        pool = seeded.values(db, typ)
        pool = [*seeded.good.get(arg, []), *pool]
        values[arg] = draw.draw(st.sampled_from(pool), label=arg)
    outcome = run(db, fn, values, "(mixed)")
    # A known case counts when one of its argument values is in the mix.
    known = {
        state
        for (name, arg, value), state in KNOWN_UNDOCUMENTED.items()
        if name == fn.name and arg in values and shown(values[arg]) == value
    }
    if outcome.sqlstate not in known:
        assert not undocumented([outcome], {}), (str(outcome), values)
