"""The roles as a deployment uses them: each test connects as a LOGIN role that is a member of
one role (never as the owner) to a database holding two clients' data in every tenant table.

The objects are enumerated from the catalogs, so a new table, view or function is covered the
day it is added: a client viewer of client A, and the HTTP API acting for A (crm_api), read
A's rows and none of B's through every table, view and function; the API writes only A's
connection rows (config, OAuth states, push log, the status of its pushes); nobody but the
runner reads a secret; an analyst calls every analytics function; nobody but the owner
deletes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.executors.noop import NoopExecutor

from agency_crm import crypto
from tests.analytics.test_contract import AGENCY_WIDE
from tests.conftest import janitor, server_url
from tests.helpers.fixtures import Make, raises_sqlstate, seal
from tests.security.conftest import connect_as
from tests.sql.test_function_fuzz import Dataset, Function, call, functions, seed

SECRETS = crypto.SECRET_COLUMNS["client_crm_configs"]


@dataclass
class Tenants:
    url: str
    data: Dataset
    a: uuid.UUID  # the client whose viewer connects
    b: uuid.UUID  # the other client

    def owner(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url)


@pytest.fixture(scope="module")
def tenants(postgresql_noproc: NoopExecutor) -> Iterator[Tenants]:
    """Two clients with rows in every tenant table, committed, in a database of its own."""
    template = postgresql_noproc.template_dbname
    with janitor(postgresql_noproc, f"acrm_roles_{uuid.uuid4().hex[:10]}", template) as j:
        url = server_url(postgresql_noproc, j.dbname)
        with psycopg.connect(url) as conn:
            data = seed(conn)
            make = Make(conn)
            for client_id in (data.client["id"], data.other_client["id"]):
                client = {"id": client_id}
                make.campaign(client)
                make.push_log(client)
                # A meeting moved to a later time keeps its earlier time in the reschedules.
                conn.execute(
                    "UPDATE crm.meetings SET scheduled_at = scheduled_at + interval '1 day'"
                    " WHERE client_id = %s AND scheduled_at > now()",
                    (client_id,),
                )
            conn.commit()
        yield Tenants(url, data, data.client["id"], data.other_client["id"])


def tenant_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(table or view, the column naming its client) of every relation of crm and crm_private
    that belongs to a client."""
    rows = conn.execute(
        """
        SELECT c.oid::regclass::text,
               CASE WHEN c.oid = 'crm.clients'::regclass THEN 'id' ELSE 'client_id' END
        FROM pg_class AS c
        WHERE c.relnamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
          AND c.relkind IN ('r', 'p', 'v', 'm')
          AND (c.oid = 'crm.clients'::regclass
               OR EXISTS (SELECT 1 FROM pg_attribute AS a
                          WHERE a.attrelid = c.oid AND a.attname = 'client_id'
                            AND NOT a.attisdropped))
        ORDER BY 1
        """
    ).fetchall()
    assert len(rows) >= 13
    return [(str(r[0]), str(r[1])) for r in rows]


def readable_columns(conn: psycopg.Connection[Any], role: str, table: str) -> sql.Composable:
    rows = conn.execute(
        """
        SELECT a.attname FROM pg_attribute AS a
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND has_column_privilege(%s, a.attrelid, a.attnum, 'SELECT')
        ORDER BY a.attnum
        """,
        (table, role),
    ).fetchall()
    assert rows, f"{role} reads no column of {table}"
    return sql.SQL(", ").join(sql.Identifier(r[0]) for r in rows)


def rows_by_client(
    conn: psycopg.Connection[Any], table: str, tenant: str, columns: sql.Composable
) -> dict[Any, int]:
    query = sql.SQL("SELECT {t}, count(*) FROM (SELECT {c} FROM {r}) AS x GROUP BY 1").format(
        t=sql.Identifier(tenant), c=columns, r=sql.SQL(table)
    )
    return {row[0]: row[1] for row in conn.execute(query).fetchall()}


def as_viewer(conn: psycopg.Connection[Any], client_id: Any | None) -> None:
    """Begin the viewer's transaction for ``client_id`` (None: the setting left unset)."""
    if client_id is not None:
        conn.execute("SELECT set_config('crm.client_id', %s, true)", (str(client_id),))


# The roles held to one client by the restrictive policy on crm.client_id.
ONE_CLIENT = ["crm_client_viewer", "crm_api"]


