"""`agency-crm push drain / status / retry / logs`, run as cron and an operator run them: a
real process against a real database and the CRM sandbox."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import psycopg

from agency_crm.sandbox import Sandbox
from tests.helpers.cli import run
from tests.helpers.fixtures import Make
from tests.push.conftest import CRMS, connect_crm


def test_drain_logs_one_json_line_per_push_and_a_summary(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    _conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "pipedrive")
    for _ in range(3):
        pmake.meeting(pmake.lead(client))
    done = run("push", "drain", "--database-url", url)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["outcome"] for e in events] == ["done"] * 3
    assert {e["client_id"] for e in events} == {str(client["id"])}
    # The three leads work for one company: the first push creates its organisation, person
    # and deal (3 calls), the others a person and a deal (2).
    assert all(e["crm"] == "pipedrive" for e in events)
    assert sorted(e["crm_calls"] for e in events) == [2, 2, 3]
    summary = json.loads(done.stdout)
    assert summary["event"] == "drain_finished"
    assert summary["done"] == 3 and summary["pushes"] == 3 and summary["failed"] == 0
    assert len(crm.deals()) == 3
    # Nothing left: a second run sends nothing and still exits 0.
    again = run("push", "drain", "--database-url", url)
    assert again.returncode == 0 and json.loads(again.stdout)["pushes"] == 0


def test_dry_run_shows_what_would_be_sent_and_sends_nothing(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    lead = pmake.lead(client, email="dry@run.example")
    meeting = pmake.meeting(lead)
    shown = run("push", "drain", "--dry-run", "--database-url", url)
    assert shown.returncode == 0, shown.stderr
    [item] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert item["crm"] == "hubspot" and item["operation"] == "meeting_booked"
    assert item["contact"]["email"] == "dry@run.example"
    assert item["deal"]["key"] == f"acrm-meeting-{meeting['id']}"
    assert item["deal"]["would"] == "create"
    assert crm.state()["requests"] == {}
    status = conn.execute("SELECT status, attempts FROM crm.crm_push_queue").fetchall()
    assert status == [("pending", 0)]


def test_status_retry_and_logs(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    client = pmake.client(name="Acme Agency Client")
    crm = connect_crm(pmake, sandbox, client, "close")
    pmake.meeting(pmake.lead(client))
    crm.fault(method="POST", path="/api/v1/opportunity/", times=1, kind="status", status=400)
    assert run("push", "drain", "--database-url", url).returncode == 0

    status = run("push", "status", "--json", "--database-url", url)
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)
    assert row["client_name"] == "Acme Agency Client" and row["crm_type"] == "close"
    assert (row["pending"], row["failed"], row["dead"]) == (0, 1, 0)
    human = run("push", "status", "--database-url", url)
    assert "Acme Agency Client" in human.stdout and "close" in human.stdout

    logs = run("push", "logs", "--json", "--status", "failed", "--database-url", url)
    [failed] = json.loads(logs.stdout)
    assert failed["operation"] == "create_deal" and failed["http_status"] == 400
    assert "request_payload" not in failed
    with_payloads = run("push", "logs", "--payloads", "--limit", "2", "--database-url", url)
    assert "request:" in with_payloads.stdout and crm.token not in with_payloads.stdout

    retried = run("push", "retry", "--database-url", url)
    assert retried.returncode == 0 and "1 push(es) back to pending" in retried.stdout
    assert run("push", "drain", "--database-url", url).returncode == 0
    assert conn.execute("SELECT status FROM crm.crm_push_queue").fetchall() == [("done",)]
    assert len(crm.deals()) == 1


def test_watch_is_woken_by_a_new_booking_and_stops_on_sigterm(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    _conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "hubspot")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agency_crm", "push", "drain", "--watch", "--database-url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)  # listening
        booked = time.monotonic()
        pmake.meeting(pmake.lead(client))
        while not crm.deals() and time.monotonic() - booked < 10:
            time.sleep(0.05)
        latency = time.monotonic() - booked
        assert crm.deals(), "the watching runner never pushed the booking"
        assert latency < 5, latency  # woken by NOTIFY, not by the 30 s poll
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert json.loads(out)["done"] == 1


def test_a_database_that_does_not_answer_is_one_line_and_exit_1() -> None:
    result = run("push", "drain", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("agency-crm: error:")


def test_bad_options_are_refused() -> None:
    result = run("push", "drain", "--client", "not-a-uuid", "--database-url", "x")
    assert result.returncode != 0
    assert "not-a-uuid" in result.stderr


def test_check_tests_each_connection_and_records_it(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    good = {v: connect_crm(pmake, sandbox, pmake.client(name=f"Good {v}"), v) for v in CRMS}
    bad_client = pmake.client(name="Wrong owner")
    bad = connect_crm(pmake, sandbox, bad_client, "pipedrive", owner_id="999")
    revoked_client = pmake.client(name="Revoked")
    revoked = connect_crm(pmake, sandbox, revoked_client, "close")
    revoked.admin("POST", "/_sandbox/accounts/revoke", json={"token": revoked.token})

    result = run("push", "check", "--json", "--database-url", url)
    assert result.returncode == 3, result.stderr
    by_name = {r["client_name"]: r for r in json.loads(result.stdout)}
    for vendor in CRMS:
        assert by_name[f"Good {vendor}"]["ok"], by_name[f"Good {vendor}"]
        assert by_name[f"Good {vendor}"]["pipelines"] >= 1
    assert by_name["Wrong owner"]["problems"] == ["owner_id '999' is not a user of this CRM"]
    assert "401" in by_name["Revoked"]["problems"][0]
    status = dict(
        conn.execute(
            "SELECT c.name, cfg.connection_status FROM crm.client_crm_configs AS cfg "
            "JOIN crm.clients AS c ON c.id = cfg.client_id"
        ).fetchall()
    )
    assert status["Good hubspot"] == "connected" and status["Wrong owner"] == "error"
    assert status["Revoked"] == "error"
    calls = conn.execute(
        "SELECT DISTINCT operation FROM crm.crm_push_log WHERE push_id IS NULL"
    ).fetchall()
    assert {"get_pipelines"} <= {c[0] for c in calls}
    assert bad.token not in result.stdout and revoked.token not in result.stdout
    human = run(
        "push", "check", "--client", str(good["hubspot"].config["client_id"]), "--database-url", url
    )
    assert human.returncode == 0, human.stderr
    assert "Good hubspot (hubspot): connected" in human.stdout


def test_check_leaves_the_config_alone_when_the_crm_could_not_be_asked(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    """Issue 11: a 503 or a refused connection says nothing about the config's credentials
    or ids; only a refusal of the credentials (401, 403) puts it in error."""
    conn, url = pushdb
    unavailable = connect_crm(pmake, sandbox, pmake.client(name="Unavailable"), "pipedrive")
    unavailable.fault(method="GET", path="/api/v2/pipelines", times=-1, kind="status", status=503)
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    connect_crm(
        pmake,
        sandbox,
        pmake.client(name="Unreachable"),
        "close",
        api_base_url=f"http://127.0.0.1:{closed_port}",
    )
    forbidden = connect_crm(pmake, sandbox, pmake.client(name="Forbidden"), "hubspot")
    forbidden.fault(
        method="GET", path="/crm/v3/pipelines/deals", times=-1, kind="status", status=403
    )
    conn.execute("UPDATE crm.client_crm_configs SET last_error = 'earlier note'")

    result = run("push", "check", "--json", "--database-url", url)
    assert result.returncode == 3, result.stderr
    configs = dict(
        conn.execute(
            "SELECT c.name, (cfg.connection_status, cfg.last_error) "
            "FROM crm.client_crm_configs AS cfg JOIN crm.clients AS c ON c.id = cfg.client_id"
        ).fetchall()
    )
    assert configs["Unavailable"] == ("connected", "earlier note")
    assert configs["Unreachable"] == ("connected", "earlier note")
    assert configs["Forbidden"][0] == "error" and "403" in configs["Forbidden"][1]
    by_name = {r["client_name"]: r for r in json.loads(result.stdout)}
    assert "503" in by_name["Unavailable"]["problems"][0]
    assert "connection_error" in by_name["Unreachable"]["problems"][0]
    assert "403" in by_name["Forbidden"]["problems"][0]
    assert {name: (r["ok"], r["recorded"]) for name, r in by_name.items()} == {
        "Unavailable": (False, False),
        "Unreachable": (False, False),
        "Forbidden": (False, True),
    }
    # The calls are in the audit log all the same.
    codes = {
        r[0]
        for r in conn.execute(
            "SELECT error_code FROM crm.crm_push_log WHERE push_id IS NULL AND status = 'failed'"
        )
    }
    assert {"server_error", "connection_error", "forbidden"} <= codes

    human = run(
        "push", "check", "--client", str(unavailable.config["client_id"]), "--database-url", url
    )
    assert human.returncode == 3
    assert "Unavailable (pipedrive): could not check: 503" in human.stdout
    assert "left as it was" in human.stdout


def test_progress_bar_mode_prints_a_human_summary(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    _conn, url = pushdb
    client = pmake.client()
    connect_crm(pmake, sandbox, client, "close")
    pmake.meeting(pmake.lead(client))
    result = run("push", "drain", "--progress", "bar", "--database-url", url)
    assert result.returncode == 0, result.stderr
    assert "drained 1 push(es) of 1 client(s)" in result.stdout and "done 1" in result.stdout
