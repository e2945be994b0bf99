"""Connecting a client's CRM in SQL (issue 13): crm.save_crm_connection, crm.disconnect_crm,
crm.backfill_pushes, the OAuth state and API token functions and crm.scoped_crm_config, on a
real PostgreSQL.

The rules: one CRM per client, and connecting the same one again replaces its credentials;
disconnecting is soft and skips the pending and held pushes; a backfill queues each live
meeting and deal the CRM has not got, once; an OAuth state is single-use, bound to its client
and expires after ten minutes. Refusals carry a specific SQLSTATE, a message naming the
argument and its value, and a HINT. crm_api, acting for client A, does all of it for A and,
for client B, gets exactly what it would get for a client that does not exist.

Races run in explicit interleavings: one session holds its transaction open while the other
acts, and a wait is for a lock (tests.sql.test_push_races.Background), never for time."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.helpers.fixtures import Make, Row, raises_sqlstate, seal, unseal
from tests.security.conftest import connect_as, logins  # noqa: F401  (the logins fixture)
from tests.sql.test_push_races import Background

Conn = psycopg.Connection[Any]

REDIRECT = "https://agency.example/api/v1/crm/callback/hubspot"


# --- helpers --------------------------------------------------------------------------------


def save(conn: Conn, client_id: Any, crm_type: str = "pipedrive", **kw: Any) -> tuple[Any, bool]:
    """crm.save_crm_connection with an encrypted key (``key=``, default pd-key; None: none)
    and any other p_ argument; returns (config_id, replaced)."""
    key = kw.pop("key", "pd-key")
    args: dict[str, Any] = {
        "p_client_id": client_id,
        "p_crm_type": crm_type,
        "p_api_key": seal(client_id, "api_key", key) if key and crm_type != "hubspot" else None,
        **kw,
    }
    if isinstance(args.get("p_external_key_fields"), dict):
        args["p_external_key_fields"] = Jsonb(args["p_external_key_fields"])
    named = ", ".join(f"{name} => %({name})s" for name in args)
    row = conn.execute(
        f"SELECT config_id, replaced FROM crm.save_crm_connection({named})", args
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def disconnect(conn: Conn, client_id: Any, reason: str | None = None) -> int:
    row = conn.execute("SELECT crm.disconnect_crm(%s, %s)", (client_id, reason)).fetchone()
    assert row is not None
    return int(row[0])


def backfill(conn: Conn, client_id: Any, since: Any = None) -> tuple[int, int]:
    row = conn.execute(
        "SELECT meetings, deals FROM crm.backfill_pushes(%s, %s)", (client_id, since)
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def configs(conn: Conn, client_id: Any) -> list[Row]:
    """Every config of the client, the soft-deleted ones first (as the owner: secrets
    included)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM crm.client_crm_configs WHERE client_id = %s"
            " ORDER BY deleted_at IS NULL, deleted_at, created_at, id",
            (client_id,),
        ).fetchall()


def live_config(conn: Conn, client_id: Any) -> Row:
    [config] = [c for c in configs(conn, client_id) if c["deleted_at"] is None]
    return config


def pushes(conn: Conn, client_id: Any) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, operation, status, lead_id, meeting_id, deal_id, last_error, finished_at,"
            " lease_owner FROM crm.crm_push_queue WHERE client_id = %s ORDER BY id",
            (client_id,),
        ).fetchall()


def queued(conn: Conn, client_id: Any, status: str = "pending") -> list[tuple[str, Any]]:
    """(operation, meeting or deal id) of the client's pushes in ``status``."""
    return sorted(
        (p["operation"], p["meeting_id"] or p["deal_id"])
        for p in pushes(conn, client_id)
        if p["status"] == status
    )


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def consume(conn: Conn, state: bytes, client_id: Any = None) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT * FROM crm.consume_oauth_state(%s, %s)", (state, client_id)
    ).fetchone()
    assert row is not None
    return tuple(row)


def acting_for(conn: Conn, client_id: Any) -> None:
    """The transaction acts for one client, as the API sets it."""
    conn.execute("SELECT set_config('crm.client_id', %s, true)", (str(client_id),))


def refusal(info: pytest.ExceptionInfo[psycopg.Error]) -> tuple[str | None, str, str]:
    """(SQLSTATE, message, hint), ids replaced by <id>, to compare refusals of two clients."""
    diag = info.value.diag
    ids = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    return (
        info.value.sqlstate,
        ids.sub("<id>", diag.message_primary or ""),
        ids.sub("<id>", diag.message_hint or ""),
    )


@pytest.fixture
def conn(fresh_db: Conn) -> Conn:
    """The owner's session on a database of the test's own (other sessions see what it
    commits)."""
    return fresh_db


@pytest.fixture
def make(conn: Conn) -> Make:
    return Make(conn)


@pytest.fixture
def dsn(conn: Conn) -> str:
    return conn.info.dsn


