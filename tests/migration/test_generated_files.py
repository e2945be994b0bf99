"""The committed schema dump and SQL API reference match a fresh install."""

from __future__ import annotations

from pathlib import Path

import psycopg

from agency_crm import schema
from agency_crm.dev.generate import DUMP_HEADER, dump_schema, render_sql_api

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schema_dump_matches_a_fresh_install(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        schema.upgrade(conn)
    committed = (ROOT / "sql" / "schema.dump.sql").read_text()
    assert committed == DUMP_HEADER + dump_schema(empty_db_url), (
        "sql/schema.dump.sql is stale: run `make schema-dump` and commit it"
    )


def test_committed_sql_api_reference_matches_a_fresh_install(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        schema.upgrade(conn)
    committed = (ROOT / "docs" / "sql-api.md").read_text()
    assert committed == render_sql_api(empty_db_url), (
        "docs/sql-api.md is stale: run `make docs` and commit it"
    )


def test_committed_analytics_examples_are_the_functions_real_output(empty_db_url: str) -> None:
    from agency_crm.dev.generate import render_analytics_examples, replace_examples

    with psycopg.connect(empty_db_url) as conn:
        schema.upgrade(conn)
    committed = (ROOT / "docs" / "analytics.md").read_text()
    assert committed == replace_examples(committed, render_analytics_examples(empty_db_url)), (
        "the worked examples of docs/analytics.md are stale: run `make docs` and commit them"
    )
