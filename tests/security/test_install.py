"""`agency-crm db upgrade` as a deployment runs it: a login that owns its database but is not
a superuser, with or without CREATEROLE (managed services often withhold it). On a server of
its own, since roles belong to the whole server and the suite's server already has them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from agency_crm import schema
from agency_crm.dev.cluster import TempCluster
from tests.helpers.cli import run

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def normal(text: str) -> list[str]:
    text = re.sub(r"\(\d+ ms\)", "(N ms)", text)
    return re.sub(r"\bcode [0-9a-f]{12}\b", "code <checksum>", text).strip().splitlines()


def documented_output() -> list[str]:
    """The end of the upgrade transcript without CREATEROLE in docs/security.md."""
    found = re.search(r"```text\n\$ agency-crm db upgrade\n\.\.\.\n(.*?)```", DOC.read_text(), re.S)
    assert found, "docs/security.md lost its transcript of an upgrade without CREATEROLE"
    return normal(found[1])


@pytest.fixture(scope="module")
def server() -> Iterator[TempCluster]:
    with TempCluster() as cluster:
        yield cluster


def superuser(cluster: TempCluster, dbname: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(cluster.url, dbname=dbname, autocommit=True)


def install_login(cluster: TempCluster, name: str, *, createrole: bool) -> str:
    """A login owning a new database of its own name: the URL to it as that login."""
    with superuser(cluster) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN {'CREATEROLE' if createrole else ''}")
        conn.execute(f"CREATE DATABASE {name} OWNER {name}")
    return conninfo.make_conninfo(cluster.url, user=name, dbname=name)


def roles(cluster: TempCluster) -> list[str]:
    with superuser(cluster) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE rolname = ANY (%s) ORDER BY 1",
            (list(schema.ROLES),),
        ).fetchall()
    return [r[0] for r in rows]


def upgrade(url: str) -> tuple[str, str]:
    done = run("db", "upgrade", env={"DATABASE_URL": url})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, done.stderr


def test_without_createrole_it_installs_everything_else_and_says_what_to_run(
    server: TempCluster,
) -> None:
    assert roles(server) == []
    url = install_login(server, "acrm_installer", createrole=False)

    out, err = upgrade(url)
    assert "upgraded:" in out and "created roles" not in out
    assert "applied grants and row-level security for no role" in out
    assert f"roles missing: {', '.join(schema.ROLES)}:" in err
    sql_lines = [line.strip() for line in err.splitlines() if line.strip().startswith("CREATE ")]
    assert sql_lines == [f"CREATE ROLE {r} NOLOGIN;" for r in schema.ROLES]
    assert roles(server) == []
    # What docs/security.md shows is what it prints (the last lines of stdout, then stderr).
    assert normal("\n".join(out.splitlines()[-2:]) + "\n" + err) == documented_output()

    # The owner, not a superuser, is held to the forced row-level security, and sees all.
    with psycopg.connect(url) as owner:
        owner.execute("INSERT INTO crm.clients (name) VALUES ('Acme')")
        assert owner.execute("SELECT count(*) FROM crm.clients").fetchone() == (1,)
        owner.commit()

    # Twice: nothing changes, and the missing roles are still reported, by status too.
    out, err = upgrade(url)
    assert "nothing changed" in out and "applied grants" not in out
    assert "roles missing: crm_app" in err
    status = run("db", "status", "--json", env={"DATABASE_URL": url})
    assert json.loads(status.stdout)["missing_roles"] == list(schema.ROLES)
    assert json.loads(status.stdout)["grants_current"] is True
    shown = run("db", "status", env={"DATABASE_URL": url})
    assert (
        "roles missing: crm_app" in shown.stderr and "CREATE ROLE crm_app NOLOGIN;" in shown.stderr
    )

    # An administrator runs exactly what was printed; the grants are then stale until the
    # next upgrade applies them, which a third one does not repeat.
    with superuser(server, "acrm_installer") as admin:
        for line in sql_lines:
            admin.execute(line.encode())
    assert roles(server) == sorted(schema.ROLES)
    stale = run("db", "status", "--check", env={"DATABASE_URL": url})
    assert stale.returncode == 3 and "grants and row-level security: stale" in stale.stdout
    out, err = upgrade(url)
    granted = ", ".join(sorted(schema.ROLES))
    assert re.search(rf"applied grants and row-level security for {granted} \(\d+ ms\)", out), out
    assert err == ""
    out, err = upgrade(url)
    assert "nothing changed" in out and err == ""
    assert run("db", "status", "--check", env={"DATABASE_URL": url}).returncode == 0
    with psycopg.connect(url) as owner:
        # One restrictive one-client policy per tenant table (crm.clients and every table with
        # a client_id), counted from the catalog.
        policies = owner.execute(
            """
            SELECT count(*) FILTER (WHERE pol.oid IS NOT NULL), count(*)
            FROM pg_class AS c
            LEFT JOIN pg_policy AS pol
                ON pol.polrelid = c.oid AND pol.polname = 'agency_crm_one_client'
            WHERE c.relnamespace IN ('crm'::regnamespace, 'crm_private'::regnamespace)
              AND c.relkind IN ('r', 'p')
              AND (c.oid = 'crm.clients'::regclass
                   OR EXISTS (SELECT 1 FROM pg_attribute AS a
                              WHERE a.attrelid = c.oid AND a.attname = 'client_id'
                                AND NOT a.attisdropped))
            """
        ).fetchone()
        assert policies is not None and policies[0] == policies[1] >= 13

    # Roles belong to the server: make way for the next test, which creates them itself.
    with superuser(server) as conn:
        conn.execute("DROP DATABASE acrm_installer")
        for role in schema.ROLES:
            conn.execute(f"DROP ROLE {role}")


def test_with_createrole_it_creates_the_roles_once(server: TempCluster) -> None:
    assert roles(server) == []
    url = install_login(server, "acrm_admin_installer", createrole=True)

    out, err = upgrade(url)
    assert f"created roles {', '.join(schema.ROLES)}\n" in out
    assert f"applied grants and row-level security for {', '.join(sorted(schema.ROLES))} (" in out
    assert err == ""
    assert roles(server) == sorted(schema.ROLES)
    with superuser(server) as conn:
        attrs = conn.execute(
            "SELECT bool_or(rolcanlogin OR rolsuper OR rolbypassrls), count(*)"
            " FROM pg_roles WHERE rolname = ANY (%s) AND shobj_description(oid, 'pg_authid')"
            " LIKE 'agency-crm %%'",
            (list(schema.ROLES),),
        ).fetchone()
    assert attrs == (False, len(schema.ROLES))

    out, err = upgrade(url)
    assert "nothing changed" in out and "created roles" not in out and err == ""
    result = run("db", "upgrade", "--json", env={"DATABASE_URL": url})
    report = json.loads(result.stdout)
    assert report["created_roles"] == [] and report["missing_roles"] == []
    assert report["access_applied"] is False and report["applied"] == []
