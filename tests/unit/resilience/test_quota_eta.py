"""The quota ETA: the rest of this window at its remaining share, then the full quota per window."""

from __future__ import annotations

import pytest

from resilient_etl.resilience.ratelimit import RateLimitStatus, quota_eta, window_seconds


@pytest.mark.parametrize(("label", "seconds"), [("5m", 300), ("300s", 300), ("1h", 3600), ("10", 10), ("", None), ("xm", None), (None, None)])
def test_window_labels(label, seconds) -> None:
    assert window_seconds(label) == seconds


def test_within_the_window_the_remaining_requests_share_the_time_to_the_reset() -> None:
    status = RateLimitStatus(limit=600, remain=300, reset_at=1_000.0 + 150, window="5m")
    assert quota_eta(150, status, now=1_000.0) == pytest.approx(75.0)  # half the remain: half the time to the reset


def test_beyond_the_window_each_request_costs_window_over_limit() -> None:
    status = RateLimitStatus(limit=600, remain=100, reset_at=1_000.0 + 60, window="5m")
    # 60 s to the reset for the 100 left, then 2,900 more at 0.5 s each
    assert quota_eta(3_000, status, now=1_000.0) == pytest.approx(60 + 2_900 * 0.5)


def test_no_estimate_without_the_quota() -> None:
    assert quota_eta(10, None, now=0) is None
    assert quota_eta(10, RateLimitStatus(limit=None, remain=5, reset_at=10.0, window="5m"), now=0) is None
    assert quota_eta(10, RateLimitStatus(limit=600, remain=5, reset_at=10.0, window="weird"), now=0) is None


def test_a_burst_takes_no_time_in_its_window_but_its_paced_reserve() -> None:
    status = RateLimitStatus(limit=600, remain=599, reset_at=1_000.0 + 300, window="5m")
    assert quota_eta(100, status, now=1_000.0, burst_reserve=10) == 0.0
    # all 599: the last 10 at 0.5 s each
    assert quota_eta(599, status, now=1_000.0, burst_reserve=10) == pytest.approx(5.0)


def test_a_burst_of_three_windows_waits_two_resets() -> None:
    """1,799 after the first answer at 600 / 5 min: the two resets, then the last window's reserve."""
    status = RateLimitStatus(limit=600, remain=599, reset_at=1_000.0 + 300, window="5m")
    assert quota_eta(1_799, status, now=1_000.0, burst_reserve=10) == pytest.approx(300 + 300 + 10 * 0.5)
    # a last window that does not reach its reserve goes at once
    assert quota_eta(1_199 + 100, status, now=1_000.0, burst_reserve=10) == pytest.approx(300 + 300)
    # unpaced (reserve 0): just the resets
    assert quota_eta(1_799, status, now=1_000.0, burst_reserve=0) == pytest.approx(600)


def test_the_last_window_of_a_burst_takes_its_requests_own_time() -> None:
    status = RateLimitStatus(limit=600, remain=599, reset_at=1_000.0 + 300, window="5m")
    # two resets, then 590 requests one after another at 2 ms and the reserve at 0.5 s each
    assert quota_eta(1_799, status, now=1_000.0, burst_reserve=10, request_seconds=0.002) == pytest.approx(600 + 590 * 0.002 + 10 * 0.5)
