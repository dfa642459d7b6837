"""
A retry budget shared by every worker (Google SRE, "Handling Overload": a per-client retry budget).

Retries of one API are allowed while they stay within ``share`` of its first attempts over a sliding
window (plus ``min_retries`` always allowed), counted in the shared store, so N workers retrying an
ailing API send it at most ``(1 + share)`` times the calls they make rather than ``max_attempts`` times.

The count reuses the store's sliding window (:meth:`SharedStore.record`) under its own key: a first
attempt is a call, a retry is a call that "failed". A retry reads the window, then counts itself only if
it fits (a refused retry is not counted, or an API failing half its calls would never be retried again).
Two workers deciding in the same instant can each take the last retry: the share can be passed by at
most one retry per concurrent decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from resilient_etl.config.models import RetryBudgetPolicy
from resilient_etl.resilience.stores.base import SharedStore

BUCKET_SECONDS = 1.0
KEY_PREFIX = "retry-budget:"


@dataclass(frozen=True)
class BudgetVerdict:
    """One retry's verdict and the window's counts behind it."""

    allowed: bool
    retries: int
    calls: int
    limit: float


@dataclass
class RetryBudget:
    """
    The retry budget of ``name`` in ``store``.

    :param store: the shared store every worker uses
    :param name: the API (``companies_house``)
    :param policy: share, floor and window
    :param clock: unix time source
    """

    store: SharedStore
    name: str
    policy: RetryBudgetPolicy = field(default_factory=RetryBudgetPolicy)
    clock: Callable[[], float] = time.time
    _pending: int = field(default=0, init=False)  # first attempts counted here, not yet in the store
    _written_at: float = field(default=float("-inf"), init=False)

    @property
    def key(self) -> str:
        """The store key the counts live under (apart from the breaker of the same API)."""
        return KEY_PREFIX + self.name

    def record_call(self) -> None:
        """
        Count a first attempt: here at once, in the shared store at most once a bucket (and before any retry decision).

        A write per call was a store transaction per request (~3 ms against a SQL store: more than the
        request itself on a fast API). Held back, the other workers see this one's calls up to a bucket
        late, which only makes their budget stricter.
        """
        self._pending += 1
        now = self.clock()
        if now - self._written_at >= BUCKET_SECONDS:
            self.store.record(self.key, successes=self._pending, failed=False, now=now, window=self.policy.window_seconds, bucket=BUCKET_SECONDS)
            self._pending, self._written_at = 0, now

    def spend(self) -> BudgetVerdict:
        """Return whether one more retry fits the budget, and count it when it does."""
        now, window = self.clock(), self.policy.window_seconds
        # writes the calls held back and reads the window in one go: this worker's own calls count before it decides
        counts = self.store.record(self.key, successes=self._pending, failed=False, now=now, window=window, bucket=BUCKET_SECONDS)
        self._pending, self._written_at = 0, now
        retries, calls = counts.failures, counts.calls - counts.failures
        limit = max(float(self.policy.min_retries), self.policy.share * calls)
        allowed = retries + 1 <= limit
        if allowed:
            self.store.record(self.key, successes=0, failed=True, now=now, window=window, bucket=BUCKET_SECONDS)
            retries += 1
        return BudgetVerdict(allowed, retries, calls, limit)
