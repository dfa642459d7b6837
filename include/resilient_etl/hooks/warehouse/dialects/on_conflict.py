"""The ``INSERT … ON CONFLICT DO UPDATE`` statements PostgreSQL and SQLite share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def upsert_statement(insert: Callable[[Table], Any], table: Table, columns: Sequence[str], key_columns: Sequence[str]) -> Any:
    """Return the executemany upsert of ``columns`` keyed on ``key_columns``."""
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in columns if c not in key_columns},
    )


@lru_cache(maxsize=32)
def upsert_from_select_statement(
    dialect: str, table: Table, columns: tuple[str, ...], source: Select[Any], key_columns: tuple[str, ...]
) -> Any:
    # one statement object per source: SQLAlchemy then reuses its compiled form on every execution
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table).from_select(list(columns), source)
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in columns if c not in key_columns},
    )
