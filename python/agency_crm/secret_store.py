"""The stored CRM secrets as a whole: check that each decrypts, re-encrypt them under the first
key of the key ring (rotation), and store a new one.

The envelope and the key ring are :mod:`agency_crm.crypto`'s; the statements are the named
queries of ``sql/queries/secrets.sql``. A secret only ever travels as a bind parameter, and
nothing here returns or reports one: a failure names the client, the config, the column and
the key id, with the reason :class:`~agency_crm.crypto.SecretError` gives.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agency_crm.crypto import SECRET_COLUMNS, KeyRing, SecretError, key_id_of
from agency_crm.errors import AgencyCrmError
from agency_crm.queries import SECRETS

Connection = psycopg.Connection[Any]
COLUMNS = SECRET_COLUMNS["client_crm_configs"]
DEFAULT_BATCH_SIZE = 100

# The statement that stores each column of `secrets set` (a role that writes secrets but may
# not read them, such as crm_app, can run each).
STORE = {
    "api_key": SECRETS["store_api_key"],
    "oauth_access_token": SECRETS["store_oauth_access_token"],
    "oauth_refresh_token": SECRETS["store_oauth_refresh_token"],
}


@dataclass(frozen=True)
class Failure:
    """A stored secret that does not decrypt: where it is and why, never what it holds."""

    client_id: uuid.UUID
    config_id: uuid.UUID
    column: str
    key_id: str | None
    reason: str
    deleted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": str(self.client_id),
            "config_id": str(self.config_id),
            "column": self.column,
            "key_id": self.key_id,
            "deleted": self.deleted,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class KeyUse:
    """How many stored secrets are under one key id, in how many configs."""

    key_id: str
    secrets: int
    configs: int


def key_usage(conn: Connection) -> list[KeyUse]:
    """The secrets stored under each key id (soft-deleted configs too), by key id."""
    rows = conn.execute(SECRETS["secrets_by_key"]).fetchall()
    return [KeyUse(str(k), int(s), int(c)) for k, s, c in rows]


def _try_decrypt(
    keys: KeyRing, row: dict[str, Any], column: str
) -> tuple[str | None, Failure | None]:
    """(plaintext, None), or (None, why it does not decrypt)."""
    stored = row[column]
    try:
        return keys.decrypt(stored, client_id=row["client_id"], column=column), None
    except SecretError as exc:
        return None, Failure(
            client_id=row["client_id"],
            config_id=row["id"],
            column=column,
            key_id=key_id_of(stored),
            reason=exc.one_line(),
            deleted=bool(row.get("deleted", False)),
        )


# --- check -----------------------------------------------------------------------------------


@dataclass
class CheckReport:
    """What ``secrets check`` found."""

    key_ids: tuple[str, ...]
    configs: int = 0
    secrets: int = 0
    by_key: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def primary(self) -> str | None:
        return self.key_ids[0] if self.key_ids else None

    @property
    def not_under_primary(self) -> int:
        """Secrets under another key of the ring than the first: a rotation re-encrypts them
        (those under a key the ring does not hold are failures)."""
        return sum(n for key_id, n in self.by_key.items() if key_id in self.key_ids[1:])

    @property
    def unknown_key_ids(self) -> list[str]:
        """Key ids secrets are stored under that the key ring does not hold."""
        return [k for k in self.by_key if k not in self.key_ids]


def check(
    conn: Connection, keys: KeyRing, client_ids: Sequence[uuid.UUID] | None = None
) -> CheckReport:
    """Try to decrypt every stored secret (of every config, soft-deleted ones too, or of the
    given clients'); the report lists each that does not, and counts them per key id."""
    report = CheckReport(key_ids=keys.key_ids)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            SECRETS["stored_secrets"], {"client_ids": list(client_ids) if client_ids else None}
        )
        for row in cur:
            report.configs += 1
            for column in COLUMNS:
                if row[column] is None:
                    continue
                report.secrets += 1
                key_id = key_id_of(row[column]) or "?"
                report.by_key[key_id] = report.by_key.get(key_id, 0) + 1
                _, failure = _try_decrypt(keys, row, column)
                if failure is not None:
                    report.failures.append(failure)
    return report


# --- rotate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """One committed batch of a rotation (for the progress line)."""

    number: int
    configs: int
    reencrypted: int
    failed: int


@dataclass
class RotationReport:
    """What ``secrets rotate`` did."""

    primary: str
    key_ids: tuple[str, ...]
    batches: int = 0
    reencrypted_secrets: int = 0
    reencrypted_configs: int = 0
    # Already under the first key when the rotation started (nothing to do).
    current_secrets: int = 0
    current_configs: int = 0
    failures: list[Failure] = field(default_factory=list)
    # Secrets per key id once the rotation finished.
    remaining: list[KeyUse] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failed_configs(self) -> int:
        return len({(f.client_id, f.config_id) for f in self.failures})

    @property
    def still_used(self) -> list[KeyUse]:
        """Keys other than the first that secrets are still stored under."""
        return [u for u in self.remaining if u.key_id != self.primary]

    @property
    def removable(self) -> list[str]:
        """Key ids of the ring, other than the first, that no stored secret is under."""
        used = {u.key_id for u in self.remaining}
        return [k for k in self.key_ids[1:] if k not in used]


