"""The runner and the sandbox stay apart: the CRM clients must work against the real services,
so they may not lean on the fakes, and the fakes may not borrow the clients' reading of the
vendor APIs (two independent readings catch each other's mistakes)."""

from __future__ import annotations

import ast
from pathlib import Path

import agency_crm

PACKAGE = Path(agency_crm.__file__).parent


def imported_modules(directory: Path) -> set[str]:
    found: set[str] = set()
    for path in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
    return found


def test_push_does_not_import_the_sandbox() -> None:
    modules = imported_modules(PACKAGE / "push")
    assert modules, "no imports found: wrong directory?"
    assert not [m for m in modules if m.startswith("agency_crm.sandbox")]


def test_the_sandbox_does_not_import_push() -> None:
    modules = imported_modules(PACKAGE / "sandbox")
    assert modules
    assert not [m for m in modules if m.startswith("agency_crm.push")]
