"""Pipedrive: API v2 for persons, organizations, deals and search; v1 for users.

The token goes in the ``x-api-token`` header. Pipedrive has no unique fields, so our external key
is written into a custom field and, whenever an earlier create's outcome is unknown, searched for
before anything is created again.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agency_crm.push.connection import (
    KEY_FIELD_LABEL,
    Catalog,
    Connection,
    Identity,
    Pipeline,
    as_int,
    no_credentials,
    require,
)
from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import DealState, Outcome, PushContext
from agency_crm.push.sync import Push


def first_item_id(body: Any) -> str | None:
    """The id of the first hit of a v2 search response."""
    items = ((body or {}).get("data") or {}).get("items") or []
    for entry in items:
        item = entry.get("item") or {}
        if "id" in item:
            return str(item["id"])
    return None


class Pipedrive(Connection):
    """A client's Pipedrive: API token, pipelines with their stages, users."""

    crm_type = "pipedrive"
    default_base_url = "https://api.pipedrive.com"
    default_interval = 2.0
    default_key_fields: ClassVar[dict[str, str]] = {
        "person": "agency_crm_key",
        "deal": "agency_crm_key",
        "organization": "agency_crm_key",
    }

    def push(self, ctx: PushContext, http: CrmHttp) -> PipedrivePush:
        return PipedrivePush(self, ctx, http)

    @property
    def org_ids(self) -> dict[str, str]:
        """Our organisation key -> Pipedrive organisation id, as learned in this run (filled
        under ``key_lock("organisation", key)``): each company is matched once per run."""
        orgs: dict[str, str] = self.cache.setdefault("organisations", {})
        return orgs

    async def headers(self, http: CrmHttp) -> dict[str, str]:
        """The API token header."""
        self.require_readable_secrets()
        token = self.config.api_key
        if not token:
            raise no_credentials("the Pipedrive config has no api_key")
        return {"x-api-token": token}

    async def catalog(self, http: CrmHttp) -> Catalog:
        """GET /api/v2/pipelines, /api/v2/stages per pipeline (cursor pages), /v1/users."""
        pipelines: dict[str, Pipeline] = {}
        for pipeline in await self.pages(http, "get_pipelines", "/api/v2/pipelines", {}):
            stages = await self.pages(
                http, "get_stages", "/api/v2/stages", {"pipeline_id": str(pipeline["id"])}
            )
            pipelines[str(pipeline["id"])] = Pipeline(
                str(pipeline["id"]),
                str(pipeline.get("name") or pipeline["id"]),
                {str(st["id"]): str(st.get("name") or st["id"]) for st in stages},
            )
        users: dict[str, str] = {}
        start = 0
        while True:
            page = await http.call(
                "get_users", "GET", "/v1/users", params={"start": start, "limit": 100}
            )
            body = page.body or {}
            for user in body.get("data") or []:
                users[str(user["id"])] = str(user.get("email") or user.get("name") or user["id"])
            more = (body.get("additional_data") or {}).get("pagination") or {}
            if not more.get("more_items_in_collection"):
                return Catalog(pipelines, users)
            start = int(more.get("next_start") or start + 100)

    async def whoami(self, http: CrmHttp) -> Identity:
        """GET /v1/users/me: the company and the user the API token belongs to."""
        response = await http.call("get_me", "GET", "/v1/users/me")
        me = (response.body or {}).get("data") or {}
        return Identity(
            account_id=str(me["company_id"]) if me.get("company_id") is not None else None,
            account_name=me.get("company_name") or me.get("company_domain"),
            user_id=str(me["id"]) if me.get("id") is not None else None,
            user=me.get("email") or me.get("name"),
        )

    async def setup(self, http: CrmHttp) -> dict[str, str]:
        """A text custom field named "agency-crm key" on persons, organisations and deals:
        found by name in /v1/{entity}Fields, created when missing. Returns each field's key
        (a 40-character hash, which custom_fields are written and searched by)."""
        fields: dict[str, str] = {}
        for entity, path in (
            ("person", "/v1/personFields"),
            ("organization", "/v1/organizationFields"),
            ("deal", "/v1/dealFields"),
        ):
            key = None
            start = 0
            while key is None:
                page = await http.call(
                    f"get_{entity}_fields", "GET", path, params={"start": start, "limit": 500}
                )
                body = page.body or {}
                found = body.get("data") or []
                key = next((str(f["key"]) for f in found if f.get("name") == KEY_FIELD_LABEL), None)
                more = (body.get("additional_data") or {}).get("pagination") or {}
                if not more.get("more_items_in_collection") or not found:
                    break
                start = int(more.get("next_start") or start + len(found))
            if key is None:
                created = await http.call(
                    f"create_{entity}_field",
                    "POST",
                    path,
                    json_body={"name": KEY_FIELD_LABEL, "field_type": "varchar"},
                )
                key = str(((created.body or {}).get("data") or {})["key"])
            fields[entity] = key
        return fields

    @staticmethod
    async def pages(
        http: CrmHttp, operation: str, path: str, params: dict[str, str | int]
    ) -> list[dict[str, Any]]:
        """Every item of a v2 list endpoint, following ``additional_data.next_cursor``."""
        items: list[dict[str, Any]] = []
        query: dict[str, str | int] = {**params, "limit": 500}
        while True:
            page = await http.call(operation, "GET", path, params=query)
            body = page.body or {}
            items.extend(body.get("data") or [])
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return items
            query = {**params, "limit": 500, "cursor": cursor}


