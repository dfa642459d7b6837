"""
Retries: tiny stateless tenacity strategies combined with ``|``, and a :class:`Retrier` that logs.

* The policy is data: :class:`~resilient_etl.config.models.RetryPolicy` (one per dependency, from
  ``config/resilience.yaml``).
* :func:`wait_for` waits what the server asked for (``Retry-After``, or a 429's quota reset), else a
  full-jitter backoff (AWS "Exponential Backoff and Jitter": the least total work).
* :func:`stop_for` gives up after the attempts, on a server wait longer than the policy honours, or
  before a wait that would end past the elapsed budget. Each strategy reads only tenacity's
  ``RetryCallState`` (tenacity computes the wait before asking stop, into ``upcoming_sleep``), so
  nothing depends on the order the strategies are called in.
* :func:`decide` is the same decision as a pure function, for tests and documentation.

Which errors are retried is decided by type: an error is retried when it is a transient
:class:`~resilient_etl.exceptions.ResilientEtlError` (connection refused/reset, timeout, 5xx, 429,
database unavailable…), never by reading its message.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
from tenacity.stop import stop_any, stop_base
from tenacity.wait import wait_base

from resilient_etl.config.models import RetryPolicy
from resilient_etl.exceptions import ApiRateLimitError, ResilientEtlError
from resilient_etl.resilience import stopping
from resilient_etl.resilience.budget import BudgetVerdict, RetryBudget

T = TypeVar("T")
log = logging.getLogger(__name__)
Clock = Callable[[], float]


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
    return float(min(policy.max_wait_seconds, policy.initial_wait_seconds * policy.multiplier ** (attempt - 1)))


def server_wait(exc: BaseException | None, now: float) -> float | None:
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


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


class wait_server_or_full_jitter(wait_base):
    """
    Wait as long as the server asked; otherwise a uniform draw in ``[0, backoff ceiling]``.

    :param policy: the dependency's policy (the ceiling)
    :param clock: unix time source (quota resets are absolute times)
    :param rng: the jitter source
    """

    def __init__(self, policy: RetryPolicy, *, clock: Clock = time.time, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.rng = rng or random.Random()

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        requested = server_wait(_error(retry_state), self.clock())
        if requested is not None:
            return requested
        return self.rng.uniform(0, backoff_ceiling(self.policy, retry_state.attempt_number))


class _stop_with_reason(stop_base):
    """A stop strategy that can say why it stops (for the give-up log line and the error's note)."""

    def reason(self, retry_state: tenacity.RetryCallState) -> str | None:
        raise NotImplementedError

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.reason(retry_state) is not None


class stop_after_attempts(_stop_with_reason):
    """Stop once ``attempts`` attempts were made."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def reason(self, retry_state: tenacity.RetryCallState) -> str | None:
        return f"{self.attempts} attempts made" if retry_state.attempt_number >= self.attempts else None


class stop_on_server_wait_over(_stop_with_reason):
    """Stop when the server asks for a longer wait than ``limit`` seconds (waiting less would be refused again)."""

    def __init__(self, limit: float, *, clock: Clock = time.time) -> None:
        self.limit = limit
        self.clock = clock

    def reason(self, retry_state: tenacity.RetryCallState) -> str | None:
        requested = server_wait(_error(retry_state), self.clock())
        if requested is not None and requested > self.limit:
            return f"server asks for {requested:.0f}s, more than {self.limit:.0f}s"
        return None


class stop_before_budget(_stop_with_reason):
    """Stop rather than start a wait that would end past ``budget`` seconds since the first attempt."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    def reason(self, retry_state: tenacity.RetryCallState) -> str | None:
        elapsed = retry_state.seconds_since_start or 0.0
        if elapsed + retry_state.upcoming_sleep > self.budget:
            return f"waiting {retry_state.upcoming_sleep:.1f}s would pass the {self.budget:.0f}s budget"
        return None


class stop_when_budget_spent(_stop_with_reason):
    """
    Stop when the shared retry budget has no room for another retry (combine last: ``a | b | budget``).

    ``a | b`` stops at the first strategy that says so, so the budget is only spent on a retry that would
    otherwise happen. Asked twice about the same attempt (for the give-up reason), it answers from memory.
    """

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self._verdicts: dict[tuple[int, int], BudgetVerdict] = {}

    def verdict(self, retry_state: tenacity.RetryCallState) -> BudgetVerdict:
        """Return (spending once per attempt) the budget's verdict on retrying after this attempt."""
        key = (id(retry_state), retry_state.attempt_number)
        if key not in self._verdicts:
            self._verdicts[key] = self.budget.spend()
        return self._verdicts[key]

    def reason(self, retry_state: tenacity.RetryCallState) -> str | None:
        v = self.verdict(retry_state)
        if v.allowed:
            return None
        return f"retry budget of {self.budget.name} spent: {v.retries} retries for {v.calls} calls in {self.budget.policy.window_seconds:.0f}s, limit {v.limit:.0f}"


def wait_for(policy: RetryPolicy, *, clock: Clock = time.time, rng: random.Random | None = None) -> wait_base:
    """Return the wait strategy of ``policy``."""
    return wait_server_or_full_jitter(policy, clock=clock, rng=rng)


def stop_for(policy: RetryPolicy, *, clock: Clock = time.time) -> stop_base:
    """Return the stop strategy of ``policy``: attempts | server wait too long | elapsed budget."""
    return (
        stop_after_attempts(policy.max_attempts)
        | stop_on_server_wait_over(policy.max_server_wait_seconds, clock=clock)
        | stop_before_budget(policy.max_elapsed_seconds)
    )


def stop_reason(stop: stop_base, retry_state: tenacity.RetryCallState) -> str:
    """Return why ``stop`` stops at ``retry_state`` (the first of its strategies that does)."""
    if isinstance(stop, stop_any):  # a | b | c nests: stop_any(stop_any(a, b), c)
        for part in stop.stops:
            if part(retry_state):
                return stop_reason(part, retry_state)
    if isinstance(stop, _stop_with_reason):
        return stop.reason(retry_state) or "stopped"
    return "stopped"


def decide(policy: RetryPolicy, *, attempt: int, exc: BaseException, elapsed: float, now: float, rng: random.Random) -> Decision:
    """
    Decide whether to retry after failed attempt ``attempt``, and how long to wait first (pure).

    The same strategies :class:`Retrier` runs, applied to one failed attempt.

    :param policy: the dependency's policy
    :param attempt: the number of the attempt that just failed (1-based)
    :param exc: its error
    :param elapsed: seconds since the first attempt started
    :param now: the current unix time (for quota resets)
    :param rng: the jitter source
    """
    if not is_transient(exc):
        return Decision(False, 0.0, "permanent error")
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.start_time, state.outcome_timestamp = 0.0, elapsed
    outcome: tenacity.Future = tenacity.Future(attempt)
    outcome.set_exception(exc)
    state.outcome = outcome
    clock = lambda: now  # noqa: E731 - a frozen clock for one decision
    state.upcoming_sleep = wait_for(policy, clock=clock, rng=rng)(state)
    stop = stop_for(policy, clock=clock)
    if stop(state):
        return Decision(False, state.upcoming_sleep, stop_reason(stop, state))
    reason = "server-requested wait" if server_wait(exc, now) is not None else "full-jitter backoff"
    return Decision(True, state.upcoming_sleep, reason)


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
    :param budget: the API's retry budget shared by every worker (none: the policy alone decides)
    """

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        sleep: Callable[[float], None] = stopping.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.budget = budget
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

    def _gave_up(self, stop: stop_base, state: tenacity.RetryCallState) -> Any:
        exc = _error(state)
        assert exc is not None  # tenacity only stops after a failed attempt
        reason, elapsed = stop_reason(stop, state), state.seconds_since_start or 0.0
        self.log.error(
            "%s: gave up after %d attempts and %.1fs (%s): %s (status %s)",
            self.policy.dependency,
            state.attempt_number,
            elapsed,
            reason,
            type(exc).__name__,
            _status(exc),
        )
        exc.add_note(f"{self.policy.dependency}: gave up after {state.attempt_number} attempts and {elapsed:.1f}s ({reason})")
        raise exc

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """
        Call ``fn`` until it succeeds or the policy gives up; re-raise the last error then.

        The error raised on giving up gets a note: how many attempts and seconds it took.
        """
        stop = stop_for(self.policy, clock=self.clock)
        budget = self.budget
        if budget is not None:
            stop = stop | stop_when_budget_spent(budget)
        retrying = tenacity.Retrying(
            before=(lambda state: budget.record_call() if state.attempt_number == 1 else None) if budget is not None else tenacity.before_nothing,
            retry=tenacity.retry_if_exception(is_transient),
            wait=wait_for(self.policy, clock=self.clock, rng=self.rng),
            stop=stop,
            sleep=self.sleep,
            before_sleep=self._before_sleep,
            retry_error_callback=lambda state: self._gave_up(stop, state),
        )
        started = time.monotonic()
        try:
            result = retrying(fn, *args, **kwargs)
        except BaseException as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            elapsed = time.monotonic() - started
            if not is_transient(exc) and attempts > 1:
                self.log.error(
                    "%s: failed permanently on attempt %d after %.1fs: %s (status %s)",
                    self.policy.dependency,
                    attempts,
                    elapsed,
                    type(exc).__name__,
                    _status(exc),
                )
            raise
        attempts = retrying.statistics.get("attempt_number", 1)
        if attempts > 1:
            self.log.info("%s: succeeded after %d attempts in %.1fs", self.policy.dependency, attempts, time.monotonic() - started)
        return result
