"""SQLite: the embedded default. Savepoints need pysqlite's own transaction handling off."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, text
from sqlalchemy.dialects.sqlite import insert

from resilient_etl.hooks.warehouse.dialects.common import insert_rows, update_rows
from resilient_etl.hooks.warehouse.dialects.on_conflict import OnConflictUpserts

NAME = "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT: turn it off and let SQLAlchemy emit BEGIN.
    dbapi_conn.isolation_level = None
    # WAL lets readers see only committed batches while a loader writes; busy_timeout rides out
    # the short locks parallel Airflow tasks take on the same file.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN")


def configure(engine: Engine) -> None:
    """Set up a new engine: WAL, busy timeout, and BEGIN emitted by SQLAlchemy (savepoints work)."""
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)


def engine_options() -> dict[str, Any]:
    """Return the ``create_engine`` options of this dialect."""
    return {}


def refresh_statistics(conn: Connection, tables: Sequence[Table]) -> None:
    """``ANALYZE`` the tables (SQLite's planner reads ``sqlite_stat1`` when there is one)."""
    for table in tables:
        conn.execute(text(f"ANALYZE {conn.dialect.identifier_preparer.quote(table.name)}"))


_UPSERTS = OnConflictUpserts(insert)
upsert = _UPSERTS.upsert
upsert_from_select = _UPSERTS.upsert_from_select
__all__ = ["NAME", "configure", "engine_options", "insert_rows", "refresh_statistics", "update_rows", "upsert", "upsert_from_select"]