@pytest.mark.parametrize("role", ONE_CLIENT)
def test_a_one_client_role_reads_its_own_rows_and_none_of_another_client(
    tenants: Tenants, logins: dict[str, str], role: str
) -> None:
    with tenants.owner() as owner:
        tables = tenant_tables(owner)
        everything = {}
        for table, tenant in tables:
            columns = readable_columns(owner, role, table)
            everything[table] = rows_by_client(owner, table, tenant, columns)
            assert everything[table].get(tenants.a) and everything[table].get(tenants.b), (
                f"the dataset has no rows of both clients in {table}: add some, or the test"
                " proves nothing there"
            )
    with connect_as(tenants.url, logins[role]) as viewer:
        for me in (tenants.a, tenants.b):
            with viewer.transaction():
                as_viewer(viewer, me)
                for table, tenant in tables:
                    columns = readable_columns(viewer, role, table)
                    seen = rows_by_client(viewer, table, tenant, columns)
                    assert seen == {me: everything[table][me]}, table
        # Unset, empty or another database's client: nothing at all (fails closed).
        for setting in (None, "", str(uuid.uuid4())):
            with viewer.transaction():
                if setting is not None:
                    viewer.execute("SELECT set_config('crm.client_id', %s, true)", (setting,))
                for table, tenant in tables:
                    columns = readable_columns(viewer, role, table)
                    assert rows_by_client(viewer, table, tenant, columns) == {}, table
        # The setting is the transaction's: the next one starts with nothing.
        with viewer.transaction():
            assert viewer.execute("SELECT count(*) FROM crm.leads").fetchone() == (0,)


# What crm_api may call beyond what the viewer may: the connection functions, which write
# (tests/sql/test_connections.py calls each as crm_api, for its client and for another).
API_CONNECTION_FUNCTIONS = {
    "save_crm_connection", "disconnect_crm", "backfill_pushes", "begin_oauth_state",
    "consume_oauth_state", "authenticate_api_token", "scoped_crm_config", "write_push_log",
}  # fmt: skip


def granted_functions(conn: psycopg.Connection[Any], role: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT p.proname FROM pg_proc AS p WHERE p.pronamespace = 'crm'::regnamespace"
            " AND has_function_privilege(%s, p.oid, 'EXECUTE')",
            (role,),
        ).fetchall()
    }


def viewer_functions(
    conn: psycopg.Connection[Any], role: str = "crm_client_viewer"
) -> list[Function]:
    """The reads a one-client role may call: for crm_api, the viewer's (and the connection
    functions beside them, checked to be exactly those)."""
    granted = granted_functions(conn, role)
    if role == "crm_api":
        viewer = granted_functions(conn, "crm_client_viewer")
        assert granted - viewer == API_CONNECTION_FUNCTIONS
        granted &= viewer
    found = [f for f in functions(conn) if f.name in granted]
    assert len(found) >= 12, granted
    return found


def outcome(
    conn: psycopg.Connection[Any],
    fn: Function,
    values: dict[str, str | None],
    schema: str = "crm",
) -> tuple[str, Any]:
    """The rows a call returns (the internal helpers' in any order: they promise none), or
    the SQLSTATE it raises."""
    try:
        with conn.transaction():
            rows = call(conn, fn, values, schema)
            return ("rows", rows if schema == "crm" else sorted(map(repr, rows)))
    except psycopg.Error as exc:
        return ("error", exc.sqlstate)


def outcome_without(
    owner: psycopg.Connection[Any], fn: Function, values: dict[str, str | None], gone: Any
) -> tuple[str, Any]:
    """What the owner gets from ``fn`` with client ``gone`` soft-deleted (rolled back)."""
    with owner.transaction(force_rollback=True):
        owner.execute("UPDATE crm.clients SET deleted_at = now() WHERE id = %s", (gone,))
        return outcome(owner, fn, values)


