"""The Airflow task retry policy follows the taxonomy: transient retries, permanent fails at once."""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction

from resilient_etl import errors
from resilient_etl.resilience.task_policy import task_retry_policy, transient_error_types


def test_every_transient_type_is_listed() -> None:
    names = {t.__name__ for t in transient_error_types()}
    assert names == {
        "ApiConnectionError", "ApiTimeoutError", "ApiServerError", "ApiBadResponseError", "ApiRateLimitError",
        "WarehouseUnavailableError", "DatabaseConnectionLostError", "DeadlockError",
    }


def test_decisions_per_error() -> None:
    policy = task_retry_policy()
    cases = [
        (errors.ApiServerError("503", service="x", status_code=503), RetryAction.RETRY),
        (errors.ApiRateLimitError("429", service="x"), RetryAction.RETRY),
        (errors.WarehouseUnavailableError("down"), RetryAction.RETRY),
        (errors.ApiAuthError("401", service="x", status_code=401), RetryAction.FAIL),
        (errors.ConfigError("bad", field="x"), RetryAction.FAIL),
        (errors.BadInputFileError("bad", path="p"), RetryAction.FAIL),
        (errors.ReconciliationError("lost", counts={}), RetryAction.FAIL),
        (errors.DeadlockError("victim"), RetryAction.RETRY),
        (errors.DiskFullError("full"), RetryAction.FAIL),
        (errors.QuarantineThresholdError("bad batch", rejected=9, rows=10, threshold=0.05), RetryAction.FAIL),
        (ValueError("outside the taxonomy"), RetryAction.DEFAULT),
    ]
    for exc, action in cases:
        assert policy.evaluate(exc, try_number=1, max_tries=3).action is action, type(exc).__name__


def test_policy_survives_dag_serialization() -> None:
    restored = ExceptionRetryPolicy.deserialize(task_retry_policy().serialize())
    assert restored.evaluate(errors.ApiAuthError("401", service="x"), 1, 3).action is RetryAction.FAIL
    assert restored.evaluate(errors.ApiTimeoutError("t", service="x"), 1, 3).action is RetryAction.RETRY
