"""Quota pacing decisions and the shared slot store, without sleeping."""

from __future__ import annotations

import random

import pytest

from resilient_etl.classification import category_of
from resilient_etl.config import RetryPolicy
from resilient_etl.exceptions import ApiRateLimitError, Category
from resilient_etl.resilience import stopping
from resilient_etl.resilience.ratelimit import QuotaPacer, RateLimitStatus, pacing_interval, pacing_key
from resilient_etl.resilience.retry import decide
from resilient_etl.resilience.stores.memory import MemoryStore


def _status(remain: int, reset_at: float) -> RateLimitStatus:
    return RateLimitStatus(limit=600, remain=remain, reset_at=reset_at, window="5m")


def test_interval_spreads_remaining_requests_until_reset() -> None:
    assert pacing_interval(None, 0) == 0.0
    assert pacing_interval(_status(100, 1050.0), 1000.0) == 0.5
    assert pacing_interval(_status(0, 1050.0), 1000.0) == 0.0  # deferral handles an empty quota
    assert pacing_interval(_status(10, 990.0), 1000.0) == 0.0  # reset already passed


def test_key_never_contains_the_secret() -> None:
    key = pacing_key("companies_house", "my-secret-key")
    assert "my-secret" not in key and key.startswith("companies_house:")
    assert key == pacing_key("companies_house", "my-secret-key") != pacing_key("companies_house", "other")


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_two_workers_sharing_a_store_keep_the_combined_rate() -> None:
    store, t = MemoryStore(), FakeTime()
    a = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    b = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    for pacer in (a, b):
        pacer.after_response(_status(10, 1010.0))  # 10 left, 10 s to go: one per second in all
    sends = []
    for n, pacer in enumerate((a, b, a, b, a), start=1):
        pacer.before_request()
        sends.append(t.now)
        pacer.after_response(_status(10 - n, 1010.0))  # the server's count is global to the key
    gaps = [later - earlier for earlier, later in zip(sends, sends[1:])]
    assert sends[0] == 1000.0
    assert all(0.85 <= g <= 1.15 for g in gaps), gaps  # ~1 s apart whichever worker sends


def test_a_burst_sends_at_once_down_to_its_reserve_then_at_the_quota_rate() -> None:
    assert pacing_interval(_status(500, 1290.0), 1000.0, burst_reserve=10) == 0.0
    assert pacing_interval(_status(10, 1290.0), 1000.0, burst_reserve=10) == 0.5  # 300 s / 600, not 290 s / 10
    assert pacing_interval(_status(2, 1000.5), 1000.0, burst_reserve=10) == 0.25  # the reset comes first: spread to it


def test_two_workers_bursting_one_window_use_all_its_quota_and_never_more() -> None:
    """Each knows the server's count only from its own answers, one request behind the other's."""
    store, t = MemoryStore(), FakeTime()
    pacers = [QuotaPacer(store, "k", burst_reserve=10, clock=t.clock, sleep=t.sleep) for _ in range(2)]
    limit, used, reset = 600, 1, 1300.0
    for pacer in pacers:
        pacer.after_response(_status(limit - used, reset))
    sent_at = []
    for n in range(2 * limit):
        pacer = pacers[n % 2]
        pacer.before_request()
        if t.now >= reset:
            break
        used += 1
        sent_at.append(t.now)
        pacer.after_response(_status(limit - used, reset))
    assert used == limit  # the whole quota in this window, not one request past it (that one would be a 429)
    assert sent_at[-10] == 1000.0 and sent_at[-1] - 1000.0 <= 10 * 0.5  # the burst took no time, the reserve 0.5 s each
    assert t.now == reset  # then the next request waits for the reset


def test_empty_quota_defers_everyone_to_the_reset() -> None:
    store, t = MemoryStore(), FakeTime()
    pacer = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    pacer.after_response(_status(0, 1042.0))
    pacer.before_request()
    assert t.now == 1042.0
    other = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    other.on_rate_limited(ApiRateLimitError("429", service="companies_house", reset_at=1100.0))  # nothing known: trust the reset
    other.before_request()
    assert t.now == 1100.0


def test_a_429_with_retry_after_holds_for_that_not_for_the_window() -> None:
    store, t = MemoryStore(), FakeTime()
    pacer = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    pacer.after_response(_status(99_999, 1298.0))  # plenty left: the 429 is not about the quota
    pacer.on_rate_limited(ApiRateLimitError("429", service="companies_house", retry_after=1.0, reset_at=1298.0))
    pacer.before_request()
    assert t.now == 1001.0  # one second, as asked: not the 298 s to the reset


def test_a_429_with_quota_left_and_no_retry_after_holds_nobody() -> None:
    store, t = MemoryStore(), FakeTime()
    pacer = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    pacer.after_response(_status(500, 1298.0))
    pacer.on_rate_limited(ApiRateLimitError("429", service="companies_house", reset_at=1298.0))
    assert pacer.before_request() < 1.0


def test_a_quota_wait_past_the_retry_budget_is_a_rate_limit_error_not_a_sleep() -> None:
    store, t = MemoryStore(), FakeTime()
    pacer = QuotaPacer(store, "k", clock=t.clock, sleep=t.sleep)
    pacer.after_response(_status(0, 1298.0))
    pacer.deadline = 1060.0  # 60 s of budget left for this call
    with pytest.raises(ApiRateLimitError, match="298.0s away") as info:
        pacer.before_request()
    assert t.slept == [] and info.value.reset_at == 1298.0
    # the retry layer then gives up at once: the wait would pass its budget
    decision = decide(
        RetryPolicy(dependency="companies_house", max_elapsed_seconds=60), attempt=1, exc=info.value, elapsed=0.0, now=t.now, rng=random.Random(1)
    )
    assert not decision.retry and "298.0s would pass the 60s budget" in decision.reason


def test_a_stop_request_ends_a_quota_wait_at_once() -> None:
    import threading
    import time

    pacer = QuotaPacer(MemoryStore(), "k")  # the real clock and the interruptible sleep
    pacer.after_response(_status(0, time.time() + 300))
    threading.Timer(0.2, stopping.request_stop).start()
    started = time.monotonic()
    try:
        with pytest.raises(stopping.StopRequested) as info:
            pacer.before_request()
    finally:
        stopping.clear_stop()
    assert time.monotonic() - started < 3
    assert category_of(info.value)[0] is not Category.FILESYSTEM  # a stopped task is not a disk problem