def rotate(
    conn: Connection,
    keys: KeyRing,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_batch: Callable[[Batch], None] | None = None,
) -> RotationReport:
    """Re-encrypt under the first key of ``keys`` every stored secret that is under another
    (soft-deleted configs too).

    Works in batches of ``batch_size`` configs, each its own transaction: the configs are
    locked (``FOR UPDATE``, so a writer of one is waited for, and its write is what gets
    re-encrypted), and ``crm.rekey`` is on, so a config in error stays in error. Only the
    secret columns change. A secret that does not decrypt is reported and left as it is;
    the run goes on past it and does not come back to it. Stopped at any point, a second run
    carries on: what is under the first key already is not touched again.

    ``conn`` must be in autocommit mode (each batch commits on its own).
    """
    if not conn.autocommit:
        raise ValueError("rotate() commits batch by batch: pass a connection in autocommit mode")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    primary = keys.primary  # NoKeyError without a key ring
    report = RotationReport(primary=primary, key_ids=keys.key_ids)
    row = conn.execute(SECRETS["configs_to_rotate"], {"key_id": primary}).fetchone()
    with_secrets, to_rotate = (int(row[0]), int(row[1])) if row else (0, 0)
    report.current_configs = with_secrets - to_rotate
    report.current_secrets = sum(u.secrets for u in key_usage(conn) if u.key_id == primary)

    after: tuple[uuid.UUID | None, uuid.UUID | None] = (None, None)
    while True:
        reencrypted = failed = 0
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(SECRETS["rekey_on"])
            rows = cur.execute(
                SECRETS["lock_rotation_batch"],
                {
                    "key_id": primary,
                    "after_client_id": after[0],
                    "after_id": after[1],
                    "batch_size": batch_size,
                },
            ).fetchall()
            if not rows:
                break
            after = (rows[-1]["client_id"], rows[-1]["id"])
            # Per changed config: its ids, then each column's new envelope (None: as it is).
            changed: list[tuple[Any, ...]] = []
            for locked in rows:
                sealed: list[str | None] = []
                for column in COLUMNS:
                    stored = locked[column]
                    plain, failure = None, None
                    if stored is not None and key_id_of(stored) != primary:
                        plain, failure = _try_decrypt(keys, locked, column)
                    if failure is not None:
                        report.failures.append(failure)
                        failed += 1
                    sealed.append(
                        None
                        if plain is None
                        else keys.encrypt(plain, client_id=locked["client_id"], column=column)
                    )
                if any(s is not None for s in sealed):
                    changed.append((locked["client_id"], locked["id"], *sealed))
                    reencrypted += sum(s is not None for s in sealed)
            if changed:
                ids_and_columns = list(zip(*changed, strict=True))
                cur.execute(
                    SECRETS["store_rotated"],
                    {
                        "client_ids": list(ids_and_columns[0]),
                        "config_ids": list(ids_and_columns[1]),
                        "api_keys": list(ids_and_columns[2]),
                        "oauth_access_tokens": list(ids_and_columns[3]),
                        "oauth_refresh_tokens": list(ids_and_columns[4]),
                    },
                )
        report.reencrypted_configs += len(changed)
        report.batches += 1
        report.reencrypted_secrets += reencrypted
        if on_batch is not None:
            on_batch(Batch(report.batches, len(rows), reencrypted, failed))
    report.remaining = key_usage(conn)
    return report


# --- set -------------------------------------------------------------------------------------


class NoLiveConfig(AgencyCrmError):
    """The client has no live CRM config to store a secret in."""


@dataclass(frozen=True)
class Stored:
    """Where ``secrets set`` stored a secret (never the secret)."""

    client_id: uuid.UUID
    config_id: uuid.UUID
    crm_type: str
    column: str
    key_id: str
    connection_status: str


def _no_live_config(client_id: uuid.UUID) -> NoLiveConfig:
    return NoLiveConfig(
        f"client {client_id} has no live CRM config (none, or only soft-deleted ones)",
        hint="Create the client's CRM config first (its CRM type, pipeline and stage; see"
        " docs/push.md): `secrets set` stores a secret in an existing config.",
    )


def live_config(conn: Connection, client_id: uuid.UUID) -> dict[str, Any]:
    """The client's live CRM config (id, crm_type, connection_status), or NoLiveConfig."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(SECRETS["live_config"], {"client_id": client_id}).fetchone()
    if row is None:
        raise _no_live_config(client_id)
    return row


def store(
    conn: Connection, keys: KeyRing, client_id: uuid.UUID, column: str, plaintext: str
) -> Stored:
    """Encrypt ``plaintext`` for the client's ``column`` and store it in its live config (a
    bind parameter: the secret is in no statement's text). New credentials put a config in
    error back to pending, as any write of them does."""
    if column not in STORE:
        raise AgencyCrmError(
            f"{column!r} is not a secret column",
            hint=f"Use one of {', '.join(COLUMNS)}.",
        )
    envelope = keys.encrypt(plaintext, client_id=client_id, column=column)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(STORE[column], {"client_id": client_id, "value": envelope}).fetchone()
    if row is None:
        raise _no_live_config(client_id)
    return Stored(
        client_id=client_id,
        config_id=row["id"],
        crm_type=row["crm_type"],
        column=column,
        key_id=keys.primary,
        connection_status=row["connection_status"],
    )