def history(make: Make, client: Row) -> dict[str, Any]:
    """A client's history before it had a CRM (so no push was queued): meetings live and
    soft-deleted, deals of a live meeting, of a deleted one and of none, and a meeting of a
    deleted lead."""
    conn = make.conn
    lead1, lead2, lead3, gone_lead = (make.lead(client) for _ in range(4))
    m1 = make.meeting(lead1)
    m2 = make.meeting(lead2)
    m3 = make.meeting(lead3)
    m_gone_lead = make.meeting(gone_lead)
    d_of_m1 = make.deal(lead1, meeting_id=m1["id"])
    d_alone = make.deal(lead2, name="Renewal")
    d_of_m3 = make.deal(lead3, meeting_id=m3["id"])
    d_deleted = make.deal(lead2, name="Dropped")
    d_gone_lead = make.deal(gone_lead, name="Of a deleted lead")
    conn.execute("UPDATE crm.meetings SET deleted_at = now() WHERE id = %s", (m3["id"],))
    conn.execute("UPDATE crm.deals SET deleted_at = now() WHERE id = %s", (d_deleted["id"],))
    conn.execute("UPDATE crm.leads SET deleted_at = now() WHERE id = %s", (gone_lead["id"],))
    return {
        "meetings": sorted([m1["id"], m2["id"]]),
        "deals": sorted([d_alone["id"], d_of_m3["id"]]),
        "not": [m3["id"], m_gone_lead["id"], d_of_m1["id"], d_deleted["id"], d_gone_lead["id"]],
    }


