"""``agency-crm push``: drain the queue into the CRMs, and inspect, check or retry it."""

from __future__ import annotations

import asyncio
import enum
import json
import signal
import sys
from collections import Counter
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from psycopg.rows import dict_row

from agency_crm import db
from agency_crm.cli.common import (
    ClientOption,
    ClientRef,
    Command,
    DatabaseUrl,
    JsonOutput,
    bounded,
    choices,
    client_ids,
    connect_ready,
    examples,
    group,
    pool_dsn,
    to_json,
)
from agency_crm.push.model import LogStatus, QueueStatus, Reported
from agency_crm.push.settings import DEFAULT_HTTP_TIMEOUT, Settings
from agency_crm.queries import PUSH

if TYPE_CHECKING:
    import uuid

    from agency_crm.push.runner import DrainSettings, DrainSummary

app = group("Drain pending pushes into each client's CRM; inspect, check and retry the queue.")


class ProgressMode(enum.StrEnum):
    """How ``push drain`` reports progress."""

    AUTO = "auto"
    BAR = "bar"
    LOG = "log"
    NONE = "none"


RETRYABLE = (QueueStatus.DEAD, QueueStatus.FAILED, QueueStatus.HELD)

HttpTimeout = Annotated[
    float,
    bounded("--http-timeout", "SECONDS", 0.1, help="Seconds one CRM call may take"),
]


def _dsn(database_url: str | None) -> str:
    """Check the database answers and holds the current schema (one readable line if not);
    return the DSN to pool."""
    return pool_dsn(database_url)


@app.command(
    "drain",
    cls=Command,
    epilog=examples(
        "agency-crm push drain                        # cron, every minute",
        "agency-crm push drain --watch                # a service: woken by LISTEN/NOTIFY",
        "agency-crm push drain --dry-run --client 6f1c0e2a-...   # what would be sent",
    ),
)
def drain(
    database_url: DatabaseUrl = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once/--watch",
            help="--once (default, for cron): drain what is due, wait for retries due within "
            "--retry-horizon, then exit. --watch: keep running, woken by LISTEN/NOTIFY.",
        ),
    ] = True,
    batch_size: Annotated[
        int,
        bounded("--batch-size", "N", 1, 10000, help="Most pushes claimed at once"),
    ] = 100,
    concurrency: Annotated[
        int,
        bounded("--concurrency", "N", 1, 1000, help="Most CRM calls in flight at once"),
    ] = 16,
    per_client: Annotated[
        int,
        bounded("--per-client", "N", 1, 1000, help="Most pushes of one client in flight at once"),
    ] = 4,
    max_seconds: Annotated[
        float | None,
        bounded(
            "--max-seconds",
            "SECONDS",
            0.1,
            help="Stop claiming after this long; pushes in flight finish",
        ),
    ] = None,
    clients: ClientOption = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what would be sent (one JSON object per due push); claim and send nothing.",
        ),
    ] = False,
    retry_horizon: Annotated[
        float,
        bounded(
            "--retry-horizon",
            "SECONDS",
            0.0,
            help="--once also waits for retries due within this many seconds",
        ),
    ] = 30.0,
    lease_seconds: Annotated[
        int,
        bounded(
            "--lease-seconds",
            "SECONDS",
            1,
            86400,
            help="Claim lease: a crashed runner's pushes are claimed again after this long",
        ),
    ] = 300,
    search_lag: Annotated[
        float,
        bounded(
            "--search-lag",
            "SECONDS",
            0.0,
            help="How long a Pipedrive/Close create may take to become searchable; a create "
            "whose outcome is unknown is not repeated sooner",
        ),
    ] = Settings.search_lag.total_seconds(),
    http_timeout: HttpTimeout = DEFAULT_HTTP_TIMEOUT,
    batches: Annotated[
        bool,
        typer.Option(
            "--batches/--no-batches",
            help="Send a client's claimed pushes together through the CRM's batch API "
            "(HubSpot: up to 100 per call); --no-batches sends each push on its own.",
        ),
    ] = True,
    progress: Annotated[
        ProgressMode,
        typer.Option(
            "--progress",
            metavar=choices(ProgressMode),
            help="auto: a progress bar on a terminal, JSON log lines (stderr) otherwise.",
        ),
    ] = ProgressMode.AUTO,
) -> None:
    """Push pending meetings and deals into each client's CRM.

    Overlapping runs (two cron runs, or several runners) share the work: each claims
    different pushes under a lease. Exit 0 when everything due was drained (pushes waiting
    for a later retry stay pending); 1 when the run itself failed. The HubSpot app that
    refreshes OAuth tokens comes from AGENCY_CRM_HUBSPOT_CLIENT_ID and
    AGENCY_CRM_HUBSPOT_CLIENT_SECRET.
    """
    from agency_crm.push.runner import DrainSettings

    ids = client_ids(clients)
    dsn = _dsn(database_url)
    client = Settings.from_environment(
        search_lag=timedelta(seconds=search_lag), http_timeout=http_timeout, batches=batches
    )
    if dry_run:
        from agency_crm.push.plan import plan

        for item in asyncio.run(plan(dsn, ids, batch_size, client)):
            typer.echo(to_json(item))
        return
    settings = DrainSettings(
        database_url=dsn,
        watch=not once,
        batch_size=batch_size,
        concurrency=concurrency,
        per_client=per_client,
        max_seconds=max_seconds,
        client_ids=ids,
        lease_seconds=lease_seconds,
        retry_horizon=retry_horizon,
        client=client,
    )
    mode = progress
    if mode is ProgressMode.AUTO:
        mode = ProgressMode.BAR if sys.stderr.isatty() else ProgressMode.LOG
    summary = asyncio.run(_run(settings, mode, ids))
    counts = {k.value: summary.outcomes.get(k, 0) for k in Reported}
    if mode is ProgressMode.LOG:
        line = {
            "event": "drain_finished",
            "owner": settings.owner,
            "pushes": summary.pushes,
            **counts,
            "crm_calls": summary.calls,
            "rate_limited": summary.rate_limited,
            "clients": summary.clients,
            "seconds": round(summary.seconds, 3),
        }
        typer.echo(json.dumps(line))
    else:
        typer.echo(
            f"drained {summary.pushes} push(es) of {summary.clients} client(s) in "
            f"{summary.seconds:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; {summary.calls} CRM call(s), {summary.rate_limited} rate-limited"
        )


