"""``agency-crm sandbox``: the three fake CRMs from the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

from agency_crm.cli.sandbox import app


def test_runs_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [
        sys.executable,
        "-m",
        "agency_crm",
        "sandbox",
        "--hubspot-port",
        "0",
        "--pipedrive-port",
        "0",
        "--close-port",
        "0",
        "--rate-limit",
        "2/1",
        "--latency-ms",
        "1",
    ]
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C"):
                break
        urls = {parts[0]: parts[1] for parts in (ln.split() for ln in lines[:3])}
        assert set(urls) == {"hubspot", "pipedrive", "close"}, lines
        assert "sbx_" in lines[3] and "/_sandbox/accounts" in lines[3]
        with httpx.Client(base_url=urls["pipedrive"], headers={"x-api-token": "sbx_cli"}) as c:
            first = c.get("/v1/users/me")
            assert first.status_code == 200
            assert first.headers["x-ratelimit-limit"] == "2"
            assert [c.get("/v1/users/me").status_code for _ in range(2)] == [200, 429]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_bad_rate_limit_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["--rate-limit", "lots", "--hubspot-port", "0"])
    assert result.exit_code == 2
    assert "N/SECONDS" in result.output


def test_help_lists_options() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--hubspot-port",
        "--pipedrive-port",
        "--close-port",
        "--latency-ms",
        "--rate-limit",
        "--search-lag-ms",
    ):
        assert option in result.output
