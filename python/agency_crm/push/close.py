"""Close: a lead holds its contacts; deals are opportunities (value in cents).

HTTP basic auth with the API key as user name. Our external key goes into a lead and an
opportunity custom field; only a create whose earlier outcome is unknown is searched for, by
that key, with the Advanced Filtering search (``POST /api/v1/data/search/``).
"""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from agency_crm.push.connection import (
    KEY_FIELD_LABEL,
    Catalog,
    Connection,
    Identity,
    Pipeline,
    no_credentials,
    require,
)
from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import DealState, Outcome, PushContext
from agency_crm.push.sync import Push


def custom_field_query(object_type: str, field_id: str, value: str) -> dict[str, Any]:
    """Advanced Filtering: leads or opportunities whose custom field equals value."""
    return {
        "query": {
            "type": "and",
            "queries": [
                {"type": "object_type", "object_type": object_type},
                {
                    "type": "field_condition",
                    "field": {"type": "custom_field", "custom_field_id": field_id},
                    "condition": {"type": "text", "mode": "exact_value", "value": value},
                },
            ],
        },
        "_fields": {object_type: ["id", "lead_id"]},
        "_limit": 10,
    }


class Close(Connection):
    """A client's Close: API key (HTTP basic), pipelines with their statuses, users."""

    crm_type = "close"
    default_base_url = "https://api.close.com"
    default_interval = 1.0
    default_key_fields: ClassVar[dict[str, str]] = {
        "lead": "cf_agency_crm_key",
        "opportunity": "cf_agency_crm_key",
    }

    def push(self, ctx: PushContext, http: CrmHttp) -> ClosePush:
        return ClosePush(self, ctx, http)

    async def headers(self, http: CrmHttp) -> dict[str, str]:
        """HTTP basic: the API key as user name, empty password."""
        self.require_readable_secrets()
        key = self.config.api_key
        if not key:
            raise no_credentials("the Close config has no api_key")
        return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}

    async def catalog(self, http: CrmHttp) -> Catalog:
        """GET /api/v1/pipeline/ and every page of GET /api/v1/user/."""
        pipelines = {
            str(p["id"]): Pipeline(
                str(p["id"]),
                str(p.get("name") or p["id"]),
                {str(st["id"]): str(st.get("label") or st["id"]) for st in p.get("statuses") or []},
            )
            for p in await self.pipelines(http)
        }
        users: dict[str, str] = {}
        skip = 0
        while True:
            page = await http.call(
                "get_users", "GET", "/api/v1/user/", params={"_skip": skip, "_limit": 100}
            )
            body = page.body or {}
            batch = body.get("data") or []
            for user in batch:
                users[str(user["id"])] = str(user.get("email") or user["id"])
            if not body.get("has_more") or not batch:
                return Catalog(pipelines, users)
            skip += len(batch)

    async def whoami(self, http: CrmHttp) -> Identity:
        """GET /api/v1/me/: the user the API key belongs to and their organisation."""
        response = await http.call("get_me", "GET", "/api/v1/me/")
        me = response.body or {}
        orgs = me.get("organizations") or [{}]
        return Identity(
            account_id=orgs[0].get("id"),
            account_name=orgs[0].get("name"),
            user_id=me.get("id"),
            user=me.get("email"),
        )

    async def setup(self, http: CrmHttp) -> dict[str, str]:
        """A text custom field named "agency-crm key" on leads and opportunities: found by
        name in /api/v1/custom_field/{type}/, created when missing. Returns each one's id."""
        fields: dict[str, str] = {}
        for entity in ("lead", "opportunity"):
            path = f"/api/v1/custom_field/{entity}/"
            found: str | None = None
            skip = 0
            while found is None:
                page = await http.call(
                    f"get_{entity}_fields", "GET", path, params={"_skip": skip, "_limit": 100}
                )
                body = page.body or {}
                batch = body.get("data") or []
                found = next(
                    (str(f["id"]) for f in batch if f.get("name") == KEY_FIELD_LABEL), None
                )
                if not body.get("has_more") or not batch:
                    break
                skip += len(batch)
            if found is None:
                created = await http.call(
                    f"create_{entity}_field",
                    "POST",
                    path,
                    json_body={"name": KEY_FIELD_LABEL, "type": "text"},
                )
                found = str((created.body or {})["id"])
            fields[entity] = found
        return fields

    async def pipelines(self, http: CrmHttp) -> list[dict[str, Any]]:
        """GET /api/v1/pipeline/: the opportunity pipelines with their statuses (read once per
        run: pushes find a won or lost status in them)."""
        cached = self.cache.get("pipelines")
        if cached is None:
            response = await http.call("get_pipelines", "GET", "/api/v1/pipeline/")
            cached = list((response.body or {}).get("data") or [])
            self.cache["pipelines"] = cached
        return list(cached)


