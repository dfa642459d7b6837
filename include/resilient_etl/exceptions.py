"""
The error taxonomy: typed exceptions that carry their data (the bottom layer: imports nothing of the package).

Every failure the pipeline raises on purpose is a :class:`ResilientEtlError` with a ``category`` and a
``transient`` flag. Callers decide on those attributes (retry or fail, who is told), never on the text
of a message.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, ClassVar


class Category(StrEnum):
    """Failure categories: one per kind of failure the pipeline can meet."""

    NETWORK = "network"
    TIMEOUT = "timeout"
    UPSTREAM_5XX = "upstream_5xx"
    UPSTREAM_BAD_RESPONSE = "upstream_bad_response"
    RATE_LIMIT = "rate_limit"
    AUTH = "auth"
    UPSTREAM_REJECTED = "upstream_rejected"
    CONFIGURATION = "configuration"
    BAD_INPUT_FILE = "bad_input_file"
    DATA_QUALITY = "data_quality"
    DATABASE_UNAVAILABLE = "database_unavailable"
    DEADLOCK = "deadlock"
    INTEGRITY = "integrity"
    FILESYSTEM = "filesystem"
    BREAKER_OPEN = "breaker_open"
    SHARED_STATE_UNAVAILABLE = "shared_state_unavailable"
    DEADLINE_MISSED = "deadline_missed"
    DR_DRILL_FAILED = "dr_drill_failed"
    UNKNOWN = "unknown"


class Severity(StrEnum):
    """How urgent a failure is: SEV1 pages now, SEV4 is only recorded."""

    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class ResilientEtlError(Exception):
    """Base of every typed error raised by resilient_etl."""

    category: ClassVar[Category] = Category.UNKNOWN
    transient: bool = False  # a class default; a few errors decide per instance (an open breaker with a known probe time)


class ConfigError(ResilientEtlError):
    """The configuration file is missing or invalid; ``field`` names the offending path."""

    category = Category.CONFIGURATION

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class SchemaOutOfDateError(ConfigError):
    """The warehouse schema is at another migration revision than the code: ``resilient-etl db upgrade`` (or deploy the matching code)."""

    def __init__(self, message: str, *, current: str | None, head: str) -> None:
        super().__init__(message, field="warehouse schema", value=current)
        self.current = current
        self.head = head


class ApiError(ResilientEtlError):
    """
    A call to an external API failed.

    :param message: what happened, without secrets
    :param service: ``postcodes_io`` or ``companies_house``
    :param endpoint: the endpoint path called (never the full URL with credentials)
    :param status_code: the HTTP status, when a response arrived
    :param retry_after: seconds the server asked us to wait (``Retry-After``), when given
    """

    def __init__(
        self, message: str, *, service: str, endpoint: str | None = None, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.service = service
        self.endpoint = endpoint
        self.status_code = status_code
        self.retry_after = retry_after


class ApiConnectionError(ApiError):
    """The connection was refused, reset or dropped before a whole response arrived."""

    category = Category.NETWORK
    transient = True


class ApiTimeoutError(ApiError):
    """No response within the client timeout."""

    category = Category.TIMEOUT
    transient = True


class ApiServerError(ApiError):
    """The API answered 5xx (or 408)."""

    category = Category.UPSTREAM_5XX
    transient = True


class ApiBadResponseError(ApiError):
    """The API answered 2xx with a body we cannot parse (truncated or malformed JSON)."""

    category = Category.UPSTREAM_BAD_RESPONSE
    transient = True


class ApiRateLimitError(ApiError):
    """
    The API answered 429.

    :param reset_at: unix time at which the quota window resets (``X-Ratelimit-Reset``), when given
    """

    category = Category.RATE_LIMIT
    transient = True

    def __init__(self, message: str, *, reset_at: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_at = reset_at


class ApiAuthError(ApiError):
    """The API refused our credentials (401/403)."""

    category = Category.AUTH


class ApiClientError(ApiError):
    """The API rejected the request itself (4xx other than 401/403/404/408/429): a bug or bad input."""

    category = Category.UPSTREAM_REJECTED


class BadInputFileError(ResilientEtlError):
    """A landing file cannot be read as the supplier CSV contract."""

    category = Category.BAD_INPUT_FILE

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class WarehouseUnavailableError(ResilientEtlError):
    """The warehouse database cannot be reached."""

    category = Category.DATABASE_UNAVAILABLE
    transient = True


class ReconciliationError(ResilientEtlError):
    """Rows in do not equal rows loaded + quarantined + pending: something was lost or doubled."""

    category = Category.INTEGRITY

    def __init__(self, message: str, *, counts: dict[str, int]) -> None:
        super().__init__(message)
        self.counts = counts


class InvalidIdentifierError(ResilientEtlError, ValueError):
    """A postcode or company number is malformed; it is refused before any API call."""

    category = Category.DATA_QUALITY

    def __init__(self, message: str, *, field: str, value: str | None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


def utc_clock(unix_time: float) -> str:
    """Format a unix time as the wall-clock time an operator reads in a message: ``20:08:04 UTC``."""
    return dt.datetime.fromtimestamp(unix_time, dt.UTC).strftime("%H:%M:%S UTC")


class BreakerOpenError(ResilientEtlError):
    """
    A circuit breaker refused the call: the dependency is failing (or another worker is probing it).

    The in-task retry layer does not retry it (waiting a backoff interval cannot help; the caller
    switches to its fallback). For Airflow it is transient once the breaker's next probe is known:
    the task retries after that time, not before.

    :param breaker: the breaker's name
    :param retry_at: unix time from which a probe may be admitted, when known (the message says it)
    """

    category = Category.BREAKER_OPEN

    def __init__(self, message: str, *, breaker: str, retry_at: float | None = None) -> None:
        super().__init__(f"{message} until {utc_clock(retry_at)}" if retry_at is not None else message)
        self.breaker = breaker
        self.retry_at = retry_at
        self.transient = retry_at is not None


class FallbackThresholdError(ResilientEtlError):
    """
    Too much of a run was enriched from fallbacks instead of the live API (a breaker stayed open).

    Transient when an open breaker caused it (``retry_at`` is its next probe): a retry after the
    probe can find the API back. Without a breaker to wait for it is permanent.

    :param breaker: the open breaker that sent lookups to the fallbacks, when one did
    :param retry_at: unix time of that breaker's next probe
    """

    category = Category.BREAKER_OPEN

    def __init__(
        self, message: str, *, source: str, non_live_share: float, threshold: float, breaker: str | None = None, retry_at: float | None = None
    ) -> None:
        if breaker is not None and retry_at is not None:
            message = f"{message}; breaker {breaker} is open until {utc_clock(retry_at)}"
        super().__init__(message)
        self.source = source
        self.non_live_share = non_live_share
        self.threshold = threshold
        self.breaker = breaker
        self.retry_at = retry_at
        self.transient = retry_at is not None


class SharedStateUnavailableError(ResilientEtlError):
    """
    The store that shares breaker and pacing state between workers (Redis, ``breaker_store``) cannot be reached.

    :param store: which store, for the message (``redis breaker_store at 127.0.0.1:6379``)
    """

    category = Category.SHARED_STATE_UNAVAILABLE
    transient = True

    def __init__(self, message: str, *, store: str) -> None:
        super().__init__(message)
        self.store = store


class DatabaseConnectionLostError(WarehouseUnavailableError):
    """The warehouse connection broke in the middle of a transaction (server restart, killed backend)."""


class DeadlockError(ResilientEtlError):
    """The database chose this transaction as a deadlock (or serialization) victim; a rerun may pass."""

    category = Category.DEADLOCK
    transient = True


class DiskFullError(ResilientEtlError):
    """The database (or a folder) ran out of space: retrying cannot help until someone frees it."""

    category = Category.FILESYSTEM


class DatabaseError(ResilientEtlError):
    """Any other database failure of a whole statement (not one row's data); treated as permanent."""

    category = Category.INTEGRITY


class QuarantineThresholdError(ResilientEtlError):
    """Too many rows of a batch were rejected by the database; the batch was rolled back."""

    category = Category.DATA_QUALITY

    def __init__(self, message: str, *, rejected: int, rows: int, threshold: float) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.rows = rows
        self.threshold = threshold


class DataQualityError(ResilientEtlError):
    """A file broke a data-quality rule beyond its fail threshold: it was not loaded (see rejected/)."""

    category = Category.DATA_QUALITY

    def __init__(self, message: str, *, files: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.files = files  # file -> the rules it failed


class DeadlineMissedError(ResilientEtlError):
    """
    A DAG run or a task is still running past its deadline (raised into alerts, never into the task).

    :param scope: ``dag_run`` or ``task``
    :param name: the deadline's name (``warn``, ``page``, or the task id for a soft task deadline)
    :param limit_seconds: the allowed duration
    """

    category = Category.DEADLINE_MISSED

    def __init__(self, message: str, *, scope: str, name: str, limit_seconds: float) -> None:
        super().__init__(message)
        self.scope = scope
        self.name = name
        self.limit_seconds = limit_seconds


class DrDrillFailedError(ResilientEtlError):
    """
    A disaster-recovery drill missed its objective or a target (DAG ``dr_drill``), or none passed for too long.

    :param scenario: the drill scenario
    :param missed: each missed check as ``metric: measured (objective)``
    """

    category = Category.DR_DRILL_FAILED

    def __init__(self, message: str, *, scenario: str, missed: list[str]) -> None:
        super().__init__(message)
        self.scenario = scenario
        self.missed = missed


class HealthCheckError(ResilientEtlError):
    """
    A health check found a component degraded (raised into alerts by ``pipeline_health``).

    Its category is the component's: a warehouse check failing is ``database_unavailable``, a folder
    ``filesystem``, an API ``network``.

    :param component: the check's name
    :param status: ``warn`` or ``fail``
    """

    # Never raised into a task, so never retried: it only carries a degraded component to the alerts.
    transient = False
    CATEGORIES: ClassVar[dict[str, Category]] = {
        "warehouse": Category.DATABASE_UNAVAILABLE,
        "folders": Category.FILESYSTEM,
        "postcodes_io": Category.NETWORK,
        "companies_house": Category.NETWORK,
        "breakers": Category.BREAKER_OPEN,
        "shared_state": Category.DATABASE_UNAVAILABLE,
        "smtp": Category.NETWORK,
        "airflow": Category.NETWORK,
        "dr_drills": Category.DR_DRILL_FAILED,
    }

    def __init__(self, message: str, *, component: str, status: str) -> None:
        super().__init__(message)
        self.component = component
        self.status = status
        self.category = self.CATEGORIES.get(component, Category.UNKNOWN)  # type: ignore[misc]
