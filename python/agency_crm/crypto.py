"""The CRM secrets (API keys, OAuth tokens) as stored: AES-256-GCM envelopes.

A secret column of ``crm.client_crm_configs`` holds ``acrm:v1:<key id>:<nonce>:<ciphertext>``
(nonce and ciphertext base64url without padding; the ciphertext ends with GCM's 16-byte tag),
and a CHECK refuses anything else. The associated data binds the format version, the key id,
the client and the column, so a value copied into another client's row, or into another
column, fails to decrypt, as does any changed character.

Keys come from the environment as a key ring, ``AGENCY_CRM_SECRET_KEYS``: entries
``<key id>:<base64 of 32 bytes>``, separated by commas or whitespace. The first encrypts; all
decrypt, so a new key goes first, ``agency-crm secrets rotate`` re-encrypts every row under it,
and the old key can then be removed. Decryption happens only in Python, where the secret is
used: the database never sees a plaintext secret, nor a key.

Errors never contain a secret or a key, only key ids, client ids and column names.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets as _random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agency_crm.errors import AgencyCrmError

ENV_VAR = "AGENCY_CRM_SECRET_KEYS"
VERSION = "v1"
PREFIX = f"acrm:{VERSION}:"
# The secret columns, by table. The CHECKs of migration 0014 and the column grants
# (sql/access.sql) name the same ones; a catalog test keeps them equal.
SECRET_COLUMNS: dict[str, tuple[str, ...]] = {
    "client_crm_configs": ("api_key", "oauth_access_token", "oauth_refresh_token"),
}
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
ENVELOPE = re.compile(
    r"^acrm:v1:(?P<key_id>[A-Za-z0-9_-]{1,32}):(?P<nonce>[A-Za-z0-9_-]{16}):"
    r"(?P<ciphertext>[A-Za-z0-9_-]{22,})$"
)
KEY_BYTES = 32
NONCE_BYTES = 12
GENERATE_HINT = f"`agency-crm secrets generate-key` prints an entry for {ENV_VAR}"


class SecretError(AgencyCrmError):
    """A secret cannot be encrypted or decrypted; the message names no secret and no key."""


class NoKeyError(SecretError):
    """No key ring is configured: secrets can be neither written nor read."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _column(table: str, column: str) -> str:
    if column not in SECRET_COLUMNS.get(table, ()):
        raise ValueError(f"crm.{table}.{column} is not a secret column")
    return f"crm.{table}.{column}"


def _associated_data(key_id: str, client_id: uuid.UUID | str, qualified_column: str) -> bytes:
    return f"acrm|{VERSION}|{key_id}|{uuid.UUID(str(client_id))}|{qualified_column}".encode()


def is_envelope(value: str | None) -> bool:
    """Whether ``value`` has the shape of a stored secret (it may still fail to decrypt)."""
    return value is not None and ENVELOPE.match(value) is not None


def key_id_of(value: str) -> str | None:
    """The key id an envelope was encrypted under; None for a value that is not one."""
    match = ENVELOPE.match(value)
    return match["key_id"] if match else None


def generate_entry(key_id: str | None = None) -> str:
    """A new key ring entry, ``<key id>:<base64 key>``: a fresh random 256-bit key."""
    if key_id is None:
        key_id = f"k{datetime.now(UTC):%Y%m%d}-{_random.token_hex(3)}"
    if not KEY_ID.match(key_id):
        raise SecretError(
            f"key id {key_id!r} is not 1-32 letters, digits, '-' or '_'",
            hint="Choose an id such as k2026-11 (it is stored beside every secret).",
        )
    return f"{key_id}:{base64.b64encode(os.urandom(KEY_BYTES)).decode('ascii')}"


