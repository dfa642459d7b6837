"""
Hook for the SQL warehouse (SQLite, PostgreSQL, SQL Server) over one SQLAlchemy engine.

The loader owns one connection per batch and nests savepoints on it; DbApiHook's ``insert_rows`` and
``run`` commit on connections of their own and cannot take part in an outer transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from airflow.sdk.bases.hook import BaseHook
from sqlalchemy import Connection, Engine, Select, Table, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from resilient_etl.classification.database import db_error
from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import ConfigError, WarehouseUnavailableError
from resilient_etl.hooks.warehouse import dialects
from resilient_etl.resilience.retry import Retrier

T = TypeVar("T")

_DRIVERS = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2", "mssql": "mssql+pymssql"}


def url_for_connection(
    conn_type: str, *, host: str | None, login: str | None = None, password: str | None = None, port: int | None = None, schema: str | None = None
) -> URL:
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
        raise ConfigError(f"warehouse connection type {conn_type!r} is not supported (sqlite, postgres, mssql)", field="conn_type")
    return URL.create(driver, username=login or None, password=password or None, host=host, port=port, database=schema or None)


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
            url = url_for_connection(conn.conn_type, host=conn.host, login=conn.login, password=conn.password, port=conn.port, schema=conn.schema)
            dialect = dialects.for_name(url.get_backend_name())
            engine = create_engine(url, pool_pre_ping=True, **dialect.engine_options())
            dialect.configure(engine)
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

    def transact(self, work: Callable[..., T], *args: Any) -> T:
        """
        Do ``work(conn, *args)`` in one transaction and return what it returns; a database error is raised typed.

        The typed error is what a retry policy decides on (transient or not), so a retried unit of work
        is handed to :class:`~resilient_etl.resilience.retry.Retrier` through this.
        """
        try:
            with self.begin() as conn:
                return work(conn, *args)
        except DBAPIError as exc:
            raise db_error(exc) from exc

    def ensure_schema(self) -> None:
        """
        Create an empty warehouse at the code's schema revision, or check that an existing one is at it.

        :raises SchemaOutOfDateError: the warehouse is at another revision (``resilient-etl db upgrade``)
        """
        from resilient_etl.hooks.warehouse.migrations import ensure_current

        with self.begin() as conn:
            ensure_current(conn)

    def insert_rows(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> int:
        """
        Insert ``rows`` into ``table`` (``COPY`` on PostgreSQL for many rows, else one executemany).

        :param conn: the connection (inside the caller's transaction)
        :param table: the target table
        :param rows: dictionaries with the same keys
        :return: the number of rows written
        """
        if rows:
            dialects.for_name(conn.dialect.name).insert_rows(conn, table, rows)
        return len(rows)

    def update_rows(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]], key_columns: Sequence[str]) -> int:
        """
        Set the other columns of each of ``rows`` on the row of ``table`` its ``key_columns`` name.

        One ``UPDATE … FROM`` rows sent by ``COPY`` on PostgreSQL for many rows, else one executemany.

        :param conn: the connection (inside the caller's transaction)
        :param table: the table
        :param rows: dictionaries with the same keys: the key columns and the columns to set
        :param key_columns: the columns that identify a row
        :return: the number of rows given
        """
        if rows:
            dialects.for_name(conn.dialect.name).update_rows(conn, table, rows, key_columns)
        return len(rows)

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
        dialects.for_name(conn.dialect.name).upsert(conn, table, rows, key_columns)
        return len(rows)

    def upsert_from_select(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        source: Select[Any],
        key_columns: Sequence[str],
        params: dict[str, Any] | None = None,
    ) -> int:
        """
        Insert the rows of ``source`` into ``table`` inside the database, updating rows whose key exists; return how many.

        ``INSERT … SELECT … ON CONFLICT`` on PostgreSQL and SQLite (no row leaves the server). On SQL
        Server the rows are read and sent back through the MERGE of :meth:`upsert`.

        :param conn: the connection (inside the caller's transaction)
        :param table: the target table
        :param columns: the target columns, in the order ``source`` selects them
        :param source: the SELECT producing the rows
        :param key_columns: the columns that identify a row
        :param params: bind parameters of ``source``
        """
        return int(dialects.for_name(conn.dialect.name).upsert_from_select(conn, table, columns, source, key_columns, params or {}))

    def refresh_statistics(self, conn: Connection, tables: Sequence[Table]) -> None:
        """
        Have the database gather statistics of ``tables`` (after a stage wrote many rows to them).

        :param conn: the connection (inside the caller's transaction where the dialect allows)
        :param tables: the tables
        """
        dialects.for_name(conn.dialect.name).refresh_statistics(conn, tables)

    def run_in_savepoints(self, statements: Sequence[tuple[str, str]], parameters: Mapping[str, Any]) -> dict[str, Any]:
        """
        Run statements in one transaction, each under its own savepoint; return what ran and what was rolled back.

        A statement that fails is rolled back to its savepoint; then ``abort`` rolls the whole
        transaction back and raises the typed error, while ``continue`` keeps the work of the others.

        :param statements: ``(sql, "abort" | "continue")`` pairs
        :param parameters: bind parameters for every statement
        :raises ResilientEtlError: a statement under ``abort`` failed, or the commit did (typed by driver codes)
        """
        report: dict[str, Any] = {"executed": 0, "rolled_back": [], "rows_affected": []}
        try:
            with self.begin() as conn:
                for index, (statement, policy) in enumerate(statements):
                    try:
                        with conn.begin_nested():
                            result = conn.execute(text(statement), dict(parameters))
                        report["executed"] += 1
                        report["rows_affected"].append(result.rowcount)
                    except DBAPIError as exc:
                        error = db_error(exc)
                        entry = {"index": index, "sql": statement[:200], "error": type(exc.orig).__name__, "category": error.category.value}
                        self.log.warning("Statement %s rolled back to its savepoint (%s, policy %s)", index, entry["error"], policy)
                        if policy == "abort":
                            raise error from exc
                        report["rolled_back"].append(entry)
                        report["rows_affected"].append(0)
        except DBAPIError as exc:  # the commit itself, or a broken connection
            raise db_error(exc) from exc
        return report

    def test_connection(self) -> tuple[bool, str]:
        """Run ``SELECT 1`` on the warehouse."""
        try:
            with self.begin() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # a connection test reports any failure instead of raising
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"warehouse reachable ({self.dialect})"
