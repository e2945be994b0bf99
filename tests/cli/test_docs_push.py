"""docs/push.md stays true: each `agency-crm crm|push|api-token ...` line of it and of the
README parses (its options exist and take the values shown: test_secrets.py does the same for
the secrets commands, with the same reading of the docs), and its path "from nothing to a
meeting in the CRM" runs as written against the sandbox and ends with the meeting's deal in
the fake CRM."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import typer
from typer._click.core import Context
from typer.core import TyperGroup

from agency_crm.dev.generate import find_pg_tool
from tests.cli.conftest import Cli
from tests.cli.test_secrets import ROOT, doc_blocks
from tests.helpers.cli import clean_env
from tests.helpers.fixtures import TLS

PUSH_MD = ROOT / "docs" / "push.md"
GROUPS = ("crm", "push", "api-token")
DOCUMENTED_PORTS = {"hubspot": 8701, "pipedrive": 8702, "close": 8703}


def shell_lines(block: str) -> list[str]:
    """The block's lines, a backslash continuation joined to its line."""
    return block.replace("\\\n", " ").splitlines()


def documented_commands() -> list[str]:
    """Every `agency-crm crm|push|api-token ...` command line of docs/push.md's and the README's
    shell examples, without prompt, pipe, capture, cron schedule or comment."""
    found = []
    pattern = re.compile(rf"(?:^|\$ |\$\(|\| |\* )(agency-crm (?:{'|'.join(GROUPS)}) [^)#|\n]*)")
    for path in (ROOT / "README.md", PUSH_MD):
        for block in doc_blocks(path, "sh"):
            for line in shell_lines(block):
                found += [m.strip() for m in pattern.findall(line)]
    return found


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command a command line names (through the lazily loaded groups), and its args."""
    from agency_crm.cli import app

    command: Any = typer.main.get_command(app)
    ctx = Context(command, info_name="agency-crm")
    rest = words[1:]
    while isinstance(command, TyperGroup) and rest:
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {words}"
        ctx = Context(sub, info_name=rest[0], parent=ctx)
        command, rest = sub, rest[1:]
    return command, rest


@pytest.mark.parametrize("line", documented_commands())
def test_each_documented_command_parses(line: str) -> None:
    """Its options exist and take the values shown (a <placeholder> stands for a uuid)."""
    words = shlex.split(re.sub(r"<[^>]*>", str(uuid.uuid4()), line))
    command, args = resolve(words)
    command.make_context(words[-1], args)  # raises on an unknown option or a bad value


def test_push_md_shows_every_crm_command() -> None:
    from agency_crm.cli import crm

    shown = {" ".join(line.split()[1:4]) for line in documented_commands()}
    group: Any = typer.main.get_command(crm.app)
    for name, command in group.commands.items():
        subs = getattr(command, "commands", {None: None})
        for sub in subs:
            wanted = f"crm {name}" + (f" {sub}" if sub else "")
            assert any(s.startswith(wanted) for s in shown), wanted
    assert any(s.startswith("push backfill") for s in shown)


# --- the path from nothing to a meeting in the CRM -------------------------------------------


def the_path() -> list[str]:
    """The lines of the block under "From nothing to a meeting in the CRM"."""
    text = PUSH_MD.read_text()
    section = text.split("### From nothing to a meeting in the CRM", 1)[1]
    block = re.search(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    assert block, "docs/push.md lost its path from nothing to a meeting in the CRM"
    return [line for line in shell_lines(block.group(1)) if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def test_the_path_from_nothing_to_a_meeting_in_the_crm_works_as_written(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """Each line runs in bash as a user types it, with three changes: DATABASE_URL is the
    test's database, the sandbox binds free ports (and the lines name them), and `export`s
    carry over to the next lines as they do in a shell."""
    ports = {vendor: free_port() for vendor in DOCUMENTED_PORTS}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "agency-crm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m agency_crm "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    psql = Path(find_pg_tool("psql", conn.info.server_version)).parent
    env = clean_env({"PATH": f"{bin_dir}:{psql}:{os.environ.get('PATH', '')}"})
    env.pop("AGENCY_CRM_SECRET_KEYS", None)  # the path makes its own
    background: list[subprocess.Popen[bytes]] = []
    logs = ""
    lines = the_path()
    assert any("crm connect" in line for line in lines)
    assert not any("secrets set" in line or "UPDATE crm." in line for line in lines)
    try:
        for line in lines:
            for vendor, documented in DOCUMENTED_PORTS.items():
                line = line.replace(f":{documented}", f":{ports[vendor]}")
            command = line.split("#", 1)[0].strip() if " #" in line else line.strip()
            exported = re.fullmatch(r"export (\w+)=(.*)", command)
            if exported:
                name = exported.group(1)
                if name == "DATABASE_URL":
                    env[name] = cli.url
                    continue
                done = subprocess.run(
                    ["bash", "-c", f'{command}; printf %s "${name}"'], env=env,
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert done.returncode == 0 and done.stdout, (line, done.stderr)
                env[name] = done.stdout
                continue
            if command.endswith("&"):
                command = command[:-1].strip()
                assert command == "agency-crm sandbox", command
                command += "".join(f" --{v}-port {p}" for v, p in ports.items())
                background.append(
                    subprocess.Popen(
                        ["bash", "-c", f"exec {command}"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
                for port in ports.values():
                    wait_for(port)
                continue
            done = subprocess.run(
                ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=180,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            if "crm logs" in command:
                logs = done.stdout
        held = httpx.get(
            f"http://127.0.0.1:{ports['pipedrive']}/_sandbox/state",
            params={"token": "sbx_acme"},
            timeout=10,
            verify=TLS,
        ).json()
    finally:
        for process in background:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
    [meeting] = conn.execute(
        "SELECT m.id FROM crm.meetings AS m JOIN crm.clients AS c ON c.id = m.client_id"
        " WHERE c.name = 'Acme'"
    ).fetchall()
    [deal] = held["deals"]
    assert f"acrm-meeting-{meeting[0]}" in json.dumps(deal)
    assert [p["name"] for p in held["persons"]] == ["Ada Lovelace"]
    assert [o["name"] for o in held["organizations"]] == ["Analytical Engines"]
    assert "get_me" in logs and "create_deal" in logs
