"""The harness runs where it says: TEST_DATABASE_URL's server, else a throwaway cluster on
tmpfs with fsync off."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg import conninfo


def test_the_suite_runs_on_the_server_it_claims(db: psycopg.Connection[Any]) -> None:
    url = os.environ.get("TEST_DATABASE_URL")
    port = db.execute("SHOW port").fetchone()
    assert port is not None
    if url:
        assert int(port[0]) == int(conninfo.conninfo_to_dict(url).get("port") or 5432)
        return
    settings = dict(
        db.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'data_directory')"
        ).fetchall()
    )
    assert settings["fsync"] == "off"
    if os.path.isdir("/dev/shm"):
        assert settings["data_directory"].startswith("/dev/shm/agency-crm-pg-")
