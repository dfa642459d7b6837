"""
Quota-aware pacing from ``X-Ratelimit-*`` headers, shared by every worker that uses the same key.

Companies House allows a fixed number of requests per window per key and says on every response how
many remain (``X-Ratelimit-Remain``) and when the window resets (``X-Ratelimit-Reset``). Two ways to
use it, claiming each slot in a shared store so several workers together keep to it:

* **burst** (``burst_reserve`` set): send at once while more than the reserve remain, then the reserve
  at the quota's own rate (window / limit), then wait for the reset. A fixed window allows no faster
  finish: n requests take (ceil(n / limit) - 1) windows. The reserve, paced, gives every worker time
  to see the count fall before the window is spent, so workers sharing a key do not overshoot.
* **spread** (no reserve): the remaining requests evenly until the reset, the quota's rate from the
  first request; n requests take n x window / limit, half again as long for three windows' worth.
"""

from __future__ import annotations

import hashlib
import logging
import math
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


def pacing_interval(status: RateLimitStatus | None, now: float, burst_reserve: int | None = None) -> float:
    """
    Return the gap to keep between requests (a pure function).

    Spread (``burst_reserve`` None): the time to the reset divided by the requests remaining. Burst:
    none while more than ``burst_reserve`` remain, then window / limit.

    :param status: the last rate-limit headers seen (None: nothing known, no pacing)
    :param now: the current unix time
    :param burst_reserve: requests of each window sent at the quota's rate after the burst; None spreads
    """
    if status is None or status.reset_at is None or status.remain is None:
        return 0.0
    until_reset = max(0.0, status.reset_at - now)
    if status.remain <= 0:
        return 0.0  # the caller defers to the reset instead; the new window starts unpaced
    if burst_reserve is not None:
        if status.remain > burst_reserve:
            return 0.0
        window = window_seconds(status.window)
        return min(until_reset / status.remain, window / status.limit) if window and status.limit else until_reset / status.remain
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


def quota_eta(
    requests: int, status: RateLimitStatus | None, now: float, burst_reserve: int | None = None, request_seconds: float = 0.0
) -> float | None:
    """
    Return the seconds ``requests`` more requests take when paced by the quota (a pure function).

    Spread: up to ``remain`` requests take ``remain``'s share of the time to the reset; the rest take
    ``window / limit`` each (a request's own time hides in the gaps). Burst: a window's requests
    beyond its reserve take ``request_seconds`` each, its reserve ``window / limit`` each, and each
    further window starts at the reset (an earlier window's requests' own time hides in the wait for
    it). None when the headers do not say enough (no quota known: no estimate).

    :param requests: requests still to send
    :param status: the last rate-limit headers
    :param now: the current unix time
    :param burst_reserve: as for :func:`pacing_interval`
    :param request_seconds: how long one request takes (burst: the last window's are sent one after another)
    """
    if status is None or status.reset_at is None or status.remain is None or not status.limit:
        return None
    window = window_seconds(status.window)
    if window is None:
        return None
    until_reset = max(0.0, status.reset_at - now)
    limit, remain = status.limit, status.remain
    if burst_reserve is None:
        if requests <= remain:
            return requests * until_reset / max(remain, 1)
        return until_reset + (requests - remain) * window / limit

    def last_window(sent: int, available: int) -> float:  # its burst at the API's pace, then its reserve at the quota's
        burst = min(sent, max(available - burst_reserve, 0))
        return burst * request_seconds + (sent - burst) * window / limit

    if requests <= remain:
        return min(last_window(requests, remain), max(until_reset, requests * request_seconds))
    windows = math.ceil((requests - remain) / limit)
    return until_reset + (windows - 1) * window + last_window(requests - remain - (windows - 1) * limit, limit)


class QuotaPacer:
    """
    Wait, before each request, for the next shared slot.

    :param store: the shared slot store
    :param key: the quota's key (see :func:`pacing_key`)
    :param burst_reserve: burst each window down to this many requests, then pace them; None spreads
        each window evenly (see the module)
    :param clock: unix time source
    :param sleep: sleep function (by default one that a task's ``on_kill`` interrupts)
    """

    def __init__(
        self,
        store: PacingStore,
        key: str,
        *,
        burst_reserve: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = stopping.sleep,
    ) -> None:
        self.store = store
        self.key = key
        self.burst_reserve = burst_reserve
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
        slot = self.store.claim(self.key, interval=pacing_interval(self.last, now, self.burst_reserve), now=now)
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
        """Remember the latest headers; the window's last request holds every worker until the reset at once."""
        if status is not None:
            self.last = status
            if self.quota_spent() and status.reset_at:
                # now, not at this worker's next request: another worker, whose own last answer still
                # showed one left, claims its next slot from the store and must find it at the reset
                self.store.defer(self.key, until=status.reset_at)

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