@pytest.mark.parametrize("role", ONE_CLIENT)
def test_through_every_function_a_viewer_sees_another_client_as_if_it_did_not_exist(
    tenants: Tenants, logins: dict[str, str], role: str
) -> None:
    """Client B's viewer calling each function about client A gets exactly what the owner
    gets for a client id that does not exist; client A's viewer gets what the owner gets."""
    good = {name: values[0] for name, values in tenants.data.good.items()}
    nobody = str(uuid.uuid4())
    with tenants.owner() as owner, connect_as(tenants.url, logins[role]) as viewer:
        compared = 0
        for fn in viewer_functions(owner, role):
            values = {a: good[a] for a in fn.args if a in good}
            missing = [a for i, a in enumerate(fn.args) if a not in good and not fn.has_default(i)]
            assert not missing, f"crm.{fn.name}: no good value for {missing}"
            if fn.name in AGENCY_WIDE:
                # Every client the caller sees side by side: each viewer gets what the owner
                # gets when its client is the only one, nothing of the other client (not even
                # pooled into the agency's numbers).
                for me, other in ((tenants.a, tenants.b), (tenants.b, tenants.a)):
                    alone = outcome_without(owner, fn, values, other)
                    with viewer.transaction():
                        as_viewer(viewer, me)
                        assert outcome(viewer, fn, values) == alone, fn.name
                    assert alone != outcome(owner, fn, values), fn.name
                compared += 1
                continue
            theirs = outcome(owner, fn, values)
            if "p_client_id" in values:
                unknown = outcome(owner, fn, values | {"p_client_id": nobody})
            else:
                unknown = ("rows", [])
            with viewer.transaction():
                as_viewer(viewer, tenants.b)
                assert outcome(viewer, fn, values) == unknown, fn.name
            with viewer.transaction():
                as_viewer(viewer, tenants.a)
                assert outcome(viewer, fn, values) == theirs, fn.name
            assert theirs != unknown or fn.name == "push_queue_status", fn.name
            compared += 1
        assert compared >= 12


def private_functions(
    conn: psycopg.Connection[Any], role: str = "crm_client_viewer"
) -> list[tuple[str, Function]]:
    """The internal helpers a role may call that take a client's or a row's id (the others
    are pure: they read no table)."""
    rows = conn.execute(
        """
        SELECT p.proname, p.proargnames[1:p.pronargs],
               ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t),
               p.pronargdefaults
        FROM pg_proc AS p
        WHERE p.pronamespace = 'crm_private'::regnamespace
          AND p.prorettype <> 'trigger'::regtype
          AND has_function_privilege(%s, p.oid, 'EXECUTE')
          AND EXISTS (SELECT 1 FROM unnest(p.proargtypes) AS t
                      WHERE t IN ('uuid'::regtype, 'uuid[]'::regtype))
        ORDER BY 1
        """,
        (role,),
    ).fetchall()
    return [(name, Function(name, tuple(args), tuple(types), d)) for name, args, types, d in rows]


def good_lead(conn: psycopg.Connection[Any], client_id: Any) -> str:
    row = conn.execute("SELECT id::text FROM crm.leads WHERE client_id = %s LIMIT 1", (client_id,))
    found = row.fetchone()
    assert found is not None
    return str(found[0])


@pytest.mark.parametrize("role", ONE_CLIENT)
def test_through_every_internal_helper_a_viewer_reads_nothing_of_another_client(
    tenants: Tenants, logins: dict[str, str], role: str
) -> None:
    with tenants.owner() as owner:
        deals = owner.execute(
            "SELECT array_agg(id)::text FROM crm.deals WHERE client_id = %s", (tenants.a,)
        ).fetchone()
        assert deals is not None
        good = {name: values[0] for name, values in tenants.data.good.items()} | {
            "p_function": "get_funnel_analytics",
            "p_deal_ids": deals[0],
            "p_start_at": "2025-01-01 00:00:00+00",
            # refusal_message: a pure formatter, whoever calls it.
            "p_table": "leads",
            "p_id": good_lead(owner, tenants.a),
            "p_column": "email",
            "p_value": "x",
            "p_problem": "is not an email",
        }
        helpers = private_functions(owner, role)
        assert {"compute_deal_attribution", "markov_paths"} <= {n for n, _ in helpers}
        nobody = str(uuid.uuid4())
        with connect_as(tenants.url, logins[role]) as viewer:
            for name, fn in helpers:
                values = {a: good[a] for a in fn.args if a in good}
                assert len(values) >= len(fn.args) - fn.defaults, (name, fn.args)
                theirs = outcome(owner, fn, values, "crm_private")
                unknown = (
                    outcome(owner, fn, values | {"p_client_id": nobody}, "crm_private")
                    if "p_client_id" in values
                    else theirs  # reads no client's rows: the same for everyone
                )
                if name in ("compute_deal_attribution", "markov_paths"):
                    assert theirs != unknown, name  # they read client A's rows
                with viewer.transaction():
                    as_viewer(viewer, tenants.b)
                    assert outcome(viewer, fn, values, "crm_private") == unknown, name
                with viewer.transaction():
                    as_viewer(viewer, tenants.a)
                    assert outcome(viewer, fn, values, "crm_private") == theirs, name


