"""``agency-crm sandbox``: run the three fake CRMs until Ctrl-C or SIGTERM."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from agency_crm.sandbox import DEFAULT_PORTS, Sandbox
from agency_crm.sandbox.core import RateLimit


def _rate_limit(value: str | None) -> RateLimit | None:
    if value is None:
        return None
    try:
        return RateLimit.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def sandbox(
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    hubspot_port: Annotated[
        int, typer.Option("--hubspot-port", help="Fake HubSpot port (0 = any free port).")
    ] = DEFAULT_PORTS["hubspot"],
    pipedrive_port: Annotated[
        int, typer.Option("--pipedrive-port", help="Fake Pipedrive port (0 = any free port).")
    ] = DEFAULT_PORTS["pipedrive"],
    close_port: Annotated[
        int, typer.Option("--close-port", help="Fake Close port (0 = any free port).")
    ] = DEFAULT_PORTS["close"],
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0, help="Added to every API response.")
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
        typer.Option("--search-lag-ms", min=0, help="Delay before writes show up in search."),
    ] = 0.0,
) -> None:
    """Run fake HubSpot, Pipedrive and Close servers until Ctrl-C or SIGTERM."""
    limit = _rate_limit(rate_limit)
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
        typer.echo(f"agency-crm sandbox: cannot bind: {exc}", err=True)
        raise typer.Exit(1) from exc
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


app = typer.Typer(
    name="agency-crm-sandbox",
    help="Fake HubSpot, Pipedrive and Close servers.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("sandbox")(sandbox)
