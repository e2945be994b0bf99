"""A client's connection to its CRM: credentials, rate limit, catalog (pipelines, stages,
users). ``push check`` uses a connection alone; the runner makes each push through one.

One subclass per CRM (:mod:`agency_crm.push.hubspot`, ``pipedrive``, ``close``), registered in
:mod:`agency_crm.push.crms`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import Config, CrmType, Outcome, PushContext
from agency_crm.push.ratelimit import RateLimiter
from agency_crm.push.redact import Redactor
from agency_crm.push.settings import Settings

if TYPE_CHECKING:
    from agency_crm.push.aio import AioClient
    from agency_crm.push.store import Ended, Store
    from agency_crm.push.sync import Push


@dataclass
class Pipeline:
    """A deal pipeline of the CRM and its stages (id -> label)."""

    id: str
    label: str
    stages: dict[str, str]


@dataclass
class Catalog:
    """What the CRM offers a config to name: pipelines with their stages, and users."""

    pipelines: dict[str, Pipeline]
    users: dict[str, str]  # id -> name or email

    def stages(self, pipeline_id: str | None) -> set[str]:
        """Stage ids of one pipeline, or of every pipeline when it is None or unknown."""
        if pipeline_id in self.pipelines:
            return set(self.pipelines[pipeline_id].stages)
        return {stage for p in self.pipelines.values() for stage in p.stages}


# How long a push waits when its config's secret cannot be decrypted (the key ring is fixed
# by an operator, not by waiting, so not too often).
SECRET_RETRY_SECONDS = 300.0


class Connection:
    """One client's CRM: what every push of a run and every check share."""

    crm_type: ClassVar[CrmType]
    default_base_url: ClassVar[str]
    # The rate-limit window assumed until the CRM's headers tell the real one.
    default_interval: ClassVar[float]
    # Where our external key is written, per CRM entity, when the config does not say.
    default_key_fields: ClassVar[dict[str, str]]
    # The most pushes the runner hands ``push_batch`` at once; 1: each push alone (``push``).
    batch_limit: int = 1

    def __init__(
        self,
        config: Config,
        client: httpx.AsyncClient | AioClient,
        settings: Settings,
        store: Store,
        slots: asyncio.Semaphore,
    ) -> None:
        self.config = config
        self.client = client
        self.settings = settings
        self.store = store
        self.slots = slots
        self.limiter = RateLimiter(self.default_interval)
        self.redactor = Redactor(config.secrets())
        self.lock = asyncio.Lock()
        self.cache: dict[str, Any] = {}
        self._key_locks: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def base_url(self) -> str:
        """The API root: the config's own, else the vendor's public one."""
        return (self.config.api_base_url or self.default_base_url).rstrip("/")

    def key_field(self, entity: str) -> str:
        """Where our external key goes for a CRM entity (contact, deal, person, lead, ...)."""
        return self.config.external_key_fields.get(entity) or self.default_key_fields[entity]

    def update(self, config: Config) -> None:
        """The config as re-read (a later watch round): keep its new secrets redacted too."""
        self.config = config
        for secret in config.secrets():
            self.redactor.add(secret)

    def key_lock(self, entity: str, key: str) -> asyncio.Lock:
        """Serialises, within this run, the pushes that may create one shared record (an
        organisation several leads work for)."""
        return self._key_locks.setdefault((entity, key), asyncio.Lock())

    def calls(self) -> CrmHttp:
        """A recorder for the calls of one push or one check."""
        return CrmHttp(self)

    async def headers(self, http: CrmHttp) -> dict[str, str]:
        """Authentication headers for the next call (``http`` records a token refresh)."""
        raise NotImplementedError

    def require_readable_secrets(self) -> None:
        """A stored secret this run cannot decrypt (its key is not in the key ring, or the
        value was tampered with): the push waits, spending no attempt, and nothing is sent."""
        if self.config.secret_error:
            raise CrmError(
                Outcome.DEFER,
                "secret_unreadable",
                self.config.secret_error,
                retry_after=SECRET_RETRY_SECONDS,
            )

    async def catalog(self, http: CrmHttp) -> Catalog:
        """The CRM's deal pipelines with their stages, and its users (owners)."""
        raise NotImplementedError

    def push(self, ctx: PushContext, http: CrmHttp) -> Push:
        """One push through this connection."""
        raise NotImplementedError

    async def push_batch(self, ctxs: list[PushContext]) -> list[Ended]:
        """Several pushes of this client at once (at most ``batch_limit``, none of them of
        the same lead): each push's outcome, not yet recorded."""
        raise NotImplementedError

    async def whoami(self, http: CrmHttp) -> Identity:
        """Who the credentials act as (the key or token is tested on the way)."""
        raise NotImplementedError

    async def setup(self, http: CrmHttp) -> dict[str, str]:
        """Make the CRM ready for duplicate-proof pushing, idempotently: the property or custom
        field that holds our key on each entity exists. Returns where our key goes, per entity
        (the config's ``external_key_fields``)."""
        raise NotImplementedError

    @staticmethod
    def propose(catalog: Catalog, identity: Identity) -> tuple[str | None, str | None, str | None]:
        """Default pipeline, first stage and owner for a new connection: the CRM's default
        pipeline (else its first), that pipeline's first stage, and the connecting user when
        they can own deals."""
        pipelines = catalog.pipelines
        pipeline = pipelines.get("default") or next(iter(pipelines.values()), None)
        stage = next(iter(pipeline.stages), None) if pipeline else None
        owner = identity.user_id if identity.user_id in catalog.users else None
        return (pipeline.id if pipeline else None, stage, owner)


@dataclass
class Identity:
    """What the CRM says about the credentials: the account and the user they act as."""

    account_id: str | None = None
    account_name: str | None = None
    user_id: str | None = None
    user: str | None = None


# The name of the property or custom field holding our key, as the CRM's users see it.
KEY_FIELD_LABEL = "agency-crm key"


def require(value: str | None, what: str) -> str:
    """A config value the CRM needs, or a not-retryable error naming it."""
    if not value:
        raise CrmError(
            Outcome.FAILED,
            "config_incomplete",
            f"the CRM config has no {what}; set client_crm_configs.{what}",
        )
    return value


def as_int(value: str | None, what: str) -> int | None:
    """A numeric CRM id from text config (Pipedrive ids are integers)."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise CrmError(
            Outcome.FAILED,
            "config_invalid",
            f"client_crm_configs.{what} {value!r} is not a number",
        ) from None


def no_credentials(message: str) -> CrmError:
    """The config lacks the secret its CRM authenticates with: hold its pushes."""
    return CrmError(Outcome.HELD, "no_credentials", message)