def expected_queue(h: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(
        [("meeting_booked", m) for m in h["meetings"]] + [("deal_created", d) for d in h["deals"]]
    )


# --- crm.save_crm_connection ------------------------------------------------------------------


def test_connecting_saves_a_new_connected_config(conn: Conn, make: Make) -> None:
    client = make.client()
    config_id, replaced = save(
        conn, client["id"], p_pipeline_id="1", p_stage_id="2", p_owner_id="3",
        p_external_key_fields={"deal": "agency_crm_key"},
    )  # fmt: skip
    assert replaced is False
    config = live_config(conn, client["id"])
    assert config["id"] == config_id
    assert (config["crm_type"], config["is_active"], config["connection_status"]) == (
        "pipedrive", True, "connected",
    )  # fmt: skip
    assert unseal(client["id"], "api_key", config["api_key"]) == "pd-key"
    assert (config["pipeline_id"], config["stage_id"], config["owner_id"]) == ("1", "2", "3")
    assert config["external_key_fields"] == {"deal": "agency_crm_key"}


def test_the_same_crm_again_replaces_the_credentials_and_keeps_the_settings(
    conn: Conn, make: Make
) -> None:
    client = make.client()
    first, _ = save(
        conn, client["id"], p_pipeline_id="1", p_stage_id="2",
        p_external_key_fields={"deal": "k1"},
    )  # fmt: skip
    lead = make.lead(client)
    make.meeting(lead)
    # The CRM refused the old key: the config is in error, its push held.
    conn.execute("SELECT crm.hold_pushes(%s, '401 from Pipedrive')", (client["id"],))
    assert queued(conn, client["id"], "held") != []

    again, replaced = save(
        conn, client["id"], key="pd-new-key", p_pipeline_id="9", p_stage_id="9",
        p_owner_id="7", p_external_key_fields={"person": "k2"},
    )  # fmt: skip
    assert (again, replaced) == (first, True)
    [config] = configs(conn, client["id"])
    assert unseal(client["id"], "api_key", config["api_key"]) == "pd-new-key"
    # The settings chosen stay; the p_ ones fill those not set.
    assert (config["pipeline_id"], config["stage_id"], config["owner_id"]) == ("1", "2", "7")
    assert config["external_key_fields"] == {"deal": "k1", "person": "k2"}
    assert (config["connection_status"], config["last_error"]) == ("connected", None)
    # New credentials: the held push goes out again.
    assert queued(conn, client["id"], "held") == []
    assert len(queued(conn, client["id"])) == 1


def test_another_crm_while_one_is_connected_is_refused_naming_it(conn: Conn, make: Make) -> None:
    client = make.client()
    config_id, _ = save(conn, client["id"], "pipedrive")
    before = configs(conn, client["id"])
    with raises_sqlstate(conn, "23505") as info:
        save(conn, client["id"], "close")
    diag = info.value.diag
    assert diag.message_primary == (
        f"client {client['id']} is already connected to pipedrive (config {config_id}):"
        " a client has one CRM"
    )
    assert diag.message_detail == "Connecting close was refused; nothing was changed."
    assert diag.message_hint is not None
    assert diag.message_hint.startswith("Disconnect pipedrive first")
    assert f"agency-crm crm disconnect --client {client['id']}" in diag.message_hint
    assert diag.constraint_name == "client_crm_configs_client_id_key"
    assert configs(conn, client["id"]) == before


@pytest.mark.parametrize("connected", [True, False])
def test_an_unknown_crm_is_refused_as_one_even_while_another_is_connected(
    conn: Conn, make: Make, connected: bool
) -> None:
    client = make.client()
    if connected:
        save(conn, client["id"], "pipedrive")
    before = configs(conn, client["id"])
    with raises_sqlstate(conn, "23514") as info:
        save(conn, client["id"], "salesforce", key=None)
    diag = info.value.diag
    assert "crm_type 'salesforce' is not a CRM we push to" in (diag.message_primary or "")
    assert diag.message_hint == "Use one of: hubspot, pipedrive, close."
    assert (diag.column_name, diag.constraint_name) == (
        "crm_type", "client_crm_configs_crm_type_check",
    )  # fmt: skip
    with raises_sqlstate(conn, "23514") as info:
        save(conn, client["id"], "Pipedrive")
    assert (info.value.diag.message_hint or "").endswith("Did you mean pipedrive?")
    assert configs(conn, client["id"]) == before


@pytest.mark.parametrize("argument", ["p_client_id", "p_crm_type"])
def test_a_null_client_or_crm_is_refused_naming_it(conn: Conn, make: Make, argument: str) -> None:
    client = make.client()
    args = {"p_client_id": client["id"], "p_crm_type": "pipedrive", argument: None}
    with raises_sqlstate(conn, "22023") as info:
        conn.execute(
            "SELECT * FROM crm.save_crm_connection(p_client_id => %(p_client_id)s,"
            " p_crm_type => %(p_crm_type)s)",
            args,
        )
    assert info.value.diag.message_primary == (
        f"crm.save_crm_connection: {argument} must not be NULL"
    )
    assert info.value.diag.message_hint
    assert configs(conn, client["id"]) == []


@pytest.mark.parametrize("crm_type", ["close", "pipedrive"])
def test_after_disconnect_a_connection_starts_a_new_config(
    conn: Conn, make: Make, crm_type: str
) -> None:
    client = make.client()
    old, _ = save(conn, client["id"], "pipedrive", p_pipeline_id="1")
    make.external_id({"id": old, "client_id": client["id"]}, entity_type="deal")
    disconnect(conn, client["id"])

    new, replaced = save(conn, client["id"], crm_type)
    assert replaced is False and new != old
    history_row, live = configs(conn, client["id"])
    assert history_row["id"] == old and history_row["deleted_at"] is not None
    assert (history_row["is_active"], history_row["connection_status"]) == (
        False, "disconnected",
    )  # fmt: skip
    assert (live["id"], live["crm_type"], live["is_active"], live["deleted_at"]) == (
        new, crm_type, True, None,
    )  # fmt: skip
    assert live["pipeline_id"] is None, "a new connection starts clean"
    # The old CRM's id map stays with the old config; the new one has none.
    ids = conn.execute(
        "SELECT crm_config_id FROM crm.crm_external_ids WHERE client_id = %s", (client["id"],)
    ).fetchall()
    assert ids == [(old,)]


@pytest.mark.parametrize(
    ("second", "first_commits"),
    [("close", True), ("pipedrive", True), ("close", False)],
)
def test_two_connects_of_one_client_at_once_are_serialised(
    conn: Conn, make: Make, dsn: str, second: str, first_commits: bool
) -> None:
    """Session 1, inside save_crm_connection, holds the client's connection lock; session 2's
    connect waits for it, then sees what session 1 left: refused (another CRM), replaced (the
    same one) or, session 1 rolled back, free to insert its own."""
    client = make.client()
    conn.commit()
    with psycopg.connect(dsn) as one:
        first, _ = save(one, client["id"], "pipedrive")
        two = Background(dsn, lambda c: save(c, client["id"], second))
        assert two.blocked(), "the second connect did not wait for the first"
        if first_commits:
            one.commit()
        else:
            one.rollback()
        if first_commits and second == "close":
            with pytest.raises(psycopg.errors.UniqueViolation) as info:
                two.join()
            assert "already connected to pipedrive" in str(info.value)
        else:
            config_id, replaced = two.join()
            assert replaced is first_commits
            assert (config_id == first) is first_commits
    live = live_config(conn, client["id"])
    assert live["crm_type"] == ("pipedrive" if first_commits else second)
    assert len(configs(conn, client["id"])) == 1


# --- crm.disconnect_crm -----------------------------------------------------------------------


def a_queue_of_every_status(conn: Conn, make: Make) -> tuple[Row, dict[str, Any]]:
    """A connected client with a push in each status (committed): pending (a meeting just
    booked), held (the CRM refused the key), in_flight (claimed), done."""
    client = make.client()
    save(conn, client["id"], "pipedrive")
    leads = [make.lead(client) for _ in range(3)]
    for lead in leads:
        make.meeting(lead)
    claimed = conn.execute(
        "SELECT id, attempts FROM crm.claim_pushes(%s, 'runner-1', 2, 300)", (client["id"],)
    ).fetchall()
    assert len(claimed) == 2
    conn.execute(
        "SELECT crm.finish_push(%s, %s, 'runner-1', %s, 'done')",
        (client["id"], claimed[0][0], claimed[0][1]),
    )
    conn.execute("SELECT crm.hold_pushes(%s, '401 from Pipedrive')", (client["id"],))
    make.meeting(leads[0])  # pending: the config in error is still active
    conn.commit()
    by_status = {p["status"]: p for p in pushes(conn, client["id"])}
    assert sorted(by_status) == ["done", "held", "in_flight", "pending"]
    return client, by_status


def test_disconnect_skips_the_pending_and_held_pushes_and_forgets_the_credentials(
    conn: Conn, make: Make
) -> None:
    client, before = a_queue_of_every_status(conn, make)
    assert live_config(conn, client["id"])["connection_status"] == "error"

    assert disconnect(conn, client["id"]) == 2
    after = {p["id"]: p for p in pushes(conn, client["id"])}
    for status in ("pending", "held"):
        push = after[before[status]["id"]]
        assert push["status"] == "skipped", status
        assert push["finished_at"] is not None
        assert push["last_error"] == "skipped: the client disconnected its CRM (pipedrive)"
    # In flight: it finishes as the runner says; done stays done.
    assert after[before["in_flight"]["id"]] == before["in_flight"]
    assert after[before["done"]["id"]] == before["done"]
    # The config leaving error released nothing (trigger _600_release_held).
    assert queued(conn, client["id"]) == [] and queued(conn, client["id"], "held") == []
    config = live_config(conn, client["id"])
    assert (config["is_active"], config["connection_status"], config["last_error"]) == (
        False, "disconnected", None,
    )  # fmt: skip
    assert config["deleted_at"] is None, "disconnect is soft: the config stays, inactive"
    secrets = ("api_key", "oauth_access_token", "oauth_refresh_token", "oauth_expires_at")
    assert all(config[s] is None for s in secrets)

    # Twice: nothing more to skip.
    assert disconnect(conn, client["id"]) == 0
    assert {p["id"]: p for p in pushes(conn, client["id"])} == after


def test_disconnect_says_why_with_the_reason_given(conn: Conn, make: Make) -> None:
    client = make.client()
    save(conn, client["id"])
    make.meeting(make.lead(client))
    assert disconnect(conn, client["id"], "the client left the agency") == 1
    [push] = pushes(conn, client["id"])
    assert (push["status"], push["last_error"]) == ("skipped", "the client left the agency")


def test_disconnect_without_a_config_is_refused_with_a_hint(conn: Conn, make: Make) -> None:
    client = make.client()
    # P0002 (no_data_found): the project's code for an id that must have a row and has none,
    # which the service layer maps to 404.
    with raises_sqlstate(conn, "P0002") as info:
        disconnect(conn, client["id"])
    assert info.value.diag.message_primary == (
        f"crm.disconnect_crm: client {client['id']} has no CRM connected"
    )
    assert f"crm config show --client {client['id']}" in (info.value.diag.message_hint or "")
    with raises_sqlstate(conn, "22023") as info:
        disconnect(conn, None)
    assert "p_client_id must not be NULL" in (info.value.diag.message_primary or "")


def test_app_code_queues_nothing_for_a_disconnected_crm(conn: Conn, make: Make) -> None:
    client = make.client(auto_create_deals=True)
    save(conn, client["id"])
    lead = make.lead(client)
    meeting = make.meeting(lead)
    deal = make.deal(lead, name="Before")
    disconnect(conn, client["id"])
    before = pushes(conn, client["id"])

    make.meeting(make.lead(client))
    conn.execute(
        "UPDATE crm.meetings SET meeting_outcome = 'good', showed_up = true WHERE id = %s",
        (meeting["id"],),
    )
    conn.execute("UPDATE crm.deals SET stage = 'proposal' WHERE id = %s", (deal["id"],))
    make.deal(lead, name="After")
    assert pushes(conn, client["id"]) == before


def test_a_push_queued_while_disconnecting_goes_out_once_after_a_reconnect(
    conn: Conn, make: Make, dsn: str
) -> None:
    """App code books a meeting (its push queued, uncommitted) while the CRM is disconnected:
    disconnect does not see that push, which stays pending after both commit. It is sent
    once the client reconnects, and the backfill does not queue the meeting a second time."""
    client = make.client()
    save(conn, client["id"])
    lead = make.lead(client)
    conn.commit()
    with psycopg.connect(dsn) as app:
        meeting = Make(app).meeting(lead)
        assert disconnect(conn, client["id"]) == 0
        conn.commit()
        app.commit()
    assert queued(conn, client["id"]) == [("meeting_booked", meeting["id"])]
    save(conn, client["id"])
    assert backfill(conn, client["id"]) == (0, 0)
    assert queued(conn, client["id"]) == [("meeting_booked", meeting["id"])]


# --- crm.backfill_pushes ----------------------------------------------------------------------


def test_backfill_queues_each_live_meeting_and_deal_the_crm_has_not_got_once(
    conn: Conn, make: Make
) -> None:
    client = make.client()
    h = history(make, client)
    assert pushes(conn, client["id"]) == [], "no CRM yet: nothing queued"
    config_id, _ = save(conn, client["id"])

    assert backfill(conn, client["id"]) == (2, 2)
    assert queued(conn, client["id"]) == expected_queue(h)
    queue = pushes(conn, client["id"])
    assert not {p["meeting_id"] or p["deal_id"] for p in queue} & set(h["not"])
    # Oldest first: meetings by booking, then deals by creation.
    assert [p["operation"] for p in queue] == ["meeting_booked"] * 2 + ["deal_created"] * 2
    # Run twice: nothing new.
    assert backfill(conn, client["id"]) == (0, 0)

    # The runner sent them all: the pushes are done and the CRM id map has the deals.
    conn.execute(
        "UPDATE crm.crm_push_queue SET status = 'done', finished_at = now() WHERE client_id = %s",
        (client["id"],),
    )
    assert backfill(conn, client["id"]) == (2, 2), "done, but the CRM has no deal of them"
    conn.execute(
        "UPDATE crm.crm_push_queue SET status = 'done', finished_at = now()"
        " WHERE client_id = %s AND status = 'pending'",
        (client["id"],),
    )
    keys = [f"acrm-meeting-{m}" for m in h["meetings"]]
    deal_meeting = conn.execute(
        "SELECT id, meeting_id FROM crm.deals WHERE id = ANY (%s)", (h["deals"],)
    ).fetchall()
    keys += [f"acrm-meeting-{m}" if m else f"acrm-deal-{d}" for d, m in deal_meeting]
    for n, key in enumerate(keys):
        conn.execute(
            "SELECT crm.record_crm_id(%s, %s, 'deal', %s, NULL, %s)",
            (client["id"], config_id, key, str(100 + n)),
        )
    assert backfill(conn, client["id"]) == (0, 0)

    # A new connection has an id map of its own: everything goes again, once.
    disconnect(conn, client["id"])
    save(conn, client["id"], "close")
    assert backfill(conn, client["id"]) == (2, 2)
    assert queued(conn, client["id"]) == expected_queue(h)
    assert backfill(conn, client["id"]) == (0, 0)


def test_backfill_leaves_out_what_a_push_is_about_to_send(conn: Conn, make: Make) -> None:
    client = make.client()
    save(conn, client["id"])
    lead = make.lead(client)
    booked = make.meeting(lead)  # queued by the booking itself
    [push] = pushes(conn, client["id"])
    for status in ("pending", "in_flight", "held"):
        conn.execute(
            "UPDATE crm.crm_push_queue SET status = %s, lease_owner = 'r',"
            " lease_expires_at = now() + interval '1 minute' WHERE id = %s",
            (status, push["id"]),
        )
        assert backfill(conn, client["id"]) == (0, 0), status
    assert queued(conn, client["id"], "held") == [("meeting_booked", booked["id"])]


def test_backfill_since_a_time_and_at_the_edges_of_time(conn: Conn, make: Make) -> None:
    client = make.client()
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    years = timedelta(days=365)
    old_lead, new_lead = make.lead(client), make.lead(client)
    ancient = make.meeting(
        old_lead, booked_at=now - 20 * years, scheduled_at=now - 20 * years + timedelta(days=1)
    )
    recent = make.meeting(new_lead, booked_at=now - timedelta(days=2))
    old_deal = make.deal(old_lead, created_at=now - 20 * years, name="Old")
    new_deal = make.deal(new_lead, name="New")
    save(conn, client["id"])
    cases = [
        (None, {ancient["id"], recent["id"], old_deal["id"], new_deal["id"]}),
        ("-infinity", {ancient["id"], recent["id"], old_deal["id"], new_deal["id"]}),
        (now - 10 * years, {recent["id"], new_deal["id"]}),
        (now - timedelta(days=1), {new_deal["id"]}),
        ("infinity", set()),
    ]
    for since, expected in cases:
        conn.execute("SAVEPOINT since")
        backfill(conn, client["id"], since)
        got = {p["meeting_id"] or p["deal_id"] for p in pushes(conn, client["id"])}
        assert got == expected, since
        conn.execute("ROLLBACK TO SAVEPOINT since")


def test_backfill_without_a_connected_crm_is_refused_with_a_hint(conn: Conn, make: Make) -> None:
    client = make.client()
    make.meeting(make.lead(client))
    with raises_sqlstate(conn, "55000") as info:
        backfill(conn, client["id"])
    assert info.value.diag.message_primary == (
        f"crm.backfill_pushes: client {client['id']} has no connected CRM to backfill"
    )
    assert f"crm connect hubspot|pipedrive|close --client {client['id']}" in (
        info.value.diag.message_hint or ""
    )
    save(conn, client["id"])
    disconnect(conn, client["id"])
    with raises_sqlstate(conn, "55000"):
        backfill(conn, client["id"])
    with raises_sqlstate(conn, "22023") as info:
        backfill(conn, None)
    assert "p_client_id must not be NULL" in (info.value.diag.message_primary or "")
    assert pushes(conn, client["id"]) == []


def test_a_meeting_booked_while_a_backfill_is_open_is_queued_once(
    conn: Conn, make: Make, dsn: str
) -> None:
    """Session 1's backfill is open (its pushes uncommitted) while app code books a meeting
    and commits (the booking queues its push); and the other way round. Either way, one
    pending push for the meeting."""
    client = make.client()
    leads = [make.lead(client) for _ in range(3)]
    earlier = make.meeting(leads[0])  # before the CRM: backfilled
    save(conn, client["id"])
    conn.commit()
    with psycopg.connect(dsn) as one, psycopg.connect(dsn) as app:
        assert backfill(one, client["id"]) == (1, 0)
        booked = Make(app).meeting(leads[1])
        app.commit()
        assert backfill(one, client["id"]) == (0, 0), "sees the booking's own push"
        one.commit()

        later = Make(app).meeting(leads[2])  # uncommitted: the backfill misses it
        assert backfill(one, client["id"]) == (0, 0)
        one.commit()
        app.commit()
    assert queued(conn, client["id"]) == sorted(
        ("meeting_booked", m["id"]) for m in (earlier, booked, later)
    )


def test_two_backfills_at_once_queue_each_meeting_once(conn: Conn, make: Make, dsn: str) -> None:
    client = make.client()
    h = history(make, client)
    save(conn, client["id"])
    conn.commit()
    with psycopg.connect(dsn) as one:
        assert backfill(one, client["id"]) == (2, 2)
        two = Background(dsn, lambda c: backfill(c, client["id"]))
        assert two.blocked(), "the second backfill did not wait for the first"
        one.commit()
        assert two.join() == (0, 0)
    assert queued(conn, client["id"]) == expected_queue(h)


def test_a_meeting_booked_while_the_crm_is_being_connected_is_queued_once(
    conn: Conn, make: Make, dsn: str
) -> None:
    """The booking, seeing no config, holds the shared connection lock until it commits: the
    connect waits for it, and its backfill then sees the meeting."""
    client = make.client()
    lead = make.lead(client)
    conn.commit()
    with psycopg.connect(dsn) as app:
        meeting = Make(app).meeting(lead)  # no config visible: nothing queued yet
        connect = Background(dsn, lambda c: (save(c, client["id"]), backfill(c, client["id"])))
        assert connect.blocked(), "the connect did not wait for the booking"
        app.commit()
        _, filled = connect.join()
    assert filled == (1, 0)
    assert queued(conn, client["id"]) == [("meeting_booked", meeting["id"])]


def test_a_meeting_booked_while_a_connect_commits_is_queued_once(
    conn: Conn, make: Make, dsn: str
) -> None:
    """The connect holds the connection lock with its config uncommitted: the booking, seeing
    no config, waits for it, then sees the config and queues its own push."""
    client = make.client()
    lead = make.lead(client)
    conn.commit()
    with psycopg.connect(dsn) as api:
        save(api, client["id"])
        assert backfill(api, client["id"]) == (0, 0)
        booking = Background(dsn, lambda c: Make(c).meeting(lead))
        assert booking.blocked(), "the booking did not wait for the connect"
        api.commit()
        meeting = booking.join()
    assert queued(conn, client["id"]) == [("meeting_booked", meeting["id"])]


def test_bookings_of_a_client_without_a_crm_do_not_wait_for_each_other(
    conn: Conn, make: Make, dsn: str
) -> None:
    """The shared lock is shared: two writers of a client with no CRM go on side by side."""
    client = make.client()
    leads = [make.lead(client) for _ in range(2)]
    conn.commit()
    with psycopg.connect(dsn) as app:
        Make(app).meeting(leads[0])
        other = Background(dsn, lambda c: Make(c).meeting(leads[1]))
        assert not other.blocked(), "a booking waited for another client-side booking"
        other.join()
        app.commit()
    assert queued(conn, client["id"]) == []


# --- crm.begin_oauth_state and crm.consume_oauth_state --------------------------------------


def begin(conn: Conn, client_id: Any, state: bytes, base: str | None = None) -> Any:
    row = conn.execute(
        "SELECT crm.begin_oauth_state(%s, %s, %s, %s)", (client_id, state, REDIRECT, base)
    ).fetchone()
    assert row is not None
    return row[0]


def test_an_oauth_state_expires_ten_minutes_after_it_was_begun(conn: Conn, make: Make) -> None:
    client = make.client()
    expires = begin(conn, client["id"], digest("s1"))
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    assert expires == now + timedelta(minutes=10)
    with raises_sqlstate(conn, "23505") as info:
        begin(conn, client["id"], digest("s1"))
    assert "p_state_hash is stored already" in (info.value.diag.message_primary or "")
    assert digest("s1").hex() not in str(info.value)


def test_an_oauth_state_is_used_once(conn: Conn, make: Make) -> None:
    client = make.client()
    begin(conn, client["id"], digest("s1"), "http://127.0.0.1:8701")
    assert consume(conn, digest("s1")) == ("ok", client["id"], REDIRECT, "http://127.0.0.1:8701")
    assert consume(conn, digest("s1")) == ("reused", None, None, None)
    assert consume(conn, digest("never begun")) == ("unknown", None, None, None)


def test_an_expired_oauth_state_is_refused_and_used_up(conn: Conn, make: Make) -> None:
    client = make.client()
    begin(conn, client["id"], digest("s1"))
    conn.execute(
        "UPDATE crm_private.oauth_states SET created_at = now() - interval '11 minutes',"
        " expires_at = now() - interval '1 minute' WHERE client_id = %s",
        (client["id"],),
    )
    assert consume(conn, digest("s1")) == ("expired", None, None, None)
    assert consume(conn, digest("s1")) == ("reused", None, None, None)


def test_another_clients_oauth_state_is_unknown_and_stays_usable_by_its_client(
    conn: Conn, make: Make
) -> None:
    a, b = make.client(), make.client()
    begin(conn, b["id"], digest("b's"))
    for how in ("setting", "argument", "argument beside the setting"):
        conn.execute("SAVEPOINT s")
        if how == "setting":
            acting_for(conn, a["id"])
            got = consume(conn, digest("b's"))
        elif how == "argument":
            got = consume(conn, digest("b's"), a["id"])
        else:  # acting for A, naming B: the setting wins
            acting_for(conn, a["id"])
            got = consume(conn, digest("b's"), b["id"])
        assert got == ("unknown", None, None, None), how
        conn.execute("RELEASE SAVEPOINT s")
        conn.execute("SELECT set_config('crm.client_id', '', true)")
    used = conn.execute(
        "SELECT used_at FROM crm_private.oauth_states WHERE client_id = %s", (b["id"],)
    ).fetchone()
    assert used == (None,)
    acting_for(conn, b["id"])
    assert consume(conn, digest("b's"))[0] == "ok"


@pytest.mark.parametrize("first_commits", [True, False])
def test_two_callbacks_with_one_state_at_once_get_one_ok(
    conn: Conn, make: Make, dsn: str, first_commits: bool
) -> None:
    client = make.client()
    begin(conn, client["id"], digest("s1"))
    conn.commit()
    with psycopg.connect(dsn) as one:
        assert consume(one, digest("s1"))[0] == "ok"
        two = Background(dsn, lambda c: consume(c, digest("s1")))
        assert two.blocked(), "the second callback did not wait for the first"
        if first_commits:
            one.commit()
        else:
            one.rollback()
        assert two.join()[0] == ("reused" if first_commits else "ok")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"client": None}, "crm.begin_oauth_state: p_client_id must not be NULL"),
        ({"state": b"short"}, "p_state_hash must be a SHA-256 digest (32 bytes), got 5 bytes"),
        ({"state": None}, "p_state_hash must be a SHA-256 digest (32 bytes), got NULL"),
        ({"redirect": "javascript:alert(1)"}, "p_redirect_uri 'javascript:alert(1)' is not an"),
        ({"redirect": None}, "p_redirect_uri NULL is not an http(s) URL"),
        ({"base": "ftp://x"}, "p_api_base_url 'ftp://x' is not an http(s) URL"),
    ],
)
def test_begin_oauth_state_refuses_bad_arguments_naming_them(
    conn: Conn, make: Make, args: dict[str, Any], message: str
) -> None:
    client = make.client()
    values = {"client": client["id"], "state": digest("s"), "redirect": REDIRECT, "base": None}
    values |= args
    with raises_sqlstate(conn, "22023") as info:
        conn.execute(
            "SELECT crm.begin_oauth_state(%(client)s, %(state)s, %(redirect)s, %(base)s)", values
        )
    assert message in (info.value.diag.message_primary or "")
    assert info.value.diag.message_hint
    with raises_sqlstate(conn, "22023") as info:
        consume(conn, b"short")
    assert "got 5 bytes" in (info.value.diag.message_primary or "")


