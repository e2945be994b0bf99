"""What each fake CRM holds after the drain, against what the database says it should hold.

The expectation is one SQL query (``sql/queries/demo.sql``, ``expected_records``): per client,
the keys of the contacts, organisations and deals its CRM should hold, and each deal's status
and amount. The CRM side is read from the sandbox's own state (its admin API in-process):
every record that carries our key in the key property or field the connect set up.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from agency_crm.queries import DEMO

if TYPE_CHECKING:
    import psycopg

    from agency_crm.demo.crms import Connected, FakeCrms

#: Each vendor's name for the kinds of record we push, in display order.
VENDOR_KINDS: Mapping[str, Mapping[str, str]] = {
    "hubspot": {"contact": "contacts", "deal": "deals"},
    "pipedrive": {"contact": "persons", "organisation": "organizations", "deal": "deals"},
    "close": {"contact": "leads (with their contact)", "deal": "opportunities"},
}


@dataclass
class Record:
    """One record keyed by us: what the CRM holds or what the database expects."""

    key: str
    status: str | None = None
    amount: Decimal | None = None


@dataclass
class KindCheck:
    """One kind of record of one CRM: expected against held."""

    kind: str
    label: str
    expected: dict[str, Record]
    held: list[Record]

    @property
    def duplicates(self) -> list[str]:
        counts = Counter(r.key for r in self.held)
        return sorted(k for k, n in counts.items() if n > 1)

    @property
    def missing(self) -> list[str]:
        keys = {r.key for r in self.held}
        return sorted(k for k in self.expected if k not in keys)

    @property
    def unexpected(self) -> list[str]:
        return sorted({r.key for r in self.held if r.key not in self.expected})

    @property
    def different(self) -> list[str]:
        """Deals whose status or amount in the CRM is not what the database says."""
        out = []
        for record in self.held:
            want = self.expected.get(record.key)
            if want is None or want.status is None:
                continue
            if record.status != want.status or record.amount != want.amount:
                out.append(record.key)
        return sorted(set(out))

    @property
    def ok(self) -> bool:
        return not (self.duplicates or self.missing or self.unexpected or self.different)

    def count(self, status: str | None = None) -> tuple[int, int]:
        """(held, expected), of one deal status or all."""
        held = sum(1 for r in self.held if status is None or r.status == status)
        expected = sum(1 for r in self.expected.values() if status is None or r.status == status)
        return held, expected

    def value(self, status: str) -> tuple[Decimal, Decimal]:
        """(held, expected) amount of the deals of one status."""
        held = sum((r.amount or Decimal(0) for r in self.held if r.status == status), Decimal(0))
        expected = sum(
            (r.amount or Decimal(0) for r in self.expected.values() if r.status == status),
            Decimal(0),
        )
        return held, expected


@dataclass
class CrmCheck:
    """One client's CRM: every kind checked."""

    client_id: uuid.UUID
    crm: str
    kinds: list[KindCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds)


def expected_records(
    conn: psycopg.Connection[Any], client_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, dict[str, dict[str, Record]]]:
    """client -> kind -> key -> the record the database says the CRM should hold."""
    out: dict[uuid.UUID, dict[str, dict[str, Record]]] = {
        c: {"contact": {}, "organisation": {}, "deal": {}} for c in client_ids
    }
    cur = conn.cursor(row_factory=dict_row)
    cur.execute(DEMO["expected_records"], {"client_ids": list(client_ids)})
    for row in cur.fetchall():
        amount = row["amount"]
        out[row["client_id"]][row["kind"]][row["key"]] = Record(
            row["key"], row["status"], None if amount is None else Decimal(amount)
        )
    return out


def _cents(value: Any) -> Decimal | None:
    return None if value is None else (Decimal(int(value)) / 100).quantize(Decimal("0.01"))


def _money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"))


def held_records(
    sandbox: FakeCrms,
    connected: Connected,
    key_fields: Mapping[str, str],
    stage_map: Mapping[str, str],
) -> dict[str, list[Record]]:
    """kind -> the records of the client's fake CRM that carry one of our keys."""
    state = sandbox.state(connected.crm, connected.account)
    out: dict[str, list[Record]] = {"contact": [], "organisation": [], "deal": []}
    if connected.crm == "hubspot":
        won = {stage_map.get("closed_won") or "closedwon", "closedwon"}
        lost = {stage_map.get("closed_lost") or "closedlost", "closedlost"}
        for contact in state["contacts"]:
            key = contact["properties"].get(key_fields["contact"])
            if key:
                out["contact"].append(Record(key))
        for deal in state["deals"]:
            props = deal["properties"]
            key = props.get(key_fields["deal"])
            if key:
                stage = props.get("dealstage")
                status = "won" if stage in won else "lost" if stage in lost else "open"
                out["deal"].append(Record(key, status, _money(props.get("amount"))))
    elif connected.crm == "pipedrive":
        for kind, items in (("contact", "persons"), ("organisation", "organizations")):
            field_key = key_fields["person" if kind == "contact" else "organization"]
            for item in state[items]:
                key = (item.get("custom_fields") or {}).get(field_key)
                if key:
                    out[kind].append(Record(key))
        for deal in state["deals"]:
            key = (deal.get("custom_fields") or {}).get(key_fields["deal"])
            if key:
                out["deal"].append(Record(key, deal["status"], _money(deal["value"])))
    else:  # close: a lead per contact, opportunities under it
        for lead in state["leads"]:
            key = lead.get(f"custom.{key_fields['lead']}")
            if key:
                out["contact"].append(Record(key))
        statuses = {"won": "won", "lost": "lost", "active": "open"}
        for opp in state["opportunities"]:
            key = opp.get(f"custom.{key_fields['opportunity']}")
            if key:
                status = statuses.get(opp["status_type"], opp["status_type"])
                out["deal"].append(Record(key, status, _cents(opp["value"])))
    return out


def check(
    conn: psycopg.Connection[Any], sandbox: FakeCrms, connected: Sequence[Connected]
) -> list[CrmCheck]:
    """Each connected client's CRM against the database."""
    expected = expected_records(conn, [c.client_id for c in connected])
    out = []
    for c in connected:
        row = conn.execute(DEMO["key_fields"], {"config_id": c.config_id}).fetchone()
        key_fields, stage_map = (row[0] or {}, row[1] or {}) if row else ({}, {})
        held = held_records(sandbox, c, key_fields, stage_map)
        crm = CrmCheck(c.client_id, c.crm)
        for kind, label in VENDOR_KINDS[c.crm].items():
            crm.kinds.append(KindCheck(kind, label, expected[c.client_id][kind], held[kind]))
        out.append(crm)
    return out
