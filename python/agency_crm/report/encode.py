"""A report as JSON and as CSV, its numbers exactly as the functions returned them.

JSON: ``numeric`` values are written as their decimal text (``30000.00``, never a float), so
``json.loads(text, parse_float=Decimal)`` gives back the very value; integers as integers;
uuids, dates and times as ISO 8601 strings; NULL as null. The API answers the same encoding.

CSV: one file per section (``funnel.csv`` ...), which is what a spreadsheet opens: each section
has columns of its own, so one sheet of them all would be mostly empty cells. A header row of
the function's column names, then its rows; NULL is an empty cell, numbers their exact text,
dates and times ISO 8601.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from agency_crm.report.model import Report, Table


def scalar(value: Any) -> str:
    """One value as JSON text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} has no JSON number")
        return str(value)
    if isinstance(value, float):
        return json.dumps(value, allow_nan=False)
    return json.dumps(text(value), ensure_ascii=False)


def text(value: Any) -> str:
    """A value that JSON writes as a string, and CSV as its cell: ISO 8601 for dates and
    times, uuids as text, an enum's value."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{type(value).__name__} is not part of a report")


def _pieces(value: Any, indent: int | None, depth: int) -> Iterator[str]:
    if isinstance(value, dict):
        if not value:
            yield "{}"
            return
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + _newline(indent, depth + 1)
            yield json.dumps(str(key), ensure_ascii=False) + (": " if indent is not None else ":")
            yield from _pieces(item, indent, depth + 1)
        yield _newline(indent, depth) + "}"
    elif isinstance(value, list | tuple):
        if not value:
            yield "[]"
            return
        yield "["
        for i, item in enumerate(value):
            yield ("," if i else "") + _newline(indent, depth + 1)
            yield from _pieces(item, indent, depth + 1)
        yield _newline(indent, depth) + "]"
    else:
        yield scalar(value)


def _newline(indent: int | None, depth: int) -> str:
    return "" if indent is None else "\n" + " " * (indent * depth)


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON of a report's document (or any part of it), numbers exact."""
    return "".join(_pieces(value, indent, 0))


def to_json(report: Report, indent: int | None = None) -> str:
    """The report as JSON: ``{"report", "client", "currency", "days", "as_of", "sections"}``."""
    return dumps(report.document(), indent)


def cell(value: Any) -> str:
    """A value as a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | float):
        return str(value)
    return text(value)


def to_csv(table: Table) -> str:
    """One section as CSV: a header of its columns, then its rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([cell(row[c]) for c in table.columns])
    return out.getvalue()


def write_csv(report: Report, directory: Path) -> list[Path]:
    """Each section as ``<directory>/<section>.csv`` (the directory made if need be); the
    files written, in the report's order."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key, table in report.sections.items():
        path = directory / f"{key}.csv"
        path.write_text(to_csv(table), encoding="utf-8")
        written.append(path)
    return written
