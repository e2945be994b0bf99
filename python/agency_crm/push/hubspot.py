"""HubSpot: CRM v3 objects, v4 associations, OAuth refresh at /oauth/v1/token.

Contacts are found by email (``idProperty=email``) before they are created, and a 409 on create
means the contact exists (its id is in the message). Deals are written with ``batch/upsert`` by
our unique ``agency_crm_key`` property, so a repeated create updates instead of duplicating.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from agency_crm.push import hubspot_batch
from agency_crm.push.connection import (
    KEY_FIELD_LABEL,
    Catalog,
    Connection,
    Identity,
    Pipeline,
    no_credentials,
)
from agency_crm.push.http import CrmError, CrmHttp
from agency_crm.push.model import DealState, Outcome, PushContext
from agency_crm.push.redact import REDACTED
from agency_crm.push.store import Ended
from agency_crm.push.sync import Push

# HubSpot's token-info endpoint takes the access token in its path, and httpx logs every
# request's URL (INFO): the token is masked in those lines.
_TOKEN_IN_PATH = re.compile(r"(/oauth/v1/access-tokens/)[^/?#\s\"]+")


class _MaskTokenInPath(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(
            "/oauth/v1/access-tokens/" in str(arg) for arg in record.args
        ):
            record.args = tuple(
                _TOKEN_IN_PATH.sub(rf"\1{REDACTED}", str(arg))
                if "/oauth/v1/access-tokens/" in str(arg)
                else arg
                for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_MaskTokenInPath())

EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


class HubSpot(Connection):
    """A client's HubSpot: private-app token or OAuth (refreshed), pipelines and owners."""

    crm_type = "hubspot"
    default_base_url = "https://api.hubapi.com"
    default_interval = 10.0
    default_key_fields: ClassVar[dict[str, str]] = {
        "contact": "agency_crm_key",
        "deal": "agency_crm_key",
    }

    def push(self, ctx: PushContext, http: CrmHttp) -> HubSpotPush:
        return HubSpotPush(self, ctx, http)

    @property
    def batch_limit(self) -> int:  # type: ignore[override]
        """Up to 100 pushes per batch call, unless batches are off (then one at a time)."""
        return hubspot_batch.MAX_INPUTS if self.settings.batches else 1

    async def push_batch(self, ctxs: list[PushContext]) -> list[Ended]:
        """The pushes through HubSpot's batch APIs (a lone push too: fewer calls)."""
        return await hubspot_batch.Batch(self, ctxs).run()

    async def headers(self, http: CrmHttp) -> dict[str, str]:
        """Bearer token: the private-app token, or the OAuth token refreshed when near expiry."""
        self.require_readable_secrets()
        if self.config.api_key:
            return {"Authorization": f"Bearer {self.config.api_key}"}
        async with self.lock:
            expires = self.config.oauth_expires_at
            margin = self.settings.token_refresh_margin
            if self.config.oauth_refresh_token and (
                expires is None or expires - datetime.now(UTC) <= margin
            ):
                await self.refresh_token(http)
            token = self.config.oauth_access_token
        if not token:
            raise no_credentials(
                "the HubSpot config has neither an api_key nor an OAuth access token"
            )
        return {"Authorization": f"Bearer {token}"}

    async def refresh_token(self, http: CrmHttp) -> None:
        """POST /oauth/v1/token; the new tokens and expiry are saved at once."""
        config = self.config
        client_id = self.settings.hubspot_client_id
        secret = self.settings.hubspot_client_secret
        if not client_id or not secret:
            raise CrmError(
                Outcome.HELD,
                "refresh_not_configured",
                "the HubSpot access token expires and AGENCY_CRM_HUBSPOT_CLIENT_ID / "
                "AGENCY_CRM_HUBSPOT_CLIENT_SECRET are not set, so it cannot be refreshed",
            )
        self.redactor.add(secret)
        try:
            response = await http.call(
                "refresh_token",
                "POST",
                "/oauth/v1/token",
                form={
                    "grant_type": "refresh_token",
                    "client_id": client_id,
                    "client_secret": secret,
                    "refresh_token": config.oauth_refresh_token or "",
                },
                authenticated=False,
            )
        except CrmError as exc:
            if exc.kind is Outcome.FAILED or exc.status == 401:
                raise CrmError(
                    Outcome.HELD, "refresh_failed", f"token refresh refused: {exc.message}"
                ) from exc
            raise
        body = response.body or {}
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access:
            raise CrmError(
                Outcome.RETRY, "malformed_response", "token refresh returned no access_token"
            )
        refresh = refresh if isinstance(refresh, str) and refresh else config.oauth_refresh_token
        expires_at = datetime.now(UTC) + timedelta(seconds=int(body.get("expires_in", 1800)))
        self.redactor.add(access)
        self.redactor.add(refresh)
        await self.store.save_tokens(config, access, refresh or "", expires_at)
        config.oauth_access_token = access
        config.oauth_refresh_token = refresh
        config.oauth_expires_at = expires_at

    async def catalog(self, http: CrmHttp) -> Catalog:
        """GET /crm/v3/pipelines/deals and every page of GET /crm/v3/owners."""
        response = await http.call("get_pipelines", "GET", "/crm/v3/pipelines/deals")
        pipelines = {
            str(p["id"]): Pipeline(
                str(p["id"]),
                str(p.get("label") or p["id"]),
                {str(st["id"]): str(st.get("label") or st["id"]) for st in p.get("stages") or []},
            )
            for p in (response.body or {}).get("results") or []
        }
        owners: dict[str, str] = {}
        params: dict[str, str | int] = {"limit": 100}
        while True:
            page = await http.call("get_owners", "GET", "/crm/v3/owners", params=params)
            body = page.body or {}
            for owner in body.get("results") or []:
                owners[str(owner["id"])] = str(owner.get("email") or owner["id"])
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return Catalog(pipelines, owners)
            params = {"limit": 100, "after": str(after)}

    async def whoami(self, http: CrmHttp) -> Identity:
        """An OAuth token: GET /oauth/v1/access-tokens/{token} (portal, user). A private-app
        token has no such endpoint: GET /crm/v3/owners?limit=1 tests it."""
        self.require_readable_secrets()
        token = self.config.oauth_access_token
        if self.config.api_key or not token:
            await http.call("get_owners", "GET", "/crm/v3/owners", params={"limit": 1})
            return Identity()
        response = await http.call(
            "get_token_info",
            "GET",
            f"/oauth/v1/access-tokens/{quote(token, safe='')}",
            authenticated=False,
        )
        body = response.body or {}
        hub = body.get("hub_id")
        return Identity(
            account_id=str(hub) if hub is not None else None,
            account_name=body.get("hub_domain"),
            user=body.get("user"),
        )

    async def setup(self, http: CrmHttp) -> dict[str, str]:
        """Our unique key property on contacts and deals: GET, and POST when missing (a 409
        means another connect made it first)."""
        fields = dict(self.default_key_fields)
        for entity, object_type, group in (
            ("contact", "contacts", "contactinformation"),
            ("deal", "deals", "dealinformation"),
        ):
            name = fields[entity]
            found = await http.call(
                "get_property", "GET", f"/crm/v3/properties/{object_type}/{name}", allow=(404,)
            )
            if found.status != 404:
                continue
            await http.call(
                "create_property",
                "POST",
                f"/crm/v3/properties/{object_type}",
                json_body={
                    "name": name,
                    "label": KEY_FIELD_LABEL,
                    "type": "string",
                    "fieldType": "text",
                    "groupName": group,
                    "hasUniqueValue": True,
                    "description": "Written by agency-crm: the key it finds this record by, so "
                    "a repeated push updates instead of duplicating. Do not edit.",
                },
                allow=(409,),
            )
        return fields

    async def exchange_code(self, http: CrmHttp, code: str, redirect_uri: str) -> OAuthTokens:
        """POST /oauth/v1/token with grant_type=authorization_code: the tokens of a consent."""
        client_id = self.settings.hubspot_client_id
        secret = self.settings.hubspot_client_secret
        if not client_id or not secret:
            raise CrmError(
                Outcome.FAILED,
                "oauth_not_configured",
                "AGENCY_CRM_HUBSPOT_CLIENT_ID and AGENCY_CRM_HUBSPOT_CLIENT_SECRET must be set "
                "to exchange a HubSpot authorisation code",
            )
        self.redactor.add(secret)
        self.redactor.add(code)
        response = await http.call(
            "exchange_code",
            "POST",
            "/oauth/v1/token",
            form={
                "grant_type": "authorization_code",
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uri": redirect_uri,
                "code": code,
            },
            authenticated=False,
        )
        body = response.body or {}
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise CrmError(
                Outcome.FAILED, "malformed_response", "the code exchange returned no tokens"
            )
        self.redactor.add(access)
        self.redactor.add(refresh)
        try:
            expires_in = max(0, int(body.get("expires_in", 1800)))
        except (TypeError, ValueError):
            expires_in = 1800
        hub = body.get("hub_id")
        return OAuthTokens(
            access,
            refresh,
            datetime.now(UTC) + timedelta(seconds=expires_in),
            str(hub) if hub is not None else None,
        )


