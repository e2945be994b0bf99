"""HubSpot in batches: many pushes of one client in a few calls.

The pushes of one claim (never two of one lead: ``crm.claim_pushes`` keeps a lead's pushes in
order, one at a time) go out as at most three kinds of call, each carrying up to 100 inputs:

1. ``POST /crm/v3/objects/contacts/batch/upsert`` for the contacts we do not know yet, by
   ``idProperty=email`` (by our unique key property for a lead without email);
2. ``POST /crm/v3/objects/deals/batch/update`` for deals we know, and
   ``POST /crm/v3/objects/deals/batch/upsert`` on our unique key for the others;
3. ``POST /crm/v4/associations/deals/contacts/batch/associate/default`` for the deals just
   upserted.

Every write is keyed, so a batch whose answer was lost (or a run killed mid-batch) is sent
again without duplicates. HubSpot answers a batch with 200, or 207 Multi-Status listing the
inputs that failed: each push gets its own outcome and its own audit row of every call it
rode in (``request_payload.batch`` names the call: its id, size and the push's position). A
whole call refused as a bad request is split in halves and sent again, so one bad input
never fails the others; a call that failed for every input (429, 5xx, timeout, 401) gives
each push that outcome. The properties written are exactly those of the one-push path
(:class:`~agency_crm.push.hubspot.HubSpotPush`), so both leave HubSpot in the same state.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agency_crm.push.http import CrmError
from agency_crm.push.model import CallRecord, LogStatus, Outcome, PushContext
from agency_crm.push.store import Ended

if TYPE_CHECKING:
    from agency_crm.push.hubspot import HubSpot, HubSpotPush

# HubSpot's limit of inputs per batch call.
MAX_INPUTS = 100
CONTACTS_UPSERT = "/crm/v3/objects/contacts/batch/upsert"
DEALS_UPSERT = "/crm/v3/objects/deals/batch/upsert"
DEALS_UPDATE = "/crm/v3/objects/deals/batch/update"
ASSOCIATE = "/crm/v4/associations/deals/contacts/batch/associate/default"
# Error categories that no resend fixes: the push fails, as a 4xx fails the one-push path.
FINAL_CATEGORIES = {
    "VALIDATION_ERROR",
    "OBJECT_NOT_FOUND",
    "CONFLICT",
    "INVALID_EMAIL",
    "PROPERTY_DOESNT_EXIST",
    "OBJECT_ALREADY_EXISTS",
}


@dataclass
class Item:
    """One push in the batch."""

    ctx: PushContext
    push: HubSpotPush
    started: float
    records: list[CallRecord] = field(default_factory=list)
    calls: int = 0  # the batch calls it rode in
    billed: int = 0  # the calls counted as its own (each call: its first push's)
    rate_limited: int = 0
    error: CrmError | None = None
    contact_id: str | None = None
    deal_id: str | None = None
    new_contact: bool = False
    new_deal: bool = False

    @property
    def live(self) -> bool:
        return self.error is None


@dataclass
class Input:
    """One input of a batch call and the pushes it serves (two leads may share an email)."""

    key: str  # what matches it to its result: the id it was sent with, lower case
    body: dict[str, Any]
    items: list[Item]

    @property
    def trace_id(self) -> str | None:
        """Its ``objectWriteTraceId``: with one, HubSpot fails a bad input on its own (in a
        207) instead of refusing the whole call."""
        value = self.body.get("objectWriteTraceId")
        return str(value) if value is not None else None


def traced(body: dict[str, Any], item: Item, step: str) -> dict[str, Any]:
    """An object write's input with a trace id unique in its call: the push and the step."""
    return {**body, "objectWriteTraceId": f"{item.ctx.push.id}-{step}"}


