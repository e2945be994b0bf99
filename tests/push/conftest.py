"""Push runner tests: a committed database, the CRM sandbox over real HTTP, and helpers to
connect a client to a fake CRM and read back what the fake holds."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import conninfo
from psycopg.types.json import Jsonb

from agency_crm.push.runner import DrainSettings, DrainSummary, drain
from agency_crm.push.settings import Settings
from agency_crm.sandbox import Sandbox
from tests.helpers.fixtures import TLS, Make, Row

CRMS = ("hubspot", "pipedrive", "close")

# Our stages mapped onto the sandbox's seeded stages, per CRM (ids read from the account).
OUR_OPEN_STAGES = ("qualification", "proposal", "negotiation", "verbal_commit", "contract_sent")


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """The three fake CRMs on loopback ports, for the whole session; at the end, no handler
    may have raised (a fake's bug would look like a CRM 500 the runner retries)."""
    with Sandbox() as sb:
        yield sb
        errors = [e for app in sb.apps.values() for e in app.internal_errors]
        assert not errors, f"sandbox handlers raised: {errors[:3]}"


@pytest.fixture
def pushdb(fresh_db: psycopg.Connection[Any]) -> tuple[psycopg.Connection[Any], str]:
    """A fresh database in autocommit mode (the runner reads what the test committed), and
    its URL."""
    fresh_db.commit()
    fresh_db.autocommit = True
    info = fresh_db.info
    url = conninfo.make_conninfo(
        host=info.host,
        port=info.port,
        user=info.user,
        dbname=info.dbname,
        password=info.password or None,
    )
    return fresh_db, url


@pytest.fixture
def pmake(pushdb: tuple[psycopg.Connection[Any], str]) -> Make:
    """Row factories writing committed rows."""
    return Make(pushdb[0])


@dataclass
class Crm:
    """One client's account in a fake CRM."""

    vendor: str
    url: str
    token: str
    account: dict[str, Any]
    config: Row

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        response = httpx.request(method, self.url + path, timeout=10, verify=TLS, **kw)
        response.raise_for_status()
        return response.json() if response.content else None

    def state(self) -> dict[str, Any]:
        return self.admin("GET", "/_sandbox/state", params={"token": self.token})  # type: ignore[no-any-return]

    def fault(self, **rule: Any) -> None:
        self.admin("POST", "/_sandbox/faults", json={"faults": [{"token": self.token, **rule}]})

    def configure(self, **cfg: Any) -> None:
        self.admin("POST", "/_sandbox/config", json={"token": self.token, **cfg})

    # Normalised views of what the fake holds -------------------------------------------
    def contacts(self) -> list[dict[str, Any]]:
        s = self.state()
        if self.vendor == "hubspot":
            return [
                {"id": str(c["id"]), "email": c["properties"].get("email")} for c in s["contacts"]
            ]
        if self.vendor == "pipedrive":
            return [
                {
                    "id": str(p["id"]),
                    "email": next((e["value"] for e in p.get("emails") or []), None),
                    "org_id": p.get("org_id"),
                }
                for p in s["persons"]
            ]
        return [
            {
                "id": c["id"],
                "lead_id": lead["id"],
                "email": next((e["email"] for e in c.get("emails") or []), None),
            }
            for lead in s["leads"]
            for c in lead.get("contacts") or []
        ]

    def deals(self) -> list[dict[str, Any]]:
        s = self.state()
        if self.vendor == "hubspot":
            assoc = {a["deal_id"]: a["contact_id"] for a in s["associations"]}
            return [
                {
                    "id": str(d["id"]),
                    "name": d["properties"].get("dealname"),
                    "pipeline": d["properties"].get("pipeline"),
                    "stage": d["properties"].get("dealstage"),
                    "owner": d["properties"].get("hubspot_owner_id"),
                    "amount": float(d["properties"].get("amount") or 0),
                    "contact_id": str(assoc[str(d["id"])]) if str(d["id"]) in assoc else None,
                    "key": d["properties"].get("agency_crm_key"),
                    "status": {"closedwon": "won", "closedlost": "lost"}.get(
                        d["properties"].get("dealstage") or "", "open"
                    ),
                }
                for d in s["deals"]
            ]
        if self.vendor == "pipedrive":
            return [
                {
                    "id": str(d["id"]),
                    "name": d.get("title"),
                    "pipeline": str(d.get("pipeline_id")),
                    "stage": str(d.get("stage_id")),
                    "owner": str(d.get("owner_id")),
                    "amount": float(d.get("value") or 0),
                    "contact_id": str(d.get("person_id")),
                    "org_id": d.get("org_id"),
                    "key": (d.get("custom_fields") or {}).get("agency_crm_key"),
                    "status": d.get("status"),
                }
                for d in s["deals"]
            ]
        return [
            {
                "id": o["id"],
                "name": o.get("note"),
                "pipeline": o.get("pipeline_id"),
                "stage": o.get("status_id"),
                "owner": o.get("user_id"),
                "amount": (o.get("value") or 0) / 100,
                "contact_id": o.get("contact_id"),
                "lead_id": o.get("lead_id"),
                "key": o.get("custom.cf_agency_crm_key"),
                "status": {"won": "won", "lost": "lost"}.get(o.get("status_type") or "", "open"),
            }
            for o in s["opportunities"]
        ]


def stage_ids(vendor: str, account: dict[str, Any]) -> tuple[str, str, list[str], dict[str, str]]:
    """(pipeline id, first stage id, all open stage ids, won/lost ids) of a sandbox account."""
    pipeline = account["pipelines"][0]
    stages = pipeline["stages"]
    closed: dict[str, str] = {}
    open_ids: list[str] = []
    for st in stages:
        label = (st.get("name") or st.get("label") or str(st["id"])).lower()
        kind = st.get("type")
        if kind in ("won", "lost"):
            closed[kind] = str(st["id"])
        elif str(st["id"]) in ("closedwon", "closedlost"):
            closed["won" if st["id"] == "closedwon" else "lost"] = str(st["id"])
        elif "won" in label and vendor != "pipedrive":
            closed["won"] = str(st["id"])
        elif "lost" in label and vendor != "pipedrive":
            closed["lost"] = str(st["id"])
        else:
            open_ids.append(str(st["id"]))
    return str(pipeline["id"]), open_ids[0], open_ids, closed


def connect_crm(pmake: Make, sandbox: Sandbox, client: Row, vendor: str, **overrides: Any) -> Crm:
    """Create an account in the fake CRM and a live config of the client pointing at it."""
    url = sandbox.urls[vendor]
    token = f"sbx_{vendor}_{uuid.uuid4().hex[:12]}"
    body: dict[str, Any] = {"token": token}
    account = httpx.post(url + "/_sandbox/accounts", json=body, timeout=10, verify=TLS).json()
    pipeline_id, first_stage, open_ids, closed = stage_ids(vendor, account)
    stage_map = {
        ours: open_ids[min(i, len(open_ids) - 1)] for i, ours in enumerate(OUR_OPEN_STAGES)
    }
    if vendor == "close":
        stage_map["closed_won"] = closed["won"]
        stage_map["closed_lost"] = closed["lost"]
    values: dict[str, Any] = {
        "crm_type": vendor,
        "api_base_url": url,
        "pipeline_id": pipeline_id,
        "stage_id": first_stage,
        "owner_id": str(account["users"][0]["id"]),
        "stage_map": Jsonb(stage_map),
        "connection_status": "connected",
    }
    if vendor == "hubspot":
        values["api_key"] = None
        values["oauth_access_token"] = account["token"]
        values["oauth_refresh_token"] = account["refresh_token"]
        values["oauth_expires_at"] = datetime.now(UTC) + timedelta(hours=1)
    else:
        values["api_key"] = account["token"]
    values.update(overrides)
    config = pmake.crm_config(client, **values)
    return Crm(vendor, url, account["token"], account, config)


def fast_settings(url: str, **kw: Any) -> DrainSettings:
    """Drain settings for tests: short backoff, short waits, the sandbox's OAuth app."""
    client_kw = {
        "search_lag": kw.pop("search_lag", timedelta(seconds=0.3)),
        "http_timeout": kw.pop("http_timeout", 0.5),
        "batches": kw.pop("batches", True),
        "hubspot_client_id": "sbx-client",
        "hubspot_client_secret": "sbx-secret",
    }
    defaults: dict[str, Any] = {
        "backoff_base": 0.05,
        "backoff_cap": 1.0,
        "retry_horizon": 5.0,
        "max_seconds": 60.0,
        "client": Settings(**client_kw),
    }
    defaults.update(kw)
    return DrainSettings(database_url=url, **defaults)


def run_drain(url: str, **kw: Any) -> DrainSummary:
    """One `push drain --once`, in-process, over real HTTP."""
    return asyncio.run(drain(fast_settings(url, **kw)))