@dataclass
class OAuthTokens:
    """What HubSpot's token endpoint answers a code exchange with."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    portal_id: str | None


class HubSpotPush(Push):
    """One push into HubSpot."""

    async def sync(self) -> None:
        contact_id = await self.ensure_contact()
        if self.ctx.deal:
            await self.ensure_deal(contact_id)

    def contact_properties(self) -> dict[str, str]:
        """Contact properties (all strings, as the API types them)."""
        lead = self.ctx.lead
        props = {
            "email": lead.email,
            "firstname": lead.first_name,
            "lastname": lead.last_name,
            "company": lead.company,
            "jobtitle": lead.title,
            "phone": lead.phone,
            self.connection.key_field("contact"): lead.key,
        }
        return {k: v for k, v in props.items() if v}

    async def ensure_contact(self) -> str:
        """The lead's contact: known, found by email (or our key), or created."""
        lead = self.ctx.lead
        if known := self.ids.known("lead", lead.key):
            return known
        if lead.email:
            path = f"/crm/v3/objects/contacts/{quote(lead.email, safe='')}"
            params = {"idProperty": "email"}
        else:
            path = f"/crm/v3/objects/contacts/{quote(lead.key, safe='')}"
            params = {"idProperty": self.connection.key_field("contact")}
        found = await self.http.call("find_contact", "GET", path, params=params, allow=(404,))
        if found.status == 200:
            contact_id = str(found.body["id"])
            self.http.tag_last(crm_contact_id=contact_id)
            self.ids.record("lead", lead.key, lead.id, contact_id)
            return contact_id
        created = await self.http.call(
            "create_contact",
            "POST",
            "/crm/v3/objects/contacts",
            json_body={"properties": self.contact_properties(), "associations": []},
            allow=(409,),
        )
        if created.status == 409:
            match = EXISTING_ID.search(str((created.body or {}).get("message", "")))
            if not match:
                raise CrmError(
                    Outcome.RETRY,
                    "conflict",
                    "409 on contact create without an existing id",
                    status=409,
                )
            contact_id = match.group(1)
        else:
            contact_id = str(created.body["id"])
        self.http.tag_last(crm_contact_id=contact_id)
        self.ids.record("lead", lead.key, lead.id, contact_id)
        return contact_id

    def deal_properties(self, deal: DealState, *, create: bool) -> dict[str, str]:
        """Deal properties for a create (pipeline, owner, first stage) or an update."""
        props: dict[str, str] = {
            "dealname": deal.name,
            "amount": format(deal.amount, "f"),
            "deal_currency_code": deal.currency,
        }
        # HubSpot's own won and lost stages, unless the config maps ours elsewhere.
        stage = deal.crm_stage
        if deal.status == "won":
            stage = stage or "closedwon"
        elif deal.status == "lost":
            stage = stage or "closedlost"
            if deal.lost_reason:
                props["closed_lost_reason"] = deal.lost_reason
        if create:
            props["pipeline"] = self.config.pipeline_id or "default"
            stage = stage or self.config.stage_id
            if self.config.owner_id:
                props["hubspot_owner_id"] = self.config.owner_id
            props[self.connection.key_field("deal")] = deal.key
        if stage:
            props["dealstage"] = stage
        if deal.probability is not None:
            props["hs_forecast_probability"] = format(deal.probability / 100, "g")
        if deal.close_date is not None:
            props["closedate"] = deal.close_date.isoformat()
        return props

    async def ensure_deal(self, contact_id: str) -> str:
        """Create the deal (idempotent upsert by our key) and associate it, or update it."""
        deal = self.ctx.deal
        assert deal is not None
        if known := self.ids.known("deal", deal.key):
            await self.http.call(
                "update_deal",
                "PATCH",
                f"/crm/v3/objects/deals/{quote(known, safe='')}",
                json_body={"properties": self.deal_properties(deal, create=False)},
            )
            self.http.tag_last(crm_deal_id=known, crm_contact_id=contact_id)
            return known
        response = await self.http.call(
            "upsert_deal",
            "POST",
            "/crm/v3/objects/deals/batch/upsert",
            json_body={
                "inputs": [
                    {
                        "id": deal.key,
                        "idProperty": self.connection.key_field("deal"),
                        "properties": self.deal_properties(deal, create=True),
                    }
                ]
            },
        )
        results: list[Any] = (response.body or {}).get("results") or []
        if not results or "id" not in results[0]:
            raise CrmError(Outcome.RETRY, "malformed_response", "deal upsert returned no result")
        deal_id = str(results[0]["id"])
        self.http.tag_last(crm_deal_id=deal_id, crm_contact_id=contact_id)
        # Stored at once, marked incomplete until the association is made.
        self.ids.record("deal", deal.key, deal.entity_id, deal_id, complete=False)
        await self.http.call(
            "associate_deal_contact",
            "PUT",
            f"/crm/v4/objects/deals/{quote(deal_id, safe='')}/associations/default/contacts/"
            f"{quote(contact_id, safe='')}",
        )
        self.http.tag_last(crm_deal_id=deal_id, crm_contact_id=contact_id)
        self.ids.record("deal", deal.key, deal.entity_id, deal_id)
        return deal_id