# --- crm.authenticate_api_token ---------------------------------------------------------------


def token(conn: Conn, client_id: Any, value: str, **kw: Any) -> Any:
    row = conn.execute(
        "INSERT INTO crm_private.api_tokens (client_id, name, token_hash, token_prefix,"
        " revoked_at) VALUES (%s, 'test', %s, 'acrm_test', %s) RETURNING id",
        (client_id, digest(value), kw.get("revoked_at")),
    ).fetchone()
    assert row is not None
    return row[0]


def authenticate(conn: Conn, value: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT * FROM crm.authenticate_api_token(%s)", (digest(value),)
        ).fetchall()
    ]


def last_used(conn: Conn, token_id: Any) -> Any:
    row = conn.execute(
        "SELECT last_used_at FROM crm_private.api_tokens WHERE id = %s", (token_id,)
    ).fetchone()
    assert row is not None
    return row[0]


def test_an_api_token_authenticates_until_it_is_revoked(conn: Conn, make: Make) -> None:
    client = make.client()
    mine = token(conn, client["id"], "acrm_mine")
    agency = token(conn, None, "acrm_agency")
    token(conn, client["id"], "acrm_revoked", revoked_at="2026-01-01")
    assert authenticate(conn, "acrm_mine") == [(mine, client["id"])]
    assert authenticate(conn, "acrm_agency") == [(agency, None)]
    assert authenticate(conn, "acrm_revoked") == []
    assert authenticate(conn, "acrm_unknown") == []
    with raises_sqlstate(conn, "22023") as info:
        conn.execute("SELECT * FROM crm.authenticate_api_token(NULL)")
    assert "p_token_hash must be a SHA-256 digest" in (info.value.diag.message_primary or "")


