"""Retry decisions as pure functions, and the tenacity adapter with a recorded sleep (no real waiting)."""

from __future__ import annotations

import logging
import random

import pytest

from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import ApiAuthError, ApiRateLimitError, ApiServerError, ApiTimeoutError, ConfigError, WarehouseUnavailableError
from resilient_etl.resilience.retry import Retrier, backoff_ceiling, decide, is_transient

POLICY = RetryPolicy(
    dependency="companies_house",
    max_attempts=5,
    initial_wait_seconds=1,
    multiplier=2,
    max_wait_seconds=5,
    max_elapsed_seconds=60,
    max_server_wait_seconds=30,
)


def _server_error() -> ApiServerError:
    return ApiServerError("503", service="companies_house", status_code=503)


def test_transient_is_decided_by_type() -> None:
    assert is_transient(_server_error())
    assert is_transient(ApiTimeoutError("t", service="x"))
    assert is_transient(WarehouseUnavailableError("down"))
    assert not is_transient(ApiAuthError("401", service="x", status_code=401))
    assert not is_transient(ConfigError("bad"))
    assert not is_transient(ConnectionError("untyped"))  # untyped errors are not guessed at


def test_backoff_ceiling_grows_and_caps() -> None:
    assert [backoff_ceiling(POLICY, a) for a in range(1, 6)] == [1, 2, 4, 5, 5]


def test_full_jitter_stays_under_the_ceiling_and_spreads() -> None:
    rng = random.Random(3)
    waits = [decide(POLICY, attempt=3, exc=_server_error(), elapsed=0, now=0, rng=rng).wait for _ in range(2000)]
    assert 0 <= min(waits) < 0.1 and 3.9 < max(waits) <= 4.0
    assert 1.8 < sum(waits) / len(waits) < 2.2  # uniform on [0, 4]


def test_permanent_errors_are_not_retried() -> None:
    d = decide(POLICY, attempt=1, exc=ApiAuthError("401", service="x", status_code=401), elapsed=0, now=0, rng=random.Random())
    assert (d.retry, d.reason) == (False, "permanent error")


def test_attempts_are_capped() -> None:
    assert decide(POLICY, attempt=4, exc=_server_error(), elapsed=0, now=0, rng=random.Random()).retry
    d = decide(POLICY, attempt=5, exc=_server_error(), elapsed=0, now=0, rng=random.Random())
    assert not d.retry and d.reason == "5 attempts made"


def test_elapsed_budget_is_never_overrun() -> None:
    d = decide(POLICY, attempt=1, exc=ApiServerError("x", service="s", retry_after=5), elapsed=56, now=0, rng=random.Random())
    assert not d.retry and "budget" in d.reason
    assert decide(POLICY, attempt=1, exc=ApiServerError("x", service="s", retry_after=5), elapsed=54, now=0, rng=random.Random()).retry


def test_retry_after_wins_over_backoff() -> None:
    d = decide(POLICY, attempt=1, exc=ApiRateLimitError("429", service="s", retry_after=12, reset_at=999), elapsed=0, now=0, rng=random.Random())
    assert (d.retry, d.wait, d.reason) == (True, 12, "server-requested wait")


def test_rate_limit_without_retry_after_waits_for_the_reset() -> None:
    d = decide(POLICY, attempt=1, exc=ApiRateLimitError("429", service="s", reset_at=1_000_020.0), elapsed=0, now=1_000_000.0, rng=random.Random())
    assert (d.retry, d.wait) == (True, 20.0)
    past = decide(POLICY, attempt=1, exc=ApiRateLimitError("429", service="s", reset_at=999_990.0), elapsed=0, now=1_000_000.0, rng=random.Random())
    assert past.wait == 0.0


def test_a_server_wait_past_the_cap_gives_up_instead_of_waiting_less() -> None:
    d = decide(POLICY, attempt=1, exc=ApiRateLimitError("429", service="s", retry_after=300), elapsed=0, now=0, rng=random.Random())
    assert not d.retry and "more than 30s" in d.reason


class Flaky:
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_retrier_retries_transient_then_succeeds_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    fn = Flaky([_server_error(), ApiTimeoutError("t", service="companies_house")])
    caplog.set_level(logging.INFO)
    assert Retrier(POLICY, sleep=slept.append, rng=random.Random(1)).call(fn) == "ok"
    assert fn.calls == 3 and len(slept) == 2
    assert slept[0] <= 1 and slept[1] <= 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split(" failed")[0] for r in warnings] == ["companies_house: attempt 1/5", "companies_house: attempt 2/5"]
    assert "ApiServerError (status 503, category upstream_5xx)" in warnings[0].getMessage()
    assert "succeeded after 3 attempts" in caplog.text


def test_retrier_gives_up_with_a_note_and_one_final_log(caplog: pytest.LogCaptureFixture) -> None:
    slept: list[float] = []
    fn = Flaky([_server_error() for _ in range(10)])
    with pytest.raises(ApiServerError) as info:
        Retrier(POLICY, sleep=slept.append).call(fn)
    assert fn.calls == 5 and len(slept) == 4
    assert "gave up after 5 attempts" in info.value.__notes__[0]
    assert caplog.text.count("gave up after 5 attempts") == 1


def test_retrier_fails_fast_on_permanent_errors() -> None:
    slept: list[float] = []
    fn = Flaky([ApiAuthError("401", service="x", status_code=401)])
    with pytest.raises(ApiAuthError):
        Retrier(POLICY, sleep=slept.append).call(fn)
    assert fn.calls == 1 and slept == []


def test_retrier_honours_retry_after() -> None:
    slept: list[float] = []
    fn = Flaky([ApiRateLimitError("429", service="s", retry_after=7)])
    Retrier(POLICY, sleep=slept.append).call(fn)
    assert slept == [7.0]
