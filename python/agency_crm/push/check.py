"""``agency-crm push check``: test each config against its CRM, as the spec's "test connection
by fetching pipelines": the credentials work, and the pipeline, stage, owner and stage map the
config names exist. The result is written to the config (connection_status, last_error)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

import httpx
from psycopg_pool import AsyncConnectionPool

from agency_crm.push.base import ConfigState, Settings
from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import Claimed, Config, Lead, PushContext
from agency_crm.push.ratelimit import RateLimiter
from agency_crm.push.redact import Redactor
from agency_crm.push.runner import CLIENTS, DEFAULT_INTERVALS
from agency_crm.push.store import Store


@dataclass
class CheckResult:
    """What ``push check`` found for one config."""

    client_id: uuid.UUID
    client_name: str
    crm_type: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    pipelines: int = 0
    owners: int = 0
    calls: int = 0


def problems_of(config: Config, pipelines: dict[str, set[str]], owners: set[str]) -> list[str]:
    """Config ids the CRM does not know."""
    found: list[str] = []
    stages = pipelines.get(config.pipeline_id or "", set())
    if config.pipeline_id and config.pipeline_id not in pipelines:
        found.append(f"pipeline_id {config.pipeline_id!r} is not a pipeline of this CRM")
    if not config.pipeline_id and config.crm_type == "pipedrive":
        found.append("pipeline_id is not set (Pipedrive needs it for new deals)")
    if config.stage_id and config.pipeline_id in pipelines and config.stage_id not in stages:
        found.append(
            f"stage_id {config.stage_id!r} is not a stage of pipeline {config.pipeline_id}"
        )
    if not config.stage_id and config.crm_type in ("hubspot", "close"):
        found.append("stage_id is not set (new deals need a first stage)")
    if config.owner_id and config.owner_id not in owners:
        found.append(f"owner_id {config.owner_id!r} is not a user of this CRM")
    known = set().union(*pipelines.values()) if pipelines else set()
    for ours, theirs in sorted(config.stage_map.items()):
        if theirs not in (stages or known):
            found.append(f"stage_map.{ours} {theirs!r} is not a stage of the pipeline")
    return found


async def check(
    dsn: str, client_ids: list[uuid.UUID] | None, settings: Settings, timeout: float = 30.0
) -> list[CheckResult]:
    """Check every live config (or these clients'), recording the outcome on the config."""
    results: list[CheckResult] = []
    async with (
        AsyncConnectionPool(
            dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        ) as pool,
        httpx.AsyncClient(timeout=httpx.Timeout(timeout)) as client,
    ):
        store = Store(pool)
        configs = await store.configs(client_ids, pushable_only=False)
        for config in configs:
            results.append(await check_one(store, client, config, settings))
    return results


async def check_one(
    store: Store, client: httpx.AsyncClient, config: Config, settings: Settings
) -> CheckResult:
    """Fetch pipelines and owners with the config's credentials; compare; record."""
    state = ConfigState(
        config=config,
        limiter=RateLimiter(DEFAULT_INTERVALS[config.crm_type]),
        redactor=Redactor(config.secrets()),
    )
    http = CrmHttp(
        client, config.base_url, _no_headers, state.limiter, state.redactor, asyncio.Semaphore(4)
    )
    # The clients log through a push context; a check has no push, so a placeholder one.
    ctx = PushContext(
        push=Claimed(config.client_id, 0, "check", None, None, None, 0, config.id),
        config=config,
        lead=Lead(uuid.UUID(int=0), None, None, None, None, None, None),
        deal=None,
    )
    crm = CLIENTS[config.crm_type](ctx, http, state, store, settings)
    http.headers = crm.headers
    auth = getattr(crm, "auth", None)
    result = CheckResult(config.client_id, config.client_name, config.crm_type, ok=False)
    try:
        if callable(auth):
            http.auth = auth()
        pipelines, owners = await crm.catalog()
        result.pipelines, result.owners = len(pipelines), len(owners)
        result.problems = problems_of(config, pipelines, owners)
    except CrmError as exc:
        result.problems = [exc.describe()]
    result.ok = not result.problems
    result.calls = http.calls
    await store.record_check(
        config, result.ok, "; ".join(result.problems) or None, http.take_records()
    )
    return result


async def _no_headers() -> dict[str, str]:
    return {}
