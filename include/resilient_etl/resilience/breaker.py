"""
Circuit breakers on pybreaker, with state shared by every worker process.

pybreaker supplies the breaker's vocabulary: ``CircuitBreaker`` (name, ``fail_max``, ``reset_timeout``,
``success_threshold``, excluded exceptions), the ``CircuitBreakerListener`` protocol and
``CircuitBreakerError``. Two things it does not do are added here:

* a failure-rate rule over a sliding time window with a minimum number of calls, beside its
  consecutive-failure rule;
* one probe across all processes in half-open: moving open -> half-open and taking the probe lease
  are compare-and-set operations in the shared store, so of many workers exactly one calls the
  recovering API; the others keep using their fallback.

Only transient failures count (timeouts, resets, 5xx, 429): a 404 for an unknown postcode is an
answer, not a failure, and never opens a breaker.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pybreaker

from resilient_etl.config.models import BreakerPolicy
from resilient_etl.exceptions import BreakerOpenError, utc_clock
from resilient_etl.resilience.retry import is_transient
from resilient_etl.resilience.stores.base import CLOSED, HALF_OPEN, OPEN, BreakerSnapshot, SharedStore, WindowCounts

T = TypeVar("T")
log = logging.getLogger(__name__)


def trip_reason(policy: BreakerPolicy, counts: WindowCounts) -> str | None:
    """
    Return why the breaker should open after a failure, or None (a pure function).

    :param policy: the breaker's policy
    :param counts: the window's totals including this failure
    """
    if counts.consecutive_failures >= policy.fail_max:
        return f"{counts.consecutive_failures} consecutive failures (limit {policy.fail_max})"
    if counts.calls >= policy.minimum_calls and counts.failures / counts.calls >= policy.failure_rate_threshold:
        return (
            f"failure rate {counts.failures}/{counts.calls} = {counts.failures / counts.calls:.0%} in "
            f"{policy.window_seconds:.0f}s (limit {policy.failure_rate_threshold:.0%}, minimum {policy.minimum_calls} calls)"
        )
    return None


class _StateView:
    """The minimal stand-in for a pybreaker state that listeners receive (they read ``.name``)."""

    def __init__(self, name: str) -> None:
        self.name = name


class SharedCircuitBreaker(pybreaker.CircuitBreaker):
    """
    A pybreaker ``CircuitBreaker`` whose state lives in a :class:`SharedStore`.

    :param policy: thresholds and timeouts
    :param store: the shared store (Redis or SQL)
    :param listeners: pybreaker listeners, told of every state change this process observes or makes
    :param clock: unix time source
    """

    def __init__(
        self,
        policy: BreakerPolicy,
        store: SharedStore,
        *,
        listeners: Sequence[pybreaker.CircuitBreakerListener] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy
        self.store = store
        self.clock = clock
        self._seen = CLOSED
        self._synced_at = float("-inf")
        self._open_until = 0.0  # while open, no probe can close it before this: no need to ask the store
        self._pending_successes = 0
        self._ready = False  # pybreaker's __init__ asks for the state: no store I/O while constructing
        self.last_counts: WindowCounts | None = None
        self.last_reason = ""
        super().__init__(
            fail_max=policy.fail_max,
            reset_timeout=policy.reset_timeout_seconds,
            success_threshold=policy.success_threshold,
            # only transient failures count: a permanent error (or a 404 answer) is the API working
            exclude=[lambda exc: not is_transient(exc)],
            listeners=list(listeners),
            name=policy.name,
        )
        self._ready = True

    @property
    def current_state(self) -> str:
        """Return the shared state (one store read)."""
        return self.store.read(self.policy.name).state if self._ready else CLOSED

    def waiting(self) -> bool:
        """
        Return whether the breaker is open with its reset timeout still running: a call now is refused
        without reaching the API. Once the timeout has passed it is not waiting (the next call is its
        probe, and only a call can close it); half-open is not waiting either (a call is the next probe,
        or is refused while another worker's probe is in flight).
        """
        if not self._ready:
            return False
        snap = self.snapshot()
        return snap.state == OPEN and self.clock() < snap.opened_at + self.policy.reset_timeout_seconds

    def snapshot(self) -> BreakerSnapshot:
        """Return the shared state with its counters."""
        return self.store.read(self.policy.name)

    def _changed(self, new: str, reason: str, counts: WindowCounts | None = None) -> None:
        old, self._seen = self._seen, new
        if old == new:
            return
        c = counts or self.last_counts
        log.warning(
            "Circuit breaker %s: %s -> %s (%s; window %s calls, %s failures, %s consecutive)",
            self.policy.name,
            old,
            new,
            reason,
            c.calls if c else "-",
            c.failures if c else "-",
            c.consecutive_failures if c else "-",
        )
        self.last_reason = reason
        for listener in self.listeners:
            listener.state_change(self, _StateView(old), _StateView(new))

    def _observe(self, snap: BreakerSnapshot, now: float) -> None:
        self._synced_at = now
        if snap.state == OPEN:
            self._open_until = snap.opened_at + self.policy.reset_timeout_seconds
        if snap.state != self._seen:
            # Another process, or an earlier try of this task, changed it: the store cannot tell which.
            opened = f", opened at {utc_clock(snap.opened_at)}" if snap.state != CLOSED and snap.opened_at else ""
            self._changed(snap.state, f"found {snap.state} in the shared store{opened}")

    def _shared_snapshot(self, now: float) -> BreakerSnapshot | None:
        """Read the shared state, unless the local view is recent enough to act on (None then)."""
        if self._seen == CLOSED and now - self._synced_at < self.policy.sync_seconds:
            return None
        if self._seen == OPEN and now < self._open_until:
            return None
        if self._pending_successes:
            self.flush(now)
        snap = self.store.read(self.policy.name)
        self._observe(snap, now)
        return snap

    def flush(self, now: float | None = None) -> None:
        """Write the successes counted locally since the last write to the shared window."""
        if self._pending_successes:
            self.last_counts = self.store.record(
                self.policy.name,
                successes=self._pending_successes,
                failed=False,
                now=self.clock() if now is None else now,
                window=self.policy.window_seconds,
                bucket=self.policy.bucket_seconds,
            )
            self._pending_successes = 0

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Call ``func`` through the breaker.

        :raises BreakerOpenError: open (before the reset timeout), or half-open with the probe taken
        """
        name, now = self.policy.name, self.clock()
        snap = self._shared_snapshot(now)
        if snap is None and self._seen == OPEN:
            raise BreakerOpenError(f"circuit breaker {name} is open", breaker=name, retry_at=self._open_until)
        probing = False
        if snap is None:
            pass  # closed, and seen so recently that the call goes ahead
        elif snap.state == OPEN:
            retry_at = snap.opened_at + self.policy.reset_timeout_seconds
            if now < retry_at:
                raise BreakerOpenError(f"circuit breaker {name} is open", breaker=name, retry_at=retry_at)
            if not self.store.transition(name, expected=OPEN, new=HALF_OPEN, now=now, lease=self.policy.probe_lease, opened_at=snap.opened_at):
                raise BreakerOpenError(f"circuit breaker {name}: another worker is probing", breaker=name, retry_at=now + 1)
            self._changed(HALF_OPEN, f"reset timeout of {self.policy.reset_timeout_seconds:g}s elapsed: one probe admitted")
            probing = True
        elif snap.state == HALF_OPEN:
            if not self.store.acquire_probe(name, now=now, lease=self.policy.probe_lease):
                raise BreakerOpenError(f"circuit breaker {name}: another worker is probing", breaker=name, retry_at=snap.probe_until)
            probing = True
        for listener in self.listeners:
            listener.before_call(self, func, *args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if self.is_system_error(exc):
                self._on_failure(exc, probing)
            else:
                self._on_success(probing)
            raise
        self._on_success(probing)
        return result

    def _opened(self, now: float, reason: str, counts: WindowCounts | None = None) -> None:
        self._open_until = now + self.policy.reset_timeout_seconds
        self._synced_at = now
        self._changed(OPEN, reason, counts)

    def _on_failure(self, exc: BaseException, probing: bool) -> None:
        name, now = self.policy.name, self.clock()
        for listener in self.listeners:
            listener.failure(self, exc)
        error = f"{type(exc).__name__} (status {getattr(exc, 'status_code', None)})"
        if probing:
            if self.store.transition(name, expected=HALF_OPEN, new=OPEN, now=now):
                self._opened(now, f"probe failed with {error}")
            return
        counts = self.store.record(
            name, successes=self._pending_successes, failed=True, now=now, window=self.policy.window_seconds, bucket=self.policy.bucket_seconds
        )
        self._pending_successes = 0
        self._synced_at = float("-inf")  # a failure is a reason to look at the shared state next time
        self.last_counts = counts
        reason = trip_reason(self.policy, counts)
        if reason and self.store.transition(name, expected=CLOSED, new=OPEN, now=now):
            self._opened(now, f"{reason}; last error {error}", counts)

    def _on_success(self, probing: bool) -> None:
        name, now = self.policy.name, self.clock()
        for listener in self.listeners:
            listener.success(self)
        if probing:
            successes = self.store.probe_succeeded(name)
            if successes >= self.policy.success_threshold and self.store.transition(name, expected=HALF_OPEN, new=CLOSED, now=now):
                self._synced_at = now
                self._changed(CLOSED, f"{successes} successful probe(s)")
            return
        self._pending_successes += 1


def force_state(store: SharedStore, policy: BreakerPolicy, new: str, *, now: float, hold_seconds: float = 0.0) -> str:
    """
    Force a breaker closed (a manual reset) or open (maintenance); return the state it had.

    A forced-open breaker admits its first probe after ``hold_seconds`` (its recorded opening is set
    so that the reset timeout ends then), so maintenance is not ended early by a probe.

    :param store: the shared store
    :param policy: the breaker
    :param new: ``closed`` or ``open``
    :param now: unix time
    :param hold_seconds: for ``open``: how long until the first probe
    """
    if new not in (CLOSED, OPEN):
        raise ValueError(f"a breaker can be forced closed or open, not {new!r}")
    at = now if new == CLOSED else now + hold_seconds - policy.reset_timeout_seconds
    for _ in range(10):  # compare-and-set against whatever state the workers leave it in
        old = store.read(policy.name).state
        if store.transition(policy.name, expected=old, new=new, now=at):
            return old
    raise RuntimeError(f"circuit breaker {policy.name} kept changing; it was not forced {new}")


def breaker_states(store: SharedStore, policies: Sequence[BreakerPolicy], *, now: float | None = None) -> list[dict[str, Any]]:
    """
    Return every breaker's current state, for health checks and the plugin API.

    :param store: the shared store
    :param policies: the breakers to report
    """
    now = time.time() if now is None else now
    out = []
    for policy in policies:
        snap = store.read(policy.name)
        entry: dict[str, Any] = {"name": policy.name, "state": snap.state, "consecutive_failures": snap.consecutive_failures}
        if snap.state != CLOSED:
            entry["opened_at"] = dt.datetime.fromtimestamp(snap.opened_at, dt.UTC).isoformat()
            entry["probe_at"] = dt.datetime.fromtimestamp(snap.opened_at + policy.reset_timeout_seconds, dt.UTC).isoformat()
            entry["seconds_to_probe"] = max(0.0, round(snap.opened_at + policy.reset_timeout_seconds - now, 1))
        out.append(entry)
    return out
