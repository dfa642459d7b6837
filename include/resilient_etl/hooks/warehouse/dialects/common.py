"""The plain forms of the many-row writes, for a dialect with no faster one (and for few rows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert, update


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dictionaries with the same keys) in one executemany."""
    conn.execute(insert(table), list(rows))


def update_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
    """Set the other columns of ``rows`` on the rows of ``table`` their ``key_columns`` name, in one executemany."""
    columns = [c for c in rows[0] if c not in key_columns]
    stmt = update(table).where(*(table.c[k] == bindparam(f"k_{k}") for k in key_columns)).values({c: bindparam(f"v_{c}") for c in columns})
    conn.execute(stmt, [{**{f"k_{k}": r[k] for k in key_columns}, **{f"v_{c}": r[c] for c in columns}} for r in rows])
