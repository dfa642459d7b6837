"""
Hook for the SQL warehouse (SQLite, PostgreSQL, SQL Server) over one SQLAlchemy engine.

The loader owns one connection per batch and nests savepoints on it; DbApiHook's ``insert_rows`` and
``run`` commit on connections of their own and cannot take part in an outer transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from airflow.sdk.bases.hook import BaseHook
from sqlalchemy import Connection, Engine, Select, Table, create_engine, event, text
from sqlalchemy.dialects import mssql as mssql_dialect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from resilient_etl.errors import (
    ConfigError,
    DatabaseConnectionLostError,
    DatabaseError,
    DeadlockError,
    DiskFullError,
    ResilientEtlError,
    WarehouseUnavailableError,
)
from resilient_etl.resilience.retry import Retrier, RetryPolicy
from resilient_etl.schema import metadata

_DRIVERS = {
    "postgres": "postgresql+psycopg2",
    "postgresql": "postgresql+psycopg2",
    "mssql": "mssql+pymssql",
}


def url_for_connection(conn_type: str, *, host: str | None, login: str | None = None, password: str | None = None,
                       port: int | None = None, schema: str | None = None) -> URL:
    """
    Return the SQLAlchemy URL for an Airflow connection's fields.

    :param conn_type: ``sqlite``, ``postgres`` or ``mssql``
    :param host: the server, or for SQLite the database file's absolute path
    """
    if conn_type == "sqlite":
        if not host:
            raise ConfigError("warehouse connection of type sqlite needs host = the database file path", field="host")
        return URL.create("sqlite", database=host)
    driver = _DRIVERS.get(conn_type)
    if driver is None:
        raise ConfigError(
            f"warehouse connection type {conn_type!r} is not supported (sqlite, postgres, mssql)", field="conn_type"
        )
    return URL.create(driver, username=login or None, password=password or None, host=host, port=port, database=schema or None)


_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_FULL = 5, 6, 13
_MSSQL_DEADLOCK, _MSSQL_DISK_FULL = 1205, (1105, 9002)


def is_row_error(exc: BaseException) -> bool:
    """Return whether a database error is about one row's data (constraint, bad or overlong value)."""
    return isinstance(exc, (IntegrityError, DataError))


def db_error(exc: DBAPIError) -> ResilientEtlError:
    """
    Return the typed error for a database failure that is not about a row's data (a pure function).

    Decided by the driver's codes (SQLSTATE, SQLite result code, SQL Server error number) and by
    SQLAlchemy's disconnect detection, never by the message text.

    :param exc: the SQLAlchemy error
    """
    orig = exc.orig
    sqlstate = getattr(orig, "pgcode", None) or getattr(getattr(orig, "diag", None), "sqlstate", None) or ""
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    mssql_number = orig.args[0] if type(orig).__module__.startswith("pymssql") and orig.args and isinstance(orig.args[0], int) else None
    detail = f"{type(orig).__name__} (SQLSTATE {sqlstate or '-'})"
    if sqlstate in ("40P01", "40001") or mssql_number == _MSSQL_DEADLOCK or sqlite_code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return DeadlockError(f"deadlock or lock conflict: {detail}")
    if sqlstate == "53100" or sqlite_code == _SQLITE_FULL or mssql_number in _MSSQL_DISK_FULL:
        return DiskFullError(f"database disk full: {detail}")
    if exc.connection_invalidated or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03"):
        return DatabaseConnectionLostError(f"warehouse connection lost: {detail}")
    if isinstance(exc, OperationalError):
        return WarehouseUnavailableError(f"warehouse operational error: {detail}")
    return DatabaseError(f"database error: {detail}")


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


def mssql_merge_sql(table: Table, key_columns: Sequence[str], columns: Sequence[str]) -> str:
    """
    Return a SQL Server MERGE upsert for ``table`` keyed on ``key_columns``, with named bind parameters.

    :param table: the target table
    :param key_columns: the columns that identify a row
    :param columns: every column written (keys included)
    """
    prep = mssql_dialect.dialect().identifier_preparer
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


@lru_cache(maxsize=32)
def _upsert_from_select_statement(dialect: str, table: Table, columns: tuple[str, ...], source: Select, key_columns: tuple[str, ...]) -> Any:
    # one statement object per source: SQLAlchemy then reuses its compiled form on every execution
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(table).from_select(list(columns), source)
    return stmt.on_conflict_do_update(
        index_elements=list(key_columns),
        set_={c: stmt.excluded[c] for c in columns if c not in key_columns},
    )