class Batch:
    """One claim's pushes into one HubSpot account."""

    def __init__(self, connection: HubSpot, ctxs: Sequence[PushContext]) -> None:
        from agency_crm.push.hubspot import HubSpotPush

        self.connection = connection
        self.http = connection.calls()
        now = time.perf_counter()
        self.items = [Item(ctx, HubSpotPush(connection, ctx, self.http), now) for ctx in ctxs]

    async def run(self) -> list[Ended]:
        """Send the batch; each push's outcome (not yet recorded)."""
        await self.contacts()
        await self.deals()
        await self.associate()
        await self.record_ids()
        return [self.ended(item) for item in self.items]

    # ------------------------------------------------------------------ the three steps

    async def contacts(self) -> None:
        """Known contacts are taken from the id map; the others upserted by email (or key)."""
        by_email: dict[str, Input] = {}
        by_key: dict[str, Input] = {}
        key_field = self.connection.key_field("contact")
        for item in self.items:
            lead = item.ctx.lead
            known = item.push.ids.known("lead", lead.key)
            if known:
                item.contact_id = known
                continue
            props = item.push.contact_properties()
            if lead.email:
                email = lead.email.strip().lower()
                if email in by_email:
                    by_email[email].items.append(item)
                    continue
                body = {"id": lead.email, "idProperty": "email", "properties": props}
                by_email[email] = Input(email, traced(body, item, "contact"), [item])
            else:
                body = {"id": lead.key, "idProperty": key_field, "properties": props}
                by_key[lead.key] = Input(lead.key.lower(), traced(body, item, "contact"), [item])
        for inputs, id_property in ((by_email, "email"), (by_key, key_field)):
            for result, inp in await self.send(
                "upsert_contact", CONTACTS_UPSERT, list(inputs.values()), id_property
            ):
                for item in inp.items:
                    item.contact_id = str(result["id"])
                    item.new_contact = True
                    self.tag(item, crm_contact_id=item.contact_id)

    async def deals(self) -> None:
        """Known deals updated by id, the others upserted on our key (create properties)."""
        updates: list[Input] = []
        upserts: list[Input] = []
        key_field = self.connection.key_field("deal")
        for item in self.items:
            deal = item.ctx.deal
            if not item.live or deal is None:
                continue
            if known := item.push.ids.known("deal", deal.key):
                props = item.push.deal_properties(deal, create=False)
                body = {"id": known, "properties": props}
                updates.append(Input(known, traced(body, item, "deal"), [item]))
                item.deal_id = known
            else:
                props = item.push.deal_properties(deal, create=True)
                body = {"id": deal.key, "idProperty": key_field, "properties": props}
                upserts.append(Input(deal.key.lower(), traced(body, item, "deal"), [item]))
        for _result, inp in await self.send("update_deal", DEALS_UPDATE, updates, "hs_object_id"):
            for item in inp.items:
                self.tag(item, crm_deal_id=item.deal_id, crm_contact_id=item.contact_id)
        for result, inp in await self.send("upsert_deal", DEALS_UPSERT, upserts, key_field):
            for item in inp.items:
                item.deal_id = str(result["id"])
                item.new_deal = True
                self.tag(item, crm_deal_id=item.deal_id, crm_contact_id=item.contact_id)

    async def associate(self) -> None:
        """Each deal just upserted, with its contact (idempotent)."""
        inputs = [
            Input(
                f"{item.deal_id}:{item.contact_id}",
                {"from": {"id": item.deal_id}, "to": {"id": item.contact_id}},
                [item],
            )
            for item in self.items
            if item.live and item.new_deal and item.deal_id and item.contact_id
        ]
        for _result, inp in await self.send("associate_deal_contact", ASSOCIATE, inputs, None):
            for item in inp.items:
                self.tag(item, crm_deal_id=item.deal_id, crm_contact_id=item.contact_id)

    async def record_ids(self) -> None:
        """The CRM ids learned, in one statement: contacts, and deals whose every step is
        done (a deal that failed after its upsert is upserted again by its retry)."""
        rows: list[tuple[PushContext, str, str, uuid.UUID | None, str, datetime | None]] = []
        seen: set[tuple[str, str]] = set()
        for item in self.items:
            lead = item.ctx.lead
            if item.new_contact and item.contact_id and ("lead", lead.key) not in seen:
                seen.add(("lead", lead.key))
                rows.append((item.ctx, "lead", lead.key, lead.id, item.contact_id, None))
            deal = item.ctx.deal
            if item.live and item.new_deal and deal is not None and item.deal_id:
                rows.append((item.ctx, "deal", deal.key, deal.entity_id, item.deal_id, None))
        if not rows:
            return
        try:
            await self.connection.store.record_ids(rows)
        except Exception as exc:
            # Not stored: every push of the batch is sent again (keyed writes, no duplicate).
            for item in self.items:
                if item.live:
                    item.error = CrmError(
                        Outcome.RETRY, "runner_error", f"runner error: {type(exc).__name__}: {exc}"
                    )
            raise

    # ------------------------------------------------------------------ one batch call

    async def send(
        self, operation: str, path: str, inputs: list[Input], id_property: str | None
    ) -> list[tuple[dict[str, Any], Input]]:
        """Send ``inputs`` (of live pushes) in calls of up to 100; the results of the inputs
        that succeeded, each with its input. A push whose input failed gets its error."""
        inputs = [i for i in inputs if any(item.live for item in i.items)]
        done: list[tuple[dict[str, Any], Input]] = []
        for start in range(0, len(inputs), MAX_INPUTS):
            done += await self.call(
                operation, path, inputs[start : start + MAX_INPUTS], id_property
            )
        return done

    async def call(
        self, operation: str, path: str, inputs: list[Input], id_property: str | None
    ) -> list[tuple[dict[str, Any], Input]]:
        if not inputs:
            return []
        call_id = str(uuid.uuid4())
        try:
            response = await self.http.call(
                operation, "POST", path, json_body={"inputs": [i.body for i in inputs]}
            )
        except CrmError as exc:
            record = self.calls_made(inputs)
            if exc.kind is Outcome.FAILED and len(inputs) > 1:
                # A bad request for the whole call: halves, until the bad input is alone.
                self.spread(record, call_id, inputs, None, exc)
                middle = len(inputs) // 2
                return await self.call(operation, path, inputs[:middle], id_property) + (
                    await self.call(operation, path, inputs[middle:], id_property)
                )
            self.spread(record, call_id, inputs, None, exc)
            for inp in inputs:
                for item in inp.items:
                    item.error = item.error or exc
            return []
        record = self.calls_made(inputs)
        body = response.body if isinstance(response.body, dict) else {}
        results = [r for r in body.get("results") or [] if isinstance(r, dict)]
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        matched = self.match(results, inputs, id_property)
        failures: dict[int, CrmError] = {}
        for n, inp in enumerate(inputs):
            if n not in matched:
                failures[n] = self.item_error(inp, errors, response.status)
        self.spread(record, call_id, inputs, matched, None, failures)
        for n, err in failures.items():
            for item in inputs[n].items:
                item.error = item.error or err
        return [(result, inputs[n]) for n, result in matched.items()]

    def calls_made(self, inputs: list[Input]) -> CallRecord:
        """The batch call's own record; a call made on the way (a token refresh) goes to the
        audit rows of the call's first push."""
        records = self.http.take_records()
        inputs[0].items[0].records.extend(records[:-1])
        return records[-1]

    @staticmethod
    def match(
        results: list[dict[str, Any]], inputs: list[Input], id_property: str | None
    ) -> dict[int, dict[str, Any]]:
        """Which result answers which input: by the id property's value (upsert), the
        record id (update) or the (deal, contact) pair (associate); in order for a 200 whose
        results carry neither."""
        index = {inp.key: n for n, inp in enumerate(inputs)}
        traces = {inp.trace_id: n for n, inp in enumerate(inputs) if inp.trace_id}
        out: dict[int, dict[str, Any]] = {}
        for result in results:
            trace = result.get("objectWriteTraceId")
            if trace is not None and str(trace) in traces:
                out[traces[str(trace)]] = result
                continue
            if id_property is None:
                source = result.get("from") or {}
                target = result.get("to") or {}
                key = f"{source.get('id')}:{target.get('id')}"
            elif id_property == "hs_object_id":
                key = str(result.get("id", ""))
            else:
                value = (result.get("properties") or {}).get(id_property)
                key = str(value).strip().lower() if value is not None else ""
            n = index.get(key)
            if n is not None:
                out[n] = result
        if id_property is None and not out and len(results) == len(inputs):
            # Associations: HubSpot's answer may not echo the pair; all of them succeeded.
            out = dict(enumerate(results))
        if id_property is None and not results and not out:
            # A 200 with no results to an associate call: every pair is made.
            out = {n: {} for n in range(len(inputs))}
        return out

    @staticmethod
    def item_error(inp: Input, errors: list[dict[str, Any]], status: int) -> CrmError:
        """The error HubSpot listed for one input (found by its trace id, else by its id in
        the error), or a retry when the answer does not account for it."""
        needles = [json.dumps(str(inp.body.get("id") or inp.key)).lower()]
        if inp.trace_id:
            needles.insert(0, json.dumps(inp.trace_id).lower())
        for needle in needles:
            for err in errors:
                if needle not in json.dumps(err).lower():
                    continue
                category = str(err.get("category") or "")
                message = str(err.get("message") or category or "error")
                kind = Outcome.FAILED if category in FINAL_CATEGORIES else Outcome.RETRY
                return CrmError(kind, category.lower() or "item_error", message[:500])
        message = "; ".join(str(e.get("message")) for e in errors)[:500]
        return CrmError(
            Outcome.RETRY,
            "item_unanswered",
            f"the batch call answered {status} without a result for this input"
            + (f" ({message})" if message else ""),
        )

    # ------------------------------------------------------------------ audit

    def spread(
        self,
        record: CallRecord,
        call_id: str,
        inputs: list[Input],
        matched: dict[int, dict[str, Any]] | None,
        failure: CrmError | None,
        failures: dict[int, CrmError] | None = None,
    ) -> None:
        """One audit row per push of a batch call: the call (its id, size and the push's
        position), the push's own input and its own result or error."""
        redactor = self.connection.redactor
        request = record.request_payload or {}
        headers = None
        if isinstance(record.response_payload, dict) and "headers" in record.response_payload:
            headers = record.response_payload["headers"]
        inputs[0].items[0].billed += 1
        if failure is not None and failure.code == "rate_limited":
            inputs[0].items[0].rate_limited += 1
        for n, inp in enumerate(inputs):
            err = failure or (failures or {}).get(n)
            result = (matched or {}).get(n)
            if failure is not None:
                response_payload: Any = record.response_payload
            else:
                response_payload = {"result": result} if err is None else {"error": err.message}
                if headers:
                    response_payload["headers"] = headers
            payload = {
                "method": request.get("method", "POST"),
                "path": request.get("path"),
                "batch": {"call_id": call_id, "inputs": len(inputs), "position": n + 1},
                "body": {"inputs": [inp.body]},
            }
            for item in inp.items:
                item.calls += 1
                item.records.append(
                    CallRecord(
                        operation=record.operation,
                        status=LogStatus.FAILED if err else LogStatus.SUCCESS,
                        request_payload=redactor.value(payload),
                        response_payload=redactor.value(response_payload),
                        http_status=record.http_status,
                        error_code=err.code if err else None,
                        error_message=redactor.text(err.message) if err else None,
                        duration_ms=record.duration_ms,
                        at=record.at,
                    )
                )

    @staticmethod
    def tag(item: Item, **ids: str | None) -> None:
        """CRM ids learned by the last call onto the push's audit row of it."""
        if item.records:
            for name, value in ids.items():
                if value is not None:
                    setattr(item.records[-1], name, value)

    def ended(self, item: Item) -> Ended:
        """The push's outcome: done, or its first error's."""
        outcome, error, retry_at = Outcome.DONE, None, None
        if item.error is not None:
            # When it is tried again (and whether the client's pushes are held) is the
            # runner's to decide, as for a push sent alone.
            outcome, error = item.error.kind, item.error.describe()
        return Ended(
            item.ctx.push,
            outcome,
            error,
            retry_at,
            item.ctx,
            item.records,
            calls=item.billed,
            rate_limited=item.rate_limited,
            started=item.started,
            exc=item.error,
            rode=item.calls,
        )
