"""Run `agency-crm` as a user does: a real process, without the caller's database settings."""

from __future__ import annotations

import os
import subprocess
import sys


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without PG*, DATABASE_URL or AGENCY_CRM_DATABASE_URL, plus
    ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    base.pop("AGENCY_CRM_DATABASE_URL", None)
    return {**base, **(env or {})}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agency_crm ARGS``: no PG*, DATABASE_URL or AGENCY_CRM_DATABASE_URL from
    this process leaks in; ``env`` adds variables; ``input`` is its stdin (else none)."""
    return subprocess.run(
        [sys.executable, "-m", "agency_crm", *args],
        capture_output=True,
        text=True,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env=clean_env(env),
        timeout=timeout,
        check=False,
    )


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m agency_crm ARGS`` started, not waited for (stdout and stderr piped, no
    stdin): for a command the test talks to while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "agency_crm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=clean_env(env),
    )


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``agency-crm ARGS`` in this process (typer's CliRunner): for what needs no process of
    its own, such as help and option parsing; a process start costs about half a second."""
    from typer.testing import CliRunner

    from agency_crm.cli import app

    result = CliRunner().invoke(app, list(args), env=env, prog_name="agency-crm")
    return subprocess.CompletedProcess(
        ["agency-crm", *args], result.exit_code, result.stdout, result.stderr
    )
