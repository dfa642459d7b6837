"""
How errors from outside the taxonomy get a category: translators registered per error type.

A translator maps an exception to ``(category, transient)``, or None to pass. The defaults cover the
standard library (connection and timeout errors, filesystem errors), requests, pydantic
(configuration), Redis (the shared-state store) and Airflow's "not found"; the SQLAlchemy translator
lives in :mod:`resilient_etl.classification.database`, which registers itself on import.
"""

from __future__ import annotations

from collections.abc import Callable

from resilient_etl.exceptions import Category, ResilientEtlError

Translation = tuple[Category, bool]
Translator = Callable[[BaseException], Translation | None]
_TRANSLATORS: list[Translator] = []


def register(translator: Translator) -> Translator:
    """Register a translator (usable as a decorator); later registrations are asked first."""
    _TRANSLATORS.insert(0, translator)
    return translator


def category_of(exc: BaseException) -> Translation:
    """
    Return ``(category, transient)`` for any exception (a pure function of its type and data).

    Typed errors carry both. Others are asked of the registered translators; otherwise the chain of
    causes is searched; what stays unknown is ``unknown`` and permanent (a safe default: it is
    escalated, not retried blindly by our policy).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _direct(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return Category.UNKNOWN, False


def _direct(exc: BaseException) -> Translation | None:
    if isinstance(exc, ResilientEtlError):
        return exc.category, exc.transient
    for translator in _TRANSLATORS:
        found = translator(exc)
        if found is not None:
            return found
    return None


@register
def _builtin(exc: BaseException) -> Translation | None:
    module = type(exc).__module__
    names = {c.__name__ for c in type(exc).__mro__}
    if module.startswith("redis."):  # the shared-state store (breaker_store), not the API's network
        return Category.SHARED_STATE_UNAVAILABLE, True
    if "AirflowTaskTimeout" in names or isinstance(exc, TimeoutError) or "Timeout" in names:
        return Category.TIMEOUT, True
    if "AirflowNotFoundException" in names:  # a connection or variable that does not exist
        return Category.CONFIGURATION, False
    if isinstance(exc, ConnectionError) or (module.startswith("requests") and "ConnectionError" in names):
        return Category.NETWORK, True
    if isinstance(exc, OSError):
        return Category.FILESYSTEM, False
    return None


@register
def _pydantic(exc: BaseException) -> Translation | None:
    from pydantic import ValidationError

    return (Category.CONFIGURATION, False) if isinstance(exc, ValidationError) else None
