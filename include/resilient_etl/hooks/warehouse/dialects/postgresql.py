"""PostgreSQL: ``ON CONFLICT`` upserts, many rows sent by ``COPY``; executemany in pages."""

from __future__ import annotations

import datetime as dt
import io
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, Select, Table, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from resilient_etl.hooks.warehouse.dialects import common
from resilient_etl.hooks.warehouse.dialects.on_conflict import OnConflictUpserts, last_row_per_key

NAME = "postgresql"
#: from this many rows an insert, upsert or update goes through COPY: SQLAlchemy runs an ON CONFLICT executemany
#: statement by statement (80 µs a row here; its batched form is disabled for ON CONFLICT), and even batched the
#: server parses one literal per value: 900 answers cost 45-75 ms, by COPY and one INSERT … SELECT 10 ms
COPY_FROM_ROWS = 200


def configure(engine: Engine) -> None:
    """Set up a new engine (nothing beyond its options)."""


def engine_options() -> dict[str, Any]:
    """Return the ``create_engine`` options: executemany of UPDATEs and upserts in pages, not one round trip per row."""
    return {"executemany_mode": "values_plus_batch", "executemany_batch_page_size": 1000}


def refresh_statistics(conn: Connection, tables: Sequence[Table]) -> None:
    """``ANALYZE`` the tables: without statistics of freshly written rows the planner joins by scanning."""
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"ANALYZE {', '.join(quote(t.name) for t in tables)}"))


def copy_value(value: Any) -> str:
    """Return ``value`` as a field of COPY's text format (``\\N`` for NULL; backslash, tab and line breaks escaped)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    text_value = value.isoformat() if isinstance(value, dt.date) else str(value)
    return text_value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy(conn: Connection, table_name: str, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """
    ``COPY`` rows into a table on the connection's own transaction.

    The driver's error is raised as SQLAlchemy's (``DataError``, ``OperationalError``, …), as a statement's
    would be, so it is classified and retried the same way; a lost connection is invalidated.
    """
    quote = conn.dialect.identifier_preparer.quote
    statement = f"COPY {quote(table_name)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    data = io.StringIO("".join("\t".join(copy_value(r[c]) for c in columns) + "\n" for r in rows))
    dbapi = conn.dialect.loaded_dbapi
    raw = conn.connection.dbapi_connection
    cursor = raw.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(statement, data)
    except dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, raw, cursor)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, connection_invalidated=lost) from exc
    finally:
        if not cursor.closed:
            cursor.close()


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dictionaries with the same keys): by COPY from :data:`COPY_FROM_ROWS` rows on."""
    if len(rows) < COPY_FROM_ROWS:
        common.insert_rows(conn, table, rows)
        return
    _copy(conn, table.name, list(rows[0]), rows)


_UPSERTS = OnConflictUpserts(insert)
upsert_from_select = _UPSERTS.upsert_from_select
_STAGING: dict[tuple[str, tuple[str, ...]], tuple[Table, Select[Any]]] = {}


@contextmanager
def _staged(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> Iterator[tuple[Table, Select[Any]]]:
    """
    COPY ``rows`` into the session's temporary table of their columns; yield it and the one SELECT of it; empty it after.

    The table is made once per session (``CREATE TEMPORARY TABLE … AS SELECT … WITH NO DATA``: the target's
    column types, none of its constraints); the SELECT is built once per process, so the statements
    over it compile once.
    """
    columns = tuple(rows[0])
    if (table.name, columns) not in _STAGING:
        name = f"staging_{table.name}_{zlib.crc32(','.join(columns).encode()):08x}"
        source = Table(name, MetaData(), *(Column(c, table.c[c].type) for c in columns))
        _STAGING[table.name, columns] = source, select(*source.c)
    source, everything = _STAGING[table.name, columns]
    quote = conn.dialect.identifier_preparer.quote
    listed = ", ".join(quote(c) for c in columns)
    conn.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(source.name)} AS SELECT {listed} FROM {quote(table.name)} WITH NO DATA"))
    _copy(conn, source.name, columns, rows)
    yield source, everything
    conn.execute(text(f"TRUNCATE {quote(source.name)}"))


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
    """
    Insert ``rows``, updating those whose key exists (a key given twice: its last row wins).

    From :data:`COPY_FROM_ROWS` rows on: the rows by COPY into a temporary table, then one
    ``INSERT … SELECT … ON CONFLICT`` from it.
    """
    if len(rows) < COPY_FROM_ROWS:
        _UPSERTS.upsert(conn, table, rows, key_columns)
        return
    with _staged(conn, table, last_row_per_key(rows, key_columns)) as (_, everything):
        _UPSERTS.upsert_from_select(conn, table, list(rows[0]), everything, key_columns, {})


def update_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> None:
    """
    Set the other columns of ``rows`` on the rows their ``key_columns`` name.

    From :data:`COPY_FROM_ROWS` rows on: the rows by COPY into a temporary table, then one
    ``UPDATE … FROM`` it (an UPDATE per row cost 45 µs a row, the server parsing and planning each).
    """
    if len(rows) < COPY_FROM_ROWS:
        common.update_rows(conn, table, rows, key_columns)
        return
    with _staged(conn, table, rows) as (source, _):
        columns = [c for c in rows[0] if c not in key_columns]
        conn.execute(update(table).where(*(table.c[k] == source.c[k] for k in key_columns)).values({c: source.c[c] for c in columns}))
