"""
Quota-aware pacing from ``X-Ratelimit-*`` headers, shared by every worker that uses the same key.

Companies House allows a fixed number of requests per window per key and says on every response how
many remain (``X-Ratelimit-Remain``) and when the window resets (``X-Ratelimit-Reset``). Spreading the
remaining requests evenly until the reset uses the whole quota without ever meeting a 429 in steady
state; claiming each slot in a shared store makes several workers together keep that rate.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from resilient_etl.exceptions import ApiRateLimitError
from resilient_etl.resilience import stopping

log = logging.getLogger(__name__)


class PacingStore(Protocol):
    """The part of a :class:`~resilient_etl.resilience.stores.base.SharedStore` pacing needs."""

    def claim(self, key: str, *, interval: float, now: float) -> float: ...

    def defer(self, key: str, *, until: float) -> None: ...


@dataclass(frozen=True)
class RateLimitStatus:
    """The ``X-Ratelimit-*`` headers of the last response (Companies House sends them on every one)."""

    limit: int | None
    remain: int | None
    reset_at: float | None
    window: str | None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_rate_limit(headers: Any) -> RateLimitStatus | None:
    """Return the rate-limit status carried by ``headers``, or None when there is none."""
    if "X-Ratelimit-Limit" not in headers and "X-Ratelimit-Remain" not in headers:
        return None
    reset = _int_or_none(headers.get("X-Ratelimit-Reset"))
    return RateLimitStatus(
        limit=_int_or_none(headers.get("X-Ratelimit-Limit")),
        # The Document API spells it "Remaining"; accept both.
        remain=_int_or_none(headers.get("X-Ratelimit-Remain", headers.get("X-Ratelimit-Remaining"))),
        reset_at=float(reset) if reset is not None else None,
        window=headers.get("X-Ratelimit-Window"),
    )


def pacing_key(service: str, secret: str) -> str:
    """Return the shared key for a quota: the service and a hash of the API key (never the key)."""
    return f"{service}:{hashlib.sha256(secret.encode()).hexdigest()[:16]}"


def pacing_interval(status: RateLimitStatus | None, now: float) -> float:
    """
    Return the gap to keep between requests: the time to the reset divided by the requests remaining.

    :param status: the last rate-limit headers seen (None: nothing known, no pacing)
    :param now: the current unix time
    """
    if status is None or status.reset_at is None or status.remain is None:
        return 0.0
    until_reset = max(0.0, status.reset_at - now)
    if status.remain <= 0:
        return 0.0  # the caller defers to the reset instead; the new window starts unpaced
    return until_reset / status.remain


def window_seconds(label: str | None) -> float | None:
    """Return the seconds of an ``X-Ratelimit-Window`` label (``5m``, ``300s``, ``1h``), or None when unreadable."""
    if not label:
        return None
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = label[:-1], label[-1].lower()
    if unit not in units:
        number, unit = label, "s"
    try:
        return float(number) * units[unit]
    except ValueError:
        return None


def quota_eta(requests: int, status: RateLimitStatus | None, now: float) -> float | None:
    """
    Return the seconds ``requests`` more requests take when paced by the quota (a pure function).

    The pacer spreads what remains of the window until its reset, then the full quota over each
    window: up to ``remain`` requests take ``remain``'s share of the time to the reset; the rest take
    ``window / limit`` each. None when the headers do not say enough (no quota known: no estimate).

    :param requests: requests still to send
    :param status: the last rate-limit headers
    :param now: the current unix time
    """
    if status is None or status.reset_at is None or status.remain is None or not status.limit:
        return None
    window = window_seconds(status.window)
    if window is None:
        return None
    until_reset = max(0.0, status.reset_at - now)
    if requests <= status.remain:
        return requests * until_reset / max(status.remain, 1)
    return until_reset + (requests - status.remain) * window / status.limit


class QuotaPacer:
    """
    Wait, before each request, for the next shared slot.

    :param store: the shared slot store
    :param key: the quota's key (see :func:`pacing_key`)
    :param clock: unix time source
    :param sleep: sleep function (by default one that a task's ``on_kill`` interrupts)
    """

    def __init__(
        self, store: PacingStore, key: str, *, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = stopping.sleep
    ) -> None:
        self.store = store
        self.key = key
        self.clock = clock
        self.sleep = sleep
        self.last: RateLimitStatus | None = None
        self.waited = 0.0
        self.deadline: float | None = None  # unix time the current call's retry budget ends (set by the hook)

    @property
    def service(self) -> str:
        return self.key.split(":")[0]

    def quota_spent(self) -> bool:
        """Return whether the last headers say no request of this window remains."""
        return self.last is not None and self.last.remain is not None and self.last.remain <= 0

    def before_request(self) -> float:
        """
        Claim a slot and sleep until it; return the seconds waited.

        :raises ApiRateLimitError: the slot lies past the current call's retry budget (the wait
            counts toward that budget like any other); its ``reset_at`` is the slot
        """
        now = self.clock()
        if self.last is not None and self.quota_spent() and self.last.reset_at:
            self.store.defer(self.key, until=self.last.reset_at)
        slot = self.store.claim(self.key, interval=pacing_interval(self.last, now), now=now)
        wait = max(0.0, slot - now)
        remain = self.last.remain if self.last else None
        if self.deadline is not None and now + wait > self.deadline:
            raise ApiRateLimitError(
                f"{self.service}: the next quota slot is {wait:.1f}s away (remain {remain}), past the retry budget",
                service=self.service,
                reset_at=slot,
            )
        if wait > 0:
            if wait > 5:
                log.info("Pacing %s: waiting %.1fs for the quota (remain %s)", self.service, wait, remain)
            self.sleep(wait)
            self.waited += wait
        return wait

    def after_response(self, status: RateLimitStatus | None) -> None:
        """Remember the latest headers."""
        if status is not None:
            self.last = status

    def on_rate_limited(self, error: ApiRateLimitError) -> None:
        """
        A 429 arrived anyway: hold every worker as long as it asks, and no longer.

        ``Retry-After`` is honoured as given; the quota window's reset only when the headers say the
        quota is really spent. A 429 with requests remaining and no ``Retry-After`` holds nobody
        (the retry backs off).
        """
        now = self.clock()
        if error.retry_after is not None:
            self.store.defer(self.key, until=now + error.retry_after)
        elif error.reset_at and (self.last is None or self.last.remain is None or self.quota_spent()):
            self.store.defer(self.key, until=error.reset_at)
