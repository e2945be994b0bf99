"""The committed OpenAPI document is the one the application serves, and it says what the
issue asks of it: every route lists the problems it can answer, as problem+json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agency_crm.api import create_app
from agency_crm.dev.generate import render_openapi
from tests.api.conftest import Api

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = create_app().openapi()
OPERATIONS = [
    (path, method, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]


def test_the_committed_document_is_current() -> None:
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == render_openapi(), (
        "docs/openapi.json is stale: run `make docs` (python -m agency_crm.dev openapi "
        "docs/openapi.json) and commit it"
    )


def test_the_server_serves_the_same_document(api: Api) -> None:
    served = api.http.get(f"{api.url}/api/v1/openapi.json")
    assert served.status_code == 200
    assert served.json() == DOCUMENT


def test_the_spec_routes_and_no_others() -> None:
    assert sorted((method.upper(), path) for path, method, _ in OPERATIONS) == sorted(
        [
            ("GET", "/api/v1/clients/{client_id}/meetings"),
            ("GET", "/api/v1/crm/config"),
            ("PUT", "/api/v1/crm/config"),
            ("POST", "/api/v1/crm/connect/hubspot"),
            ("GET", "/api/v1/crm/callback/hubspot"),
            ("POST", "/api/v1/crm/connect/pipedrive"),
            ("POST", "/api/v1/crm/connect/close"),
            ("DELETE", "/api/v1/crm/disconnect"),
            ("POST", "/api/v1/crm/test"),
            ("GET", "/api/v1/crm/pipelines"),
            ("GET", "/api/v1/crm/stages/{pipeline_id}"),
            ("GET", "/api/v1/crm/users"),
            ("GET", "/api/v1/crm/logs"),
            ("GET", "/api/v1/clients/{client_id}/analytics"),
            ("GET", "/api/v1/clients/{client_id}/analytics/{section}"),
            ("GET", "/api/v1/clients/{client_id}/report"),
            ("GET", "/api/v1/agency/analytics/comparison"),
            ("GET", "/api/v1/agency/report"),
        ]
    )


@pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS, ids=lambda v: str(v))
def test_each_error_is_a_problem_and_the_common_ones_are_listed(
    path: str, method: str, operation: dict[str, Any]
) -> None:
    responses = operation["responses"]
    errors = {int(code): r for code, r in responses.items() if int(code) >= 400}
    assert {401, 422, 500} <= set(errors), (method, path, sorted(errors))
    if "{client_id}" in path or "client_id" in {p["name"] for p in operation["parameters"]}:
        assert 404 in errors
    if "requestBody" in operation:
        assert {400, 415} <= set(errors)
    for code, response in errors.items():
        content = response["content"]
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }, (method, path, code)
        assert set(content) <= {"application/problem+json", "text/html"}
    assert "WWW-Authenticate" in errors[401]["headers"]


def test_parameters_are_never_null_and_request_bodies_refuse_unknown_fields() -> None:
    for _, _, operation in OPERATIONS:
        for parameter in operation.get("parameters", []):
            assert {"type": "null"} not in parameter["schema"].get("anyOf", []), parameter
    schemas = DOCUMENT["components"]["schemas"]
    for name in ("ApiKeyConnect", "ConfigUpdate", "HubSpotConnect"):
        assert schemas[name]["additionalProperties"] is False
    assert schemas["Problem"]["required"] == ["type", "title", "status", "detail", "code"]


def test_only_the_callback_may_be_called_without_a_token() -> None:
    for path, method, operation in OPERATIONS:
        if path.endswith("/callback/hubspot"):
            assert {} in operation["security"]
        else:
            assert operation["security"] == [{"bearer": []}], (method, path)
