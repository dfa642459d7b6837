"""The shared retry budget: counted in a shared store, it caps retries at a share of first attempts."""

from __future__ import annotations

import pytest

from _support.clock import Clock
from resilient_etl.config import RetryPolicy
from resilient_etl.config.models import RetryBudgetPolicy
from resilient_etl.exceptions import ApiServerError
from resilient_etl.resilience.budget import RetryBudget
from resilient_etl.resilience.retry import Retrier
from resilient_etl.resilience.stores.memory import MemoryStore

POLICY = RetryPolicy(dependency="companies_house", max_attempts=4, initial_wait_seconds=0, max_wait_seconds=0)


class FlakyApi:
    """Fails every other request with a 503 and counts the requests that reach it."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self) -> str:
        self.requests += 1
        if self.requests % 2:
            raise ApiServerError("503", service="companies_house", status_code=503)
        return "ok"


def _retrier(budget: RetryBudget | None) -> Retrier:
    return Retrier(POLICY, sleep=lambda _: None, budget=budget)


def _calls(retrier: Retrier, api: FlakyApi, n: int) -> int:
    failed = 0
    for _ in range(n):
        try:
            retrier.call(api)
        except ApiServerError:
            failed += 1
    return failed


def test_two_workers_sharing_a_budget_stay_within_one_plus_share_of_their_calls() -> None:
    store, clock = MemoryStore(), Clock()
    policy = RetryBudgetPolicy(share=0.1, min_retries=0, window_seconds=600)
    workers = [_retrier(RetryBudget(store, "companies_house", policy, clock=clock)) for _ in range(2)]
    api = FlakyApi()
    failed = sum(_calls(worker, api, 100) for worker in workers)
    assert api.requests <= 1.1 * 200
    assert failed > 0  # over budget, calls failed fast instead of retrying


def test_without_a_budget_the_same_calls_send_more_requests() -> None:
    api = FlakyApi()
    assert _calls(_retrier(None), api, 200) == 0
    assert api.requests > 1.1 * 200


def test_min_retries_lets_a_quiet_api_retry_a_lone_blip() -> None:
    budget = RetryBudget(MemoryStore(), "companies_house", RetryBudgetPolicy(share=0.1, min_retries=3), clock=Clock())
    api = FlakyApi()
    assert _retrier(budget).call(api) == "ok"
    assert api.requests == 2


def test_a_refused_retry_is_not_counted_so_a_half_failing_api_keeps_its_share() -> None:
    budget = RetryBudget(MemoryStore(), "companies_house", RetryBudgetPolicy(share=0.1, min_retries=0), clock=Clock())
    granted = 0
    for _ in range(100):
        budget.record_call()
        granted += budget.spend().allowed  # every call fails once and asks for a retry
    assert granted == 10


def test_the_window_slides_and_the_budget_refills() -> None:
    clock = Clock()
    budget = RetryBudget(MemoryStore(), "companies_house", RetryBudgetPolicy(share=0.0, min_retries=1, window_seconds=10), clock=clock)
    assert budget.spend().allowed
    assert not budget.spend().allowed
    clock.advance(11)
    assert budget.spend().allowed


def test_a_refused_retry_says_why_on_the_error(caplog: pytest.LogCaptureFixture) -> None:
    budget = RetryBudget(MemoryStore(), "companies_house", RetryBudgetPolicy(share=0.0, min_retries=0), clock=Clock())
    with pytest.raises(ApiServerError) as raised:
        _retrier(budget).call(FlakyApi())
    assert "retry budget of companies_house spent: 0 retries for 1 calls" in " ".join(raised.value.__notes__)
    assert "gave up after 1 attempts" in caplog.text


class CountingStore(MemoryStore):
    """A memory store that counts its writes (each one a transaction on a SQL or Redis store)."""

    def __init__(self) -> None:
        super().__init__()
        self.records = 0

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.records += 1
        return super().record(*args, **kwargs)


def test_first_attempts_reach_the_store_once_a_bucket_and_all_of_them_before_a_retry_decision() -> None:
    store, clock = CountingStore(), Clock()
    budget = RetryBudget(store, "companies_house", RetryBudgetPolicy(share=0.1, min_retries=0), clock=clock)
    for _ in range(1000):  # 1,000 calls in half a second
        budget.record_call()
        clock.advance(0.0005)
    assert store.records == 1  # the first call, at once: other workers see the API in use
    verdict = budget.spend()
    assert (verdict.calls, verdict.allowed, store.records) == (1000, True, 3)  # held-back calls written with the read, then the retry
    clock.advance(1.0)
    budget.record_call()
    assert store.records == 4
