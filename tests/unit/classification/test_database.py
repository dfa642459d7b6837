"""Database failures are typed from the driver's codes, never from message text (pure function)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import DataError, IntegrityError, InternalError, OperationalError

from resilient_etl.classification import db_error, is_row_error
from resilient_etl.exceptions import DatabaseConnectionLostError, DatabaseError, DeadlockError, DiskFullError, WarehouseUnavailableError


class PgError(Exception):
    """Stands in for a psycopg2 error: what matters is its SQLSTATE."""

    def __init__(self, pgcode: str) -> None:
        super().__init__("the message is never parsed")
        self.pgcode = pgcode


def _sqlite(code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("the message is never parsed")
    exc.sqlite_errorcode = code
    return exc


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (OperationalError("x", {}, PgError("40P01")), DeadlockError),
        (OperationalError("x", {}, PgError("40001")), DeadlockError),
        (OperationalError("x", {}, _sqlite(5)), DeadlockError),  # SQLITE_BUSY
        (OperationalError("x", {}, PgError("53100")), DiskFullError),
        (OperationalError("x", {}, _sqlite(13)), DiskFullError),  # SQLITE_FULL
        (OperationalError("x", {}, PgError("57P01")), DatabaseConnectionLostError),  # pg_terminate_backend
        (OperationalError("x", {}, PgError("08006")), DatabaseConnectionLostError),
        (OperationalError("x", {}, PgError("XX000"), connection_invalidated=True), DatabaseConnectionLostError),
        (OperationalError("x", {}, _sqlite(10)), WarehouseUnavailableError),
        (InternalError("x", {}, PgError("XX000")), DatabaseError),
    ],
)
def test_typing(exc, expected) -> None:
    typed = db_error(exc)
    assert type(typed) is expected


def test_transient_or_not() -> None:
    assert db_error(OperationalError("x", {}, PgError("40P01"))).transient
    assert db_error(OperationalError("x", {}, PgError("57P01"))).transient
    assert not db_error(OperationalError("x", {}, PgError("53100"))).transient


def test_row_errors_are_told_apart() -> None:
    assert is_row_error(IntegrityError("x", {}, PgError("23505")))
    assert is_row_error(DataError("x", {}, PgError("22001")))  # value too long
    assert not is_row_error(OperationalError("x", {}, PgError("40P01")))
