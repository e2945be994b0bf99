"""agency-crm: a SQL-first PostgreSQL package for lead-generation agencies."""

from __future__ import annotations

__version__ = "0.1.0"
