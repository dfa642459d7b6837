"""The ``INSERT … ON CONFLICT DO UPDATE`` upserts PostgreSQL and SQLite share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Select, Table


def _on_conflict_update(stmt: Any, columns: Sequence[str], key_columns: Sequence[str]) -> Any:
    return stmt.on_conflict_do_update(index_elements=list(key_columns), set_={c: stmt.excluded[c] for c in columns if c not in key_columns})


@lru_cache(maxsize=32)
def _from_select(insert: Callable[[Table], Any], table: Table, columns: tuple[str, ...], source: Select[Any], key_columns: tuple[str, ...]) -> Any:
    # one statement object per source: SQLAlchemy then reuses its compiled form on every execution
    return _on_conflict_update(insert(table).from_select(list(columns), source), columns, key_columns)


def last_row_per_key(rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> list[dict[str, Any]]:
    """Return ``rows`` with a repeated key's last row only: one statement cannot update a row twice ("ON CONFLICT DO UPDATE command cannot affect row a second time")."""
    return list({tuple(r[k] for k in key_columns): r for r in rows}.values())


class OnConflictUpserts:
    """
    The upserts of a dialect that has ``ON CONFLICT DO UPDATE``.

    :param insert: the dialect's ``insert`` construct (``sqlalchemy.dialects.<name>.insert``)
    """

    def __init__(self, insert: Callable[[Table], Any]) -> None:
        self.insert = insert

    def upsert(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
        """Insert ``rows``, updating those whose key exists (one executemany: a key given twice, its last row wins)."""
        conn.execute(_on_conflict_update(self.insert(table), list(rows[0]), key_columns), list(rows))

    def upsert_from_select(
        self, conn: Connection, table: Table, columns: Sequence[str], source: Select[Any], key_columns: Sequence[str], params: dict[str, Any]
    ) -> int:
        """``INSERT … SELECT … ON CONFLICT DO UPDATE``: no row leaves the database; return the rows written."""
        return int(conn.execute(_from_select(self.insert, table, tuple(columns), source, tuple(key_columns)), params).rowcount)