async def _run(
    settings: DrainSettings, mode: ProgressMode, ids: list[uuid.UUID] | None
) -> DrainSummary:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from agency_crm.push.runner import Drainer, PushEvent

    counts: Counter[str] = Counter()
    progress_bar: Progress | None = None
    task_id: Any = None
    if mode is ProgressMode.BAR:
        with db.connect(settings.database_url) as conn:
            row = conn.execute(PUSH["due_count"], {"client_ids": ids}).fetchone()
        progress_bar = Progress(
            TextColumn("push drain"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        task_id = progress_bar.add_task("drain", total=int(row[0]) if row else None, counts="")  # type: ignore[call-overload]
        progress_bar.start()

    def on_event(event: PushEvent) -> None:
        counts[event.outcome] += 1
        if progress_bar is not None:
            progress_bar.update(
                task_id,
                advance=1,
                counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            )
        elif mode is ProgressMode.LOG:
            record = {
                "event": "push",
                "ts": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                "client_id": str(event.client_id),
                "crm": event.crm_type,
                "push_id": event.push_id,
                "operation": event.operation,
                "attempt": event.attempt,
                "outcome": event.outcome.value,
                "crm_calls": event.calls,
                "duration_ms": event.duration_ms,
            }
            if event.error:
                record["error"] = event.error
            print(json.dumps(record), file=sys.stderr, flush=True)

    drainer = Drainer(settings, on_event)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, drainer.stop)
    try:
        return await drainer.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if progress_bar is not None:
            progress_bar.stop()


@app.command(
    "status",
    cls=Command,
    epilog=examples("agency-crm push status", "agency-crm push status --json | jq '.[].dead'"),
)
def status(
    database_url: DatabaseUrl = None, clients: ClientOption = None, as_json: JsonOutput = False
) -> None:
    """Queue depth by client and status, oldest pending push, failed and dead pushes."""
    from rich.console import Console
    from rich.table import Table

    ids = client_ids(clients)
    with connect_ready(database_url) as conn:
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(PUSH["queue_status"], {"client_ids": ids})
            .fetchall()
        )
    if as_json:
        typer.echo(to_json(rows))
        return
    if not rows:
        typer.echo("no CRM configs and no pushes")
        return
    table = Table(box=None, pad_edge=False)
    for title in (
        "client",
        "crm",
        "connection",
        "pending",
        "due",
        "in flight",
        "held",
        "failed",
        "dead",
        "oldest pending",
        "last success",
    ):
        table.add_column(title)
    now = datetime.now().astimezone()
    for r in rows:
        oldest = r["oldest_pending_at"]
        age = f"{(now - oldest).total_seconds():.0f} s ago" if oldest else "-"
        last = r["last_successful_push_at"]
        table.add_row(
            f"{r['client_name']} ({str(r['client_id'])[:8]})",
            r["crm_type"] or "-",
            (r["connection_status"] or "none")
            + ("" if r["is_active"] in (True, None) else " (paused)"),
            str(r["pending"]),
            str(r["due"]),
            str(r["in_flight"]),
            str(r["held"]),
            str(r["failed"]),
            str(r["dead"]),
            age,
            last.isoformat(timespec="seconds") if last else "-",
        )
    Console(width=160).print(table)
    for r in rows:
        if r["last_error"]:
            typer.echo(f"{r['client_name']}: last error: {r['last_error']}")