def test_a_client_viewer_writes_nothing(tenants: Tenants, logins: dict[str, str]) -> None:
    with connect_as(tenants.url, logins["crm_client_viewer"]) as viewer:
        for table, _ in tenant_tables(viewer):
            for statement in (
                "UPDATE {} SET client_id = client_id",
                "DELETE FROM {}",
                "INSERT INTO {} DEFAULT VALUES",
            ):
                with viewer.transaction():
                    as_viewer(viewer, tenants.a)
                    if table == "crm.clients":
                        statement = statement.replace("client_id = client_id", "id = id")
                    with raises_sqlstate(viewer, "42501"):
                        viewer.execute(sql.SQL(statement).format(sql.SQL(table)))


# What the API writes (sql/access.sql): the statement it may run on each table, on the rows
# of the client it acts for only. Every other write of every tenant table is refused.
API_UPDATES = {
    "crm.client_crm_configs": "pipeline_id = pipeline_id",
    "crm.crm_push_queue": "status = status, last_error = last_error, updated_at = updated_at",
}
API_INSERTS: dict[str, tuple[str, ...]] = {
    # (its live config soft-deleted first, as crm.save_crm_connection does with one disconnected)
    "crm.client_crm_configs": (
        "UPDATE crm.client_crm_configs SET deleted_at = now() WHERE client_id = %(client)s",
        "INSERT INTO crm.client_crm_configs (client_id, crm_type) VALUES (%(client)s, 'close')",
    ),
    "crm.crm_push_queue": (
        "INSERT INTO crm.crm_push_queue (client_id, operation, lead_id)"
        " VALUES (%(client)s, 'deal_updated', %(lead)s)",
    ),
    "crm.crm_push_log": (
        "INSERT INTO crm.crm_push_log (client_id, operation, status)"
        " VALUES (%(client)s, 'create_deal', 'success')",
    ),
    "crm_private.oauth_states": (
        "INSERT INTO crm_private.oauth_states (client_id, state_hash, redirect_uri)"
        " VALUES (%(client)s, sha256(gen_random_uuid()::text::bytea), 'https://agency.example/cb')",
    ),
}


def run_all(conn: psycopg.Connection[Any], statements: tuple[str, ...], **params: Any) -> None:
    for statement in statements:
        conn.execute(statement, params)


def test_the_api_writes_only_the_connection_rows_of_its_client(
    tenants: Tenants, logins: dict[str, str]
) -> None:
    with tenants.owner() as owner:
        tables = tenant_tables(owner)
        assert {t for t, _ in tables} >= API_UPDATES.keys() | API_INSERTS.keys()
        counts = {
            table: rows_by_client(owner, table, tenant, sql.SQL("*"))
            for table, tenant in tables
            if table in API_UPDATES
        }
        leads = {c: good_lead(owner, c) for c in (tenants.a, tenants.b)}
    with connect_as(tenants.url, logins["crm_api"]) as api:
        for table, tenant in tables:
            with api.transaction():
                as_viewer(api, tenants.a)
                with raises_sqlstate(api, "42501"):
                    api.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(table)))
            if table in API_UPDATES:
                update = sql.SQL("UPDATE {} SET {}").format(
                    sql.SQL(table), sql.SQL(API_UPDATES[table])
                )
                for me in (tenants.a, tenants.b):
                    with api.transaction(force_rollback=True):
                        as_viewer(api, me)
                        done = api.execute(update)
                        assert done.rowcount == counts[table][me], table
                        other = tenants.b if me == tenants.a else tenants.a
                        done = api.execute(update + sql.SQL(" WHERE client_id = %s"), (other,))
                        assert done.rowcount == 0, table
                with api.transaction(force_rollback=True):  # unset: nothing
                    assert api.execute(update).rowcount == 0, table
            else:
                with api.transaction():
                    as_viewer(api, tenants.a)
                    with raises_sqlstate(api, "42501"):
                        api.execute(
                            sql.SQL("UPDATE {} SET {} = {}").format(
                                sql.SQL(table), sql.Identifier(tenant), sql.Identifier(tenant)
                            )
                        )
            if table in API_INSERTS:
                statements = API_INSERTS[table]
                with api.transaction(force_rollback=True):
                    as_viewer(api, tenants.a)
                    run_all(api, statements, client=tenants.a, lead=leads[tenants.a])
                # B's row, acting for A: B is not there (the config's trigger finds no
                # such client: 23503), or row-level security refuses the row (42501).
                with api.transaction():
                    as_viewer(api, tenants.a)
                    expected = "23503" if table == "crm.client_crm_configs" else "42501"
                    with raises_sqlstate(api, expected):
                        run_all(api, statements, client=tenants.b, lead=leads[tenants.b])
                with api.transaction():  # unset: no row of any client
                    with raises_sqlstate(api, expected):
                        run_all(api, statements, client=tenants.a, lead=leads[tenants.a])
            else:
                with api.transaction():
                    as_viewer(api, tenants.a)
                    with raises_sqlstate(api, "42501"):
                        api.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(
                            sql.SQL(table)
                        ))  # fmt: skip
        # Columns of a push other than its status: refused.
        with api.transaction():
            as_viewer(api, tenants.a)
            with raises_sqlstate(api, "42501"):
                api.execute("UPDATE crm.crm_push_queue SET attempts = 0")


