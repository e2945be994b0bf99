"""marketing-attribution-models (MAM), the attribution oracle, imported when a test first
needs it: it pulls in pandas and polars (about 0.7 s), which every test process would
otherwise pay for while collecting, property tests deselected or not."""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType
from typing import Any


@cache
def load() -> tuple[Any, ModuleType] | None:
    """(the MAM class, polars), or None when the oracle extra is not installed (an error
    under CI, which installs it)."""
    try:
        import polars as pl
        from mam import MAM
    except ImportError:  # pragma: no cover - CI installs the oracle extra
        if os.environ.get("CI"):
            raise
        return None
    return MAM, pl
