"""The demo's data: a lead-generation agency's last 180 days for three client businesses.

Everything is written the way app code writes it (role ``crm_app``): INSERTs and UPDATEs of
``crm.*`` rows, each at the time it happened (``booked_at``, ``confirmed_at``,
``outcome_recorded_at``, a deal's ``stage_changed_at`` ...), and ``crm.reopen_deal``. The
lifecycle triggers do the rest (attribution, attendance, reschedules, deals made from good
meetings, stage history), so the demo shows what the triggers make of ordinary writes. Many rows
go in one statement (arrays, unnested), and every row still passes its triggers.

    clients = create_clients(conn, as_of=as_of)
    summary = seed(conn, clients, as_of=as_of)
    counts = exercised_rules(conn, [c.client_id for c in clients])

The same ``seed`` and ``as_of`` give the same data. :func:`exercised_rules` counts, with SQL over
the tables, how often the data shows each lifecycle rule of ``docs/lifecycle.md`` at work.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg

from agency_crm.errors import AgencyCrmError
from agency_crm.queries import Queries

DEMO = Queries("demo_seed")

DEFAULT_SEED = 14
HISTORY_DAYS = 180  # everything happened in the 180 days before as_of ...
UPCOMING_DAYS = 14  # ... but meetings may be booked up to two weeks ahead
DAY = timedelta(days=1)

CrmType = Literal["hubspot", "pipedrive", "close"]
Progress = Callable[[str, int, int], None]


class DemoSeedError(AgencyCrmError):
    """The demo's data cannot be written (or a lifecycle rule was not exercised)."""


@dataclass(frozen=True)
class DemoClient:
    """One client business of the agency, with the CRM it uses."""

    client_id: uuid.UUID
    name: str
    crm: CrmType
    currency: str
    timezone: str = "UTC"
    business: str = ""


_NAMESPACE = uuid.UUID("6c1f1f0e-8a52-4b8e-9d4e-1d0a9a7d2c14")


def _client_id(slug: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"agency-crm demo, seed {DEFAULT_SEED}: {slug}")


DEMO_CLIENTS: tuple[DemoClient, ...] = (
    DemoClient(
        _client_id("northwind"),
        "Northwind Observability",
        "hubspot",
        "USD",
        "America/New_York",
        "B2B SaaS: an observability platform sold to engineering teams",
    ),
    DemoClient(
        _client_id("brightside"),
        "Brightside Dental Group",
        "pipedrive",
        "USD",
        "America/Chicago",
        "a group of nine dental practices: implants, clear aligners, new patients",
    ),
    DemoClient(
        _client_id("klarwerk"),
        "Klarwerk Facility Services GmbH",
        "close",
        "EUR",
        "Europe/Berlin",
        "commercial cleaning in Berlin and Brandenburg: offices, practices, warehouses",
    ),
)


@dataclass(frozen=True)
class SeedSummary:
    """What :func:`seed` wrote, counted from the tables (soft-deleted rows included;
    live_meetings and live_deals are what a connected CRM receives)."""

    clients: int
    campaigns: int
    leads: int
    activities: int
    meetings: int
    live_meetings: int
    deals: int
    live_deals: int
    stage_changes: int
    reschedules: int
    seconds: float


# ----------------------------------------------------------------------------------------
# The businesses


@dataclass(frozen=True)
class _Campaign:
    name: str
    start_days: int  # days before as_of the campaign started ...
    end_days: int  # ... and stopped adding leads (0: still running)
    channels: tuple[tuple[str, float], ...]
    share: float  # of the client's leads
    booking_rate: float  # lead -> meeting


@dataclass(frozen=True)
class _Profile:
    leads: int
    campaigns: tuple[_Campaign, ...]
    people: Literal["us", "de"]
    companies: bool  # B2B (company, title) or patients
    titles: tuple[str, ...]
    company_words: tuple[tuple[str, ...], tuple[str, ...]]
    personal_domains: tuple[str, ...]
    meeting_types: tuple[tuple[str, float], ...]
    saturday: bool
    day_hours: tuple[int, int]
    base_show: float
    good_share: float  # of held meetings
    value: tuple[float, float, float, float, int]  # median, sigma, min, max, rounding
    products: tuple[str, ...]
    stage_days: tuple[float, float, float, float, float]
    loss: tuple[float, float, float, float, float]
    cycle_days: int
    next_steps: tuple[str, ...]
    inbound_share: float


_US_FIRST = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "Michael",
    "Jennifer",
    "David",
    "Linda",
    "William",
    "Elizabeth",
    "Carlos",
    "Maria",
    "Daniel",
    "Susan",
    "Kevin",
    "Jessica",
    "Brian",
    "Sarah",
    "Anthony",
    "Karen",
    "Jason",
    "Nancy",
    "Priya",
    "Wei",
    "Aisha",
    "Omar",
    "Emily",
    "Ryan",
    "Hannah",
    "Tyler",
    "Grace",
    "Marcus",
    "Olivia",
    "Ethan",
    "Sofia",
    "Noah",
    "Chloe",
    "Luis",
)
_US_LAST = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Nguyen",
    "Patel",
    "Kim",
    "Chen",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Okafor",
    "Schwartz",
    "Murphy",
)
_DE_FIRST = (
    "Lukas",
    "Anna",
    "Jonas",
    "Laura",
    "Felix",
    "Lea",
    "Maximilian",
    "Sarah",
    "Paul",
    "Julia",
    "Leon",
    "Katharina",
    "Tim",
    "Lena",
    "Jan",
    "Marie",
    "Niklas",
    "Sophie",
    "Moritz",
    "Hannah",
    "Stefan",
    "Sabine",
    "Thomas",
    "Claudia",
    "Andreas",
    "Petra",
    "Mehmet",
    "Ayse",
    "Tobias",
    "Miriam",
)
_DE_LAST = (
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Schäfer",
    "Koch",
    "Bauer",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
    "Schwarz",
    "Zimmermann",
    "Braun",
    "Krüger",
    "Hofmann",
    "Hartmann",
    "Lange",
    "Werner",
    "Krause",
    "Lehmann",
    "Köhler",
    "Yilmaz",
    "Kaya",
    "Nowak",
)

