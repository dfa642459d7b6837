"""
Database failures typed by the driver's codes: SQLSTATE (PostgreSQL), SQLite result codes, SQL Server
error numbers, and SQLAlchemy's disconnect detection, never the message text.

Registered with the classification (:mod:`resilient_etl.classification.translators`), so any
SQLAlchemy error reaching a task is classified without the warehouse hook being imported.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

from resilient_etl.classification.translators import Translation, register
from resilient_etl.exceptions import (
    DatabaseConnectionLostError,
    DatabaseError,
    DeadlockError,
    DiskFullError,
    ResilientEtlError,
    WarehouseUnavailableError,
)

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
    args = getattr(orig, "args", ())
    mssql_number = args[0] if type(orig).__module__.startswith("pymssql") and args and isinstance(args[0], int) else None
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


@register
def _translate(exc: BaseException) -> Translation | None:
    if not isinstance(exc, DBAPIError):
        return None
    typed = db_error(exc)
    return typed.category, typed.transient
