"""The Airflow task retry policy follows the taxonomy: transient retries, permanent fails at once."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import ExceptionRetryPolicy, RetryAction

from resilient_etl import exceptions as errors
from resilient_etl.classification import classify
from resilient_etl.config import get_config
from resilient_etl.operators.retry_policy import task_retry_policy, transient_error_types


def test_every_transient_type_is_listed() -> None:
    names = {t.__name__ for t in transient_error_types()}
    assert names == {
        "ApiConnectionError",
        "ApiTimeoutError",
        "ApiServerError",
        "ApiBadResponseError",
        "ApiRateLimitError",
        "WarehouseUnavailableError",
        "DatabaseConnectionLostError",
        "DeadlockError",
        "SharedStateUnavailableError",
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


def test_an_open_breaker_is_transient_and_waits_for_its_next_probe() -> None:
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    policy = task_retry_policy(clock=lambda: now)
    opened = errors.BreakerOpenError("circuit breaker companies_house is open", breaker="companies_house", retry_at=now + 42.3)
    assert str(opened) == "circuit breaker companies_house is open until 08:00:42 UTC"
    fallback = errors.FallbackThresholdError(
        "900 of 978 company lookups (92%) came from fallbacks, over the 50% allowed",
        source="company",
        non_live_share=0.92,
        threshold=0.5,
        breaker="companies_house",
        retry_at=now + 42.3,
    )
    assert str(fallback).endswith("; breaker companies_house is open until 08:00:42 UTC")
    for exc in (opened, fallback):
        decision = policy.evaluate(exc, try_number=1, max_tries=3)
        assert decision.action is RetryAction.RETRY
        assert decision.retry_delay == dt.timedelta(seconds=44)  # not before the probe at +42.3 s
        assert "open until 08:00:42 UTC" in decision.reason
        assert classify(exc, get_config().classification.entries()).transient


def test_fallbacks_without_an_open_breaker_stay_permanent() -> None:
    exc = errors.FallbackThresholdError("too many fallbacks", source="company", non_live_share=0.9, threshold=0.5)
    assert task_retry_policy().evaluate(exc, try_number=1, max_tries=3).action is RetryAction.FAIL
    assert task_retry_policy().evaluate(errors.BreakerOpenError("open", breaker="x"), 1, 3).action is RetryAction.FAIL