_PROFILES: tuple[_Profile, ...] = (
    _Profile(  # Northwind Observability: B2B SaaS, long cycles, big tickets
        leads=1000,
        campaigns=(
            _Campaign(
                "VP Engineering, Series B+ (email + LinkedIn)",
                176,
                60,
                (("email", 0.55), ("linkedin", 0.35), ("voice", 0.10)),
                0.30,
                0.17,
            ),
            _Campaign(
                "Platform teams: conference follow-up",
                150,
                110,
                (("email", 0.70), ("linkedin", 0.30)),
                0.15,
                0.21,
            ),
            _Campaign(
                "Legacy APM switchers: the cost angle",
                120,
                0,
                (("email", 0.60), ("voice", 0.25), ("linkedin", 0.15)),
                0.30,
                0.16,
            ),
            _Campaign(
                "CTO dinner invitations, New York",
                95,
                30,
                (("mail", 0.30), ("email", 0.40), ("voice", 0.30)),
                0.10,
                0.19,
            ),
            _Campaign(
                "Closed-lost reactivation", 60, 0, (("email", 0.75), ("voice", 0.25)), 0.15, 0.14
            ),
        ),
        people="us",
        companies=True,
        titles=(
            "VP Engineering",
            "Head of Platform",
            "SRE Manager",
            "CTO",
            "Director of Infrastructure",
            "Engineering Manager",
            "Staff SRE",
            "Head of DevOps",
        ),
        company_words=(
            (
                "Acme",
                "Bluefin",
                "Cobalt",
                "Driftwood",
                "Ember",
                "Foxglove",
                "Granite",
                "Helix",
                "Ironbark",
                "Juniper",
                "Kestrel",
                "Lumen",
                "Meridian",
                "Nimbus",
                "Orbital",
                "Pinecrest",
                "Quartz",
                "Redwood",
                "Sable",
                "Tidewater",
                "Umbra",
                "Vantage",
                "Willow",
                "Zephyr",
            ),
            (
                "Labs",
                "Systems",
                "Health",
                "Pay",
                "Logistics",
                "AI",
                "Cloud",
                "Analytics",
                "Software",
                "Robotics",
                "Security",
                "Commerce",
            ),
        ),
        personal_domains=(),
        meeting_types=(("discovery", 0.62), ("demo", 0.38)),
        saturday=False,
        day_hours=(9, 17),
        base_show=0.71,
        good_share=0.42,
        value=(36000.0, 0.55, 12000.0, 180000.0, 500),
        products=(
            "annual platform licence",
            "APM + logs bundle",
            "enterprise tier pilot",
            "observability migration",
        ),
        stage_days=(6.0, 9.0, 12.0, 6.0, 5.0),
        loss=(0.26, 0.22, 0.17, 0.10, 0.06),
        cycle_days=60,
        next_steps=(
            "Send proposal and security questionnaire",
            "Technical deep-dive with the platform team",
            "Pilot scoping call",
            "Pricing walkthrough with the CFO",
        ),
        inbound_share=0.04,
    ),
    _Profile(  # Brightside Dental Group: patients and a few employers, fast decisions
        leads=1000,
        campaigns=(
            _Campaign(
                "Clear aligner consult: lead-form follow-up",
                176,
                0,
                (("sms", 0.50), ("voice", 0.30), ("email", 0.20)),
                0.35,
                0.19,
            ),
            _Campaign(
                "Dental implants, 55+ (direct mail)",
                160,
                20,
                (("mail", 0.40), ("voice", 0.40), ("sms", 0.20)),
                0.25,
                0.15,
            ),
            _Campaign(
                "New patient special: $99 exam",
                120,
                0,
                (("sms", 0.50), ("email", 0.30), ("voice", 0.20)),
                0.30,
                0.18,
            ),
            _Campaign(
                "Employer dental plans: HR managers",
                90,
                10,
                (("email", 0.60), ("linkedin", 0.30), ("voice", 0.10)),
                0.10,
                0.12,
            ),
        ),
        people="us",
        companies=False,
        titles=(),
        company_words=((), ()),
        personal_domains=("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"),
        meeting_types=(("discovery", 0.80), ("other", 0.20)),
        saturday=True,
        day_hours=(8, 18),
        base_show=0.73,
        good_share=0.48,
        value=(5200.0, 0.5, 1800.0, 28000.0, 50),
        products=(
            "clear aligners",
            "implant-supported bridge",
            "single implant",
            "full-mouth restoration",
            "veneers",
        ),
        stage_days=(2.5, 4.0, 5.0, 3.0, 2.0),
        loss=(0.24, 0.20, 0.16, 0.10, 0.05),
        cycle_days=21,
        next_steps=(
            "Treatment plan and financing options",
            "CBCT scan appointment",
            "Insurance pre-authorisation",
        ),
        inbound_share=0.07,
    ),
    _Profile(  # Klarwerk Facility Services: commercial cleaning contracts in EUR
        leads=1000,
        campaigns=(
            _Campaign(
                "Office managers, Berlin-Mitte",
                176,
                40,
                (("email", 0.50), ("voice", 0.30), ("linkedin", 0.20)),
                0.30,
                0.16,
            ),
            _Campaign(
                "Medical practices: hygiene cleaning",
                140,
                0,
                (("mail", 0.30), ("voice", 0.40), ("email", 0.30)),
                0.25,
                0.18,
            ),
            _Campaign(
                "Property managers: stairwell contracts",
                110,
                0,
                (("email", 0.50), ("voice", 0.50)),
                0.25,
                0.17,
            ),
            _Campaign(
                "Warehouses, Brandenburg",
                80,
                0,
                (("voice", 0.50), ("email", 0.30), ("mail", 0.20)),
                0.20,
                0.15,
            ),
        ),
        people="de",
        companies=True,
        titles=(
            "Office Manager",
            "Geschäftsführer",
            "Facility Manager",
            "Praxismanagerin",
            "Hausverwalter",
            "Standortleiter",
            "Einkauf",
        ),
        company_words=(
            (
                "Spree",
                "Havel",
                "Linden",
                "Adler",
                "Brandenburger",
                "Mitte",
                "Kreuzberg",
                "Tegel",
                "Wannsee",
                "Charlotten",
                "Prenzlauer",
                "Köpenick",
                "Potsdamer",
                "Friedrichs",
                "Schöneberger",
            ),
            (
                "Immobilien GmbH",
                "Praxis",
                "Logistik GmbH",
                "Hausverwaltung",
                "MVZ",
                "Steuerberatung",
                "Software GmbH",
                "Kanzlei",
                "Lager & Transport",
                "Zahnärzte",
            ),
        ),
        personal_domains=(),
        meeting_types=(("discovery", 0.70), ("other", 0.30)),
        saturday=False,
        day_hours=(8, 16),
        base_show=0.75,
        good_share=0.45,
        value=(24000.0, 0.6, 6000.0, 120000.0, 100),
        products=(
            "Unterhaltsreinigung (annual)",
            "Glasreinigung + Unterhaltsreinigung",
            "Praxishygiene contract",
            "Treppenhausreinigung",
            "Hallenreinigung",
        ),
        stage_days=(5.0, 8.0, 10.0, 5.0, 6.0),
        loss=(0.25, 0.21, 0.16, 0.09, 0.06),
        cycle_days=45,
        next_steps=(
            "Site visit to measure the floor space",
            "Send Angebot with two frequencies",
            "Trial clean of one floor",
        ),
        inbound_share=0.05,
    ),
)

_OPEN_STAGES = ("qualification", "proposal", "negotiation", "verbal_commit", "contract_sent")
_STAGE_DEFAULT = {
    "qualification": 20,
    "proposal": 40,
    "negotiation": 60,
    "verbal_commit": 80,
    "contract_sent": 90,
}
LOST_REASONS = (
    "price_too_high",
    "chose_competitor",
    "no_budget",
    "timing_not_right",
    "no_decision",
    "champion_left",
    "project_cancelled",
    "went_silent",
    "bad_fit",
    "other",
)
# Why deals are lost, by the stage they were in (weights).
_LOSS_REASONS: tuple[tuple[tuple[str, int], ...], ...] = (
    (("bad_fit", 3), ("no_budget", 3), ("timing_not_right", 2), ("went_silent", 3), ("other", 1)),
    (
        ("price_too_high", 3),
        ("chose_competitor", 2),
        ("no_budget", 2),
        ("went_silent", 2),
        ("timing_not_right", 1),
        ("no_decision", 1),
    ),
    (
        ("price_too_high", 3),
        ("chose_competitor", 3),
        ("no_decision", 2),
        ("went_silent", 1),
        ("champion_left", 1),
    ),
    (
        ("champion_left", 2),
        ("project_cancelled", 2),
        ("chose_competitor", 1),
        ("no_decision", 1),
        ("other", 1),
    ),
    (
        ("project_cancelled", 2),
        ("no_decision", 2),
        ("champion_left", 1),
        ("price_too_high", 1),
        ("other", 1),
    ),
)
# What happens to a booking that no quota picked: cancelled (some without a reason), moved,
# rescheduled with a new time in the same write or later, or kept (how it went: the model).
_MODEL_PATHS = (
    ("cancel", 0.05),
    ("cancel_no_reason", 0.015),
    ("move", 0.055),
    ("both", 0.02),
    ("resched_then_time", 0.02),
    ("plain", 1.0),
)
_LOST_NOTES = {
    "price_too_high": "Came in 20-30 % above their budget line.",
    "chose_competitor": "Went with the incumbent's renewal offer.",
    "no_budget": "Budget frozen until next fiscal year.",
    "timing_not_right": "Asked us to come back next quarter.",
    "no_decision": "Committee never reached a decision.",
    "champion_left": "Our champion left the company.",
    "project_cancelled": "Project cancelled after a reorganisation.",
    "went_silent": "No reply to four follow-ups.",
    "bad_fit": "Needs we do not cover.",
    "other": "See the call notes.",
}
_REGRESSION_REASONS = (
    "Pricing revised after the security review",
    "New stakeholder joined: back to scoping",
    "Procurement asked for a revised proposal",
)
_REOPEN_REASONS = (
    "Budget approved for next quarter after all",
    "New decision maker restarted the evaluation",
    "Came back after the competitor's pilot failed",
)
_CANCEL_REASONS = (
    "Scheduling conflict",
    "Found another provider",
    "Budget freeze",
    "No longer interested",
    "Out sick",
    "Double-booked by their assistant",
)
_NO_SHOW_REASONS = ("No answer on the dial-in", "Forgot", "Emergency at work", "Wrong time zone")
# Show-rate drivers: additive effects on the chance a lead turns up.
_LEAD_TIME_EFFECT = ((1.0, 0.07), (3.0, 0.04), (7.0, 0.0), (14.0, -0.11), (math.inf, -0.24))
_WEEKDAY_EFFECT = {1: -0.14, 2: 0.05, 3: 0.06, 4: 0.05, 5: -0.16, 6: -0.06, 7: -0.15}
_CHANNEL_EFFECT = {"voice": 0.06, "linkedin": 0.03, "sms": 0.02, "email": -0.04, "mail": -0.08}


# ----------------------------------------------------------------------------------------
# The plan: rows to insert and, per row, the writes that follow, each at its time


@dataclass
class _Ev:
    at: datetime
    kind: str
    params: dict[str, Any]
    reason: str = ""  # crm.stage_change_reason for a deal's stage change


@dataclass
class _Lead:
    row: dict[str, Any]
    created_at: datetime
    company: str | None
    name: str
    channel: str | None = None  # of the last touch


@dataclass
class _Meeting:
    id: uuid.UUID
    client_id: uuid.UUID
    lead: _Lead
    campaign_id: uuid.UUID | None
    booked_at: datetime
    scheduled_at: datetime
    meeting_type: str
    booking_method: str
    channel: str | None
    row: dict[str, Any] = field(default_factory=dict)
    events: list[_Ev] = field(default_factory=list)
    late_events: list[_Ev] = field(default_factory=list)  # after the deals' writes
    deal: _Deal | None = None  # booked for a won deal: inserted once the deal is written


