"""
Circuit breaker policy (data) and its trip rule (a pure function), apart from the breaker itself so
that reading the config and parsing DAGs never imports pybreaker or a Redis client.
"""

from __future__ import annotations

from dataclasses import dataclass

from resilient_etl.resilience.storage import WindowCounts


@dataclass(frozen=True)
class BreakerPolicy:
    """
    When a breaker opens and how it heals.

    :param name: the breaker (one per API)
    :param fail_max: consecutive failures that open it
    :param failure_rate: share of failed calls in the window that opens it …
    :param minimum_calls: … once the window holds at least this many calls
    :param window_seconds: the sliding window
    :param reset_timeout: seconds open before one probe is let through
    :param success_threshold: successful probes that close it again
    :param sync_seconds: while closed, how often a worker reads the shared state and flushes its
        successes; failures are written at once. A worker learns that another one opened the breaker
        at most this late.
    """

    name: str
    fail_max: int = 5
    failure_rate: float = 0.5
    minimum_calls: int = 10
    window_seconds: float = 60.0
    reset_timeout: float = 30.0
    success_threshold: int = 1
    sync_seconds: float = 0.5

    @property
    def bucket_seconds(self) -> float:
        """Granularity of the window (a tenth of it, at least a second)."""
        return max(1.0, self.window_seconds / 10)

    @property
    def probe_lease(self) -> float:
        """How long a probe may take before another worker may probe instead."""
        return max(self.reset_timeout, 5.0)


def trip_reason(policy: BreakerPolicy, counts: WindowCounts) -> str | None:
    """
    Return why the breaker should open after a failure, or None (a pure function).

    :param policy: the breaker's policy
    :param counts: the window's totals including this failure
    """
    if counts.consecutive_failures >= policy.fail_max:
        return f"{counts.consecutive_failures} consecutive failures (limit {policy.fail_max})"
    if counts.calls >= policy.minimum_calls and counts.failures / counts.calls >= policy.failure_rate:
        return (
            f"failure rate {counts.failures}/{counts.calls} = {counts.failures / counts.calls:.0%} in "
            f"{policy.window_seconds:.0f}s (limit {policy.failure_rate:.0%}, minimum {policy.minimum_calls} calls)"
        )
    return None
