"""The package's shape holds: SQL lives in sql/, the CLI loads only the group it runs, and
the parts import only what they may (STYLE.md: who may import whom)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

import agency_crm
from agency_crm.queries import PUSH, SECRETS, Queries, QueryFileError, parse

PACKAGE = Path(agency_crm.__file__).parent
ROOT = PACKAGE.parents[1]


def imported_modules(directory: Path) -> set[str]:
    found: set[str] = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


# The CRM clients must work against the real services, so they may not lean on the fakes, and
# the fakes may not borrow the clients' reading of the vendor APIs (two independent readings
# catch each other's mistakes).
def test_push_does_not_import_the_sandbox() -> None:
    modules = imported_modules(PACKAGE / "push")
    assert modules, "no imports found: wrong directory?"
    assert not [m for m in modules if m.startswith("agency_crm.sandbox")]


def test_the_sandbox_imports_neither_push_nor_the_cli() -> None:
    modules = imported_modules(PACKAGE / "sandbox")
    assert modules
    assert not [m for m in modules if m.startswith(("agency_crm.push", "agency_crm.cli"))]


@pytest.mark.parametrize("part", ["push", "sandbox", "dev", "api", "service", "report"])
def test_only_the_cli_knows_a_terminal(part: str) -> None:
    modules = imported_modules(PACKAGE / part)
    assert not [m for m in modules if m.split(".")[0] in ("typer", "rich", "agency_crm.cli")]
    assert not [m for m in modules if m.startswith("agency_crm.cli")]


@pytest.mark.parametrize("part", ["api", "service"])
def test_the_api_and_the_service_do_not_lean_on_the_sandbox(part: str) -> None:
    modules = imported_modules(PACKAGE / part)
    assert modules
    assert not [m for m in modules if m.startswith("agency_crm.sandbox")]


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module but its docstrings, with its line."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_no_python_outside_the_upgrade_machinery_reads_or_writes_a_crm_table(
    db: psycopg.Connection[Any],
) -> None:
    tables = [
        f"{schema}.{name}"
        for schema, name in db.execute(
            "SELECT n.nspname, c.relname FROM pg_class AS c "
            "JOIN pg_namespace AS n ON n.oid = c.relnamespace "
            "WHERE n.nspname IN ('crm', 'crm_private') AND c.relkind IN ('r', 'p', 'v')"
        ).fetchall()
    ]
    assert "crm.crm_push_queue" in tables and "crm_private.deal_attribution" in tables
    mention = re.compile(r"\b(?:" + "|".join(map(re.escape, tables)) + r")\b")
    statement = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|LISTEN)\b")
    qualified = re.compile(r"\bcrm(?:_private)?\.\w")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative == "schema.py":  # the upgrade machinery's own bookkeeping may stay
            continue
        for line, text in string_constants(path):
            # A statement naming something of the schemas (crm.fn(...)); not prose such as a
            # hint saying "DELETE /api/v1/crm/disconnect, or agency-crm crm disconnect".
            if mention.search(text) or (statement.search(text) and qualified.search(text)):
                found.append(f"{relative}:{line}: {' '.join(text.split())[:80]}")
    assert found == [], "SQL belongs in sql/ (a function or a named query of sql/queries)"


def test_named_queries_load_and_are_all_used() -> None:
    assert len(PUSH) >= 10 and len(SECRETS) >= 5
    source = "\n".join(p.read_text() for p in PACKAGE.rglob("*.py"))
    unused = [name for name in PUSH if f'PUSH["{name}"]' not in source]
    unused += [name for name in SECRETS if f'SECRETS["{name}"]' not in source]
    assert unused == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", "defined twice"),
        ("-- name: a\nSELECT %s;\n", "positional placeholder"),
        ("-- name: Bad-Name\nSELECT 1;\n", "lower_snake_case"),
        ("-- name: empty\n-- only a comment\n", "is empty"),
    ],
)
def test_a_malformed_query_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(QueryFileError, match=message):
        parse(text, "test.sql")


def test_a_named_query_keeps_literal_percent_signs_and_named_placeholders() -> None:
    queries = parse("-- name: q\n-- what it does\nSELECT '100%%' WHERE x = %(x)s;\n", "t.sql")
    assert queries == {"q": "SELECT '100%%' WHERE x = %(x)s;"}
    with pytest.raises(KeyError, match="no query 'nope'"):
        Queries("push")["nope"]


def loaded_modules(*args: str) -> tuple[set[str], set[str]]:
    """(modules in -X importtime's report, modules in sys.modules at exit) of `python -m
    agency_crm ARGS`."""
    probe = (
        "import atexit, runpy, sys\n"
        "atexit.register(lambda: print('\\n'.join(sorted(sys.modules)), file=sys.stdout))\n"
        f"sys.argv = ['agency-crm', *{list(args)!r}]\n"
        "runpy.run_module('agency_crm', run_name='__main__', alter_sys=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    timed = {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    return timed, set(done.stdout.split())


def heavy(modules: set[str]) -> list[str]:
    return sorted(
        m
        for m in modules
        if m.split(".")[0] in ("httpx", "psycopg_pool")
        or m.startswith(("agency_crm.push", "agency_crm.sandbox", "agency_crm.dev"))
    )


def test_db_help_and_db_upgrade_load_neither_the_runner_nor_the_sandbox() -> None:
    timed, loaded = loaded_modules("db", "--help")
    assert "agency_crm.cli.db" in loaded and "typer" in timed
    assert heavy(timed) == [] and heavy(loaded) == []


def test_push_status_help_loads_no_http_client() -> None:
    _, loaded = loaded_modules("push", "status", "--help")
    assert "agency_crm.cli.push" in loaded
    assert [m for m in loaded if m.split(".")[0] == "httpx" or "sandbox" in m] == []


def test_report_help_loads_no_chart_library() -> None:
    """altair and vl-convert are loaded for an HTML report only."""
    _, loaded = loaded_modules("report", "--help")
    assert "agency_crm.cli.report" in loaded
    assert [
        m
        for m in loaded
        if m.split(".")[0] in ("altair", "vl_convert", "httpx", "psycopg_pool")
        or m.startswith(("agency_crm.report", "agency_crm.service.crm", "agency_crm.push"))
    ] == []


def test_crm_help_loads_neither_the_service_nor_an_http_client() -> None:
    """The crm and api-token groups import the service layer (httpx, the pool) only when a
    command runs."""
    for args in (("crm", "connect", "hubspot", "--help"), ("api-token", "create", "--help")):
        _, loaded = loaded_modules(*args)
        assert f"agency_crm.cli.{args[0].replace('-', '_')}" in loaded
        assert [
            m
            for m in loaded
            if m.split(".")[0] in ("httpx", "psycopg_pool")
            or (
                m.startswith(("agency_crm.sandbox", "agency_crm.service.crm", "agency_crm.push."))
                and m != "agency_crm.push.model"
            )
        ] == []


def test_the_cli_module_of_each_group_is_in_the_root_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agency_crm", "--help"],
        capture_output=True,
        text=True,
        check=False,
        # PYTHONPATH kept: the package under test, not whichever one the venv installed
        # (a git worktree's tests run with PYTHONPATH pointing at its python/).
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"}
        | {k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
    )
    assert done.returncode == 0, done.stderr
    for group in ("db", "push", "crm", "api-token", "secrets", "sandbox", "serve"):
        assert re.search(rf"^\W*{group}\s+\S", done.stdout, re.MULTILINE), done.stdout