@dataclass
class _Deal:
    client_id: uuid.UUID
    lead: _Lead
    created_at: datetime
    id: uuid.UUID | None = None  # None: made by the trigger from meeting_id's good outcome
    meeting_id: uuid.UUID | None = None
    row: dict[str, Any] | None = None  # inserted by hand
    events: list[_Ev] = field(default_factory=list)
    stage: str = "qualification"
    value: Decimal = Decimal(0)
    closed_at: datetime | None = None
    lost_reason: str | None = None
    locked: bool = False  # its meeting's outcome is corrected after it closes: keep it so
    expected: date | None = None  # expected_close_date, as the writes leave it


@dataclass
class _Reopen:
    deal: _Deal
    reason: str
    stage: str | None
    then: Literal["won", "lost", "open"]
    expected_close: date | None
    lost_reason: str | None = None


@dataclass
class _Plan:
    campaigns: list[dict[str, Any]] = field(default_factory=list)
    leads: list[_Lead] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    meetings: list[_Meeting] = field(default_factory=list)
    deals: list[_Deal] = field(default_factory=list)
    reopens: list[_Reopen] = field(default_factory=list)
    deleted_leads: list[tuple[_Lead, datetime]] = field(default_factory=list)
    deleted_activities: list[tuple[uuid.UUID, uuid.UUID, datetime]] = field(default_factory=list)


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def _first_below(u: float, table: Sequence[tuple[str, float]]) -> str:
    """The entry of ``table`` (name, chance) that a uniform draw ``u`` falls in."""
    for name, chance in table:
        u -= chance
        if u < 0:
            return name
    return table[-1][0]


def _money(amount: float, step: int) -> Decimal:
    return Decimal(max(step, round(amount / step) * step))


