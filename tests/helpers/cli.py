"""Run `agency-crm` as a user does: a real process, without the caller's database settings."""

from __future__ import annotations

import os
import subprocess
import sys


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m agency_crm ARGS``: no PG*, DATABASE_URL or AGENCY_CRM_DATABASE_URL from
    this process leaks in; ``env`` adds variables; ``input`` is its stdin (else none)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    base.pop("AGENCY_CRM_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "agency_crm", *args],
        capture_output=True,
        text=True,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env={**base, **(env or {})},
        timeout=timeout,
        check=False,
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
