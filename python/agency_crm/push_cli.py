"""``agency-crm push``: drain the queue into the CRMs, and inspect or retry it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from psycopg import conninfo
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agency_crm import db
from agency_crm.cli_options import DatabaseUrl, JsonOutput
from agency_crm.push.base import Settings
from agency_crm.push.runner import Drainer, DrainSettings, DrainSummary, PushEvent

push_app = typer.Typer(
    help="Drain pending pushes into each client's CRM; inspect and retry the queue.",
    no_args_is_help=True,
)

ClientOption = Annotated[
    list[str] | None,
    typer.Option("--client", help="Only this client (uuid); repeat for several."),
]


def _clients(values: list[str] | None) -> list[uuid.UUID] | None:
    if not values:
        return None
    out = []
    for value in values:
        try:
            out.append(uuid.UUID(value))
        except ValueError:
            raise typer.BadParameter(f"--client {value!r} is not a uuid") from None
    return out


def _dsn(database_url: str | None) -> str:
    """Check the database answers (one readable line if not) and return the DSN to pool."""
    with db.connect(database_url):
        pass
    params = conninfo.conninfo_to_dict(database_url or "")
    params.setdefault("connect_timeout", db.CONNECT_TIMEOUT_S)
    return conninfo.make_conninfo(**params)  # type: ignore[arg-type]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@push_app.command("drain")
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
        int, typer.Option("--batch-size", min=1, max=10000, help="Most pushes claimed at once.")
    ] = 100,
    concurrency: Annotated[
        int,
        typer.Option("--concurrency", min=1, max=1000, help="Most CRM calls in flight at once."),
    ] = 16,
    per_client: Annotated[
        int,
        typer.Option(
            "--per-client", min=1, max=1000, help="Most pushes of one client in flight at once."
        ),
    ] = 4,
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", min=0.1, help="Stop claiming after this long."),
    ] = None,
    clients: ClientOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Show what would be sent; claim and send nothing."),
    ] = False,
    retry_horizon: Annotated[
        float,
        typer.Option(
            "--retry-horizon", min=0, help="--once waits for retries due within this many seconds."
        ),
    ] = 30.0,
    lease_seconds: Annotated[
        int,
        typer.Option(
            "--lease-seconds",
            min=1,
            max=86400,
            help="Claim lease: a crashed runner's pushes are claimed again after this long.",
        ),
    ] = 300,
    search_lag: Annotated[
        float,
        typer.Option(
            "--search-lag",
            min=0,
            help="Seconds a Pipedrive/Close create may take to become searchable; a create "
            "whose outcome is unknown is not repeated sooner.",
        ),
    ] = 30.0,
    http_timeout: Annotated[
        float, typer.Option("--http-timeout", min=0.1, help="Seconds per CRM call.")
    ] = 30.0,
    progress: Annotated[
        str,
        typer.Option(
            "--progress",
            help="auto: a progress bar on a terminal, JSON log lines otherwise; bar; log; none.",
        ),
    ] = "auto",
) -> None:
    """Push pending meetings and deals into each client's CRM.

    Overlapping runs (two cron runs, or several runners) share the work: each claims
    different pushes under a lease. Exit 0 when everything due was drained (pushes waiting
    for a later retry stay pending); 1 when the run itself failed.
    """
    if progress not in ("auto", "bar", "log", "none"):
        raise typer.BadParameter("--progress must be auto, bar, log or none")
    client_ids = _clients(clients)
    dsn = _dsn(database_url)
    if dry_run:
        from agency_crm.push.plan import plan

        for item in asyncio.run(plan(dsn, client_ids, batch_size)):
            typer.echo(json.dumps(item, default=_json_default, sort_keys=True))
        return
    settings = DrainSettings(
        database_url=dsn,
        watch=not once,
        batch_size=batch_size,
        concurrency=concurrency,
        per_client=per_client,
        max_seconds=max_seconds,
        client_ids=client_ids,
        lease_seconds=lease_seconds,
        retry_horizon=retry_horizon,
        http_timeout=http_timeout,
        client=Settings(
            search_lag=timedelta(seconds=search_lag),
            hubspot_client_id=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_ID"),
            hubspot_client_secret=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_SECRET"),
        ),
    )
    mode = progress
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "log"
    summary = asyncio.run(_run(settings, mode, dsn, client_ids))
    line = {
        "event": "drain_finished",
        "owner": settings.owner,
        "pushes": summary.pushes,
        **{k: summary.outcomes.get(k, 0) for k in OUTCOMES},
        "crm_calls": summary.calls,
        "rate_limited": summary.rate_limited,
        "clients": summary.clients,
        "seconds": round(summary.seconds, 3),
    }
    if mode == "log":
        typer.echo(json.dumps(line))
    else:
        typer.echo(
            f"drained {summary.pushes} push(es) of {summary.clients} client(s) in "
            f"{summary.seconds:.1f} s: "
            + ", ".join(f"{k} {summary.outcomes.get(k, 0)}" for k in OUTCOMES)
            + f"; {summary.calls} CRM call(s), {summary.rate_limited} rate-limited"
        )


OUTCOMES = (
    "done",
    "skipped",
    "superseded",
    "retry",
    "deferred",
    "failed",
    "dead",
    "held",
    "lease_lost",
)


async def _run(
    settings: DrainSettings, mode: str, dsn: str, client_ids: list[uuid.UUID] | None
) -> DrainSummary:
    counts: Counter[str] = Counter()
    progress_bar: Progress | None = None
    task_id: Any = None
    if mode == "bar":
        total = _due_count(dsn, client_ids)
        progress_bar = Progress(
            TextColumn("push drain"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        task_id = progress_bar.add_task("drain", total=total or None, counts="")
        progress_bar.start()

    def on_event(event: PushEvent) -> None:
        counts[event.outcome] += 1
        if progress_bar is not None:
            progress_bar.update(
                task_id,
                advance=1,
                counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            )
        elif mode == "log":
            record = {
                "event": "push",
                "ts": datetime.now().astimezone().isoformat(timespec="milliseconds"),
                "client_id": str(event.client_id),
                "crm": event.crm_type,
                "push_id": event.push_id,
                "operation": event.operation,
                "attempt": event.attempt,
                "outcome": event.outcome,
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


def _due_count(dsn: str, client_ids: list[uuid.UUID] | None) -> int:
    with db.connect(dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(due + in_flight), 0) FROM crm.push_queue_status() "
            "WHERE %s::uuid[] IS NULL OR client_id = ANY(%s::uuid[])",
            (client_ids, client_ids),
        ).fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


@push_app.command("status")
def status(
    database_url: DatabaseUrl = None, clients: ClientOption = None, as_json: JsonOutput = False
) -> None:
    """Queue depth by client and status, oldest pending push, failed and dead pushes."""
    client_ids = _clients(clients)
    with db.connect(database_url) as conn:
        cur = conn.execute(
            "SELECT * FROM crm.push_queue_status() "
            "WHERE %s::uuid[] IS NULL OR client_id = ANY(%s::uuid[])",
            (client_ids, client_ids),
        )
        names = [d.name for d in cur.description or []]
        rows: list[dict[str, Any]] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if as_json:
        typer.echo(json.dumps(rows, default=_json_default))
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


@push_app.command("retry")
def retry(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    statuses: Annotated[
        list[str] | None,
        typer.Option(
            "--status", help="dead, failed or held (repeatable; default dead and failed)."
        ),
    ] = None,
    push_ids: Annotated[
        list[int] | None, typer.Option("--id", help="Only this push id (repeatable).")
    ] = None,
    as_json: JsonOutput = False,
) -> None:
    """Put dead and failed pushes back to pending with a fresh attempt budget."""
    client_ids = _clients(clients)
    wanted = statuses or ["dead", "failed"]
    total = 0
    with db.connect(database_url) as conn:
        with conn.transaction():
            targets: list[uuid.UUID | None] = list(client_ids) if client_ids else [None]
            for client_id in targets:
                row = conn.execute(
                    "SELECT crm.retry_pushes(%s, %s, %s)", (client_id, wanted, push_ids)
                ).fetchone()
                total += int(row[0]) if row else 0  # type: ignore[call-overload]
    if as_json:
        typer.echo(json.dumps({"retried": total}))
    else:
        typer.echo(f"{total} push(es) back to pending; run `agency-crm push drain` to send them")


@push_app.command("logs")
def logs(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    push_id: Annotated[int | None, typer.Option("--push-id", help="Only this push.")] = None,
    log_status: Annotated[
        str | None, typer.Option("--status", help="success, failed or skipped.")
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", help="e.g. create_deal, find_contact.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
    payloads: Annotated[
        bool, typer.Option("--payloads", help="Include the (redacted) request and response.")
    ] = False,
    as_json: JsonOutput = False,
) -> None:
    """Recent CRM calls from crm.crm_push_log, newest first."""
    client_ids = _clients(clients)
    with db.connect(database_url) as conn:
        cur = conn.execute(
            """
            SELECT created_at, client_id, push_id, operation, status, http_status, error_code,
                   error_message, duration_ms, crm_contact_id, crm_deal_id, crm_org_id,
                   request_payload, response_payload
            FROM crm.crm_push_log
            WHERE (%(clients)s::uuid[] IS NULL OR client_id = ANY(%(clients)s::uuid[]))
              AND (%(push)s::bigint IS NULL OR push_id = %(push)s::bigint)
              AND (%(status)s::text IS NULL OR status = %(status)s::text)
              AND (%(op)s::text IS NULL OR operation = %(op)s::text)
            ORDER BY created_at DESC, id
            LIMIT %(limit)s
            """,
            {
                "clients": client_ids,
                "push": push_id,
                "status": log_status,
                "op": operation,
                "limit": limit,
            },
        )
        names = [d.name for d in cur.description or []]
        rows: list[dict[str, Any]] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if not payloads:
        for r in rows:
            r.pop("request_payload")
            r.pop("response_payload")
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, default=_json_default))
        return
    for r in rows:
        ids = " ".join(
            f"{k}={r[k]}" for k in ("crm_contact_id", "crm_deal_id", "crm_org_id") if r[k]
        )
        err = f" {r['error_code']}: {r['error_message'] or ''}" if r["error_code"] else ""
        typer.echo(
            f"{r['created_at'].isoformat(timespec='seconds')} push {r['push_id']} "
            f"{r['operation']} {r['status']} {r['http_status'] or '-'} {r['duration_ms']} ms"
            f"{' ' + ids if ids else ''}{err}"
        )
        if payloads:
            typer.echo(f"  request:  {json.dumps(r['request_payload'])}")
            typer.echo(f"  response: {json.dumps(r['response_payload'])}")


@push_app.command("check")
def check_command(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    http_timeout: Annotated[
        float, typer.Option("--http-timeout", min=0.1, help="Seconds per CRM call.")
    ] = 30.0,
    as_json: JsonOutput = False,
) -> None:
    """Test each CRM connection: the credentials work, and the pipeline, stage, owner and
    stage map of the config exist in the CRM. Records connection_status (connected or error)
    and last_error on the config; exit 3 when a config has a problem."""
    from agency_crm.push.check import check

    client_ids = _clients(clients)
    dsn = _dsn(database_url)
    settings = Settings(
        hubspot_client_id=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_ID"),
        hubspot_client_secret=os.environ.get("AGENCY_CRM_HUBSPOT_CLIENT_SECRET"),
    )
    results = asyncio.run(check(dsn, client_ids, settings, http_timeout))
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "client_id": str(r.client_id),
                        "client_name": r.client_name,
                        "crm_type": r.crm_type,
                        "ok": r.ok,
                        "problems": r.problems,
                        "pipelines": r.pipelines,
                        "owners": r.owners,
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
            else:
                typer.echo(head + "error: " + "; ".join(r.problems))
    if any(not r.ok for r in results):
        raise typer.Exit(3)
