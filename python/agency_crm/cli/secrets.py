"""``agency-crm secrets``: the key ring of the encrypted CRM secrets: make a key, check that
every stored secret decrypts, re-encrypt them under a new key, store one.

No command prints a secret: only ``generate-key`` prints key material (the new key, on
stdout, which is what it is for).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer

from agency_crm import crypto
from agency_crm.cli.common import (
    ClientOption,
    Command,
    DatabaseUrl,
    JsonOutput,
    bounded,
    choices,
    client_ids,
    connect_ready,
    examples,
    group,
    read_secret,
    to_json,
)
from agency_crm.errors import AgencyCrmError

if TYPE_CHECKING:
    from agency_crm.secret_store import Failure

app = group("The encrypted CRM secrets: make a key, check, rotate to a new key, store one.")

ENV = crypto.ENV_VAR


class SecretColumn(enum.StrEnum):
    """The secret columns of crm.client_crm_configs."""

    API_KEY = "api_key"
    OAUTH_ACCESS_TOKEN = "oauth_access_token"
    OAUTH_REFRESH_TOKEN = "oauth_refresh_token"


@contextmanager
def _needs(what: str, role: str | None) -> Iterator[None]:
    """A refused privilege (42501) as one line saying which login the command needs."""
    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        who = f"a {role} login or the schema owner" if role else "the schema owner"
        raise AgencyCrmError(
            f"database error 42501: {exc.diag.message_primary or exc}",
            hint=f"This command {what}: run it as {who} (docs/security.md).",
        ) from None


def _key_ring() -> crypto.KeyRing:
    """The key ring of the environment; a one-line error when there is none."""
    keys = crypto.KeyRing.from_environment()
    keys.primary  # noqa: B018 - raises NoKeyError (one line, exit 1) when no key is set
    return keys


@app.command(
    "generate-key",
    cls=Command,
    epilog=examples(
        f"export {ENV}=$(agency-crm secrets generate-key)       # the first key",
        f'export {ENV}="$(agency-crm secrets generate-key --key-id k2027-01),${ENV}"'
        "   # a new key first, then: agency-crm secrets rotate",
    ),
)
def generate_key(
    key_id: Annotated[
        str | None,
        typer.Option(
            "--key-id",
            metavar="ID",
            help="Id stored beside every secret encrypted under the key: 1-32 letters, digits,"
            " '-' or '_' (default: k<today>-<random>).",
        ),
    ] = None,
) -> None:
    """Print a new key ring entry for AGENCY_CRM_SECRET_KEYS.

    The entry, <key id>:<base64 of 32 random bytes>, goes to stdout. It is ready to be the value
    of AGENCY_CRM_SECRET_KEYS, or to be put first in it (comma separated) before `agency-crm
    secrets rotate`. What to do with it goes to stderr.
    """
    entry = crypto.generate_entry(key_id)
    typer.echo(entry)
    new_id = entry.partition(":")[0]
    typer.echo(
        f"new key {new_id}: keep it secret and safe (without it the secrets encrypted under it"
        f" cannot be read). Set {ENV} to it, or put it first, before the keys in use"
        f" ({ENV}={new_id}:...,<old entries>), the same everywhere agency-crm runs; then run"
        " `agency-crm secrets rotate`, and `agency-crm secrets check` (docs/security.md).",
        err=True,
    )


@app.command(
    "check",
    cls=Command,
    epilog=examples(
        "agency-crm secrets check",
        "agency-crm secrets check --client 6f1c0e2a-... --json",
    ),
)
def check_command(
    database_url: DatabaseUrl = None,
    clients: ClientOption = None,
    as_json: JsonOutput = False,
) -> None:
    """Check that every stored CRM secret decrypts with AGENCY_CRM_SECRET_KEYS.

    Tries every secret, soft-deleted configs' too. Lists each secret that does not decrypt
    (client, config, column, key id and why; never the secret) and counts the secrets per key
    id. Exit 0 when every one decrypts, 1 when one does not.
    """
    from agency_crm import secret_store

    ids = client_ids(clients)
    keys = _key_ring()
    with connect_ready(database_url) as conn, _needs("reads every secret", "crm_runner"):
        conn.autocommit = True
        report = secret_store.check(conn, keys, ids)
    if as_json:
        typer.echo(
            to_json(
                {
                    "ok": report.ok,
                    "configs": report.configs,
                    "secrets": report.secrets,
                    "primary_key_id": report.primary,
                    "by_key": report.by_key,
                    "unknown_key_ids": report.unknown_key_ids,
                    "not_under_primary": report.not_under_primary,
                    "failures": [f.as_dict() for f in report.failures],
                }
            )
        )
    else:
        typer.echo(
            f"checked {report.secrets} secret(s) of {report.configs} CRM config(s)"
            " (soft-deleted ones too)"
        )
        for key_id, count in sorted(report.by_key.items()):
            if key_id == report.primary:
                note = " (the first key: new secrets are encrypted under it)"
            elif key_id in keys.key_ids:
                note = ""
            else:
                note = f" (not in {ENV})"
            typer.echo(f"  key {key_id}: {count} secret(s){note}")
        if report.failures:
            typer.echo(f"{len(report.failures)} secret(s) do not decrypt:")
            for f in report.failures:
                typer.echo("  " + _failure_line(f))
        else:
            typer.echo("every secret decrypts")
        if report.not_under_primary:
            typer.echo(
                f"{report.not_under_primary} secret(s) are not under the first key"
                f" {report.primary}: run `agency-crm secrets rotate`"
            )
    if not report.ok:
        raise typer.Exit(1)


def _failure_line(f: Failure) -> str:
    deleted = " (soft-deleted)" if f.deleted else ""
    return (
        f"client {f.client_id} config {f.config_id}{deleted} {f.column}"
        f" (key {f.key_id or '?'}): {f.reason}"
    )


@app.command(
    "rotate",
    cls=Command,
    epilog=examples(
        f'{ENV}="<new entry>,<old entry>" agency-crm secrets rotate',
        "agency-crm secrets rotate --batch-size 500 --json",
    ),
)
def rotate_command(
    database_url: DatabaseUrl = None,
    batch_size: Annotated[
        int,
        bounded("--batch-size", "N", 1, 10000, help="Configs re-encrypted per transaction"),
    ] = 100,
    as_json: JsonOutput = False,
) -> None:
    """Re-encrypt every stored CRM secret under the first key of AGENCY_CRM_SECRET_KEYS.

    Every secret under another key is re-encrypted, soft-deleted configs' too, batch by batch,
    each in its own transaction with its configs locked: a write of one of them is waited for,
    and nothing but the secrets changes (a config in error stays in error). Resumable: run it
    again after an interruption and it carries on. A secret that does not decrypt is reported,
    left as it is, and makes the exit code 1. Progress goes to stderr, one line per batch. Once
    no secret is under an old key, that key can be removed from AGENCY_CRM_SECRET_KEYS.
    """
    from agency_crm import secret_store

    keys = _key_ring()

    def progress(batch: secret_store.Batch) -> None:
        failed = f", {batch.failed} failed" if batch.failed else ""
        typer.echo(
            f"batch {batch.number}: {batch.configs} config(s), {batch.reencrypted} secret(s)"
            f" re-encrypted under {keys.primary}{failed}",
            err=True,
        )

    with connect_ready(database_url) as conn, _needs("reads and writes every secret", None):
        conn.autocommit = True
        report = secret_store.rotate(conn, keys, batch_size=batch_size, on_batch=progress)
    if as_json:
        typer.echo(
            to_json(
                {
                    "ok": report.ok,
                    "primary_key_id": report.primary,
                    "batches": report.batches,
                    "reencrypted_secrets": report.reencrypted_secrets,
                    "reencrypted_configs": report.reencrypted_configs,
                    "current_secrets": report.current_secrets,
                    "current_configs": report.current_configs,
                    "failed_secrets": len(report.failures),
                    "failed_configs": report.failed_configs,
                    "failures": [f.as_dict() for f in report.failures],
                    "remaining_by_key": {u.key_id: u.secrets for u in report.remaining},
                    "removable_key_ids": report.removable,
                }
            )
        )
    else:
        for f in report.failures:
            typer.echo("does not decrypt: " + _failure_line(f))
        typer.echo(
            f"re-encrypted {report.reencrypted_secrets} secret(s) of"
            f" {report.reencrypted_configs} config(s) under key {report.primary};"
            f" {report.current_secrets} secret(s) of {report.current_configs} config(s) were"
            f" under it already; {len(report.failures)} secret(s) of {report.failed_configs}"
            " config(s) failed to decrypt"
        )
        for use in report.still_used:
            typer.echo(
                f"key {use.key_id} still holds {use.secrets} secret(s) of {use.configs}"
                f" config(s): keep it in {ENV}"
                + ("" if use.key_id in keys.key_ids else " (it is not there now)")
            )
        if report.removable:
            typer.echo(
                f"no secret is under {', '.join(report.removable)} any more: remove"
                f" {'it' if len(report.removable) == 1 else 'them'} from {ENV}, everywhere"
                " agency-crm runs (then run `agency-crm secrets check`)"
            )
    if not report.ok:
        raise typer.Exit(1)


def _read_secret(column: str) -> str:
    """The secret from stdin: a hidden prompt on a terminal, else all of stdin."""
    return read_secret("secret", prompt=column)


@app.command(
    "set",
    cls=Command,
    epilog=examples(
        "agency-crm secrets set --client 6f1c0e2a-... --column api_key   # prompts, hidden",
        "vault read -field=key crm/acme | agency-crm secrets set --client 6f1c0e2a-..."
        " --column api_key",
    ),
)
def set_command(
    client: Annotated[
        str,
        typer.Option("--client", metavar="UUID", help="The client whose live config gets it."),
    ],
    column: Annotated[
        SecretColumn,
        typer.Option("--column", metavar=choices(SecretColumn), help="Which secret."),
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Store a CRM secret, encrypted, in a client's live CRM config.

    It is encrypted under the first key of AGENCY_CRM_SECRET_KEYS. The secret is read from stdin
    (a hidden prompt on a terminal), never from the command line, where other users see it in
    the process list. A config in error goes back to pending (new credentials), so its held
    pushes are retried.
    """
    from agency_crm import secret_store

    [client_id] = client_ids([client]) or []
    keys = _key_ring()
    with connect_ready(database_url) as conn:
        # No transaction stays open while the secret is typed.
        conn.autocommit = True
        before = secret_store.live_config(conn, client_id)
        value = _read_secret(column.value)
        stored = secret_store.store(conn, keys, client_id, column.value, value)
    status = stored.connection_status
    if before["connection_status"] != status:
        status = f"{before['connection_status']} -> {status}"
    typer.echo(
        f"stored {stored.column} of client {stored.client_id} ({stored.crm_type} config"
        f" {stored.config_id}), encrypted under key {stored.key_id}; connection status"
        f" {status}"
    )
