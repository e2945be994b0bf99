"""``agency-crm serve`` as a user runs it: a process that checks what requests will need,
serves the API, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any

import httpx
import psycopg
from psycopg import conninfo, sql

from agency_crm import crypto
from tests.api.conftest import Api
from tests.helpers.cli import invoke, run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def as_login(url: str, user: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["user"] = user
    params.pop("password", None)
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def test_help_shows_the_options_their_variables_and_examples() -> None:
    done = invoke("serve", "--help", env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    for text in (
        "--host",
        "--port",
        "--allow-api-base-url",
        "--database-url",
        "AGENCY_CRM_API_HOST",
        "AGENCY_CRM_API_PORT",
        "AGENCY_CRM_ALLOW_API_BASE_URL",
        "GRANT crm_api TO <login>",
        "$ agency-crm serve --host 0.0.0.0 --port 8080",
    ):
        assert text in done.stdout, text


def test_serve_help_loads_neither_fastapi_nor_uvicorn() -> None:
    from tests.test_layout import loaded_modules

    _, loaded = loaded_modules("serve", "--help")
    assert "agency_crm.cli.serve" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("fastapi", "uvicorn", "starlette")] == []


def test_a_login_that_may_not_act_as_crm_api_is_told_the_grant(
    api_db: str, seed: psycopg.Connection[Any]
) -> None:
    login = f"serve_{uuid.uuid4().hex[:8]}"
    seed.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE crm_analyst").format(sql.Identifier(login)))
    try:
        done = run("serve", "--port", str(free_port()), "--database-url", as_login(api_db, login))
    finally:
        seed.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert f"GRANT crm_api TO {login};" in line, line


def test_without_a_key_ring_it_does_not_start(api_db: str) -> None:
    done = run("serve", "--database-url", api_db, env={crypto.ENV_VAR: ""})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert crypto.ENV_VAR in line and "generate-key" in line, line


def test_it_serves_the_api_and_stops_on_sigterm(api: Api, api_db: str) -> None:
    client = api.make().client()
    token = api.token(client)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env.pop("AGENCY_CRM_DATABASE_URL", None)
    env.update(AGENCY_CRM_API_PORT=str(port), AGENCY_CRM_DATABASE_URL=api_db)
    process = subprocess.Popen(
        [sys.executable, "-m", "agency_crm", "serve"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()
            try:
                if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "agency-crm serve did not answer in 30 s"
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}"}
        meetings = httpx.get(f"{base}/clients/{client['id']}/meetings", headers=headers)
        assert meetings.status_code == 200, meetings.text
        assert meetings.json()["items"] == []
        callback = httpx.get(f"{base}/crm/callback/hubspot?state=s3cr3t-state&code=c0de")
        assert callback.status_code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    # The note about HubSpot, uvicorn's lines, and one access line per request, without
    # the query string (the callback's holds the code and the state).
    assert "HubSpot OAuth is not configured" in err
    assert f"GET /api/v1/clients/{client['id']}/meetings 200" in err, err
    assert "GET /api/v1/crm/callback/hubspot 400" in err, err
    assert "s3cr3t-state" not in err + out and "c0de" not in err + out
