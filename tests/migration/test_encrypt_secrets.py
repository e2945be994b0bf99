"""Upgrading a database that holds CRM secrets in plaintext to 0014_encrypted_secrets.sql: with a
key, `db upgrade` encrypts them in the same transaction (and nothing else about the configs
changes); without one, it refuses and applies nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm import crypto, schema
from tests.migration.test_upgrade import (
    REPO_SQL,
    fetch,
    find_releases,
    release_source,
    require_git_history,
)

STEP = "0013_checked_vocabularies.sql"
COLUMNS = crypto.SECRET_COLUMNS["client_crm_configs"]
# The configs a database at 0013 holds: secrets in plaintext, one config in error, one
# soft-deleted, one without secrets.
CONFIGS: list[dict[str, Any]] = [
    {"crm_type": "pipedrive", "api_key": "pd-plain-1", "connection_status": "connected"},
    {
        "crm_type": "hubspot",
        "oauth_access_token": "hs-access-plain-2",
        "oauth_refresh_token": "hs-refresh-plain-2",
        "connection_status": "error",
        "last_error": "401 Unauthorized: the refresh token was revoked",
    },
    {"crm_type": "close", "api_key": "close-plain-3", "deleted_at": "2026-01-01T00:00:00Z"},
    {"crm_type": "hubspot", "connection_status": "pending"},
]
HOLDING_PLAINTEXT = 3


def at_0013(url: str, how: str, tmp_path: Path) -> schema.SqlSource:
    """Bring ``url`` to 0013 and write CONFIGS in plaintext; return what it was upgraded with.

    ``release``: by the release that had 0013 as its newest migration (its functions and
    triggers, from git history), the configs written through its triggers, as app code did.
    ``current``: today's migrations up to 0013 and today's code, the configs written with
    triggers off (today's validate trigger refuses a plaintext), as a restore would.
    """
    current = schema.load_source(REPO_SQL)
    if how == "release":
        require_git_history()
        releases, without = find_releases([m.name for m in current.migrations])
        assert STEP in releases, without
        source = release_source(releases[STEP], current, tmp_path)
    else:
        source = current
    with psycopg.connect(url) as conn:
        result = schema.upgrade(conn, source=source, target=STEP)
        assert result.applied[-1] == STEP
        with conn.transaction():
            if how == "current":
                conn.execute("SET LOCAL session_replication_role = replica")
            for values in CONFIGS:
                client = conn.execute(
                    "INSERT INTO crm.clients (name) VALUES (%s) RETURNING id",
                    (f"Client {uuid.uuid4().hex[:6]}",),
                ).fetchone()
                assert client is not None
                row = {"client_id": client[0], **values}
                conn.execute(
                    f"INSERT INTO crm.client_crm_configs ({', '.join(row)})"  # test data only
                    f" VALUES ({', '.join(['%s'] * len(row))})",
                    list(row.values()),
                )
    return source


def configs(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM crm.client_crm_configs ORDER BY crm_type, deleted_at NULLS FIRST,"
            " connection_status"
        ).fetchall()


def by_crm(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["crm_type"], r["connection_status"]): r for r in rows}


@pytest.mark.parametrize("how", ["release", "current"])
def test_upgrading_encrypts_the_plaintext_secrets_and_keeps_a_config_in_error_in_error(
    empty_db_url: str, tmp_path: Path, how: str
) -> None:
    at_0013(empty_db_url, how, tmp_path)
    before = configs(empty_db_url)
    said: list[str] = []
    with psycopg.connect(empty_db_url) as conn:
        result = schema.upgrade(conn, progress=said.append)
        assert result.applied[0] == "0014_encrypted_secrets.sql" and result.code_applied
        assert schema.status(conn).up_to_date
    assert f"encrypted the secrets of {HOLDING_PLAINTEXT} CRM config(s) under key test" in said
    assert said.index(next(s for s in said if s.startswith("encrypted"))) < said.index(
        next(s for s in said if "0014" in s)
    )
    after = configs(empty_db_url)
    keys = crypto.KeyRing.from_environment()
    for was, now in zip(before, after, strict=True):
        assert was["id"] == now["id"]
        for column in COLUMNS:
            if was[column] is None:
                assert now[column] is None
                continue
            assert crypto.is_envelope(now[column]) and crypto.key_id_of(now[column]) == "test"
            assert was[column] not in now[column]
            assert (
                keys.decrypt(now[column], client_id=now["client_id"], column=column)
                == (was[column])
            )
        # Only how the secrets are stored changed (updated_at moves with the write).
        unchanged = set(was) - {*COLUMNS, "updated_at"}
        assert {k: now[k] for k in unchanged} == {k: was[k] for k in unchanged}
    in_error = by_crm(after)[("hubspot", "error")]
    assert in_error["last_error"] == "401 Unauthorized: the refresh token was revoked"
    # The config in error is a HubSpot one with both tokens: its credentials did not change,
    # so it was not set back to pending.
    assert in_error["oauth_refresh_token"] is not None


def test_without_a_key_the_upgrade_is_refused_and_nothing_is_applied(
    empty_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = at_0013(empty_db_url, "current", tmp_path)
    before = configs(empty_db_url)
    code = fetch(empty_db_url, "SELECT checksum FROM crm.schema_code")
    monkeypatch.delenv(crypto.ENV_VAR)
    with psycopg.connect(empty_db_url) as conn, pytest.raises(schema.SchemaError) as info:
        schema.upgrade(conn)
    error = info.value
    assert error.message == (
        "migration 0014_encrypted_secrets.sql encrypts the CRM secrets stored in plaintext"
        f" ({HOLDING_PLAINTEXT} CRM config(s) hold some), and no encryption key is configured"
        f" ({crypto.ENV_VAR} is unset or empty)"
    )
    assert error.hint is not None and error.hint.startswith("Nothing was applied.")
    assert "agency-crm secrets generate-key" in error.hint
    for config in CONFIGS:
        for column in COLUMNS:
            if config.get(column):
                assert config[column] not in error.one_line()
    # Nothing applied: 0014 is not recorded, the code is 0013's, the plaintext is intact.
    names = [r[0] for r in fetch(empty_db_url, "SELECT name FROM crm.schema_migrations")]
    assert names[-1] == STEP and "0014_encrypted_secrets.sql" not in names
    assert fetch(empty_db_url, "SELECT checksum FROM crm.schema_code") == code
    assert code == [(source.code_checksum,)]
    assert configs(empty_db_url) == before
    assert fetch(
        empty_db_url,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'client_crm_configs_api_key_check'",
    ) == [(0,)]
    # With a key, the same upgrade goes through.
    monkeypatch.setenv(crypto.ENV_VAR, crypto.generate_entry("late"))
    with psycopg.connect(empty_db_url) as conn:
        assert schema.upgrade(conn).applied[0] == "0014_encrypted_secrets.sql"
    assert {crypto.key_id_of(r[c]) for r in configs(empty_db_url) for c in COLUMNS if r[c]} == {
        "late"
    }


def test_a_fresh_install_needs_no_key(empty_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(crypto.ENV_VAR)
    with psycopg.connect(empty_db_url) as conn:
        assert "0014_encrypted_secrets.sql" in schema.upgrade(conn).applied


def test_only_the_plaintext_secrets_are_encrypted_whatever_they_look_like(
    empty_db_url: str, tmp_path: Path
) -> None:
    """A plaintext that merely starts like an envelope is encrypted too (not left for the
    CHECK to refuse), and a secret already encrypted (a HubSpot token refreshed by a newer
    runner before the upgrade) is kept as it is beside a plaintext one."""
    at_0013(empty_db_url, "current", tmp_path)
    keys = crypto.KeyRing.from_environment()
    odd = "acrm:v1:not-an-envelope"
    with psycopg.connect(empty_db_url) as conn:
        hubspot = by_crm(configs(empty_db_url))[("hubspot", "error")]
        sealed = keys.encrypt(
            "hs-access-refreshed", client_id=hubspot["client_id"], column="oauth_access_token"
        )
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")
            conn.execute(
                "UPDATE crm.client_crm_configs SET api_key = %s WHERE crm_type = 'pipedrive'",
                (odd,),
            )
            conn.execute(
                "UPDATE crm.client_crm_configs SET oauth_access_token = %s WHERE id = %s",
                (sealed, hubspot["id"]),
            )
        said: list[str] = []
        schema.upgrade(conn, progress=said.append)
    assert f"encrypted the secrets of {HOLDING_PLAINTEXT} CRM config(s) under key test" in said
    rows = by_crm(configs(empty_db_url))
    pipedrive = rows[("pipedrive", "connected")]
    assert crypto.is_envelope(pipedrive["api_key"])
    assert keys.decrypt(
        pipedrive["api_key"], client_id=pipedrive["client_id"], column="api_key"
    ) == (odd)
    hubspot = rows[("hubspot", "error")]
    assert hubspot["oauth_access_token"] == sealed
    assert (
        keys.decrypt(
            hubspot["oauth_refresh_token"],
            client_id=hubspot["client_id"],
            column="oauth_refresh_token",
        )
        == "hs-refresh-plain-2"
    )