@app.command(
    "retry",
    cls=Command,
    epilog=examples(
        "agency-crm push retry                       # every dead and failed push",
        "agency-crm push retry --status held --client 6f1c0e2a-...",
        "agency-crm push retry --id 41 --id 42",
    ),
)
def retry(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    statuses: Annotated[
        list[QueueStatus] | None,
        typer.Option(
            "--status",
            metavar="[" + "|".join(RETRYABLE) + "]",
            help="Which pushes; repeat for several (default: dead and failed).",
        ),
    ] = None,
    push_ids: Annotated[
        list[int] | None,
        typer.Option("--id", metavar="ID", help="Only this push; repeat for several."),
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Put dead and failed pushes back to pending with a fresh attempt budget."""
    ids = client_ids(clients)
    wanted = [s.value for s in statuses] if statuses else [QueueStatus.DEAD, QueueStatus.FAILED]
    refused = [s for s in wanted if s not in RETRYABLE]
    if refused:
        raise typer.BadParameter(
            f"{refused[0]} pushes are not retried (only dead, failed or held)",
            param_hint="'--status'",
        )
    total = 0
    with connect_ready(database_url) as conn, conn.transaction():
        targets: list[uuid.UUID | None] = list(ids) if ids else [None]
        for client_id in targets:
            params = {"client_id": client_id, "statuses": wanted, "push_ids": push_ids}
            row = conn.execute(PUSH["retry_pushes"], params).fetchone()
            total += int(row[0]) if row else 0  # type: ignore[call-overload]
    if as_json:
        typer.echo(json.dumps({"retried": total}))
    else:
        typer.echo(f"{total} push(es) back to pending; run `agency-crm push drain` to send them")


@app.command(
    "logs",
    cls=Command,
    epilog=examples(
        "agency-crm push logs --status failed",
        "agency-crm push logs --push-id 42 --payloads",
        "agency-crm push logs --client 6f1c0e2a-... --json",
    ),
)
def logs(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    push_id: Annotated[
        int | None, typer.Option("--push-id", metavar="ID", help="Only this push's calls.")
    ] = None,
    log_status: Annotated[
        LogStatus | None,
        typer.Option("--status", metavar=choices(LogStatus), help="Only calls that ended so."),
    ] = None,
    operation: Annotated[
        str | None,
        typer.Option(
            "--operation", metavar="NAME", help="Only this call, e.g. create_deal, find_contact."
        ),
    ] = None,
    limit: Annotated[
        int,
        bounded("--limit", "N", 1, 10000, help="At most N calls"),
    ] = 50,
    payloads: Annotated[
        bool, typer.Option("--payloads", help="Include the (redacted) request and response.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Recent CRM calls from crm.crm_push_log, newest first (secrets are never logged)."""
    params = {
        "client_ids": client_ids(clients),
        "push_id": push_id,
        "status": log_status.value if log_status else None,
        "operation": operation,
        "row_limit": limit,
    }
    with connect_ready(database_url) as conn:
        rows = conn.cursor(row_factory=dict_row).execute(PUSH["push_log"], params).fetchall()
    if not payloads:
        for r in rows:
            r.pop("request_payload")
            r.pop("response_payload")
    if as_json:
        typer.echo(to_json(rows))
        return
    if not rows:
        filtered = any(params[k] for k in ("client_ids", "push_id", "status", "operation"))
        typer.echo("no CRM calls logged" + (" that match" if filtered else ""))
        return
    for r in rows:
        typer.echo(log_line(r))
        if payloads:
            typer.echo(f"  request:  {json.dumps(r['request_payload'])}")
            typer.echo(f"  response: {json.dumps(r['response_payload'])}")


def log_line(row: dict[str, Any]) -> str:
    """One audit row as `push logs` prints it."""
    who = f"push {row['push_id']}" if row["push_id"] is not None else "check"
    ids = " ".join(
        f"{k}={row[k]}" for k in ("crm_contact_id", "crm_deal_id", "crm_org_id") if row[k]
    )
    answer = str(row["http_status"] or "-")
    if row["error_code"]:
        # An answer the call expected (a lookup's 404) is success with its code: not found.
        answer += " " + row["error_code"].replace("_", " ")
        if row["error_message"]:
            answer += f": {row['error_message']}"
    return (
        f"{row['created_at'].isoformat(timespec='seconds')} {who} {row['operation']} "
        f"{row['status']} {answer} {row['duration_ms']} ms{' ' + ids if ids else ''}"
    )


@app.command(
    "backfill",
    cls=Command,
    epilog=examples(
        "agency-crm push backfill --client Acme",
        "agency-crm push backfill --client 6f1c0e2a-... --since 2026-01-01 --json",
    ),
)
def backfill_command(
    client: ClientRef,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE|TIME",
            help="Only meetings booked and deals created from then on (ISO 8601; without a "
            "zone, this machine's). Default: all of them.",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    as_json: JsonOutput = False,
) -> None:
    """Queue a client's history for its connected CRM: its live meetings and deals that the
    CRM has not got yet, once each (`agency-crm push drain` sends them).

    Connecting a CRM (`agency-crm crm connect`) does this already; run it again after
    importing old meetings. Run twice, the second run queues nothing. Exit 5 when the client
    has no connected CRM, 4 when there is no such client.
    """
    from agency_crm.cli.crm import call, parse_when, target

    start = parse_when(since, "--since")
    where = target(database_url, client)
    queued = call(where, lambda crm: crm.backfill(where.client_id, start))
    if as_json:
        typer.echo(json.dumps(queued.model_dump(mode="json")))
    else:
        typer.echo(
            f"queued {queued.meetings} meeting(s) and {queued.deals} deal(s) of {where} the CRM"
            " has not got"
            + (
                "; run `agency-crm push drain` to send them"
                if queued.meetings or queued.deals
                else ""
            )
        )


@app.command(
    "check",
    cls=Command,
    epilog=examples("agency-crm push check", "agency-crm push check --client 6f1c0e2a-... --json"),
)
def check_command(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    http_timeout: HttpTimeout = DEFAULT_HTTP_TIMEOUT,
    as_json: JsonOutput = False,
) -> None:
    """Test each CRM connection: the credentials work, and the pipeline, stage, owner and
    stage map of the config exist in the CRM.

    Records connection_status (connected or error) and last_error on the config. A CRM that
    could not be asked (5xx, 429, timeout, connection refused) is reported and the config
    left as it was: only refused credentials (401, 403) or missing ids put it in error.
    Exit 3 when a config has a problem or could not be checked.
    """
    from agency_crm.push.check import check

    ids = client_ids(clients)
    dsn = _dsn(database_url)
    results = asyncio.run(check(dsn, ids, Settings.from_environment(http_timeout=http_timeout)))
    if as_json:
        typer.echo(
            to_json(
                [
                    {
                        "client_id": r.client_id,
                        "client_name": r.client_name,
                        "crm_type": r.crm_type,
                        "ok": r.ok,
                        "problems": r.problems,
                        "pipelines": r.pipelines,
                        "owners": r.owners,
                        "recorded": r.recorded,
                    }
                    for r in results
                ]
            )
        )
    else:
        if not results:
            typer.echo("no CRM configs")
        for r in results:
            head = f"{r.client_name} ({r.crm_type}): "
            if r.ok:
                typer.echo(
                    head + f"connected; {r.pipelines} pipeline(s), {r.owners} user(s); "
                    "pipeline, stage, owner and stage map found"
                )
            elif r.recorded:
                typer.echo(head + "error: " + "; ".join(r.problems))
            else:
                typer.echo(
                    head + "could not check: " + "; ".join(r.problems) + " (connection status "
                    "left as it was; run the check again)"
                )
    if any(not r.ok for r in results):
        raise typer.Exit(3)
