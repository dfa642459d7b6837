"""Airflow 3.3 task-level retry policy derived from the error taxonomy: permanent errors fail at once."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.definitions.retry_policy import RetryDecision

from resilient_etl import exceptions as errors

# A retry waits this long past the breaker's probe time: the probe is admitted from that instant.
PROBE_MARGIN_SECONDS = 1


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def transient_error_types() -> list[type[errors.ResilientEtlError]]:
    """Return every taxonomy error type marked transient, most specific first."""
    return sorted({c for c in _subclasses(errors.ResilientEtlError) if c.transient}, key=lambda c: (-len(c.__mro__), c.__name__))


class TaxonomyRetryPolicy(ExceptionRetryPolicy):
    """
    The taxonomy's rules, with the decisions an error makes per instance.

    An error that knows when retrying can help (``retry_at``: an open breaker's next probe) retries
    no earlier than that; an error whose transience is decided per instance is judged on the
    instance, not its class. Everything else follows the rules in order.

    :param clock: unix time source
    """

    def __init__(self, rules: list[RetryRule], default: RetryAction = RetryAction.DEFAULT, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(rules=rules, default=default)
        self.clock = clock

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int, context: Any = None) -> RetryDecision:
        """Decide retry-or-fail for ``exception`` (runs in the task's worker process)."""
        if isinstance(exception, errors.ResilientEtlError) and exception.transient:
            retry_at = getattr(exception, "retry_at", None)
            if retry_at is not None:
                wait = max(0, math.ceil(retry_at - self.clock())) + PROBE_MARGIN_SECONDS
                name = getattr(exception, "breaker", None) or "the dependency"
                return RetryDecision.retry(
                    delay=dt.timedelta(seconds=wait),
                    reason=f"transient: breaker {name} is open until {errors.utc_clock(retry_at)}; retrying in {wait}s, after its next probe",
                )
            if not type(exception).transient:
                return RetryDecision.retry(reason="transient failure: retrying with backoff")
        return super().evaluate(exception, try_number, max_tries, context)


def task_retry_policy(*, clock: Callable[[], float] = time.time) -> TaxonomyRetryPolicy:
    """
    Build the ``retry_policy`` for the pipeline's tasks.

    Transient taxonomy errors retry (within the task's ``retries``, with its exponential backoff, or
    after an open breaker's next probe); every other taxonomy error is permanent and fails the task
    at once, leaving its retries unused; an error outside the taxonomy falls back to Airflow's
    standard retries.

    :param clock: unix time source
    """
    return TaxonomyRetryPolicy(
        rules=[
            RetryRule(exception=list(transient_error_types()), action=RetryAction.RETRY, reason="transient failure: retrying with backoff"),
            RetryRule(exception=errors.ResilientEtlError, action=RetryAction.FAIL, reason="permanent failure: a retry cannot succeed"),
        ],
        default=RetryAction.DEFAULT,
        clock=clock,
    )
