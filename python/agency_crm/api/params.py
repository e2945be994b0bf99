"""Query and path parameters typed as strictly as the document says they are.

FastAPI parses a query string leniently: ``upcoming=0`` or ``=yes`` as a boolean, ``since=0``
as a Unix timestamp, ``client_id`` without its dashes as a UUID. The OpenAPI document says
``boolean``, ``date-time`` (RFC 3339) and ``uuid``, so those are all the parameters take:
``true``/``false``, an RFC 3339 timestamp with its offset, a UUID in its 8-4-4-4-12 form.
(Bodies are JSON, whose types need no such care: their models are strict.)
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _bool(value: Any) -> Any:
    if isinstance(value, str):
        if value in ("true", "false"):
            return value == "true"
        raise PydanticCustomError("bool_strict", "must be true or false")
    return value


def _timestamp(value: Any) -> Any:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_rfc3339",
            "must be an RFC 3339 timestamp with its offset, e.g. 2026-05-01T09:00:00Z",
        )
    return value


def _uuid(value: Any) -> Any:
    if isinstance(value, str) and not _UUID.fullmatch(value):
        raise PydanticCustomError(
            "uuid_strict", "not a UUID (expected 8-4-4-4-12 hexadecimal digits)"
        )
    return value


Bool = Annotated[bool, BeforeValidator(_bool)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp)]
Uuid = Annotated[uuid.UUID, BeforeValidator(_uuid)]
# Free text in a query or path: no control characters (PostgreSQL text takes no NUL).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]+$"
