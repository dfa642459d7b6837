"""
Retry policies: small named data objects, pure decisions, and a thin tenacity adapter.

* :class:`RetryPolicy` is data (per dependency, from ``config/resilience.yaml``).
* :func:`decide` is the whole decision, a pure function: retry or not, and how long to wait. Full
  jitter (AWS "Exponential Backoff and Jitter": the least total work) unless the server said how long
  (``Retry-After``, or a rate-limit reset); a cap on one wait, on elapsed time and on attempts.
* :class:`Retrier` runs a callable under a policy with tenacity and logs every retry and the outcome.

Which errors are retried is decided by type: an error is retried when it is a transient
:class:`~resilient_etl.errors.ResilientEtlError` (connection refused/reset, timeout, 5xx, 429, database
unavailable…), never by reading its message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from resilient_etl.errors import ApiRateLimitError, ResilientEtlError
from resilient_etl.resilience import stopping

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """
    How one dependency is retried.

    :param dependency: its name in logs (``database``, ``postcodes_io``, ``companies_house``)
    :param max_attempts: attempts in all, the first included
    :param initial_wait: backoff ceiling of the first retry, seconds
    :param multiplier: growth of the ceiling per attempt
    :param max_wait: cap on one backoff wait, seconds
    :param max_elapsed: give up rather than start a wait that would end past this, seconds
    :param max_server_wait: the longest server-requested wait (Retry-After, quota reset) to honour;
        a longer one gives up at once instead of waiting less and being refused again
    """

    dependency: str
    max_attempts: int = 5
    initial_wait: float = 0.5
    multiplier: float = 2.0
    max_wait: float = 30.0
    max_elapsed: float = 120.0
    max_server_wait: float = 330.0


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt."""

    retry: bool
    wait: float
    reason: str


def is_transient(exc: BaseException | None) -> bool:
    """Return whether ``exc`` is a failure that may succeed when tried again."""
    return isinstance(exc, ResilientEtlError) and exc.transient


def backoff_ceiling(policy: RetryPolicy, attempt: int) -> float:
    """Return the upper bound of the jittered wait after failed attempt number ``attempt`` (1-based)."""
    return min(policy.max_wait, policy.initial_wait * policy.multiplier ** (attempt - 1))


def server_wait(exc: BaseException, now: float) -> float | None:
    """
    Return the wait the server asked for, or None: ``Retry-After`` first, else a 429's quota reset.

    :param exc: the failure
    :param now: the current unix time
    """
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        return max(0.0, float(retry_after))
    if isinstance(exc, ApiRateLimitError) and exc.reset_at is not None:
        return max(0.0, exc.reset_at - now)
    return None


def decide(
    policy: RetryPolicy, *, attempt: int, exc: BaseException, elapsed: float, now: float, rng: random.Random
) -> Decision:
    """
    Decide whether to retry after failed attempt ``attempt``, and how long to wait first.

    :param policy: the dependency's policy
    :param attempt: the number of the attempt that just failed (1-based)
    :param exc: its error
    :param elapsed: seconds since the first attempt started
    :param now: the current unix time (for quota resets)
    :param rng: the jitter source
    """
    if not is_transient(exc):
        return Decision(False, 0.0, "permanent error")
    if attempt >= policy.max_attempts:
        return Decision(False, 0.0, f"{policy.max_attempts} attempts made")
    requested = server_wait(exc, now)
    if requested is not None:
        if requested > policy.max_server_wait:
            return Decision(False, requested, f"server asks for {requested:.0f}s, more than {policy.max_server_wait:.0f}s")
        wait, why = requested, "server-requested wait"
    else:
        wait, why = rng.uniform(0, backoff_ceiling(policy, attempt)), "full-jitter backoff"
    if elapsed + wait > policy.max_elapsed:
        return Decision(False, wait, f"waiting {wait:.1f}s would pass the {policy.max_elapsed:.0f}s budget")
    return Decision(True, wait, why)


class _Decider:
    """One :func:`decide` per failed attempt, shared by the tenacity wait and stop strategies."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], rng: random.Random) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng
        self.last: Decision | None = None

    def decision(self, state: tenacity.RetryCallState) -> Decision:
        exc = state.outcome.exception() if state.outcome else None
        self.last = decide(
            self.policy,
            attempt=state.attempt_number,
            exc=exc if exc is not None else RuntimeError("no outcome"),
            elapsed=state.seconds_since_start or 0.0,
            now=self.clock(),
            rng=self.rng,
        )
        return self.last


class _Wait(wait_base):
    def __init__(self, decider: _Decider) -> None:
        self.decider = decider

    def __call__(self, state: tenacity.RetryCallState) -> float:
        return self.decider.decision(state).wait


class _Stop(stop_base):
    def __init__(self, decider: _Decider) -> None:
        self.decider = decider

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        # tenacity runs wait before stop, so the decision for this attempt is already made
        return not (self.decider.last.retry if self.decider.last else False)


def _status(exc: BaseException | None) -> Any:
    return getattr(exc, "status_code", None)


class Retrier:
    """
    Run callables under a :class:`RetryPolicy`, logging each retry and the outcome.

    :param policy: the policy
    :param logger: where to log (an operator's ``self.log`` or a module logger)
    :param sleep: the sleep function (by default one that a task's ``on_kill`` interrupts; tests pass their own)
    :param clock: unix time source (quota resets are absolute times)
    :param rng: jitter source
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        logger: logging.Logger | logging.LoggerAdapter | None = None,
        sleep: Callable[[float], None] = stopping.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.policy = policy
        self.log = logger or log
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "%s: attempt %d/%d failed with %s (status %s, category %s); retrying in %.2fs",
            self.policy.dependency,
            state.attempt_number,
            self.policy.max_attempts,
            type(exc).__name__,
            _status(exc),
            getattr(exc, "category", "unknown"),
            state.upcoming_sleep,
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Call ``fn`` until it succeeds or the policy gives up; re-raise the last error then.

        The error raised on giving up gets a note: how many attempts and seconds it took.
        """
        decider = _Decider(self.policy, self.clock, self.rng)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=_Wait(decider),
            stop=_Stop(decider),
            sleep=self.sleep,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        started = time.monotonic()
        try:
            result = retrying(fn, *args, **kwargs)
        except BaseException as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            elapsed = time.monotonic() - started
            if is_transient(exc):
                reason = decider.last.reason if decider.last else "stopped"
                self.log.error(
                    "%s: gave up after %d attempts and %.1fs (%s): %s (status %s)",
                    self.policy.dependency, attempts, elapsed, reason, type(exc).__name__, _status(exc),
                )
                exc.add_note(f"{self.policy.dependency}: gave up after {attempts} attempts and {elapsed:.1f}s ({reason})")
            elif attempts > 1:
                self.log.error(
                    "%s: failed permanently on attempt %d after %.1fs: %s (status %s)",
                    self.policy.dependency, attempts, elapsed, type(exc).__name__, _status(exc),
                )
            raise
        attempts = retrying.statistics.get("attempt_number", 1)
        if attempts > 1:
            self.log.info(
                "%s: succeeded after %d attempts in %.1fs", self.policy.dependency, attempts, time.monotonic() - started
            )
        return result
