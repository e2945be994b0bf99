"""A secret the runner cannot decrypt (its key left the key ring, or the value was tampered
with) sends nothing and loses nothing: the client's pushes wait, spending no attempt, with the
reason (never the secret) in last_error; once the key ring has the key again they go out."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest

from agency_crm import crypto
from agency_crm.sandbox import Sandbox
from tests.helpers.cli import run
from tests.helpers.fixtures import Make
from tests.push.conftest import connect_crm, run_drain


def test_a_secret_under_a_key_the_ring_lost_defers_the_pushes_until_it_is_back(
    pushdb: tuple[psycopg.Connection[Any], str],
    pmake: Make,
    sandbox: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "pipedrive")  # under the suite's key, "test"
    pmake.meeting(pmake.lead(client))
    original = crypto.KeyRing.from_environment()
    other = crypto.generate_entry("other")
    monkeypatch.setenv(crypto.ENV_VAR, other)

    summary = run_drain(url)

    assert summary.outcomes["deferred"] == 1, summary
    assert crm.contacts() == [] and crm.deals() == []
    row = conn.execute(
        "SELECT status, attempts, last_error FROM crm.crm_push_queue WHERE client_id = %s",
        (client["id"],),
    ).fetchone()
    assert row is not None
    status, attempts, error = row
    assert status == "pending" and attempts == 0
    assert "secret_unreadable" in error and "encrypted under key test" in error
    assert "other" in error  # the key ids it has: what to fix
    cfg = conn.execute(
        "SELECT connection_status FROM crm.client_crm_configs WHERE client_id = %s",
        (client["id"],),
    ).fetchone()
    assert cfg == ("connected",)  # the CRM did not refuse anything: the config is fine

    checked = run("push", "check", env={"DATABASE_URL": url, crypto.ENV_VAR: other})
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert "encrypted under key test" in checked.stdout + checked.stderr
    assert crm.token not in checked.stdout + checked.stderr

    # The old key back (after the new one): the push goes out, its attempt the first.
    key_id, key = original.keys[0]
    monkeypatch.setenv(crypto.ENV_VAR, f"{other},{key_id}:{base64.b64encode(key).decode()}")
    conn.execute(
        "UPDATE crm.crm_push_queue SET run_after = now() WHERE client_id = %s", (client["id"],)
    )
    assert run_drain(url).outcomes["done"] == 1
    assert len(crm.deals()) == 1


def test_a_tampered_secret_is_never_sent(
    pushdb: tuple[psycopg.Connection[Any], str], pmake: Make, sandbox: Sandbox
) -> None:
    conn, url = pushdb
    client = pmake.client()
    crm = connect_crm(pmake, sandbox, client, "close")
    other = pmake.client()
    connect_crm(pmake, sandbox, other, "close")
    # Another client's ciphertext copied into this client's row fails to decrypt.
    conn.execute(
        "UPDATE crm.client_crm_configs SET api_key = (SELECT api_key FROM"
        " crm.client_crm_configs WHERE client_id = %s) WHERE client_id = %s",
        (other["id"], client["id"]),
    )
    pmake.meeting(pmake.lead(client))

    summary = run_drain(url)

    assert summary.outcomes["deferred"] == 1, summary
    assert crm.contacts() == []
    error = conn.execute(
        "SELECT last_error FROM crm.crm_push_queue WHERE client_id = %s AND status = 'pending'",
        (client["id"],),
    ).fetchone()
    assert error is not None and "written for another client or column" in error[0]
