"""Bearer tokens of the HTTP API: ``acrm_`` and 43 URL-safe characters (256 random bits).
Only their SHA-256 digests are stored (``crm_private.api_tokens``); a token is shown once,
when it is created."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from agency_crm.queries import SERVICE
from agency_crm.service.crm import digest
from agency_crm.service.errors import Invalid, NotFound

PREFIX = "acrm_"
# How much of a token a listing shows: the prefix and four characters.
SHOWN = len(PREFIX) + 4


@dataclass(frozen=True)
class Scope:
    """Who a request's token lets it act for: one client, or (None) any client it names."""

    token_id: uuid.UUID
    client_id: uuid.UUID | None


def generate() -> str:
    """A new token."""
    return PREFIX + secrets.token_urlsafe(32)


def looks_like_token(value: str) -> bool:
    return value.startswith(PREFIX) and 20 <= len(value) <= 200


def create(
    conn: psycopg.Connection[Any], client_id: uuid.UUID | None, name: str
) -> tuple[str, dict[str, Any]]:
    """Store a new token (its digest) for one client (None: agency-wide); return the token,
    which is never shown again, and its row."""
    if not name or len(name) > 200:
        raise Invalid("a token's name must be 1 to 200 characters", field="name")
    if client_id is not None:
        found = conn.execute(SERVICE["client_name"], {"client_id": client_id}).fetchone()
        if found is None:
            raise NotFound(f"client {client_id} does not exist", code="client_not_found")
    token = generate()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            SERVICE["create_api_token"],
            {
                "client_id": client_id,
                "name": name,
                "token_hash": digest(token),
                "token_prefix": token[:SHOWN],
            },
        )
        row = cur.fetchone()
    assert row is not None
    return token, row


def listing(
    conn: psycopg.Connection[Any], client_id: uuid.UUID | None = None, *, revoked: bool = False
) -> list[dict[str, Any]]:
    """The tokens (of one client), without the revoked ones unless asked."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            SERVICE["list_api_tokens"], {"client_id": client_id, "include_revoked": revoked}
        )
        return cur.fetchall()


def revoke(conn: psycopg.Connection[Any], token_id: uuid.UUID) -> dict[str, Any]:
    """Revoke a token (again: nothing changes); 404 when there is none with this id."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(SERVICE["revoke_api_token"], {"id": token_id})
        row = cur.fetchone()
    if row is None:
        raise NotFound(f"API token {token_id} does not exist", code="token_not_found")
    return row
