"""Airflow 3.3 task-level retry policy derived from the error taxonomy: permanent errors fail at once."""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from resilient_etl import errors


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def transient_error_types() -> list[type[errors.ResilientEtlError]]:
    """Return every taxonomy error type marked transient, most specific first."""
    return sorted(
        {c for c in _subclasses(errors.ResilientEtlError) if c.transient},
        key=lambda c: (-len(c.__mro__), c.__name__),
    )


def task_retry_policy() -> ExceptionRetryPolicy:
    """
    Build the ``retry_policy`` for the pipeline's tasks.

    Transient taxonomy errors retry (within the task's ``retries``, with its exponential backoff);
    every other taxonomy error is permanent and fails the task at once, leaving its retries unused;
    an error outside the taxonomy falls back to Airflow's standard retries.
    """
    return ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=list(transient_error_types()),
                action=RetryAction.RETRY,
                reason="transient failure: retrying with backoff",
            ),
            RetryRule(
                exception=errors.ResilientEtlError,
                action=RetryAction.FAIL,
                reason="permanent failure: a retry cannot succeed",
            ),
        ],
        default=RetryAction.DEFAULT,
    )