@pytest.mark.parametrize("role", ["crm_app", "crm_analyst", "crm_client_viewer", "crm_api"])
def test_only_the_runner_reads_a_secret(
    tenants: Tenants, logins: dict[str, str], role: str
) -> None:
    with connect_as(tenants.url, logins[role]) as conn:
        for column in SECRETS:
            with conn.transaction():
                as_viewer(conn, tenants.a)
                with raises_sqlstate(conn, "42501"):
                    conn.execute(sql.SQL("SELECT {} FROM crm.client_crm_configs").format(
                        sql.Identifier(column)
                    ))  # fmt: skip
        with conn.transaction():
            with raises_sqlstate(conn, "42501"):
                conn.execute("SELECT * FROM crm.client_crm_configs")
        with conn.transaction():
            as_viewer(conn, tenants.a)
            # Everything else of the config is there.
            row = conn.execute(
                "SELECT crm_type, connection_status FROM crm.client_crm_configs"
                " WHERE client_id = %s",
                (tenants.a,),
            ).fetchone()
            assert row is not None
    with connect_as(tenants.url, logins["crm_runner"]) as runner:
        stored = runner.execute(
            "SELECT api_key FROM crm.client_crm_configs WHERE client_id = %s", (tenants.a,)
        ).fetchone()
        assert stored is not None and crypto.is_envelope(stored[0])


def test_an_analyst_calls_every_analytics_function_and_reads_every_client(
    tenants: Tenants, logins: dict[str, str]
) -> None:
    with tenants.owner() as owner, connect_as(tenants.url, logins["crm_analyst"]) as analyst:
        analytics = [f for f in functions(owner) if f.name.startswith("get_")]
        assert len(analytics) >= 11
        calls = 0
        for fn in analytics:
            choices = {a: tenants.data.good[a] for a in fn.args if a in tenants.data.good}
            for arg, values in choices.items():
                for value in values:
                    args = {a: v[0] for a, v in choices.items()} | {arg: value}
                    got = call(analyst, fn, args)
                    assert got == call(owner, fn, args), (fn.name, args)
                    calls += 1
        assert calls >= 30
        for table, tenant in tenant_tables(owner):
            columns = readable_columns(owner, "crm_analyst", table)
            assert rows_by_client(analyst, table, tenant, columns) == rows_by_client(
                owner, table, tenant, columns
            ), table
            with analyst.transaction():
                with raises_sqlstate(analyst, "42501"):
                    analyst.execute(sql.SQL("DELETE FROM {}").format(sql.SQL(table)))
            with analyst.transaction():
                with raises_sqlstate(analyst, "42501"):
                    analyst.execute(
                        sql.SQL("UPDATE {} SET {} = {}").format(
                            sql.SQL(table), sql.Identifier(tenant), sql.Identifier(tenant)
                        )
                    )


