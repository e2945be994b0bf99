"""Schemathesis against the live API, every check on (its defaults: no 5xx; no status,
media type, header or body the document does not promise; invalid input refused; valid input
accepted; a missing or wrong token refused; unknown methods a 405 with a true Allow), in its
examples, coverage and fuzzing phases, positive and negative, 25 examples per operation and
phase: about 1 100 requests in some 20 seconds.

The caller is a client connected to a sandbox Pipedrive, with meetings and a push log;
most generated requests name that client and the account's pipeline, stages and users (the
rest are generated, and must be refused as documented). An operation that disconnects it is
followed by a reconnection, so every operation meets a connected CRM. The server calls no
CRM but the sandbox: any other address answers 401, so a connect call with a generated key is
refused as a real CRM refuses it.

Schema-valid requests that the API refuses by design, and whose refusal the document
describes, are told to the positive-data check, per operation: a key the CRM refuses (400),
an api_base_url this server does not take (422), an id the CRM does not have (422), an OAuth
state nobody issued (400) and a callback with neither code nor error (422).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from psycopg.types.json import Jsonb

from agency_crm.api import create_app
from agency_crm.sandbox import Sandbox
from tests.api.conftest import Api, Server, build_app
from tests.api.seeding import seed_history
from tests.helpers.fixtures import Make, seal

# Hypothesis-driven, about 20 s: left out of `make test-fast` with the other property tests.
pytestmark = pytest.mark.property

# Examples per operation and phase: with 18 operations, the run stays around a minute.
MAX_EXAMPLES = 25


class LoopbackOnly(httpx.AsyncBaseTransport):
    """The CRM calls of the fuzzed server: the sandbox (loopback) for real; any other host
    (the vendors' own APIs) a 401, as for a key they do not know."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host in ("127.0.0.1", "localhost"):
            return await self.inner.handle_async_request(request)
        return httpx.Response(401, json={"error": "unknown API key", "success": False})

    async def aclose(self) -> None:
        await self.inner.aclose()


# The fuzzed client and its sandbox Pipedrive account, made when the module loads so that
# the configuration below can name the account's ids (the sandbox numbers ids across the
# process): most generated requests name them, so that they reach past the 404 of an unknown
# client or pipeline; the rest are generated, and are refused as the document says.
CLIENT = uuid.uuid4()
SANDBOX = Sandbox()
ACCOUNT = SANDBOX.admin("pipedrive").create_account()
PIPELINE = str(ACCOUNT["pipelines"][0]["id"])
STAGES = [str(s["id"]) for s in ACCOUNT["pipelines"][0]["stages"]]
USERS = [str(u["id"]) for u in ACCOUNT["users"]]


@pytest.fixture(scope="module")
def fuzzed(api_db: str, api: Api) -> Iterator[tuple[Server, str]]:
    """A server that takes no api_base_url (as `agency-crm serve` runs by default) and a
    token of a client connected to the sandbox's Pipedrive."""
    make = Make(api.seed)
    client = make.client(id=CLIENT, name="Fuzzed Pty Ltd")
    with SANDBOX:
        make.crm_config(
            client,
            crm_type="pipedrive",
            api_key=ACCOUNT["token"],
            api_base_url=SANDBOX.urls["pipedrive"],
            pipeline_id=PIPELINE,
            stage_id=STAGES[0],
            owner_id=USERS[0],
            stage_map=Jsonb({"qualification": STAGES[0], "proposal": STAGES[1]}),
            connection_status="connected",
        )
        seed_history(make, client)
        yield from _serve(api_db, api.token(client, "fuzz"))


def reconnect(api: Api) -> None:
    """Connect the fuzzed client again if an earlier operation's examples disconnected it
    (DELETE /crm/disconnect), so that every operation meets a connected CRM first."""
    [live] = api.rows(
        "SELECT is_active FROM crm.client_crm_configs WHERE client_id = %s AND deleted_at IS NULL",
        CLIENT,
    )
    if not live["is_active"]:
        api.rows(
            "SELECT * FROM crm.save_crm_connection(%s, 'pipedrive', p_api_key => %s,"
            " p_api_base_url => %s, p_pipeline_id => %s, p_stage_id => %s, p_owner_id => %s)",
            CLIENT,
            seal(CLIENT, "api_key", ACCOUNT["token"]),
            SANDBOX.urls["pipedrive"],
            PIPELINE,
            STAGES[0],
            USERS[0],
        )


def _serve(api_db: str, token: str) -> Iterator[tuple[Server, str]]:
    def http() -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=LoopbackOnly(), timeout=5)

    with Server(build_app(api_db, allow_api_base_url=False, http=http)) as server:
        yield server, token


# Schema-valid requests refused by design (and documented so), per operation.
REFUSED_BY_DESIGN = ["2xx", "401", "404", "409"]
CONFIG = schemathesis.Config.from_dict(
    {
        "request-timeout": 20,
        "dictionaries": {
            "client": {"values": [str(CLIENT)]},
            "pipeline": {"values": [PIPELINE]},
            "stage": {"values": STAGES},
            "user": {"values": USERS},
        },
        "parameters": {
            "client_id": {"dictionary": "client", "probability": 0.9},
            "path.pipeline_id": {"dictionary": "pipeline", "probability": 0.7},
            "body.pipeline_id": {"dictionary": "pipeline", "probability": 0.7},
            "body.stage_id": {"dictionary": "stage", "probability": 0.7},
            "body.owner_id": {"dictionary": "user", "probability": 0.7},
        },
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
        "operations": [
            {
                # A key the CRM refuses (400); api_base_url, which this server does not take
                # (422, as the field's description says).
                "include-operation-id": ["connect_pipedrive", "connect_close"],
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*REFUSED_BY_DESIGN, "400", "422"]
                    }
                },
            },
            {
                "include-operation-id": "start_hubspot_connect",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*REFUSED_BY_DESIGN, "422"]}
                },
            },
            {
                # A state nobody issued (400); neither code nor error (422, naming the code).
                "include-operation-id": "hubspot_callback",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": [*REFUSED_BY_DESIGN, "400", "422"]
                    }
                },
            },
            {
                # The reports: an RFC 3339 as_of before the year 1 or after 9999 in UTC (422,
                # naming query.as_of): the analytics take no window outside those years.
                "include-operation-id": [
                    "get_client_analytics",
                    "get_client_analytics_section",
                    "get_client_report",
                ],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*REFUSED_BY_DESIGN, "422"]}
                },
            },
            {
                # The agency's reports: the fuzzed token is a client's (403).
                "include-operation-id": ["get_agency_comparison", "get_agency_report"],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*REFUSED_BY_DESIGN, "403"]}
                },
            },
            {
                # An id the CRM does not have (422, naming the field).
                "include-operation-id": "update_crm_config",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": [*REFUSED_BY_DESIGN, "422"]}
                },
            },
        ],
    }
)
# The document the application serves (test_openapi.py checks the committed one is the same).
schema = schemathesis.openapi.from_dict(create_app().openapi(), config=CONFIG)


@schema.parametrize()
def test_the_api_keeps_its_document(case: Any, fuzzed: tuple[Server, str], api: Api) -> None:
    server, token = fuzzed
    reconnect(api)
    case.call_and_validate(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
