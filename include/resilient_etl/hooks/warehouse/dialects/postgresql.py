"""PostgreSQL: ``ON CONFLICT`` upserts, executemany in pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table
from sqlalchemy.dialects.postgresql import insert

from resilient_etl.hooks.warehouse.dialects.on_conflict import upsert_from_select_statement, upsert_statement

NAME = "postgresql"


def configure(engine: Engine) -> None:
    """Set up a new engine (nothing beyond its options)."""


def engine_options() -> dict[str, Any]:
    """Return the ``create_engine`` options: executemany of UPDATEs and upserts in pages, not one round trip per row."""
    return {"executemany_mode": "values_plus_batch", "executemany_batch_page_size": 1000}


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
    """Insert ``rows``, updating those whose key exists (``ON CONFLICT DO UPDATE``)."""
    conn.execute(upsert_statement(insert, table, list(rows[0]), key_columns), list(rows))


def upsert_from_select(
    conn: Connection, table: Table, columns: Sequence[str], source: Select[Any], key_columns: Sequence[str], params: dict[str, Any]
) -> None:
    """``INSERT … SELECT … ON CONFLICT DO UPDATE``: no row leaves the database."""
    conn.execute(upsert_from_select_statement(NAME, table, tuple(columns), source, tuple(key_columns)), params)
