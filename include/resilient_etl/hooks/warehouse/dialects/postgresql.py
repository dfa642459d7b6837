"""PostgreSQL: ``ON CONFLICT`` upserts as multi-row statements, executemany in pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects.postgresql import insert

from resilient_etl.hooks.warehouse.dialects.on_conflict import OnConflictUpserts

NAME = "postgresql"


def configure(engine: Engine) -> None:
    """Set up a new engine (nothing beyond its options)."""


def engine_options() -> dict[str, Any]:
    """Return the ``create_engine`` options: executemany of UPDATEs and upserts in pages, not one round trip per row."""
    return {"executemany_mode": "values_plus_batch", "executemany_batch_page_size": 1000}


def refresh_statistics(conn: Connection, tables: Sequence[Table]) -> None:
    """``ANALYZE`` the tables: without statistics of freshly written rows the planner joins by scanning."""
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"ANALYZE {', '.join(quote(t.name) for t in tables)}"))


_UPSERTS = OnConflictUpserts(insert, rows_per_statement=1000)
upsert = _UPSERTS.upsert
upsert_from_select = _UPSERTS.upsert_from_select
