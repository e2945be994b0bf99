"""``agency-crm sandbox``: run the three fake CRMs until Ctrl-C or SIGTERM.

The fake CRMs are the optional extra ``agency-crm[sandbox]``: this module only imports them
when the command runs, and says what to install when they are missing.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated, Any

import typer

from agency_crm.cli.common import Command, bounded, examples, fail

# The ports `agency-crm sandbox` binds by default.
DEFAULT_PORTS = {"hubspot": 8701, "pipedrive": 8702, "close": 8703}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _port(vendor: str) -> Any:
    return bounded(
        f"--{vendor}-port",
        "PORT",
        0,
        65535,
        help=f"Fake {vendor.capitalize()} port, 0 for any free port",
    )


@app.command(
    "sandbox",
    cls=Command,
    epilog=examples(
        "agency-crm sandbox",
        "agency-crm sandbox --latency-ms 50 --rate-limit 100/10",
        "agency-crm sandbox --hubspot-port 0 --pipedrive-port 0 --close-port 0",
    ),
)
def sandbox(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Address to bind.")
    ] = "127.0.0.1",
    hubspot_port: Annotated[int, _port("hubspot")] = DEFAULT_PORTS["hubspot"],
    pipedrive_port: Annotated[int, _port("pipedrive")] = DEFAULT_PORTS["pipedrive"],
    close_port: Annotated[int, _port("close")] = DEFAULT_PORTS["close"],
    latency_ms: Annotated[
        float,
        bounded("--latency-ms", "MS", 0.0, help="Added to every API response"),
    ] = 0.0,
    rate_limit: Annotated[
        str | None,
        typer.Option(
            "--rate-limit",
            metavar="N/SECONDS",
            help="Per-account rolling-window limit for all three, e.g. 100/10. "
            "Default: HubSpot 100/10, Pipedrive 80/2, Close 60/1.",
        ),
    ] = None,
    search_lag_ms: Annotated[
        float,
        bounded("--search-lag-ms", "MS", 0.0, help="Delay before writes show up in search"),
    ] = 0.0,
) -> None:
    """Run fake HubSpot, Pipedrive and Close servers until Ctrl-C or SIGTERM.

    Any credential starting with sbx_ creates an account on first use. Needs the sandbox
    extra: pip install 'agency-crm[sandbox]'.
    """
    try:
        from agency_crm.sandbox import Sandbox
        from agency_crm.sandbox.core import RateLimit
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("agency_crm.sandbox"):
            raise
        fail(
            "the CRM sandbox is not installed "
            "(hint: pip install 'agency-crm[sandbox]', the optional extra with the fake CRMs)"
        )
    try:
        limit = RateLimit.parse(rate_limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--rate-limit'") from exc
    box = Sandbox(
        host,
        hubspot_port,
        pipedrive_port,
        close_port,
        latency_ms=latency_ms,
        rate_limit=limit,
        search_lag_ms=search_lag_ms,
    )
    try:
        box.start()
    except OSError as exc:
        fail(f"sandbox: {exc.strerror or exc} (hint: choose another port; 0 picks a free one)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        for vendor, url in box.urls.items():
            typer.echo(f"{vendor:<9} {url}")
        first = box.urls["hubspot"]
        typer.echo(
            "accounts: any credential starting with sbx_ is created on first use; or "
            f"curl -X POST {first}/_sandbox/accounts -d '{{}}' (same path on each server)"
        )
        typer.echo("Ctrl-C to stop")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        box.stop()
