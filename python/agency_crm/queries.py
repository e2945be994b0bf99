"""Named queries: the plain reads and writes the Python layer runs, kept in ``sql/queries``.

Each file of ``sql/queries`` holds blocks that start with a line ``-- name: <name>``; the text up
to the next such line is the query. Placeholders are named (``%(client_id)s``), never
positional. Rules live in the SQL functions these queries call, not here (procrastinate keeps
its runtime SQL the same way)::

    from agency_crm.queries import PUSH
    await conn.execute(PUSH["next_run_after"], {"client_id": client_id})
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import LiteralString

from agency_crm import schema

NAME = re.compile(r"^-- name: (?P<name>\S+)[ \t]*$", re.MULTILINE)
VALID_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# psycopg's positional placeholders (%s, %b, %t); a literal percent sign is written %%.
POSITIONAL = re.compile(r"(?<!%)%[sbt]")


class QueryFileError(schema.SchemaError):
    """A named-query file is malformed."""


def parse(text: str, source: str) -> dict[str, str]:
    """The queries of one file by name, in file order."""
    found: dict[str, str] = {}
    marks = list(NAME.finditer(text))
    for i, mark in enumerate(marks):
        name = mark["name"]
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end() : end].strip()
        if not VALID_NAME.match(name):
            raise QueryFileError(
                f"{source}: query name {name!r} is not lower_snake_case",
                hint="Name each query like a function: -- name: next_run_after",
            )
        if name in found:
            raise QueryFileError(
                f"{source}: query {name!r} is defined twice",
                hint="Give every query of a file its own name.",
            )
        statement = "\n".join(
            line for line in body.splitlines() if not line.lstrip().startswith("--")
        ).strip()
        if not statement:
            raise QueryFileError(f"{source}: query {name!r} is empty")
        if POSITIONAL.search(statement):
            raise QueryFileError(
                f"{source}: query {name!r} has a positional placeholder",
                hint="Use named placeholders: %(client_id)s.",
            )
        found[name] = statement
    return found


class Queries(Mapping[str, LiteralString]):
    """The named queries of one file of ``sql/queries`` (``PUSH["claim_pushes"]``)."""

    def __init__(self, area: str) -> None:
        self.area = area
        self._queries: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        if self._queries is None:
            item = schema.default_sql_dir().joinpath("queries").joinpath(f"{self.area}.sql")
            text = item.read_text(encoding="utf-8").replace("\r\n", "\n")
            self._queries = parse(text, f"sql/queries/{self.area}.sql")
        return self._queries

    def __getitem__(self, name: str) -> LiteralString:
        try:
            # Our own file, read from the package: a query, not text assembled from input.
            return self._load()[name]
        except KeyError:
            raise KeyError(f"no query {name!r} in sql/queries/{self.area}.sql") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


DEMO = Queries("demo")
PUSH = Queries("push")
REPORT = Queries("report")
SECRETS = Queries("secrets")
SERVICE = Queries("service")