class PipedrivePush(Push):
    """One push into Pipedrive."""

    connection: Pipedrive

    async def sync(self) -> None:
        org_id = await self.ensure_org()
        person_id = await self.ensure_person(org_id)
        if self.ctx.deal:
            await self.ensure_deal(person_id, org_id)

    async def search(self, operation: str, kind: str, term: str, fields: str) -> str | None:
        """GET /api/v2/{kind}/search with an exact match; the first hit's id."""
        response = await self.http.call(
            operation,
            "GET",
            f"/api/v2/{kind}/search",
            params={"term": term, "fields": fields, "exact_match": "true", "limit": 2},
        )
        return first_item_id(response.body)

    async def create(self, operation: str, kind: str, body: dict[str, Any]) -> str:
        """POST /api/v2/{kind}; the new id."""
        response = await self.http.call(operation, "POST", f"/api/v2/{kind}", json_body=body)
        data = (response.body or {}).get("data") or {}
        if "id" not in data:
            raise CrmError(Outcome.RETRY, "malformed_response", f"{operation} returned no id")
        return str(data["id"])

    async def ensure_org(self) -> str | None:
        """The organisation of the lead's company: known (in this run, or in our id map), or
        matched once per company per run (:meth:`match_org`), under ``key_lock``, by the
        first push that needs it; every later push of the run takes it from the cache."""
        key = self.ctx.lead.org_key
        if key is None:
            return None
        orgs = self.connection.org_ids
        if (cached := orgs.get(key)) is not None:
            return cached
        if known := self.ids.known("organisation", key):
            orgs[key] = known
            return known
        # Leads of one company share the organisation: one push at a time decides.
        async with self.connection.key_lock("organisation", key):
            if (cached := orgs.get(key)) is None:
                cached = orgs[key] = await self.match_org(key)
            return cached

    async def match_org(self, key: str) -> str:
        """The organisation's id as our map now says (another runner may have stored it since
        the push began), else found by our key when an earlier create of it may have landed,
        else created. No search by name: one made by hand is not adopted (docs/push.md)."""
        ext = await self.ids.refresh("organisation", key)
        if ext is not None and ext.crm_id is not None and ext.create_sent_at is None:
            return ext.crm_id
        org_id = ext.crm_id if ext else None
        if org_id is None and self.ids.unknown_outcome("organisation", key):
            org_id = await self.search("find_org_by_key", "organizations", key, "custom_fields")
        if org_id is None:
            company = (self.ctx.lead.company or "").strip()
            org_id = await self.ids.claim_create(
                "organisation", key, None, self.unknown_outcome_window, f"organisation {company!r}"
            )
            if org_id is None:
                body: dict[str, Any] = {
                    "name": company,
                    "custom_fields": {self.connection.key_field("organization"): key},
                }
                if owner := as_int(self.config.owner_id, "owner_id"):
                    body["owner_id"] = owner
                org_id = await self.ids.create(
                    "organisation", key, lambda: self.create("create_org", "organizations", body)
                )
        self.http.tag_last(crm_org_id=org_id)
        self.ids.record("organisation", key, None, org_id)
        return org_id

    async def ensure_person(self, org_id: str | None) -> str:
        """The lead's person: known, or created with its organisation in the same call.
        Searched for (by our key) only when an earlier create of it may have landed."""
        lead = self.ctx.lead
        if known := self.ids.known("lead", lead.key):
            return known
        person_id = None
        if self.ids.unknown_outcome("lead", lead.key):
            person_id = await self.search(
                "find_contact_by_key", "persons", lead.key, "custom_fields"
            )
        if person_id is None:
            person_id = await self.ids.claim_create(
                "lead", lead.key, lead.id, self.unknown_outcome_window, f"person {lead.key}"
            )
        if person_id is None:
            body: dict[str, Any] = {
                "name": lead.name,
                "custom_fields": {self.connection.key_field("person"): lead.key},
            }
            if lead.email:
                body["emails"] = [{"value": lead.email, "primary": True, "label": "work"}]
            if lead.phone:
                body["phones"] = [{"value": lead.phone, "primary": True, "label": "work"}]
            if org_id:
                body["org_id"] = int(org_id)
            if owner := as_int(self.config.owner_id, "owner_id"):
                body["owner_id"] = owner
            person_id = await self.ids.create(
                "lead", lead.key, lambda: self.create("create_contact", "persons", body)
            )
        self.http.tag_last(crm_contact_id=person_id, crm_org_id=org_id)
        self.ids.record("lead", lead.key, lead.id, person_id)
        return person_id

    def deal_fields(self, deal: DealState) -> dict[str, Any]:
        """Fields we keep current on every push."""
        fields: dict[str, Any] = {
            "title": deal.name,
            "value": float(deal.amount),
            "currency": deal.currency,
            "status": deal.status,
        }
        if deal.status == "lost":
            fields["lost_reason"] = deal.lost_reason or "Lost"
        elif deal.status == "open" and deal.crm_stage:
            fields["stage_id"] = as_int(deal.crm_stage, f"stage_map.{deal.stage}")
        if deal.probability is not None:
            fields["probability"] = deal.probability
        if deal.close_date is not None:
            fields["expected_close_date"] = deal.close_date.isoformat()
        return fields

    async def ensure_deal(self, person_id: str, org_id: str | None) -> str:
        """Create the deal in the configured pipeline, stage and owner, or update it."""
        deal = self.ctx.deal
        assert deal is not None
        deal_id = self.ids.known("deal", deal.key)
        if deal_id is None and self.ids.unknown_outcome("deal", deal.key):
            deal_id = await self.search("find_deal_by_key", "deals", deal.key, "custom_fields")
            if deal_id is not None:
                self.ids.record("deal", deal.key, deal.entity_id, deal_id)
        if deal_id is None:
            body = self.deal_fields(deal)
            body["person_id"] = int(person_id)
            if org_id:
                body["org_id"] = int(org_id)
            pipeline = require(self.config.pipeline_id, "pipeline_id")
            body["pipeline_id"] = as_int(pipeline, "pipeline_id")
            if "stage_id" not in body and (first := as_int(self.config.stage_id, "stage_id")):
                body["stage_id"] = first
            if owner := as_int(self.config.owner_id, "owner_id"):
                body["owner_id"] = owner
            body["custom_fields"] = {self.connection.key_field("deal"): deal.key}
            deal_id = await self.ids.claim_create(
                "deal", deal.key, deal.entity_id, self.unknown_outcome_window, f"deal {deal.key}"
            )
            if deal_id is None:
                deal_id = await self.ids.create(
                    "deal", deal.key, lambda: self.create("create_deal", "deals", body)
                )
                self.http.tag_last(crm_deal_id=deal_id, crm_contact_id=person_id, crm_org_id=org_id)
                self.ids.record("deal", deal.key, deal.entity_id, deal_id)
                return deal_id
            self.ids.record("deal", deal.key, deal.entity_id, deal_id)
        await self.http.call(
            "update_deal",
            "PATCH",
            f"/api/v2/deals/{int(deal_id)}",
            json_body=self.deal_fields(deal),
        )
        self.http.tag_last(crm_deal_id=deal_id, crm_contact_id=person_id, crm_org_id=org_id)
        return deal_id
