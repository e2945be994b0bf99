"""`agency-crm api-token create / list / revoke`: the HTTP API's bearer tokens, created, listed
and revoked as an operator does, against a committed database."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import psycopg

from tests.cli.conftest import Cli, one_line
from tests.helpers.fixtures import Make

TOKEN = re.compile(r"acrm_[A-Za-z0-9_-]{43}")


def stored(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT id, client_id, name, token_hash, token_prefix, revoked_at"
        " FROM crm_private.api_tokens ORDER BY created_at"
    ).fetchall()


def test_create_prints_the_token_alone_and_stores_only_its_digest(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make
) -> None:
    client = cmake.client(name="Acme Tokens")
    done = cli("api-token", "create", "--client", "Acme Tokens", "--name", "dashboard")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert TOKEN.fullmatch(token) and done.stdout == token + "\n"
    [(token_id, client_id, name, digest, prefix, revoked)] = stored(conn)
    assert (client_id, name, revoked) == (client["id"], "dashboard", None)
    assert bytes(digest) == hashlib.sha256(token.encode()).digest()
    assert token.startswith(prefix) and len(prefix) == len("acrm_") + 4
    note = done.stderr.strip()
    assert note == (
        f"API token {token_id} (dashboard) for client Acme Tokens ({client['id']}): shown this "
        f"once, only its digest is stored; revoke it with `agency-crm api-token revoke "
        f"{token_id}`"
    )
    assert token not in note


def test_create_json_is_one_object_and_an_agency_token_names_no_client(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    done = cli("api-token", "create", "--agency", "--name", "back office", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert set(created) == {"id", "client_id", "name", "token", "created_at"}
    assert created["client_id"] is None and created["name"] == "back office"
    assert TOKEN.fullmatch(created["token"])
    [(token_id, *_)] = stored(conn)
    assert created["id"] == str(token_id)
    assert "for the agency (any client)" in done.stderr


def test_create_names_its_maker_when_no_name_is_given(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    done = cli("api-token", "create", "--agency")
    assert done.returncode == 0, done.stderr
    [(_, _, name, *_)] = stored(conn)
    assert re.fullmatch(r".+@.+", name)


def test_create_refuses_neither_or_both_scopes_a_bad_name_and_an_unknown_client(
    cli: Cli, conn: psycopg.Connection[Any], cmake: Make
) -> None:
    client = cmake.client()
    assert cli("api-token", "create").returncode == 2
    both = cli("api-token", "create", "--agency", "--client", str(client["id"]))
    assert both.returncode == 2 and "--client CLIENT or --agency" in both.stderr
    unknown = cli("api-token", "create", "--client", "Nobody Inc")
    assert "no client has the id or name 'Nobody Inc'" in one_line(unknown, 4)
    long_name = cli("api-token", "create", "--agency", "--name", "x" * 201)
    assert "name must be 1 to 200 characters" in one_line(long_name, 2)
    assert stored(conn) == []


def test_list_shows_prefixes_never_tokens_and_revoke_takes_one_out(cli: Cli, cmake: Make) -> None:
    acme = cmake.client(name="Acme List")
    beta = cmake.client(name="Beta List")
    tokens = {}
    for client, name in ((acme, "a1"), (acme, "a2"), (beta, "b1")):
        done = cli("api-token", "create", "--client", str(client["id"]), "--name", name)
        assert done.returncode == 0, done.stderr
        tokens[name] = done.stdout.strip()
    agency = cli("api-token", "create", "--agency", "--name", "all")
    tokens["all"] = agency.stdout.strip()

    listed = cli("api-token", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["id", "client", "name", "token", "created", "last", "used"]
    assert len(rows) == 4
    for name, token in tokens.items():
        assert token not in listed.stdout
        assert any(f"{token[:9]}…" in row and f" {name} " in row for row in rows), name
    assert any("(agency)" in row for row in rows)

    as_json = json.loads(cli("api-token", "list", "--client", "Acme List", "--json").stdout)
    assert [t["name"] for t in as_json] == ["a1", "a2"]
    assert set(as_json[0]) == {
        "id", "client_id", "client_name", "name", "token_prefix", "created_at", "last_used_at",
        "revoked_at",
    }  # fmt: skip
    assert all(t["client_name"] == "Acme List" for t in as_json)

    revoked = cli("api-token", "revoke", as_json[0]["id"], "--json")
    assert revoked.returncode == 0, revoked.stderr
    answer = json.loads(revoked.stdout)
    assert answer["id"] == as_json[0]["id"] and answer["revoked_at"]
    again = cli("api-token", "revoke", as_json[0]["id"])
    assert again.returncode == 0 and again.stdout.startswith(f"revoked API token {answer['id']}")
    live = json.loads(cli("api-token", "list", "--client", "Acme List", "--json").stdout)
    assert [t["name"] for t in live] == ["a2"]
    everything = cli("api-token", "list", "--client", "Acme List", "--all")
    assert everything.stdout.splitlines()[0].split()[-1] == "revoked"
    assert len(everything.stdout.splitlines()) == 3


def test_revoke_of_no_such_token_is_exit_4_and_a_non_uuid_exit_2(cli: Cli) -> None:
    missing = cli("api-token", "revoke", "00000000-0000-0000-0000-000000000000")
    assert "API token 00000000-0000-0000-0000-000000000000 does not exist" in one_line(missing, 4)
    assert cli("api-token", "revoke", "acrm_abcd").returncode == 2


def test_an_empty_list_says_how_to_see_revoked_ones(cli: Cli) -> None:
    done = cli("api-token", "list")
    assert done.stdout.strip() == "no API tokens (--all shows revoked ones)"
    assert json.loads(cli("api-token", "list", "--json").stdout) == []
