"""Connecting a client's CRM and everything the API's /crm endpoints and the CLI's ``crm``
commands do, in one place.

Every database step is a short transaction run as ``role`` (``crm_api`` for the HTTP API; the
CLI runs as its own login) with the setting ``crm.client_id`` naming the one client the call
acts for, so row-level security backs each check made here: another client's rows are not
there to be read or written. No transaction stays open while the CRM is called.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from agency_crm.crypto import KeyRing, SecretError
from agency_crm.push import crms
from agency_crm.push.check import check_one, refused_credentials
from agency_crm.push.connection import Catalog, Connection, Identity
from agency_crm.push.http import CrmError
from agency_crm.push.hubspot import HubSpot
from agency_crm.push.model import Config, CrmType
from agency_crm.push.settings import Settings
from agency_crm.push.store import Store
from agency_crm.push.store import write_logs as write_call_logs
from agency_crm.queries import SERVICE
from agency_crm.service import models
from agency_crm.service.errors import (
    Conflict,
    CrmRefused,
    CrmUnavailable,
    Invalid,
    NotConfigured,
    NotFound,
    ServiceError,
)

if TYPE_CHECKING:
    from agency_crm.service.tokens import Scope

VENDOR = {"hubspot": "HubSpot", "pipedrive": "Pipedrive", "close": "Close"}
T = TypeVar("T")
DEFAULT_AUTHORIZE_URL = "https://app.hubspot.com/oauth/authorize"
# What the connect flow asks HubSpot for: contacts and deals, and their schemas (our key
# property is created on connect).
DEFAULT_SCOPES = (
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.contacts.write",
    "crm.schemas.deals.write",
    "oauth",
)


def digest(value: str) -> bytes:
    """SHA-256 of a token or OAuth state: what the database stores and looks up."""
    return hashlib.sha256(value.encode()).digest()


@dataclass
class OAuthSettings:
    """The agency's HubSpot app (the spec's Configuration table), from the environment:
    AGENCY_CRM_HUBSPOT_CLIENT_ID, _CLIENT_SECRET, _REDIRECT_URI, _SCOPES (comma- or
    space-separated), _AUTHORIZE_URL."""

    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    redirect_uri: str | None = None
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    authorize_url: str = DEFAULT_AUTHORIZE_URL

    @classmethod
    def from_environment(cls) -> OAuthSettings:
        env = os.environ.get
        scopes = (env("AGENCY_CRM_HUBSPOT_SCOPES") or "").replace(",", " ").split()
        return cls(
            client_id=env("AGENCY_CRM_HUBSPOT_CLIENT_ID") or None,
            client_secret=env("AGENCY_CRM_HUBSPOT_CLIENT_SECRET") or None,
            redirect_uri=env("AGENCY_CRM_HUBSPOT_REDIRECT_URI") or None,
            scopes=tuple(scopes) or DEFAULT_SCOPES,
            authorize_url=env("AGENCY_CRM_HUBSPOT_AUTHORIZE_URL") or DEFAULT_AUTHORIZE_URL,
        )


class ScopedPool:
    """What :class:`~agency_crm.push.store.Store` needs of a pool: each connection it takes
    is a transaction as the service's role, acting for one client."""

    def __init__(self, service: CrmService, client_id: uuid.UUID) -> None:
        self.service = service
        self.client_id = client_id

    def connection(self) -> Any:
        return self.service.transaction(self.client_id)


