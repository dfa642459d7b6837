"""SQL Server (production): ``MERGE … WITH (HOLDLOCK)`` upserts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, text
from sqlalchemy.dialects import mssql as mssql_dialect

from resilient_etl.hooks.warehouse.dialects.common import insert_rows, update_rows

NAME = "mssql"


def configure(engine: Engine) -> None:
    """Set up a new engine (nothing beyond its options)."""


def engine_options() -> dict[str, Any]:
    """Return the ``create_engine`` options of this dialect."""
    return {}


def mssql_merge_sql(table: Table, key_columns: Sequence[str], columns: Sequence[str]) -> str:
    """
    Return a SQL Server MERGE upsert for ``table`` keyed on ``key_columns``, with named bind parameters.

    :param table: the target table
    :param key_columns: the columns that identify a row
    :param columns: every column written (keys included)
    """
    prep = mssql_dialect.dialect().identifier_preparer  # type: ignore[no-untyped-call]
    q = prep.quote
    source_cols = ", ".join(q(c) for c in columns)
    values = ", ".join(f":{c}" for c in columns)
    on = " AND ".join(f"target.{q(c)} = source.{q(c)}" for c in key_columns)
    updates = ", ".join(f"target.{q(c)} = source.{q(c)}" for c in columns if c not in key_columns)
    inserts = ", ".join(f"source.{q(c)}" for c in columns)
    return (
        f"MERGE INTO {q(table.name)} WITH (HOLDLOCK) AS target "
        f"USING (VALUES ({values})) AS source ({source_cols}) "
        f"ON {on} "
        f"WHEN MATCHED THEN UPDATE SET {updates} "
        f"WHEN NOT MATCHED THEN INSERT ({source_cols}) VALUES ({inserts});"
    )


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
    """Insert ``rows``, updating those whose key exists (one MERGE, executed per row by the driver)."""
    conn.execute(text(mssql_merge_sql(table, key_columns, list(rows[0]))), list(rows))


def upsert_from_select(
    conn: Connection, table: Table, columns: Sequence[str], source: Select[Any], key_columns: Sequence[str], params: dict[str, Any]
) -> int:
    """Read the rows of ``source`` and send them back through the MERGE of :func:`upsert`; return the rows written."""
    rows = [dict(zip(columns, r, strict=True)) for r in conn.execute(source, params)]
    if rows:
        upsert(conn, table, rows, key_columns)
    return len(rows)


def refresh_statistics(conn: Connection, tables: Sequence[Table]) -> None:
    """``UPDATE STATISTICS`` of the tables (auto-update waits for 20 % of a table to change)."""
    for table in tables:
        conn.execute(text(f"UPDATE STATISTICS {conn.dialect.identifier_preparer.quote(table.name)}"))


__all__ = [
    "NAME",
    "configure",
    "engine_options",
    "insert_rows",
    "mssql_merge_sql",
    "refresh_statistics",
    "update_rows",
    "upsert",
    "upsert_from_select",
]
