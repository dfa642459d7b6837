"""
One module per warehouse dialect (as ``common.sql``'s dialects): engine set-up and upserts.

Each module has ``NAME``, ``configure(engine)``, ``engine_options()``, ``insert_rows(…)``, ``update_rows(…)``, ``upsert(…)``,
``upsert_from_select(…)`` and ``refresh_statistics(…)``. A dialect's module (and SQLAlchemy's dialect behind it) is imported when
a warehouse of that kind is first used.
"""

from __future__ import annotations

import importlib
from types import ModuleType

NAMES = ("sqlite", "postgresql", "mssql")


def for_name(name: str) -> ModuleType:
    """Return the dialect module for a SQLAlchemy dialect name (``sqlite``, ``postgresql``, ``mssql``)."""
    if name not in NAMES:
        raise KeyError(f"no warehouse dialect {name!r} (dialects: {', '.join(NAMES)})")
    return importlib.import_module(f"{__name__}.{name}")
