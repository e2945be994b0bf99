"""`agency-crm secrets generate-key / check / rotate / set`, run as an operator runs them (a real
process) against a committed database; the rotation's locking also from the library, with a
writer holding a config's row lock."""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import select
import shlex
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import typer
from psycopg.rows import dict_row

from agency_crm import crypto, secret_store
from agency_crm.crypto import KeyRing
from tests.helpers.cli import run
from tests.helpers.fixtures import Make, wait_until_blocked
from tests.push.conftest import pushdb  # noqa: F401  (a fixture used here)
from tests.security.conftest import login_url, logins  # noqa: F401  (a fixture used here)

ENV = crypto.ENV_VAR
COLUMNS = crypto.SECRET_COLUMNS["client_crm_configs"]
# Three key ring entries: A the old key, B the new one, C a key nobody has any more.
A = crypto.generate_entry("A")
B = crypto.generate_entry("B")
C = crypto.generate_entry("C")
ALL = KeyRing.parse(f"{A},{B},{C}")


def ring(*entries: str) -> KeyRing:
    return KeyRing.parse(",".join(entries))


def keys_env(*entries: str) -> dict[str, str]:
    return {ENV: ",".join(entries)}


@pytest.fixture
def committed(
    pushdb: tuple[psycopg.Connection[Any], str],  # noqa: F811  (the fixture)
) -> tuple[psycopg.Connection[Any], str]:
    """A database of its own in autocommit mode (the CLI reads what the test wrote), and its
    URL: the push tests' fixture."""
    return pushdb


@pytest.fixture
def cmake(committed: tuple[psycopg.Connection[Any], str]) -> Make:
    return Make(committed[0])


def secrets_of(
    conn: psycopg.Connection[Any], keys: KeyRing, where: str = "TRUE"
) -> dict[tuple[str, str], str]:
    """Every stored secret decrypted with ``keys``, by (config id, column)."""
    rows = conn.execute(
        "SELECT client_id, id, api_key, oauth_access_token, oauth_refresh_token"
        f" FROM crm.client_crm_configs WHERE {where}"
    ).fetchall()
    out = {}
    for client_id, config_id, *values in rows:
        for column, stored in zip(COLUMNS, values, strict=True):
            if stored is not None:
                out[(str(config_id), column)] = keys.decrypt(
                    stored, client_id=client_id, column=column
                )
    return out