class WarehouseHook(BaseHook):
    """
    Interact with the warehouse through SQLAlchemy: schema, transactions, savepoints, upserts.

    :param warehouse_conn_id: an Airflow connection of type sqlite, postgres or mssql
    :param retry_policy: how opening a connection is retried (default: the ``database`` policy)
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "warehouse_default"
    conn_type = "warehouse"
    hook_name = "Resilient ETL warehouse"

    def __init__(self, warehouse_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id
        self.retry_policy = retry_policy or RetryPolicy(dependency="database")
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """Return the engine, resolving the connection on first use."""
        if self._engine is None:
            conn = self.get_connection(self.warehouse_conn_id)
            url = url_for_connection(
                conn.conn_type, host=conn.host, login=conn.login, password=conn.password, port=conn.port, schema=conn.schema
            )
            options: dict[str, Any] = {"pool_pre_ping": True}
            if url.get_backend_name() == "postgresql":
                # executemany of UPDATEs and upserts in pages, not one round trip per row
                options.update(executemany_mode="values_plus_batch", executemany_batch_page_size=1000)
            engine = create_engine(url, **options)
            if url.get_backend_name() == "sqlite":
                event.listen(engine, "connect", _sqlite_pragmas)
                event.listen(engine, "begin", _sqlite_begin)
            self._engine = engine
        return self._engine

    @property
    def dialect(self) -> str:
        """Return the dialect name: ``sqlite``, ``postgresql`` or ``mssql``."""
        return self.engine.dialect.name

    def connect(self) -> Connection:
        """
        Open a connection, retrying with backoff while the server is down or restarting.

        :raises WarehouseUnavailableError: still unreachable when the retry budget is spent
        """
        return Retrier(self.retry_policy, logger=self.log).call(self._connect_once)

    def _connect_once(self) -> Connection:
        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise WarehouseUnavailableError(f"warehouse {self.warehouse_conn_id} unreachable: {exc.orig}") from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """
        Open one connection in a transaction: commit on success, roll back on any error.

        :raises WarehouseUnavailableError: the database cannot be reached within the retry budget
        """
        conn = self.connect()
        with conn, conn.begin():
            yield conn

    def ensure_schema(self) -> None:
        """Create the warehouse tables that do not exist yet (idempotent)."""
        with self.begin() as conn:
            metadata.create_all(conn, checkfirst=True)

    def upsert(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> int:
        """
        Insert ``rows`` into ``table``, updating rows whose key already exists.

        ON CONFLICT on PostgreSQL and SQLite, MERGE on SQL Server.

        :param conn: the connection (inside the caller's transaction)
        :param table: the target table
        :param rows: dictionaries with the same keys
        :param key_columns: the columns that identify a row
        :return: the number of rows written
        """
        if not rows:
            return 0
        columns = list(rows[0])
        name = conn.dialect.name
        if name == "mssql":
            conn.execute(text(mssql_merge_sql(table, key_columns, columns)), list(rows))
            return len(rows)
        insert = pg_insert if name == "postgresql" else sqlite_insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={c: stmt.excluded[c] for c in columns if c not in key_columns},
        )
        conn.execute(stmt, list(rows))
        return len(rows)

    def upsert_from_select(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        source: Select,
        key_columns: Sequence[str],
        params: dict[str, Any] | None = None,
    ) -> None:
        """
        Insert the rows of ``source`` into ``table`` inside the database, updating rows whose key exists.

        ``INSERT … SELECT … ON CONFLICT`` on PostgreSQL and SQLite (no row leaves the server). On SQL
        Server the rows are read and sent back through the MERGE of :meth:`upsert`.

        :param conn: the connection (inside the caller's transaction)
        :param table: the target table
        :param columns: the target columns, in the order ``source`` selects them
        :param source: the SELECT producing the rows
        :param key_columns: the columns that identify a row
        :param params: bind parameters of ``source``
        """
        name = conn.dialect.name
        if name == "mssql":
            self.upsert(conn, table, [dict(zip(columns, r)) for r in conn.execute(source, params or {})], key_columns)
            return
        conn.execute(_upsert_from_select_statement(name, table, tuple(columns), source, tuple(key_columns)), params or {})

    def test_connection(self) -> tuple[bool, str]:
        """Run ``SELECT 1`` on the warehouse."""
        try:
            with self.begin() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # a connection test reports any failure instead of raising
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"warehouse reachable ({self.dialect})"