class ClosePush(Push):
    """One push into Close."""

    connection: Close

    async def sync(self) -> None:
        lead_id, contact_id = await self.ensure_lead()
        if self.ctx.deal:
            await self.ensure_opportunity(lead_id, contact_id)

    async def search(self, operation: str, query: dict[str, Any]) -> dict[str, Any] | None:
        """POST /api/v1/data/search/; the first hit."""
        response = await self.http.call(operation, "POST", "/api/v1/data/search/", json_body=query)
        data = (response.body or {}).get("data") or []
        return data[0] if data else None

    async def ensure_lead(self) -> tuple[str, str]:
        """The Close lead and contact of our lead: known, or created together in one call
        (the contact nested in the lead). Searched for (by our key) only when an earlier
        create of it may have landed."""
        lead = self.ctx.lead
        lead_id = self.ids.known("lead", lead.key)
        contact_id = self.ids.known("contact", lead.key)
        if lead_id and contact_id:
            return lead_id, contact_id
        if self.ids.unknown_outcome("lead", lead.key):
            found = await self.search(
                "find_lead_by_key",
                custom_field_query("lead", self.connection.key_field("lead"), lead.key),
            )
            if found is not None:
                lead_id = str(found["id"])
                got = await self.http.call("get_lead", "GET", f"/api/v1/lead/{lead_id}/")
                contacts = (got.body or {}).get("contacts") or []
                contact_id = str(contacts[0]["id"]) if contacts else None
        if not lead_id or not contact_id:
            existing = await self.ids.claim_create(
                "lead", lead.key, lead.id, self.unknown_outcome_window, f"lead {lead.key}"
            )
            if existing is not None:
                # Another push stored the lead (the contact id is stored first).
                contact_ext = await self.ids.refresh("contact", lead.key)
                if contact_ext is None or not contact_ext.crm_id:
                    raise CrmError(
                        Outcome.DEFER,
                        "create_in_doubt",
                        "lead stored without its contact",
                        retry_after=1.0,
                    )
                return existing, contact_ext.crm_id
            contact: dict[str, Any] = {"name": lead.name}
            if lead.title:
                contact["title"] = lead.title
            if lead.email:
                contact["emails"] = [{"email": lead.email, "type": "office"}]
            if lead.phone:
                contact["phones"] = [{"phone": lead.phone, "type": "office"}]
            payload = {
                "name": lead.company or lead.name,
                "contacts": [contact],
                f"custom.{self.connection.key_field('lead')}": lead.key,
            }
            response = await self.ids.create(
                "lead",
                lead.key,
                lambda: self.http.call(
                    "create_contact", "POST", "/api/v1/lead/", json_body=payload
                ),
            )
            body = response.body or {}
            contacts = body.get("contacts") or []
            if "id" not in body or not contacts:
                raise CrmError(Outcome.RETRY, "malformed_response", "lead create returned no ids")
            lead_id, contact_id = str(body["id"]), str(contacts[0]["id"])
        self.http.tag_last(crm_contact_id=contact_id)
        self.ids.record("contact", lead.key, lead.id, contact_id)
        self.ids.record("lead", lead.key, lead.id, lead_id)
        return lead_id, contact_id

    async def status_for(self, deal: DealState) -> str | None:
        """The Close status: mapped from our stage, or the pipeline's first won/lost status."""
        if deal.status == "open" or deal.crm_stage:
            return deal.crm_stage
        pipeline_id = self.config.pipeline_id
        for pipeline in await self.connection.pipelines(self.http):
            if pipeline_id is None or pipeline.get("id") == pipeline_id:
                for status in pipeline.get("statuses") or []:
                    if status.get("type") == deal.status:
                        return str(status["id"])
        raise CrmError(
            Outcome.FAILED,
            "config_incomplete",
            f"the Close pipeline has no {deal.status} status; map closed_{deal.status} in "
            "client_crm_configs.stage_map",
        )

    async def opportunity_fields(self, deal: DealState) -> dict[str, Any]:
        """Fields we keep current on every push."""
        note = deal.name if deal.status != "lost" else f"{deal.name} (lost: {deal.lost_reason})"
        fields: dict[str, Any] = {
            "note": note,
            "value": int((deal.amount * 100).to_integral_value()) if deal.amount else 0,
            "value_currency": deal.currency,
            "value_period": "one_time",
        }
        if deal.probability is not None:
            fields["confidence"] = deal.probability
        if status := await self.status_for(deal):
            fields["status_id"] = status
        return fields

    async def ensure_opportunity(self, lead_id: str, contact_id: str) -> str:
        """Create the opportunity (pipeline status, owner, contact) or update it."""
        deal = self.ctx.deal
        assert deal is not None
        opp_id = self.ids.known("deal", deal.key)
        if opp_id is None and self.ids.unknown_outcome("deal", deal.key):
            found = await self.search(
                "find_deal_by_key",
                custom_field_query(
                    "opportunity", self.connection.key_field("opportunity"), deal.key
                ),
            )
            if found is not None:
                opp_id = str(found["id"])
                self.ids.record("deal", deal.key, deal.entity_id, opp_id)
        fields = await self.opportunity_fields(deal)
        if opp_id is not None:
            await self.http.call(
                "update_deal", "PUT", f"/api/v1/opportunity/{opp_id}/", json_body=fields
            )
            self.http.tag_last(crm_deal_id=opp_id, crm_contact_id=contact_id)
            return opp_id
        fields.setdefault("status_id", require(self.config.stage_id, "stage_id"))
        body = {
            **fields,
            "lead_id": lead_id,
            "contact_id": contact_id,
            f"custom.{self.connection.key_field('opportunity')}": deal.key,
        }
        if self.config.owner_id:
            body["user_id"] = self.config.owner_id
        adopted = await self.ids.claim_create(
            "deal",
            deal.key,
            deal.entity_id,
            self.unknown_outcome_window,
            f"opportunity {deal.key}",
        )
        if adopted is not None:
            await self.http.call(
                "update_deal", "PUT", f"/api/v1/opportunity/{adopted}/", json_body=fields
            )
            self.http.tag_last(crm_deal_id=adopted, crm_contact_id=contact_id)
            return adopted
        response = await self.ids.create(
            "deal",
            deal.key,
            lambda: self.http.call("create_deal", "POST", "/api/v1/opportunity/", json_body=body),
        )
        opp = response.body or {}
        if "id" not in opp:
            raise CrmError(Outcome.RETRY, "malformed_response", "opportunity create returned no id")
        opp_id = str(opp["id"])
        self.http.tag_last(crm_deal_id=opp_id, crm_contact_id=contact_id)
        self.ids.record("deal", deal.key, deal.entity_id, opp_id)
        return opp_id