class _Planner:
    """Draws one client's history from its random stream."""

    def __init__(
        self,
        client: DemoClient,
        profile: _Profile,
        rng: random.Random,
        as_of: datetime,
        scale: float,
        plan: _Plan,
    ) -> None:
        self.client, self.p, self.rng, self.as_of, self.scale = client, profile, rng, as_of, scale
        self.tz = ZoneInfo(client.timezone)
        self.plan = plan
        self.emails: set[str] = set()
        self.regressions_due = self.quota(2)  # at least this many deals move back

    # -- helpers ------------------------------------------------------------------------

    def new_id(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def quota(self, base: int) -> int:
        return max(1, round(base * self.scale))

    def days(self, lo: float, hi: float) -> timedelta:
        return timedelta(days=self.rng.uniform(lo, hi))

    def minutes(self, lo: float, hi: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(lo, hi))

    def slot(self, day: date) -> datetime:
        """A half-hour slot in business hours of ``day`` (local), as UTC."""
        first, last = self.p.day_hours
        half_hours = self.rng.randrange((last - first) * 2)
        local = datetime(day.year, day.month, day.day, first, tzinfo=self.tz)
        return (local + timedelta(minutes=30 * half_hours)).astimezone(UTC)

    def workday(self, day: date) -> date:
        weekday = day.isoweekday()
        if weekday == 6 and self.p.saturday and self.rng.random() < 0.5:
            return day
        if weekday >= 6:  # to Monday-Thursday of the next week (midweek slots fill first)
            monday = day + timedelta(days=8 - weekday)
            return monday + timedelta(days=self.rng.choices(range(4), [2, 3, 3, 2])[0])
        return day

    def later_slot(self, after: datetime, lo_days: float, hi_days: float) -> datetime:
        """A business slot lo..hi days after ``after`` (at least an hour after it), no more
        than two weeks after as_of (a week earlier, else the first half hour an hour on)."""
        local = (after + self.days(lo_days, hi_days)).astimezone(self.tz)
        at = self.slot(self.workday(local.date()))
        limit = self.as_of + timedelta(days=UPCOMING_DAYS - 0.5)
        while at > limit and at - timedelta(days=7) >= after + timedelta(hours=1):
            at -= timedelta(days=7)
        if at < after + timedelta(hours=1) or at > limit:
            at = after + timedelta(hours=1) + self.minutes(0, 180)
            at = at.replace(minute=30 if at.minute >= 30 else 0, second=0, microsecond=0)
            at += timedelta(minutes=30)
        return at

    # -- clients, campaigns, leads, touches ---------------------------------------------

    def campaigns(self) -> list[tuple[_Campaign, uuid.UUID]]:
        made = []
        for spec in self.p.campaigns:
            campaign_id = self.new_id()
            created = self.as_of - timedelta(days=spec.start_days + 2)
            self.plan.campaigns.append(
                {
                    "id": campaign_id,
                    "client_id": self.client.client_id,
                    "name": spec.name,
                    "created_at": created,
                }
            )
            made.append((spec, campaign_id))
        return made

    def person(self) -> tuple[str, str, str | None, str | None, str, str]:
        """first, last, company, title, email, phone."""
        rng, p = self.rng, self.p
        first_names, last_names = (
            (_US_FIRST, _US_LAST) if p.people == "us" else (_DE_FIRST, _DE_LAST)
        )
        first, last = rng.choice(first_names), rng.choice(last_names)
        company = title = None
        if p.companies:
            company = f"{rng.choice(p.company_words[0])} {rng.choice(p.company_words[1])}"
            title = rng.choice(p.titles)
            domain = "".join(ch for ch in _ascii(company.split()[0]).lower() if ch.isalnum())
            domain += "-" + "".join(
                ch for ch in _ascii(company.split()[-1]).lower() if ch.isalnum()
            )
            domain += ".example.de" if p.people == "de" else ".example.com"
        else:
            domain = rng.choice(p.personal_domains)
        local = f"{_ascii(first).lower()}.{_ascii(last).lower()}"
        email, n = f"{local}@{domain}", 1
        while email in self.emails:
            n += 1
            email = f"{local}{n}@{domain}"
        self.emails.add(email)
        if p.people == "us":
            phone = f"+1 {rng.randint(201, 989)} 555 01{rng.randint(0, 99):02d}"
        else:
            phone = f"+49 30 5550 {rng.randint(1000, 9999)}"
        return first, last, company, title, email, phone

    def lead(
        self,
        campaign: _Campaign | None,
        campaign_id: uuid.UUID | None,
        created: datetime,
        status: str,
    ) -> _Lead:
        first, last, company, title, email, phone = self.person()
        row = {
            "id": self.new_id(),
            "client_id": self.client.client_id,
            "campaign_id": campaign_id,
            "email": email,
            "first_name": first,
            "last_name": last,
            "company": company,
            "title": title,
            "phone": phone if self.rng.random() < 0.8 else None,
            "status": status,
            "created_at": created,
        }
        lead = _Lead(row, created, company, f"{first} {last}")
        self.plan.leads.append(lead)
        return lead

    def touch(
        self, lead: _Lead, campaign_id: uuid.UUID | None, channel: str, at: datetime, first: bool
    ) -> uuid.UUID:
        kind = {
            "email": "sent",
            "sms": "sent",
            "mail": "letter",
            "linkedin": "connection_request" if first else "message",
            "voice": "call" if self.rng.random() < 0.45 else "voicemail",
        }[channel]
        touch_id = self.new_id()
        self.plan.activities.append(
            {
                "id": touch_id,
                "client_id": self.client.client_id,
                "lead_id": lead.row["id"],
                "campaign_id": campaign_id,
                "channel": channel,
                "activity_type": kind,
                "occurred_at": at,
            }
        )
        return touch_id

    # -- the whole client ----------------------------------------------------------------

    def run(self) -> None:
        rng, p, as_of = self.rng, self.p, self.as_of
        campaigns = self.campaigns()
        total = max(20, round(p.leads * self.scale))
        bookings: list[_Meeting] = []
        for _ in range(total):
            spec, campaign_id = rng.choices(campaigns, weights=[c[0].share for c in campaigns])[0]
            created = as_of - self.days(spec.end_days, spec.start_days)
            created = min(created, as_of - timedelta(hours=1))
            books = rng.random() < spec.booking_rate
            inbound = books and rng.random() < p.inbound_share
            n_touches = (
                0 if inbound else rng.choices(range(1, 9), [10, 15, 18, 17, 14, 11, 8, 7])[0]
            )
            times: list[datetime] = []
            at = created + self.minutes(2, 180)
            for _i in range(n_touches):
                if at > as_of:
                    break
                times.append(at)
                at += self.days(1, 5)
            booked_at: datetime | None = None
            if books:
                if inbound:
                    booked_at = created + self.minutes(5, 1200)
                elif times:
                    times = times[: rng.randint(max(1, len(times) // 2), len(times))]
                    booked_at = times[-1] + self.minutes(20, 36 * 60)
                if booked_at is not None and booked_at > as_of - timedelta(minutes=30):
                    booked_at = None
            if booked_at is None:
                status = rng.choices(
                    ["contacted", "engaged", "unsubscribed", "bounced", "disqualified"],
                    [70, 12, 7, 6, 5],
                )[0]
                if not times:
                    status = "new"
            else:
                status = "qualified" if rng.random() < 0.15 else "engaged"
            lead = self.lead(spec, campaign_id, created, status)
            channels = []
            for i, touch_at in enumerate(times):
                channel = _pick(rng, spec.channels)
                channels.append(channel)
                self.touch(lead, campaign_id, channel, touch_at, i == 0)
                if rng.random() < 0.012:  # logged twice by the sequencer; removed later
                    dup = self.touch(lead, campaign_id, channel, touch_at, i == 0)
                    gone = min(touch_at + self.days(0.5, 6), as_of)
                    self.plan.deleted_activities.append((self.client.client_id, dup, gone))
            lead.channel = channels[-1] if channels else None
            if booked_at is not None:
                bookings.append(self.booking(lead, campaign_id, booked_at, lead.channel))
            if rng.random() < 0.01 and booked_at is None:  # a duplicate from a re-import
                dup_lead = self.lead(spec, campaign_id, created + self.minutes(5, 600), "new")
                dup_lead.row.update(
                    first_name=lead.row["first_name"],
                    last_name=lead.row["last_name"],
                    company=lead.row["company"],
                    title=lead.row["title"],
                )
                gone = min(dup_lead.created_at + self.days(1, 5), as_of)
                self.plan.deleted_leads.append((dup_lead, gone))
        self.stories(bookings)
        self.extra_deals()

    def booking(
        self,
        lead: _Lead,
        campaign_id: uuid.UUID | None,
        booked_at: datetime,
        channel: str | None,
        meeting_type: str | None = None,
    ) -> _Meeting:
        rng = self.rng
        lead_days = rng.choices(
            [(0.0, 1.0), (1.0, 3.0), (3.0, 7.0), (7.0, 14.0), (14.0, 24.0)],
            [16, 30, 30, 16, 8],
        )[0]
        days = rng.uniform(*lead_days)
        local = (booked_at + timedelta(days=days)).astimezone(self.tz)
        scheduled = self.slot(self.workday(local.date()))
        if scheduled < booked_at + timedelta(hours=1):
            scheduled = self.later_slot(booked_at, 0, 0.2)
        while scheduled > self.as_of + timedelta(days=UPCOMING_DAYS - 0.5):
            scheduled -= timedelta(days=7)
        if scheduled < booked_at + timedelta(hours=1):
            scheduled = self.later_slot(booked_at, 0.5, 2)
        if channel is None:
            booked_by, method = "lead", "calendly"
        elif channel == "voice" and rng.random() < 0.7:
            booked_by, method = "human", "phone"
        else:
            booked_by, method = rng.choices(
                [("lead", "calendly"), ("ai", "direct"), ("human", "direct")], [40, 35, 25]
            )[0]
        kind = meeting_type or _pick(rng, self.p.meeting_types)
        default_length = {"demo": 45, "onboarding": 60}.get(kind, 30)
        duration = None
        if rng.random() < 0.15:
            duration = rng.choice([m for m in (20, 30, 45, 60, 90) if m != default_length])
        created = booked_at + self.minutes(1, 20)
        give_booked = rng.random() >= 0.2
        meeting = _Meeting(
            id=self.new_id(),
            client_id=self.client.client_id,
            lead=lead,
            campaign_id=campaign_id,
            booked_at=booked_at,
            scheduled_at=scheduled,
            meeting_type=kind,
            booking_method=method,
            channel=channel,
        )
        meeting.row = {
            "id": meeting.id,
            "client_id": meeting.client_id,
            "lead_id": lead.row["id"],
            "campaign_id": campaign_id,
            "scheduled_at": scheduled,
            "duration_minutes": duration,
            "meeting_type": kind,
            "booked_by": booked_by,
            "booking_method": method,
            "meeting_link": (
                None if method == "phone" else f"https://meet.example.com/{meeting.id.hex[:10]}"
            ),
            # The calendar sync writes the booking a few minutes later; some syncs only know
            # when the row was made (the trigger books it then).
            "booked_at": booked_at if give_booked else None,
            "created_at": created if give_booked else booked_at,
            "meeting_outcome": None,
            "outcome_recorded_at": None,
            "cancellation_reason": None,
            "deleted_at": None,
            "deal_id": None,
        }
        self.plan.meetings.append(meeting)
        return meeting

    # -- meetings -------------------------------------------------------------------------

    def stories(self, bookings: list[_Meeting]) -> None:
        """Give every booking what happened to it: quotas of the rarer paths first (so each
        shows at any scale), the rest drawn from the model."""
        as_of, rng = self.as_of, self.rng
        order = list(bookings)
        rng.shuffle(order)

        def ago(m: _Meeting) -> float:
            return (as_of - m.scheduled_at).total_seconds() / 86400

        def soon(m: _Meeting) -> bool:
            # The paths that end in a meeting held take meetings that would likely be held
            # anyway (booked less than a week ahead), so they leave the show rates alone.
            return m.scheduled_at - m.booked_at < timedelta(days=7)

        quotas: list[tuple[str, int, Callable[[_Meeting], bool]]] = [
            ("good_then_lost_bad", 2, lambda m: ago(m) > 35 and soon(m)),
            ("good_then_deleted_bad", 1, lambda m: ago(m) > 35 and soon(m)),
            ("no_show_to_good", 2, lambda m: ago(m) > 30 and soon(m)),
            ("hand_deal", 5, lambda m: ago(m) > 12 and soon(m)),
            ("import_rescheduled", 2, lambda m: ago(m) > 20),
            ("import_deleted", 1, lambda m: ago(m) > 5),
            ("uncancel", 2, lambda m: ago(m) > 14),
            ("resched_then_time", 2, lambda m: ago(m) > 14),
            ("both", 2, lambda m: ago(m) > 14),
            ("move", 3, lambda m: ago(m) > 14),
            ("no_show_rebooked", 2, lambda m: 1.5 < ago(m) < 9),
            ("resched_open", 2, lambda m: -10 < ago(m) < 3 and m.booked_at < as_of - DAY),
            ("show_only", 3, lambda m: 0.2 < ago(m) < 6 and soon(m)),
            ("cleared", 2, lambda m: ago(m) > 3),
            ("cancel", 4, lambda m: m.booked_at < as_of - timedelta(hours=3)),
            ("cancel_no_reason", 2, lambda m: m.booked_at < as_of - timedelta(hours=3)),
            ("duplicate", 2, lambda m: m.booked_at < as_of - timedelta(days=2)),
        ]
        assigned: dict[uuid.UUID, str] = {}
        for name, base, eligible in quotas:
            wanted = self.quota(base)
            for m in order:
                if wanted == 0:
                    break
                if m.id not in assigned and eligible(m):
                    assigned[m.id] = name
                    wanted -= 1
        for m in bookings:
            self.story(m, assigned.get(m.id, "model"))

    def story(self, m: _Meeting, path: str) -> None:
        rng, as_of = self.rng, self.as_of
        state = _SlotState()
        if path == "model":
            path = _first_below(rng.random(), _MODEL_PATHS)
        if path == "import_deleted":
            # Imported as the old system left it: deleted there (a test booking).
            m.row["deleted_at"] = m.booked_at + self.days(0.1, 1)
            return
        if path == "import_rescheduled":
            # Imported with its outcome: rescheduled, the new time never entered there. The
            # lead booked again here.
            m.row["meeting_outcome"] = "rescheduled"
            m.row["outcome_recorded_at"] = m.scheduled_at - self.minutes(60, 60 * 20)
            m.row["outcome_recorded_at"] = max(
                m.row["outcome_recorded_at"], m.booked_at + timedelta(minutes=5)
            )
            again = self.booking(
                m.lead,
                m.campaign_id,
                m.row["outcome_recorded_at"] + self.days(0.5, 3),
                m.channel,
                "follow_up",
            )
            if again.booked_at > as_of - timedelta(hours=1):
                self.plan.meetings.remove(again)
            else:
                self.story(again, "plain")
            return
        if path == "duplicate":
            dup = self.booking(m.lead, m.campaign_id, m.booked_at + self.minutes(2, 30), m.channel)
            dup.row["scheduled_at"] = dup.scheduled_at = m.scheduled_at
            gone = dup.booked_at + self.days(0.1, 1)  # the calendar sync booked it twice
            dup.events.append(_Ev(gone, "delete", {"at": gone}))
            path = "plain"
        if path in ("cancel", "cancel_no_reason", "uncancel"):
            self.prepare(m, state, m.booked_at)
            cancel_at = m.booked_at + (min(m.scheduled_at, as_of) - m.booked_at) * rng.uniform(
                0.2, 0.95
            )
            reason = None if path == "cancel_no_reason" else rng.choice(_CANCEL_REASONS)
            self.outcome(m, cancel_at, "cancelled", reason=reason)
            if path == "uncancel":
                # The lead called back: the cancellation becomes a reschedule, with a time.
                back = cancel_at + self.days(1, 4)
                new_slot = self.later_slot(back, 2, 6)
                if self.outcome(m, back, "rescheduled", new_scheduled_at=new_slot):
                    self.held(m, state, back)
            return
        if path == "move":
            moved_at = m.booked_at + (min(m.scheduled_at, as_of) - m.booked_at) * rng.uniform(
                0.3, 0.9
            )
            self.prepare(m, state, m.booked_at, before=moved_at)
            if moved_at <= as_of:
                new_slot = self.later_slot(max(moved_at, m.scheduled_at - timedelta(days=1)), 1, 7)
                self.add(m, moved_at, "move", scheduled_at=new_slot)
                m.scheduled_at = new_slot
            self.held(m, state, moved_at)
            return
        if path in ("both", "resched_then_time", "resched_open"):
            when = m.booked_at + (min(m.scheduled_at, as_of) - m.booked_at) * rng.uniform(0.4, 0.9)
            self.prepare(m, state, m.booked_at, before=when)
            if path == "both":
                new_slot = self.later_slot(when, 2, 8)
                self.outcome(m, when, "rescheduled", new_scheduled_at=new_slot)
            else:
                self.outcome(m, when, "rescheduled")  # a new time to be agreed
                if path == "resched_open":
                    return
                when += self.days(0.5, 3)
                new_slot = self.later_slot(when, 1, 6)
                if not self.add(m, when, "move", scheduled_at=new_slot):
                    return
                m.scheduled_at = new_slot
            self.held(m, state, when)
            return
        # plain, and the paths that decide how the meeting went
        self.prepare(m, state, m.booked_at)
        force = {
            "good_then_lost_bad": "good",
            "good_then_deleted_bad": "good",
            "hand_deal": "good",
            "no_show_to_good": "no_show",
            "no_show_rebooked": "no_show",
            "show_only": "pending_stays",
            "cleared": "cleared",
        }.get(path)
        self.held(m, state, m.booked_at, force=force, path=path, prepared=True)

    def add(self, m: _Meeting, when: datetime, kind: str, **params: Any) -> bool:
        """Write ``kind`` on the meeting at ``when``, if that is not after as_of."""
        if when > self.as_of:
            return False
        m.events.append(_Ev(when, kind, params))
        return True

    def outcome(
        self,
        m: _Meeting,
        at: datetime,
        outcome: str | None,
        *,
        reason: str | None = None,
        new_scheduled_at: datetime | None = None,
        attended_at: datetime | None = None,
        next_steps: str | None = None,
        keep_time: bool = False,
        late: bool = False,
    ) -> bool:
        if at > self.as_of:
            return False
        params = {
            "outcome": outcome,
            "recorded_at": None if keep_time else at,
            "attended_at": attended_at,
            "reason": reason,
            "new_scheduled_at": new_scheduled_at,
            "next_steps": next_steps,
        }
        (m.late_events if late else m.events).append(_Ev(at, "outcome", params))
        if new_scheduled_at is not None:
            m.scheduled_at = new_scheduled_at
        return True

    def prepare(
        self, m: _Meeting, state: _SlotState, since: datetime, before: datetime | None = None
    ) -> None:
        """Confirmation and reminder of the meeting's current slot, set up from ``since``
        (only what happened before ``before``, when the slot is about to move)."""
        rng = self.rng
        slot = m.scheduled_at
        until = min(slot, before or slot)
        if not state.confirmed and rng.random() < (
            0.62 if m.booking_method == "calendly" else 0.52
        ):
            at = since + (slot - since) * rng.uniform(0.05, 0.85)
            if at <= until and self.add(m, at, "confirm", at=at):
                state.confirmed = True
        if not state.reminded and rng.random() < 0.8:
            at = slot - timedelta(hours=24)
            if at < since + timedelta(hours=1):
                at = slot - timedelta(hours=1)
            if since < at <= until and self.add(m, at, "remind", at=at):
                state.reminded = True

    def show_chance(self, m: _Meeting, state: _SlotState) -> float:
        lead_days = (m.scheduled_at - m.booked_at).total_seconds() / 86400
        chance = self.p.base_show
        chance += next(effect for limit, effect in _LEAD_TIME_EFFECT if lead_days < limit)
        chance += _WEEKDAY_EFFECT[m.scheduled_at.astimezone(self.tz).isoweekday()]
        chance += _CHANNEL_EFFECT.get(m.channel or "", 0.07)  # inbound: they asked for it
        chance += 0.10 if state.confirmed else -0.11
        chance += 0.05 if state.reminded else -0.06
        chance += 0.15 if m.meeting_type == "onboarding" else 0.0  # customers turn up
        return min(0.96, max(0.1, chance))

    def held(
        self,
        m: _Meeting,
        state: _SlotState,
        since: datetime,
        *,
        force: str | None = None,
        path: str = "plain",
        prepared: bool = False,
    ) -> None:
        """The current slot: confirmation and reminder, then (once it is over) how it went."""
        rng, as_of = self.rng, self.as_of
        if not prepared:
            self.prepare(m, state, since)
        slot = m.scheduled_at
        length = timedelta(minutes=m.row["duration_minutes"] or 30)
        attended = slot + self.minutes(1, 8)
        recorded = slot + length + self.minutes(5, 240)
        if recorded > as_of:
            return  # still to come, or just over: nothing recorded yet
        showed = rng.random() < self.show_chance(m, state)
        kind = rng.random()
        if force is None:
            if rng.random() < 0.02:
                return  # the rep never logged it
            if not showed:
                force = "no_show"
            elif path == "onboarding":
                force = "good" if kind < 0.85 else "pending" if kind < 0.95 else "bad"
            elif kind < self.p.good_share:
                force = "good"
            elif kind < 0.9:
                force = "bad"
            else:
                force = "pending"
        if force == "no_show":
            reason = rng.choice(_NO_SHOW_REASONS) if rng.random() < 0.4 else None
            if path in ("no_show_to_good",):
                reason = reason or "No answer on the dial-in"
            self.outcome(m, recorded, "no_show", reason=reason, attended_at=attended)
            if path == "no_show_to_good":
                # They had joined from another link: the rep corrects the outcome.
                fixed = recorded + self.days(0.5, 2)
                if self.outcome(m, fixed, "good", next_steps=rng.choice(self.p.next_steps)):
                    self.deal_from(m, fixed)
            elif path == "no_show_rebooked":
                back = recorded + self.days(0.5, 2)
                new_slot = self.later_slot(max(back, as_of), 1, 6)
                self.outcome(m, back, "rescheduled", new_scheduled_at=new_slot)
            return
        if force == "cleared":
            self.outcome(m, recorded, rng.choice(["no_show", "bad"]), attended_at=attended)
            # logged on the wrong meeting: cleared (its time goes with it)
            self.outcome(m, recorded + self.days(0.3, 2), None, keep_time=True)
            return
        if force in ("pending", "pending_stays"):
            self.add(m, attended, "attend", at=attended)
            decided = recorded + self.days(1, 5)
            if force == "pending_stays" or decided > as_of:
                return
            force = "good" if rng.random() < 0.5 else "bad"
            recorded = decided
        if force == "bad":
            self.outcome(m, recorded, "bad", attended_at=attended)
            return
        if path == "onboarding":  # the kick-off of a won deal: the meeting has its deal
            self.outcome(m, recorded, "good", attended_at=attended, next_steps="Go live")
            return
        steps = rng.choice(self.p.next_steps)
        if path == "hand_deal":
            # The account executive opens the deal right after the call; the SDR logs the
            # outcome later and the trigger links the two.
            opened = slot + length + self.minutes(5, 30)
            logged = max(recorded, opened + self.minutes(60, 600))
            if logged <= as_of:
                self.deal_by_hand(m, opened)
                self.outcome(m, logged, "good", attended_at=attended, next_steps=steps)
                return
        if not self.outcome(m, recorded, "good", attended_at=attended, next_steps=steps):
            return
        deal = self.deal_from(m, recorded, work=not path.startswith("good_then_"))
        if path == "good_then_lost_bad":
            deal.locked = True
            lost_at = recorded + self.days(2, 9)
            deal.events.append(
                _Ev(lost_at, "move", self.stage_params("closed_lost", lost_at, "bad_fit"))
            )
            deal.stage, deal.closed_at, deal.lost_reason = "closed_lost", lost_at, "bad_fit"
            self.outcome(m, lost_at + self.days(0.5, 2), "bad", late=True)
        elif path == "good_then_deleted_bad":
            deal.locked = True
            gone = recorded + self.days(0.2, 1)
            deal.events.append(_Ev(gone, "delete", {"at": gone}))
            self.outcome(m, gone + self.minutes(5, 60), "bad", late=True)

    # -- deals ----------------------------------------------------------------------------

    def value(self) -> Decimal:
        median, sigma, low, high, step = self.p.value
        return _money(min(high, max(low, self.rng.lognormvariate(math.log(median), sigma))), step)

    def deal_name(self, lead: _Lead) -> str:
        who = lead.company or lead.name
        return f"{who}: {self.rng.choice(self.p.products)}"

    def deal_from(self, m: _Meeting, at: datetime, *, work: bool = True) -> _Deal:
        """The deal the trigger makes from the good outcome at ``at``; the rep then enters its
        amount and expected close date, and works it."""
        deal = _Deal(self.client.client_id, m.lead, at, meeting_id=m.id)
        self.plan.deals.append(deal)
        terms_at = at + self.minutes(20, 60 * 8)
        deal.value = self.value()
        close: date | None = self.close_date(at)
        if terms_at <= self.as_of:
            deal.events.append(
                _Ev(terms_at, "terms", {"value": deal.value, "expected_close_date": close})
            )
        else:
            close = None  # not entered yet
        if work:
            self.work(deal, at, close)
        return deal

    def close_date(self, start: datetime) -> date:
        return (start + timedelta(days=self.p.cycle_days * self.rng.uniform(0.8, 1.6))).date()

    def deal_by_hand(self, m: _Meeting, at: datetime) -> _Deal:
        deal = _Deal(self.client.client_id, m.lead, at, id=self.new_id(), meeting_id=m.id)
        deal.value = self.value()
        close = self.close_date(at)
        deal.row = self.deal_row(deal, self.deal_name(m.lead), close)
        self.plan.deals.append(deal)
        self.work(deal, at, close)
        return deal

    def deal_row(self, deal: _Deal, name: str, close: date | None) -> dict[str, Any]:
        assert deal.id is not None
        return {
            "id": deal.id,
            "client_id": deal.client_id,
            "lead_id": deal.lead.row["id"],
            "meeting_id": deal.meeting_id,
            "name": name,
            "value": deal.value,
            "stage": "qualification",
            "expected_close_date": close,
            "closed_at": None,
            "lost_reason": None,
            "lost_notes": None,
            "created_at": deal.created_at,
        }

    def stage_params(
        self,
        stage: str,
        at: datetime,
        lost_reason: str | None = None,
        value: Decimal | None = None,
    ) -> dict[str, Any]:
        return {
            "stage": stage,
            "at": at,
            "lost_reason": lost_reason,
            "lost_notes": _LOST_NOTES[lost_reason] if lost_reason else None,
            "value": value,
        }

    def work(self, deal: _Deal, start: datetime, close: date | None) -> None:
        """The deal's way through the pipeline from ``start``: forward (sometimes skipping a
        stage), sometimes back, lost from any stage, or won; open when as_of comes first."""
        rng, p, as_of = self.rng, self.p, self.as_of
        stage, at = 0, start
        regressed = False
        for _ in range(14):
            at = at + timedelta(days=max(0.4, p.stage_days[stage] * rng.lognormvariate(0, 0.5)))
            if at > as_of:
                break
            u = rng.random()
            if u < p.loss[stage]:
                reason = rng.choices(*zip(*_LOSS_REASONS[stage], strict=True))[0]
                deal.events.append(_Ev(at, "move", self.stage_params("closed_lost", at, reason)))
                deal.stage, deal.closed_at, deal.lost_reason = "closed_lost", at, reason
                return
            if stage >= 2 and not regressed and (u < p.loss[stage] + 0.09 or self.regressions_due):
                self.regressions_due = max(0, self.regressions_due - 1)
                back = stage - (2 if rng.random() < 0.3 else 1)
                deal.events.append(
                    _Ev(
                        at,
                        "move",
                        self.stage_params(_OPEN_STAGES[back], at),
                        reason=rng.choice(_REGRESSION_REASONS),
                    )
                )
                stage, regressed = back, True
                continue
            if stage == len(_OPEN_STAGES) - 1:
                final = deal.value
                if rng.random() < 0.3:  # a discount to sign
                    final = _money(float(deal.value) * rng.uniform(0.85, 0.97), p.value[4])
                deal.events.append(
                    _Ev(at, "move", self.stage_params("closed_won", at, value=final))
                )
                deal.stage, deal.closed_at, deal.value = "closed_won", at, final
                return
            step = 2 if stage <= 2 and rng.random() < 0.08 else 1
            stage = min(stage + step, len(_OPEN_STAGES) - 1)
            deal.events.append(_Ev(at, "move", self.stage_params(_OPEN_STAGES[stage], at)))
        deal.stage = _OPEN_STAGES[stage]
        # Still open at as_of: the close date slips once or twice, and some reps put their
        # own probability on the deal.
        expected = deal.expected = close
        for _slip in range(3):
            if expected is None:
                break
            due = datetime(expected.year, expected.month, expected.day, 12, tzinfo=UTC)
            if due >= as_of:
                break
            at_slip = due + self.days(1, 6)
            if at_slip > as_of:
                break
            expected = deal.expected = (at_slip + self.days(14, 45)).date()
            deal.events.append(
                _Ev(at_slip, "terms", {"value": deal.value, "expected_close_date": expected})
            )

    def extra_deals(self) -> None:
        """Deals without a meeting: referrals entered by hand (some backdated, one entered
        twice and deleted), and closed deals imported from the CRM the client had before."""
        rng, as_of = self.rng, self.as_of
        deleted = {id(d[0]) for d in self.plan.deleted_leads}
        leads = [
            lead
            for lead in self.plan.leads
            if lead.row["client_id"] == self.client.client_id and id(lead) not in deleted
        ]
        live = [lead for lead in leads if lead.row["status"] in ("engaged", "qualified")]
        old = [lead for lead in live if lead.created_at < as_of - timedelta(days=120)]
        for i in range(self.quota(5)):
            lead = rng.choice(live)
            created = max(lead.created_at, as_of - timedelta(days=150)) + self.days(3, 90)
            if created > as_of - timedelta(days=2):
                created = as_of - self.days(2, 10)
            created = max(created, lead.created_at + timedelta(hours=1))
            deal = _Deal(self.client.client_id, lead, created, id=self.new_id())
            deal.value = self.value()
            close = self.close_date(created)
            deal.row = self.deal_row(deal, self.deal_name(lead) + " (referral)", close)
            self.plan.deals.append(deal)
            if i % 2 == 0:
                fixed = created + self.days(0.2, 1)
                earlier = created - self.days(2, 10)
                earlier = max(earlier, lead.created_at)
                if fixed <= as_of:
                    deal.events.append(_Ev(fixed, "backdate", {"created_at": earlier}))
            self.work(deal, created + timedelta(days=1), close)
        for _ in range(self.quota(2)):
            lead = rng.choice(live)
            created = max(lead.created_at + self.days(1, 20), as_of - self.days(20, 150))
            if created > as_of - timedelta(days=1):
                continue
            dup = _Deal(self.client.client_id, lead, created, id=self.new_id())
            dup.value = self.value()
            dup.row = self.deal_row(dup, self.deal_name(lead), None)
            gone = created + self.minutes(20, 600)
            dup.events.append(_Ev(gone, "delete", {"at": gone}))
            self.plan.deals.append(dup)
        for won in (True, True, False):
            lead = rng.choice(old or leads)
            created = lead.created_at + self.days(1, 15)
            closed = created + self.days(10, 40)
            if closed > as_of - timedelta(days=1):
                continue
            deal = _Deal(self.client.client_id, lead, created, id=self.new_id())
            deal.value = self.value()
            row = self.deal_row(deal, self.deal_name(lead) + " (imported)", closed.date())
            reason = None if won else rng.choice(LOST_REASONS)
            row.update(
                stage="closed_won" if won else "closed_lost",
                closed_at=closed,
                lost_reason=reason,
                lost_notes=_LOST_NOTES[reason] if reason else None,
            )
            deal.row = row
            deal.stage = str(row["stage"])
            deal.closed_at, deal.lost_reason = closed, reason
            self.plan.deals.append(deal)

    def mine(self) -> list[_Deal]:
        """This client's deals, but those whose meeting is corrected after them and those
        soft-deleted."""
        return [
            d
            for d in self.plan.deals
            if d.client_id == self.client.client_id
            and not d.locked
            and not any(e.kind == "delete" for e in d.events)
        ]

    def own_probabilities(self) -> None:
        """Some reps put their own win probability on an open deal (a fifth of them, at
        least a few): the last write of the deal."""
        rng, as_of = self.rng, self.as_of
        reopened = {id(r.deal) for r in self.plan.reopens}
        still_open = [d for d in self.mine() if d.stage in _OPEN_STAGES and id(d) not in reopened]
        rng.shuffle(still_open)
        for deal in still_open[: max(self.quota(3), len(still_open) // 5)]:
            last = max([e.at for e in deal.events], default=deal.created_at)
            at = last + min(self.days(0.2, 3), (as_of - last) * 0.9)
            if at > last:
                default = _STAGE_DEFAULT[deal.stage]
                own = max(5, min(95, default + rng.choice([-15, -10, 10, 15])))
                deal.events.append(_Ev(at, "prob", {"probability": own}))

    def close_dates(self) -> None:
        """A few open deals at least are expected to close after this month (the buyer moved
        the start): the weighted forecast looks ahead."""
        rng, as_of = self.rng, self.as_of
        reopened = {id(r.deal) for r in self.plan.reopens}
        still_open = [d for d in self.mine() if d.stage in _OPEN_STAGES and id(d) not in reopened]
        month = as_of.date().replace(day=1)
        next_month = (month + timedelta(days=32)).replace(day=1)
        ahead = [d for d in still_open if d.expected is not None and d.expected >= next_month]
        behind = [d for d in still_open if d not in ahead]
        rng.shuffle(behind)
        for deal in behind[: max(0, self.quota(3) - len(ahead))]:
            last = max([e.at for e in deal.events], default=deal.created_at)
            at = last + min(self.days(0.2, 3), (as_of - last) * 0.9)
            if at > last:
                deal.expected = next_month + timedelta(days=rng.randint(2, 40))
                deal.events.append(
                    _Ev(at, "terms", {"value": deal.value, "expected_close_date": deal.expected})
                )

    def lost_reasons(self) -> None:
        """Every lost reason shows up in the client's lost deals: where the draw left one
        out, a deal lost for the client's most common reason is lost for it instead."""
        reopened = {id(r.deal) for r in self.plan.reopens}
        lost = [
            (d, e)
            for d in self.mine()
            if id(d) not in reopened
            for e in d.events
            if e.kind == "move" and e.params["stage"] == "closed_lost"
        ]
        for missing in LOST_REASONS:
            counts = Counter(e.params["lost_reason"] for _, e in lost)
            if counts[missing] or not lost:
                continue
            common = counts.most_common(1)[0][0]
            deal, event = self.rng.choice(
                [(d, e) for d, e in lost if e.params["lost_reason"] == common]
            )
            event.params["lost_reason"] = missing
            event.params["lost_notes"] = _LOST_NOTES[missing]
            deal.lost_reason = missing

    def onboardings(self) -> None:
        """Half the deals won here book a kick-off meeting, linked to the deal when it is
        booked; its good outcome makes no second deal."""
        rng, as_of = self.rng, self.as_of
        reopened = {id(r.deal) for r in self.plan.reopens}
        won = [
            d
            for d in self.mine()
            if d.stage == "closed_won"
            and d.closed_at is not None
            and id(d) not in reopened
            and (d.row is None or d.row["stage"] == "qualification")  # not imported closed
        ]
        rng.shuffle(won)
        for deal in won[: max(self.quota(1), len(won) // 2)]:
            assert deal.closed_at is not None
            booked = deal.closed_at + self.days(0.3, 3)
            if booked > as_of - timedelta(hours=2):
                continue
            lead = deal.lead
            m = self.booking(lead, lead.row["campaign_id"], booked, lead.channel, "onboarding")
            m.row["scheduled_at"] = m.scheduled_at = self.later_slot(booked, 2, 9)
            m.row.update(booked_by="human", booking_method="direct")
            m.booking_method, m.deal = "direct", deal
            self.story(m, "onboarding")

    def reopens(self) -> None:
        """A few lost deals come back (crm.reopen_deal), and one won deal whose signed
        contract bounced: some are closed again, one stays open."""
        rng, as_of = self.rng, self.as_of
        mine = self.mine()
        lost = [
            d
            for d in mine
            if d.stage == "closed_lost"
            and d.closed_at is not None
            and d.closed_at < as_of - timedelta(days=7)
            and d.lost_reason in ("timing_not_right", "no_budget", "went_silent", "no_decision")
        ]
        won = [d for d in mine if d.stage == "closed_won"]
        rng.shuffle(lost)
        plans: list[tuple[Literal["won", "lost", "open"], str | None]] = [
            ("won", None),
            ("lost", None),
            ("open", "proposal"),
        ]
        for i, deal in enumerate(lost[: max(3, self.quota(3))]):
            then, stage = plans[i % len(plans)]
            self.plan.reopens.append(
                _Reopen(
                    deal,
                    _REOPEN_REASONS[i % len(_REOPEN_REASONS)],
                    stage,
                    then,
                    (as_of + self.days(14, 60)).date() if then == "open" else None,
                    "no_decision" if then == "lost" else None,
                )
            )
        if won:
            deal = rng.choice(won)
            self.plan.reopens.append(
                _Reopen(
                    deal,
                    "Signed contract bounced back from their legal team",
                    "contract_sent",
                    "won",
                    None,
                )
            )


@dataclass
class _SlotState:
    confirmed: bool = False
    reminded: bool = False


def _ascii(text: str) -> str:
    return (
        text.replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("ß", "ss")
        .replace("Ä", "Ae")
        .replace("Ö", "Oe")
        .replace("Ü", "Ue")
        .replace("&", "und")
    )


def _plan(clients: Sequence[DemoClient], as_of: datetime, seed: int, scale: float) -> _Plan:
    plan = _Plan()
    for i, client in enumerate(clients):
        rng = random.Random(f"agency-crm demo {seed} {i}")
        planner = _Planner(client, _PROFILES[i % len(_PROFILES)], rng, as_of, scale, plan)
        planner.run()
        planner.reopens()
        planner.lost_reasons()
        planner.close_dates()
        planner.own_probabilities()
        planner.onboardings()
    return plan


# ----------------------------------------------------------------------------------------
# Writing the plan


_MEETING_WRITES = {
    "confirm": "confirm_meetings",
    "remind": "remind_meetings",
    "move": "move_meetings",
    "attend": "record_attendance",
    "outcome": "record_outcomes",
    "delete": "soft_delete_meetings",
}
_DEAL_WRITES = {
    "terms": "set_deal_terms",
    "move": "move_deals",
    "prob": "set_deal_probability",
    "backdate": "backdate_deals",
    "delete": "soft_delete_deals",
}


def _columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows (dicts with the same keys) as one array per key, for the unnest queries."""
    return {key: [row[key] for row in rows] for key in rows[0]} if rows else {}


class _Writer:
    def __init__(self, conn: psycopg.Connection[Any], total: int, progress: Progress | None):
        self.conn, self.total, self.progress, self.done = conn, total, progress, 0

    def step(self, label: str) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(label, min(self.done, self.total), self.total)

    def run(self, query: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(DEMO[query], _columns(rows))

    def rounds(
        self,
        chains: Sequence[tuple[uuid.UUID, uuid.UUID, list[_Ev]]],
        writes: dict[str, str],
    ) -> None:
        """The k-th write of every row in one statement per kind (and reason), k = 0, 1, ...:
        each row's writes in their time order, many rows at once."""
        ordered = [(c, i, sorted(events, key=lambda e: e.at)) for c, i, events in chains]
        depth = max((len(events) for _, _, events in ordered), default=0)
        for k in range(depth):
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for client_id, row_id, events in ordered:
                if k < len(events):
                    event = events[k]
                    groups.setdefault((event.kind, event.reason), []).append(
                        {"client_id": client_id, "id": row_id, **event.params}
                    )
            for (kind, reason), rows in sorted(groups.items()):
                if reason:
                    self.conn.execute(DEMO["stage_change_reason"], {"reason": reason})
                self.run(writes[kind], rows)
                if reason:
                    self.conn.execute(DEMO["stage_change_reason"], {"reason": ""})


_STEPS = (
    "campaigns",
    "leads",
    "touches",
    "meetings",
    "deals entered by hand",
    "meeting updates",
    "deal updates",
    "outcome corrections",
    "reopened deals",
    "kick-off meetings",
    "leads and touches tidied",
)


def _write(conn: psycopg.Connection[Any], plan: _Plan, progress: Progress | None) -> None:
    w = _Writer(conn, len(_STEPS), progress)
    w.run("insert_campaigns", plan.campaigns)
    w.step(_STEPS[0])
    w.run("insert_leads", [lead.row for lead in plan.leads])
    w.step(_STEPS[1])
    w.run("insert_activities", plan.activities)
    w.step(_STEPS[2])
    w.run("insert_meetings", [m.row for m in plan.meetings if m.deal is None])
    w.step(_STEPS[3])
    # Deals the reps entered themselves (before the outcome of their meeting, if any).
    w.run("insert_deals", [d.row for d in plan.deals if d.row is not None])
    w.step(_STEPS[4])
    w.rounds(
        [(m.client_id, m.id, m.events) for m in plan.meetings if m.deal is None], _MEETING_WRITES
    )
    w.step(_STEPS[5])
    # The deals the good outcomes made: find them by their meeting.
    auto = [d for d in plan.deals if d.id is None]
    found = dict(
        conn.execute(
            DEMO["meeting_deals"],
            {
                "client_ids": sorted({d.client_id for d in auto}),
                "ids": [d.meeting_id for d in auto],
            },
        ).fetchall()
    )
    for deal in auto:
        deal.id = found.get(deal.meeting_id)
        if deal.id is None:
            raise DemoSeedError(
                f"meeting {deal.meeting_id}: its good outcome made no deal",
                hint="the client must have auto_create_deals (create_clients sets it)",
            )
    w.rounds([(d.client_id, d.id, d.events) for d in plan.deals if d.id], _DEAL_WRITES)
    w.step(_STEPS[6])
    w.rounds([(m.client_id, m.id, m.late_events) for m in plan.meetings], _MEETING_WRITES)
    w.step(_STEPS[7])
    for reopen in plan.reopens:
        conn.execute(
            DEMO["reopen_deal"],
            {"deal_id": reopen.deal.id, "reason": reopen.reason, "stage": reopen.stage},
        )
    closing = [r for r in plan.reopens if r.then != "open"]
    w.run(
        "close_deals_now",
        [
            {
                "client_id": r.deal.client_id,
                "id": r.deal.id,
                "stage": "closed_won" if r.then == "won" else "closed_lost",
                "lost_reason": r.lost_reason,
            }
            for r in closing
        ],
    )
    w.run(
        "set_deal_terms",
        [
            {
                "client_id": r.deal.client_id,
                "id": r.deal.id,
                "value": r.deal.value,
                "expected_close_date": r.expected_close,
            }
            for r in plan.reopens
            if r.then == "open"
        ],
    )
    for r in plan.reopens:
        r.deal.stage = "closed_won" if r.then == "won" else r.deal.stage
    w.step(_STEPS[8])
    # Kick-off meetings of won deals, booked with their deal.
    kickoffs = [m for m in plan.meetings if m.deal is not None]
    w.run("insert_meetings", [{**m.row, "deal_id": m.deal.id} for m in kickoffs if m.deal])
    w.rounds([(m.client_id, m.id, m.events) for m in kickoffs], _MEETING_WRITES)
    w.step(_STEPS[9])
    customers = {(d.client_id, d.lead.row["id"]) for d in plan.deals if d.stage == "closed_won"}
    w.run(
        "set_lead_status",
        [{"client_id": c, "id": i, "status": "customer"} for c, i in sorted(customers)],
    )
    w.run(
        "soft_delete_leads",
        [
            {"client_id": lead.row["client_id"], "id": lead.row["id"], "at": at}
            for lead, at in plan.deleted_leads
        ],
    )
    w.run(
        "soft_delete_activities",
        [{"client_id": c, "id": i, "at": at} for c, i, at in plan.deleted_activities],
    )
    w.step(_STEPS[10])


# ----------------------------------------------------------------------------------------
# The public functions


def create_clients(
    conn: psycopg.Connection[Any], *, as_of: datetime | None = None
) -> list[DemoClient]:
    """Insert the three demo clients (:data:`DEMO_CLIENTS`, fixed ids), created 180 days before
    ``as_of`` (default: now), with deals auto-created from good meetings. Refuses, changing
    nothing, when any of them exists already (soft-deleted ones too)."""
    ids = [c.client_id for c in DEMO_CLIENTS]
    existing = [row[0] for row in conn.execute(DEMO["existing_clients"], {"ids": ids})]
    if existing:
        names = ", ".join(c.name for c in DEMO_CLIENTS if c.client_id in existing)
        raise DemoSeedError(
            f"the demo clients exist already in this database: {names}",
            hint="seed the demo into an empty database (agency-crm demo makes its own)",
        )
    created = (as_of or datetime.now(UTC)) - timedelta(days=HISTORY_DAYS)
    with conn.transaction():
        conn.execute(
            DEMO["insert_clients"],
            {
                "id": ids,
                "name": [c.name for c in DEMO_CLIENTS],
                "currency": [c.currency for c in DEMO_CLIENTS],
                "timezone": [c.timezone for c in DEMO_CLIENTS],
                "created_at": [created] * len(DEMO_CLIENTS),
            },
        )
    return list(DEMO_CLIENTS)


def seed(
    conn: psycopg.Connection[Any],
    clients: Sequence[DemoClient],
    *,
    as_of: datetime,
    seed: int = DEFAULT_SEED,
    scale: float = 1.0,
    progress: Callable[[str, int, int], None] | None = None,
) -> SeedSummary:
    """Write 180 days of the clients' history, ending at ``as_of`` (the demo's now), in one
    transaction: campaigns, about 1,000 leads per client (times ``scale``) with their touches,
    meetings and deals, every write at the time it happened. The same ``seed`` and ``as_of``
    write the same data. ``progress(step, done, total)`` is called after each step.

    ``as_of`` must not be after the database's now(): the triggers refuse outcomes of meetings
    still to come, and meetings after as_of stay unresolved. The clients must exist
    (:func:`create_clients`) with auto_create_deals."""
    if as_of.tzinfo is None:
        raise DemoSeedError(
            f"as_of {as_of.isoformat()} has no time zone",
            hint="pass an aware datetime, e.g. datetime.now(UTC)",
        )
    if not clients:
        raise DemoSeedError("no clients to seed", hint="create_clients(conn) makes the three")
    if not 0 < scale <= 20:
        raise DemoSeedError(f"scale {scale} is out of range", hint="give a scale from 0 to 20")
    began = time.perf_counter()
    with conn.transaction():
        row = conn.execute(DEMO["database_now"]).fetchone()
        assert row is not None
        now: datetime = row[0]
        if as_of > now:
            raise DemoSeedError(
                f"as_of {as_of.isoformat()} is after the database's now() {now.isoformat()}",
                hint="the triggers refuse outcomes of meetings still to come: pass as_of <="
                " now(), e.g. datetime.now(UTC) taken before seeding",
            )
        plan = _plan(clients, as_of, seed, scale)
        _write(conn, plan, progress)
        counts = conn.execute(
            DEMO["summary_counts"], {"client_ids": [c.client_id for c in clients]}
        ).fetchone()
    assert counts is not None
    (
        clients_n,
        campaigns,
        leads,
        activities,
        meetings,
        live_meetings,
        deals,
        live_deals,
        stage_changes,
        reschedules,
    ) = (int(n) for n in counts)
    return SeedSummary(
        clients=clients_n,
        campaigns=campaigns,
        leads=leads,
        activities=activities,
        meetings=meetings,
        live_meetings=live_meetings,
        deals=deals,
        live_deals=live_deals,
        stage_changes=stage_changes,
        reschedules=reschedules,
        seconds=time.perf_counter() - began,
    )


# What exercised_rules counts, one per rule of docs/lifecycle.md the data can show (a refusal
# leaves nothing behind to count), in the order of the named query.
LIFECYCLE_RULES: tuple[str, ...] = (
    "meeting.booked_at_from_created_at",
    "meeting.duration_from_type",
    "meeting.converting_touch_from_activities",
    "meeting.touch_counts_from_activities",
    "meeting.booked_without_touches",
    "lead.meeting_booked_at_first_booking",
    "lead.status_meeting_booked",
    "lead.status_qualified_kept",
    "meeting.inserted_deleted_books_nothing",
    "meeting.inserted_rescheduled_counted",
    "meeting.confirmed_at_set",
    "meeting.reminder_sent_at_set",
    "meeting.attendance_time_set",
    "meeting.good_means_showed_up",
    "meeting.bad_means_showed_up",
    "meeting.no_show_means_absent",
    "meeting.show_defaults_to_pending",
    "meeting.cancelled",
    "meeting.cancelled_without_reason",
    "meeting.reschedule_by_time",
    "meeting.reschedule_by_outcome",
    "meeting.reschedule_both",
    "meeting.rescheduled_count_follows",
    "meeting.rescheduled_keeps_no_show",
    "meeting.correction_uncancelled",
    "meeting.correction_no_show_to_held",
    "meeting.correction_from_good",
    "meeting.outcome_cleared",
    "meeting.soft_deleted",
    "meeting.good_with_deal_makes_none",
    "deal.auto_created",
    "deal.hand_made_linked",
    "deal.currency_from_client",
    "deal.touches_from_activities",
    "deal.converting_touch_from_meeting",
    "deal.probability_from_stage",
    "deal.probability_given_kept",
    "deal.history_first_row",
    "deal.stage_forward",
    "deal.stage_regression",
    "deal.stage_change_reason",
    "deal.time_in_stage",
    "deal.stage_changed_at_is_history",
    "deal.closed_won",
    "deal.closed_lost",
    "deal.inserted_closed",
    "deal.reopened",
    "deal.closed_again_after_reopen",
    "deal.created_at_moved_earlier",
    "deal.soft_deleted",
    "lead.soft_deleted",
    "activity.soft_deleted",
)


def exercised_rules(
    conn: psycopg.Connection[Any], client_ids: Sequence[uuid.UUID], *, strict: bool = True
) -> dict[str, int]:
    """Rule name -> how many times the data of these clients shows the lifecycle rule at
    work, counted by SQL over the tables (docs/demo.md says what each count looks for), in
    the order of :data:`LIFECYCLE_RULES`. ``strict`` (the default): raise
    :class:`DemoSeedError` naming every rule counted 0."""
    rows = conn.execute(DEMO["exercised_rules"], {"client_ids": list(client_ids)}).fetchall()
    counts = {str(rule): int(times) for rule, times in rows}
    if tuple(counts) != LIFECYCLE_RULES:
        raise DemoSeedError(
            "the rule counts of sql/queries/demo_seed.sql do not match LIFECYCLE_RULES",
            hint="keep the named query exercised_rules and LIFECYCLE_RULES in step",
        )
    missing = [rule for rule, times in counts.items() if times == 0]
    if strict and missing:
        raise DemoSeedError(
            f"{len(missing)} lifecycle rule(s) not exercised by the data: {', '.join(missing)}",
            hint="seed at a larger scale, or check the seed's stories for these rules",
        )
    return counts