def test_an_api_tokens_use_is_noted_at_most_once_a_minute(conn: Conn, make: Make) -> None:
    client = make.client()
    token_id = token(conn, client["id"], "acrm_t")
    conn.commit()
    assert last_used(conn, token_id) is None
    authenticate(conn, "acrm_t")
    first = last_used(conn, token_id)
    assert first is not None
    conn.commit()
    authenticate(conn, "acrm_t")  # a new transaction, seconds later
    assert last_used(conn, token_id) == first
    for ago, noted in (("30 seconds", False), ("61 seconds", True)):
        conn.execute(
            "UPDATE crm_private.api_tokens SET last_used_at = now() - %s::interval WHERE id = %s",
            (ago, token_id),
        )
        before = last_used(conn, token_id)
        assert authenticate(conn, "acrm_t") == [(token_id, client["id"])]
        now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        assert last_used(conn, token_id) == (now if noted else before), ago


# --- crm_api, acting for one client -----------------------------------------------------------


@pytest.fixture
def api_clients(conn: Conn, make: Make) -> Iterator[tuple[Row, Row]]:
    """Clients A (no CRM yet, a history to backfill) and B (connected, a push pending),
    committed."""
    a, b = make.client(name="A"), make.client(name="B")
    history(make, a)
    save(conn, b["id"], "close")
    make.meeting(make.lead(b))
    begin(conn, b["id"], digest("b's state"))
    conn.commit()
    yield a, b


