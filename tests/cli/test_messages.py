"""What a user reads in empty and wrong states, and in --help: one line that names the real
cause and what to do, exit codes scripts can branch on, help without type noise."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from agency_crm import db, schema
from tests.helpers.cli import invoke, run
from tests.helpers.fixtures import Make

COMMANDS = [
    ("db", "upgrade"),
    ("db", "status"),
    ("push", "drain"),
    ("push", "status"),
    ("push", "retry"),
    ("push", "logs"),
    ("push", "check"),
    ("push", "backfill"),
    ("crm", "connect", "hubspot"),
    ("crm", "connect", "pipedrive"),
    ("crm", "connect", "close"),
    ("crm", "config", "show"),
    ("crm", "config", "set"),
    ("crm", "test"),
    ("crm", "pipelines"),
    ("crm", "stages"),
    ("crm", "users"),
    ("crm", "logs"),
    ("crm", "disconnect"),
    ("api-token", "create"),
    ("api-token", "list"),
    ("api-token", "revoke"),
    ("sandbox",),
    ("report",),
]
# Commands acting for one client: a --client value is given where one is needed.
CLIENT = ("--client", "Acme")


def url_of(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return conninfo.make_conninfo(
        host=info.host, port=info.port, user=info.user, dbname=info.dbname
    )


def one_error_line(done: Any) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("agency-crm: error: ")
    return str(lines[0])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_values_not_types_lists_choices_and_gives_examples(
    command: tuple[str, ...],
) -> None:
    done = invoke(*command, "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    noise = re.findall(r"<(?:bool|str|int|float|list\[[a-z]+\])[^>]*>|\[\d+<=x", done.stdout)
    assert noise == [], done.stdout
    assert "Examples:" in done.stdout and "$ agency-crm " in done.stdout
    # Every example names this command and only options it has.
    examples = [line.split("$ ", 1)[1] for line in done.stdout.splitlines() if "$ " in line]
    options = set(re.findall(r"(--[a-z][a-z-]+)", done.stdout.split("Examples:")[0]))
    for example in examples:
        words = [w for w in example.split("#")[0].split() if not re.match(r"[A-Z_]+=", w)]
        assert words[: 1 + len(command)] == ["agency-crm", *command], example
        assert set(re.findall(r"(--[a-z][a-z-]+)", example.split("#")[0])) <= options, example


def test_option_choices_are_listed_and_checked() -> None:
    help_text = invoke("push", "logs", "--help", env={"COLUMNS": "200"}).stdout
    assert "[success|failed|skipped]" in help_text
    drain_help = invoke("push", "drain", "--help", env={"COLUMNS": "200"}).stdout
    assert "[auto|bar|log|none]" in drain_help
    bogus = invoke("push", "logs", "--status", "bogus", "--database-url", "x")
    assert bogus.returncode == 2 and "bogus" in bogus.stderr
    assert invoke("push", "drain", "--progress", "fancy", "--database-url", "x").returncode == 2
    limit = invoke("push", "logs", "--limit", "0", "--database-url", "x")
    assert limit.returncode == 2 and "between 1 and 10000" in limit.stderr
    done = invoke("push", "retry", "--status", "done", "--database-url", "x")
    assert done.returncode == 2


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c[0] == "push" and c[1] != "backfill"], ids=" ".join
)
def test_push_commands_on_a_database_without_the_schema_say_to_upgrade(
    empty_db_url: str, command: tuple[str, ...]
) -> None:
    line = one_error_line(run(*command, "--database-url", empty_db_url))
    assert "has no agency-crm schema" in line
    assert "agency-crm db upgrade" in line
    assert "3F000" not in line and "42P01" not in line


@pytest.mark.parametrize(
    "command",
    [
        ("crm", "config", "show", *CLIENT),
        ("crm", "disconnect", *CLIENT),
        ("push", "backfill", *CLIENT),
        ("api-token", "list"),
        ("api-token", "create", "--agency"),
    ],
    ids=" ".join,
)
def test_crm_and_token_commands_on_a_database_without_the_schema_say_to_upgrade(
    empty_db_url: str, command: tuple[str, ...]
) -> None:
    line = one_error_line(run(*command, "--database-url", empty_db_url))
    assert "has no agency-crm schema" in line
    assert "agency-crm db upgrade" in line


def test_the_crm_groups_help_names_the_exit_codes() -> None:
    done = invoke("crm", "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "Exit codes: 0 done; 1 failed" in text
    assert "4 no such client, config or pipeline; 5 not now" in text


def test_push_commands_on_an_outdated_schema_say_to_upgrade(empty_db_url: str) -> None:
    names = list(schema.migration_names())
    with psycopg.connect(empty_db_url) as conn:
        schema.upgrade(conn, target=names[-2])
    line = one_error_line(run("push", "status", "--database-url", empty_db_url))
    assert "1 migration(s) pending" in line and "agency-crm db upgrade" in line


def test_empty_logs_and_checks_say_so_and_json_is_an_empty_list(
    fresh_db: psycopg.Connection[Any],
) -> None:
    url = url_of(fresh_db)
    logs = invoke("push", "logs", "--database-url", url)
    assert (logs.returncode, logs.stdout.strip()) == (0, "no CRM calls logged")
    filtered = invoke("push", "logs", "--status", "failed", "--database-url", url)
    assert filtered.stdout.strip() == "no CRM calls logged that match"
    assert json.loads(invoke("push", "logs", "--json", "--database-url", url).stdout) == []
    check = invoke("push", "check", "--database-url", url)
    assert (check.returncode, check.stdout.strip()) == (0, "no CRM configs")
    assert json.loads(invoke("push", "check", "--json", "--database-url", url).stdout) == []
    status = invoke("push", "status", "--json", "--database-url", url)
    assert json.loads(status.stdout) == []


def test_log_lines_name_checks_and_expected_answers_plainly(
    fresh_db: psycopg.Connection[Any],
) -> None:
    make = Make(fresh_db)
    client = make.client()
    make.push_log(client, operation="get_pipelines", http_status=200, duration_ms=12)
    make.push_log(
        client,
        push_id=7,
        operation="find_contact",
        http_status=404,
        error_code="not_found",
        duration_ms=3,
    )
    make.push_log(
        client,
        push_id=8,
        operation="create_deal",
        status="failed",
        http_status=400,
        error_code="bad_request",
        error_message="stage_id is invalid",
        duration_ms=5,
    )
    fresh_db.commit()
    lines = invoke("push", "logs", "--database-url", url_of(fresh_db)).stdout.splitlines()
    assert len(lines) == 3, lines
    by_op = {line.split()[2 if " check " in line else 3]: line for line in lines}
    assert " check get_pipelines success 200 12 ms" in by_op["get_pipelines"]
    assert "push None" not in "\n".join(lines)
    assert by_op["find_contact"].endswith("push 7 find_contact success 404 not found 3 ms")
    assert by_op["create_deal"].endswith(
        "push 8 create_deal failed 400 bad request: stage_id is invalid 5 ms"
    )


def test_connection_failures_name_the_real_cause(empty_db_url: str) -> None:
    params = conninfo.conninfo_to_dict(empty_db_url)
    wrong_db = conninfo.make_conninfo(**{**params, "dbname": "no_such_database"})  # type: ignore[arg-type]
    line = one_error_line(run("db", "status", "--database-url", wrong_db))
    assert 'database "no_such_database" does not exist' in line
    assert "Create the database or fix its name" in line and "--database-url" not in line
    wrong_role = conninfo.make_conninfo(**{**params, "user": "no_such_role"})  # type: ignore[arg-type]
    line = one_error_line(run("db", "status", "--database-url", wrong_role))
    assert "no_such_role" in line and "role that exists" in line
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    refused = f"postgresql://postgres@127.0.0.1:{closed_port}/x"
    line = one_error_line(run("push", "status", "--database-url", refused))
    assert (
        f"Is PostgreSQL running and accepting connections at postgres@127.0.0.1:{closed_port}/x"
        in line
    )
    nothing = one_error_line(
        run("db", "status", env={"PGHOST": "127.0.0.1", "PGPORT": str(closed_port)})
    )
    assert "No database was named: pass --database-url" in nothing


def test_the_sandbox_on_a_busy_port_names_the_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = one_error_line(
            run(
                "sandbox", "--hubspot-port", "0", "--pipedrive-port", str(port), "--close-port", "0"
            )
        )
    assert f"cannot bind pipedrive to 127.0.0.1:{port}" in line
    assert "in use" in line.lower()


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        (
            'connection failed: FATAL:  password authentication failed for user "app"',
            "Check the user name and password",
        ),
        ("fe_sendauth: no password supplied", "Check the user name and password"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.9"', "pg_hba.conf"),
        ("timeout expired", "Nothing answered in time: is app@db:5432/agency reachable"),
    ],
)
def test_a_failed_connection_is_explained_by_its_cause(reason: str, hint: str) -> None:
    params = {"user": "app", "host": "db", "port": "5432", "dbname": "agency"}
    assert hint in db.connection_hint(reason, params, given=True)
    # The URL was given: never tell the user to pass one.
    assert "--database-url" not in db.connection_hint(reason, params, given=True)
