"""
One module per warehouse dialect (as ``common.sql``'s dialects): engine set-up and upserts.

Each module has ``NAME``, ``configure(engine)``, ``engine_options()``, ``upsert(…)`` and
``upsert_from_select(…)``.
"""

from __future__ import annotations

from types import ModuleType

from resilient_etl.hooks.warehouse.dialects import mssql, postgresql, sqlite

DIALECTS: dict[str, ModuleType] = {m.NAME: m for m in (sqlite, postgresql, mssql)}


def for_name(name: str) -> ModuleType:
    """Return the dialect module for a SQLAlchemy dialect name (``sqlite``, ``postgresql``, ``mssql``)."""
    return DIALECTS[name]