def write_log(conn: Conn, client_id: Any) -> int:
    """crm.write_push_log: one audit row of a connect's call (as the API writes them)."""
    row = conn.execute(
        "SELECT crm.write_push_log(%s, %s)",
        (client_id, Jsonb([{"operation": "get_pipelines", "status": "success"}])),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_api_connects_backfills_and_disconnects_its_own_client(
    conn: Conn,
    dsn: str,
    api_clients: tuple[Row, Row],
    logins: dict[str, str],  # noqa: F811
) -> None:
    a, _ = api_clients
    with connect_as(dsn, logins["crm_api"]) as api:
        acting_for(api, a["id"])
        config_id, replaced = save(api, a["id"], "pipedrive", p_pipeline_id="1")
        assert replaced is False
        assert backfill(api, a["id"]) == (2, 2)
        assert save(api, a["id"], "pipedrive", key="pd-new")[1] is True
        expires = begin(api, a["id"], digest("a's state"))
        assert expires is not None
        assert write_log(api, a["id"]) == 1
        api.commit()

        acting_for(api, a["id"])
        [scoped] = api.execute(
            "SELECT id, client_id, client_name, crm_type, api_key FROM crm.scoped_crm_config()"
        ).fetchall()
        assert scoped[:4] == (config_id, a["id"], "A", "pipedrive")
        assert unseal(a["id"], "api_key", scoped[4]) == "pd-new"
        assert consume(api, digest("a's state"))[:2] == ("ok", a["id"])
        assert disconnect(api, a["id"]) == 4
        api.commit()
        # Unset: the API's role sees no config, and no credentials.
        assert api.execute("SELECT count(*) FROM crm.scoped_crm_config()").fetchone() == (0,)
        assert api.execute("SELECT count(*) FROM crm.client_crm_configs").fetchone() == (0,)
        api.rollback()
    assert live_config(conn, a["id"])["connection_status"] == "disconnected"
    assert {p["status"] for p in pushes(conn, a["id"])} == {"skipped"}


def test_for_another_client_the_api_gets_what_a_client_that_does_not_exist_gets(
    conn: Conn,
    dsn: str,
    api_clients: tuple[Row, Row],
    logins: dict[str, str],  # noqa: F811
) -> None:
    """Acting for A, every connection function called for B is refused exactly as for an id
    that names no client (23503 for a connect and an OAuth flow, P0002 for a disconnect,
    55000 for a backfill; unknown for B's OAuth state), and B's rows are untouched: the API
    learns nothing of B, not even that it exists."""
    a, b = api_clients
    nobody = uuid.uuid4()
    before = (configs(conn, b["id"]), pushes(conn, b["id"]))
    calls = {
        "connect": (lambda c, who: save(c, who, "pipedrive"), "23503"),
        "connect the same CRM": (lambda c, who: save(c, who, "close"), "23503"),
        "disconnect": (lambda c, who: disconnect(c, who), "P0002"),
        "backfill": (lambda c, who: backfill(c, who), "55000"),
        "begin an OAuth flow": (lambda c, who: begin(c, who, digest(f"x{who}")), "23503"),
        # the audit rows of a connect's calls: row-level security refuses them alike
        "write audit rows": (lambda c, who: write_log(c, who), "42501"),
    }
    with connect_as(dsn, logins["crm_api"]) as api:
        for what, (call, sqlstate) in calls.items():
            refusals = []
            for who in (b["id"], nobody):
                with api.transaction():
                    acting_for(api, a["id"])
                    with raises_sqlstate(api, sqlstate) as info:
                        call(api, who)
                    refusals.append(refusal(info))
            assert refusals[0] == refusals[1], what
        with api.transaction():
            acting_for(api, a["id"])
            assert consume(api, digest("b's state")) == ("unknown", None, None, None)
            assert consume(api, digest("b's state"), b["id"]) == ("unknown", None, None, None)
            assert api.execute("SELECT client_id FROM crm.scoped_crm_config()").fetchall() == []
            for table in ("crm.client_crm_configs", "crm.crm_push_queue", "crm.meetings"):
                seen = api.execute(f"SELECT DISTINCT client_id FROM {table}").fetchall()
                assert {r[0] for r in seen} <= {a["id"]}, table
    assert (configs(conn, b["id"]), pushes(conn, b["id"])) == before
    used = conn.execute(
        "SELECT used_at FROM crm_private.oauth_states WHERE client_id = %s", (b["id"],)
    ).fetchone()
    assert used == (None,), "B's state is still B's to use"


def test_the_api_authenticates_a_token_before_it_knows_the_client(
    conn: Conn,
    dsn: str,
    api_clients: tuple[Row, Row],
    logins: dict[str, str],  # noqa: F811
) -> None:
    a, _ = api_clients
    token_id = token(conn, a["id"], "acrm_a")
    conn.commit()
    with connect_as(dsn, logins["crm_api"]) as api:
        assert authenticate(api, "acrm_a") == [(token_id, a["id"])]
        assert authenticate(api, "acrm_nobody") == []
        # It reads no digest itself.
        with raises_sqlstate(api, "42501"):
            api.execute("SELECT token_hash FROM crm_private.api_tokens")
