"""Classification: what a failure is (category, transient) and what to do about it (the matrix)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from resilient_etl.classification.translators import category_of
from resilient_etl.exceptions import Category, Severity


class MatrixEntry(Protocol):
    """One row of the classification matrix (``classification.<category>`` in the config)."""

    severity: Severity
    action: str
    cause: str
    runbook: str


@dataclass(frozen=True)
class Classification:
    """
    What a failure is and what to do about it.

    :param category: the failure's category
    :param severity: SEV1 (page now) … SEV4 (record only)
    :param transient: whether waiting and retrying can help
    :param action: the recommended action
    :param cause: the likely cause
    :param runbook: the runbook section for the category
    :param error_type: the exception's class name
    """

    category: Category
    severity: Severity
    transient: bool
    action: str
    cause: str
    runbook: str
    error_type: str


def classify(exc: BaseException, matrix: Mapping[str, MatrixEntry]) -> Classification:
    """
    Classify a failure: category, severity, transient or permanent, recommended action.

    A pure function of the exception and the matrix (``classification`` in the configuration:
    category -> severity, action, likely cause, runbook section).

    :param exc: the exception
    :param matrix: the classification matrix (``cfg.classification.entries()``)
    """
    category, transient = category_of(exc)
    entry = matrix[category.value]
    return Classification(
        category=category,
        severity=Severity(entry.severity),
        transient=transient,
        action=entry.action,
        cause=entry.cause,
        runbook=entry.runbook,
        error_type=type(exc).__name__,
    )