def everything_but_secrets(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Each config's columns other than the secrets and updated_at, by config id."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM crm.client_crm_configs").fetchall()
    drop = {*COLUMNS, "updated_at"}
    return {str(r["id"]): {k: v for k, v in r.items() if k not in drop} for r in rows}


def key_ids_in_use(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return {u.key_id: u.secrets for u in secret_store.key_usage(conn)}


def insert_configs(
    conn: psycopg.Connection[Any], keys: KeyRing, n: int, *, deleted_every: int = 0
) -> dict[tuple[str, str], str]:
    """``n`` clients, each with a CRM config whose secrets are encrypted (in Python) under the
    first key of ``keys``, in one statement per table: HubSpot configs with both OAuth tokens,
    Pipedrive and Close configs with an API key; every 7th in error. With ``deleted_every``,
    that many clients also have a soft-deleted config with a key. Returns the plaintexts."""
    clients = [uuid.uuid4() for _ in range(n)]
    conn.execute(
        "INSERT INTO crm.clients (id, name) SELECT i, 'Client ' || i FROM unnest(%s::uuid[]) AS i",
        (clients,),
    )
    rows: list[tuple[Any, ...]] = []
    plain: dict[tuple[str, str], str] = {}
    for i, client in enumerate(clients):
        config = uuid.uuid4()
        crm_type = ("hubspot", "pipedrive", "close")[i % 3]
        values: dict[str, str | None] = dict.fromkeys(COLUMNS)
        wanted = ("oauth_access_token", "oauth_refresh_token") if i % 3 == 0 else ("api_key",)
        for column in wanted:
            values[column] = f"{column}-{i}-{uuid.uuid4().hex[:8]}"
            plain[(str(config), column)] = values[column]  # type: ignore[assignment]
        status, error = ("error", "401 Unauthorized") if i % 7 == 0 else ("connected", None)
        deleted = None
        rows.append((config, client, crm_type, values, status, error, deleted))
        if deleted_every and i % deleted_every == 0:
            old = uuid.uuid4()
            old_values: dict[str, str | None] = dict.fromkeys(COLUMNS)
            old_values["api_key"] = f"retired-{i}"
            plain[(str(old), "api_key")] = "retired-" + str(i)
            rows.append((old, client, "close", old_values, "disconnected", None, "2026-01-01"))
    seal = keys.encrypt
    conn.execute(
        """
        INSERT INTO crm.client_crm_configs (
            id, client_id, crm_type, api_key, oauth_access_token, oauth_refresh_token,
            connection_status, last_error, deleted_at
        )
        SELECT * FROM unnest(
            %s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::text[], %s::text[], %s::timestamptz[]
        )
        """,
        [
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            *(
                [None if r[3][c] is None else seal(r[3][c], client_id=r[1], column=c) for r in rows]
                for c in COLUMNS
            ),
            [r[4] for r in rows],
            [r[5] for r in rows],
            [r[6] for r in rows],
        ],
    )
    return plain


# --- generate-key ----------------------------------------------------------------------------


def test_generate_key_prints_one_entry_that_parses_and_guidance_on_stderr() -> None:
    done = run("secrets", "generate-key", "--key-id", "k2027-01", env={ENV: ""})
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    keys = KeyRing.parse(line)
    assert keys.key_ids == ("k2027-01",) and len(keys.keys[0][1]) == 32
    # The key itself goes to stdout only; stderr says what to do with it.
    assert line.partition(":")[2] not in done.stderr
    assert ENV in done.stderr and "agency-crm secrets rotate" in done.stderr
    # A default id, and a different key every time.
    again = run("secrets", "generate-key")
    assert again.returncode == 0
    other = KeyRing.parse(again.stdout)
    assert other.keys[0][1] != keys.keys[0][1] and other.primary.startswith("k")
    bad = run("secrets", "generate-key", "--key-id", "no way")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("agency-crm: error: key id 'no way' is not 1-32 letters")


# --- check -----------------------------------------------------------------------------------


def test_check_passes_when_every_secret_decrypts_and_counts_them_per_key(
    committed: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, url = committed
    insert_configs(conn, ring(A), 6, deleted_every=3)
    insert_configs(conn, ring(B), 3)
    done = run("secrets", "check", "--database-url", url, env=keys_env(B, A))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # 6 clients: 2 HubSpot (2 tokens each), 4 with a key, 2 soft-deleted configs with a key;
    # 3 more under B.
    assert lines[0] == "checked 14 secret(s) of 11 CRM config(s) (soft-deleted ones too)"
    assert "  key A: 10 secret(s)" in lines
    assert "  key B: 4 secret(s) (the first key: new secrets are encrypted under it)" in lines
    assert "every secret decrypts" in lines
    assert lines[-1] == (
        "10 secret(s) are not under the first key B: run `agency-crm secrets rotate`"
    )


def test_check_lists_a_secret_that_does_not_decrypt_and_exits_1(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make
) -> None:
    conn, url = committed
    plain = insert_configs(conn, ring(A), 4)
    # Written under a key that is not in the ring any more, and one copied from another
    # client's row: neither decrypts.
    lost = cmake.client()
    lost_config = cmake.crm_config(
        lost,
        api_key=ring(C).encrypt("canary-lost-4711", client_id=lost["id"], column="api_key"),
    )
    donor_client, copied = cmake.client(), cmake.client()
    donor = cmake.crm_config(
        donor_client,
        api_key=ring(A).encrypt("canary-donor", client_id=donor_client["id"], column="api_key"),
    )
    copied_config = cmake.crm_config(copied, api_key=donor["api_key"])
    done = run("secrets", "check", "--database-url", url, env=keys_env(B, A))
    assert done.returncode == 1, done.stderr
    assert "2 secret(s) do not decrypt:" in done.stdout
    assert (
        f"  client {lost['id']} config {lost_config['id']} api_key (key C):"
        f" crm.client_crm_configs.api_key of client {lost['id']} is encrypted under key C,"
        f" which {ENV} does not hold (it holds B, A)"
    ) in done.stdout
    assert (
        f"  client {copied['id']} config {copied_config['id']} api_key (key A):"
        f" crm.client_crm_configs.api_key of client {copied['id']} fails to decrypt under key A:"
        " it was changed, or it was written for another client or column"
    ) in done.stdout
    assert "key C: 1 secret(s) (not in AGENCY_CRM_SECRET_KEYS)" in done.stdout
    for secret in ("canary", *plain.values()):
        assert secret not in done.stdout + done.stderr

    as_json = run("secrets", "check", "--json", "--database-url", url, env=keys_env(B, A))
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["primary_key_id"] == "B"
    assert report["unknown_key_ids"] == ["C"]
    assert sorted(f["key_id"] for f in report["failures"]) == ["A", "C"]
    [failure] = [f for f in report["failures"] if f["key_id"] == "C"]
    assert failure == {
        "client_id": str(lost["id"]),
        "config_id": str(lost_config["id"]),
        "column": "api_key",
        "key_id": "C",
        "deleted": False,
        "reason": failure["reason"],
    }
    # Only one client: that one's secrets alone.
    one = run(
        "secrets", "check", "--client", str(lost["id"]), "--database-url", url, env=keys_env(A)
    )
    assert one.returncode == 1 and one.stdout.startswith("checked 1 secret(s) of 1 CRM config(s)")
    other = run(
        "secrets", "check", "--client", str(donor_client["id"]), "--database-url", url,
        env=keys_env(B, A),
    )  # fmt: skip
    assert other.returncode == 0, other.stdout


def test_check_and_rotate_without_a_key_or_a_schema_say_so_in_one_line(
    committed: tuple[psycopg.Connection[Any], str], empty_db_url: str
) -> None:
    _, url = committed
    for command in ("check", "rotate"):
        done = run("secrets", command, "--database-url", url, env={ENV: ""})
        assert done.returncode == 1 and done.stdout == ""
        [line] = done.stderr.splitlines()
        assert line.startswith(f"agency-crm: error: no encryption key is configured: {ENV}")
        assert "agency-crm secrets generate-key" in line
        bare = run("secrets", command, "--database-url", empty_db_url)
        assert bare.returncode == 1
        assert "has no agency-crm schema" in bare.stderr and "agency-crm db upgrade" in bare.stderr
    broken = run("secrets", "check", "--database-url", url, env={ENV: "A:c2hvcnQ="})
    assert broken.returncode == 1
    assert "the key of entry 1 (A) is not the base64 of 32 bytes" in broken.stderr
    assert "c2hvcnQ" not in broken.stderr


# --- rotate ----------------------------------------------------------------------------------


def test_rotation_of_1000_configs_leaves_every_secret_readable_with_the_new_key_alone(
    committed: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, url = committed
    plain = insert_configs(conn, ring(A), 1000, deleted_every=50)
    configs = 1000 + 20
    secrets = len(plain)
    before = everything_but_secrets(conn)
    in_error = {k for k, v in before.items() if v["connection_status"] == "error"}
    assert len(in_error) == 143 and len(before) == configs

    done = run(
        "secrets", "rotate", "--batch-size", "100", "--database-url", url, env=keys_env(B, A)
    )
    assert done.returncode == 0, done.stderr
    progress = done.stderr.splitlines()
    assert len(progress) == 11  # 1020 configs, 100 a batch
    assert progress[0].startswith("batch 1: 100 config(s), ")
    assert progress[-1].startswith("batch 11: 20 config(s), ")
    assert sum(int(p.split(", ")[1].split()[0]) for p in progress) == secrets
    assert not [s for s in plain.values() if s in done.stdout + done.stderr]
    assert done.stdout.splitlines() == [
        f"re-encrypted {secrets} secret(s) of {configs} config(s) under key B; 0 secret(s) of 0"
        " config(s) were under it already; 0 secret(s) of 0 config(s) failed to decrypt",
        f"no secret is under A any more: remove it from {ENV}, everywhere agency-crm runs"
        " (then run `agency-crm secrets check`)",
    ]
    # Every secret, soft-deleted configs' too, reads with B alone; nothing else changed (a
    # config in error is still in error, with its last error).
    assert key_ids_in_use(conn) == {"B": secrets}
    assert secrets_of(conn, ring(B)) == plain
    assert everything_but_secrets(conn) == before
    check = run("secrets", "check", "--database-url", url, env=keys_env(B))
    assert check.returncode == 0, check.stdout
    assert f"checked {secrets} secret(s) of {configs} CRM config(s)" in check.stdout

    # Run again: nothing to do, and it says so.
    again = run("secrets", "rotate", "--json", "--database-url", url, env=keys_env(B, A))
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    report = json.loads(again.stdout)
    assert (report["reencrypted_secrets"], report["current_secrets"]) == (0, secrets)
    assert (report["current_configs"], report["batches"]) == (configs, 0)
    assert report["removable_key_ids"] == ["A"] and report["remaining_by_key"] == {"B": secrets}


def test_an_interrupted_rotation_carries_on_where_it_stopped(
    committed: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, url = committed
    plain = insert_configs(conn, ring(A), 250)
    keys = ring(B, A)

    class Stop(Exception):
        pass

    def stop_after_two(batch: secret_store.Batch) -> None:
        if batch.number == 2:
            raise Stop

    with psycopg.connect(url, autocommit=True) as other, pytest.raises(Stop):
        secret_store.rotate(other, keys, batch_size=100, on_batch=stop_after_two)
    # Two batches committed: 200 configs are under B, the other 50 still under A.
    usage = {u.key_id: u for u in secret_store.key_usage(conn)}
    assert (usage["B"].configs, usage["A"].configs) == (200, 50)
    assert usage["B"].secrets + usage["A"].secrets == len(plain)
    with psycopg.connect(url, autocommit=True) as other:
        report = secret_store.rotate(other, keys, batch_size=100)
    assert (report.reencrypted_configs, report.current_configs) == (50, 200)
    assert (report.reencrypted_secrets, report.current_secrets) == (
        usage["A"].secrets,
        usage["B"].secrets,
    )
    assert report.batches == 1 and report.removable == ["A"]
    assert secrets_of(conn, ring(B)) == plain


def test_a_secret_that_does_not_decrypt_is_reported_skipped_and_makes_exit_1(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make
) -> None:
    conn, url = committed
    plain = insert_configs(conn, ring(A), 30)
    lost = cmake.client()
    lost_config = cmake.crm_config(
        lost,
        crm_type="hubspot",
        api_key=None,
        oauth_access_token=ring(C).encrypt(
            "canary-c-token", client_id=lost["id"], column="oauth_access_token"
        ),
        oauth_refresh_token=ring(A).encrypt(
            "canary-a-refresh", client_id=lost["id"], column="oauth_refresh_token"
        ),
    )
    # The second run ends too, and reports the same secret again (5 batches of 7 configs
    # first, then the one config left to rotate).
    for batches in (5, 1):
        done = run(
            "secrets", "rotate", "--batch-size", "7", "--database-url", url, env=keys_env(B, A)
        )
        assert done.returncode == 1, done.stderr
        assert len(done.stderr.splitlines()) == batches
        lines = done.stdout.splitlines()
        assert lines[0] == (
            f"does not decrypt: client {lost['id']} config {lost_config['id']}"
            f" oauth_access_token (key C): crm.client_crm_configs.oauth_access_token of client"
            f" {lost['id']} is encrypted under key C, which {ENV} does not hold (it holds B, A)"
            f" (hint: Add key C back to {ENV} (after the new one), run `agency-crm secrets"
            " rotate`, then remove it.)"
        )
        assert lines[-3].endswith("1 secret(s) of 1 config(s) failed to decrypt")
        assert lines[-2] == (
            f"key C still holds 1 secret(s) of 1 config(s): keep it in {ENV} (it is not there now)"
        )
        assert lines[-1].startswith("no secret is under A any more")
        assert "canary" not in done.stdout + done.stderr
    # The refresh token of that config was re-encrypted; its access token left as it was.
    assert key_ids_in_use(conn) == {"B": len(plain) + 1, "C": 1}
    row = conn.execute(
        "SELECT oauth_refresh_token FROM crm.client_crm_configs WHERE id = %s",
        (lost_config["id"],),
    ).fetchone()
    assert row is not None
    assert (
        ring(B).decrypt(row[0], client_id=lost["id"], column="oauth_refresh_token")
        == "canary-a-refresh"
    )
    # With C back in the ring (after B), the rotation finishes, and C can go.
    fixed = run("secrets", "rotate", "--json", "--database-url", url, env=keys_env(B, A, C))
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    assert (report["reencrypted_secrets"], report["failed_secrets"]) == (1, 0)
    assert report["removable_key_ids"] == ["A", "C"]


@pytest.mark.parametrize("writer_key", ["A", "B"])
def test_rotation_waits_for_a_writer_of_a_config_and_keeps_what_it_wrote(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make, writer_key: str
) -> None:
    """Session 1 stores a refreshed OAuth token (as a runner still on the old ring "A", or one
    already on "B,A") and keeps its transaction open; the rotation, in a thread, blocks on the
    row lock; session 1 commits; the rotation finishes, and the stored token is session 1's,
    readable with B alone."""
    conn, url = committed
    client = cmake.client()
    old = ring(A)
    config = cmake.crm_config(
        client,
        crm_type="hubspot",
        api_key=None,
        oauth_access_token=old.encrypt(
            "old-access", client_id=client["id"], column="oauth_access_token"
        ),
        oauth_refresh_token=old.encrypt(
            "old-refresh", client_id=client["id"], column="oauth_refresh_token"
        ),
    )
    writer_ring = ring(A) if writer_key == "A" else ring(B, A)
    new_token = writer_ring.encrypt(
        "session-1-access", client_id=client["id"], column="oauth_access_token"
    )
    with psycopg.connect(url) as session_1, psycopg.connect(url, autocommit=True) as rotation:
        session_1.execute(
            "UPDATE crm.client_crm_configs SET oauth_access_token = %s WHERE id = %s",
            (new_token, config["id"]),
        )
        reports: list[secret_store.RotationReport] = []
        errors: list[BaseException] = []

        def rotate() -> None:
            try:
                reports.append(secret_store.rotate(rotation, ring(B, A)))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=rotate)
        thread.start()
        try:
            wait_until_blocked(url, rotation.info.backend_pid)
            assert not reports, "the rotation finished while the row was locked"
        finally:
            session_1.commit()
            thread.join(timeout=30)
    assert not thread.is_alive() and errors == []
    [report] = reports
    assert report.ok and report.removable == ["A"]
    stored = conn.execute(
        "SELECT oauth_access_token, oauth_refresh_token FROM crm.client_crm_configs WHERE id = %s",
        (config["id"],),
    ).fetchone()
    assert stored is not None
    access, refresh = stored
    new_ring = ring(B)
    assert new_ring.decrypt(access, client_id=client["id"], column="oauth_access_token") == (
        "session-1-access"
    )
    assert new_ring.decrypt(refresh, client_id=client["id"], column="oauth_refresh_token") == (
        "old-refresh"
    )
    if writer_key == "B":  # already under B: the rotation left session 1's value as it was
        assert access == new_token and report.reencrypted_secrets == 1
    else:
        assert access != new_token and report.reencrypted_secrets == 2


# --- set -------------------------------------------------------------------------------------


def test_set_stores_the_secret_from_stdin_encrypted_and_never_shows_it(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make
) -> None:
    conn, url = committed
    client = cmake.client()
    config = cmake.crm_config(client, crm_type="close", connection_status="error", last_error="401")
    secret = "close-canary-9f3a2b"
    done = run(
        "secrets", "set", "--client", str(client["id"]), "--column", "api_key",
        "--database-url", url, env=keys_env(B, A), input=f"{secret}\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"stored api_key of client {client['id']} (close config {config['id']}), encrypted under"
        " key B; connection status error -> pending\n"
    )
    for form in (secret, base64.b64encode(secret.encode()).decode()):
        assert form not in done.stdout + done.stderr
    row = conn.execute(
        "SELECT api_key, connection_status, last_error FROM crm.client_crm_configs WHERE id = %s",
        (config["id"],),
    ).fetchone()
    assert row is not None
    assert crypto.key_id_of(row[0]) == "B"
    assert ring(B).decrypt(row[0], client_id=client["id"], column="api_key") == secret
    # New credentials: the config in error is tried again.
    assert row[1:] == ("pending", None)


def test_set_prompts_without_echo_on_a_terminal(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make
) -> None:
    conn, url = committed
    client = cmake.client()
    config = cmake.crm_config(client, crm_type="hubspot", api_key=None)
    secret = "tty-canary-5e1d"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env = {**base, ENV: B, "TERM": "dumb"}
    args = [
        sys.executable, "-m", "agency_crm", "secrets", "set", "--client", str(client["id"]),
        "--column", "oauth_refresh_token", "--database-url", url,
    ]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child becomes the CLI
        os.execve(sys.executable, args, env)
    output = b""
    try:
        output += read_until(fd, b"(input hidden): ")
        os.write(fd, secret.encode() + b"\n")
        output += read_until(fd, None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "oauth_refresh_token (input hidden): " in text
    assert f"stored oauth_refresh_token of client {client['id']} (hubspot config" in text
    assert secret not in text
    [stored] = conn.execute(
        "SELECT oauth_refresh_token FROM crm.client_crm_configs WHERE id = %s", (config["id"],)
    ).fetchone() or [None]
    assert ring(B).decrypt(stored, client_id=client["id"], column="oauth_refresh_token") == secret


def read_until(fd: int, marker: bytes | None, timeout: float = 60) -> bytes:
    """What the terminal shows until ``marker`` (None: until the process exits)."""
    got = b""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in got:
        assert time.monotonic() < deadline, f"no {marker!r} on the terminal: {got!r}"
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        got += chunk
    return got


def test_set_refuses_clearly_and_stores_nothing(
    committed: tuple[psycopg.Connection[Any], str], cmake: Make
) -> None:
    conn, url = committed
    client = cmake.client()
    config = cmake.crm_config(client, crm_type="pipedrive")
    gone = cmake.client()
    cmake.crm_config(gone, deleted_at="2026-01-01T00:00:00Z")
    where = ["--database-url", url]

    def set_secret(client_id: Any, column: str, value: str, **env: str) -> Any:
        return run(
            "secrets", "set", "--client", str(client_id), "--column", column, *where,
            env={ENV: B, **env}, input=value,
        )  # fmt: skip

    def refused(done: Any, code: int = 1) -> str:
        assert done.returncode == code, done.stdout + done.stderr
        assert done.stdout == "" and "canary" not in done.stderr
        return str(done.stderr)

    assert "client " + str(gone["id"]) + " has no live CRM config" in refused(
        set_secret(gone["id"], "api_key", "canary-1")
    )
    assert f"client {uuid.UUID(int=7)} has no live CRM config" in refused(
        set_secret(uuid.UUID(int=7), "api_key", "canary-2")
    )
    unknown = refused(set_secret(client["id"], "password", "canary-3"), code=2)
    assert "'password' is not one of" in unknown and "api_key" in unknown
    assert "the secret read from stdin is empty" in refused(
        set_secret(client["id"], "api_key", " \n"), code=2
    )
    assert "more than one line" in refused(
        set_secret(client["id"], "api_key", "canary-4\ncanary-5\n"), code=2
    )
    no_key = refused(set_secret(client["id"], "api_key", "canary-6", **{ENV: ""}))
    assert f"no encryption key is configured: {ENV} is unset or empty" in no_key
    assert "'x' is not a uuid" in refused(set_secret("x", "api_key", "canary-7"), code=2)
    # An OAuth token on a Pipedrive config: the database refuses it, naming the column only.
    oauth = refused(set_secret(client["id"], "oauth_access_token", "canary-8"))
    assert "oauth_access_token" in oauth and "OAuth is for crm_type hubspot" in oauth
    [stored] = conn.execute(
        "SELECT api_key FROM crm.client_crm_configs WHERE id = %s", (config["id"],)
    ).fetchone() or [None]
    assert stored == config["api_key"]


# --- the docs --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"


def doc_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", path.read_text(), re.MULTILINE | re.DOTALL)


def rotation_transcript() -> dict[str, list[str]]:
    """The rotation example of docs/security.md: each `agency-crm` command and what it shows
    (its stderr, then its stdout, as a terminal shows them)."""
    [block] = [b for b in doc_blocks(SECURITY, "text") if "$ agency-crm secrets rotate" in b]
    shown: dict[str, list[str]] = {}
    command = None
    for line in block.splitlines():
        if line.startswith("$ "):
            command = line[2:] if line.startswith("$ agency-crm ") else None
            if command:
                shown[command] = []
        elif command:
            shown[command].append(line)
    return shown


def test_the_rotation_example_of_the_docs_is_what_the_commands_print(
    committed: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, url = committed
    old, new = crypto.generate_entry("k2026-11"), crypto.generate_entry("k2027-01")
    insert_configs(conn, ring(old), 7)
    insert_configs(conn, ring(new), 1)
    shown = rotation_transcript()
    assert list(shown) == ["agency-crm secrets rotate", "agency-crm secrets check"]
    rotate = run("secrets", "rotate", "--database-url", url, env=keys_env(new, old))
    assert rotate.returncode == 0, rotate.stderr
    assert (
        rotate.stderr.splitlines() + rotate.stdout.splitlines()
        == (shown["agency-crm secrets rotate"])
    )
    check = run("secrets", "check", "--database-url", url, env=keys_env(new))
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == shown["agency-crm secrets check"]


def documented_commands() -> list[str]:
    """Every `agency-crm secrets ...` command line of the README's, docs/security.md's and push.md's
    shell and text examples, without prompt, pipe, capture or comment."""
    found = []
    for path in (ROOT / "README.md", SECURITY, ROOT / "docs" / "push.md"):
        for lang in ("sh", "text"):
            for block in doc_blocks(path, lang):
                found += [
                    m.strip()
                    for m in re.findall(
                        r"(?:^|^\$ |\$\(|\| )(agency-crm secrets [^)#|\n]*)", block, re.MULTILINE
                    )
                ]
    return found


@pytest.mark.parametrize("line", documented_commands())
def test_each_documented_secrets_command_parses(line: str) -> None:
    """Its options exist and take the values shown (a <placeholder> stands for a uuid)."""
    from agency_crm.cli import secrets as secrets_cli

    words = shlex.split(re.sub(r"<[^>]*>", str(uuid.uuid4()), line))
    assert words[:2] == ["agency-crm", "secrets"]
    group: Any = typer.main.get_command(secrets_cli.app)
    command = group.commands[words[2]]
    command.make_context(words[2], words[3:])  # raises on an unknown option or a bad value


def test_the_docs_show_every_secrets_command() -> None:
    shown = {line.split()[2] for line in documented_commands()}
    assert shown == {"generate-key", "check", "rotate", "set"}


# --- as the roles run them -------------------------------------------------------------------


def test_app_code_may_set_a_secret_the_runner_may_check_and_only_the_owner_rotates(
    committed: tuple[psycopg.Connection[Any], str],
    cmake: Make,
    logins: dict[str, str],  # noqa: F811  (the fixture imported above)
) -> None:
    """docs/security.md: `secrets set` reads no secret back, so a crm_app login runs it;
    `check` needs to read every secret (crm_runner may); `rotate` writes every secret column,
    which only the owner may."""
    conn, url = committed
    client = cmake.client()
    config = cmake.crm_config(client, crm_type="pipedrive")
    app_url, runner_url = (login_url(url, logins[r]) for r in ("crm_app", "crm_runner"))

    stored = run(
        "secrets", "set", "--client", str(client["id"]), "--column", "api_key",
        "--database-url", app_url, env=keys_env(B, A), input="app-canary-key\n",
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    assert "encrypted under key B" in stored.stdout
    [envelope] = conn.execute(
        "SELECT api_key FROM crm.client_crm_configs WHERE id = %s", (config["id"],)
    ).fetchone() or [None]
    assert ring(B).decrypt(envelope, client_id=client["id"], column="api_key") == "app-canary-key"

    denied = run("secrets", "check", "--database-url", app_url, env=keys_env(B, A))
    assert denied.returncode == 1 and denied.stderr.startswith(
        "agency-crm: error: database error 42501: permission denied"
    )
    assert "run it as a crm_runner login or the schema owner" in denied.stderr
    checked = run("secrets", "check", "--database-url", runner_url, env=keys_env(B, A))
    assert checked.returncode == 0, checked.stderr + checked.stdout

    refused = run("secrets", "rotate", "--database-url", runner_url, env=keys_env(A, B))
    assert refused.returncode == 1 and "database error 42501" in refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(
        "(hint: This command reads and writes every secret: run it as the schema owner"
        " (docs/security.md).)"
    )
    assert key_ids_in_use(conn) == {"B": 1}  # the refused batch changed nothing
    assert run("secrets", "rotate", "--database-url", url, env=keys_env(A, B)).returncode == 0
    assert key_ids_in_use(conn) == {"A": 1}
