"""``agency-crm push check``: test each config against its CRM, as the spec's "test connection
by fetching pipelines": the credentials work, and the pipeline, stage, owner and stage map the
config names exist. What the check could tell is written to the config (connection_status,
last_error); a CRM that could not be asked (5xx, 429, timeout, connection refused, an answer
we could not read) tells nothing about the config, which is left as it was."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from agency_crm.push import crms
from agency_crm.push.connection import Catalog, Connection
from agency_crm.push.http import CrmError
from agency_crm.push.model import Config, Outcome
from agency_crm.push.settings import Settings
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
    # Whether the outcome was written to the config; False when the CRM could not be asked.
    recorded: bool = True


def refused_credentials(exc: CrmError) -> bool:
    """The CRM refused the config's credentials (401, 403, a failed token refresh, none set):
    the config is in error. Anything else says nothing about the config."""
    return exc.kind is Outcome.HELD or exc.status in (401, 403)


def problems_of(config: Config, catalog: Catalog) -> list[str]:
    """Config ids the CRM does not know."""
    found: list[str] = []
    pipelines = catalog.pipelines
    if config.pipeline_id and config.pipeline_id not in pipelines:
        found.append(f"pipeline_id {config.pipeline_id!r} is not a pipeline of this CRM")
    if not config.pipeline_id and config.crm_type == "pipedrive":
        found.append("pipeline_id is not set (Pipedrive needs it for new deals)")
    stages = catalog.stages(config.pipeline_id)
    if config.stage_id and config.pipeline_id in pipelines and config.stage_id not in stages:
        found.append(
            f"stage_id {config.stage_id!r} is not a stage of pipeline {config.pipeline_id}"
        )
    if not config.stage_id and config.crm_type in ("hubspot", "close"):
        found.append("stage_id is not set (new deals need a first stage)")
    if config.owner_id and config.owner_id not in catalog.users:
        found.append(f"owner_id {config.owner_id!r} is not a user of this CRM")
    for ours, theirs in sorted(config.stage_map.items()):
        if theirs not in stages:
            found.append(f"stage_map.{ours} {theirs!r} is not a stage of the pipeline")
    return found


async def check(
    dsn: str, client_ids: list[uuid.UUID] | None, settings: Settings
) -> list[CheckResult]:
    """Check every live config (or these clients'), recording the outcome on the config."""
    results: list[CheckResult] = []
    async with (
        AsyncConnectionPool(
            dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
        ) as pool,
        crms.http_client(settings) as client,
    ):
        store = Store(pool)
        slots = asyncio.Semaphore(4)
        for config in await store.configs(client_ids, pushable_only=False):
            connection = crms.connect(config, client, settings, store, slots)
            results.append(await check_one(connection))
    return results


async def check_one(connection: Connection) -> CheckResult:
    """Fetch pipelines and owners with the config's credentials; compare; record."""
    config = connection.config
    http = connection.calls()
    result = CheckResult(config.client_id, config.client_name, config.crm_type, ok=False)
    try:
        catalog = await connection.catalog(http)
        result.pipelines, result.owners = len(catalog.pipelines), len(catalog.users)
        result.problems = problems_of(config, catalog)
    except CrmError as exc:
        result.problems = [exc.describe()]
        result.recorded = refused_credentials(exc)
    result.ok = not result.problems
    result.calls = http.calls
    await connection.store.record_check(
        config,
        result.ok,
        "; ".join(result.problems) or None,
        http.take_records(),
        record=result.recorded,
    )
    return result