def test_app_code_runs_the_whole_lifecycle_without_delete_or_secrets(
    tenants: Tenants, logins: dict[str, str]
) -> None:
    with connect_as(tenants.url, logins["crm_app"]) as app:
        make = Make(app)
        client = make.client(auto_create_deals=True)
        # The secret is written, encrypted, and never read back (so no RETURNING *).
        config = app.execute(
            "INSERT INTO crm.client_crm_configs (client_id, crm_type, api_key)"
            " VALUES (%s, 'pipedrive', %s) RETURNING id",
            (client["id"], seal(client["id"], "api_key", "pd-key")),
        ).fetchone()
        assert config is not None
        campaign = make.campaign(client)
        lead = make.lead(client, campaign_id=campaign["id"])
        make.activity(lead, channel="email")
        make.activity(lead, channel="linkedin")
        meeting = make.meeting(lead)
        app.execute(
            "UPDATE crm.meetings SET meeting_outcome = 'good', showed_up = true WHERE id = %s",
            (meeting["id"],),
        )
        deal = app.execute(
            "SELECT id FROM crm.deals WHERE meeting_id = %s", (meeting["id"],)
        ).fetchone()
        assert deal is not None, "a good outcome creates the deal"
        for stage in ("proposal", "negotiation", "closed_won"):
            app.execute("UPDATE crm.deals SET stage = %s WHERE id = %s", (stage, deal[0]))
        app.execute("SELECT crm.reopen_deal(%s, 'came back', 'proposal')", (deal[0],))
        history = app.execute(
            "SELECT count(*) FROM crm.deal_stage_history WHERE deal_id = %s", (deal[0],)
        ).fetchone()
        assert history is not None and history[0] >= 5
        # The attribution credits were kept through the SECURITY DEFINER refresh.
        credits = app.execute(
            "SELECT count(*) FROM crm_private.deal_attribution WHERE deal_id = %s", (deal[0],)
        ).fetchone()
        assert credits == (2,)
        pushes = app.execute(
            "SELECT count(*) FROM crm.crm_push_queue WHERE client_id = %s", (client["id"],)
        ).fetchone()
        assert pushes is not None and pushes[0] >= 2
        assert app.execute(
            "SELECT count(*) FROM crm.get_funnel_analytics(%s, 90)", (client["id"],)
        ).fetchone() != (0,)
        app.commit()
        # A fixed key releases the pushes held for a config in error (SECURITY DEFINER trigger).
        with tenants.owner() as owner:
            owner.execute("SELECT crm.hold_pushes(%s, '401 unauthorized')", (client["id"],))
            owner.commit()
        app.execute(
            "UPDATE crm.client_crm_configs SET api_key = %s WHERE client_id = %s",
            (seal(client["id"], "api_key", "a-new-key"), client["id"]),
        )
        statuses = app.execute(
            "SELECT DISTINCT status FROM crm.crm_push_queue WHERE client_id = %s",
            (client["id"],),
        ).fetchall()
        assert statuses == [("pending",)]
        app.commit()
        # What app code may not do.
        for statement, params in (
            ("DELETE FROM crm.leads WHERE id = %s", (lead["id"],)),
            ("DELETE FROM crm_private.deal_attribution WHERE deal_id = %s", (deal[0],)),
            ("UPDATE crm.crm_push_queue SET status = 'done' WHERE client_id = %s", (client["id"],)),
            ("SELECT crm.claim_pushes(%s, 'me', 1, 60)", (client["id"],)),
            ("SELECT api_key FROM crm.client_crm_configs WHERE id = %s", (config[0],)),
            ("TRUNCATE crm.crm_push_log", ()),
        ):
            with app.transaction():
                with raises_sqlstate(app, "42501"):
                    app.execute(statement, params)


def test_the_runner_writes_nothing_but_pushes(tenants: Tenants, logins: dict[str, str]) -> None:
    with connect_as(tenants.url, logins["crm_runner"]) as runner:
        for statement in (
            "UPDATE crm.leads SET email = email",
            "UPDATE crm.deals SET stage = stage",
            "INSERT INTO crm.clients (name) VALUES ('x')",
            "UPDATE crm.client_crm_configs SET pipeline_id = 'p'",
            "UPDATE crm.client_crm_configs SET deleted_at = now()",
            "DELETE FROM crm.crm_push_queue",
            "DELETE FROM crm.crm_push_log",
        ):
            with runner.transaction():
                with raises_sqlstate(runner, "42501"):
                    runner.execute(statement)
        with runner.transaction(force_rollback=True):
            claimed = runner.execute(
                "SELECT id FROM crm.claim_pushes(%s, 'role-test', 10, 60)", (tenants.b,)
            ).fetchall()
            assert claimed
            runner.execute(
                "UPDATE crm.client_crm_configs SET last_error = 'x', connection_status = 'error'"
                " WHERE client_id = %s",
                (tenants.b,),
            )


def test_app_code_sees_every_client_of_the_agency(tenants: Tenants, logins: dict[str, str]) -> None:
    with connect_as(tenants.url, logins["crm_app"]) as app:
        clients = {r[0] for r in app.execute("SELECT client_id FROM crm.leads").fetchall()}
        assert {tenants.a, tenants.b} <= clients