@dataclass(frozen=True)
class KeyRing:
    """The keys secrets are encrypted under: the first encrypts, every one decrypts."""

    keys: tuple[tuple[str, bytes], ...] = ()

    @classmethod
    def parse(cls, text: str, *, source: str = ENV_VAR) -> KeyRing:
        """A key ring from ``<key id>:<base64 key>`` entries, separated by commas or
        whitespace. Errors say which entry is wrong, never what it holds."""
        keys: list[tuple[str, bytes]] = []
        entries = [e for e in re.split(r"[\s,]+", text.strip()) if e]
        for number, entry in enumerate(entries, start=1):
            key_id, sep, encoded = entry.partition(":")
            if not sep or not KEY_ID.match(key_id):
                raise SecretError(
                    f"{source}: entry {number} is not <key id>:<base64 key> with a key id of"
                    " 1-32 letters, digits, '-' or '_'",
                    hint=GENERATE_HINT,
                )
            try:
                key = base64.b64decode(
                    encoded.replace("-", "+").replace("_", "/") + "=" * (-len(encoded) % 4),
                    validate=True,
                )
            except (binascii.Error, ValueError):
                key = b""
            if len(key) != KEY_BYTES:
                raise SecretError(
                    f"{source}: the key of entry {number} ({key_id}) is not the base64 of"
                    f" {KEY_BYTES} bytes",
                    hint=GENERATE_HINT,
                )
            if any(key_id == known for known, _ in keys):
                raise SecretError(
                    f"{source}: key id {key_id} is given twice",
                    hint="Each key needs its own id: the id stored with a secret picks its key.",
                )
            keys.append((key_id, key))
        return cls(tuple(keys))

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> KeyRing:
        """The key ring of ``AGENCY_CRM_SECRET_KEYS`` (empty when it is unset)."""
        return cls.parse((environ if environ is not None else os.environ).get(ENV_VAR, ""))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(key_id for key_id, _ in self.keys)

    @property
    def primary(self) -> str:
        """The id of the key new secrets are encrypted under."""
        if not self.keys:
            raise NoKeyError(
                f"no encryption key is configured: {ENV_VAR} is unset or empty",
                hint=GENERATE_HINT + "; set it, the same everywhere agency-crm runs.",
            )
        return self.keys[0][0]

    def encrypt(
        self,
        plaintext: str,
        *,
        client_id: uuid.UUID | str,
        column: str,
        table: str = "client_crm_configs",
    ) -> str:
        """The envelope of ``plaintext`` for this client's ``column``, under the first key."""
        qualified = _column(table, column)
        if not isinstance(plaintext, str) or plaintext == "":
            raise SecretError(
                f"{qualified} of client {client_id}: an empty value is not a secret",
                hint="Store NULL for no secret.",
            )
        key_id = self.primary
        key = self.keys[0][1]
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(
            nonce, plaintext.encode(), _associated_data(key_id, client_id, qualified)
        )
        return f"{PREFIX}{key_id}:{_b64encode(nonce)}:{_b64encode(sealed)}"

    def decrypt(
        self,
        envelope: str,
        *,
        client_id: uuid.UUID | str,
        column: str,
        table: str = "client_crm_configs",
    ) -> str:
        """The plaintext of this client's ``column``; SecretError when it cannot be read."""
        qualified = _column(table, column)
        where = f"{qualified} of client {client_id}"
        match = ENVELOPE.match(envelope) if isinstance(envelope, str) else None
        if match is None:
            raise SecretError(
                f"{where} is not an encrypted value (expected {PREFIX}<key id>:...)",
                hint="Write secrets through agency-crm, which encrypts them; a value written"
                " by hand must be written again.",
            )
        key_id = match["key_id"]
        key = dict(self.keys).get(key_id)
        if key is None:
            if not self.keys:
                raise NoKeyError(
                    f"{where} is encrypted under key {key_id}, and no key is configured"
                    f" ({ENV_VAR} is unset or empty)",
                    hint=f"Set {ENV_VAR} to the key ring the secret was written with.",
                )
            raise SecretError(
                f"{where} is encrypted under key {key_id}, which {ENV_VAR} does not hold"
                f" (it holds {', '.join(self.key_ids)})",
                hint=f"Add key {key_id} back to {ENV_VAR} (after the new one), run"
                " `agency-crm secrets rotate`, then remove it.",
            )
        try:
            nonce = _b64decode(match["nonce"])
            sealed = _b64decode(match["ciphertext"])
            plain = AESGCM(key).decrypt(
                nonce, sealed, _associated_data(key_id, client_id, qualified)
            )
            return plain.decode()
        except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
            raise SecretError(
                f"{where} fails to decrypt under key {key_id}: it was changed, or it was"
                " written for another client or column",
                hint="Connect the CRM again to store a fresh secret.",
            ) from None

    def needs_rotation(self, envelope: str) -> bool:
        """Whether a stored value is under a key other than the first."""
        return key_id_of(envelope) != self.primary