class CrmService:
    """The CRM endpoints of the spec, for one installation (a pool, a key ring, settings)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        keys: KeyRing | None = None,
        settings: Settings | None = None,
        oauth: OAuthSettings | None = None,
        http: httpx.AsyncClient | None = None,
        role: str | None = "crm_api",
        allow_api_base_url: bool = False,
    ) -> None:
        self.pool = pool
        self.keys = keys if keys is not None else KeyRing.from_environment()
        self.oauth = oauth if oauth is not None else OAuthSettings.from_environment()
        self.settings = settings if settings is not None else Settings.from_environment()
        if self.settings.hubspot_client_id is None:
            self.settings.hubspot_client_id = self.oauth.client_id
        if self.settings.hubspot_client_secret is None:
            self.settings.hubspot_client_secret = self.oauth.client_secret
        self.http = http if http is not None else crms.http_client(self.settings)
        self.role = role
        self.allow_api_base_url = allow_api_base_url
        self.slots = asyncio.Semaphore(4)

    async def aclose(self) -> None:
        await self.http.aclose()

    # ------------------------------------------------------------------ transactions

    @asynccontextmanager
    async def transaction(self, client_id: uuid.UUID | None) -> AsyncIterator[AsyncConnection[Any]]:
        """A transaction as the service's role, acting for ``client_id`` (None: for no
        client yet, as the OAuth callback before it has read its state)."""
        async with self.pool.connection() as conn, conn.transaction():
            if self.role:
                await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(self.role)))
            await conn.execute(
                SERVICE["act_for_client"], {"client_id": str(client_id) if client_id else ""}
            )
            yield conn

    async def _rows(
        self, client_id: uuid.UUID | None, query: str, params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            async with self.transaction(client_id) as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(cast(Any, query), params)
                return await cur.fetchall()
        except psycopg.Error as exc:
            raise database_error(exc) from exc

    async def authenticate(self, token: str) -> Scope | None:
        """Who a bearer token lets a request act for (one client, or agency-wide); None when
        the token is unknown or revoked. Only its digest reaches the database."""
        from agency_crm.service.tokens import Scope  # tokens imports digest from here

        rows = await self._rows(
            None, SERVICE["authenticate_api_token"], {"token_hash": digest(token)}
        )
        if not rows:
            return None
        return Scope(token_id=rows[0]["token_id"], client_id=rows[0]["client_id"])

    async def require_client(self, client_id: uuid.UUID) -> str:
        """The client's name; 404 when it does not exist or is not the caller's to see."""
        rows = await self._rows(client_id, SERVICE["client_name"], {"client_id": client_id})
        if not rows:
            raise NotFound(f"client {client_id} does not exist", code="client_not_found")
        return str(rows[0]["name"])

    # ------------------------------------------------------------------ reading

    async def config(self, client_id: uuid.UUID) -> models.CrmConfig:
        """The client's live CRM config, secrets masked; 404 when it has none."""
        await self.require_client(client_id)
        rows = await self._rows(client_id, SERVICE["config"], {"client_id": client_id})
        if not rows:
            raise NotFound(
                f"client {client_id} has no CRM config",
                hint="connect one: POST /api/v1/crm/connect/{hubspot|pipedrive|close}, or "
                f"agency-crm crm connect ... --client {client_id}",
                code="no_crm_config",
            )
        return config_model(rows[0])

    async def meetings(
        self,
        client_id: uuid.UUID,
        *,
        upcoming: bool | None = None,
        next_first: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> models.Page[models.Meeting]:
        """One page of the client's live meetings (upcoming: next first by default; else
        newest first)."""
        await self.require_client(client_id)
        order = bool(upcoming) if next_first is None else next_first
        rows = await self._rows(
            client_id,
            SERVICE["meetings"],
            {
                "client_id": client_id,
                "upcoming": upcoming,
                "next_first": order,
                "page_size": limit + 1,
                "page_offset": offset,
            },
        )
        return page([models.Meeting(**r) for r in rows], limit, offset)

    async def logs(
        self,
        client_id: uuid.UUID,
        *,
        status: str | None = None,
        operation: str | None = None,
        push_id: int | None = None,
        lead_id: uuid.UUID | None = None,
        meeting_id: uuid.UUID | None = None,
        deal_id: uuid.UUID | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> models.Page[models.PushLog]:
        """One page of the client's CRM call log, newest first (payloads were redacted when
        they were written)."""
        await self.require_client(client_id)
        rows = await self._rows(
            client_id,
            SERVICE["logs"],
            {
                "client_id": client_id,
                "status": status,
                "operation": operation,
                "push_id": push_id,
                "lead_id": lead_id,
                "meeting_id": meeting_id,
                "deal_id": deal_id,
                "since": since,
                "until": until,
                "page_size": limit + 1,
                "page_offset": offset,
            },
        )
        return page([models.PushLog(**r) for r in rows], limit, offset)

    # ------------------------------------------------------------------ the CRM's catalog

    async def _connection(self, client_id: uuid.UUID) -> Connection:
        """A connection to the client's CRM with its stored credentials."""
        await self.require_client(client_id)
        rows = await self._rows(client_id, SERVICE["scoped_config"], {})
        if not rows:
            raise NotFound(f"client {client_id} has no CRM config", code="no_crm_config")
        config = Config.from_row(rows[0], self.keys)
        if config.secret_error:
            raise NotConfigured(
                f"the stored credentials of client {client_id} cannot be decrypted: "
                f"{config.secret_error}",
                hint="set AGENCY_CRM_SECRET_KEYS to the key ring they were written with",
                code="secret_unreadable",
            )
        if not any(config.secrets()):  # a list of three, each None when unset
            raise Conflict(
                f"client {client_id}'s {VENDOR[config.crm_type]} is not connected",
                hint=f"connect it: agency-crm crm connect {config.crm_type} --client {client_id}",
                code="not_connected",
            )
        return self._connect(config, client_id)

    def _connect(self, config: Config, client_id: uuid.UUID) -> Connection:
        store = Store(cast(AsyncConnectionPool[Any], ScopedPool(self, client_id)), self.keys)
        return crms.connect(config, self.http, self.settings, store, self.slots)

    async def catalog(self, client_id: uuid.UUID) -> Catalog:
        """The CRM's pipelines with their stages, and its users; the calls are logged."""
        connection = await self._connection(client_id)
        http = connection.calls()
        try:
            return await connection.catalog(http)
        except CrmError as exc:
            raise crm_error(connection.config.crm_type, exc) from exc
        finally:
            await self._log(connection.config, http.take_records())

    async def pipelines(self, client_id: uuid.UUID) -> list[models.Pipeline]:
        catalog = await self.catalog(client_id)
        return [
            models.Pipeline(
                id=p.id,
                label=p.label,
                stages=[models.Stage(id=k, label=v) for k, v in p.stages.items()],
            )
            for p in catalog.pipelines.values()
        ]

    async def stages(self, client_id: uuid.UUID, pipeline_id: str) -> list[models.Stage]:
        catalog = await self.catalog(client_id)
        pipeline = catalog.pipelines.get(pipeline_id)
        if pipeline is None:
            raise NotFound(
                f"pipeline {pipeline_id!r} is not a pipeline of this CRM",
                hint="GET /api/v1/crm/pipelines (agency-crm crm pipelines) lists them",
                code="pipeline_not_found",
            )
        return [models.Stage(id=k, label=v) for k, v in pipeline.stages.items()]

    async def users(self, client_id: uuid.UUID) -> list[models.User]:
        catalog = await self.catalog(client_id)
        return [models.User(id=k, name=v) for k, v in catalog.users.items()]

    async def test(self, client_id: uuid.UUID) -> models.TestResult:
        """The spec's "test connection": the credentials work, and the pipeline, stage, owner
        and stage map the config names exist; the outcome is written to the config."""
        connection = await self._connection(client_id)
        result = await check_one(connection)
        if not result.recorded:
            raise CrmUnavailable(
                f"{VENDOR[connection.config.crm_type]} could not be asked: "
                + "; ".join(result.problems),
                hint="try again later",
            )
        return models.TestResult(
            ok=result.ok,
            connection_status="connected" if result.ok else "error",
            problems=result.problems,
            pipelines=result.pipelines,
            users=result.owners,
        )

    async def update_config(
        self, client_id: uuid.UUID, update: models.ConfigUpdate
    ) -> models.CrmConfig:
        """Change the pipeline, stage, owner or stage map, each checked against the CRM first:
        an id the CRM does not know is a 422 naming the field, and nothing is saved. (A stage
        map key that is not one of our deal stages never gets here: the model refuses it.)"""
        changes = update.model_dump(exclude_unset=True)
        connection = await self._connection(client_id)
        config = connection.config
        pipeline = changes.get("pipeline_id", config.pipeline_id)
        if changes:
            http = connection.calls()
            try:
                catalog = await connection.catalog(http)
            except CrmError as exc:
                raise crm_error(config.crm_type, exc) from exc
            finally:
                await self._log(config, http.take_records())
            check_changes(changes, pipeline, catalog)
        try:
            async with self.transaction(client_id) as conn:
                await conn.execute(
                    SERVICE["update_config"],
                    {
                        "client_id": client_id,
                        "set_pipeline": "pipeline_id" in changes,
                        "pipeline_id": changes.get("pipeline_id"),
                        "set_stage": "stage_id" in changes,
                        "stage_id": changes.get("stage_id"),
                        "set_owner": "owner_id" in changes,
                        "owner_id": changes.get("owner_id"),
                        "set_stage_map": "stage_map" in changes,
                        "stage_map": Jsonb(changes.get("stage_map") or {}),
                    },
                )
        except psycopg.Error as exc:
            raise database_error(exc) from exc
        return await self.config(client_id)

    # ------------------------------------------------------------------ connecting

    def base_url(self, api_base_url: str | None, *, trusted: bool) -> str | None:
        """An API root instead of the vendor's: refused from an untrusted caller unless the
        server allows it (it would make this server call any address with the key)."""
        if api_base_url is None:
            return None
        if not trusted and not self.allow_api_base_url:
            raise Invalid(
                "api_base_url is not accepted by this server",
                hint="start the API with --allow-api-base-url to connect to a sandbox",
                field="api_base_url",
            )
        try:
            parts = urlsplit(api_base_url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:  # "http://[", a port that is not a number or out of range
            parts, port_ok = urlsplit(""), False
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or not port_ok
            or parts.query
            or parts.fragment
        ):
            raise Invalid(
                f"api_base_url {api_base_url!r} is not an http(s) URL",
                field="api_base_url",
            )
        return api_base_url.rstrip("/")

    async def _refuse_other_crm(self, client_id: uuid.UUID, crm_type: CrmType) -> None:
        """One CRM per client: refuse before calling the CRM (the SQL refuses again on save)."""
        rows = await self._rows(client_id, SERVICE["config"], {"client_id": client_id})
        if rows and rows[0]["is_active"] and rows[0]["crm_type"] != crm_type:
            other = rows[0]["crm_type"]
            raise Conflict(
                f"client {client_id} is already connected to {VENDOR[other]}: a client has one CRM",
                hint=f"disconnect {VENDOR[other]} first (agency-crm crm disconnect --client "
                f"{client_id}, or DELETE /api/v1/crm/disconnect), then connect "
                f"{VENDOR[crm_type]}",
                code="crm_already_connected",
            )

    async def connect_key(
        self,
        client_id: uuid.UUID,
        crm_type: CrmType,
        api_key: str,
        api_base_url: str | None = None,
        *,
        trusted: bool = False,
    ) -> models.ConnectResult:
        """Connect Pipedrive or Close with an API key (or HubSpot with a private-app token):
        the key is tested against the CRM (who it acts as, the pipelines, the users) and
        saved encrypted only when it works; the CRM is set up for duplicate-proof pushing;
        the client's history is queued for it."""
        base = self.base_url(api_base_url, trusted=trusted)
        name = await self.require_client(client_id)
        await self._refuse_other_crm(client_id, crm_type)
        config = blank_config(client_id, name, crm_type, base)
        config.api_key = api_key
        return await self._finish_connect(config, secrets={"api_key": api_key})

    async def start_hubspot(
        self,
        client_id: uuid.UUID,
        api_base_url: str | None = None,
        *,
        redirect_uri: str | None = None,
        trusted: bool = False,
    ) -> models.OAuthStart:
        """Start HubSpot's OAuth flow: a random single-use state bound to the client (its
        digest stored, expiring in ten minutes), and the authorisation URL with the app's
        client id, redirect URI and scopes."""
        base = self.base_url(api_base_url, trusted=trusted)
        redirect = redirect_uri or self.oauth.redirect_uri
        if not self.oauth.client_id or not self.oauth.client_secret or not redirect:
            raise NotConfigured(
                "HubSpot OAuth is not configured on this server",
                hint="set AGENCY_CRM_HUBSPOT_CLIENT_ID, AGENCY_CRM_HUBSPOT_CLIENT_SECRET and "
                "AGENCY_CRM_HUBSPOT_REDIRECT_URI (or connect with a private-app token)",
            )
        await self.require_client(client_id)
        await self._refuse_other_crm(client_id, "hubspot")
        state = secrets.token_urlsafe(32)
        rows = await self._rows(
            client_id,
            SERVICE["begin_oauth"],
            {
                "client_id": client_id,
                "state_hash": digest(state),
                "redirect_uri": redirect,
                "api_base_url": base,
            },
        )
        authorize = f"{base}/oauth/authorize" if base else self.oauth.authorize_url
        query = urlencode(
            {
                "client_id": self.oauth.client_id,
                "redirect_uri": redirect,
                "scope": " ".join(self.oauth.scopes),
                "state": state,
            }
        )
        return models.OAuthStart(
            authorization_url=f"{authorize}?{query}", expires_at=rows[0]["expires_at"]
        )

    async def finish_hubspot(
        self,
        *,
        code: str | None,
        state: str | None,
        error: str | None = None,
        error_description: str | None = None,
        client_id: uuid.UUID | None = None,
    ) -> models.ConnectResult:
        """The OAuth callback: the state is checked (unknown, reused, expired or another
        client's: refused), the code exchanged for tokens, the tokens saved encrypted with
        their expiry and the portal id, the config marked connected."""
        if not state:
            raise Invalid("the callback has no state parameter", field="state")
        rows = await self._rows(
            client_id,
            SERVICE["consume_oauth"],
            {"state_hash": digest(state), "client_id": client_id},
        )
        outcome = rows[0]["outcome"]
        if outcome != "ok":
            raise ServiceError(
                {
                    "unknown": "the OAuth state is unknown (or not this client's)",
                    "reused": "the OAuth state was already used",
                    "expired": "the OAuth state has expired (a flow has ten minutes)",
                }[outcome],
                hint="start again: POST /api/v1/crm/connect/hubspot, or agency-crm crm connect "
                "hubspot",
                code=f"oauth_state_{outcome}",
                field="state",
            )
        owner: uuid.UUID = rows[0]["client_id"]
        if error:
            raise CrmRefused(
                f"HubSpot did not grant access: {error}"
                + (f" ({error_description})" if error_description else ""),
                hint="start again and approve the app on HubSpot's consent page",
                code="oauth_denied" if error == "access_denied" else "oauth_error",
            )
        if not code:
            raise Invalid("the callback has no code parameter", field="code")
        name = await self.require_client(owner)
        await self._refuse_other_crm(owner, "hubspot")
        config = blank_config(owner, name, "hubspot", rows[0]["api_base_url"])
        connection = cast(HubSpot, self._connect(config, owner))
        http = connection.calls()
        try:
            tokens = await connection.exchange_code(http, code, rows[0]["redirect_uri"])
        except CrmError as exc:
            await self._log(config, http.take_records())
            raise crm_error("hubspot", exc, what="authorisation code") from exc
        config.oauth_access_token = tokens.access_token
        config.oauth_refresh_token = tokens.refresh_token
        config.oauth_expires_at = tokens.expires_at
        return await self._finish_connect(
            config,
            secrets={
                "oauth_access_token": tokens.access_token,
                "oauth_refresh_token": tokens.refresh_token,
            },
            portal_id=tokens.portal_id,
            logs=http.take_records(),
        )

    async def _finish_connect(
        self,
        config: Config,
        *,
        secrets: dict[str, str],
        portal_id: str | None = None,
        logs: Sequence[Any] = (),
    ) -> models.ConnectResult:
        """Test the credentials (who, pipelines, users), set the CRM up, save, backfill."""
        client_id = config.client_id
        connection = self._connect(config, client_id)
        http = connection.calls()
        records = list(logs)
        try:
            identity: Identity = await connection.whoami(http)
            catalog = await connection.catalog(http)
            key_fields = await connection.setup(http)
        except CrmError as exc:
            records += http.take_records()
            await self._log(config, records)
            raise crm_error(config.crm_type, exc) from exc
        records += http.take_records()
        pipeline, stage, owner = connection.propose(catalog, identity)
        seal = self.keys.encrypt
        try:
            sealed = {
                column: seal(value, client_id=client_id, column=column)
                for column, value in secrets.items()
            }
        except SecretError as exc:
            # The key ring (AGENCY_CRM_SECRET_KEYS) is the server's to fix, not the caller's.
            raise NotConfigured(
                f"the credentials cannot be stored: {exc.message}",
                hint=exc.hint,
                code="secret_key_missing",
            ) from exc
        if config.crm_type == "hubspot":
            portal_id = portal_id or identity.account_id
        try:
            async with self.transaction(client_id) as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    SERVICE["save_connection"],
                    {
                        "client_id": client_id,
                        "crm_type": config.crm_type,
                        "api_key": sealed.get("api_key"),
                        "oauth_access_token": sealed.get("oauth_access_token"),
                        "oauth_refresh_token": sealed.get("oauth_refresh_token"),
                        "oauth_expires_at": config.oauth_expires_at,
                        "hubspot_portal_id": portal_id,
                        "api_base_url": config.api_base_url,
                        "external_key_fields": Jsonb(key_fields),
                        "pipeline_id": pipeline,
                        "stage_id": stage,
                        "owner_id": owner,
                    },
                )
                saved = await cur.fetchone()
                assert saved is not None
                config.id = saved["config_id"]
                await cur.execute(SERVICE["backfill"], {"client_id": client_id, "since": None})
                backfill = await cur.fetchone()
                assert backfill is not None
                await write_logs(conn, config, records)
        except psycopg.Error as exc:
            raise database_error(exc) from exc
        return models.ConnectResult(
            config=await self.config(client_id),
            replaced=saved["replaced"],
            proposed=models.Proposed(pipeline_id=pipeline, stage_id=stage, owner_id=owner),
            backfill=models.Backfill(meetings=backfill["meetings"], deals=backfill["deals"]),
        )

    async def disconnect(self, client_id: uuid.UUID) -> models.DisconnectResult:
        """Soft disconnect: inactive, disconnected, credentials forgotten; pending and held
        pushes skipped."""
        await self.require_client(client_id)
        rows = await self._rows(client_id, SERVICE["disconnect"], {"client_id": client_id})
        return models.DisconnectResult(
            config=await self.config(client_id), skipped_pushes=rows[0]["skipped"]
        )

    async def backfill(
        self, client_id: uuid.UUID, since: datetime | None = None
    ) -> models.Backfill:
        """Queue the client's live meetings and deals the CRM has not got yet, once each."""
        await self.require_client(client_id)
        rows = await self._rows(
            client_id, SERVICE["backfill"], {"client_id": client_id, "since": since}
        )
        return models.Backfill(meetings=rows[0]["meetings"], deals=rows[0]["deals"])

    async def _log(self, config: Config, records: Sequence[Any]) -> None:
        """Write CRM calls made outside a push to the audit log (already redacted)."""
        if not records:
            return
        try:
            async with self.transaction(config.client_id) as conn:
                await write_logs(conn, config, records)
        except psycopg.Error as exc:
            raise database_error(exc) from exc


async def write_logs(conn: AsyncConnection[Any], config: Config, records: Sequence[Any]) -> None:
    """The audit rows of calls made for a config (its id None when it was not saved yet)."""
    await write_call_logs(conn, config.client_id, config.id, records)


def blank_config(
    client_id: uuid.UUID, client_name: str, crm_type: CrmType, api_base_url: str | None
) -> Config:
    """A config being connected: no id yet (audit rows of its calls name none)."""
    return Config(
        id=cast(uuid.UUID, None),
        client_id=client_id,
        client_name=client_name,
        crm_type=crm_type,
        api_key=None,
        oauth_access_token=None,
        oauth_refresh_token=None,
        oauth_expires_at=None,
        pipeline_id=None,
        stage_id=None,
        owner_id=None,
        api_base_url=api_base_url,
        stage_map={},
        external_key_fields={},
    )


def config_model(row: dict[str, Any]) -> models.CrmConfig:
    """A config row (the ``config`` query) as the API shows it, secrets masked."""
    mask: Literal["********"] = models.MASK
    return models.CrmConfig(
        **{k: v for k, v in row.items() if not k.startswith("has_") and k != "oauth_expires_at"},
        credentials=models.Credentials(
            api_key=mask if row["has_api_key"] else None,
            oauth_access_token=mask if row["has_oauth_access_token"] else None,
            oauth_refresh_token=mask if row["has_oauth_refresh_token"] else None,
            oauth_expires_at=row["oauth_expires_at"],
        ),
    )


def page(items: list[T], limit: int, offset: int) -> models.Page[T]:
    """A page of ``limit`` items from ``limit + 1`` fetched (the extra one says there is more)."""
    more = len(items) > limit
    return models.Page(
        items=items[:limit],
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )


def check_changes(changes: dict[str, Any], pipeline: str | None, catalog: Catalog) -> None:
    """Refuse (422, naming the field) an id the CRM does not know."""
    if changes.get("pipeline_id") is not None and changes["pipeline_id"] not in catalog.pipelines:
        raise Invalid(
            f"pipeline_id {changes['pipeline_id']!r} is not a pipeline of this CRM",
            hint="GET /api/v1/crm/pipelines lists them",
            field="pipeline_id",
        )
    stages = catalog.stages(pipeline)
    if changes.get("stage_id") is not None and changes["stage_id"] not in stages:
        raise Invalid(
            f"stage_id {changes['stage_id']!r} is not a stage of pipeline {pipeline}",
            hint=f"GET /api/v1/crm/stages/{pipeline} lists them",
            field="stage_id",
        )
    if changes.get("owner_id") is not None and changes["owner_id"] not in catalog.users:
        raise Invalid(
            f"owner_id {changes['owner_id']!r} is not a user of this CRM",
            hint="GET /api/v1/crm/users lists them",
            field="owner_id",
        )
    for ours, theirs in sorted((changes.get("stage_map") or {}).items()):
        if theirs not in stages:
            raise Invalid(
                f"stage_map.{ours} {theirs!r} is not a stage of pipeline {pipeline}",
                field=f"stage_map.{ours}",
            )


def crm_error(crm_type: str, exc: CrmError, what: str = "credentials") -> ServiceError:
    """A CRM's refusal (400, with its reason) or unavailability (502). Only a refusal of the
    credentials (401, 403) is said to be one: another 4xx (a missing endpoint, a field the CRM
    will not create) would send the user to check a key that works."""
    vendor = VENDOR.get(crm_type, crm_type)
    client_error = exc.status is not None and 400 <= exc.status < 500
    if exc.status == 429:
        return CrmUnavailable(
            f"{vendor} is rate-limiting us: {exc.describe()}", hint="try again shortly"
        )
    if refused_credentials(exc) or (client_error and what != "credentials"):
        return CrmRefused(
            f"{vendor} refused the {what}: {exc.describe()}",
            hint="check the key or token (nothing was saved)",
        )
    if client_error:
        return CrmRefused(
            f"{vendor} refused a request: {exc.describe()}",
            hint="the CRM's answer says why (the call is in the client's CRM call log); "
            "nothing was saved",
        )
    return CrmUnavailable(
        f"{vendor} could not be asked: {exc.describe()}",
        hint="nothing was saved; try again later",
    )


def database_error(exc: psycopg.Error) -> ServiceError:
    """What a refusal by the database means to a caller."""
    diag = exc.diag
    message = diag.message_primary or str(exc)
    hint = diag.message_hint
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return Conflict(message, hint=hint, code="crm_already_connected")
    if isinstance(exc, psycopg.errors.NoDataFound):
        return NotFound(message, hint=hint, code="no_crm_config")
    if isinstance(exc, psycopg.errors.ObjectNotInPrerequisiteState):
        return Conflict(message, hint=hint, code="not_connected")
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return NotConfigured(
            f"the database refused this server's role: {message}",
            hint="grant the login the role it runs as (GRANT crm_api TO <login>), and run "
            "agency-crm db upgrade",
            code="database_privileges",
        )
    raise exc
